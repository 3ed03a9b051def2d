//! A rolling deploy, many times over: the real binary under mixed load (balance reads, purchases
//! waiting on a slow Stripe, signed webhooks) gets SIGTERM at a random moment with
//! `SHUTDOWN_DELAY=0`. Every call that was in flight at the signal must get its real answer,
//! never a cut stream, and the process must exit 0 only after answering them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use prost::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE, TestApp, WEBHOOK_SECRET, fixture, h2_raw, now,
    open_session_json, spawn_process, stripe_signature,
};

/// How long the fake Stripe takes to answer: long enough that purchases are in flight at the signal.
const STRIPE_DELAY: Duration = Duration::from_millis(500);
/// A call sent this long before the signal has reached the server by then.
const ON_THE_WIRE: Duration = Duration::from_millis(50);

fn rounds() -> usize {
    std::env::var("SHUTDOWN_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
}

/// A slow Stripe that opens a distinct session per call.
#[derive(Default)]
struct SlowSessions(std::sync::atomic::AtomicUsize);

impl Respond for SlowSessions {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ResponseTemplate::new(200)
            .set_body_raw(
                open_session_json(&format!("cs_test_roll_{n}")),
                "application/json",
            )
            .set_delay(STRIPE_DELAY)
    }
}

/// One call as the caller saw it.
#[derive(Debug, Clone)]
struct Call {
    what: &'static str,
    sent: Instant,
    answered: Instant,
    /// `Ok` or the error the caller got.
    answer: Result<(), String>,
}

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn record(&self, what: &'static str, sent: Instant, answer: Result<(), String>) {
        let call = Call {
            what,
            sent,
            answered: Instant::now(),
            answer,
        };
        self.0.lock().expect("calls lock").push(call);
    }

    /// A grpc-core-like caller's streams: each must have been answered.
    fn record_raw(&self, calls: Vec<h2_raw::RawCall>) {
        let mut all = self.0.lock().expect("calls lock");
        for call in calls {
            all.push(Call {
                what: call.method,
                sent: call.sent,
                answered: call.ended,
                answer: match call.end {
                    h2_raw::StreamEnd::Answered => Ok(()),
                    other => Err(format!("{other:?} (grpc-core-like caller)")),
                },
            });
        }
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().expect("calls lock"))
    }
}

/// xorshift64, seeded from the clock: a different signal moment each round.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn slow_stripe(stripe: &MockServer) {
    stripe.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(SlowSessions::default())
        .mount(stripe)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/.+/line_items$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(
                    fixture("api_checkout_session_line_items.json"),
                    "application/json",
                )
                .set_delay(STRIPE_DELAY),
        )
        .mount(stripe)
        .await;
}

