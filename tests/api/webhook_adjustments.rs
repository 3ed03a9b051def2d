//! Refunds and disputes: proportional clawback, holds and releases, in any order, never twice.

use credits::grpc::pb;
use serde_json::{Value, json};

use crate::helpers::{FIXTURE_ACCOUNT, FIXTURE_SESSION, STANDARD_CREDITS, TestApp, fixture, spawn_app};

const INTENT: &str = "pi_1PgafyB7WZ01zgkWSjxsAJo3";
const PAID: i64 = 2 * STANDARD_CREDITS;

async fn complete(app: &TestApp) {
    assert_eq!(
        app.post_webhook(&fixture("checkout_session_completed.json"))
            .await
            .status(),
        200
    );
}

/// `charge.refunded` with a cumulative `amount_refunded`, as its own event.
fn charge_refunded(event_id: &str, amount_refunded: i64) -> String {
    let mut event: Value = serde_json::from_str(&fixture("charge_refunded.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    event["data"]["object"]["amount_refunded"] = Value::from(amount_refunded);
    event["data"]["object"]["refunded"] = Value::from(amount_refunded >= 3000);
    event.to_string()
}

fn refund_event(event_id: &str, kind: &str, refund_id: &str, amount: i64, status: &str) -> String {
    json!({
        "id": event_id, "object": "event", "type": kind, "api_version": "2026-09-30.endive",
        "data": { "object": {
            "id": refund_id, "object": "refund", "amount": amount, "currency": "usd",
            "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8", "payment_intent": INTENT, "status": status
        }}
    })
    .to_string()
}

fn dispute_event(event_id: &str, kind: &str, status: &str) -> String {
    json!({
        "id": event_id, "object": "event", "type": kind, "api_version": "2026-09-30.endive",
        "data": { "object": {
            "id": "dp_1PgbzzB7WZ01zgkW00000001", "object": "dispute", "amount": 3000, "currency": "usd",
            "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8", "payment_intent": INTENT, "status": status,
            "reason": "fraudulent"
        }}
    })
    .to_string()
}

async fn purchase(app: &TestApp) -> credits::entities::credit_purchase::Model {
    app.purchases_of(FIXTURE_ACCOUNT)
        .await
        .into_iter()
        .find(|p| p.stripe_checkout_session_id == FIXTURE_SESSION)
        .expect("the fixture purchase")
}

async fn last_outcome(app: &TestApp) -> String {
    app.events().await.pop().map(|e| e.outcome).unwrap_or_default()
}

#[tokio::test]
async fn a_full_refund_takes_all_credits_back_once_and_marks_the_purchase_refunded() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    complete(&app).await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID);

    let refund = fixture("charge_refunded.json");
    assert_eq!(app.post_webhook(&refund).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    assert_eq!(last_outcome(&app).await, "adjusted");
    let p = purchase(&app).await;
    assert_eq!((p.status.as_str(), p.amount_refunded), ("refunded", 3000));

    // Redelivered, or reported again under another event id: nothing more.
    app.post_webhook(&refund).await;
    app.post_webhook(&charge_refunded("evt_refund_again", 3000)).await;
    app.post_webhook(&refund_event(
        "evt_re_created",
        "refund.created",
        "re_full",
        3000,
        "succeeded",
    ))
    .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    app.assert_ledger_matches_balances().await;

    let listed = app.listed_purchases(FIXTURE_ACCOUNT).await;
    let shown = listed
        .iter()
        .find(|p| p.stripe_checkout_session_id == FIXTURE_SESSION)
        .expect("listed");
    assert_eq!(shown.status(), pb::PurchaseStatus::Refunded);
    assert_eq!(shown.amount_refunded, 3000);
}

#[tokio::test]
async fn partial_refunds_claw_back_in_proportion_without_counting_money_twice() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    complete(&app).await;

    // 1000 of 3000 refunded: floor(2000 × 1000 / 3000) = 666 taken.
    app.post_webhook(&refund_event(
        "evt_re1",
        "refund.created",
        "re_1",
        1000,
        "succeeded",
    ))
    .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID - 666);
    // The charge reports the same money cumulatively: nothing more.
    app.post_webhook(&charge_refunded("evt_ch_1000", 1000)).await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID - 666);
    // A second refund, seen first through the charge total (2000), then as its own event.
    app.post_webhook(&charge_refunded("evt_ch_2000", 2000)).await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID - 1333);
    app.post_webhook(&refund_event(
        "evt_re2",
        "refund.created",
        "re_2",
        1000,
        "succeeded",
    ))
    .await;
    // An old total arriving late changes nothing.
    app.post_webhook(&charge_refunded("evt_ch_1000_late", 1000)).await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID - 1333);

    let p = purchase(&app).await;
    assert_eq!(
        (p.status.as_str(), p.amount_refunded),
        ("completed", 2000),
        "partial stays completed"
    );
    let deltas: Vec<i64> = app
        .ledger_of(FIXTURE_ACCOUNT)
        .await
        .iter()
        .map(|e| e.delta)
        .collect();
    assert_eq!(deltas, [PAID, -666, -667]);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_refund_before_completion_is_kept_and_applied_when_the_purchase_completes() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    assert_eq!(
        app.post_webhook(&fixture("charge_refunded.json")).await.status(),
        200
    );
    assert_eq!(last_outcome(&app).await, "awaiting_purchase");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);

    complete(&app).await;
    assert_eq!(
        app.credit_balance(FIXTURE_ACCOUNT).await,
        0,
        "credited and taken back in one step"
    );
    assert_eq!(purchase(&app).await.status, "refunded");
    let deltas: Vec<i64> = app
        .ledger_of(FIXTURE_ACCOUNT)
        .await
        .iter()
        .map(|e| e.delta)
        .collect();
    assert_eq!(deltas, [PAID, -PAID]);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_refund_of_spent_credits_takes_the_balance_below_zero() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    complete(&app).await;
    // Spend 1500 of the 2000 credits.
    app.consume(FIXTURE_ACCOUNT, 1500, "test-spend")
        .await
        .expect("consume");

    app.post_webhook(&fixture("charge_refunded.json")).await;
    assert_eq!(
        app.credit_balance(FIXTURE_ACCOUNT).await,
        -1500,
        "GetBalance shows the debt"
    );
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_dispute_holds_the_credits_and_winning_it_releases_them() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    complete(&app).await;

    app.post_webhook(&dispute_event(
        "evt_dp_created",
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    assert_eq!(last_outcome(&app).await, "adjusted");
    app.post_webhook(&dispute_event(
        "evt_dp_updated",
        "charge.dispute.updated",
        "under_review",
    ))
    .await;
    assert_eq!(
        app.credit_balance(FIXTURE_ACCOUNT).await,
        0,
        "an update holds nothing more"
    );

    app.post_webhook(&dispute_event("evt_dp_closed", "charge.dispute.closed", "won"))
        .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID);
    app.post_webhook(&dispute_event(
        "evt_dp_closed_again",
        "charge.dispute.closed",
        "won",
    ))
    .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID);
    assert_eq!(purchase(&app).await.status, "completed");
    let entries: Vec<(String, i64)> = app
        .ledger_of(FIXTURE_ACCOUNT)
        .await
        .into_iter()
        .map(|e| (e.kind, e.delta))
        .collect();
    let kinds = |list: &[(&str, i64)]| {
        list.iter()
            .map(|(k, d)| ((*k).to_owned(), *d))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        entries,
        kinds(&[("purchase", PAID), ("dispute", -PAID), ("dispute", PAID)]),
        "one hold, one release"
    );
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_lost_dispute_keeps_the_credits_taken_whatever_the_order() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    complete(&app).await;
    // The close arrives before the open.
    app.post_webhook(&dispute_event("evt_dp_closed", "charge.dispute.closed", "lost"))
        .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    app.post_webhook(&dispute_event(
        "evt_dp_created",
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    assert_eq!(
        app.credit_balance(FIXTURE_ACCOUNT).await,
        0,
        "the late open neither holds twice nor reopens"
    );
    assert_eq!(purchase(&app).await.status, "refunded");
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn async_success_before_completion_credits_once() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    app.mock_line_items(crate::helpers::SEPA_SESSION).await;
    // The delayed-payment session's success arrives before its completion event.
    app.post_webhook(&fixture("checkout_session_async_payment_succeeded.json"))
        .await;
    app.post_webhook(&fixture("checkout_session_completed_unpaid.json"))
        .await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, PAID);
    let outcomes: Vec<String> = app.outcomes().await;
    assert_eq!(outcomes, ["credited", "no_change"]);
}
