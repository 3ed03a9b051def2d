//! `GET /metrics`: Prometheus text with the documented names; counters move with traffic.

use std::collections::BTreeSet;

use tonic::{Code, codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_prost::ProstCodec;

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_CREDITS, STANDARD_PRICE, TestApp, fixture,
    grpc_channel, spawn_app,
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
    // The writer's queue size (WriterSettings::default), for "queue near full" alerts.
    assert_eq!(
        value(&text, "credits_writer_queue_capacity"),
        Some(4096.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "credits_reconcile_failed_runs_total"),
        Some(0.0),
        "{text}"
    );
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

const TOKEN: &str = "metrics-test-token";

/// One unary call to any path, with an empty message, the way a scanner or a stale client
/// would send it: nothing in the generated client limits the path.
pub async fn raw_call(channel: Channel, path: &str, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    }
    let path = PathAndQuery::try_from(path).expect("a valid path");
    grpc.unary::<(), (), _>(request, path, ProstCodec::default())
        .await
        .map(|_| ())
}

/// Every `method` label value of the two RPC families.
fn method_labels(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| {
            line.starts_with("credits_grpc_requests_total{")
                || line.starts_with("credits_grpc_request_duration_seconds")
        })
        .filter_map(|line| {
            let rest = &line[line.find("method=\"")? + "method=\"".len()..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn made_up_method_names_are_labelled_unknown_and_add_no_series() {
    let app = TestApp::builder().env("GRPC_AUTH_TOKENS", TOKEN).spawn().await;
    let channel = grpc_channel(app.grpc_addr).await;
    let mut paths: Vec<String> = (0..50)
        .map(|n| format!("/credits.v1.CreditsService/MadeUp{n:02}"))
        .collect();
    paths.extend(
        [
            "/credits.v1.CreditsService/getbalance",
            "/credits.v1.CreditsService/GetBalance/extra",
            "/credits.v1.CreditsService/GetBalance%20",
            "/credits.v1.CreditsServiceX/GetBalance",
            "/other.v1.Other/GetBalance",
            "/grpc.health.v1.Health/MadeUp",
        ]
        .map(String::from),
    );
    for path in &paths {
        let status = raw_call(channel.clone(), path, None).await.expect_err("refused");
        assert!(
            matches!(status.code(), Code::Unauthenticated | Code::Unimplemented),
            "{path}: {status:?}"
        );
    }
    // With the token a made-up method is UNIMPLEMENTED, still under `unknown`.
    let status = raw_call(
        channel.clone(),
        "/credits.v1.CreditsService/MadeUpWithToken",
        Some(TOKEN),
    )
    .await
    .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    // A real method keeps its name, with and without the token.
    raw_call(
        channel.clone(),
        "/credits.v1.CreditsService/ListCreditPacks",
        None,
    )
    .await
    .expect_err("no token");
    raw_call(channel, "/credits.v1.CreditsService/ListCreditPacks", Some(TOKEN))
        .await
        .expect("ListCreditPacks with the token");

    let text = scrape(&app).await;
    let want: BTreeSet<String> = ["ListCreditPacks", "unknown"].map(String::from).into();
    assert_eq!(method_labels(&text), want, "{text}");
    let unauthenticated = value(
        &text,
        r#"credits_grpc_requests_total{method="unknown",code="UNAUTHENTICATED"}"#,
    )
    .unwrap_or_default();
    assert!(unauthenticated >= 50.0, "{text}");
    assert_eq!(
        value(
            &text,
            r#"credits_grpc_requests_total{method="unknown",code="UNIMPLEMENTED"}"#
        ),
        Some(1.0),
        "{text}"
    );
    for code in ["UNAUTHENTICATED", "OK"] {
        let series = format!(r#"credits_grpc_requests_total{{method="ListCreditPacks",code="{code}"}}"#);
        assert_eq!(value(&text, &series), Some(1.0), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn made_up_event_types_are_labelled_other_and_add_no_series() {
    // Without a webhook secret (development) anyone can post events: the label set must not
    // follow what they send.
    let app = TestApp::builder().without("STRIPE_WEBHOOK_SECRET").spawn().await;
    for n in 0..30 {
        let body = format!(
            r#"{{"id":"evt_made_up_{n}","object":"event","type":"made.up.type_{n}","data":{{"object":{{"id":"x_{n}"}}}}}}"#
        );
        assert_eq!(app.post_webhook_with(&body, None).await.status(), 200);
    }
    let text = scrape(&app).await;
    let labels: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("credits_webhook_events_total{"))
        .filter_map(|l| {
            l.split("event_type=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(labels, BTreeSet::from(["other".to_owned()]), "{text}");
    assert_eq!(
        value(
            &text,
            r#"credits_webhook_events_total{event_type="other",outcome="ignored"}"#
        ),
        Some(30.0)
    );
}
