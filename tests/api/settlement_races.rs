//! Races on one payment: two events describing the same refund, and a completion racing its own
//! refund. Each round runs the pair at the same instant; the balance and the clawbacks must come
//! out exact in every round, on SQLite and on PostgreSQL.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{STANDARD_CREDITS, STANDARD_PRICE, TestApp, fixture, spawn_app};

const ROUNDS: usize = 25;
/// The standard pack: 1000 credits for 1500.
const AMOUNT: i64 = 1500;

/// A paid `checkout.session.completed` for `session`, paid by `intent`, for `account`.
fn completed(event_id: &str, session: &str, intent: &str, account: &str) -> String {
    let mut event: Value =
        serde_json::from_str(&fixture("checkout_session_completed.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    let object = &mut event["data"]["object"];
    object["id"] = Value::from(session);
    object["payment_intent"] = Value::from(intent);
    object["client_reference_id"] = Value::from(account);
    object["metadata"]["account_id"] = Value::from(account);
    object["metadata"]["price_id"] = Value::from(STANDARD_PRICE);
    object["amount_total"] = Value::from(AMOUNT);
    object["amount_subtotal"] = Value::from(AMOUNT);
    event.to_string()
}

fn charge_refunded(event_id: &str, intent: &str, amount_refunded: i64) -> String {
    let mut event: Value = serde_json::from_str(&fixture("charge_refunded.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    let object = &mut event["data"]["object"];
    object["payment_intent"] = Value::from(intent);
    object["amount"] = Value::from(AMOUNT);
    object["amount_captured"] = Value::from(AMOUNT);
    object["amount_refunded"] = Value::from(amount_refunded);
    object["refunded"] = Value::from(amount_refunded >= AMOUNT);
    event.to_string()
}

fn refund_created(event_id: &str, intent: &str, refund_id: &str, amount: i64) -> String {
    json!({
        "id": event_id, "object": "event", "type": "refund.created", "api_version": "2026-09-30.endive",
        "data": { "object": {
            "id": refund_id, "object": "refund", "amount": amount, "currency": "usd",
            "payment_intent": intent, "status": "succeeded"
        }}
    })
    .to_string()
}

/// A new account with a pending standard purchase; returns (account, session).
async fn pending_purchase(app: &TestApp, round: usize) -> (String, String) {
    let account = format!("race-{round}");
    let started = app
        .purchase(&account, &format!("race-{round}@example.com"), STANDARD_PRICE)
        .await
        .expect("PurchaseCredits");
    (account, started.checkout_session_id)
}

/// Posts both bodies at the same instant; both must be answered 200 (or, on a lock timeout,
/// 503 and then 200 on Stripe's retry).
async fn race(app: &Arc<TestApp>, first: String, second: String) {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = tokio::task::JoinSet::new();
    for body in [first, second] {
        let (app, barrier) = (app.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let mut status = app.post_webhook(&body).await.status().as_u16();
            // Stripe redelivers what was not acknowledged.
            while status == 503 {
                status = app.post_webhook(&body).await.status().as_u16();
            }
            status
        });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(statuses, [200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refund_created_and_charge_refunded_for_one_refund_at_once_claw_back_once() {
    let app = Arc::new(spawn_app().await);
    app.mock_checkout_sessions().await;
    for round in 0..ROUNDS {
        let (account, session) = pending_purchase(&app, round).await;
        let intent = format!("pi_race_refund_{round}");
        let paid = completed(&format!("evt_paid_{round}"), &session, &intent, &account);
        assert_eq!(app.post_webhook(&paid).await.status(), 200);
        assert_eq!(app.credit_balance(&account).await, STANDARD_CREDITS);

        // One refund of 500 of 1500, reported both ways at the same instant.
        race(
            &app,
            refund_created(&format!("evt_re_{round}"), &intent, &format!("re_{round}"), 500),
            charge_refunded(&format!("evt_ch_{round}"), &intent, 500),
        )
        .await;

        // floor(1000 × 500 / 1500) = 333 taken back, once.
        assert_eq!(
            app.credit_balance(&account).await,
            667,
            "round {round}: one clawback of 333"
        );
        let clawbacks: Vec<i64> = app
            .ledger_of(&account)
            .await
            .iter()
            .filter(|e| e.reason == "refund")
            .map(|e| e.delta)
            .collect();
        assert_eq!(clawbacks, [-333], "round {round}");
        let purchase = &app.purchases_of(&account).await[0];
        assert_eq!(
            (purchase.status.as_str(), purchase.amount_refunded),
            ("completed", 500)
        );
    }
    app.assert_ledger_matches_balances().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_racing_its_full_refund_ends_refunded_with_the_credits_taken_back() {
    let app = Arc::new(spawn_app().await);
    app.mock_checkout_sessions().await;
    for round in 0..ROUNDS {
        let (account, session) = pending_purchase(&app, round).await;
        let intent = format!("pi_race_complete_{round}");
        race(
            &app,
            completed(&format!("evt_paid_{round}"), &session, &intent, &account),
            charge_refunded(&format!("evt_ch_{round}"), &intent, AMOUNT),
        )
        .await;

        assert_eq!(
            app.credit_balance(&account).await,
            0,
            "round {round}: credited and taken back"
        );
        let deltas: Vec<i64> = app.ledger_of(&account).await.iter().map(|e| e.delta).collect();
        assert_eq!(
            deltas,
            [STANDARD_CREDITS, -STANDARD_CREDITS],
            "round {round}: one credit, one clawback"
        );
        let purchase = &app.purchases_of(&account).await[0];
        assert_eq!(
            (purchase.status.as_str(), purchase.amount_refunded),
            ("refunded", AMOUNT)
        );
    }
    app.assert_ledger_matches_balances().await;
}
