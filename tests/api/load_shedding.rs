//! Limits: over the concurrency limit a call is refused at once (RESOURCE_EXHAUSTED / 503)
//! instead of queueing; a call running past the timeout is cut.

use std::time::Duration;

use credits::grpc::pb;
use tonic::Code;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::helpers::{FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE, TestApp, fixture, open_session_json};

async fn slow_checkout(stripe: &MockServer, delay: Duration) {
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(open_session_json("cs_test_slow"), "application/json")
                .set_delay(delay),
        )
        .mount(stripe)
        .await;
}

/// Waits until the fake Stripe has seen `n` requests: those calls are now in flight.
async fn wait_for_stripe_requests(stripe: &MockServer, n: usize) {
    for _ in 0..200 {
        if stripe.received_requests().await.unwrap_or_default().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("Stripe never saw {n} requests");
}

#[tokio::test]
async fn a_second_rpc_over_the_limit_is_resource_exhausted_while_the_first_completes() {
    let app = TestApp::builder()
        .env("GRPC_CONCURRENCY_LIMIT", "1")
        .spawn()
        .await;
    slow_checkout(&app.stripe, Duration::from_millis(1500)).await;

    let mut slow_client = app.grpc.clone();
    let slow = tokio::spawn(async move {
        slow_client
            .purchase_credits(pb::PurchaseCreditsRequest {
                account_id: "user-slow".into(),
                email: "slow@example.com".into(),
                price_id: STANDARD_PRICE.into(),
                ..Default::default()
            })
            .await
    });
    wait_for_stripe_requests(&app.stripe, 1).await;

    let status = app
        .grpc
        .clone()
        .list_credit_packs(pb::ListCreditPacksRequest::default())
        .await
        .expect_err("the only slot is taken");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    slow.await.expect("task").expect("the slow call completes");
    app.grpc
        .clone()
        .list_credit_packs(pb::ListCreditPacksRequest::default())
        .await
        .expect("the slot is free again");
}

#[tokio::test]
async fn an_rpc_past_the_request_timeout_is_deadline_exceeded() {
    let app = TestApp::builder()
        .env("GRPC_REQUEST_TIMEOUT_MS", "300")
        .spawn()
        .await;
    slow_checkout(&app.stripe, Duration::from_millis(2000)).await;
    let status = app
        .purchase("user-timeout", "timeout@example.com", STANDARD_PRICE)
        .await
        .expect_err("cut at the timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn a_webhook_over_the_http_limit_is_503_while_the_first_completes() {
    let app = TestApp::builder()
        .env("HTTP_CONCURRENCY_LIMIT", "1")
        .spawn()
        .await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");
    let already_seen = app.stripe_requests().await.len();
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/.+/line_items$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(
                    fixture("api_checkout_session_line_items.json"),
                    "application/json",
                )
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&app.stripe)
        .await;

    let body = fixture("checkout_session_completed.json");
    let (first, second) = tokio::join!(app.post_webhook(&body), async {
        wait_for_stripe_requests(&app.stripe, already_seen + 1).await;
        app.post_webhook(&body).await
    });
    assert_eq!(second.status(), 503, "shed while the only slot is busy");
    assert!(second.headers().contains_key("retry-after"));
    assert_eq!(first.status(), 200);
    assert_eq!(app.count_events().await, 1);
    let metrics = app.metrics_text().await;
    for series in [
        r#"credits_webhook_responses_total{status="503",outcome="overloaded"} 1"#,
        r#"credits_webhook_responses_total{status="200",outcome="credited"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_webhook_past_the_http_timeout_is_503_and_writes_nothing() {
    let app = TestApp::builder()
        .env("HTTP_REQUEST_TIMEOUT_MS", "300")
        .spawn()
        .await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/.+/line_items$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(
                    fixture("api_checkout_session_line_items.json"),
                    "application/json",
                )
                .set_delay(Duration::from_millis(2000)),
        )
        .mount(&app.stripe)
        .await;
    let response = app
        .post_webhook(&fixture("checkout_session_completed.json"))
        .await;
    assert_eq!(response.status(), 503, "Stripe will redeliver");
    assert_eq!(app.count_events().await, 0);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);
    let metrics = app.metrics_text().await;
    let series = r#"credits_webhook_responses_total{status="503",outcome="timeout"} 1"#;
    assert!(metrics.contains(series), "{series} in {metrics}");
}
