//! Signed `checkout.session.completed` events, shaped like the repository's fixture: one Payment
//! Link-like session per event (no purchase recorded before), for one of the benchmark's
//! accounts, naming its pack by `metadata.price_id` as sessions made by PurchaseCredits do.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const FIXTURE: &str = include_str!("../../tests/fixtures/checkout_session_completed.json");

/// Builds event bodies from the fixture with string substitution (cheap enough not to weigh on
/// the machine the service shares).
#[derive(Clone)]
pub(crate) struct Events {
    template: String,
    secret: String,
}

impl Events {
    /// `run` keeps ids of separate runs apart; `price` and `amount` name the pack sold.
    pub(crate) fn new(secret: &str, price: &str, amount: i64) -> anyhow::Result<Self> {
        let mut event: Value = serde_json::from_str(FIXTURE)?;
        event["id"] = Value::from("@EVENT@");
        let object = &mut event["data"]["object"];
        object["id"] = Value::from("@SESSION@");
        object["client_reference_id"] = Value::from("@ACCOUNT@");
        object["metadata"]["account_id"] = Value::from("@ACCOUNT@");
        object["metadata"]["price_id"] = Value::from(price);
        object["payment_intent"] = Value::from("@INTENT@");
        object["amount_total"] = Value::from(amount);
        object["amount_subtotal"] = Value::from(amount);
        Ok(Self {
            template: event.to_string(),
            secret: secret.to_owned(),
        })
    }

    /// The same events, from a Checkout that kept the card for Customer `customer`
    /// (`PurchaseCredits` with `save_payment_method`).
    pub(crate) fn keeping_card(mut self, customer: &str) -> anyhow::Result<Self> {
        let mut event: Value = serde_json::from_str(&self.template)?;
        let object = &mut event["data"]["object"];
        object["customer"] = Value::from(customer);
        object["metadata"]["save_payment_method"] = Value::from("true");
        self.template = event.to_string();
        Ok(self)
    }

    /// The body of event `n` of run `run` for `account`, and its `Stripe-Signature`.
    pub(crate) fn signed(&self, run: &str, n: u64, account: &str) -> (String, String) {
        let body = self
            .template
            .replace("@EVENT@", &format!("evt_bench_{run}_{n}"))
            .replace("@SESSION@", &format!("cs_bench_{run}_{n}"))
            .replace("@INTENT@", &format!("pi_bench_{run}_{n}"))
            .replace("@ACCOUNT@", account);
        let signature = sign(&body, &self.secret, chrono::Utc::now().timestamp());
        (body, signature)
    }
}

/// Stripe's scheme: `t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
pub(crate) fn sign(body: &str, secret: &str, timestamp: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_vector_signs_the_same() {
        let body = r#"{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","object":"invoice"}}}"#;
        assert_eq!(
            sign(body, "whsec_test_secret", 1_700_000_000),
            "t=1700000000,v1=35a597b98e5e7c9feeae726957dcc7d15c533391f9275c017fbde494c89eb0c0"
        );
    }

    #[test]
    fn every_event_is_its_own_session_for_its_account() {
        let events = Events::new("whsec_x", "price_1", 1500).expect("fixture");
        let (body, signature) = events.signed("r1", 7, "acct-3");
        let event: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(event["id"], "evt_bench_r1_7");
        assert_eq!(event["data"]["object"]["id"], "cs_bench_r1_7");
        assert_eq!(event["data"]["object"]["client_reference_id"], "acct-3");
        assert_eq!(event["data"]["object"]["metadata"]["price_id"], "price_1");
        assert!(signature.starts_with("t="));
    }
}
