//! Auto top-up through the real interfaces: a card saved by a Checkout, the attempt a crossing
//! records, the one PaymentIntent per attempt key, crediting on `payment_intent.succeeded`
//! exactly once, and each failure's one outcome. Stripe is the fake in `helpers::payments`,
//! which replays a key's first answer as Stripe does.

use std::time::Duration;

use credits::grpc::pb;
use serde_json::Value;
use tonic::Code;

use crate::helpers::{
    STANDARD_PRICE, TestApp, form_of, form_value,
    payments::{Charge, FakePayments},
    spend::{Paid, completed_event, consume_request},
};

/// An app whose top-up worker looks often and retries after a second.
async fn app() -> TestApp {
    TestApp::builder()
        .env("TOP_UP_INTERVAL_MS", "50")
        .env("TOP_UP_RETRY_DELAY", "1s")
        .env("TOP_UP_UNKNOWN_DELAY", "1s")
        .spawn()
        .await
}

/// Buys a standard pack (1000 credits) keeping the card, as a buyer would: PurchaseCredits
/// with `save_payment_method`, then the signed `checkout.session.completed`.
async fn buy_keeping_the_card(app: &TestApp, account: &str) -> Paid {
    let started = app
        .grpc
        .clone()
        .purchase_credits(pb::PurchaseCreditsRequest {
            account_id: account.into(),
            email: format!("{account}@example.com"),
            price_id: STANDARD_PRICE.into(),
            save_payment_method: true,
            ..Default::default()
        })
        .await
        .expect("PurchaseCredits")
        .into_inner();
    let paid = Paid {
        session: started.checkout_session_id,
        intent: format!("pi_card_{account}"),
    };
    let customer = form_value(
        &form_of(
            checkout_request(app, &paid.session)
                .await
                .as_ref()
                .expect("session request"),
        ),
        "customer",
    )
    .expect("the session names the Customer")
    .to_owned();
    let mut event: Value = serde_json::from_str(&completed_event(
        &format!("evt_card_{}", paid.session),
        &paid,
        account,
    ))
    .expect("event JSON");
    event["data"]["object"]["customer"] = Value::from(customer);
    event["data"]["object"]["metadata"]["save_payment_method"] = Value::from("true");
    app.deliver(&event.to_string()).await;
    paid
}

/// The `POST /v1/checkout/sessions` that opened `session` (the fake numbers them in order).
async fn checkout_request(app: &TestApp, session: &str) -> Option<wiremock::Request> {
    let n: usize = session.rsplit('_').next()?.parse().ok()?;
    app.stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/checkout/sessions")
        .nth(n - 1)
}

fn auto_top_up(threshold: i64, monthly_limit: i64) -> pb::AutoTopUp {
    pb::AutoTopUp {
        enabled: true,
        threshold,
        pack_id: "starter".into(),
        monthly_limit,
        paused_reason: String::new(),
    }
}

