//! Refunds and disputes of a subscription invoice's payment: the invoice's PaymentIntent is read
//! from Stripe (`expand[]=payments`) when its `invoice.paid` is handled, and a refund or dispute
//! naming it claws back from that period's allowance in proportion, like a purchase's.

use credits::entities::subscription_invoice;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{
    TestApp,
    spend::consume_request,
    subscriptions::{
        FIXTURE_SUBSCRIPTION, PRO_AMOUNT, PRO_CREDITS, PRO_PRICE, Period, event, invoice_json,
        invoice_refunded_event, with_payment,
    },
};

const ACCOUNT: &str = "acct_7d1f3c2a";
const INTENT: &str = "pi_sub_invoice_1";

async fn stored_invoice(app: &TestApp, id: &str) -> subscription_invoice::Model {
    let db = app.db.connect().await;
    subscription_invoice::Entity::find_by_id(id.to_owned())
        .one(&db)
        .await
        .expect("read invoices")
        .expect("the invoice is recorded")
}

#[tokio::test]
async fn a_refund_of_a_subscription_invoice_claws_back_its_allowance_in_proportion() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let period = Period::started_days_ago(2);
    let invoice = invoice_json(
        "in_refund",
        FIXTURE_SUBSCRIPTION,
        ACCOUNT,
        "subscription_create",
        PRO_AMOUNT,
        PRO_PRICE,
        period,
    );
    app.mock_invoice(&with_payment(invoice.clone(), INTENT)).await;
    // The event does not carry the invoice's payments: Stripe is asked once.
    let body = event("evt_paid", "invoice.paid", period.start, invoice);
    app.deliver(&body).await;
    app.deliver(&body).await;
    let asked: Vec<_> = app
        .stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/v1/invoices/in_refund")
        .collect();
    assert_eq!(asked.len(), 1, "a redelivery asks Stripe nothing");
    assert_eq!(asked[0].method.as_str(), "GET");
    let query: Vec<(String, String)> = asked[0].url.query_pairs().into_owned().collect();
    assert_eq!(query.len(), 1, "{query:?}");
    assert!(
        query[0].0.starts_with("expand[") && query[0].1 == "payments",
        "{query:?}"
    );
    assert_eq!(
        stored_invoice(&app, "in_refund")
            .await
            .stripe_payment_intent_id
            .as_deref(),
        Some(INTENT)
    );

    app.grpc
        .clone()
        .consume_credits(consume_request(ACCOUNT, 2000, "use-1"))
        .await
        .expect("ConsumeCredits");
    // Half the money back: half the allowance taken back, from its own lot.
    app.deliver(&invoice_refunded_event(
        "evt_half",
        INTENT,
        PRO_AMOUNT,
        PRO_AMOUNT / 2,
    ))
    .await;
    assert_eq!(
        app.credit_balance(ACCOUNT).await,
        PRO_CREDITS - 2000 - PRO_CREDITS / 2
    );
    assert_eq!(
        app.entries_of_kind(ACCOUNT, "refund").await,
        [(-PRO_CREDITS / 2, "refund".to_owned())]
    );
    let lot = &app.stored_lots(ACCOUNT).await[0];
    assert_eq!(lot.remaining, PRO_CREDITS - 2000 - PRO_CREDITS / 2);
    assert_eq!(
        stored_invoice(&app, "in_refund").await.amount_refunded,
        PRO_AMOUNT / 2
    );

    // All of it back: the rest of the allowance, and what was spent becomes debt.
    app.deliver(&invoice_refunded_event("evt_all", INTENT, PRO_AMOUNT, PRO_AMOUNT))
        .await;
    app.deliver(&invoice_refunded_event(
        "evt_half_late",
        INTENT,
        PRO_AMOUNT,
        PRO_AMOUNT / 2,
    ))
    .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, -2000);
    let stored = stored_invoice(&app, "in_refund").await;
    assert_eq!(
        (stored.status.as_str(), stored.amount_refunded),
        ("refunded", PRO_AMOUNT)
    );
    assert_eq!(
        app.outcomes().await,
        ["credited", "adjusted", "adjusted", "no_change"],
        "the first delivery credits, a redelivery is a duplicate and not stored again"
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_refund_that_arrives_before_the_invoice_is_paid_settles_when_it_is_granted() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let period = Period::started_days_ago(2);
    app.deliver(&invoice_refunded_event(
        "evt_early",
        INTENT,
        PRO_AMOUNT,
        PRO_AMOUNT / 4,
    ))
    .await;
    assert_eq!(app.outcomes().await, ["awaiting_purchase"]);
    let invoice = with_payment(
        invoice_json(
            "in_late",
            FIXTURE_SUBSCRIPTION,
            ACCOUNT,
            "subscription_cycle",
            PRO_AMOUNT,
            PRO_PRICE,
            period,
        ),
        INTENT,
    );
    app.deliver(&event("evt_paid", "invoice.paid", period.start, invoice))
        .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS - PRO_CREDITS / 4);
    assert!(
        app.stripe_requests()
            .await
            .iter()
            .all(|r| !r.url.path().starts_with("/v1/invoices")),
        "the event named its payment: Stripe was not asked"
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_dispute_of_a_subscription_invoice_holds_its_allowance_until_won() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let period = Period::started_days_ago(2);
    let invoice = with_payment(
        invoice_json(
            "in_disputed",
            FIXTURE_SUBSCRIPTION,
            ACCOUNT,
            "subscription_create",
            PRO_AMOUNT,
            PRO_PRICE,
            period,
        ),
        INTENT,
    );
    app.deliver(&event("evt_paid", "invoice.paid", period.start, invoice))
        .await;
    let dispute = |id: &str, kind: &str, status: &str| {
        json!({
            "id": id, "object": "event", "type": kind, "api_version": "2026-09-30.endive",
            "data": { "object": {
                "id": "dp_sub_1", "object": "dispute", "amount": PRO_AMOUNT, "currency": "usd",
                "payment_intent": INTENT, "status": status, "reason": "fraudulent"
            }}
        })
        .to_string()
    };
    app.deliver(&dispute(
        "evt_dp_open",
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, 0);
    app.assert_spend_invariants().await;
    app.deliver(&dispute("evt_dp_won", "charge.dispute.closed", "won"))
        .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    let restored = app
        .stored_lots(ACCOUNT)
        .await
        .into_iter()
        .filter(|l| l.reference == "in_disputed")
        .map(|l| (l.source, l.remaining, l.expires_at.map(|t| t.timestamp())))
        .collect::<Vec<_>>();
    assert!(
        restored
            .iter()
            .all(|(source, _, ends)| source == "allowance" && *ends == Some(period.end)),
        "{restored:?}"
    );
    app.assert_spend_invariants().await;
}
