//! Outbound webhooks of account events, against a real HTTP receiver (a `wiremock` server that
//! records every POST): the signature and body, retries in order per account with nothing lost,
//! a dead receiver never slowing writes, giving up and `credits notifications retry`, metrics.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use credits::grpc::pb;
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::method};

use crate::helpers::{TestApp, stripe_signature};

const SECRET: &str = "notify_test_secret";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    status: u16,
    event_id: Option<String>,
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    json: Value,
}

impl Received {
    fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or_default()
    }

    fn account(&self) -> &str {
        self.json["account_id"].as_str().unwrap_or_default()
    }

    fn sequence(&self) -> i64 {
        self.json["sequence"].as_i64().unwrap_or_default()
    }
}

/// A receiver that answers 500 to its first `fail_first` POSTs and while it is not healthy,
/// 200 otherwise.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    broken: Arc<AtomicBool>,
}

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let failing = self.broken.load(Ordering::SeqCst)
            || self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        let status = if failing { 500 } else { 200 };
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.lock().push(Received {
            status,
            event_id: header("credits-event-id"),
            signature: header("credits-signature"),
            content_type: header("content-type"),
            body: request.body.clone(),
            json: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        });
        ResponseTemplate::new(status)
    }
}

impl Receiver {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.got.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn received(&self) -> Vec<Received> {
        self.lock().clone()
    }

    /// Ids answered 200.
    fn delivered(&self) -> HashSet<String> {
        self.received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.id().to_owned())
            .collect()
    }

    async fn start(self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(self)
            .mount(&server)
            .await;
        server
    }
}

/// An app POSTing its account events to `url`, retrying after 20 ms (doubling).
fn builder(url: &str) -> crate::helpers::TestAppBuilder {
    TestApp::builder()
        .env("NOTIFY_WEBHOOK_URL", url)
        .env("NOTIFY_WEBHOOK_SECRET", SECRET)
        .env("NOTIFY_RETRY_BASE_MS", "20")
        .env("NOTIFY_WEBHOOK_TIMEOUT_MS", "2000")
}

async fn events_of(app: &TestApp, account: &str) -> Vec<pb::AccountEvent> {
    app.grpc
        .clone()
        .list_account_events(pb::ListAccountEventsRequest {
            account_id: account.into(),
            after_sequence: 0,
            page_size: 1000,
        })
        .await
        .expect("ListAccountEvents")
        .into_inner()
        .events
}

/// Waits (at most 30 s) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every stored event of `accounts` was answered 200; returns them.
async fn all_delivered(app: &TestApp, receiver: &Receiver, accounts: &[&str]) -> Vec<pb::AccountEvent> {
    let mut events = Vec::new();
    for account in accounts {
        events.extend(events_of(app, account).await);
    }
    assert!(!events.is_empty(), "the calls wrote events");
    eventually("every event delivered", async || {
        let delivered = receiver.delivered();
        events.iter().all(|e| delivered.contains(&e.id))
    })
    .await;
    events
}

#[tokio::test]
async fn deliveries_are_signed_with_the_secret_and_carry_the_event() {
    let receiver = Receiver::default();
    let server = receiver.clone().start().await;
    let app = builder(&format!("{}/hooks/credits", server.uri())).spawn().await;
    app.ensure("notify-sig").await;
    app.grant("notify-sig", 500, "grant-1").await;

    let events = all_delivered(&app, &receiver, &["notify-sig"]).await;
    let granted = events
        .iter()
        .find(|e| e.r#type == "credits.granted")
        .expect("a credits.granted event");
    let got = receiver
        .received()
        .into_iter()
        .find(|r| r.id() == granted.id)
        .expect("the grant's delivery");

    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.event_id.as_deref(), Some(granted.id.as_str()));
    let signature = got.signature.expect("Credits-Signature");
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("t=<unix secs>");
    assert!((t - chrono::Utc::now().timestamp()).abs() < 60, "signed now");
    let body = String::from_utf8(got.body.clone()).expect("UTF-8 body");
    assert_eq!(
        signature,
        stripe_signature(&body, SECRET, t),
        "HMAC-SHA256 of t.body"
    );
    assert_ne!(signature, stripe_signature(&body, "another secret", t));

    let json = &got.json;
    assert_eq!(json["id"], granted.id.as_str());
    assert_eq!(json["sequence"], granted.sequence);
    assert_eq!(json["type"], "credits.granted");
    assert_eq!(json["account_id"], "notify-sig");
    assert_eq!(json["balance_after"], granted.balance_after);
    assert_eq!(json["available_after"], granted.available_after);
    assert_eq!(json["balance_after"], 500);
    assert_eq!(json["entry_id"], granted.entry_id);
    let payload: Value = serde_json::from_str(&granted.payload).expect("payload JSON");
    assert_eq!(json["payload"], payload, "the payload as an object");
    assert_eq!(json["payload"]["credits"], 500);
    let created = chrono::DateTime::parse_from_rfc3339(json["created_at"].as_str().expect("created_at"))
        .expect("RFC 3339");
    let listed = granted.created_at.expect("created_at");
    assert_eq!(created.timestamp(), listed.seconds);
}

