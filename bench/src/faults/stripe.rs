//! Fake Stripes on loopback.
//!
//! - `start`, for `faults sigterm`: every Checkout Session is answered after a delay, so
//!   PurchaseCredits calls are in flight (waiting on Stripe) when the signal comes.
//! - `Fake`, for `faults top-up-kill`: what auto top-up needs, behaving as Stripe does where
//!   money is at stake. Customers and PaymentIntents are created once per `Idempotency-Key`
//!   and the first answer is stored and replayed for the key (a repeat with other parameters
//!   is refused, a repeat while the first request is still being answered is a 409, as Stripe
//!   does). A PaymentIntent is created as soon as its request arrives and answered only after
//!   `intent_delay`, so a `kill -9` lands between Stripe creating it and the service recording
//!   it (every few, after longer than the service waits: its outcome unknown, it searches, and
//!   search shows a PaymentIntent only a while after its creation, as Stripe's index lags). Each
//!   created PaymentIntent is then delivered as a signed `payment_intent.succeeded`
//!   until the service answers 200 (sometimes twice at once); every delivery is recorded, and
//!   so is when the first one was sent. Search (`metadata['top_up_attempt_id']`) and retrieve
//!   answer from what was created. Shapes come from the repository's fixtures
//!   (`tests/fixtures/api_payment_intent.json`, `api_customer.json`; the same files as
//!   `/work/shared/fixtures`), checked at start.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::webhook::sign;

/// The shape Stripe answers a new session with (the tests' fixture).
const SESSION: &str = include_str!("../../../tests/fixtures/api_checkout_session_retrieved_expanded.json");
/// `GET /v1/payment_intents/{id}`: Stripe's PaymentIntent, paid with the test Visa card.
const PAYMENT_INTENT: &str = include_str!("../../../tests/fixtures/api_payment_intent.json");
/// `POST /v1/customers`.
const CUSTOMER: &str = include_str!("../../../tests/fixtures/api_customer.json");
/// The API version of the events the fake sends (the fixtures').
const API_VERSION: &str = "2026-09-30.endive";

/// How long each answer waits.
pub(super) const DELAY: Duration = Duration::from_millis(500);

/// Serves until the runtime ends; its address, for `STRIPE_API_BASE`.
pub(super) async fn start() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/v1/checkout/sessions", post(open_session));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("fake Stripe stopped: {err}");
        }
    });
    Ok(addr)
}

async fn open_session() -> impl IntoResponse {
    tokio::time::sleep(DELAY).await;
    session_answer()
}

fn session_answer() -> impl IntoResponse {
    let id = format!("cs_test_faults_{}", uuid::Uuid::new_v4().simple());
    let mut session: Value = serde_json::from_str(SESSION).unwrap_or_default();
    session["id"] = Value::from(id.as_str());
    session["url"] = Value::from(format!("https://checkout.stripe.com/c/pay/{id}"));
    session["status"] = Value::from("open");
    session["payment_status"] = Value::from("unpaid");
    ([(header::CONTENT_TYPE, "application/json")], session.to_string())
}

/// One PaymentIntent the fake created.
#[derive(Debug, Clone)]
pub(super) struct Created {
    pub id: String,
    /// The `Idempotency-Key` it was created under.
    pub key: String,
    pub account: String,
    /// `metadata.top_up_attempt_id`.
    pub attempt: String,
    pub created: Instant,
    pub intent: Value,
    /// When its first `payment_intent.succeeded` delivery was sent.
    pub first_delivery: Option<Instant>,
    /// Deliveries sent, and those the service answered 200.
    pub deliveries: u32,
    pub acknowledged: u32,
}

/// A key's stored first answer.
struct Stored {
    status: u16,
    body: String,
    form: HashMap<String, String>,
    /// Until then the first request is still being answered: a repeat is a 409.
    answered_at: Instant,
}

#[derive(Default)]
struct Ledger {
    intents: Vec<Created>,
    /// `Idempotency-Key` → its stored answer (PaymentIntents and Customers).
    answers: HashMap<String, Stored>,
    counts: Counts,
    customers: HashMap<String, String>,
    /// Creation answers being held back now.
    in_flight: usize,
}

/// Where the fake posts events.
#[derive(Clone)]
struct Receiver {
    http: reqwest::Client,
    url: String,
    secret: String,
}

