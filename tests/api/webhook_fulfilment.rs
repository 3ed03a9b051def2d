//! Fulfilment: the fixtures end to end, crediting exactly once, and every outcome.

use credits::grpc::pb;
use serde_json::Value;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, SEPA_SESSION, STANDARD_CREDITS, STANDARD_PRICE,
    STARTER_CREDITS, TestApp, fixture, spawn_app,
};

fn with(body: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut event: Value = serde_json::from_str(body).expect("fixture is JSON");
    edit(&mut event);
    event.to_string()
}

async fn status_of_session(app: &TestApp, session: &str) -> Option<String> {
    app.purchases_of(FIXTURE_ACCOUNT)
        .await
        .into_iter()
        .find(|p| p.stripe_checkout_session_id == session)
        .map(|p| p.status)
}

#[tokio::test]
async fn checkout_completed_fixture_credits_pack_times_quantity_from_line_items_once() {
    let app = spawn_app().await;
    app.fixture_account().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    let before = app.balance(FIXTURE_ACCOUNT).await.expect("balance");
    assert!(before.is_trial_user);

    let body = fixture("checkout_session_completed.json");
    let response = app.post_webhook(&body).await;
    assert_eq!(response.status(), 200);

    let after = app.balance(FIXTURE_ACCOUNT).await.expect("balance");
    assert_eq!(
        after.credit_balance,
        2 * STANDARD_CREDITS,
        "standard × quantity 2"
    );
    assert!(!after.is_trial_user, "fill_credits ends the trial");

    // The line items came from Stripe because the metadata names no price.
    let fetched: Vec<String> = app
        .stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        fetched,
        [format!("/v1/checkout/sessions/{FIXTURE_SESSION}/line_items")]
    );

    // A purchase record for the payment, with the payment intent kept for refunds.
    let purchase = app
        .purchases_of(FIXTURE_ACCOUNT)
        .await
        .into_iter()
        .find(|p| p.stripe_checkout_session_id == FIXTURE_SESSION)
        .expect("purchase recorded");
    assert_eq!(purchase.status, "completed");
    assert_eq!(purchase.quantity, 2 * STANDARD_CREDITS);
    assert_eq!(purchase.amount, 3000);
    assert_eq!(purchase.currency, "usd");
    assert_eq!(
        purchase.stripe_payment_intent_id.as_deref(),
        Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
    );
    assert!(purchase.completed_at.is_some());

    // Redelivery: 200, nothing more, no second Stripe call.
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(
        app.stripe_requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() == "GET")
            .count(),
        1
    );

    let ledger = app.ledger_of(FIXTURE_ACCOUNT).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].delta, 2 * STANDARD_CREDITS);
    assert_eq!(ledger[0].reason, "purchase");
    assert_eq!(ledger[0].reference, FIXTURE_SESSION);
    app.assert_ledger_matches_balances().await;

    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, "credited");
    assert_eq!(events[0].payload, body);
    assert!(events[0].processed_at.is_some());

    // ListPurchases shows it completed.
    let listed = app.listed_purchases(FIXTURE_ACCOUNT).await;
    let completed = listed
        .iter()
        .find(|p| p.stripe_checkout_session_id == FIXTURE_SESSION)
        .expect("listed");
    assert_eq!(completed.status(), pb::PurchaseStatus::Completed);
    assert!(completed.completed_at.is_some());
}

#[tokio::test]
async fn a_session_we_created_is_credited_from_its_pending_purchase_without_calling_stripe() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let started = app
        .purchase("user-9", "nine@example.com", STANDARD_PRICE)
        .await
        .expect("purchase");
    let body = with(&fixture("checkout_session_completed.json"), |e| {
        e["id"] = Value::from("evt_pending_path");
        let o = &mut e["data"]["object"];
        o["id"] = Value::from(started.checkout_session_id.as_str());
        o["client_reference_id"] = Value::from("user-9");
        o["metadata"] = serde_json::json!({ "account_id": "user-9", "pack_id": "standard" });
    });
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(
        app.balance("user-9").await.expect("balance").credit_balance,
        STANDARD_CREDITS
    );
    assert!(
        app.stripe_requests()
            .await
            .iter()
            .all(|r| r.method.as_str() == "POST"),
        "no line item fetch"
    );
}

#[tokio::test]
async fn metadata_price_id_names_the_pack_and_email_finds_the_account() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase("user-3", "three@example.com", STANDARD_PRICE)
        .await
        .expect("account");
    // A Payment Link style session: no client_reference_id, no account in metadata, just email.
    let body = with(&fixture("checkout_session_completed.json"), |e| {
        e["id"] = Value::from("evt_by_email");
        let o = &mut e["data"]["object"];
        o["id"] = Value::from("cs_test_payment_link");
        o["client_reference_id"] = Value::Null;
        o["metadata"] = serde_json::json!({ "price_id": "price_starter_test" });
        // One Starter pack's price: the total needs no line items to say the quantity.
        o["amount_total"] = Value::from(500);
        o["customer_details"]["email"] = Value::from("THREE@example.com");
    });
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(
        app.balance("user-3").await.expect("balance").credit_balance,
        STARTER_CREDITS
    );
    let purchase = app
        .purchases_of("user-3")
        .await
        .into_iter()
        .find(|p| p.stripe_checkout_session_id == "cs_test_payment_link")
        .expect("created for a session we did not make");
    assert_eq!(purchase.credit_pack_id, "starter");
    assert_eq!(purchase.status, "completed");
}

