//! The JSON body of one delivery: the event as `ListAccountEvents` shows it, with its payload as
//! a JSON object instead of a string. Pure.
//!
//! ```json
//! {"id":"evt_…","sequence":42,"type":"credits.granted","account_id":"user-123",
//!  "balance_after":500,"available_after":500,"entry_id":7,
//!  "payload":{"credits":500,"reason":"support",…},"created_at":"2026-12-06T17:00:00.123Z"}
//! ```

use chrono::SecondsFormat;
use serde::Serialize;

use super::Notification;

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    sequence: i64,
    r#type: &'a str,
    account_id: &'a str,
    balance_after: i64,
    available_after: i64,
    /// 0 for events without a ledger entry, as in gRPC.
    entry_id: i64,
    payload: serde_json::Value,
    created_at: String,
}

/// The bytes POSTed for `event`.
pub(crate) fn render(event: &Notification) -> Vec<u8> {
    // The ledger writes the payload as a JSON object; should a row hold anything else, the
    // receiver still gets it, as a string.
    let payload = serde_json::from_str(&event.payload)
        .unwrap_or_else(|_| serde_json::Value::String(event.payload.clone()));
    let body = Body {
        id: &event.id,
        sequence: event.sequence,
        r#type: event.kind.as_str(),
        account_id: &event.account_id,
        balance_after: event.balance_after,
        available_after: event.available_after,
        entry_id: event.entry_id.unwrap_or_default(),
        payload,
        created_at: event.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    // Strings, numbers and a parsed JSON value: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{ledger::kinds::EventType, notify::Delivery};

    fn event(payload: &str) -> Notification {
        Notification {
            sequence: 42,
            id: "evt_1".into(),
            account_id: "user-1".into(),
            kind: EventType::CreditsGranted,
            balance_after: 500,
            available_after: 450,
            entry_id: None,
            payload: payload.into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap_or_default(),
            delivery: Delivery::default(),
        }
    }

    #[test]
    fn the_body_carries_every_field_and_the_payload_as_an_object() {
        let body: serde_json::Value =
            serde_json::from_slice(&render(&event(r#"{"credits":500,"reason":"support"}"#))).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "id": "evt_1",
                "sequence": 42,
                "type": "credits.granted",
                "account_id": "user-1",
                "balance_after": 500,
                "available_after": 450,
                "entry_id": 0,
                "payload": {"credits": 500, "reason": "support"},
                "created_at": "2023-11-14T22:13:20.123Z",
            })
        );
    }

    #[test]
    fn an_unreadable_payload_goes_out_as_a_string() {
        let body: serde_json::Value = serde_json::from_slice(&render(&event("not json"))).expect("JSON");
        assert_eq!(body["payload"], "not json");
    }
}
