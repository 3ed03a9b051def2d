//! `/metrics` counts the credits every committed entry moved, by kind, and holds by outcome;
//! refused and replayed calls move nothing.

use std::time::Duration;

use chrono::Utc;

use crate::helpers::{TestApp, spend::grant_request};

/// The value of `name{label="value"}`, 0 when the series does not exist yet.
fn series(text: &str, name: &str, label: &str, value: &str) -> f64 {
    let wanted = format!("{name}{{{label}=\"{value}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn credits(text: &str, kind: &str) -> f64 {
    series(text, "credits_ledger_credits_total", "kind", kind)
}

fn holds(text: &str, outcome: &str) -> f64 {
    series(text, "credits_holds_total", "outcome", outcome)
}

#[tokio::test]
async fn metrics_count_credits_granted_consumed_and_expired_and_holds_by_outcome() {
    let app = TestApp::builder()
        .env("TRIAL_CREDITS", "7")
        .env("EXPIRY_INTERVAL", "1s")
        .spawn()
        .await;
    app.ensure("metered").await;
    app.grant("metered", 100, "fund").await;
    app.grant("metered", 100, "fund").await; // replayed: counts once
    app.consume("metered", 30, "c1").await.expect("consume");
    app.consume("metered", 1000, "c2")
        .await
        .expect_err("refused: counts nothing");
    let captured = app.reserve("metered", 20, "r1", 60).await.expect("reserve");
    app.capture(&captured.hold_id, 12).await.expect("capture");
    let released = app.reserve("metered", 5, "r2", 60).await.expect("reserve");
    app.release(&released.hold_id).await.expect("release");
    app.reserve("metered", 3, "r3", 1)
        .await
        .expect("reserve, left to run out");
    app.send_grant(credits::grpc::pb::GrantCreditsRequest {
        expires_at: Some(crate::helpers::spend::timestamp(
            Utc::now() + chrono::Duration::seconds(1),
        )),
        ..grant_request("metered", 40, "brief")
    })
    .await
    .expect("an expiring grant");

    // The sweep writes the lot off and ends the lapsed hold.
    let mut text = app.metrics_text().await;
    for _ in 0..300 {
        if credits(&text, "expiry") > 0.0 && holds(&text, "expired") > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = app.metrics_text().await;
    }
    assert!(text.contains("# TYPE credits_ledger_credits counter"), "{text}");
    assert!(text.contains("# TYPE credits_holds counter"), "{text}");
    assert_eq!(credits(&text, "trial"), 7.0, "{text}");
    assert_eq!(credits(&text, "grant"), 140.0, "{text}");
    assert_eq!(
        credits(&text, "consumption"),
        42.0,
        "consumed and captured: {text}"
    );
    assert_eq!(credits(&text, "expiry"), 40.0, "{text}");
    assert_eq!(holds(&text, "reserved"), 3.0, "{text}");
    assert_eq!(holds(&text, "captured"), 1.0, "{text}");
    assert_eq!(holds(&text, "released"), 1.0, "{text}");
    assert_eq!(holds(&text, "expired"), 1.0, "{text}");
    assert_eq!(
        app.credit_balance("metered").await,
        7 + 100 - 30 - 12,
        "the expired grant is gone"
    );
}