struct Inner {
    ledger: Mutex<Ledger>,
    receiver: Mutex<Option<Receiver>>,
    timing: Timing,
    intent_template: Value,
    customer_template: Value,
}

/// How the auto top-up fake answers and delivers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// How long a PaymentIntent's creation is answered after it was created.
    pub answer: Duration,
    /// Every `slow_every`-th creation is answered after `slow_answer` instead: longer than the
    /// service waits, so its outcome is unknown to it and it searches.
    pub slow_answer: Duration,
    pub slow_every: u64,
    /// Before the first delivery of a created PaymentIntent's event, after its answer; every
    /// other one waits `late_lag` instead (Stripe's deliveries lag at times), so a restarted
    /// worker finds its attempt still `charging` and asks again under the same key first.
    pub delivery_lag: Duration,
    pub late_lag: Duration,
    /// Search shows a PaymentIntent only this long after its creation (Stripe's index lags).
    pub search_lag: Duration,
}

/// What the fake was asked.
#[derive(Debug, Clone, Default)]
pub(super) struct Counts {
    /// POSTs per PaymentIntent key, the first included.
    pub requests: HashMap<String, u32>,
    /// PaymentIntents created per key.
    pub creations: HashMap<String, u32>,
    /// Repeats refused: in progress (409) or with other parameters (400).
    pub conflicts: u32,
    pub mismatches: Vec<String>,
    pub searches: u32,
}

/// The auto top-up fake; cheap to clone.
#[derive(Clone)]
pub(super) struct Fake {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

/// Unlocks a poisoned lock too: the fake's state stays readable for the verdict.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts a creation answer held back while it is (a dropped request too).
struct Holding(Arc<Inner>);

impl Drop for Holding {
    fn drop(&mut self) {
        let mut ledger = lock(&self.0.ledger);
        ledger.in_flight = ledger.in_flight.saturating_sub(1);
    }
}

fn template(text: &str, object: &str, file: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(text).with_context(|| format!("fixture {file} is not JSON"))?;
    if value["object"] != object || !value["id"].is_string() {
        bail!("fixture {file} is not a Stripe {object}");
    }
    Ok(value)
}

fn json_answer(status: u16, body: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn stripe_error(status: u16, kind: &str, message: &str) -> Response {
    json_answer(
        status,
        json!({ "error": { "type": kind, "message": message } }).to_string(),
    )
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn metadata(form: &HashMap<String, String>) -> serde_json::Map<String, Value> {
    form.iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), Value::from(v.as_str())))
        })
        .collect()
}

impl Fake {
    /// Serves until the runtime ends, answering and delivering as `timing` says.
    pub(super) async fn start(timing: Timing) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner {
            ledger: Mutex::default(),
            receiver: Mutex::default(),
            timing,
            intent_template: template(PAYMENT_INTENT, "payment_intent", "api_payment_intent.json")?,
            customer_template: template(CUSTOMER, "customer", "api_customer.json")?,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/v1/checkout/sessions", post(|| async { session_answer() }))
            .route("/v1/customers", post(create_customer))
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/search", get(search_intents))
            .route("/v1/payment_intents/{id}", get(retrieve_intent))
            .with_state(inner.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("fake Stripe stopped: {err}");
            }
        });
        Ok(Self { inner, addr })
    }

    /// Where `payment_intent.succeeded` goes, signed with `secret`.
    pub(super) fn deliver_to(&self, http: reqwest::Client, url: String, secret: &str) {
        *lock(&self.inner.receiver) = Some(Receiver {
            http,
            url,
            secret: secret.to_owned(),
        });
    }

    /// The Customer created for `account`.
    pub(super) fn customer_of(&self, account: &str) -> Option<String> {
        lock(&self.inner.ledger).customers.get(account).cloned()
    }

    /// PaymentIntent creations whose answer is being held back now.
    pub(super) fn in_flight(&self) -> usize {
        lock(&self.inner.ledger).in_flight
    }

    /// Every PaymentIntent created, oldest first.
    pub(super) fn intents(&self) -> Vec<Created> {
        lock(&self.inner.ledger).intents.clone()
    }

    /// What the fake was asked.
    pub(super) fn counts(&self) -> Counts {
        lock(&self.inner.ledger).counts.clone()
    }

    /// Created PaymentIntents not yet acknowledged by the service.
    pub(super) fn undelivered(&self) -> usize {
        lock(&self.inner.ledger)
            .intents
            .iter()
            .filter(|i| i.acknowledged == 0)
            .count()
    }

    /// Delivers every created PaymentIntent's event again, and a copy of it under another event
    /// id (as a second endpoint or a resend would), all at once; the deliveries not answered 200.
    pub(super) async fn redeliver_all(&self) -> Vec<String> {
        let intents = self.intents();
        let mut calls = tokio::task::JoinSet::new();
        for (n, created) in intents.iter().enumerate() {
            for event_id in [event_id(&created.id), format!("evt_faults_copy_{n}")] {
                let (inner, id) = (self.inner.clone(), created.id.clone());
                calls.spawn(async move {
                    let status = deliver_once(&inner, &id, &event_id).await;
                    (status != Some(200))
                        .then(|| format!("redelivery {event_id} of {id} answered {status:?}"))
                });
            }
        }
        let mut refused = Vec::new();
        while let Some(done) = calls.join_next().await {
            if let Ok(Some(problem)) = done {
                refused.push(problem);
            }
        }
        refused
    }
}