#[tokio::test]
async fn a_receiver_failing_five_times_gets_every_event_in_order_per_account() {
    let receiver = Receiver::default();
    receiver.fail_first.store(5, Ordering::SeqCst);
    let server = receiver.clone().start().await;
    let app = builder(&server.uri()).spawn().await;
    let accounts = ["notify-order-a", "notify-order-b", "notify-order-c"];
    for account in accounts {
        app.ensure(account).await;
    }
    for round in 0..4 {
        for account in accounts {
            app.grant(account, 10 + round, &format!("g-{round}")).await;
        }
    }

    let events = all_delivered(&app, &receiver, &accounts).await;
    let got = receiver.received();
    assert!(
        got.iter().filter(|r| r.status == 500).count() >= 5,
        "the failures happened"
    );
    // Every POST carries a stored event, with its id in the header too.
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    for r in &got {
        assert!(ids.contains(r.id()), "unknown event {}", r.id());
        assert_eq!(r.event_id.as_deref(), Some(r.id()));
    }
    // Per account, attempts never go back to an earlier event once a later one was tried: each
    // event was delivered before the next was sent.
    let mut per_account: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in &got {
        per_account.entry(r.account()).or_default().push(r.sequence());
    }
    for (account, sequences) in &per_account {
        assert!(
            sequences.windows(2).all(|w| w[0] <= w[1]),
            "{account} got its events out of order: {sequences:?}"
        );
        let stored: Vec<i64> = events
            .iter()
            .filter(|e| e.account_id == *account)
            .map(|e| e.sequence)
            .collect();
        let mut delivered: Vec<i64> = got
            .iter()
            .filter(|r| r.account() == *account && r.status == 200)
            .map(Received::sequence)
            .collect();
        delivered.dedup();
        assert_eq!(delivered, stored, "{account}: each event once, in order");
    }
}

#[tokio::test]
async fn a_dead_or_slow_receiver_does_not_slow_writes() {
    const GRANTS: i64 = 20;
    async fn time_grants(app: &TestApp, tag: &str) -> Duration {
        for n in 0..5 {
            app.ensure(&format!("notify-{tag}-{n}")).await;
        }
        let started = Instant::now();
        for n in 0..GRANTS {
            let account = format!("notify-{tag}-{}", n % 5);
            app.grant(&account, 10, &format!("k-{n}")).await;
            app.grpc
                .clone()
                .consume_credits(crate::helpers::spend::consume_request(
                    &account,
                    1,
                    &format!("c-{n}"),
                ))
                .await
                .expect("ConsumeCredits");
        }
        started.elapsed()
    }

    // The baseline: no webhook at all.
    let quiet = TestApp::builder().spawn().await;
    let baseline = time_grants(&quiet, "quiet").await;
    quiet.stop().await;

    // A receiver that holds every request 5 s, past the 200 ms timeout.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let app = builder(&slow.uri())
        .env("NOTIFY_WEBHOOK_TIMEOUT_MS", "200")
        .spawn()
        .await;
    let with_slow = time_grants(&app, "slow").await;
    let failures = async || {
        let text = app.metrics_text().await;
        metric(&text, "credits_notifications_failures_total") >= 3.0
    };
    eventually("deliveries to time out", failures).await;
    assert!(
        with_slow < baseline * 4 + Duration::from_secs(2),
        "writes took {with_slow:?} with a slow receiver, {baseline:?} without one"
    );
    let listed = events_of(&app, "notify-slow-0").await;
    assert!(listed.len() >= 4, "every write committed its events");
    app.stop().await;

    // Nothing listening at all: connections are refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let app = builder(&format!("http://127.0.0.1:{port}/hooks")).spawn().await;
    let with_dead = time_grants(&app, "dead").await;
    eventually("deliveries to fail", async || {
        metric(&app.metrics_text().await, "credits_notifications_failures_total") >= 3.0
    })
    .await;
    assert!(
        with_dead < baseline * 4 + Duration::from_secs(2),
        "writes took {with_dead:?} with a dead receiver, {baseline:?} without one"
    );
}

