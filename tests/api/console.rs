//! The operator console over HTTP: sign-in and its rate limit, sessions, CSRF and role
//! refusals, a grant submitted twice crediting once and audited once, sign-out.

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::helpers::{
    TestApp,
    console::{ConsoleClient, PASSWORD, console_app, field_after},
    spawn_app,
};

async fn signed_in(app: &TestApp, user: &str) -> ConsoleClient {
    let mut client = ConsoleClient::new(app);
    let answer = client.sign_in(user, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    client
}

async fn grant_count(app: &TestApp, account: &str) -> u64 {
    credits::entities::credit_ledger::Entity::find()
        .filter(credits::entities::credit_ledger::Column::AccountId.eq(account))
        .filter(credits::entities::credit_ledger::Column::Kind.eq("grant"))
        .count(&app.db.connect().await)
        .await
        .expect("count grants")
}

async fn audit_count(app: &TestApp) -> u64 {
    credits::entities::console_audit::Entity::find()
        .count(&app.db.connect().await)
        .await
        .expect("count audit lines")
}

#[tokio::test]
async fn the_console_is_off_unless_configured() {
    let app = spawn_app().await;
    let mut client = ConsoleClient::new(&app);
    assert_eq!(client.get("/console/sign-in").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn console_sign_in_sets_a_strict_session_cookie_and_a_wrong_password_does_not() {
    let app = console_app().spawn().await;
    let mut client = ConsoleClient::new(&app);
    let away = client.get("/console/search").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.location.as_deref(), Some("/console/sign-in"));

    let wrong = client.sign_in("alice", "hunter2").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.set_cookie.is_none());
    assert!(wrong.body.contains("Wrong name or password"), "{}", wrong.body);

    let right = client.sign_in("alice", PASSWORD).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let cookie = right.set_cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let page = client.get("/console/search").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice") && page.body.contains("operator"));
}

#[tokio::test]
async fn a_console_sign_in_without_the_forms_token_is_refused() {
    let app = console_app().spawn().await;
    let mut client = ConsoleClient::new(&app);
    let form = [("user", "alice"), ("password", PASSWORD), ("csrf", "forged")];
    let refused = client.post("/console/sign-in", &form).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.set_cookie.is_none());
}

