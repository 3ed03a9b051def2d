//! PurchaseCredits: the Checkout Session sent to Stripe, idempotency, and every error row.

use credits::grpc::pb;
use sha2::Digest;
use tonic::Code;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{STANDARD_PRICE, STARTER_PRICE, TestApp, form_of, form_value, spawn_app};

fn request(account_id: &str, email: &str, price_id: &str) -> pb::PurchaseCreditsRequest {
    pb::PurchaseCreditsRequest {
        account_id: account_id.into(),
        email: email.into(),
        price_id: price_id.into(),
        ..Default::default()
    }
}

async fn purchase(
    app: &TestApp,
    req: pb::PurchaseCreditsRequest,
) -> Result<pb::PurchaseCreditsResponse, tonic::Status> {
    app.grpc
        .clone()
        .purchase_credits(req)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn purchase_credits_creates_a_checkout_session_with_the_exact_fields() {
    let app = TestApp::builder()
        .env("ALLOWED_REDIRECT_ORIGINS", "https://shop.example.test")
        .spawn()
        .await;
    app.mock_checkout_sessions().await;

    let mut req = request("user-1", "Buyer@Example.com", STANDARD_PRICE);
    req.success_url = "https://shop.example.test/ok?session={CHECKOUT_SESSION_ID}".into();
    req.cancel_url = "https://shop.example.test/cancel".into();
    let response = purchase(&app, req).await.expect("PurchaseCredits");
    assert_eq!(response.checkout_session_id, "cs_test_new_0001");
    assert_eq!(
        response.checkout_url,
        "https://checkout.stripe.com/c/pay/cs_test_new_0001"
    );
    assert!(!response.purchase_id.is_empty());

    let requests = app.stripe_requests().await;
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v1/checkout/sessions");
    assert_eq!(
        sent.headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk_test_credits")
    );
    assert!(
        sent.headers.get("idempotency-key").is_none(),
        "no key unless the caller gives one"
    );
    let mut form = form_of(sent);
    form.sort();
    let mut want: Vec<(String, String)> = [
        ("cancel_url", "https://shop.example.test/cancel"),
        ("client_reference_id", "user-1"),
        ("customer_email", "buyer@example.com"),
        ("line_items[0][price]", STANDARD_PRICE),
        ("line_items[0][quantity]", "1"),
        ("metadata[account_id]", "user-1"),
        ("metadata[pack_id]", "standard"),
        ("metadata[price_id]", STANDARD_PRICE),
        ("mode", "payment"),
        (
            "success_url",
            "https://shop.example.test/ok?session={CHECKOUT_SESSION_ID}",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    want.sort();
    assert_eq!(form, want);

    // The account was created on first sight: trial, zero balance, email lower-cased.
    let balance = app.balance("user-1").await.expect("GetBalance");
    assert_eq!(balance.email, "buyer@example.com");
    assert_eq!(balance.credit_balance, 0);
    assert!(balance.is_trial_user);

    let purchases = app.purchases_of("user-1").await;
    assert_eq!(purchases.len(), 1);
    assert_eq!(purchases[0].status, "pending");
    assert_eq!(purchases[0].credit_pack_id, "standard");
    assert_eq!(purchases[0].quantity, 1000);
    assert_eq!(purchases[0].amount, 1500);
    assert_eq!(purchases[0].stripe_checkout_session_id, "cs_test_new_0001");
}

#[tokio::test]
async fn redirect_urls_default_to_the_frontend() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    purchase(&app, request("user-1", "a@example.com", STARTER_PRICE))
        .await
        .expect("PurchaseCredits");
    let requests = app.stripe_requests().await;
    let form = form_of(&requests[0]);
    assert_eq!(
        form_value(&form, "success_url"),
        Some("https://app.example.test/dashboard/credits?checkout=success&session_id={CHECKOUT_SESSION_ID}")
    );
    assert_eq!(
        form_value(&form, "cancel_url"),
        Some("https://app.example.test/dashboard/credits?checkout=cancelled")
    );
}

fn with_redirects(success_url: &str, cancel_url: &str) -> pb::PurchaseCreditsRequest {
    pb::PurchaseCreditsRequest {
        success_url: success_url.into(),
        cancel_url: cancel_url.into(),
        ..request("user-1", "a@example.com", STANDARD_PRICE)
    }
}

/// Asserts each request is INVALID_ARGUMENT naming `field`, and that nothing happened.
async fn assert_refused(app: &TestApp, cases: Vec<(pb::PurchaseCreditsRequest, &str)>) {
    for (req, field) in cases {
        let urls = format!("{:?} {:?}", req.success_url, req.cancel_url);
        let status = purchase(app, req).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{urls}: {status:?}");
        assert!(
            status.message().contains(field),
            "{urls}: {field} not named in {:?}",
            status.message()
        );
    }
    assert!(app.stripe_requests().await.is_empty(), "nothing reached Stripe");
    assert!(app.purchases_of("user-1").await.is_empty(), "nothing recorded");
}

#[tokio::test]
async fn redirect_urls_of_another_origin_are_invalid_argument_and_never_reach_stripe() {
    // FRONTEND_URL is https://app.example.test, so that origin alone is allowed.
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let ok = "https://app.example.test/ok";
    let cases = vec![
        (with_redirects("https://evil.test/ok", ""), "success_url"),
        (with_redirects("", "https://evil.test/cancel"), "cancel_url"),
        (with_redirects(ok, "https://evil.test/cancel"), "cancel_url"),
        (
            with_redirects("https://app.example.test.evil.test/ok", ""),
            "success_url",
        ),
        (
            with_redirects("https://app.example.testevil.test/ok", ""),
            "success_url",
        ),
        (
            with_redirects("https://evil.test/https://app.example.test/", ""),
            "success_url",
        ),
        (
            with_redirects("https://app.example.test@evil.test/ok", ""),
            "success_url",
        ),
        (
            with_redirects("https://evil.test\\@app.example.test/ok", ""),
            "success_url",
        ),
        (with_redirects("http://app.example.test/ok", ""), "success_url"),
        (
            with_redirects("https://app.example.test:8443/ok", ""),
            "success_url",
        ),
        (with_redirects("https://app.example.test/o\nk", ""), "success_url"),
    ];
    assert_refused(&app, cases).await;
}

#[tokio::test]
async fn redirect_urls_on_an_allowed_origin_pass_however_the_origin_is_written() {
    let app = TestApp::builder()
        .env(
            "ALLOWED_REDIRECT_ORIGINS",
            "https://Shop.Example.test, https://www.example.test:8443",
        )
        .spawn()
        .await;
    app.mock_checkout_sessions().await;
    let success = "https://SHOP.example.test:443/ok?session={CHECKOUT_SESSION_ID}";
    let cancel = "https://www.example.test:8443/cancel";
    purchase(&app, with_redirects(success, cancel))
        .await
        .expect("allowed origins");
    let requests = app.stripe_requests().await;
    assert_eq!(requests.len(), 1);
    let form = form_of(&requests[0]);
    assert_eq!(form_value(&form, "success_url"), Some(success), "sent as given");
    assert_eq!(form_value(&form, "cancel_url"), Some(cancel));

    // Once the list is set it is the whole list: FRONTEND_URL's origin is not added to it, and
    // the default port is not the configured one.
    let status = purchase(&app, with_redirects("https://app.example.test/ok", ""))
        .await
        .expect_err("not listed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("success_url"), "{status:?}");
    let status = purchase(&app, with_redirects("", "https://www.example.test/cancel"))
        .await
        .expect_err("another port");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cancel_url"), "{status:?}");
    assert_eq!(app.stripe_requests().await.len(), 1);
}

#[tokio::test]
async fn in_production_plain_http_redirects_pass_only_on_loopback() {
    let app = TestApp::builder()
        .env("APP_ENV", "production")
        .env(
            "ALLOWED_REDIRECT_ORIGINS",
            "https://app.example.test,http://localhost:3000,http://127.0.0.1:8080,http://[::1]:3000",
        )
        .spawn()
        .await;
    app.mock_checkout_sessions().await;
    for (success, cancel) in [
        ("http://localhost:3000/ok", "http://127.0.0.1:8080/cancel"),
        ("http://[::1]:3000/ok", "https://app.example.test/cancel"),
    ] {
        purchase(&app, with_redirects(success, cancel))
            .await
            .unwrap_or_else(|status| panic!("{success} {cancel}: {status:?}"));
    }
    assert_eq!(app.stripe_requests().await.len(), 2);

    let refused = [
        (with_redirects("http://app.example.test/ok", ""), "success_url"),
        (with_redirects("", "http://app.example.test/cancel"), "cancel_url"),
    ];
    for (req, field) in refused {
        let status = purchase(&app, req).await.expect_err("plain http");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
        assert!(status.message().contains("https"), "{status:?}");
    }
    assert_eq!(
        app.stripe_requests().await.len(),
        2,
        "no Stripe call for a refused URL"
    );

    // In development plain http is fine on an allowed origin.
    let dev = TestApp::builder()
        .env("ALLOWED_REDIRECT_ORIGINS", "http://shop.example.test")
        .spawn()
        .await;
    dev.mock_checkout_sessions().await;
    purchase(&dev, with_redirects("http://shop.example.test/ok", ""))
        .await
        .expect("http in development");
}

#[tokio::test]
async fn a_repeat_with_the_same_idempotency_key_returns_the_same_session() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let mut req = request("user-1", "a@example.com", STANDARD_PRICE);
    req.idempotency_key = "order-42".into();

    let first = purchase(&app, req.clone()).await.expect("first");
    let second = purchase(&app, req.clone()).await.expect("repeat");
    assert_eq!(first, second);

    let requests = app.stripe_requests().await;
    assert_eq!(requests.len(), 1, "the repeat is answered from the database");
    assert_eq!(
        requests[0]
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(hex::encode(sha2::Sha256::digest("user-1\norder-42")).as_str()),
        "Stripe's key is scoped to the account"
    );
    assert_eq!(
        app.purchases_of("user-1").await.len(),
        1,
        "no second pending purchase"
    );

    // Concurrent repeats of a new key: Stripe (idempotent) answers one session; one purchase.
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            crate::helpers::open_session_json("cs_test_same"),
            "application/json",
        ))
        .with_priority(1)
        .mount(&app.stripe)
        .await;
    req.idempotency_key = "order-43".into();
    let calls = (0..8).map(|_| purchase(&app, req.clone()));
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|r| r.expect("concurrent repeat").purchase_id)
        .collect();
    assert_eq!(ids.len(), 1, "every concurrent repeat names the same purchase");
    assert_eq!(app.purchases_of("user-1").await.len(), 2);
}

