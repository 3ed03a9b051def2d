//! Serde types for the slice of Stripe's event payloads this service reads. Tolerant: unknown
//! fields are ignored, nulls accepted wherever Stripe allows them, any API version.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::billing::{
    CheckoutFacts, DisputeStatus, EventAction, RefundReport, RefundStatus, StripeEvent,
    settlement::{DisputeFact, RefundFact},
    stripe_event::TopUpFacts,
    subscription_payload::{invoice_facts, subscription_facts},
    subscriptions::SubscriptionEventKind,
};

/// Why a body is not a Stripe event we can read.
#[derive(Debug, thiserror::Error)]
pub enum EventParseError {
    #[error("body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("body is not a Stripe event: {0}")]
    NotAnEvent(String),
}

/// The event, with `data.object` left unparsed until its type says what it is: the body is
/// read once.
#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(default)]
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    /// Unix seconds; orders the states subscription events describe.
    #[serde(default)]
    created: Option<i64>,
    #[serde(borrow)]
    data: EventData<'a>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    object: &'a RawValue,
}

/// Stripe's `object` tag of a data object, checked against what the event type promises.
trait Tagged {
    fn tag(&self) -> Option<&str>;
}

#[derive(Deserialize)]
struct CheckoutSession {
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    id: String,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    customer_details: Option<CustomerDetails>,
    #[serde(default)]
    metadata: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    payment_intent: Option<Expandable>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    customer: Option<Expandable>,
}

#[derive(Deserialize)]
struct PaymentIntent {
    #[serde(default)]
    object: Option<String>,
    id: String,
    #[serde(default)]
    metadata: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    amount_received: Option<i64>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    customer: Option<Expandable>,
}

#[derive(Deserialize)]
struct CustomerDetails {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Charge {
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    payment_intent: Option<Expandable>,
    #[serde(default)]
    amount_refunded: Option<i64>,
}

#[derive(Deserialize)]
struct Refund {
    #[serde(default)]
    object: Option<String>,
    id: String,
    #[serde(default)]
    payment_intent: Option<Expandable>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Dispute {
    #[serde(default)]
    object: Option<String>,
    id: String,
    #[serde(default)]
    payment_intent: Option<Expandable>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    status: Option<String>,
}

/// Stripe sends either an id or, when expanded, the object.
#[derive(Deserialize)]
#[serde(untagged)]
enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    fn into_id(self) -> String {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl CheckoutSession {
    fn into_facts(self) -> CheckoutFacts {
        let metadata = self.metadata.unwrap_or_default();
        let meta = |key: &str| non_empty(metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned));
        CheckoutFacts {
            metadata_account_id: meta("account_id"),
            metadata_price_id: meta("price_id"),
            email: non_empty(self.customer_details.and_then(|d| d.email))
                .or_else(|| non_empty(self.customer_email)),
            client_reference_id: non_empty(self.client_reference_id),
            payment_intent_id: self.payment_intent.map(Expandable::into_id),
            amount_total: self.amount_total,
            currency: non_empty(self.currency),
            customer_id: self.customer.map(Expandable::into_id),
            save_card: meta("save_payment_method").as_deref() == Some("true"),
            top_up: None,
            session_id: self.id,
        }
    }
}

impl PaymentIntent {
    /// An auto top-up's payment as a purchase to credit: the attempt stands for the session.
    /// `None` for PaymentIntents this service did not create for a top-up (Checkout's own).
    fn into_top_up(self) -> Option<CheckoutFacts> {
        let metadata = self.metadata.unwrap_or_default();
        let meta = |key: &str| non_empty(metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned));
        let attempt = meta("top_up_attempt_id")?;
        let credits = meta("credits")?.parse::<i64>().ok().filter(|c| *c > 0)?;
        Some(CheckoutFacts {
            session_id: attempt,
            client_reference_id: None,
            metadata_account_id: meta("account_id"),
            email: None,
            metadata_price_id: None,
            payment_intent_id: Some(self.id),
            amount_total: self.amount_received.or(self.amount),
            currency: non_empty(self.currency),
            customer_id: self.customer.map(Expandable::into_id),
            save_card: false,
            top_up: Some(TopUpFacts {
                pack_id: meta("pack_id")?,
                credits,
            }),
        })
    }
}

macro_rules! tagged {
    ($($t:ty),+) => {
        $(impl Tagged for $t {
            fn tag(&self) -> Option<&str> {
                self.object.as_deref()
            }
        })+
    };
}
tagged!(CheckoutSession, Charge, Refund, Dispute, PaymentIntent);

/// Reads `data.object` as a `kind` (checking Stripe's `object` tag when present).
fn data_object<T: serde::de::DeserializeOwned + Tagged>(
    raw: &RawValue,
    kind: &str,
) -> Result<T, EventParseError> {
    let object: T = serde_json::from_str(raw.get())
        .map_err(|err| EventParseError::NotAnEvent(format!("data.object is not a {kind}: {err}")))?;
    if object.tag().is_some_and(|tag| tag != kind) {
        return Err(EventParseError::NotAnEvent(format!(
            "data.object is not a {kind}"
        )));
    }
    Ok(object)
}

/// The event types this service acts on; every other type is stored and ignored.
pub(crate) const HANDLED_EVENT_TYPES: [&str; 17] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "charge.refund.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "payment_intent.succeeded",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
];