#[tokio::test]
async fn console_sign_ins_are_refused_after_five_failures_for_a_name() {
    let app = console_app().spawn().await;
    let mut client = ConsoleClient::new(&app);
    for _ in 0..5 {
        assert_eq!(
            client.sign_in("alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password, until the window passes.
    let limited = client.sign_in("alice", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.set_cookie.is_none());
    // Another name from the same address is not locked out yet.
    assert_eq!(
        client.sign_in("victor", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn console_search_by_email_leads_to_the_account_page() {
    let app = console_app().spawn().await;
    app.ensure("acct_search").await;
    let mut client = signed_in(&app, "victor").await;
    let found = client.get("/console/search?q=acct_search%40example.com").await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(found.location.as_deref(), Some("/console/accounts/acct_search"));
    let page = client.get("/console/accounts/acct_search").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("acct_search@example.com"));
    // A viewer sees no action forms.
    assert!(!page.body.contains("/grant\""), "{}", page.body);
    let missing = client.get("/console/search?q=nobody%40example.com").await;
    assert_eq!(missing.status, StatusCode::OK);
    assert!(missing.body.contains("No account matches"));
}

#[tokio::test]
async fn a_console_post_without_the_sessions_csrf_token_is_refused() {
    let app = console_app().spawn().await;
    app.ensure("acct_csrf").await;
    let mut client = signed_in(&app, "alice").await;
    let page = client.get("/console/accounts/acct_csrf").await.body;
    let key = field_after(&page, "/grant\"", "key");
    for csrf in ["", "0123456789abcdef"] {
        let form = [
            ("csrf", csrf),
            ("key", key.as_str()),
            ("credits", "10"),
            ("reason", "goodwill"),
        ];
        let refused = client.post("/console/accounts/acct_csrf/grant", &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    }
    // Another session's token does not work either.
    let mut other = signed_in(&app, "alice").await;
    let other_csrf = field_after(&other.get("/console/search").await.body, "", "csrf");
    let form = [
        ("csrf", other_csrf.as_str()),
        ("key", key.as_str()),
        ("credits", "10"),
        ("reason", "goodwill"),
    ];
    let refused = client.post("/console/accounts/acct_csrf/grant", &form).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(grant_count(&app, "acct_csrf").await, 0);
    assert_eq!(audit_count(&app).await, 0);
}

#[tokio::test]
async fn a_console_viewer_cannot_grant() {
    let app = console_app().spawn().await;
    app.ensure("acct_viewer").await;
    let mut client = signed_in(&app, "victor").await;
    let csrf = field_after(
        &client.get("/console/accounts/acct_viewer").await.body,
        "",
        "csrf",
    );
    let form = [
        ("csrf", csrf.as_str()),
        ("key", "0123456789abcdef0123456789abcdef"),
        ("credits", "10"),
        ("reason", "goodwill"),
    ];
    let refused = client.post("/console/accounts/acct_viewer/grant", &form).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("viewers cannot act"), "{}", refused.body);
    assert_eq!(grant_count(&app, "acct_viewer").await, 0);
}

#[tokio::test]
async fn a_console_grant_submitted_twice_credits_once_and_is_audited_once() {
    let app = console_app().spawn().await;
    app.ensure("acct_grant").await;
    let mut client = signed_in(&app, "alice").await;
    let page = client.get("/console/accounts/acct_grant").await.body;
    let csrf = field_after(&page, "/grant\"", "csrf");
    let key = field_after(&page, "/grant\"", "key");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("credits", "150"),
        ("reason", "refund goodwill"),
        ("expires_on", ""),
    ];
    let first = client.post("/console/accounts/acct_grant/grant", &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let second = client.post("/console/accounts/acct_grant/grant", &form).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.body);
    assert!(
        second.location.unwrap_or_default().contains("Already"),
        "a replay says so"
    );

    assert_eq!(grant_count(&app, "acct_grant").await, 1);
    assert_eq!(audit_count(&app).await, 1);
    let entries = app.entries_of_kind("acct_grant", "grant").await;
    assert_eq!(entries, vec![(150, "refund goodwill".to_owned())]);

    let page = client.get("/console/accounts/acct_grant").await.body;
    assert!(page.contains("refund goodwill"), "{page}");
    let audit = client.get("/console/audit").await.body;
    assert!(audit.contains("alice") && audit.contains("grant") && audit.contains("refund goodwill"));
}

#[tokio::test]
async fn console_sign_out_ends_the_session_even_for_a_kept_cookie() {
    let app = console_app().spawn().await;
    let mut client = signed_in(&app, "alice").await;
    let kept = client.cookie.clone();
    let csrf = field_after(&client.get("/console/search").await.body, "", "csrf");
    let out = client.post("/console/sign-out", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie.unwrap_or_default().contains("Max-Age=0"));
    assert_eq!(client.get("/console/search").await.status, StatusCode::SEE_OTHER);
    // The old cookie, replayed, no longer opens a page.
    client.cookie = kept;
    let replayed = client.get("/console/search").await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER);
    assert_eq!(replayed.location.as_deref(), Some("/console/sign-in"));
}

#[tokio::test]
async fn console_search_by_a_saved_card_customer_finds_its_account() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = console_app().spawn().await;
    app.ensure("acct_card").await;
    // As a Checkout that kept the card leaves it (no subscription names this Customer).
    credits::entities::account::ActiveModel {
        id: Set("acct_card".into()),
        stripe_customer_id: Set(Some("cus_test_card".into())),
        payment_method_id: Set(Some("pm_test_card".into())),
        ..Default::default()
    }
    .update(&app.db.connect().await)
    .await
    .expect("save the card");
    let mut client = signed_in(&app, "victor").await;
    let found = client.get("/console/search?q=cus_test_card").await;
    assert_eq!(found.status, StatusCode::SEE_OTHER, "{}", found.body);
    assert_eq!(found.location.as_deref(), Some("/console/accounts/acct_card"));
    let missing = client.get("/console/search?q=cus_test_nobody").await;
    assert!(missing.body.contains("No account matches"), "{}", missing.body);
}
