//! Lots and expiry: consumption burns the lot that expires soonest (never-expiring lots last,
//! oldest first on ties); no read or debit counts a credit past its lot's expiry; the sweep
//! writes one `expiry` entry per lot, once; held credits wait for their hold to end.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tonic::Code;

use crate::helpers::{
    TEST_PACKS, TestApp, spawn_app,
    spend::{assert_refused, time_of, timestamp},
};

/// Sleeps until `at` has passed.
async fn until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until the account has `count` expiry entries; returns them.
async fn expiry_entries(app: &TestApp, account: &str, count: usize) -> Vec<(i64, String)> {
    for _ in 0..300 {
        let entries = app.entries_of_kind(account, "expiry").await;
        if entries.len() >= count {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{account} never got {count} expiry entries");
}

/// An app whose sweep runs every second.
async fn sweeping_app() -> TestApp {
    TestApp::builder().env("EXPIRY_INTERVAL", "1s").spawn().await
}

#[tokio::test]
async fn consumption_burns_the_soonest_expiry_first_never_expiring_lots_last_and_the_oldest_on_ties() {
    let app = spawn_app().await;
    app.ensure("burner").await;
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    app.grant("burner", 10, "never-old").await;
    app.grant_expiring("burner", 10, "in-3-days", Utc::now() + chrono::Duration::days(3))
        .await;
    app.grant_expiring("burner", 10, "tomorrow-old", tomorrow).await;
    app.grant_expiring("burner", 10, "tomorrow-new", tomorrow).await;
    app.grant("burner", 10, "never-new").await;

    let order: Vec<String> = app
        .lots("burner", false)
        .await
        .into_iter()
        .map(|l| l.reference)
        .collect();
    assert_eq!(
        order,
        [
            "tomorrow-old",
            "tomorrow-new",
            "in-3-days",
            "never-old",
            "never-new"
        ],
        "ListCreditLots lists in burn order"
    );

    app.consume("burner", 15, "c1").await.expect("consume");
    assert_eq!(
        app.lot_remaining("burner").await,
        [
            ("tomorrow-old".to_owned(), 0),
            ("tomorrow-new".to_owned(), 5),
            ("in-3-days".to_owned(), 10),
            ("never-old".to_owned(), 10),
            ("never-new".to_owned(), 10),
        ]
    );
    app.consume("burner", 20, "c2").await.expect("consume");
    app.consume("burner", 10, "c3").await.expect("consume");
    assert_eq!(
        app.lot_remaining("burner").await,
        [
            ("tomorrow-old".to_owned(), 0),
            ("tomorrow-new".to_owned(), 0),
            ("in-3-days".to_owned(), 0),
            ("never-old".to_owned(), 0),
            ("never-new".to_owned(), 5),
        ]
    );
    // Without include_spent only lots with credits left are listed.
    let left: Vec<String> = app
        .lots("burner", false)
        .await
        .into_iter()
        .map(|l| l.reference)
        .collect();
    assert_eq!(left, ["never-new"]);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_lot_shows_its_source_credits_and_expiry() {
    let app = spawn_app().await;
    app.ensure("shown").await;
    let at = Utc::now() + chrono::Duration::days(7);
    let granted = app.grant_expiring("shown", 25, "seven-days", at).await;
    app.grant("shown", 5, "forever").await;
    app.consume("shown", 10, "spend").await.expect("consume");
    let lots = app.lots("shown", false).await;
    let lot = &lots[0];
    assert_eq!(
        (
            lot.id.as_str(),
            lot.source.as_str(),
            lot.reference.as_str(),
            lot.credits,
            lot.remaining
        ),
        (granted.lot_id.as_str(), "grant", "seven-days", 25, 15)
    );
    assert_eq!(lot.expires_at.as_ref().map(time_of), Some(at.trunc_subsecs(6)));
    assert!(lot.created_at.is_some());
    assert_eq!(lots[1].expires_at, None, "never expires");
}

#[tokio::test]
async fn get_balance_shows_the_next_expiry_and_the_free_credits_expiring_then() {
    let app = spawn_app().await;
    app.ensure("soon").await;
    let first = Utc::now() + chrono::Duration::days(2);
    let later = first + chrono::Duration::days(5);
    app.grant_expiring("soon", 10, "a", first).await;
    app.grant_expiring("soon", 20, "b", first).await;
    app.grant_expiring("soon", 30, "c", later).await;
    app.grant("soon", 40, "d").await;
    // A hold takes from the soonest lot: held credits are not about to expire.
    app.reserve("soon", 5, "hold", 60).await.expect("reserve");
    let balance = app.balance("soon").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (100, 95, 5)
    );
    assert_eq!(
        balance.next_expiry_at.as_ref().map(time_of),
        Some(first.trunc_subsecs(6))
    );
    assert_eq!(balance.expiring_credits, 25);

    app.consume("soon", 25, "spend-first").await.expect("consume");
    let balance = app.balance("soon").await.expect("GetBalance");
    assert_eq!(
        balance.next_expiry_at.as_ref().map(time_of),
        Some(later.trunc_subsecs(6))
    );
    assert_eq!(balance.expiring_credits, 30);
}

#[tokio::test]
async fn credits_past_their_expiry_are_never_counted_even_before_the_sweep() {
    // The sweep runs once at start, then not for an hour.
    let app = TestApp::builder().env("EXPIRY_INTERVAL", "1h").spawn().await;
    app.ensure("expiring").await;
    app.grant("expiring", 100, "forever").await;
    let at = Utc::now() + chrono::Duration::seconds(2);
    app.grant_expiring("expiring", 50, "brief", at).await;
    assert_eq!(app.credit_balance("expiring").await, 150);
    until(at).await;

    let balance = app.balance("expiring").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.next_expiry_at,
            balance.expiring_credits
        ),
        (100, 100, None, 0)
    );
    let ensured = app.ensure("expiring").await.account.expect("account");
    assert_eq!((ensured.credit_balance, ensured.available_balance), (100, 100));
    // The lots show what the sweep will leave: nothing in the lot past its expiry.
    let listed: Vec<String> = app
        .lots("expiring", false)
        .await
        .into_iter()
        .map(|l| l.reference)
        .collect();
    assert_eq!(listed, ["forever"]);
    assert_eq!(
        app.lot_remaining("expiring").await,
        [("brief".to_owned(), 0), ("forever".to_owned(), 100)]
    );
    assert!(
        app.entries_of_kind("expiring", "expiry").await.is_empty(),
        "not swept yet"
    );
    assert_refused(
        app.consume("expiring", 101, "too-much").await,
        Code::FailedPrecondition,
        "100 available",
    );
    assert_refused(
        app.reserve("expiring", 101, "too-much", 60).await,
        Code::FailedPrecondition,
        "100 available",
    );
    let consumed = app.consume("expiring", 100, "all").await.expect("what is left");
    assert_eq!((consumed.credit_balance, consumed.available_balance), (0, 0));
    // The writer wrote the lot off when it next touched the account: once.
    assert_eq!(
        app.entries_of_kind("expiring", "expiry").await,
        [(-50, "expiry".to_owned())]
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_grant_expiring_in_the_past_is_invalid_argument() {
    let app = spawn_app().await;
    app.ensure("late").await;
    let past = Utc::now() - chrono::Duration::seconds(1);
    assert_refused(
        app.send_grant(credits::grpc::pb::GrantCreditsRequest {
            expires_at: Some(timestamp(past)),
            ..crate::helpers::spend::grant_request("late", 10, "past")
        })
        .await,
        Code::InvalidArgument,
        "expires_at",
    );
    assert!(app.entries("late").await.is_empty());
}

#[tokio::test]
async fn a_grant_retried_after_its_expiry_passed_replays_the_first_answer() {
    let app = spawn_app().await;
    app.ensure("retried").await;
    let soon = Utc::now() + chrono::Duration::milliseconds(500);
    let request = credits::grpc::pb::GrantCreditsRequest {
        expires_at: Some(timestamp(soon)),
        ..crate::helpers::spend::grant_request("retried", 10, "promo-1")
    };
    let first = app.send_grant(request.clone()).await.expect("granted");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The caller's retry (its answer was lost) carries the same, now past, expiry.
    let again = app.send_grant(request).await.expect("a retry replays");
    assert!(again.replayed);
    assert_eq!(
        (again.ledger_entry_id, again.lot_id),
        (first.ledger_entry_id, first.lot_id)
    );
    assert_eq!(app.entries("retried").await.len(), 1);
}

#[tokio::test]
async fn the_sweep_writes_one_expiry_entry_per_lot_exactly_once_on_every_replica() {
    let first = sweeping_app().await;
    let second = TestApp::builder()
        .env("EXPIRY_INTERVAL", "1s")
        .database(first.db.clone())
        .spawn()
        .await;
    for id in ["swept-a", "swept-b"] {
        first.ensure(id).await;
    }
    let at = Utc::now() + chrono::Duration::seconds(2);
    let lot_a1 = first.grant_expiring("swept-a", 30, "a1", at).await.lot_id;
    let lot_a2 = first.grant_expiring("swept-a", 20, "a2", at).await.lot_id;
    first.grant("swept-a", 10, "a-forever").await;
    let lot_b = second.grant_expiring("swept-b", 40, "b1", at).await.lot_id;

    let swept_a = expiry_entries(&first, "swept-a", 2).await;
    let swept_b = expiry_entries(&second, "swept-b", 1).await;
    // Three more periods on both replicas write nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entries = first.entries("swept-a").await;
    let mut expired: Vec<(String, i64)> = entries
        .iter()
        .filter(|e| e.kind == "expiry")
        .map(|e| (e.reference.clone(), e.delta))
        .collect();
    expired.sort();
    let mut expected = vec![(lot_a1, -30), (lot_a2, -20)];
    expected.sort();
    assert_eq!(expired, expected, "one entry per lot, naming it");
    assert_eq!(swept_a.len(), 2);
    assert_eq!(swept_b, [(-40, "expiry".to_owned())]);
    let b_entries = second.entries("swept-b").await;
    assert_eq!(b_entries[0].reference, lot_b);
    assert_eq!(b_entries.len(), 2);
    assert_eq!(first.credit_balance("swept-a").await, 10);
    assert_eq!(second.credit_balance("swept-b").await, 0);
    assert_eq!(
        first.lot_remaining("swept-a").await,
        [
            ("a1".to_owned(), 0),
            ("a2".to_owned(), 0),
            ("a-forever".to_owned(), 10)
        ]
    );
    first.assert_spend_invariants().await;
}

#[tokio::test]
async fn held_credits_do_not_expire_while_held_and_what_is_past_expiry_expires_when_the_hold_ends() {
    let app = sweeping_app().await;
    let at = Utc::now() + chrono::Duration::seconds(2);
    let mut holds = Vec::new();
    for id in ["captured", "released", "lapsed"] {
        app.ensure(id).await;
        app.grant_expiring(id, 100, "brief", at).await;
        let ttl = if id == "lapsed" { 4 } else { 60 };
        holds.push(app.reserve(id, 60, "call", ttl).await.expect("reserve").hold_id);
    }
    until(at).await;
    // Several sweeps pass while the holds are live.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for id in ["captured", "released"] {
        let balance = app.balance(id).await.expect("GetBalance");
        assert_eq!(
            (
                balance.credit_balance,
                balance.available_balance,
                balance.held_credits
            ),
            (60, 0, 60),
            "{id}: the held 60 still count, the free 40 do not"
        );
        assert_eq!(app.lot_remaining(id).await, [("brief".to_owned(), 60)], "{id}");
        assert!(
            app.entries_of_kind(id, "expiry").await.is_empty(),
            "{id}: held, not written off"
        );
    }

    let captured = app.capture(&holds[0], 25).await.expect("capture");
    assert_eq!(
        (
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits
        ),
        (0, 0, 35)
    );
    assert_eq!(
        app.entries_of_kind("captured", "consumption").await,
        [(-25, "call".to_owned())]
    );
    assert_eq!(
        app.entries_of_kind("captured", "expiry").await,
        [(-75, "expiry".to_owned())]
    );

    let released = app.release(&holds[1]).await.expect("release");
    assert_eq!(released.available_balance, 0);
    assert_eq!(
        app.entries_of_kind("released", "expiry").await,
        [(-100, "expiry".to_owned())]
    );

    // The third hold runs out on its own; the sweep writes its lot off then.
    assert_eq!(
        expiry_entries(&app, "lapsed", 1).await,
        [(-100, "expiry".to_owned())]
    );
    for id in ["captured", "released", "lapsed"] {
        assert_eq!(app.credit_balance(id).await, 0, "{id}");
    }
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_purchase_of_a_pack_with_expires_after_days_opens_a_lot_expiring_that_long_after() {
    let packs = TEST_PACKS.replace(
        "credits = 1000\nunit_amount = 1500",
        "credits = 1000\nunit_amount = 1500\nexpires_after_days = 30",
    );
    assert_ne!(packs, TEST_PACKS);
    let app = TestApp::builder().packs(&packs).spawn().await;
    app.mock_checkout_sessions().await;
    let before = Utc::now();
    let paid = app.buy_standard("buyer-30d", "buyer_30d").await;
    let after = Utc::now();
    let lots = app.lots("buyer-30d", false).await;
    assert_eq!(lots.len(), 1);
    let lot = &lots[0];
    assert_eq!(
        (lot.source.as_str(), lot.reference.as_str(), lot.credits),
        ("purchase", paid.session.as_str(), 1000)
    );
    let expires = time_of(lot.expires_at.as_ref().expect("an expiry"));
    let thirty = chrono::Duration::days(30);
    assert!(
        before + thirty - chrono::Duration::seconds(1) <= expires && expires <= after + thirty,
        "{expires}"
    );
    let balance = app.balance("buyer-30d").await.expect("GetBalance");
    assert_eq!(balance.next_expiry_at, lot.expires_at);
    assert_eq!(balance.expiring_credits, 1000);
}