/// The value of an unlabelled metric in the Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn events_are_given_up_after_the_limit_then_listed_and_retried_by_the_cli() {
    let receiver = Receiver::default();
    receiver.broken.store(true, Ordering::SeqCst);
    let server = receiver.clone().start().await;
    let app = builder(&server.uri())
        .env("NOTIFY_GIVE_UP_AFTER", "1s")
        .spawn()
        .await;
    let account = "notify-give-up";
    app.ensure(account).await;
    app.grant(account, 100, "g-1").await;
    app.grant(account, 200, "g-2").await;
    let events = events_of(&app, account).await;
    assert!(events.len() >= 2);

    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let out = app.run_cli(&["notifications", "list", "--failed"]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if events.iter().all(|e| text.contains(&e.id)) {
            break text;
        }
        assert!(Instant::now() < deadline, "not every event given up: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(listed.contains("given_up"), "{listed}");
    assert!(listed.contains("HTTP 500"), "the last error is shown: {listed}");
    assert!(listed.contains(account), "{listed}");
    assert!(receiver.delivered().is_empty());
    let pending = app.run_cli(&["notifications", "list", "--pending"]).await;
    let pending = String::from_utf8_lossy(&pending.stdout).into_owned();
    assert!(events.iter().all(|e| !pending.contains(&e.id)), "{pending}");

    // Given up, an account's queue is no longer held: a new event goes out at once.
    receiver.broken.store(false, Ordering::SeqCst);
    app.grant(account, 300, "g-3").await;
    let third = events_of(&app, account).await;
    let newest = third.last().expect("the third grant's event").id.clone();
    eventually("the new event delivered", async || {
        receiver.delivered().contains(&newest)
    })
    .await;

    let out = app.run_cli(&["notifications", "retry", "--all-given-up"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains(&format!("{} given-up event(s) queued", events.len())),
        "{said}"
    );
    all_delivered(&app, &receiver, &[account]).await;
    let after = app.run_cli(&["notifications", "list", "--failed"]).await;
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(after.contains("0 event(s)"), "{after}");

    let unknown = app.run_cli(&["notifications", "retry", "evt_nope"]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("evt_nope: not found"));
}

#[tokio::test]
async fn metrics_count_deliveries_failures_give_ups_and_the_backlog() {
    let receiver = Receiver::default();
    receiver.fail_first.store(2, Ordering::SeqCst);
    let server = receiver.clone().start().await;
    let app = builder(&server.uri()).spawn().await;
    app.ensure("notify-metrics").await;
    app.grant("notify-metrics", 50, "g-1").await;
    let events = all_delivered(&app, &receiver, &["notify-metrics"]).await;

    let text = app.metrics_text().await;
    let delivered = metric(&text, "credits_notifications_delivered_total");
    assert!(delivered >= events.len() as f64, "{text}");
    assert!(
        metric(&text, "credits_notifications_failures_total") >= 2.0,
        "{text}"
    );
    for name in [
        "credits_notifications_given_up_total ",
        "credits_notification_backlog ",
        "credits_notification_oldest_pending_seconds ",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

#[tokio::test]
async fn replicas_sharing_a_database_deliver_each_event_once_in_order_per_account() {
    let receiver = Receiver::default();
    let server = receiver.clone().start().await;
    let first = builder(&server.uri()).spawn().await;
    // On PostgreSQL a second replica shares the database and runs its own worker; SQLite is one
    // replica by design, so there every write goes through the first.
    let second = if crate::helpers::TestDatabase::is_postgres() {
        Some(builder(&server.uri()).database(first.db.clone()).spawn().await)
    } else {
        None
    };
    let accounts = ["notify-rep-a", "notify-rep-b"];
    for account in accounts {
        first.ensure(account).await;
    }
    for n in 0..10 {
        let app = match (&second, n % 2) {
            (Some(second), 1) => second,
            _ => &first,
        };
        // Each account written through both replicas.
        app.grant(accounts[(n / 2) % 2], 5, &format!("rep-{n}")).await;
    }

    let events = all_delivered(&first, &receiver, &accounts).await;
    let got = receiver.received();
    let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        *answered.entry(r.id()).or_default() += 1;
    }
    assert!(
        answered.values().all(|n| *n == 1),
        "one 2xx per event: {answered:?}"
    );
    for account in accounts {
        let sent: Vec<i64> = got
            .iter()
            .filter(|r| r.account() == account)
            .map(Received::sequence)
            .collect();
        let stored: Vec<i64> = events
            .iter()
            .filter(|e| e.account_id == account)
            .map(|e| e.sequence)
            .collect();
        assert_eq!(sent, stored, "{account}: in order, once");
    }
}