#[tokio::test]
async fn invalid_fields_are_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let cases = [
        (request("", "a@example.com", STANDARD_PRICE), "account_id"),
        (request("user-1", "", STANDARD_PRICE), "email"),
        (request("user-1", "not-an-email", STANDARD_PRICE), "email"),
        (request("user-1", "a@example.com", ""), "price_id"),
        (
            pb::PurchaseCreditsRequest {
                success_url: "ftp://example.com/ok".into(),
                ..request("user-1", "a@example.com", STANDARD_PRICE)
            },
            "success_url",
        ),
        (
            pb::PurchaseCreditsRequest {
                cancel_url: "not a url".into(),
                ..request("user-1", "a@example.com", STANDARD_PRICE)
            },
            "cancel_url",
        ),
        (
            pb::PurchaseCreditsRequest {
                idempotency_key: "k".repeat(256),
                ..request("user-1", "a@example.com", STANDARD_PRICE)
            },
            "idempotency_key",
        ),
    ];
    for (req, field) in cases {
        let status = purchase(&app, req).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field} not named in {:?}",
            status.message()
        );
    }
    assert!(app.stripe_requests().await.is_empty(), "nothing reached Stripe");
}

#[tokio::test]
async fn an_unknown_price_is_not_found() {
    let app = spawn_app().await;
    let status = purchase(&app, request("user-1", "a@example.com", "price_nope"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("price_nope"));
}

#[tokio::test]
async fn an_email_held_by_another_account_is_already_exists() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    purchase(&app, request("user-1", "shared@example.com", STANDARD_PRICE))
        .await
        .expect("first account");
    let status = purchase(&app, request("user-2", "SHARED@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(app.stripe_requests().await.len(), 1);
}

#[tokio::test]
async fn stripe_not_configured_is_failed_precondition() {
    let app = TestApp::builder().without("STRIPE_SECRET_KEY").spawn().await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("Stripe"));
}

#[tokio::test]
async fn stripe_5xx_is_unavailable_and_records_nothing() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            r#"{"error":{"type":"api_error","message":"An unknown error occurred"}}"#,
            "application/json",
        ))
        .mount(&app.stripe)
        .await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(app.purchases_of("user-1").await.is_empty());
}

