//! Every answer of the webhook route is counted by status and outcome, including the ones no
//! event reaches: empty bodies, bad signatures, unreadable JSON and bodies over the limit.

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_PRICE, WEBHOOK_SECRET, fixture, now, spawn_app,
    stripe_signature,
};

#[tokio::test]
async fn every_webhook_answer_is_counted_by_status_and_outcome() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");

    let body = fixture("checkout_session_completed.json");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.post_webhook_with("", None).await.status(), 400);
    assert_eq!(
        app.post_webhook_with(&body, Some("t=1,v1=00".into()))
            .await
            .status(),
        400
    );
    let not_json = "{not json";
    let signed = stripe_signature(not_json, WEBHOOK_SECRET, now());
    assert_eq!(app.post_webhook_with(not_json, Some(signed)).await.status(), 400);
    let huge = "x".repeat(2 * 1024 * 1024);
    assert_eq!(
        app.post_webhook_with(&huge, Some("t=1,v1=00".into()))
            .await
            .status(),
        413
    );

    let metrics = app.metrics_text().await;
    for series in [
        r#"credits_webhook_responses_total{status="200",outcome="credited"} 1"#,
        r#"credits_webhook_responses_total{status="400",outcome="empty_body"} 1"#,
        r#"credits_webhook_responses_total{status="400",outcome="rejected"} 1"#,
        r#"credits_webhook_responses_total{status="400",outcome="invalid"} 1"#,
        r#"credits_webhook_responses_total{status="413",outcome="too_large"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}