/// The metrics label of an event type: a handled type, else `other`, so a sender cannot grow
/// the number of series.
pub fn event_type_label(event_type: &str) -> &'static str {
    HANDLED_EVENT_TYPES
        .into_iter()
        .find(|t| *t == event_type)
        .unwrap_or("other")
}

/// Reads a raw webhook body into a ledger event.
// Long on purpose: one line per event field read.
pub fn parse_event(body: &[u8]) -> Result<StripeEvent, EventParseError> {
    // JSON is UTF-8 (RFC 8259); the reader does not check strings it skips, so check first.
    let text = std::str::from_utf8(body).map_err(|err| {
        EventParseError::NotJson(serde::de::Error::custom(format_args!("body is not UTF-8: {err}")))
    })?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|err| {
        if err.is_data() {
            EventParseError::NotAnEvent(err.to_string())
        } else {
            EventParseError::NotJson(err)
        }
    })?;
    if envelope.object.as_deref().is_some_and(|o| o != "event") {
        return Err(EventParseError::NotAnEvent("object is not \"event\"".into()));
    }
    if envelope.id.trim().is_empty() || envelope.event_type.trim().is_empty() {
        return Err(EventParseError::NotAnEvent("empty id or type".into()));
    }
    let object = envelope.data.object;
    let session = || data_object::<CheckoutSession>(object, "checkout.session");
    let action = match envelope.event_type.as_str() {
        "checkout.session.completed" => {
            let session = session()?;
            match session.payment_status.as_deref() {
                Some("paid" | "no_payment_required") => EventAction::Credit(session.into_facts()),
                _ => EventAction::AwaitPayment(session.into_facts()),
            }
        }
        "checkout.session.async_payment_succeeded" => EventAction::Credit(session()?.into_facts()),
        "checkout.session.async_payment_failed" => EventAction::MarkFailed(session()?.into_facts()),
        "checkout.session.expired" => EventAction::MarkExpired(session()?.into_facts()),
        "charge.refunded" => {
            let charge: Charge = data_object(object, "charge")?;
            match (charge.payment_intent, charge.amount_refunded) {
                (Some(intent), Some(amount_refunded)) => EventAction::Refund {
                    payment_intent_id: intent.into_id(),
                    report: RefundReport::ChargeTotal { amount_refunded },
                },
                // A charge outside a PaymentIntent was never sold by this service.
                _ => EventAction::Ignore,
            }
        }
        "refund.created" | "refund.updated" | "charge.refund.updated" => {
            let refund: Refund = data_object(object, "refund")?;
            match (refund.payment_intent, refund.amount) {
                (Some(intent), Some(amount)) => EventAction::Refund {
                    payment_intent_id: intent.into_id(),
                    report: RefundReport::Refund(RefundFact {
                        refund_id: refund.id,
                        amount,
                        status: refund
                            .status
                            .map_or(RefundStatus::Succeeded, |s| RefundStatus::parse(&s)),
                    }),
                },
                _ => EventAction::Ignore,
            }
        }
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => {
            let dispute: Dispute = data_object(object, "dispute")?;
            match dispute.payment_intent {
                Some(intent) => EventAction::Dispute {
                    payment_intent_id: intent.into_id(),
                    fact: DisputeFact {
                        dispute_id: dispute.id,
                        amount: dispute.amount.unwrap_or_default(),
                        status: dispute
                            .status
                            .map_or(DisputeStatus::NeedsResponse, |s| DisputeStatus::parse(&s)),
                    },
                },
                None => EventAction::Ignore,
            }
        }
        "payment_intent.succeeded" => {
            let intent: PaymentIntent = data_object(object, "payment_intent")?;
            // Checkout's own PaymentIntents are credited by their session's events.
            intent
                .into_top_up()
                .map_or(EventAction::Ignore, EventAction::Credit)
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let kind = match envelope.event_type.as_str() {
                "customer.subscription.created" => SubscriptionEventKind::Created,
                "customer.subscription.updated" => SubscriptionEventKind::Updated,
                _ => SubscriptionEventKind::Deleted,
            };
            let created = envelope.created.unwrap_or(0);
            EventAction::Subscription(
                subscription_facts(object, kind, created).map_err(EventParseError::NotAnEvent)?,
            )
        }
        "invoice.paid" | "invoice.payment_failed" => {
            let paid = envelope.event_type == "invoice.paid";
            match invoice_facts(object, paid, envelope.created.unwrap_or(0))
                .map_err(EventParseError::NotAnEvent)?
            {
                Some(facts) if paid => EventAction::InvoicePaid(facts),
                Some(facts) => EventAction::InvoiceFailed(facts),
                // Not a subscription's invoice, or one that grants nothing.
                None => EventAction::Ignore,
            }
        }
        _ => EventAction::Ignore,
    };
    Ok(StripeEvent {
        id: envelope.id,
        event_type: envelope.event_type,
        payload: text.to_owned(),
        action,
    })
}

