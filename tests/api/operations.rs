//! Operator tools: the event store (list, replay, retention), reconciliation and job leases.

use std::{process::Output, time::Duration};

use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, query_param},
};

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_CREDITS, STANDARD_PRICE, TestApp, fixture,
    spawn_app,
};

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_unmatched_event_is_listed_and_replayed_once_the_account_exists() {
    let app = spawn_app().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    let body = fixture("checkout_session_completed.json");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let event_id = "evt_1SfR2kB7WZ01zgkWc0mPl3tD";

    let listed = stdout(
        &app.run_cli(&["events", "list", "--outcome", "unmatched_account"])
            .await,
    );
    assert!(
        listed.contains(event_id) && listed.contains("1 event(s)"),
        "{listed}"
    );
    let none = stdout(
        &app.run_cli(&["events", "list", "--outcome", "credited", "--since", "1h"])
            .await,
    );
    assert!(none.contains("0 event(s)"), "{none}");

    // The operator creates the account, then replays.
    app.fixture_account().await;
    let replayed = stdout(&app.run_cli(&["events", "replay", event_id]).await);
    assert!(replayed.contains(&format!("{event_id}: credited")), "{replayed}");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);

    // Still exactly once: a second replay and Stripe's redelivery change nothing.
    let again = stdout(&app.run_cli(&["events", "replay", event_id]).await);
    assert!(again.contains("already processed"), "{again}");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    app.assert_ledger_matches_balances().await;

    let missing = app.run_cli(&["events", "replay", "evt_nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("evt_nope"));
}

#[tokio::test]
async fn retention_prunes_old_processed_events_but_keeps_unmatched_ones() {
    let app = spawn_app().await;
    for id in ["evt_old_ignored", "evt_new_ignored"] {
        let body = format!(
            r#"{{"id":"{id}","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_1"}}}}}}"#
        );
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    app.mock_line_items(FIXTURE_SESSION).await;
    let unmatched = app
        .post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    assert_eq!(unmatched.status(), 200, "kept as unmatched_account");
    let db = app.db.connect().await;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    credits::entities::stripe_event::Entity::update_many()
        .col_expr(
            credits::entities::stripe_event::Column::ReceivedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(100)),
        )
        .filter(credits::entities::stripe_event::Column::Id.ne("evt_new_ignored"))
        .exec(&db)
        .await
        .expect("age the events");

    let pruned = stdout(&app.run_cli(&["events", "prune"]).await);
    assert!(
        pruned.contains("pruned 1 event(s) older than 90 days"),
        "{pruned} {:?}",
        app.events()
            .await
            .iter()
            .map(|e| (&e.id, &e.outcome, e.received_at, e.processed_at))
            .collect::<Vec<_>>()
    );
    let mut left: Vec<String> = app.events().await.into_iter().map(|e| e.id).collect();
    left.sort();
    assert_eq!(left, ["evt_1SfR2kB7WZ01zgkWc0mPl3tD", "evt_new_ignored"]);
}

/// A page of `GET /v1/checkout/sessions`.
fn session_list(sessions: &[Value], has_more: bool) -> String {
    json!({ "object": "list", "url": "/v1/checkout/sessions", "has_more": has_more, "data": sessions })
        .to_string()
}

fn listed_session(id: &str, payment_status: &str) -> Value {
    let mut session: Value =
        serde_json::from_str(&fixture("api_checkout_session_retrieved_expanded.json")).expect("fixture");
    session["id"] = Value::from(id);
    session["payment_status"] = Value::from(payment_status);
    session
}

async fn mock_session_list(app: &TestApp) {
    // Page 2 (after the unpaid session) holds the paid fixture session.
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions"))
        .and(query_param("starting_after", "cs_test_unpaid_one"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            session_list(&[listed_session(FIXTURE_SESSION, "paid")], false),
            "application/json",
        ))
        .with_priority(1)
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            session_list(&[listed_session("cs_test_unpaid_one", "unpaid")], true),
            "application/json",
        ))
        .with_priority(2)
        .mount(&app.stripe)
        .await;
}