#[tokio::test]
async fn stripe_unreachable_is_unavailable() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let app = TestApp::builder()
        .env("STRIPE_API_BASE", &format!("http://{closed}"))
        .spawn()
        .await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn stripe_slower_than_the_timeout_is_unavailable() {
    let app = TestApp::builder().env("STRIPE_TIMEOUT_MS", "300").spawn().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(crate::helpers::open_session_json("cs_slow"), "application/json")
                .set_delay(std::time::Duration::from_secs(3)),
        )
        .mount(&app.stripe)
        .await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn stripe_4xx_is_failed_precondition_with_its_message() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            r#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"line_items[0][price]","message":"No such price: 'price_1PgafmB7WZ01zgkW02Hf9z6c'"}}"#,
            "application/json",
        ))
        .mount(&app.stripe)
        .await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("No such price"),
        "{:?}",
        status.message()
    );
}

#[tokio::test]
async fn a_database_outage_is_unavailable_without_sql_in_the_message() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let outage = app.db.outage().await;
    let status = purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect_err("refused");
    outage.end().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let message = status.message().to_lowercase();
    for sql in ["select", "insert", "from", "sqlite", "postgres"] {
        assert!(!message.contains(sql), "{sql} leaked: {message}");
    }
    // Once the database is back, the same request goes through.
    purchase(&app, request("user-1", "a@example.com", STANDARD_PRICE))
        .await
        .expect("after the outage");
}