#[tokio::test]
async fn an_unpaid_completion_waits_for_async_payment_succeeded_then_credits_once() {
    let app = spawn_app().await;
    app.fixture_account().await;
    app.mock_line_items(SEPA_SESSION).await;

    let unpaid = fixture("checkout_session_completed_unpaid.json");
    assert_eq!(app.post_webhook(&unpaid).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    assert_eq!(
        status_of_session(&app, SEPA_SESSION).await.as_deref(),
        Some("pending")
    );

    let succeeded = fixture("checkout_session_async_payment_succeeded.json");
    assert_eq!(app.post_webhook(&succeeded).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(
        status_of_session(&app, SEPA_SESSION).await.as_deref(),
        Some("completed")
    );

    // A paid completion of the same session, the redelivered success, and a late copy of the
    // unpaid completion all credit nothing more.
    let paid_too = with(&unpaid, |e| {
        e["id"] = Value::from("evt_sepa_paid_completion");
        e["data"]["object"]["payment_status"] = Value::from("paid");
    });
    let late_unpaid = with(&unpaid, |e| e["id"] = Value::from("evt_sepa_late_unpaid"));
    for body in [&paid_too, &succeeded, &late_unpaid] {
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    let outcomes: Vec<String> = app.outcomes().await;
    assert_eq!(
        outcomes,
        ["awaiting_payment", "credited", "already_credited", "no_change"]
    );
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn async_payment_failed_marks_the_purchase_failed() {
    let app = spawn_app().await;
    app.fixture_account().await;
    app.mock_line_items(SEPA_SESSION).await;
    app.post_webhook(&fixture("checkout_session_completed_unpaid.json"))
        .await;
    assert_eq!(
        app.post_webhook(&fixture("checkout_session_async_payment_failed.json"))
            .await
            .status(),
        200
    );
    assert_eq!(
        status_of_session(&app, SEPA_SESSION).await.as_deref(),
        Some("failed")
    );
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    assert_eq!(
        app.events().await.last().map(|e| e.outcome.clone()).as_deref(),
        Some("payment_failed")
    );
}

#[tokio::test]
async fn expired_marks_a_pending_purchase_expired_and_leaves_a_completed_one_alone() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let started = app
        .purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("purchase");
    let expired = with(&fixture("checkout_session_expired.json"), |e| {
        e["data"]["object"]["id"] = Value::from(started.checkout_session_id.as_str());
    });
    assert_eq!(app.post_webhook(&expired).await.status(), 200);
    assert_eq!(
        status_of_session(&app, &started.checkout_session_id)
            .await
            .as_deref(),
        Some("expired")
    );

    // The fixture's own session: completed first, then an expiry changes nothing.
    app.mock_line_items(FIXTURE_SESSION).await;
    app.post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    let late_expiry = with(&fixture("checkout_session_expired.json"), |e| {
        e["id"] = Value::from("evt_late_expiry");
        e["data"]["object"]["id"] = Value::from(FIXTURE_SESSION);
    });
    assert_eq!(app.post_webhook(&late_expiry).await.status(), 200);
    assert_eq!(
        status_of_session(&app, FIXTURE_SESSION).await.as_deref(),
        Some("completed")
    );
    assert_eq!(
        app.events().await.last().map(|e| e.outcome.clone()).as_deref(),
        Some("no_change")
    );
}

#[tokio::test]
async fn an_unknown_account_is_kept_as_unmatched_and_answered_200() {
    let app = spawn_app().await;
    // No account exists for acct_7d1f3c2a / buyer@example.com.
    let response = app
        .post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    assert_eq!(response.status(), 200);
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, "unmatched_account");
    let error = events[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(FIXTURE_SESSION) && error.contains(FIXTURE_EMAIL),
        "{error}"
    );
    assert!(
        app.stripe_requests().await.is_empty(),
        "no Stripe call for an unmatched account"
    );
}

#[tokio::test]
async fn an_unknown_pack_is_kept_as_unmatched_and_answered_200() {
    let app = spawn_app().await;
    app.fixture_account().await;
    // Line items name a price no pack has.
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/checkout/sessions/{FIXTURE_SESSION}/line_items"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            fixture("api_checkout_session_line_items.json").replace(STANDARD_PRICE, "price_unknown"),
            "application/json",
        ))
        .mount(&app.stripe)
        .await;
    assert_eq!(
        app.post_webhook(&fixture("checkout_session_completed.json"))
            .await
            .status(),
        200
    );
    let event = app.events().await.pop().expect("stored");
    assert_eq!(event.outcome, "unmatched_pack");
    assert!(event.error.unwrap_or_default().contains(FIXTURE_SESSION));
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);

    // The same for a metadata price nobody sells, and for Stripe refusing the line items.
    let by_meta = with(&fixture("checkout_session_completed.json"), |e| {
        e["id"] = Value::from("evt_meta_unknown");
        e["data"]["object"]["metadata"]["price_id"] = Value::from("price_gone");
        e["data"]["object"]["id"] = Value::from("cs_test_other");
    });
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_other/line_items"))
        .respond_with(ResponseTemplate::new(404).set_body_raw(
            r#"{"error":{"type":"invalid_request_error","message":"No such checkout.session"}}"#,
            "application/json",
        ))
        .mount(&app.stripe)
        .await;
    assert_eq!(app.post_webhook(&by_meta).await.status(), 200);
    assert_eq!(
        app.events().await.pop().map(|e| e.outcome).as_deref(),
        Some("unmatched_pack")
    );
}

