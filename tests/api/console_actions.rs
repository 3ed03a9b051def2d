//! The console's other actions over HTTP: releasing a hold (twice: once), changing settings,
//! replaying a Stripe event, retrying a notification; the trusted proxy header; the
//! `console hash-password` command.

use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_SESSION, STANDARD_CREDITS, TestApp,
    console::{CONSOLE_SECRET, ConsoleClient, PASSWORD, console_app, field_after},
    fixture, run_binary,
};

async fn signed_in(app: &TestApp) -> ConsoleClient {
    let mut client = ConsoleClient::new(app);
    assert_eq!(
        client.sign_in("alice", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    client
}

async fn audit_lines(app: &TestApp) -> u64 {
    credits::entities::console_audit::Entity::find()
        .count(&app.db.connect().await)
        .await
        .expect("count audit lines")
}

#[tokio::test]
async fn a_hold_released_from_the_console_twice_is_released_once() {
    let app = console_app().spawn().await;
    app.ensure("acct_hold").await;
    app.grant("acct_hold", 100, "seed").await;
    let hold = app.reserve("acct_hold", 40, "call-1", 0).await.expect("reserve");
    let mut client = signed_in(&app).await;
    let page = client.get("/console/accounts/acct_hold").await.body;
    let action = format!("/holds/{}/release\"", hold.hold_id);
    let form = [
        ("csrf", field_after(&page, &action, "csrf")),
        ("key", field_after(&page, &action, "key")),
        ("reason", "stuck job".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("/console/accounts/acct_hold/holds/{}/release", hold.hold_id);
    for _ in 0..2 {
        let answer = client.post(&path, &form).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    }
    assert!(app.release(&hold.hold_id).await.expect("a repeat").replayed);
    assert_eq!(audit_lines(&app).await, 1);
    let page = client.get("/console/accounts/acct_hold").await.body;
    assert!(
        page.contains("No active holds.") && page.contains("release_hold"),
        "{page}"
    );
}

#[tokio::test]
async fn settings_changed_from_the_console_are_the_accounts_settings() {
    let app = console_app().spawn().await;
    app.ensure("acct_settings").await;
    let mut client = signed_in(&app).await;
    let page = client.get("/console/accounts/acct_settings").await.body;
    let (csrf, key) = (
        field_after(&page, "/settings\"", "csrf"),
        field_after(&page, "/settings\"", "key"),
    );
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("low_balance_threshold", "25"),
        ("overdraft_limit", "300"),
        ("top_up_threshold", "0"),
        ("top_up_pack", ""),
        ("top_up_monthly_limit", "0"),
        ("reason", "enterprise terms"),
    ];
    let answer = client
        .post("/console/accounts/acct_settings/settings", &form)
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let settings = app
        .grpc
        .clone()
        .get_account_settings(credits::grpc::pb::GetAccountSettingsRequest {
            account: Some(
                credits::grpc::pb::get_account_settings_request::Account::AccountId("acct_settings".into()),
            ),
        })
        .await
        .expect("GetAccountSettings")
        .into_inner();
    assert_eq!(settings.overdraft_limit, 300);
    assert_eq!(audit_lines(&app).await, 1);

    // A bad value is refused with what is wrong, and audited nowhere.
    let page = client.get("/console/accounts/acct_settings").await.body;
    let key = field_after(&page, "/settings\"", "key");
    let bad = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("overdraft_limit", "lots"),
        ("reason", "oops"),
    ];
    let refused = client
        .post("/console/accounts/acct_settings/settings", &bad)
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("overdraft_limit"), "{}", refused.body);
    assert_eq!(audit_lines(&app).await, 1);
}

#[tokio::test]
async fn an_unmatched_stripe_event_is_replayed_from_the_console() {
    let app = console_app().spawn().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    assert_eq!(
        app.post_webhook(&fixture("checkout_session_completed.json"))
            .await
            .status(),
        200
    );
    let event_id = "evt_1SfR2kB7WZ01zgkWc0mPl3tD";
    let mut client = signed_in(&app).await;
    let listed = client.get("/console/events?outcome=unmatched_account").await.body;
    assert!(listed.contains(event_id), "{listed}");
    let credited = client.get("/console/events?outcome=credited").await.body;
    assert!(!credited.contains(event_id));

    app.fixture_account().await;
    let page = client.get(&format!("/console/events/{event_id}")).await.body;
    assert!(page.contains("Payload") && page.contains("checkout.session.completed"));
    let form = [
        ("csrf", field_after(&page, "/replay\"", "csrf")),
        ("key", field_after(&page, "/replay\"", "key")),
        ("reason", "account created late".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("/console/events/{event_id}/replay");
    let answer = client.post(&path, &form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert!(answer.location.unwrap_or_default().contains("credited"));
    // Submitted again: the event is processed already, nothing more is credited.
    client.post(&path, &form).await;
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(audit_lines(&app).await, 1);
}

#[tokio::test]
async fn an_undelivered_notification_is_queued_again_from_the_console() {
    let app = console_app().spawn().await;
    app.ensure("acct_notify").await;
    app.grant("acct_notify", 10, "seed").await;
    let mut client = signed_in(&app).await;
    let page = client.get("/console/notifications").await.body;
    assert!(page.contains("acct_notify") && page.contains("pending"), "{page}");
    let event_id = field_after(&page, "/console/notifications/retry\"", "event_id");
    let form = [
        (
            "csrf",
            field_after(&page, "/console/notifications/retry\"", "csrf"),
        ),
        ("key", field_after(&page, "/console/notifications/retry\"", "key")),
        ("event_id", event_id),
        ("reason", "receiver fixed".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = client.post("/console/notifications/retry", &form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(audit_lines(&app).await, 1);
}

#[tokio::test]
async fn a_trusted_proxy_header_signs_in_only_the_names_it_lists() {
    let app = TestApp::builder()
        .env("CONSOLE_TRUSTED_HEADER", "X-Forwarded-User")
        .env(
            "CONSOLE_TRUSTED_USERS",
            "ops@corp.example:operator,help@corp.example:viewer",
        )
        .env("CONSOLE_SESSION_SECRET", CONSOLE_SECRET)
        .spawn()
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = format!("http://{}/console/search", app.http_addr);
    let as_user = |name: &str| http.get(&url).header("x-forwarded-user", name).send();
    let ops = as_user("ops@corp.example").await.expect("answer");
    assert_eq!(ops.status(), StatusCode::OK);
    assert!(ops.text().await.expect("body").contains("ops@corp.example"));
    let stranger = as_user("mallory@corp.example").await.expect("answer");
    assert_eq!(stranger.status(), StatusCode::SEE_OTHER);
    let nobody = http.get(&url).send().await.expect("answer");
    assert_eq!(nobody.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn console_hash_password_prints_an_argon2id_hash_of_stdin() {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .args(["console", "hash-password"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"s3cret password\n").await.expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret"));

    let empty = run_binary(&["console", "hash-password"], &[]).await;
    assert_eq!(empty.status.code(), Some(2), "no password on stdin");
}

#[tokio::test]
async fn auto_top_up_paused_from_the_console_keeps_its_terms() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = console_app().spawn().await;
    app.ensure("acct_pause").await;
    // Armed as a buyer would have left it (a saved card, the standard pack).
    credits::entities::account::ActiveModel {
        id: Set("acct_pause".into()),
        stripe_customer_id: Set(Some("cus_test_pause".into())),
        payment_method_id: Set(Some("pm_test_pause".into())),
        auto_top_up_enabled: Set(true),
        auto_top_up_threshold: Set(100),
        auto_top_up_pack_id: Set(Some("standard".into())),
        auto_top_up_monthly_limit: Set(6000),
        ..Default::default()
    }
    .update(&app.db.connect().await)
    .await
    .expect("arm auto top-up");

    let mut client = signed_in(&app).await;
    let page = client.get("/console/accounts/acct_pause").await.body;
    assert!(page.contains("on: below 100"), "{page}");
    let form = [
        ("csrf", field_after(&page, "/pause-top-up\"", "csrf")),
        ("key", field_after(&page, "/pause-top-up\"", "key")),
        ("reason", "card disputed".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let answer = client
            .post("/console/accounts/acct_pause/pause-top-up", &form)
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    }
    let settings = app
        .grpc
        .clone()
        .get_account_settings(credits::grpc::pb::GetAccountSettingsRequest {
            account: Some(
                credits::grpc::pb::get_account_settings_request::Account::AccountId("acct_pause".into()),
            ),
        })
        .await
        .expect("GetAccountSettings")
        .into_inner();
    let top_up = settings.auto_top_up.expect("auto top-up terms kept");
    assert!(!top_up.enabled);
    assert_eq!((top_up.threshold, top_up.pack_id.as_str()), (100, "standard"));
    assert_eq!(audit_lines(&app).await, 1);
}

#[tokio::test]
async fn a_top_up_waiting_on_its_backoff_is_made_due_from_the_console_once_and_a_settled_one_is_not() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    // The worker looks only hourly here: what the test reads is the console's doing.
    let app = console_app().env("TOP_UP_INTERVAL_MS", "3600000").spawn().await;
    app.ensure("acct_retry").await;
    let db = app.db.connect().await;
    let now = chrono::Utc::now();
    let attempt = |id: &str, state: &str| credits::entities::top_up_attempt::ActiveModel {
        id: Set(id.into()),
        account_id: Set("acct_retry".into()),
        pack_id: Set("standard".into()),
        number: Set(1),
        state: Set(state.into()),
        payment_intent_id: Set(None),
        amount: Set(Some(1500)),
        currency: Set(Some("usd".into())),
        credits: Set(Some(1000)),
        error: Set(Some("Stripe timed out".into())),
        unknown_since: Set(Some(now)),
        next_action_at: Set(now + chrono::Duration::hours(1)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // A lost answer, asked about again in an hour; and an older one that was declined.
    attempt("tu_waiting", "unknown")
        .insert(&db)
        .await
        .expect("waiting attempt");
    attempt("tu_declined", "declined")
        .insert(&db)
        .await
        .expect("declined attempt");

    let mut client = signed_in(&app).await;
    let page = client.get("/console/accounts/acct_retry").await.body;
    assert!(page.contains("/top-ups/tu_waiting/retry\""), "{page}");
    assert!(!page.contains("/top-ups/tu_declined/retry\""), "{page}");
    let form = [
        ("csrf", field_after(&page, "/top-ups/tu_waiting/retry\"", "csrf")),
        ("key", field_after(&page, "/top-ups/tu_waiting/retry\"", "key")),
        ("reason", "Stripe is back".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for _ in 0..2 {
        let answer = client
            .post("/console/accounts/acct_retry/top-ups/tu_waiting/retry", &form)
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    }
    let read = |id: &'static str| {
        let db = db.clone();
        async move {
            credits::entities::top_up_attempt::Entity::find_by_id(id)
                .one(&db)
                .await
                .expect("read attempt")
                .expect("attempt")
        }
    };
    let waiting = read("tu_waiting").await;
    assert_eq!(
        waiting.state, "unknown",
        "same state, same key: nothing charged here"
    );
    assert!(waiting.next_action_at <= chrono::Utc::now(), "due now");
    assert_eq!(audit_lines(&app).await, 1, "one audit line for a double submit");

    // A declined attempt is settled: a forged retry of it is refused and changes nothing.
    let page = client.get("/console/accounts/acct_retry").await.body;
    let fresh_key = field_after(&page, "/grant\"", "key");
    let forged = [
        ("csrf", form[0].1),
        ("key", fresh_key.as_str()),
        ("reason", "try again"),
    ];
    let forged = client
        .post("/console/accounts/acct_retry/top-ups/tu_declined/retry", &forged)
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
    assert!(forged.body.contains("is declined"), "{}", forged.body);
    assert!(read("tu_declined").await.next_action_at > chrono::Utc::now());
    assert_eq!(audit_lines(&app).await, 1);
    let page = client.get("/console/accounts/acct_retry").await.body;
    assert!(page.contains("retry_top_up"), "{page}");
}
