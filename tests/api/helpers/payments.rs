//! A fake Stripe for saved cards and off-session charges, behaving as Stripe does where money
//! is at stake: an `Idempotency-Key` gets the first answer given for it replayed (errors and
//! 500s included), PaymentIntents are found again by id and by metadata search, a decline or
//! `authentication_required` is HTTP 402 `card_error` with the PaymentIntent in the body.
//! Shapes come from the fixtures (`api_customer.json`, `api_payment_intent.json`).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use wiremock::{
    Mock, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use super::{TestApp, fixture};

/// How the fake answers a charge under a key it has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// 200, `succeeded`.
    Succeed,
    /// 402 `card_declined`; the PaymentIntent is left `requires_payment_method`.
    Decline,
    /// 402 `authentication_required`; the PaymentIntent waits in `requires_action`.
    AuthRequired,
    /// 500 before anything was created; the 500 is stored for the key.
    Fail,
    /// The PaymentIntent is created (`succeeded`) but the answer is a 500, stored for the key.
    CreateThenFail,
    /// Created (`succeeded`), answered after this long (the client may have given up).
    Slow(Duration),
}

#[derive(Default)]
struct State {
    plan: VecDeque<Charge>,
    /// The answer stored for each key, replayed on a repeat.
    answers: HashMap<String, (u16, String)>,
    intents: Vec<Value>,
    customers: usize,
}

/// The fake's state, shared by its responders and the test.
#[derive(Clone, Default)]
pub struct FakePayments {
    state: Arc<Mutex<State>>,
}

impl FakePayments {
    /// Mounts the fake on the app's Stripe: customers, PaymentIntents (create, retrieve,
    /// search). `plan` is how successive new keys are answered; after it runs out, `Succeed`.
    pub async fn mount(app: &TestApp, plan: &[Charge]) -> Self {
        let fake = Self::default();
        fake.lock().plan = plan.iter().copied().collect();
        fake.attach(app).await;
        fake
    }

    /// Answers `app`'s Stripe from this fake's state too (another instance of the service,
    /// the same Stripe account).
    pub async fn attach(&self, app: &TestApp) {
        let fake = self;
        Mock::given(method("POST"))
            .and(path("/v1/customers"))
            .respond_with(Customers(fake.clone()))
            .mount(&app.stripe)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/payment_intents/search"))
            .respond_with(Search(fake.clone()))
            .mount(&app.stripe)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(Create(fake.clone()))
            .mount(&app.stripe)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/payment_intents/pi_[A-Za-z0-9_]+$"))
            .respond_with(Retrieve(fake.clone()))
            .mount(&app.stripe)
            .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every PaymentIntent created, oldest first.
    pub fn intents(&self) -> Vec<Value> {
        self.lock().intents.clone()
    }

    pub fn customers_created(&self) -> usize {
        self.lock().customers
    }

    /// A created PaymentIntent as Stripe's `payment_intent.succeeded` event carries it.
    pub fn succeeded_event(&self, event_id: &str, intent_id: &str) -> String {
        let intent = self
            .intents()
            .into_iter()
            .find(|i| i["id"] == intent_id)
            .unwrap_or_else(|| panic!("no PaymentIntent {intent_id}"));
        json!({
            "id": event_id, "object": "event", "type": "payment_intent.succeeded",
            "api_version": "2026-09-30.endive", "created": super::now(),
            "data": { "object": intent }
        })
        .to_string()
    }
}

/// A PaymentIntent shaped like the fixture.
pub fn intent_json(id: &str, form: &HashMap<String, String>, status: &str) -> Value {
    let mut intent: Value =
        serde_json::from_str(&fixture("api_payment_intent.json")).expect("fixture is JSON");
    let amount: i64 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    intent["id"] = Value::from(id);
    intent["amount"] = Value::from(amount);
    intent["amount_received"] = Value::from(if status == "succeeded" { amount } else { 0 });
    intent["currency"] = Value::from(form.get("currency").cloned().unwrap_or_default());
    intent["customer"] = form
        .get("customer")
        .map_or(Value::Null, |c| Value::from(c.as_str()));
    intent["payment_method"] = form
        .get("payment_method")
        .map_or(Value::Null, |m| Value::from(m.as_str()));
    intent["status"] = Value::from(status);
    intent["client_secret"] = Value::from(format!("{id}_secret_x"));
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), Value::from(v.as_str())))
        })
        .collect();
    intent["metadata"] = Value::Object(metadata);
    if status != "succeeded" {
        intent["latest_charge"] = Value::Null;
    }
    intent
}