/// Starts the load against one server; every task stops when `stop` fires.
fn start_load(
    channels: &[Channel],
    channels_addr: std::net::SocketAddr,
    http: &reqwest::Client,
    http_addr: std::net::SocketAddr,
    round: usize,
    calls: &Calls,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut load = tokio::task::JoinSet::new();
    for (i, channel) in channels.iter().cycle().take(8).enumerate() {
        let (mut client, calls, stop) = (
            CreditsServiceClient::new(channel.clone()),
            calls.clone(),
            stop.clone(),
        );
        load.spawn(async move {
            while !stop.is_cancelled() {
                let sent = Instant::now();
                let answer = client
                    .get_balance(pb::GetBalanceRequest {
                        account: Some(pb::get_balance_request::Account::AccountId(
                            FIXTURE_ACCOUNT.into(),
                        )),
                        as_of: None,
                    })
                    .await;
                calls.record("GetBalance", sent, answer.map(drop).map_err(|s| s.to_string()));
                if i % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
    }
    for (i, channel) in channels.iter().cycle().take(4).enumerate() {
        let (mut client, calls, stop) = (
            CreditsServiceClient::new(channel.clone()),
            calls.clone(),
            stop.clone(),
        );
        load.spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                n += 1;
                let sent = Instant::now();
                let answer = client
                    .purchase_credits(pb::PurchaseCreditsRequest {
                        account_id: format!("roll-{round}-{i}-{n}"),
                        email: format!("roll-{round}-{i}-{n}@example.com"),
                        price_id: STANDARD_PRICE.into(),
                        ..Default::default()
                    })
                    .await;
                calls.record(
                    "PurchaseCredits",
                    sent,
                    answer.map(drop).map_err(|s| s.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    for i in 0..2 {
        let (calls, stop, addr) = (calls.clone(), stop.clone(), channels_addr);
        let purchase = pb::PurchaseCreditsRequest {
            account_id: format!("roll-core-{round}-{i}"),
            email: format!("roll-core-{round}-{i}@example.com"),
            price_id: STANDARD_PRICE.into(),
            ..Default::default()
        };
        let balance = pb::GetBalanceRequest {
            account: Some(pb::get_balance_request::Account::AccountId(
                FIXTURE_ACCOUNT.into(),
            )),
            as_of: None,
        };
        let turns = vec![
            ("PurchaseCredits", purchase.encode_to_vec()),
            ("GetBalance", balance.encode_to_vec()),
            ("GetBalance", balance.encode_to_vec()),
        ];
        load.spawn(async move {
            let raw = h2_raw::core_like_caller(addr, turns, 4, stop).await;
            calls.record_raw(raw.expect("the grpc-core-like caller connects"));
        });
    }
    let completed: Value =
        serde_json::from_str(&fixture("checkout_session_completed.json")).expect("fixture is JSON");
    for i in 0..2 {
        let (http, calls, stop) = (http.clone(), calls.clone(), stop.clone());
        let (url, mut event) = (
            format!("http://{http_addr}/account/stripe-webhook/"),
            completed.clone(),
        );
        load.spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                n += 1;
                event["id"] = Value::from(format!("evt_roll_{round}_{i}_{n}"));
                let body = event.to_string();
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .header("Stripe-Signature", stripe_signature(&body, WEBHOOK_SECRET, now()))
                    .body(body)
                    .send()
                    .await;
                let answer = match answer {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(err) => Err(format!("{err:?}")),
                };
                calls.record("webhook", sent, answer);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    load
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("gRPC connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_rolling_deploy_answers_every_call_in_flight() {
    let app = TestApp::builder().spawn().await;
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");
    slow_stripe(&app.stripe).await;
    let mut env = app.settings.clone();
    env.insert("SHUTDOWN_DELAY".into(), "0".into());
    env.insert("SHUTDOWN_GRACE".into(), "8".into());
    env.insert("STRIPE_TIMEOUT_MS".into(), "5000".into());
    env.insert("RUST_LOG".into(), "info".into());

    let mut random = u64::from(std::process::id()) << 20 | u64::from(now().unsigned_abs() as u32) | 1;
    let mut failures = Vec::new();
    let (mut in_flight_total, mut answered_total) = (0, 0);
    for round in 0..rounds() {
        let mut server = spawn_process(&env).await;
        let mut channels = Vec::new();
        for _ in 0..3 {
            channels.push(connect(server.grpc_addr).await);
        }
        let (calls, stop) = (Calls::default(), CancellationToken::new());
        let load = start_load(
            &channels,
            server.grpc_addr,
            &app.http,
            server.http_addr,
            round,
            &calls,
            &stop,
        );
        let wait = 800 + next_random(&mut random) % 800;
        tokio::time::sleep(Duration::from_millis(wait)).await;

        let signal = Instant::now();
        server.terminate();
        let code = server.wait(Duration::from_secs(20)).await;
        let exited = Instant::now();
        stop.cancel();
        load.join_all().await;

        let calls = calls.take();
        let sent_before: Vec<&Call> = calls.iter().filter(|c| c.sent + ON_THE_WIRE < signal).collect();
        let in_flight = sent_before.iter().filter(|c| c.answered > signal).count();
        in_flight_total += in_flight;
        answered_total += calls.iter().filter(|c| c.answer.is_ok()).count();
        if code != Some(0) {
            failures.push(format!("round {round}: exit code {code:?}"));
        }
        // A grpc-core-like caller's stream is either answered or, above a GOAWAY's last stream,
        // never processed: cut is wrong whenever it was sent.
        let raw_cut = calls.iter().filter(|c| {
            c.sent + ON_THE_WIRE >= signal && c.answer.as_ref().is_err_and(|e| e.contains("Cut"))
        });
        for call in sent_before
            .iter()
            .copied()
            .filter(|c| c.answer.is_err())
            .chain(raw_cut)
        {
            let sent = if call.sent < signal {
                format!("{:?} before", signal - call.sent)
            } else {
                format!("{:?} after", call.sent - signal)
            };
            failures.push(format!(
                "round {round}: {} sent {sent} SIGTERM was cut {:?} after it (the process exited {:?} after it): {:?}",
                call.what,
                call.answered.saturating_duration_since(signal),
                exited - signal,
                call.answer
            ));
        }
        eprintln!(
            "round {round}: signal after {wait} ms, {in_flight} call(s) in flight, exit {code:?} {:?} after it",
            exited - signal
        );
    }
    eprintln!("{answered_total} calls answered, {in_flight_total} in flight at a signal");
    assert!(
        in_flight_total > 0,
        "no call was ever in flight at the signal: the test proves nothing"
    );
    assert!(
        failures.is_empty(),
        "{} call(s) cut:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.assert_ledger_matches_balances().await;
}

/// The cause, acted out frame by frame: a call is in flight when SIGTERM comes; the caller
/// acknowledges the server's shutdown PING and then opens one more stream and raises that
/// stream's window, as grpc-core does. The server has ignored that stream by then, which is
/// allowed; the call in flight must still get its answer and the connection must end with
/// GOAWAY NO_ERROR, never a PROTOCOL_ERROR that cuts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_opened_after_the_final_goaway_does_not_cut_the_call_in_flight() {
    let app = TestApp::builder().spawn().await;
    slow_stripe(&app.stripe).await;
    let mut env = app.settings.clone();
    env.insert("SHUTDOWN_DELAY".into(), "0".into());
    env.insert("SHUTDOWN_GRACE".into(), "8".into());
    let mut server = spawn_process(&env).await;

    let authority = server.grpc_addr.to_string();
    let mut h2 = h2_raw::Connection::open(server.grpc_addr).await.expect("connect");
    let purchase = pb::PurchaseCreditsRequest {
        account_id: "raw-h2".into(),
        email: "raw-h2@example.com".into(),
        price_id: STANDARD_PRICE.into(),
        ..Default::default()
    };
    let path = "/credits.v1.CreditsService/PurchaseCredits";
    h2.write(&h2_raw::call(&authority, 1, path, &purchase.encode_to_vec()).concat())
        .await
        .expect("write the call");
    for _ in 0..200 {
        if !app
            .stripe
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.terminate();

    // The first GOAWAY (last stream 2^31-1) comes with a PING: answer it, then open stream 3.
    let mut frames = Vec::new();
    while let Some(frame) = h2.read().await {
        let ping = (frame.kind == h2_raw::PING && frame.flags == 0).then(|| frame.payload.clone());
        frames.push(frame);
        if let Some(payload) = ping {
            assert_eq!(
                payload,
                credits::net::h2_guard::SHUTDOWN_PING,
                "the guard knows h2's shutdown PING"
            );
            h2.write(&h2_raw::pong(&payload)).await.expect("PING ACK");
            // The final GOAWAY goes out when the acknowledgement arrives; the stream lands after.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let balance = pb::GetBalanceRequest {
                account: Some(pb::get_balance_request::Account::AccountId("raw-h2".into())),
                as_of: None,
            };
            let method = "/credits.v1.CreditsService/GetBalance";
            h2.write(&h2_raw::core_call(
                &authority,
                3,
                method,
                &balance.encode_to_vec(),
            ))
            .await
            .expect("write stream 3");
            break;
        }
    }
    while let Some(frame) = h2.read().await {
        frames.push(frame);
    }
    let code = server.wait(Duration::from_secs(20)).await;

    let go_aways: Vec<(u32, u32)> = frames
        .iter()
        .filter(|f| f.kind == h2_raw::GOAWAY)
        .map(h2_raw::Frame::go_away)
        .collect();
    let answered = frames
        .iter()
        .any(|f| f.stream == 1 && f.kind == h2_raw::DATA && f.payload.len() > 5);
    let ended = frames.iter().any(|f| f.stream == 1 && f.ends_stream());
    assert!(
        go_aways.iter().all(|&(_, error)| error == 0),
        "every GOAWAY is NO_ERROR (0), not PROTOCOL_ERROR (1): {go_aways:?}"
    );
    assert!(
        answered && ended,
        "the call in flight was answered and ended: {frames:?}"
    );
    assert_eq!(code, Some(0));
}

/// At the end of `SHUTDOWN_GRACE`, what still runs ends with a status, not a cut connection: a
/// health Watch stream and a call waiting on Stripe get UNAVAILABLE, a webhook 503, and the
/// process exits 0 soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_grace_limit_streams_and_calls_end_with_unavailable() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let app = TestApp::builder().spawn().await;
    // The fixture's session is a purchase of ours, so its webhook asks Stripe for line items.
    app.mock_checkout_sessions().await;
    app.purchase(FIXTURE_ACCOUNT, FIXTURE_EMAIL, STANDARD_PRICE)
        .await
        .expect("account created");
    app.stripe.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(open_session_json("cs_test_grace"), "application/json")
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&app.stripe)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/checkout/sessions/.+/line_items$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(20)))
        .mount(&app.stripe)
        .await;
    let mut env = app.settings.clone();
    env.insert("SHUTDOWN_DELAY".into(), "0".into());
    env.insert("SHUTDOWN_GRACE".into(), "1".into());
    env.insert("STRIPE_TIMEOUT_MS".into(), "30000".into());
    env.insert("HTTP_REQUEST_TIMEOUT_MS".into(), "30000".into());
    let mut server = spawn_process(&env).await;

    let channel = connect(server.grpc_addr).await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Watch starts")
        .into_inner();
    assert!(watch.message().await.expect("first status").is_some());
    let mut client = CreditsServiceClient::new(channel);
    let purchase = tokio::spawn(async move {
        client
            .purchase_credits(pb::PurchaseCreditsRequest {
                account_id: "grace".into(),
                email: "grace@example.com".into(),
                price_id: STANDARD_PRICE.into(),
                ..Default::default()
            })
            .await
    });
    let completed = fixture("checkout_session_completed.json");
    let webhook = app
        .http
        .post(format!("http://{}/account/stripe-webhook/", server.http_addr))
        .header(
            "Stripe-Signature",
            stripe_signature(&completed, WEBHOOK_SECRET, now()),
        )
        .body(completed.clone())
        .send();
    let webhook = tokio::spawn(webhook);
    for _ in 0..200 {
        if app.stripe.received_requests().await.unwrap_or_default().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.stripe.received_requests().await.unwrap_or_default().len(),
        2,
        "both wait on Stripe"
    );

    let signal = Instant::now();
    server.terminate();
    let mut statuses = Vec::new();
    let end = loop {
        match watch.message().await {
            Ok(Some(status)) => statuses.push(status.status),
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    let ended_after = signal.elapsed();
    let end = end.expect_err("the Watch ends with a status");
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    assert!(end.message().contains("shutting down"), "{end:?}");
    assert!(
        ended_after >= Duration::from_millis(900),
        "at the grace limit, not before: {ended_after:?}"
    );
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(
        statuses,
        vec![not_serving],
        "the Watch saw NOT_SERVING at the signal"
    );

    let purchase = purchase
        .await
        .expect("task")
        .expect_err("the purchase could not finish");
    assert_eq!(purchase.code(), tonic::Code::Unavailable, "{purchase:?}");
    let webhook = webhook.await.expect("task").expect("the webhook is answered");
    assert_eq!(webhook.status(), 503);
    let body: Value = webhook.json().await.expect("JSON");
    assert_eq!(body["error"], "shutting_down");
    assert_eq!(server.wait(Duration::from_secs(10)).await, Some(0));
    assert!(
        signal.elapsed() < Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        signal.elapsed()
    );
}
