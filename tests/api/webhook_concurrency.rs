//! Exactly once under pressure: concurrent duplicate deliveries, two server processes on one
//! database, and a database outage in the middle.

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::helpers::{
    FIXTURE_ACCOUNT, STANDARD_CREDITS, WEBHOOK_SECRET, fixture, now, spawn_app, spawn_process,
    stripe_signature,
};

async fn post(http: &reqwest::Client, url: &str, body: &str) -> u16 {
    http.post(url)
        .header("Stripe-Signature", stripe_signature(body, WEBHOOK_SECRET, now()))
        .body(body.to_owned())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_of_one_event_credit_once() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    let body = Arc::new(fixture("checkout_session_completed.json"));
    let url = Arc::new(app.url("/account/stripe-webhook/"));
    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url, body) = (app.http.clone(), url.clone(), body.clone());
        deliveries.spawn(async move { post(&http, &url, &body).await });
    }
    let statuses = deliveries.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every delivery answered 200: {statuses:?}"
    );
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(app.ledger_of(FIXTURE_ACCOUNT).await.len(), 1);
    assert_eq!(app.count_events().await, 1);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_events_for_one_session_arriving_together_credit_once() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    let completed = fixture("checkout_session_completed.json");
    let mut bodies = Vec::new();
    for i in 0..20 {
        let mut event: Value = serde_json::from_str(&completed).expect("fixture");
        event["id"] = Value::from(format!("evt_same_session_{i}"));
        if i % 2 == 1 {
            event["type"] = Value::from("checkout.session.async_payment_succeeded");
        }
        bodies.push(event.to_string());
    }
    let url = Arc::new(app.url("/account/stripe-webhook/"));
    let mut deliveries = tokio::task::JoinSet::new();
    for body in bodies {
        let (http, url) = (app.http.clone(), url.clone());
        deliveries.spawn(async move { post(&http, &url, &body).await });
    }
    assert!(deliveries.join_all().await.iter().all(|s| *s == 200));
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    let outcomes: Vec<String> = app.outcomes().await;
    assert_eq!(
        outcomes.iter().filter(|o| *o == "credited").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "already_credited").count(),
        19,
        "{outcomes:?}"
    );
    app.assert_ledger_matches_balances().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_server_processes_on_one_database_credit_once() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    // Two more replicas: real processes of the binary, same database and fake Stripe.
    let env = app.settings.clone();
    let first = spawn_process(&env).await;
    let second = spawn_process(&env).await;
    let urls = [first.http_addr, second.http_addr].map(|a| format!("http://{a}/account/stripe-webhook/"));

    let mut bodies = Vec::new();
    let completed = fixture("checkout_session_completed.json");
    for i in 0..10 {
        let mut event: Value = serde_json::from_str(&completed).expect("fixture");
        event["id"] = Value::from(format!("evt_replicas_{i}"));
        bodies.push(event.to_string());
    }
    let mut deliveries = tokio::task::JoinSet::new();
    for round in 0..3 {
        for (i, body) in bodies.iter().enumerate() {
            let http = app.http.clone();
            let url = urls[(i + round) % 2].clone();
            let body = body.clone();
            deliveries.spawn(async move { post(&http, &url, &body).await });
        }
    }
    let statuses = deliveries.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(app.ledger_of(FIXTURE_ACCOUNT).await.len(), 1);
    assert_eq!(app.count_events().await, 10);
    app.assert_ledger_matches_balances().await;
    // Every replica reads the same state over gRPC.
    for replica in [first.grpc_addr, second.grpc_addr] {
        let balance = crate::helpers::connect_grpc(replica)
            .await
            .get_balance(credits::grpc::pb::GetBalanceRequest {
                account: Some(credits::grpc::pb::get_balance_request::Account::AccountId(
                    FIXTURE_ACCOUNT.into(),
                )),
                as_of: None,
            })
            .await
            .expect("GetBalance on a replica")
            .into_inner();
        assert_eq!(balance.credit_balance, 2 * STANDARD_CREDITS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_gives_503_with_nothing_written_and_a_redelivery_credits() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    let body = fixture("checkout_session_completed.json");

    let outage = app.db.outage().await;
    let response = tokio::time::timeout(Duration::from_secs(30), app.post_webhook(&body))
        .await
        .expect("answered within the timeouts");
    assert_eq!(response.status(), 503);
    let answer: Value = response.json().await.expect("JSON error");
    assert_eq!(answer["error"], "temporarily_unavailable");
    outage.end().await;

    assert_eq!(app.count_events().await, 0, "nothing half-written");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);

    // Stripe's retry.
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    app.assert_ledger_matches_balances().await;
}