async fn update(
    app: &TestApp,
    account: &str,
    top_up: pb::AutoTopUp,
) -> Result<pb::AccountSettings, tonic::Status> {
    app.grpc
        .clone()
        .update_account_settings(pb::UpdateAccountSettingsRequest {
            account: Some(pb::update_account_settings_request::Account::AccountId(
                account.into(),
            )),
            auto_top_up: Some(top_up),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn settings(app: &TestApp, account: &str) -> pb::AccountSettings {
    app.grpc
        .clone()
        .get_account_settings(pb::GetAccountSettingsRequest {
            account: Some(pb::get_account_settings_request::Account::AccountId(
                account.into(),
            )),
        })
        .await
        .expect("GetAccountSettings")
        .into_inner()
}

/// The account's event types, oldest first.
async fn event_types(app: &TestApp, account: &str) -> Vec<String> {
    events(app, account).await.into_iter().map(|e| e.r#type).collect()
}

async fn events(app: &TestApp, account: &str) -> Vec<pb::AccountEvent> {
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

/// Polls until `done` holds of the account's settings (its top-ups), or fails after 20 s.
async fn until_settings(
    app: &TestApp,
    account: &str,
    what: &str,
    done: impl Fn(&pb::AccountSettings) -> bool,
) -> pb::AccountSettings {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = settings(app, account).await;
        if done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn states(settings: &pb::AccountSettings) -> Vec<&str> {
    settings.recent_top_ups.iter().map(|t| t.state.as_str()).collect()
}

/// The PaymentIntent requests the service sent, oldest first.
async fn intent_requests(app: &TestApp) -> Vec<wiremock::Request> {
    app.stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/payment_intents")
        .collect()
}

fn key_of(request: &wiremock::Request) -> String {
    request
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// An account with a saved card, 1000 credits, auto top-up at 500 (a starter pack: 100
/// credits for 500 cents).
async fn ready(app: &TestApp, account: &str, monthly_limit: i64) {
    buy_keeping_the_card(app, account).await;
    update(app, account, auto_top_up(500, monthly_limit))
        .await
        .expect("auto top-up on");
}

async fn consume(app: &TestApp, account: &str, credits: i64, key: &str) {
    app.grpc
        .clone()
        .consume_credits(consume_request(account, credits, key))
        .await
        .expect("ConsumeCredits");
}

#[tokio::test]
async fn a_kept_card_gets_one_customer_and_its_payment_method_is_recorded() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    let fake = FakePayments::mount(&app, &[]).await;

    app.ensure("card").await;
    let refused = update(&app, "card", auto_top_up(500, 5000))
        .await
        .expect_err("no card yet");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("saved payment method"),
        "{}",
        refused.message()
    );

    let paid = buy_keeping_the_card(&app, "card").await;
    // Twice more: the Customer is created once and named by every session.
    buy_keeping_the_card(&app, "card").await;
    assert_eq!(fake.customers_created(), 1);
    let customer_posts: Vec<_> = app
        .stripe_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/v1/customers")
        .collect();
    assert_eq!(customer_posts.len(), 1, "the recorded Customer is reused");
    let session = form_of(
        checkout_request(&app, &paid.session)
            .await
            .as_ref()
            .expect("request"),
    );
    assert_eq!(form_value(&session, "customer"), Some("cus_fake0001"));
    assert_eq!(
        form_value(&session, "customer_email"),
        None,
        "Stripe takes a Customer or an email"
    );
    assert_eq!(
        form_value(&session, "payment_intent_data[setup_future_usage]"),
        Some("off_session")
    );
    assert_eq!(
        form_value(&session, "metadata[save_payment_method]"),
        Some("true")
    );

    let shown = until_settings(&app, "card", "the card", |s| s.has_payment_method).await;
    assert!(!shown.auto_top_up.as_ref().is_some_and(|a| a.enabled));
    let on = update(&app, "card", auto_top_up(500, 5000))
        .await
        .expect("card saved");
    assert!(on.auto_top_up.as_ref().is_some_and(|a| a.enabled));
    assert!(
        event_types(&app, "card")
            .await
            .contains(&"settings.changed".to_owned())
    );
}

#[tokio::test]
async fn fifty_concurrent_debits_across_the_threshold_start_one_payment_intent_credited_once() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    let fake = FakePayments::mount(&app, &[]).await;
    ready(&app, "racer", 10_000).await;

    // 1000 → 250 in 50 racing debits of 15: one crossing of 500.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..50 {
        let grpc = app.grpc.clone();
        calls.spawn(async move {
            grpc.clone()
                .consume_credits(consume_request("racer", 15, &format!("race-{n}")))
                .await
                .expect("ConsumeCredits")
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("task");
    }
    let awaiting = until_settings(&app, "racer", "the charge", |s| states(s) == ["awaiting_payment"]).await;
    let attempt = &awaiting.recent_top_ups[0];
    let posts = intent_requests(&app).await;
    assert_eq!(posts.len(), 1, "one PaymentIntent for one crossing");
    let form = form_of(&posts[0]);
    assert_eq!(
        key_of(&posts[0]),
        attempt.id,
        "the attempt id is the Idempotency-Key"
    );
    for (field, want) in [
        ("amount", "500"),
        ("currency", "usd"),
        ("customer", "cus_fake0001"),
        ("payment_method", "pm_1SfR2gB7WZ01zgkWq3Jk8VzA"),
        ("off_session", "true"),
        ("confirm", "true"),
        ("metadata[account_id]", "racer"),
        ("metadata[pack_id]", "starter"),
        ("metadata[top_up_attempt_id]", attempt.id.as_str()),
    ] {
        assert_eq!(form_value(&form, field), Some(want), "{field}");
    }
    assert_eq!(
        app.credit_balance("racer").await,
        250,
        "nothing credited before Stripe says so"
    );

    // Stripe delivers `payment_intent.succeeded`, then again, then a copy under another id.
    let intent = attempt.payment_intent_id.clone();
    let event = fake.succeeded_event("evt_pi_ok", &intent);
    app.deliver(&event).await;
    app.deliver(&event).await;
    app.deliver(&fake.succeeded_event("evt_pi_ok_copy", &intent))
        .await;
    assert_eq!(app.credit_balance("racer").await, 350, "credited once");
    until_settings(&app, "racer", "success", |s| states(s) == ["succeeded"]).await;
    let types = event_types(&app, "racer").await;
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(
        count("balance.low"),
        0,
        "no alerts below the default threshold of 0"
    );
    assert_eq!(count("top_up.started"), 1, "{types:?}");
    assert_eq!(count("top_up.succeeded"), 1, "{types:?}");
    let lots = app.lots("racer", false).await;
    assert!(
        lots.iter().any(|l| l.source == "top_up" && l.credits == 100),
        "{lots:?}"
    );
    let purchases = app.listed_purchases("racer").await;
    assert!(
        purchases
            .iter()
            .any(|p| p.stripe_checkout_session_id == attempt.id && p.amount == 500),
        "a purchase record per payment: {purchases:?}"
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_top_up_is_refunded_like_a_purchase() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    let fake = FakePayments::mount(&app, &[]).await;
    ready(&app, "refunded", 10_000).await;
    consume(&app, "refunded", 600, "cross").await;
    let awaiting = until_settings(&app, "refunded", "the charge", |s| {
        states(s) == ["awaiting_payment"]
    })
    .await;
    let intent = awaiting.recent_top_ups[0].payment_intent_id.clone();
    app.deliver(&fake.succeeded_event("evt_pi_refund", &intent)).await;
    assert_eq!(app.credit_balance("refunded").await, 500);
    let paid = Paid {
        session: awaiting.recent_top_ups[0].id.clone(),
        intent,
    };
    // A full refund of the 500-cent charge takes the top-up's 100 credits back.
    let mut refund: Value = serde_json::from_str(&crate::helpers::spend::refunded_event(
        "evt_topup_refund",
        &paid,
        500,
    ))
    .expect("event");
    refund["data"]["object"]["amount"] = Value::from(500);
    refund["data"]["object"]["amount_captured"] = Value::from(500);
    app.deliver(&refund.to_string()).await;
    assert_eq!(app.credit_balance("refunded").await, 400);
    assert!(
        event_types(&app, "refunded")
            .await
            .contains(&"credits.clawed_back".to_owned())
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_declined_card_is_tried_twice_more_each_with_its_own_key_then_auto_top_up_turns_off() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    FakePayments::mount(&app, &[Charge::Decline, Charge::Decline, Charge::Decline]).await;
    ready(&app, "declined", 10_000).await;
    consume(&app, "declined", 600, "cross").await;

    let off = until_settings(&app, "declined", "three declines", |s| {
        !s.auto_top_up.as_ref().is_some_and(|a| a.enabled)
    })
    .await;
    assert_eq!(states(&off), ["declined", "declined", "declined"]);
    let posts = intent_requests(&app).await;
    let mut keys: Vec<String> = posts.iter().map(key_of).collect();
    assert_eq!(keys.len(), 3, "three charges");
    keys.dedup();
    assert_eq!(keys.len(), 3, "each attempt with its own key");
    let types = event_types(&app, "declined").await;
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(
        (
            count("top_up.started"),
            count("top_up.declined"),
            count("top_up.failed")
        ),
        (3, 3, 1),
        "{types:?}"
    );
    assert_eq!(app.credit_balance("declined").await, 400, "nothing credited");

    // Further debits start nothing: auto top-up is off.
    consume(&app, "declined", 10, "after").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(intent_requests(&app).await.len(), 3);
}

#[tokio::test]
async fn a_bank_asking_for_the_customer_pauses_auto_top_up_until_a_purchase() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    FakePayments::mount(&app, &[Charge::AuthRequired]).await;
    ready(&app, "sca", 10_000).await;
    consume(&app, "sca", 600, "cross").await;

    let paused = until_settings(&app, "sca", "the pause", |s| {
        s.auto_top_up
            .as_ref()
            .is_some_and(|a| a.paused_reason == "requires_action")
    })
    .await;
    assert_eq!(states(&paused), ["requires_action"]);
    assert_eq!(intent_requests(&app).await.len(), 1, "no retry");
    assert!(
        event_types(&app, "sca")
            .await
            .contains(&"top_up.requires_action".to_owned())
    );

    // The customer comes back and buys: the pause ends (the card stays).
    buy_keeping_the_card(&app, "sca").await;
    until_settings(&app, "sca", "the pause to end", |s| {
        s.auto_top_up
            .as_ref()
            .is_some_and(|a| a.enabled && a.paused_reason.is_empty())
    })
    .await;
}

#[tokio::test]
async fn the_monthly_limit_stops_a_top_up_before_any_charge() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    let fake = FakePayments::mount(&app, &[]).await;
    // Room for one starter pack (500 cents) a month.
    ready(&app, "capped", 500).await;
    consume(&app, "capped", 600, "first").await;
    let first = until_settings(&app, "capped", "the first charge", |s| {
        states(s) == ["awaiting_payment"]
    })
    .await;
    app.deliver(&fake.succeeded_event("evt_capped", &first.recent_top_ups[0].payment_intent_id))
        .await;
    until_settings(&app, "capped", "success", |s| states(s) == ["succeeded"]).await;

    // 500 → back above the threshold (500 ≥ 500), then below it again.
    consume(&app, "capped", 100, "second").await;
    until_settings(&app, "capped", "the limit", |s| {
        states(s).first() == Some(&"limit_reached")
    })
    .await;
    assert_eq!(intent_requests(&app).await.len(), 1, "no charge past the limit");
    let limit = events(&app, "capped")
        .await
        .into_iter()
        .find(|e| e.r#type == "top_up.limit_reached")
        .expect("top_up.limit_reached");
    let payload: Value = serde_json::from_str(&limit.payload).expect("payload");
    assert_eq!(
        (
            payload["charged_this_month"].as_i64(),
            payload["monthly_limit"].as_i64()
        ),
        (Some(500), Some(500))
    );
}

#[tokio::test]
async fn a_lost_answer_is_found_by_search_and_never_charged_again() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    // Stripe creates the PaymentIntent but answers 500 (and replays that 500 for the key).
    let fake = FakePayments::mount(&app, &[Charge::CreateThenFail]).await;
    ready(&app, "lost", 10_000).await;
    consume(&app, "lost", 600, "cross").await;

    let found = until_settings(&app, "lost", "the search", |s| states(s) == ["awaiting_payment"]).await;
    assert_eq!(fake.intents().len(), 1, "one PaymentIntent");
    assert_eq!(
        found.recent_top_ups[0].payment_intent_id,
        fake.intents()[0]["id"].as_str().unwrap_or_default()
    );
    let searched = app
        .stripe_requests()
        .await
        .iter()
        .any(|r| r.url.path() == "/v1/payment_intents/search");
    assert!(searched, "the attempt's PaymentIntent was searched for");
    let intent = found.recent_top_ups[0].payment_intent_id.clone();
    app.deliver(&fake.succeeded_event("evt_lost", &intent)).await;
    assert_eq!(app.credit_balance("lost").await, 500);
}

#[tokio::test]
async fn when_stripe_shows_no_payment_intent_a_new_attempt_starts_with_a_new_key() {
    let app = app().await;
    app.mock_checkout_sessions().await;
    // A 500 before anything was created, replayed for that key; the next key succeeds.
    let fake = FakePayments::mount(&app, &[Charge::Fail]).await;
    ready(&app, "nothing", 10_000).await;
    consume(&app, "nothing", 600, "cross").await;

    let settled = until_settings(&app, "nothing", "a new attempt", |s| {
        states(s) == ["awaiting_payment", "abandoned"]
    })
    .await;
    let keys: Vec<String> = intent_requests(&app).await.iter().map(key_of).collect();
    let (first, second) = (&settled.recent_top_ups[1].id, &settled.recent_top_ups[0].id);
    assert_ne!(first, second);
    assert!(keys.iter().all(|k| k == first || k == second), "{keys:?}");
    assert!(
        keys.iter().filter(|k| *k == first).count() >= 2,
        "the first key was asked again before giving up: {keys:?}"
    );
    assert_eq!(keys.iter().filter(|k| *k == second).count(), 1);
    assert_eq!(fake.intents().len(), 1, "one PaymentIntent, from the new key");
}

#[tokio::test]
async fn a_restart_between_creating_the_payment_intent_and_recording_it_charges_once() {
    let db = crate::helpers::TestDatabase::new().await;
    let builder = || {
        TestApp::builder()
            .database(db.clone())
            .env("TOP_UP_INTERVAL_MS", "50")
            .env("TOP_UP_UNKNOWN_DELAY", "60s")
            .env("STRIPE_TIMEOUT_MS", "10000")
    };
    let first = builder().spawn().await;
    first.mock_checkout_sessions().await;
    // Stripe creates the PaymentIntent at once but answers only after the service stopped.
    let fake = FakePayments::mount(&first, &[Charge::Slow(Duration::from_secs(3))]).await;
    ready(&first, "restart", 10_000).await;
    consume(&first, "restart", 600, "cross").await;
    until_settings(&first, "restart", "the charge to start", |s| {
        states(s) == ["charging"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.intents().len(), 1, "Stripe has the PaymentIntent");
    first.stop().await;

    // The next instance resumes the attempt with the same key, against the same Stripe.
    let second = builder().spawn().await;
    fake.attach(&second).await;
    let replayed = fake.clone();
    let done = until_settings(&second, "restart", "the resumed charge", |s| {
        states(s) == ["awaiting_payment"]
    })
    .await;
    assert_eq!(
        replayed.intents().len(),
        1,
        "the same PaymentIntent, not a second"
    );
    assert_eq!(
        done.recent_top_ups[0].payment_intent_id,
        fake.intents()[0]["id"].as_str().unwrap_or_default()
    );
    second
        .deliver(&replayed.succeeded_event("evt_restart", &done.recent_top_ups[0].payment_intent_id))
        .await;
    assert_eq!(second.credit_balance("restart").await, 500);
}

#[tokio::test]
async fn racing_debits_through_two_replicas_start_one_attempt_per_crossing_round_after_round() {
    let first = app().await;
    first.mock_checkout_sessions().await;
    let fake = FakePayments::mount(&first, &[]).await;
    // On PostgreSQL a second replica shares the database (and the Stripe account); SQLite is
    // one replica by design, so there both halves of the race go through the first.
    let second = if crate::helpers::TestDatabase::is_postgres() {
        let second = TestApp::builder()
            .database(first.db.clone())
            .env("TOP_UP_INTERVAL_MS", "50")
            .spawn()
            .await;
        fake.attach(&second).await;
        Some(second)
    } else {
        None
    };
    for round in 0..8 {
        let account = format!("round{round}");
        ready(&first, &account, 100_000).await;
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..50 {
            let grpc = match (&second, n % 2) {
                (Some(second), 1) => second.grpc.clone(),
                _ => first.grpc.clone(),
            };
            let account = account.clone();
            calls.spawn(async move {
                grpc.clone()
                    .consume_credits(consume_request(&account, 15, &format!("r{n}")))
                    .await
                    .expect("ConsumeCredits")
            });
        }
        while let Some(done) = calls.join_next().await {
            done.expect("task");
        }
        until_settings(&first, &account, "the charge", |s| {
            states(s) == ["awaiting_payment"]
        })
        .await;
        let charged: Vec<Value> = fake
            .intents()
            .into_iter()
            .filter(|i| i["metadata"]["account_id"] == account.as_str())
            .collect();
        assert_eq!(charged.len(), 1, "round {round}: one PaymentIntent");
        let started = event_types(&first, &account)
            .await
            .iter()
            .filter(|t| *t == "top_up.started")
            .count();
        assert_eq!(started, 1, "round {round}: one attempt");
    }
    first.assert_spend_invariants().await;
}
