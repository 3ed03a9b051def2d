//! Shutdown of the real binary under load: SIGTERM flips health and `/readyz` at once, every
//! request already in flight completes, every webhook is stored, and the exit code is 0.

use std::time::Duration;

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use serde_json::Value;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE, WEBHOOK_SECRET, fixture, grpc_channel, now,
    open_session_json, spawn_app, spawn_process, stripe_signature,
};

const STRIPE_DELAY: Duration = Duration::from_millis(3000);

/// A slow Stripe that opens a distinct session per call.
#[derive(Default)]
struct SlowSessions(std::sync::atomic::AtomicUsize);

impl Respond for SlowSessions {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ResponseTemplate::new(200)
            .set_body_raw(
                open_session_json(&format!("cs_test_drain_{n}")),
                "application/json",
            )
            .set_delay(STRIPE_DELAY)
    }
}

async fn stripe_requests(stripe: &MockServer) -> usize {
    stripe.received_requests().await.unwrap_or_default().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_load_finishes_in_flight_work_and_exits_zero() {
    let app = spawn_app().await;
    // The fixture account exists before the slow Stripe takes over.
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");
    app.stripe.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(SlowSessions::default())
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/.+/line_items$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(
                    fixture("api_checkout_session_line_items.json"),
                    "application/json",
                )
                .set_delay(STRIPE_DELAY),
        )
        .mount(&app.stripe)
        .await;

    let mut env = app.settings.clone();
    env.insert("SHUTDOWN_DELAY".into(), "2".into());
    env.insert("STRIPE_TIMEOUT_MS".into(), "10000".into());
    env.insert("SHUTDOWN_GRACE".into(), "15".into());
    let mut server = spawn_process(&env).await;
    let events_before = app.count_events().await;

    const RPCS: usize = 6;
    const WEBHOOKS: usize = 5;
    let channel = grpc_channel(server.grpc_addr).await;
    let mut rpcs = tokio::task::JoinSet::new();
    for i in 0..RPCS {
        let mut client = CreditsServiceClient::new(channel.clone());
        rpcs.spawn(async move {
            client
                .purchase_credits(pb::PurchaseCreditsRequest {
                    account_id: format!("user-drain-{i}"),
                    email: format!("drain-{i}@example.com"),
                    price_id: STANDARD_PRICE.into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().checkout_session_id)
        });
    }
    let url = format!("http://{}/account/stripe-webhook/", server.http_addr);
    let completed = fixture("checkout_session_completed.json");
    let mut webhooks = tokio::task::JoinSet::new();
    for i in 0..WEBHOOKS {
        let mut event: Value = serde_json::from_str(&completed).expect("fixture");
        event["id"] = Value::from(format!("evt_drain_{i}"));
        let body = event.to_string();
        let http = app.http.clone();
        let url = url.clone();
        webhooks.spawn(async move {
            http.post(&url)
                .header("Stripe-Signature", stripe_signature(&body, WEBHOOK_SECRET, now()))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    // Every request is inside the server (waiting on Stripe) before the signal.
    for _ in 0..200 {
        if stripe_requests(&app.stripe).await >= RPCS + WEBHOOKS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stripe_requests(&app.stripe).await,
        RPCS + WEBHOOKS,
        "all in flight"
    );
    server.terminate();

    // At once: readiness fails and health says NOT_SERVING, while requests still run.
    let mut flipped = false;
    for _ in 0..60 {
        let readyz = reqwest::Client::new()
            .get(format!("http://{}/readyz", server.http_addr))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok();
        let health = async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
                .expect("uri")
                .connect()
                .await
                .ok()?;
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: "credits.v1.CreditsService".into(),
                })
                .await
                .map(|r| r.into_inner().status)
                .ok()
        };
        if readyz == Some(503) && health.await == Some(ServingStatus::NotServing as i32) {
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(flipped, "/readyz 503 and NOT_SERVING right after SIGTERM");

    let rpc_results = rpcs.join_all().await;
    for result in &rpc_results {
        assert!(result.is_ok(), "an in-flight RPC was cut: {result:?}");
    }
    let webhook_results = webhooks.join_all().await;
    assert!(
        webhook_results.iter().all(|r| matches!(r, Ok(200))),
        "{webhook_results:?}"
    );
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(0), "clean exit");

    // Nothing lost: every event and every purchase is in the database.
    assert_eq!(app.count_events().await, events_before + WEBHOOKS as u64);
    for i in 0..RPCS {
        assert_eq!(app.purchases_of(&format!("user-drain-{i}")).await.len(), 1);
    }
    app.assert_ledger_matches_balances().await;
}