#[tokio::test]
async fn stripe_down_while_fetching_line_items_is_503_and_the_redelivery_credits() {
    let app = spawn_app().await;
    app.fixture_account().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/checkout/sessions/{FIXTURE_SESSION}/line_items"
        )))
        .respond_with(ResponseTemplate::new(503).set_body_raw("upstream unavailable", "text/plain"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.stripe)
        .await;
    app.mock_line_items(FIXTURE_SESSION).await;
    let body = fixture("checkout_session_completed.json");
    assert_eq!(app.post_webhook(&body).await.status(), 503);
    assert_eq!(app.count_events().await, 0, "nothing half-written");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
}

#[tokio::test]
async fn every_fixture_goes_through_unchanged() {
    let app = spawn_app().await;
    app.fixture_account().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    app.mock_line_items(SEPA_SESSION).await;
    for name in [
        "checkout_session_completed_unpaid.json",
        "checkout_session_async_payment_failed.json",
        "checkout_session_async_payment_succeeded.json",
        "checkout_session_completed.json",
        "checkout_session_expired.json",
        "charge_refunded.json",
    ] {
        let response = app.post_webhook(&fixture(name)).await;
        assert_eq!(response.status(), 200, "{name}: {:?}", response.text().await);
    }
    assert_eq!(app.count_events().await, 6);
    // The card session and the SEPA session (failed, then succeeded) each credit once; the card
    // payment's full refund then takes its credits back.
    let balance = app
        .balance(FIXTURE_ACCOUNT)
        .await
        .expect("balance")
        .credit_balance;
    assert_eq!(balance, 2 * STANDARD_CREDITS);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn fixtures_in_the_repository_match_the_shared_originals() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        // A clone without the shared folder beside it: the copies are all there is.
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let original = std::fs::read_to_string(entry.path()).expect("read shared fixture");
            assert_eq!(fixture(&name), original, "{name} drifted from shared/fixtures");
        }
    }
}

#[tokio::test]
async fn an_open_purchase_grants_what_it_recorded_even_after_the_pack_changes() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let started = app
        .purchase("sepa-buyer", "sepa@example.com", STANDARD_PRICE)
        .await
        .expect("PurchaseCredits");
    app.purchase("someone-else", "else@example.com", STANDARD_PRICE)
        .await
        .expect("another account");
    let db = app.db.clone();
    app.stop().await;

    // While the delayed payment is pending, the standard pack grows to 3000 credits.
    let bigger = crate::helpers::TEST_PACKS.replace("credits = 1000", "credits = 3000");
    let app = TestApp::builder().database(db).packs(&bigger).spawn().await;
    let session = started.checkout_session_id.clone();
    let paid = with(&fixture("checkout_session_async_payment_succeeded.json"), |e| {
        let object = &mut e["data"]["object"];
        object["id"] = Value::from(session.as_str());
        // The session names the pack by price; a stale reference names another account.
        object["metadata"]["price_id"] = Value::from(STANDARD_PRICE);
        object["client_reference_id"] = Value::from("someone-else");
        object["payment_intent"] = Value::from("pi_sepa_edited_pack");
        object["amount_total"] = Value::from(1500);
    });
    assert_eq!(app.post_webhook(&paid).await.status(), 200);
    assert_eq!(
        app.credit_balance("sepa-buyer").await,
        STANDARD_CREDITS,
        "the credits recorded when the purchase was opened"
    );
    assert_eq!(app.credit_balance("someone-else").await, 0);

    // Its full refund takes back exactly what it granted.
    let refund = with(&fixture("charge_refunded.json"), |e| {
        let object = &mut e["data"]["object"];
        object["payment_intent"] = Value::from("pi_sepa_edited_pack");
        object["amount"] = Value::from(1500);
        object["amount_refunded"] = Value::from(1500);
    });
    assert_eq!(app.post_webhook(&refund).await.status(), 200);
    assert_eq!(app.credit_balance("sepa-buyer").await, 0);
    app.assert_ledger_matches_balances().await;
}
