//! A session naming its pack by `metadata.price_id` grants pack credits × quantity too: when
//! its `amount_total` is not the pack's price × 1, the line items say how many were bought.

use serde_json::Value;

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_SESSION, STANDARD_CREDITS, STANDARD_PRICE, TestApp, fixture, spawn_app,
};

/// The completion fixture (2 × Standard, 3000 cents) with `metadata.price_id` and the given
/// total, as a Checkout made elsewhere with an adjustable quantity sends it.
fn completion(event_id: &str, session_id: &str, amount_total: i64) -> String {
    let mut event: Value =
        serde_json::from_str(&fixture("checkout_session_completed.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    let session = &mut event["data"]["object"];
    session["id"] = Value::from(session_id);
    session["amount_total"] = Value::from(amount_total);
    session["metadata"]["price_id"] = Value::from(STANDARD_PRICE);
    event.to_string()
}

async fn line_item_calls(app: &TestApp) -> usize {
    app.stripe_requests()
        .await
        .iter()
        .filter(|r| r.url.path().ends_with("/line_items"))
        .count()
}

#[tokio::test]
async fn a_price_id_session_of_two_packs_grants_twice_the_pack_through_its_line_items() {
    let app = spawn_app().await;
    app.fixture_account().await;
    app.mock_line_items(FIXTURE_SESSION).await;

    let response = app
        .post_webhook(&completion("evt_qty_2", FIXTURE_SESSION, 3000))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(
        line_item_calls(&app).await,
        1,
        "asked Stripe how many were bought"
    );
    let purchases = app.purchases_of(FIXTURE_ACCOUNT).await;
    let bought = purchases
        .iter()
        .find(|p| p.stripe_checkout_session_id == FIXTURE_SESSION)
        .expect("purchase recorded");
    assert_eq!((bought.quantity, bought.amount), (2 * STANDARD_CREDITS, 3000));
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_price_id_session_at_the_pack_price_grants_one_pack_without_asking_stripe() {
    let app = spawn_app().await;
    app.fixture_account().await;
    let response = app
        .post_webhook(&completion("evt_qty_1", "cs_test_single_pack", 1500))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, STANDARD_CREDITS);
    assert_eq!(line_item_calls(&app).await, 0);
}
