//! Subscriptions as tests drive them: an app selling two plans, Stripe's subscription and
//! invoice events built from the `api_subscription.json` and `api_invoice.json` fixtures (the
//! API version async-stripe pins), the fake Stripe's invoice and subscription answers, and
//! the subscription RPCs.

use chrono::{DateTime, Utc};
use credits::{entities::credit_lot, grpc::pb};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tonic::Status;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use super::{TestApp, fixture};

/// The fixtures' plan: `pro`, 10,000 credits a month for 2000 usd, its Price.
pub const PRO_PLAN: &str = "pro";
pub const PRO_PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
pub const PRO_CREDITS: i64 = 10_000;
pub const PRO_AMOUNT: i64 = 2000;
pub const PRO_ROLLOVER_CAP: i64 = 5000;
/// A smaller plan to upgrade from (`basic`).
pub const BASIC_PRICE: &str = "price_basic_test";
pub const BASIC_CREDITS: i64 = 4000;
pub const BASIC_AMOUNT: i64 = 1000;
/// The fixtures' subscription and invoice.
pub const FIXTURE_SUBSCRIPTION: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";

/// Packs and plans of a subscription test app (pack ids and plan ids share one namespace).
pub const SUBSCRIPTION_PACKS: &str = r#"
[[pack]]
id = "standard"
name = "Standard"
credits = 1000
unit_amount = 1500
currency = "usd"
stripe_price_id = "price_1PgafmB7WZ01zgkW02Hf9z6c"

[[plan]]
id = "pro"
name = "Pro"
credits = 10000
interval = "month"
unit_amount = 2000
currency = "usd"
rollover_cap = 5000
stripe_price_id = "price_1PgafmB7WZ01zgkW6dKueIc5"

[[plan]]
id = "basic"
name = "Basic"
credits = 4000
interval = "month"
unit_amount = 1000
currency = "usd"
stripe_price_id = "price_basic_test"

[[plan]]
id = "unsynced"
name = "Not on Stripe yet"
credits = 1
interval = "year"
unit_amount = 100
currency = "usd"
"#;

/// A billing period: whole seconds, as Stripe sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    /// A month-long period that started `days_ago` days ago.
    pub fn started_days_ago(days_ago: i64) -> Self {
        let start = Utc::now().timestamp() - days_ago * 86_400;
        Self {
            start,
            end: start + 30 * 86_400,
        }
    }

    /// The period after this one.
    pub fn next(self) -> Self {
        Self {
            start: self.end,
            end: self.end + 30 * 86_400,
        }
    }

    pub fn end_time(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.end, 0).expect("a time")
    }
}

/// A subscription as Stripe's API shows it: the fixture with this id, account, price, status
/// and current period.
pub fn subscription_json(id: &str, account: &str, price: &str, status: &str, period: Period) -> Value {
    let mut sub: Value = serde_json::from_str(&fixture("api_subscription.json")).expect("fixture");
    sub["id"] = Value::from(id);
    sub["status"] = Value::from(status);
    sub["metadata"]["account_id"] = Value::from(account);
    let item = &mut sub["items"]["data"][0];
    item["subscription"] = Value::from(id);
    item["current_period_start"] = Value::from(period.start);
    item["current_period_end"] = Value::from(period.end);
    item["price"]["id"] = Value::from(price);
    item["plan"]["id"] = Value::from(price);
    sub
}

/// An event wrapping `object`, created at `created`.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "api_version": "2026-09-30.endive",
        "created": created, "livemode": false, "pending_webhooks": 1,
        "data": { "object": object }
    })
    .to_string()
}

/// A subscription invoice as Stripe's API shows it: the fixture with this id, subscription,
/// account, billing reason, amount and one line for `price` over `period`.
pub fn invoice_json(
    id: &str,
    subscription: &str,
    account: &str,
    reason: &str,
    amount: i64,
    price: &str,
    period: Period,
) -> Value {
    let mut invoice: Value = serde_json::from_str(&fixture("api_invoice.json")).expect("fixture");
    invoice["id"] = Value::from(id);
    invoice["billing_reason"] = Value::from(reason);
    for field in [
        "amount_due",
        "amount_paid",
        "subtotal",
        "subtotal_excluding_tax",
        "total",
        "total_excluding_tax",
    ] {
        invoice[field] = Value::from(amount);
    }
    let details = &mut invoice["parent"]["subscription_details"];
    details["subscription"] = Value::from(subscription);
    details["metadata"]["account_id"] = Value::from(account);
    let line = &mut invoice["lines"]["data"][0];
    line["invoice"] = Value::from(id);
    line["amount"] = Value::from(amount);
    line["subtotal"] = Value::from(amount);
    line["period"] = json!({ "start": period.start, "end": period.end });
    line["pricing"]["price_details"]["price"] = Value::from(price);
    line["parent"]["subscription_item_details"]["subscription"] = Value::from(subscription);
    line["metadata"]["account_id"] = Value::from(account);
    invoice
}

