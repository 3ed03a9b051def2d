//! Logs: JSON lines from the real binary, and never a secret, a token or a webhook payload.

use std::time::Duration;

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use serde_json::Value;

use crate::{
    helpers::{
        FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_PRICE, WEBHOOK_SECRET, fixture,
        grpc_channel, now, spawn_app, spawn_process, stripe_signature,
    },
    metrics::raw_call,
};

const STRIPE_KEY: &str = "sk_test_51LoggedNeverXyZ9";
const GRPC_TOKEN: &str = "grpc-token-never-logged-7f3a";
const WRONG_TOKEN: &str = "wrong-token-never-logged-c41d";
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const MADE_UP_METHOD: &str = "MadeUpMethodNeverLogged";

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_without_secrets_tokens_or_payloads() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    let mut env = app.settings.clone();
    env.insert("STRIPE_SECRET_KEY".into(), STRIPE_KEY.into());
    env.insert("GRPC_AUTH_TOKENS".into(), GRPC_TOKEN.into());
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("RUST_LOG".into(), "info,credits=debug".into());
    let mut server = spawn_process(&env).await;

    let mut client = CreditsServiceClient::new(grpc_channel(server.grpc_addr).await);
    let mut purchase = with_token(
        pb::PurchaseCreditsRequest {
            account_id: FIXTURE_ACCOUNT.into(),
            email: FIXTURE_EMAIL.into(),
            price_id: STANDARD_PRICE.into(),
            ..Default::default()
        },
        GRPC_TOKEN,
    );
    purchase.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    client.purchase_credits(purchase).await.expect("purchase");
    client
        .list_credit_packs(with_token(pb::ListCreditPacksRequest::default(), WRONG_TOKEN))
        .await
        .expect_err("wrong token");
    // A caller-chosen method name is logged as `unknown`, never as sent.
    let made_up = format!("/credits.v1.CreditsService/{MADE_UP_METHOD}");
    for token in [Some(GRPC_TOKEN), None] {
        raw_call(grpc_channel(server.grpc_addr).await, &made_up, token)
            .await
            .expect_err("no such method");
    }

    let url = format!("http://{}/account/stripe-webhook/", server.http_addr);
    let body = fixture("checkout_session_completed.json");
    for signature in [
        stripe_signature(&body, WEBHOOK_SECRET, now()),
        stripe_signature(&body, "whsec_someone_else", now()),
    ] {
        app.http
            .post(&url)
            .header("Stripe-Signature", signature)
            .body(body.clone())
            .send()
            .await
            .expect("webhook");
    }
    let not_an_event = r#"{"hello": "payload-marker-5d2e"}"#;
    app.http
        .post(&url)
        .header(
            "Stripe-Signature",
            stripe_signature(not_an_event, WEBHOOK_SECRET, now()),
        )
        .body(not_an_event)
        .send()
        .await
        .expect("webhook");

    server.terminate();
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(0));
    let output = server.output();
    assert!(
        output.iter().any(|l| l.contains("stripe event processed")),
        "the webhook was logged: {output:#?}"
    );
    // Without trace export, a line still names the caller's trace and its span.
    let rpc_line = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|log| log["message"] == "rpc" && log["method"] == "PurchaseCredits")
        .unwrap_or_else(|| panic!("an rpc log line in {output:#?}"));
    assert_eq!(rpc_line["trace_id"], CALLER_TRACE, "{rpc_line}");
    assert!(
        rpc_line["span_id"].as_str().is_some_and(|id| id.len() == 16),
        "{rpc_line}"
    );
    let unknown_codes: Vec<String> = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|log| log["message"] == "rpc" && log["method"] == "unknown")
        .filter_map(|log| log["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(unknown_codes, ["UNIMPLEMENTED", "UNAUTHENTICATED"], "{output:#?}");
    // Payload-only values: the customer's name and address, and the raw JSON.
    let event: Value = serde_json::from_str(&body).expect("fixture");
    let customer_name = event["data"]["object"]["customer_details"]["name"]
        .as_str()
        .unwrap_or("Jenny Rosen")
        .to_owned();
    let forbidden = [
        STRIPE_KEY,
        WEBHOOK_SECRET,
        GRPC_TOKEN,
        WRONG_TOKEN,
        "payload-marker-5d2e",
        MADE_UP_METHOD,
        customer_name.as_str(),
        "\"object\": \"event\"",
        "\"object\":\"event\"",
        body.as_str(),
    ];
    for line in &output {
        for secret in forbidden {
            assert!(!line.contains(secret), "{secret:?} leaked in {line}");
        }
        let log: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        assert!(
            log.is_object() && log["level"].is_string() && log["timestamp"].is_string(),
            "{line}"
        );
    }
}

/// `credits serve` with `env` and nothing else, until it exits (it cannot reach its database).
async fn serve_until_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let packs = format!("{}/packs.toml", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .arg("serve")
        .env_clear()
        .envs([
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("CREDIT_PACKS_FILE", packs.as_str()),
        ])
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the binary gives up on an unreachable database")
        .expect("run the credits binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test]
async fn credentials_in_urls_never_reach_the_start_up_log_in_any_form() {
    // Port 1 refuses connections: the settings are logged, then the database fails.
    let database_urls = [
        "postgres://u@127.0.0.1:1/db?password=hunter2-query-secret",
        "postgres://u@127.0.0.1:1/db?sslmode=disable&password=hunter2-amp-secret&application_name=x",
        "postgresql://u:hunter2-userinfo-secret@127.0.0.1:1/db",
        "postgres://u:hunter2%2Dencoded%2Dsecret@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db?pass%77ord=hunter2-encoded-key-secret",
    ];
    let stripe_base = "https://stripe-user:hunter2-stripe-secret@127.0.0.1:1";
    let otlp_endpoint = "http://otel-user:hunter2-otel-secret@127.0.0.1:1";
    let runs = database_urls.map(|database_url| async move {
        let env = [
            ("DATABASE_URL", database_url),
            ("STRIPE_API_BASE", stripe_base),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint),
        ];
        (database_url, serve_until_exit(&env).await)
    });
    for (database_url, (code, output)) in futures_util::future::join_all(runs).await {
        assert_ne!(code, Some(0), "{database_url}: {output}");
        let config_line = output
            .lines()
            .find(|line| line.contains("starting credits"))
            .unwrap_or_else(|| panic!("{database_url}: the settings are logged first: {output}"));
        assert!(config_line.contains("127.0.0.1:1"), "{config_line}");
        assert!(
            !output.contains("hunter2"),
            "{database_url}: a secret leaked in\n{output}"
        );
    }

    // sqlx ignores `sslpassword` and would log its value: refused before anything connects.
    let (code, output) = serve_until_exit(&[(
        "DATABASE_URL",
        "postgres://u@127.0.0.1:1/db?sslkey=/etc/key.pem&sslpassword=hunter2-sslpassword-secret",
    )])
    .await;
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("DATABASE_URL") && output.contains("sslpassword"),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "a secret leaked in\n{output}");
}

/// PurchaseCredits for a known account with a new email: the account follows the buyer's
/// current email (the calling backend knows them), and the change is logged, by account id only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_with_a_new_email_updates_the_account_and_logs_it() {
    const OLD_EMAIL: &str = "old-address-7c1e@example.com";
    const NEW_EMAIL: &str = "new-address-9b4d@example.com";
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let mut env = app.settings.clone();
    env.insert("LOG_FORMAT".into(), "json".into());
    let mut server = spawn_process(&env).await;
    let mut client = CreditsServiceClient::new(grpc_channel(server.grpc_addr).await);
    for email in [OLD_EMAIL, OLD_EMAIL, NEW_EMAIL] {
        client
            .purchase_credits(pb::PurchaseCreditsRequest {
                account_id: "email-follower".into(),
                email: email.into(),
                price_id: STANDARD_PRICE.into(),
                ..Default::default()
            })
            .await
            .expect("purchase");
    }
    let account = client
        .ensure_account(pb::EnsureAccountRequest {
            account_id: "email-follower".into(),
            email: NEW_EMAIL.into(),
        })
        .await
        .expect("EnsureAccount")
        .into_inner();
    assert!(!account.created);
    assert_eq!(account.account.expect("account").email, NEW_EMAIL);

    server.terminate();
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(0));
    let output = server.output();
    let changes: Vec<Value> = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|log| log["message"] == "account email changed to the one PurchaseCredits named")
        .collect();
    assert_eq!(changes.len(), 1, "one change, logged once: {output:#?}");
    assert_eq!(changes[0]["account_id"], "email-follower", "{}", changes[0]);
    assert!(
        !output
            .iter()
            .any(|l| l.contains(OLD_EMAIL) || l.contains(NEW_EMAIL)),
        "emails are not logged: {output:#?}"
    );
}
