//! A `Stripe-Signature` flooded with `v1=` entries is refused before any hashing, and the service
//! keeps answering gRPC health while such requests are in flight.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{WEBHOOK_SECRET, grpc_channel, now, spawn_app, stripe_signature};

/// Generous for a loaded 2-core machine; a flood that hashes per entry misses it by far.
const HEALTH_DEADLINE: Duration = Duration::from_secs(1);

/// A signed-looking event padded to about 0.9 MiB, under the 1 MiB body limit.
fn big_body() -> String {
    format!(
        r#"{{"id":"evt_flood","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_1","pad":"{}"}}}}}}"#,
        "x".repeat(900 * 1024)
    )
}

/// `t=<now>` then `entries` short `v1` values: each cost a full HMAC of the body before the fix.
fn flooded_header(entries: usize) -> String {
    let mut header = format!("t={}", now());
    for _ in 0..entries {
        header.push_str(",v1=00");
    }
    header
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stays_serving_while_signature_floods_are_in_flight() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(grpc_channel(app.grpc_addr).await);
    let check = HealthCheckRequest {
        service: "credits.v1.CreditsService".into(),
    };
    let mut serving = false;
    for _ in 0..100 {
        let status = health.check(check.clone()).await.expect("health answers");
        if status.into_inner().status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "SERVING before the flood");

    let body = big_body();
    // Over 8 KiB, and under 8 KiB but far more than 16 entries.
    let floods = [
        (flooded_header(3_000), "signature_header_too_large"),
        (flooded_header(1_000), "too_many_signatures"),
    ];
    assert!(floods[0].0.len() > 8 * 1024 && floods[1].0.len() < 8 * 1024);
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    for i in 0..4 {
        let (header, want) = floods[i % 2].clone();
        let (http, url, body) = (
            app.http.clone(),
            app.url("/account/stripe-webhook/"),
            body.clone(),
        );
        in_flight.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..3 {
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("Stripe-Signature", header.clone())
                    .body(body.clone())
                    .send()
                    .await
                    .expect("flood request");
                answers.push((status_and_code(response).await, want));
            }
            answers
        });
    }

    let mut checks = 0;
    while checks == 0 || !in_flight.is_empty() {
        let asked = Instant::now();
        let answer = tokio::time::timeout(HEALTH_DEADLINE, health.check(check.clone())).await;
        let waited = asked.elapsed();
        let status = answer
            .unwrap_or_else(|_| panic!("health missed its {HEALTH_DEADLINE:?} deadline during the flood"))
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
        assert!(
            waited <= HEALTH_DEADLINE,
            "health took {waited:?} during the flood"
        );
        checks += 1;
        while let Some(done) = in_flight.try_join_next() {
            for (got, want) in done.expect("flood task") {
                assert_eq!(got, (400, want.to_owned()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "12 flood requests answered in {:?}; {checks} health checks in between",
        started.elapsed()
    );
    assert_eq!(app.count_events().await, 0, "nothing written");
}

#[tokio::test]
async fn a_valid_signature_among_a_few_bogus_entries_is_accepted() {
    let app = spawn_app().await;
    let body =
        r#"{"id":"evt_among_bogus","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1"}}}"#;
    let t = now();
    let signed = stripe_signature(body, WEBHOOK_SECRET, t);
    let valid = signed.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
    let header = format!(
        "t={t},v1=,v1=00,v1={},v1={},v1={valid},v1={}",
        "0".repeat(64),
        "z".repeat(64),
        "f".repeat(63)
    );
    let response = app.post_webhook_with(body, Some(header)).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(app.count_events().await, 1);
}
