//! Serde types for the slice of Stripe's subscription and invoice payloads this service reads
//! (`customer.subscription.*`, `invoice.paid`, `invoice.payment_failed`), for the API version
//! async-stripe pins (2026-09-30): a subscription's period is on its items, an invoice names its
//! subscription under `parent.subscription_details`, and the period paid for is each line's
//! `period`. Tolerant like `payload`: unknown fields ignored, nulls accepted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::subscriptions::{InvoiceFacts, SubscriptionEventKind, SubscriptionFacts, SubscriptionStatus};

/// The billing reasons whose payment grants an allowance: a new subscription, a renewal, and an
/// upgrade's proration.
const GRANTING_REASONS: [&str; 3] = ["subscription_create", "subscription_cycle", "subscription_update"];

/// An id, or the object when expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ref {
    Id(String),
    Object { id: String },
}

impl Ref {
    fn into_id(self) -> String {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

type Metadata = Option<HashMap<String, serde_json::Value>>;

fn meta(metadata: &Metadata, key: &str) -> Option<String> {
    metadata
        .as_ref()?
        .get(key)?
        .as_str()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn time(field: &str, secs: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| format!("{field} {secs} is not a time"))
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct Subscription {
    #[serde(default)]
    object: Option<String>,
    id: String,
    status: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    customer: Option<Ref>,
    #[serde(default)]
    items: Option<List<SubscriptionItem>>,
    #[serde(default)]
    cancel_at_period_end: Option<bool>,
    #[serde(default)]
    canceled_at: Option<i64>,
}

#[derive(Deserialize)]
struct SubscriptionItem {
    #[serde(default)]
    current_period_start: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
    #[serde(default)]
    price: Option<Ref>,
}

#[derive(Deserialize)]
struct Invoice {
    #[serde(default)]
    object: Option<String>,
    id: String,
    #[serde(default)]
    billing_reason: Option<String>,
    #[serde(default)]
    amount_paid: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    parent: Option<InvoiceParent>,
    #[serde(default)]
    lines: Option<List<Line>>,
    /// Present only when the event was sent with it included.
    #[serde(default)]
    payments: Option<List<InvoicePayment>>,
}

#[derive(Deserialize)]
struct InvoiceParent {
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Deserialize)]
struct SubscriptionDetails {
    #[serde(default)]
    subscription: Option<Ref>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    period: Option<Period>,
    #[serde(default)]
    parent: Option<LineParent>,
    #[serde(default)]
    pricing: Option<Pricing>,
}

#[derive(Deserialize)]
struct Period {
    start: i64,
    end: i64,
}

#[derive(Deserialize)]
struct LineParent {
    #[serde(default)]
    subscription_item_details: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Pricing {
    #[serde(default)]
    price_details: Option<PriceDetails>,
}

#[derive(Deserialize)]
struct PriceDetails {
    #[serde(default)]
    price: Option<Ref>,
}

#[derive(Deserialize)]
struct InvoicePayment {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment: Option<AssociatedPayment>,
}

#[derive(Deserialize)]
struct AssociatedPayment {
    #[serde(default)]
    payment_intent: Option<Ref>,
}

fn object<T: serde::de::DeserializeOwned>(
    raw: &RawValue,
    kind: &str,
    tag: impl Fn(&T) -> Option<&str>,
) -> Result<T, String> {
    let object: T =
        serde_json::from_str(raw.get()).map_err(|err| format!("data.object is not a {kind}: {err}"))?;
    if tag(&object).is_some_and(|t| t != kind) {
        return Err(format!("data.object is not a {kind}"));
    }
    Ok(object)
}

/// `customer.subscription.created|updated|deleted` as facts.
pub(super) fn subscription_facts(
    raw: &RawValue,
    kind: SubscriptionEventKind,
    created: i64,
) -> Result<SubscriptionFacts, String> {
    let sub: Subscription = object(raw, "subscription", |s: &Subscription| s.object.as_deref())?;
    let version = kind
        .version(created)
        .ok_or_else(|| format!("created {created} is not a time"))?;
    let item = sub.items.and_then(|items| items.data.into_iter().next());
    let current_period = match item
        .as_ref()
        .map(|i| (i.current_period_start, i.current_period_end))
    {
        Some((Some(start), Some(end))) => Some((
            time("current_period_start", start)?,
            time("current_period_end", end)?,
        )),
        _ => None,
    };
    Ok(SubscriptionFacts {
        account_id: meta(&sub.metadata, "account_id"),
        plan_id: meta(&sub.metadata, "plan_id"),
        price_id: item.and_then(|i| i.price).map(Ref::into_id),
        customer_id: sub.customer.map(Ref::into_id),
        status: SubscriptionStatus::parse(&sub.status),
        current_period,
        cancel_at_period_end: sub.cancel_at_period_end.unwrap_or(false),
        canceled_at: sub.canceled_at.map(|at| time("canceled_at", at)).transpose()?,
        deleted: kind == SubscriptionEventKind::Deleted,
        version,
        subscription_id: sub.id,
    })
}

/// `invoice.paid` / `invoice.payment_failed` as facts; `None` for an invoice that is not a
/// subscription's, or (when `paid`) whose billing reason grants nothing.
pub(super) fn invoice_facts(
    raw: &RawValue,
    paid: bool,
    created: i64,
) -> Result<Option<InvoiceFacts>, String> {
    let invoice: Invoice = object(raw, "invoice", |i: &Invoice| i.object.as_deref())?;
    let Some(details) = invoice.parent.and_then(|p| p.subscription_details) else {
        return Ok(None);
    };
    let Some(subscription_id) = details.subscription.map(Ref::into_id) else {
        return Ok(None);
    };
    let billing_reason = invoice.billing_reason.unwrap_or_default();
    if paid && !GRANTING_REASONS.contains(&billing_reason.as_str()) {
        return Ok(None);
    }
    // The line that pays for the subscription's period: of the subscription's lines, the
    // largest (an upgrade's invoice also credits the unused time of the old plan, negative).
    let lines = invoice.lines.map(|l| l.data).unwrap_or_default();
    let line = lines
        .iter()
        .filter(|l| l.period.is_some())
        .filter(|l| {
            l.parent
                .as_ref()
                .is_some_and(|p| p.subscription_item_details.is_some())
        })
        .max_by_key(|l| l.amount.unwrap_or(0))
        .or_else(|| {
            lines
                .iter()
                .filter(|l| l.period.is_some())
                .max_by_key(|l| l.amount.unwrap_or(0))
        })
        .ok_or_else(|| format!("invoice {} has no line with a period", invoice.id))?;
    let period = line
        .period
        .as_ref()
        .ok_or_else(|| format!("invoice {} has no line with a period", invoice.id))?;
    let (period_start, period_end) = (
        time("period.start", period.start)?,
        time("period.end", period.end)?,
    );
    if period_end < period_start {
        return Err(format!(
            "invoice {}: its line's period ends before it starts",
            invoice.id
        ));
    }
    let price_id = line
        .pricing
        .as_ref()
        .and_then(|p| p.price_details.as_ref())
        .and_then(|d| d.price.as_ref())
        .map(|r| match r {
            Ref::Id(id) | Ref::Object { id } => id.clone(),
        });
    let amount_paid = invoice.amount_paid.unwrap_or(0);
    if amount_paid < 0 {
        return Err(format!(
            "invoice {}: amount_paid {amount_paid} is negative",
            invoice.id
        ));
    }
    let currency = invoice
        .currency
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("invoice {} has no currency", invoice.id))?;
    let payments = invoice.payments.map(|p| p.data).unwrap_or_default();
    let payment_intent_id = payments
        .iter()
        .filter(|p| p.status.as_deref() == Some("paid"))
        .chain(payments.iter())
        .find_map(|p| p.payment.as_ref().and_then(|a| a.payment_intent.as_ref()))
        .map(|r| match r {
            Ref::Id(id) | Ref::Object { id } => id.clone(),
        });
    let version = SubscriptionEventKind::Updated
        .version(created)
        .ok_or_else(|| format!("created {created} is not a time"))?;
    Ok(Some(InvoiceFacts {
        subscription_id,
        account_id: meta(&details.metadata, "account_id"),
        plan_id: meta(&details.metadata, "plan_id"),
        price_id,
        billing_reason,
        period_start,
        period_end,
        amount_paid,
        currency,
        payment_intent_id,
        version,
        invoice_id: invoice.id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("JSON")
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("fixture {path}: {err}"))
    }

    #[test]
    fn the_fixture_subscription_reads_its_period_from_its_item() {
        let facts = subscription_facts(
            &raw(&fixture("api_subscription.json")),
            SubscriptionEventKind::Updated,
            1_795_000_200,
        )
        .expect("reads");
        assert_eq!(facts.subscription_id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
        assert_eq!(facts.account_id.as_deref(), Some("acct_7d1f3c2a"));
        assert_eq!(facts.plan_id.as_deref(), Some("pro"));
        assert_eq!(facts.price_id.as_deref(), Some("price_1PgafmB7WZ01zgkW6dKueIc5"));
        assert_eq!(facts.status, SubscriptionStatus::Active);
        let (start, end) = facts.current_period.expect("period");
        assert_eq!(
            (start.timestamp(), end.timestamp()),
            (1_795_000_100, 1_797_592_100)
        );
        assert_eq!(facts.version, 17_950_002_002);
        assert!(!facts.deleted);
    }

    #[test]
    fn the_fixture_invoice_pays_for_its_line_period() {
        let facts = invoice_facts(&raw(&fixture("api_invoice.json")), true, 1_795_000_100)
            .expect("reads")
            .expect("a subscription invoice");
        assert_eq!(facts.invoice_id, "in_1Pgc6tB7WZ01zgkWu9fdqL6I");
        assert_eq!(facts.subscription_id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
        assert_eq!(facts.billing_reason, "subscription_create");
        assert_eq!(
            (facts.period_start.timestamp(), facts.period_end.timestamp()),
            (1_795_000_100, 1_797_592_100)
        );
        assert_eq!((facts.amount_paid, facts.currency.as_str()), (2000, "usd"));
        assert_eq!(facts.price_id.as_deref(), Some("price_1PgafmB7WZ01zgkW6dKueIc5"));
        assert_eq!(facts.payment_intent_id, None);
    }

    #[test]
    fn invoices_outside_subscriptions_or_granting_reasons_are_not_read() {
        let manual =
            r#"{"id":"in_1","object":"invoice","billing_reason":"manual","currency":"usd","parent":null}"#;
        assert_eq!(invoice_facts(&raw(manual), true, 1).ok(), Some(None));
        let threshold = r#"{"id":"in_2","object":"invoice","billing_reason":"subscription_threshold","currency":"usd",
            "parent":{"subscription_details":{"subscription":"sub_1","metadata":{}}}}"#;
        assert_eq!(invoice_facts(&raw(threshold), true, 1).ok(), Some(None));
        let charge = r#"{"id":"ch_1","object":"charge"}"#;
        assert!(invoice_facts(&raw(charge), true, 1).is_err());
    }

    #[test]
    fn a_proration_invoice_pays_for_its_positive_line_and_names_its_payment() {
        let body = r#"{"id":"in_up","object":"invoice","billing_reason":"subscription_update","amount_paid":1500,
            "currency":"USD","parent":{"subscription_details":{"subscription":"sub_1","metadata":{"account_id":"a1","plan_id":"basic"}}},
            "lines":{"data":[
              {"amount":-500,"period":{"start":200,"end":300},"parent":{"subscription_item_details":{"proration":true}},
               "pricing":{"price_details":{"price":"price_basic"}}},
              {"amount":2000,"period":{"start":200,"end":300},"parent":{"subscription_item_details":{"proration":true}},
               "pricing":{"price_details":{"price":{"id":"price_pro"}}}}]},
            "payments":{"data":[{"status":"paid","payment":{"type":"payment_intent","payment_intent":"pi_up"}}]}}"#;
        let facts = invoice_facts(&raw(body), true, 250)
            .expect("reads")
            .expect("granting");
        assert_eq!(facts.price_id.as_deref(), Some("price_pro"));
        assert_eq!(facts.currency, "usd");
        assert_eq!(facts.payment_intent_id.as_deref(), Some("pi_up"));
        assert_eq!(facts.billing_reason, "subscription_update");
    }
}
