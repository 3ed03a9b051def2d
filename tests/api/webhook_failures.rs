//! Deliveries that fail: a correctly signed body that cannot be parsed, a database error that
//! no retry can fix, and one (a held lock) that a retry can. Permanent failures are stored as
//! `failed` with their error for operators to replay; only passing faults answer 503.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::Value;

use crate::helpers::{FIXTURE_ACCOUNT, STANDARD_CREDITS, TestApp, fixture, spawn_app};

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_signed_event_that_cannot_be_parsed_is_stored_failed_with_its_payload_and_answered_400() {
    let app = spawn_app().await;
    // A real event id and type, but data.object is not a Checkout Session.
    let body = r#"{"id":"evt_unreadable","object":"event","type":"checkout.session.completed","data":{"object":{"object":"checkout.session","payment_status":"paid"}}}"#;
    let (status, reply) = answer(app.post_webhook(body).await).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("not_a_stripe_event"))
    );

    let events = app.events().await;
    assert_eq!(events.len(), 1);
    let stored = &events[0];
    assert_eq!(
        (
            stored.id.as_str(),
            stored.event_type.as_str(),
            stored.outcome.as_str()
        ),
        ("evt_unreadable", "checkout.session.completed", "failed")
    );
    assert_eq!(stored.payload, body, "the raw payload, byte for byte");
    let error = stored.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("checkout.session"),
        "the parse error is kept: {error}"
    );

    // Not JSON at all, yet signed: kept under an id derived from the body.
    let (status, _) = answer(app.post_webhook("signed but not json").await).await;
    assert_eq!(status, 400);
    let events = app.events().await;
    assert_eq!(events.len(), 2);
    let unparsed = events
        .iter()
        .find(|e| e.id != "evt_unreadable")
        .expect("second event");
    assert!(unparsed.id.starts_with("unparsed_"), "{}", unparsed.id);
    assert_eq!(
        (unparsed.outcome.as_str(), unparsed.payload.as_str()),
        ("failed", "signed but not json")
    );
    // Redelivered: still one row each.
    app.post_webhook(body).await;
    app.post_webhook("signed but not json").await;
    assert_eq!(app.count_events().await, 2);

    // Operators find them.
    let listed = app.run_cli(&["events", "list", "--outcome", "failed"]).await;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("evt_unreadable") && listed.contains("2 event(s)"),
        "{listed}"
    );

    // An unsigned or wrongly signed body is still refused without writing anything.
    let forged = app.post_webhook_with("not json", Some("t=1,v1=00".into())).await;
    assert_eq!(forged.status(), 400);
    assert_eq!(app.count_events().await, 2);
}

#[tokio::test]
async fn a_permanent_database_error_is_recorded_failed_and_never_answered_503() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    // Every ledger write now fails with an error that retrying cannot fix. On PostgreSQL it
    // carries SQLSTATE 42501 (insufficient privilege), which is no passing fault.
    let db = app.db.connect().await;
    let trigger = if app.db.url.starts_with("postgres") {
        "CREATE FUNCTION refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'ledger writes refused' USING ERRCODE = '42501'; END $$; \
         CREATE TRIGGER refuse_ledger BEFORE INSERT ON credit_ledger FOR EACH ROW EXECUTE FUNCTION refuse_ledger()"
    } else {
        "CREATE TRIGGER refuse_ledger BEFORE INSERT ON credit_ledger \
         BEGIN SELECT RAISE(ABORT, 'ledger writes refused'); END"
    };
    db.execute_unprepared(trigger).await.expect("trigger");

    let body = fixture("checkout_session_completed.json");
    for delivery in 0..2 {
        let (status, reply) = answer(app.post_webhook(&body).await).await;
        assert_eq!(status, 500, "delivery {delivery}: {reply}");
        let events = app.events().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, "failed");
        let error = events[0].error.as_deref().unwrap_or_default();
        assert!(
            error.contains("ledger writes refused"),
            "the cause is kept: {error}"
        );
    }
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 0);

    // Fixed: Stripe's next retry credits, once.
    let drop = if app.db.url.starts_with("postgres") {
        "DROP TRIGGER refuse_ledger ON credit_ledger"
    } else {
        "DROP TRIGGER refuse_ledger"
    };
    db.execute_unprepared(drop).await.expect("drop trigger");
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
    assert_eq!(app.outcomes().await, ["credited"]);
    app.assert_ledger_matches_balances().await;
}

#[tokio::test]
async fn a_lock_held_past_the_lock_timeout_answers_503_and_the_retry_credits() {
    let app = spawn_app().await;
    app.fixture_buyer().await;
    // Another writer holds what the credit needs: the account row on PostgreSQL, the database
    // write lock on SQLite. Both outlast the service's lock (busy) timeout.
    let db = app.db.connect().await;
    let holder = if app.db.url.starts_with("postgres") {
        let holder = db.begin().await.expect("begin");
        holder
            .execute_unprepared(&format!(
                "SELECT * FROM accounts WHERE id = '{FIXTURE_ACCOUNT}' FOR UPDATE"
            ))
            .await
            .expect("lock the account row");
        holder
    } else {
        credits::db::begin_write(&db).await.expect("take the write lock")
    };

    let body = fixture("checkout_session_completed.json");
    let (status, reply) = answer(
        tokio::time::timeout(Duration::from_secs(20), app.post_webhook(&body))
            .await
            .expect("answered after the lock timeout"),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    holder.rollback().await.expect("release");
    assert_eq!(app.count_events().await, 0, "nothing half-written");

    assert_eq!(app.post_webhook(&body).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 2 * STANDARD_CREDITS);
}

/// The writer batches on the `/metrics` page so far.
async fn writer_batches(app: &TestApp) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("credits_writer_batch_size_count ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_event_that_fails_for_good_is_recorded_in_its_own_writer_batch() {
    // No health probes riding the writer while batches are counted.
    let app = TestApp::builder()
        .env("HEALTH_CHECK_INTERVAL_MS", "3600000")
        .spawn()
        .await;
    app.fixture_buyer().await;
    let db = app.db.connect().await;
    let trigger = if app.db.url.starts_with("postgres") {
        "CREATE FUNCTION refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'ledger writes refused' USING ERRCODE = '42501'; END $$; \
         CREATE TRIGGER refuse_ledger BEFORE INSERT ON credit_ledger FOR EACH ROW EXECUTE FUNCTION refuse_ledger()"
    } else {
        "CREATE TRIGGER refuse_ledger BEFORE INSERT ON credit_ledger \
         BEGIN SELECT RAISE(ABORT, 'ledger writes refused'); END"
    };
    db.execute_unprepared(trigger).await.expect("trigger");

    let before = writer_batches(&app).await;
    let (status, _) = answer(
        app.post_webhook(&fixture("checkout_session_completed.json"))
            .await,
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(app.outcomes().await, ["failed"]);
    // The failure is stored by the batch that met it, not by a second trip to the writer.
    assert_eq!(writer_batches(&app).await - before, 1);
}
