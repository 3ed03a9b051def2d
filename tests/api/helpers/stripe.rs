//! The fake Stripe every test app talks to: new Checkout Sessions on demand, the fixture's line
//! items, the fixture account and buyer, and reading what was sent.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use wiremock::{
    Mock, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

use super::{FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_PRICE, TestApp, fixture};

impl TestApp {
    /// Answers `POST /v1/checkout/sessions` with a new open session each time.
    pub async fn mock_checkout_sessions(&self) {
        Mock::given(method("POST"))
            .and(path("/v1/checkout/sessions"))
            .respond_with(NewSessions::default())
            .mount(&self.stripe)
            .await;
    }

    /// Answers the fixture session's line items (2 × standard).
    pub async fn mock_line_items(&self, session_id: &str) {
        Mock::given(method("GET"))
            .and(path(format!("/v1/checkout/sessions/{session_id}/line_items")))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                fixture("api_checkout_session_line_items.json"),
                "application/json",
            ))
            .mount(&self.stripe)
            .await;
    }

    pub async fn stripe_requests(&self) -> Vec<Request> {
        self.stripe.received_requests().await.unwrap_or_default()
    }

    /// The account the fixtures pay for, created the way callers create accounts.
    pub async fn fixture_account(&self) {
        self.mock_checkout_sessions().await;
        self.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
            .await
            .expect("account created");
    }

    /// The fixture account, plus the fake Stripe answering its paid session's line items.
    pub async fn fixture_buyer(&self) {
        self.fixture_account().await;
        self.mock_line_items(FIXTURE_SESSION).await;
    }
}

/// `application/x-www-form-urlencoded` body of a request, decoded, in order.
pub fn form_of(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

pub fn form_value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A fake Stripe that opens a new Checkout Session per call, shaped like the fixture.
#[derive(Default)]
pub struct NewSessions {
    counter: AtomicUsize,
}

impl Respond for NewSessions {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_raw(
            open_session_json(&format!("cs_test_new_{n:04}")),
            "application/json",
        )
    }
}

/// The fixture session, re-shaped as a freshly created one.
pub fn open_session_json(session_id: &str) -> String {
    let mut session: Value = serde_json::from_str(&fixture("api_checkout_session_retrieved_expanded.json"))
        .expect("fixture is JSON");
    session["id"] = Value::from(session_id);
    session["url"] = Value::from(format!("https://checkout.stripe.com/c/pay/{session_id}"));
    session["status"] = Value::from("open");
    session["payment_status"] = Value::from("unpaid");
    session.to_string()
}