/// Sends one `payment_intent.succeeded` for `intent_id` under `event_id`; the HTTP status,
/// `None` when the service did not answer.
async fn deliver_once(inner: &Inner, intent_id: &str, event_id: &str) -> Option<u16> {
    let receiver = lock(&inner.receiver).clone()?;
    let intent = {
        let mut ledger = lock(&inner.ledger);
        let created = ledger.intents.iter_mut().find(|i| i.id == intent_id)?;
        created.first_delivery.get_or_insert_with(Instant::now);
        created.deliveries += 1;
        created.intent.clone()
    };
    let now = chrono::Utc::now().timestamp();
    let body = json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded",
        "api_version": API_VERSION, "created": now, "livemode": false, "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "data": { "object": intent }
    })
    .to_string();
    let signature = sign(&body, &receiver.secret, now);
    let status = receiver
        .http
        .post(&receiver.url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .timeout(Duration::from_secs(20))
        .body(body)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    if status == Some(200) {
        let mut ledger = lock(&inner.ledger);
        if let Some(created) = ledger.intents.iter_mut().find(|i| i.id == intent_id) {
            created.acknowledged += 1;
        }
    }
    status
}

/// Stripe's retries: delivers until the service answers 200 (every 200 ms, for 5 minutes).
async fn deliver_until_acknowledged(inner: Arc<Inner>, intent_id: String) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if deliver_once(&inner, &intent_id, &event_id(&intent_id)).await == Some(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn event_id(intent_id: &str) -> String {
    format!("evt_faults_{intent_id}")
}

async fn create_customer(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = idempotency_key(&headers) else {
        return stripe_error(400, "invalid_request_error", "the fake wants an Idempotency-Key");
    };
    let form = form(&body);
    let mut ledger = lock(&inner.ledger);
    if let Some(stored) = ledger.answers.get(&key) {
        return json_answer(stored.status, stored.body.clone());
    }
    let id = format!("cus_faults{:05}", ledger.customers.len() + 1);
    let mut customer = inner.customer_template.clone();
    customer["id"] = Value::from(id.as_str());
    customer["email"] = form.get("email").map_or(Value::Null, |e| Value::from(e.as_str()));
    customer["metadata"] = Value::Object(metadata(&form));
    if let Some(account) = form.get("metadata[account_id]") {
        ledger.customers.insert(account.clone(), id);
    }
    let body = customer.to_string();
    ledger.answers.insert(
        key,
        Stored {
            status: 200,
            body: body.clone(),
            form,
            answered_at: Instant::now(),
        },
    );
    json_answer(200, body)
}

async fn create_intent(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = idempotency_key(&headers) else {
        return stripe_error(400, "invalid_request_error", "the fake wants an Idempotency-Key");
    };
    let form = form(&body);
    let (created, holding, number, hold) = {
        let mut ledger = lock(&inner.ledger);
        *ledger.counts.requests.entry(key.clone()).or_insert(0) += 1;
        if let Some(stored) = ledger.answers.get(&key) {
            if stored.form != form {
                let what = format!("key {key} repeated with other parameters");
                ledger.counts.mismatches.push(what);
                ledger.counts.conflicts += 1;
                return stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
            }
            if stored.answered_at > Instant::now() {
                ledger.counts.conflicts += 1;
                return stripe_error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Stripe API Key and idempotency key.",
                );
            }
            return json_answer(stored.status, stored.body.clone());
        }
        let number = ledger.intents.len() as u64 + 1;
        let id = format!("pi_faults{number:06}");
        let timing = inner.timing;
        let hold = if number.is_multiple_of(timing.slow_every.max(1)) {
            timing.slow_answer
        } else {
            timing.answer
        };
        let mut intent = inner.intent_template.clone();
        let amount: i64 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        intent["id"] = Value::from(id.as_str());
        intent["amount"] = Value::from(amount);
        intent["amount_received"] = Value::from(amount);
        intent["currency"] = Value::from(form.get("currency").cloned().unwrap_or_default());
        intent["customer"] = form
            .get("customer")
            .map_or(Value::Null, |c| Value::from(c.as_str()));
        intent["payment_method"] = form
            .get("payment_method")
            .map_or(Value::Null, |m| Value::from(m.as_str()));
        intent["status"] = Value::from("succeeded");
        intent["client_secret"] = Value::from(format!("{id}_secret_faults"));
        intent["created"] = Value::from(chrono::Utc::now().timestamp());
        intent["metadata"] = Value::Object(metadata(&form));
        let body = intent.to_string();
        ledger.answers.insert(
            key.clone(),
            Stored {
                status: 200,
                body: body.clone(),
                form: form.clone(),
                answered_at: Instant::now() + hold,
            },
        );
        *ledger.counts.creations.entry(key.clone()).or_insert(0) += 1;
        let created = Created {
            id: id.clone(),
            key,
            account: form.get("metadata[account_id]").cloned().unwrap_or_default(),
            attempt: form
                .get("metadata[top_up_attempt_id]")
                .cloned()
                .unwrap_or_default(),
            created: Instant::now(),
            intent,
            first_delivery: None,
            deliveries: 0,
            acknowledged: 0,
        };
        ledger.intents.push(created.clone());
        ledger.in_flight += 1;
        (created, Holding(inner.clone()), number, hold)
    };
    // Stripe's own delivery: after the answer and a lag (a long one every other time), until
    // acknowledged; one time in three a second delivery of the same event races the first.
    let timing = inner.timing;
    let lag = hold
        + if number.is_multiple_of(2) {
            timing.late_lag
        } else {
            timing.delivery_lag
        };
    let twice = number.is_multiple_of(3);
    tokio::spawn({
        let (inner, id) = (inner.clone(), created.id.clone());
        async move {
            tokio::time::sleep(lag).await;
            if twice {
                tokio::spawn(deliver_until_acknowledged(inner.clone(), id.clone()));
            }
            deliver_until_acknowledged(inner, id).await;
        }
    });
    tokio::time::sleep(hold).await;
    drop(holding);
    json_answer(200, created.intent.to_string())
}

async fn search_intents(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let query: String = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // metadata['top_up_attempt_id']:'<id>'
    let wanted = query
        .rsplit(":'")
        .next()
        .unwrap_or_default()
        .trim_end_matches('\'')
        .to_owned();
    let mut ledger = lock(&inner.ledger);
    ledger.counts.searches += 1;
    let data: Vec<Value> = ledger
        .intents
        .iter()
        .filter(|i| i.attempt == wanted && i.created.elapsed() >= inner.timing.search_lag)
        .map(|i| i.intent.clone())
        .collect();
    json_answer(
        200,
        json!({ "object": "search_result", "url": "/v1/payment_intents/search", "has_more": false,
                "next_page": null, "data": data })
        .to_string(),
    )
}

async fn retrieve_intent(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let found = lock(&inner.ledger)
        .intents
        .iter()
        .find(|i| i.id == id)
        .map(|i| i.intent.clone());
    // A Checkout's PaymentIntent (the fixture's, paid with the test card) when no top-up's.
    let intent = found.unwrap_or_else(|| {
        let mut intent = inner.intent_template.clone();
        intent["id"] = Value::from(id.as_str());
        intent
    });
    json_answer(200, intent.to_string())
}