/// A body that failed `parse_event`, as the event store keeps it: Stripe's `id` and `type` when
/// they can be read, else an id derived from the body (`unparsed_<sha256 prefix>`), so a
/// redelivery finds the same row. NULs are replaced: PostgreSQL text cannot hold them.
pub fn unparsable_event(body: &[u8]) -> StripeEvent {
    use sha2::{Digest, Sha256};
    let fields = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |key: &str| {
        fields
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 255)
            .map(str::to_owned)
    };
    let id = field("id").unwrap_or_else(|| {
        let digest = hex::encode(Sha256::digest(body));
        format!("unparsed_{}", &digest[..32])
    });
    StripeEvent {
        id,
        event_type: field("type").unwrap_or_else(|| "unknown".to_owned()),
        payload: String::from_utf8_lossy(body).replace('\0', "\u{FFFD}"),
        action: EventAction::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_with_invalid_utf8_in_an_ignored_field_is_not_json() {
        // Found by the fuzzer: the JSON reader skips unread strings without checking them, so
        // this parsed and its stored payload was a lossy copy of the verified bytes.
        let mut body = br#"{"id":"evt_1","object":"event","type":"x","api_version":"2026-"#.to_vec();
        body.extend_from_slice(b"\xd9\x30");
        body.extend_from_slice(br#"","data":{"object":{}}}"#);
        assert!(matches!(parse_event(&body), Err(EventParseError::NotJson(_))));
    }

    fn facts_of(action: &EventAction) -> &CheckoutFacts {
        match action {
            EventAction::Credit(f)
            | EventAction::AwaitPayment(f)
            | EventAction::MarkFailed(f)
            | EventAction::MarkExpired(f) => f,
            _ => panic!("no facts"),
        }
    }

    #[test]
    fn a_completed_paid_session_credits() {
        let body = r#"{"id":"evt_1","object":"event","type":"checkout.session.completed","data":{"object":{
            "id":"cs_1","client_reference_id":null,"customer_email":"A@B.co","customer_details":null,
            "metadata":{"account_id":"u1","price_id":"price_1","extra":7},"payment_status":"paid",
            "payment_intent":{"id":"pi_1","object":"payment_intent"},"amount_total":1500,"currency":"usd","new_field":[1]}}}"#;
        let event = parse_event(body.as_bytes()).expect("parses");
        assert!(matches!(event.action, EventAction::Credit(_)));
        let facts = facts_of(&event.action);
        assert_eq!(facts.session_id, "cs_1");
        assert_eq!(facts.client_reference_id, None);
        assert_eq!(facts.metadata_account_id.as_deref(), Some("u1"));
        assert_eq!(facts.metadata_price_id.as_deref(), Some("price_1"));
        assert_eq!(facts.email.as_deref(), Some("A@B.co"));
        assert_eq!(facts.payment_intent_id.as_deref(), Some("pi_1"));
    }

    #[test]
    fn unpaid_completion_waits_and_other_types_are_ignored() {
        let unpaid = r#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":{"id":"cs_2","payment_status":"unpaid","metadata":null}}}"#;
        assert!(matches!(
            parse_event(unpaid.as_bytes()).map(|e| e.action),
            Ok(EventAction::AwaitPayment(_))
        ));
        let other = r#"{"id":"evt_3","type":"invoice.paid","data":{"object":{"id":"in_1"}}}"#;
        assert!(matches!(
            parse_event(other.as_bytes()).map(|e| e.action),
            Ok(EventAction::Ignore)
        ));
    }

    #[test]
    fn refunds_and_disputes_are_read_by_payment_intent() {
        let charge = r#"{"id":"evt_r","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","payment_intent":"pi_1","amount":3000,"amount_refunded":1000}}}"#;
        assert_eq!(
            parse_event(charge.as_bytes()).map(|e| e.action).ok(),
            Some(EventAction::Refund {
                payment_intent_id: "pi_1".into(),
                report: RefundReport::ChargeTotal {
                    amount_refunded: 1000
                }
            })
        );
        let refund = r#"{"id":"evt_rf","type":"refund.updated","data":{"object":{"id":"re_1","object":"refund","payment_intent":{"id":"pi_1"},"amount":500,"status":"failed"}}}"#;
        assert!(matches!(
            parse_event(refund.as_bytes()).map(|e| e.action),
            Ok(EventAction::Refund {
                report: RefundReport::Refund(_),
                ..
            })
        ));
        let dispute = r#"{"id":"evt_d","type":"charge.dispute.closed","data":{"object":{"id":"dp_1","object":"dispute","payment_intent":"pi_1","amount":3000,"status":"won"}}}"#;
        assert!(matches!(
            parse_event(dispute.as_bytes()).map(|e| e.action),
            Ok(EventAction::Dispute { .. })
        ));
        let no_intent = r#"{"id":"evt_n","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","payment_intent":null,"amount_refunded":1}}}"#;
        assert!(matches!(
            parse_event(no_intent.as_bytes()).map(|e| e.action),
            Ok(EventAction::Ignore)
        ));
    }

    #[test]
    fn only_handled_types_label_metrics() {
        assert_eq!(event_type_label("charge.refunded"), "charge.refunded");
        assert_eq!(event_type_label("invoice.paid"), "invoice.paid");
        assert_eq!(event_type_label("invoice.created"), "other");
        assert_eq!(event_type_label("made.up.12345"), "other");
    }

    #[test]
    fn junk_is_refused() {
        for body in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"id":"evt_1","type":"x"}"#,
            r#"{"id":"x","object":"charge","type":"t","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"payment_status":"paid"}}}"#,
        ] {
            assert!(parse_event(body.as_bytes()).is_err(), "{body:?} accepted");
        }
    }
}
