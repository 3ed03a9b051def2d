//! `GET /metrics`: Prometheus text with the documented names; counters move with traffic.

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_CREDITS, STANDARD_PRICE, TestApp, fixture,
    spawn_app,
};

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.expect("body")
}

/// The value of one series, written exactly as `name{labels}`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_answers_before_any_traffic_with_pool_use_and_zero_counters() {
    let app = spawn_app().await;
    let text = scrape(&app).await;
    // Labelled families appear with their first series; these have none yet.
    for family in [
        "# TYPE credits_webhook_duration_seconds histogram",
        "# TYPE credits_credits_granted counter",
        "# TYPE credits_db_pool_connections gauge",
        "# TYPE credits_db_pool_max_connections gauge",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    assert_eq!(
        value(&text, "credits_db_pool_max_connections"),
        Some(5.0),
        "{text}"
    );
    assert!(
        value(&text, r#"credits_db_pool_connections{state="idle"}"#).is_some(),
        "{text}"
    );
    assert_eq!(value(&text, "credits_credits_granted_total"), Some(0.0), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn counters_move_after_rpcs_and_webhooks() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.mock_line_items(FIXTURE_SESSION).await;

    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("purchase");
    app.balance("nobody").await.expect_err("unknown account");
    let response = app
        .post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    assert_eq!(response.status(), 200);
    let forged = app.post_webhook_with("{}", Some("t=1,v1=00".into())).await;
    assert_eq!(forged.status(), 400);

    let text = scrape(&app).await;
    for family in [
        "# TYPE credits_grpc_requests counter",
        "# TYPE credits_grpc_request_duration_seconds histogram",
        "# TYPE credits_webhook_events counter",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    let series = [
        (
            r#"credits_grpc_requests_total{method="PurchaseCredits",code="OK"}"#,
            1.0,
        ),
        (
            r#"credits_grpc_requests_total{method="GetBalance",code="NOT_FOUND"}"#,
            1.0,
        ),
        (
            r#"credits_grpc_request_duration_seconds_count{method="PurchaseCredits"}"#,
            1.0,
        ),
        (
            r#"credits_webhook_events_total{event_type="checkout.session.completed",outcome="credited"}"#,
            1.0,
        ),
        (
            r#"credits_webhook_events_total{event_type="unknown",outcome="rejected"}"#,
            1.0,
        ),
        ("credits_webhook_duration_seconds_count", 2.0),
        ("credits_credits_granted_total", (2 * STANDARD_CREDITS) as f64),
    ];
    for (name, want) in series {
        assert_eq!(value(&text, name), Some(want), "{name} in\n{text}");
    }
}