/// The invoice's payment by `intent`, as `expand[]=payments` (or an event) shows it.
pub fn with_payment(mut invoice: Value, intent: &str) -> Value {
    let amount = invoice["amount_paid"].clone();
    let id = invoice["id"].clone();
    invoice["payments"] = json!({
        "object": "list", "has_more": false, "url": "/v1/invoice_payments",
        "data": [{
            "id": format!("inpay_{intent}"), "object": "invoice_payment", "amount_paid": amount,
            "amount_requested": amount, "created": 1795000100, "currency": "usd", "invoice": id,
            "is_default": true, "livemode": false, "status": "paid",
            "payment": { "type": "payment_intent", "payment_intent": intent },
            "status_transitions": { "canceled_at": null, "paid_at": 1795000100 }
        }]
    });
    invoice
}

/// `charge.refunded` of an invoice's payment with a cumulative `amount_refunded`.
pub fn invoice_refunded_event(id: &str, intent: &str, amount: i64, amount_refunded: i64) -> String {
    let mut event: Value = serde_json::from_str(&fixture("charge_refunded.json")).expect("fixture");
    event["id"] = Value::from(id);
    let charge = &mut event["data"]["object"];
    charge["payment_intent"] = Value::from(intent);
    charge["amount"] = Value::from(amount);
    charge["amount_captured"] = Value::from(amount);
    charge["amount_refunded"] = Value::from(amount_refunded);
    charge["refunded"] = Value::from(amount_refunded >= amount);
    event.to_string()
}

impl TestApp {
    /// A subscription app: the plans above; the fake Stripe knows no invoice until a test
    /// mounts one (`mock_invoice`), and says so as Stripe does.
    pub async fn spawn_subscriptions() -> Self {
        let app = Self::builder().packs(SUBSCRIPTION_PACKS).spawn().await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/invoices/[^/]+$"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "message": "No such invoice", "param": "id"
            }})))
            .with_priority(10)
            .mount(&app.stripe)
            .await;
        app
    }

    /// The fake Stripe answers `GET /v1/invoices/{id}` (with `expand[]=payments`) with
    /// `invoice`.
    pub async fn mock_invoice(&self, invoice: &Value) {
        let id = invoice["id"].as_str().expect("an invoice id");
        Mock::given(method("GET"))
            .and(path(format!("/v1/invoices/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(invoice))
            .mount(&self.stripe)
            .await;
    }

    pub async fn subscribe(&self, request: pb::SubscribeRequest) -> Result<pb::SubscribeResponse, Status> {
        self.grpc
            .clone()
            .subscribe(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn get_subscription(&self, id: &str) -> Result<pb::Subscription, Status> {
        self.grpc
            .clone()
            .get_subscription(pb::GetSubscriptionRequest {
                subscription_id: id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn list_subscriptions(&self, account: &str) -> Result<Vec<pb::Subscription>, Status> {
        self.grpc
            .clone()
            .list_subscriptions(pb::ListSubscriptionsRequest {
                account_id: account.into(),
            })
            .await
            .map(|r| r.into_inner().subscriptions)
    }

    pub async fn cancel_subscription(
        &self,
        id: &str,
        at_period_end: bool,
    ) -> Result<pb::Subscription, Status> {
        self.grpc
            .clone()
            .cancel_subscription(pb::CancelSubscriptionRequest {
                subscription_id: id.into(),
                at_period_end,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every lot of the account, as stored, oldest first.
    pub async fn stored_lots(&self, account: &str) -> Vec<credit_lot::Model> {
        let db = self.db.connect().await;
        credit_lot::Entity::find()
            .filter(credit_lot::Column::AccountId.eq(account))
            .order_by_asc(credit_lot::Column::CreatedAt)
            .order_by_asc(credit_lot::Column::Id)
            .all(&db)
            .await
            .expect("read lots")
    }

    /// Posts every body at once, each until acknowledged (a 503 is redelivered, as Stripe does).
    pub async fn deliver_all(&self, bodies: Vec<String>) {
        let url = self.url("/account/stripe-webhook/");
        let mut deliveries = tokio::task::JoinSet::new();
        for body in bodies {
            let (http, url) = (self.http.clone(), url.clone());
            deliveries.spawn(async move {
                loop {
                    let signature = super::stripe_signature(&body, super::WEBHOOK_SECRET, super::now());
                    let status = http
                        .post(&url)
                        .header("Stripe-Signature", signature)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    match status {
                        200 => return,
                        503 | 0 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                        other => panic!("webhook answered {other}"),
                    }
                }
            });
        }
        deliveries.join_all().await;
    }
}