#[tokio::test]
async fn reconcile_credits_a_paid_session_whose_webhook_never_came_and_the_late_webhook_credits_nothing() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account");
    app.mock_line_items(FIXTURE_SESSION).await;
    mock_session_list(&app).await;

    let out = stdout(&app.run_cli(&["reconcile", "--since", "72h"]).await);
    assert!(
        out.contains("examined 2 completed session(s): 1 credited now, 0 already credited, 1 unpaid"),
        "{out}"
    );
    assert!(out.contains(&format!("credited {FIXTURE_SESSION}")), "{out}");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);

    // What was asked of Stripe: complete sessions since 72 hours ago, 100 a page, both pages.
    let lists: Vec<_> = app
        .stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path() == "/v1/checkout/sessions")
        .collect();
    assert_eq!(lists.len(), 2);
    let query: Vec<(String, String)> = lists[0].url.query_pairs().into_owned().collect();
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("status").as_deref(), Some("complete"));
    assert_eq!(get("limit").as_deref(), Some("100"));
    let since: i64 = get("created[gte]")
        .and_then(|v| v.parse().ok())
        .expect("created[gte]");
    assert!(
        (chrono::Utc::now().timestamp() - 72 * 3600 - since).abs() < 120,
        "{since}"
    );

    // Running it again fixes nothing new; the webhook arriving late credits nothing.
    let again = stdout(&app.run_cli(&["reconcile"]).await);
    assert!(again.contains("0 credited now, 1 already credited"), "{again}");
    assert_eq!(
        app.post_webhook(&fixture("checkout_session_completed.json"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.events().await.pop().map(|e| e.outcome).as_deref(),
        Some("already_credited")
    );
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn serve_reconciles_periodically_when_an_interval_is_set() {
    let app = TestApp::builder().env("RECONCILE_INTERVAL", "1s").spawn().await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account");
    app.mock_line_items(FIXTURE_SESSION).await;
    mock_session_list(&app).await;
    let mut credited = false;
    for _ in 0..50 {
        if app.credit_balance(FIXTURE_ACCOUNT).await == 2 * STANDARD_CREDITS {
            credited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(credited, "the periodic run credited the session");
    app.assert_ledger_matches_balances().await;
    let mut exported = String::new();
    for _ in 0..50 {
        exported = app.metrics_text().await;
        if exported.contains("credits_reconcile_fixed_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exported.contains("credits_reconcile_fixed_total 1"), "{exported}");
    assert!(exported.contains("credits_reconcile_runs_total"), "{exported}");
}

#[tokio::test]
async fn a_periodic_run_that_cannot_list_sessions_counts_as_failed_not_completed() {
    let app = TestApp::builder().env("RECONCILE_INTERVAL", "1s").spawn().await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.stripe)
        .await;
    let mut exported = String::new();
    for _ in 0..50 {
        exported = app.metrics_text().await;
        if !exported.contains("credits_reconcile_failed_runs_total 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exported.lines().any(|line| line
            .strip_prefix("credits_reconcile_failed_runs_total ")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)),
        "{exported}"
    );
    assert!(exported.contains("credits_reconcile_runs_total 0"), "{exported}");
    assert!(
        exported.contains("credits_reconcile_failed_sessions_total 0"),
        "{exported}"
    );
}

#[tokio::test]
async fn a_job_lease_is_held_by_one_replica_at_a_time() {
    let app = spawn_app().await;
    let db = app.db.connect().await;
    let ttl = Duration::from_secs(60);
    use credits::ops::jobs::{try_lock, unlock};
    assert!(try_lock(&db, "reconcile", "replica-a", ttl).await.expect("lock"));
    assert!(
        !try_lock(&db, "reconcile", "replica-b", ttl).await.expect("lock"),
        "b waits for a"
    );
    unlock(&db, "reconcile", "replica-b")
        .await
        .expect("unlock is a no-op for a non-holder");
    assert!(!try_lock(&db, "reconcile", "replica-b", ttl).await.expect("lock"));
    unlock(&db, "reconcile", "replica-a").await.expect("unlock");
    assert!(
        try_lock(&db, "reconcile", "replica-b", ttl).await.expect("lock"),
        "b takes it once a lets go"
    );
    // A lease that ran out (a crashed holder) is taken over.
    assert!(
        try_lock(&db, "retention", "replica-a", Duration::from_millis(1))
            .await
            .expect("lock")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(try_lock(&db, "retention", "replica-b", ttl).await.expect("lock"));
}

#[tokio::test]
async fn one_bad_session_does_not_stop_reconcile_which_reports_it_and_exits_1() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account");
    app.mock_line_items(FIXTURE_SESSION).await;
    // The first listed session's line items cannot be fetched; the second is fine.
    let mut broken = listed_session("cs_test_broken_items", "paid");
    broken["payment_intent"] = Value::from("pi_broken_items");
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_broken_items/line_items"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"error":{"type":"api_error","message":"line items are down"}}"#,
            "application/json",
        ))
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            session_list(&[broken, listed_session(FIXTURE_SESSION, "paid")], false),
            "application/json",
        ))
        .mount(&app.stripe)
        .await;

    let output = app.run_cli(&["reconcile", "--since", "72h"]).await;
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("examined 2 completed session(s): 1 credited now, 0 already credited, 0 unpaid, 0 unmatched, 1 failed"),
        "{out}"
    );
    assert!(out.contains(&format!("credited {FIXTURE_SESSION}")), "{out}");
    assert!(
        out.contains("failed cs_test_broken_items") && out.contains("line items are down"),
        "{out}"
    );
    assert!(err.contains("1 session(s) failed"), "{err}");
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
}