fn card_error(code: &str, message: &str, intent: &Value) -> String {
    json!({ "error": {
        "type": "card_error", "code": code, "message": message,
        "decline_code": if code == "card_declined" { Value::from("insufficient_funds") } else { Value::Null },
        "payment_intent": intent,
    }})
    .to_string()
}

fn form(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

fn json_answer(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

struct Create(FakePayments);

impl Respond for Create {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut state = self.0.lock();
        if let Some((status, body)) = state.answers.get(&key) {
            return json_answer(*status, body.clone());
        }
        let form = form(request);
        let behaviour = state.plan.pop_front().unwrap_or(Charge::Succeed);
        let id = format!("pi_fake{:04}", state.intents.len() + 1);
        let (status, body, delay) = match behaviour {
            Charge::Succeed | Charge::Slow(_) => {
                let intent = intent_json(&id, &form, "succeeded");
                state.intents.push(intent.clone());
                let delay = match behaviour {
                    Charge::Slow(d) => Some(d),
                    _ => None,
                };
                (200, intent.to_string(), delay)
            }
            Charge::Decline => {
                let mut intent = intent_json(&id, &form, "requires_payment_method");
                intent["last_payment_error"] = json!({"type": "card_error", "code": "card_declined", "message": "Your card has insufficient funds."});
                state.intents.push(intent.clone());
                (
                    402,
                    card_error("card_declined", "Your card has insufficient funds.", &intent),
                    None,
                )
            }
            Charge::AuthRequired => {
                let intent = intent_json(&id, &form, "requires_action");
                state.intents.push(intent.clone());
                (
                    402,
                    card_error(
                        "authentication_required",
                        "This payment requires authentication.",
                        &intent,
                    ),
                    None,
                )
            }
            Charge::Fail => (
                500,
                json!({"error": {"type": "api_error", "message": "An unknown error occurred"}}).to_string(),
                None,
            ),
            Charge::CreateThenFail => {
                let intent = intent_json(&id, &form, "succeeded");
                state.intents.push(intent);
                (
                    500,
                    json!({"error": {"type": "api_error", "message": "An unknown error occurred"}})
                        .to_string(),
                    None,
                )
            }
        };
        state.answers.insert(key, (status, body.clone()));
        let answer = json_answer(status, body);
        match delay {
            Some(delay) => answer.set_delay(delay),
            None => answer,
        }
    }
}

struct Retrieve(FakePayments);

impl Respond for Retrieve {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        let state = self.0.lock();
        // A Checkout's PaymentIntent (the fixture's), when no charge of ours has this id.
        let intent = state
            .intents
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap_or_else(|| {
                let mut intent: Value =
                    serde_json::from_str(&fixture("api_payment_intent.json")).expect("fixture");
                intent["id"] = Value::from(id);
                intent
            });
        json_answer(200, intent.to_string())
    }
}

struct Search(FakePayments);

impl Respond for Search {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        // metadata['top_up_attempt_id']:'<id>'
        let wanted = query
            .rsplit(":'")
            .next()
            .unwrap_or_default()
            .trim_end_matches('\'');
        let state = self.0.lock();
        let data: Vec<Value> = state
            .intents
            .iter()
            .filter(|i| i["metadata"]["top_up_attempt_id"] == wanted)
            .cloned()
            .collect();
        json_answer(
            200,
            json!({"object": "search_result", "url": "/v1/payment_intents/search", "has_more": false,
                   "next_page": null, "data": data})
            .to_string(),
        )
    }
}

struct Customers(FakePayments);

impl Respond for Customers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut state = self.0.lock();
        if let Some((status, body)) = state.answers.get(&key) {
            return json_answer(*status, body.clone());
        }
        state.customers += 1;
        let mut customer: Value = serde_json::from_str(&fixture("api_customer.json")).expect("fixture");
        customer["id"] = Value::from(format!("cus_fake{:04}", state.customers));
        let form = form(request);
        customer["email"] = form.get("email").map_or(Value::Null, |e| Value::from(e.as_str()));
        let body = customer.to_string();
        state.answers.insert(key, (200, body.clone()));
        json_answer(200, body)
    }
}
