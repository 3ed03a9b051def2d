//! Holds over gRPC: ReserveCredits lowers the available balance, not the balance; CaptureHold
//! debits part or all of it and releases the rest; ReleaseHold ends it; a hold past its time
//! releases itself with no ledger entry. Each closed state refuses what it must.

use chrono::Utc;
use tonic::Code;

use crate::helpers::{
    TestApp, spawn_app,
    spend::{assert_refused, time_of},
};

/// An account with `credits` granted (never expiring).
async fn funded(app: &TestApp, id: &str, credits: i64) {
    app.ensure(id).await;
    app.grant(id, credits, "fund").await;
}

/// Waits until the hold's time has passed (holds last whole seconds).
async fn outlive(expires_at: &prost_types::Timestamp) {
    let left = time_of(expires_at) - Utc::now();
    if let Ok(left) = left.to_std() {
        tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hold_lowers_the_available_balance_not_the_balance() {
    let app = spawn_app().await;
    funded(&app, "holder", 100).await;
    let before = Utc::now();
    let hold = app.reserve("holder", 30, "call-1", 0).await.expect("reserve");
    assert_eq!((hold.available_balance, hold.replayed), (70, false));
    // ttl_seconds 0 means 300.
    let ttl = (time_of(hold.expires_at.as_ref().expect("expires_at")) - before).num_seconds();
    assert!((299..=300).contains(&ttl), "{ttl} s");
    let balance = app.balance("holder").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (100, 70, 30)
    );
    assert_eq!(app.entries("holder").await.len(), 1, "a hold writes no entry");
    // What is held cannot be consumed.
    assert_refused(
        app.consume("holder", 71, "over").await,
        Code::FailedPrecondition,
        "70 available",
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn reserving_more_than_is_available_is_failed_precondition() {
    let app = spawn_app().await;
    funded(&app, "modest", 50).await;
    app.reserve("modest", 20, "first", 60).await.expect("reserve");
    assert_refused(
        app.reserve("modest", 31, "second", 60).await,
        Code::FailedPrecondition,
        "30 available",
    );
    let exact = app
        .reserve("modest", 30, "third", 60)
        .await
        .expect("exactly what is left");
    assert_eq!(exact.available_balance, 0);
    assert_eq!(app.balance("modest").await.expect("GetBalance").held_credits, 50);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_repeated_reserve_returns_the_same_hold() {
    let app = spawn_app().await;
    funded(&app, "twice", 50).await;
    let first = app.reserve("twice", 20, "same", 60).await.expect("reserve");
    let again = app.reserve("twice", 20, "same", 60).await.expect("again");
    assert!(again.replayed);
    assert_eq!(
        (&again.hold_id, again.available_balance, &again.expires_at),
        (&first.hold_id, first.available_balance, &first.expires_at)
    );
    assert_eq!(app.balance("twice").await.expect("GetBalance").held_credits, 20);
}

#[tokio::test]
async fn a_captured_hold_debits_what_was_captured_and_releases_the_rest() {
    let app = spawn_app().await;
    funded(&app, "acct-hold", 100).await;
    let hold = app.reserve("acct-hold", 30, "call-1", 0).await.expect("reserve");
    assert_eq!(hold.available_balance, 70);

    let captured = app.capture(&hold.hold_id, 12).await.expect("capture");
    assert_eq!(
        (
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits,
            captured.replayed
        ),
        (88, 88, 18, false)
    );

    // Capturing again with the same credits: the first answer.
    let again = app.capture(&hold.hold_id, 12).await.expect("capture again");
    assert!(again.replayed);
    assert_eq!(
        (
            &again.ledger_entry_id,
            again.credit_balance,
            again.available_balance,
            again.released_credits
        ),
        (
            &captured.ledger_entry_id,
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits
        )
    );
    // With other credits: the hold is closed.
    assert_refused(
        app.capture(&hold.hold_id, 13).await,
        Code::FailedPrecondition,
        "captured",
    );

    let entries = app.entries("acct-hold").await;
    let entry = entries
        .iter()
        .find(|e| e.id == captured.ledger_entry_id)
        .expect("the capture's entry");
    assert_eq!(
        (
            entry.kind.as_str(),
            entry.reason.as_str(),
            entry.delta,
            entry.reference.clone()
        ),
        ("consumption", "call", -12, format!("hold:{}", hold.hold_id))
    );
    assert_eq!(app.credit_balance("acct-hold").await, 88);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn capturing_the_whole_hold_releases_nothing() {
    let app = spawn_app().await;
    funded(&app, "whole", 40).await;
    let hold = app.reserve("whole", 40, "all", 60).await.expect("reserve");
    let captured = app.capture(&hold.hold_id, 40).await.expect("capture");
    assert_eq!(
        (
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits
        ),
        (0, 0, 0)
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn capturing_more_than_is_held_is_invalid_argument_and_leaves_the_hold_open() {
    let app = spawn_app().await;
    funded(&app, "greedy", 100).await;
    let hold = app.reserve("greedy", 30, "call", 60).await.expect("reserve");
    assert_refused(
        app.capture(&hold.hold_id, 31).await,
        Code::InvalidArgument,
        "credits",
    );
    let balance = app.balance("greedy").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.held_credits), (100, 30));
    let captured = app
        .capture(&hold.hold_id, 30)
        .await
        .expect("then a capture in range");
    assert!(!captured.replayed);
    assert_eq!(captured.credit_balance, 70);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_released_hold_gives_its_credits_back_and_refuses_a_capture() {
    let app = spawn_app().await;
    funded(&app, "releaser", 100).await;
    let hold = app.reserve("releaser", 30, "call", 60).await.expect("reserve");
    let released = app.release(&hold.hold_id).await.expect("release");
    assert_eq!((released.available_balance, released.replayed), (100, false));
    let again = app.release(&hold.hold_id).await.expect("release again");
    assert_eq!((again.available_balance, again.replayed), (100, true));
    assert_refused(
        app.capture(&hold.hold_id, 10).await,
        Code::FailedPrecondition,
        "released",
    );
    assert_eq!(app.entries("releaser").await.len(), 1, "no entry for a release");
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn releasing_a_captured_hold_is_failed_precondition() {
    let app = spawn_app().await;
    funded(&app, "captor", 100).await;
    let hold = app.reserve("captor", 30, "call", 60).await.expect("reserve");
    app.capture(&hold.hold_id, 10).await.expect("capture");
    assert_refused(
        app.release(&hold.hold_id).await,
        Code::FailedPrecondition,
        "captured",
    );
    assert_eq!(app.credit_balance("captor").await, 90);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn an_unknown_hold_is_not_found() {
    let app = spawn_app().await;
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    assert_refused(app.capture(unknown, 1).await, Code::NotFound, unknown);
    assert_refused(app.release(unknown).await, Code::NotFound, unknown);
}

#[tokio::test]
async fn a_hold_past_its_time_releases_itself_with_no_entry_and_refuses_a_capture() {
    let app = spawn_app().await;
    funded(&app, "lapsed", 100).await;
    let hold = app.reserve("lapsed", 60, "call", 1).await.expect("reserve");
    assert_eq!(hold.available_balance, 40);
    outlive(hold.expires_at.as_ref().expect("expires_at")).await;

    // Read before any write saw it run out.
    let balance = app.balance("lapsed").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (100, 100, 0)
    );
    assert_refused(
        app.capture(&hold.hold_id, 10).await,
        Code::FailedPrecondition,
        "expired",
    );
    // Releasing it does nothing more: it is already released.
    let released = app.release(&hold.hold_id).await.expect("release");
    assert_eq!((released.available_balance, released.replayed), (100, true));
    let consumed = app
        .consume("lapsed", 100, "all")
        .await
        .expect("all of it is free");
    assert_eq!(consumed.credit_balance, 0);
    let kinds: Vec<String> = app.entries("lapsed").await.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["consumption", "grant"], "no entry for the lapsed hold");
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_consumption_keyed_like_a_capture_cannot_take_the_capture_entry() {
    let app = spawn_app().await;
    funded(&app, "mimic", 100).await;
    let hold = app.reserve("mimic", 30, "call", 60).await.expect("reserve");
    // A capture's entry is referenced `hold:<id>`; a consumption's by its key.
    assert_refused(
        app.consume("mimic", 1, &format!("hold:{}", hold.hold_id)).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    let captured = app.capture(&hold.hold_id, 10).await.expect("capture");
    assert_eq!(captured.credit_balance, 90);
    app.assert_spend_invariants().await;
}
