//! Races on one account, many rounds each: concurrent consumption never overdraws, concurrent
//! reserves never hold more than the balance, one key applies once, webhooks, consumption and
//! captures lose no update, and two replicas on one database keep every invariant.

use std::sync::Arc;

use tokio::{sync::Barrier, task::JoinSet};
use tonic::{Code, Status};

use crate::helpers::{
    TestApp, spawn_app,
    spend::{Paid, completed_event},
};

const ROUNDS: usize = 5;

/// Retries what a caller would retry (the database or writer was briefly unavailable), with the
/// same idempotency key, so a retry never applies twice.
async fn retrying<T, F, Fut>(call: F) -> Result<T, Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    loop {
        match call().await {
            Err(status) if matches!(status.code(), Code::Unavailable | Code::Aborted) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

async fn funded(app: &TestApp, id: &str, credits: i64) {
    app.ensure(id).await;
    app.grant(id, credits, "fund").await;
}

/// `calls` consumptions of one credit each with distinct keys, all released at once, spread
/// over `apps`; returns how many succeeded. Every refusal must be FAILED_PRECONDITION.
async fn consume_race(apps: &[Arc<TestApp>], account: &str, calls: usize) -> usize {
    let barrier = Arc::new(Barrier::new(calls));
    let mut tasks = JoinSet::new();
    for n in 0..calls {
        let (app, barrier, account) = (apps[n % apps.len()].clone(), barrier.clone(), account.to_owned());
        tasks.spawn(async move {
            let key = format!("c-{n}");
            barrier.wait().await;
            retrying(|| app.consume(&account, 1, &key)).await
        });
    }
    let mut succeeded = 0;
    for result in tasks.join_all().await {
        match result {
            Ok(consumed) => {
                assert!(consumed.available_balance >= 0, "{consumed:?}");
                succeeded += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    succeeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_consumes_against_a_hundred_succeed_exactly_a_hundred_times() {
    let app = Arc::new(spawn_app().await);
    for round in 0..ROUNDS {
        let account = format!("hundred-{round}");
        funded(&app, &account, 100).await;
        let succeeded = consume_race(std::slice::from_ref(&app), &account, 200).await;
        assert_eq!(succeeded, 100, "round {round}");
        let balance = app.balance(&account).await.expect("GetBalance");
        assert_eq!(
            (balance.credit_balance, balance.available_balance),
            (0, 0),
            "round {round}"
        );
        assert_eq!(app.entries_of_kind(&account, "consumption").await.len(), 100);
    }
    app.assert_spend_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_reserves_never_hold_more_than_the_balance() {
    let app = Arc::new(spawn_app().await);
    for round in 0..2 * ROUNDS {
        let account = format!("reserver-{round}");
        funded(&app, &account, 100).await;
        let barrier = Arc::new(Barrier::new(30));
        let mut tasks = JoinSet::new();
        for n in 0..30_i64 {
            let (app, barrier, account) = (app.clone(), barrier.clone(), account.clone());
            // Sizes 1..=30 in odd rounds, 7 each in even ones (exactly 14 fit).
            let credits = if round % 2 == 0 { 7 } else { n + 1 };
            tasks.spawn(async move {
                barrier.wait().await;
                let reserved = app.reserve(&account, credits, &format!("r-{n}"), 60).await;
                (credits, reserved)
            });
        }
        let mut held = 0;
        for (credits, result) in tasks.join_all().await {
            match result {
                Ok(reserved) => {
                    assert!(reserved.available_balance >= 0, "{reserved:?}");
                    held += credits;
                }
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
            }
        }
        assert!(held <= 100, "round {round}: {held} held of 100");
        if round % 2 == 0 {
            assert_eq!(held, 98, "round {round}: 14 holds of 7");
        }
        let balance = app.balance(&account).await.expect("GetBalance");
        assert_eq!(
            (
                balance.credit_balance,
                balance.held_credits,
                balance.available_balance
            ),
            (100, held, 100 - held),
            "round {round}"
        );
    }
    app.assert_spend_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_racing_fifty_times_reserves_once_and_a_hold_is_captured_or_released_once() {
    let app = Arc::new(spawn_app().await);
    for round in 0..ROUNDS {
        let account = format!("single-{round}");
        funded(&app, &account, 100).await;
        let barrier = Arc::new(Barrier::new(50));
        let mut tasks = JoinSet::new();
        for _ in 0..50 {
            let (app, barrier, account) = (app.clone(), barrier.clone(), account.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                app.reserve(&account, 40, "the-hold", 60).await.expect("reserve")
            });
        }
        let holds = tasks.join_all().await;
        assert_eq!(holds.iter().filter(|h| !h.replayed).count(), 1, "round {round}");
        assert!(holds.iter().all(|h| h.hold_id == holds[0].hold_id));
        let hold_id = holds[0].hold_id.clone();

        // 25 captures of 30 and 25 releases at once: one of them closes the hold.
        let barrier = Arc::new(Barrier::new(50));
        let mut tasks = JoinSet::new();
        for n in 0..50 {
            let (app, barrier, hold_id) = (app.clone(), barrier.clone(), hold_id.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                if n % 2 == 0 {
                    (true, app.capture(&hold_id, 30).await.map(|c| c.replayed))
                } else {
                    (false, app.release(&hold_id).await.map(|r| r.replayed))
                }
            });
        }
        let results = tasks.join_all().await;
        let applied: Vec<bool> = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(false)))
            .map(|(capture, _)| *capture)
            .collect();
        assert_eq!(applied.len(), 1, "round {round}: one applies: {results:?}");
        let captured = applied[0];
        for (capture, result) in &results {
            match result {
                Ok(replayed) => assert!(
                    *capture == captured,
                    "round {round}: a {} answered {replayed} after the hold was closed the other way",
                    if *capture { "capture" } else { "release" }
                ),
                Err(status) => {
                    assert_ne!(*capture, captured, "round {round}: {status:?}");
                    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                }
            }
        }
        let expected = if captured { 70 } else { 100 };
        let balance = app.balance(&account).await.expect("GetBalance");
        assert_eq!(
            (
                balance.credit_balance,
                balance.available_balance,
                balance.held_credits
            ),
            (expected, expected, 0),
            "round {round}"
        );
    }
    app.assert_spend_invariants().await;
}

/// Purchases paid by webhook, consumptions, grants and reserve-then-capture pairs on one
/// account, all at once, over `apps`; every one must land.
async fn mixed_race(apps: &[Arc<TestApp>], account: &str, round: usize) {
    const PURCHASES: usize = 10;
    const CONSUMES: usize = 50;
    const CAPTURES: usize = 20;
    const GRANTS: usize = 10;
    funded(&apps[0], account, 10_000).await;
    let mut paid = Vec::new();
    // Opened on one replica: each fake Stripe numbers its sessions from 1.
    for n in 0..PURCHASES {
        let started = apps[0]
            .purchase(
                account,
                &format!("{account}@example.com"),
                crate::helpers::STANDARD_PRICE,
            )
            .await
            .expect("PurchaseCredits");
        paid.push(Paid {
            session: started.checkout_session_id,
            intent: format!("pi_{account}_{n}"),
        });
    }
    let total = PURCHASES + CONSUMES + CAPTURES + GRANTS;
    let barrier = Arc::new(Barrier::new(total));
    let mut tasks = JoinSet::new();
    for n in 0..total {
        let (app, barrier, account) = (apps[n % apps.len()].clone(), barrier.clone(), account.to_owned());
        let purchase = paid.get(n).cloned();
        tasks.spawn(async move {
            let key = format!("k-{n}");
            barrier.wait().await;
            if let Some(paid) = purchase {
                app.deliver(&completed_event(&format!("evt_{account}_{n}"), &paid, &account))
                    .await;
            } else if n < PURCHASES + CONSUMES {
                retrying(|| app.consume(&account, 10, &key))
                    .await
                    .expect("consume");
            } else if n < PURCHASES + CONSUMES + CAPTURES {
                let hold = retrying(|| app.reserve(&account, 20, &key, 60))
                    .await
                    .expect("reserve");
                retrying(|| app.capture(&hold.hold_id, 15))
                    .await
                    .expect("capture");
            } else {
                retrying(|| app.send_grant(crate::helpers::spend::grant_request(&account, 5, &key)))
                    .await
                    .expect("grant");
            }
        });
    }
    tasks.join_all().await;
    let expected =
        10_000 + 1000 * PURCHASES as i64 - 10 * CONSUMES as i64 - 15 * CAPTURES as i64 + 5 * GRANTS as i64;
    let balance = apps[0].balance(account).await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (expected, expected, 0),
        "round {round}: no update lost"
    );
    let app = &apps[0];
    assert_eq!(app.entries_of_kind(account, "purchase").await.len(), PURCHASES);
    assert_eq!(
        app.entries_of_kind(account, "consumption").await.len(),
        CONSUMES + CAPTURES
    );
    assert_eq!(app.entries_of_kind(account, "grant").await.len(), GRANTS + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_purchases_consumption_and_captures_racing_on_one_account_lose_no_update() {
    let app = Arc::new(spawn_app().await);
    app.mock_checkout_sessions().await;
    for round in 0..ROUNDS {
        mixed_race(std::slice::from_ref(&app), &format!("mixed-{round}"), round).await;
    }
    app.assert_spend_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_database_keep_every_invariant() {
    let first = Arc::new(TestApp::builder().env("EXPIRY_INTERVAL", "1s").spawn().await);
    let second = Arc::new(
        TestApp::builder()
            .env("EXPIRY_INTERVAL", "1s")
            .database(first.db.clone())
            .spawn()
            .await,
    );
    let apps = [first.clone(), second.clone()];
    first.mock_checkout_sessions().await;
    for round in 0..3 {
        // Consumption split over both replicas never overdraws.
        let account = format!("replicated-{round}");
        funded(&first, &account, 100).await;
        assert_eq!(consume_race(&apps, &account, 200).await, 100, "round {round}");
        assert_eq!(second.credit_balance(&account).await, 0);

        // One key sent to both replicas at once applies once.
        let keyed = format!("keyed-{round}");
        funded(&second, &keyed, 100).await;
        let barrier = Arc::new(Barrier::new(50));
        let mut tasks = JoinSet::new();
        for n in 0..50 {
            let (app, barrier, keyed) = (apps[n % 2].clone(), barrier.clone(), keyed.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                retrying(|| app.consume(&keyed, 30, "once"))
                    .await
                    .expect("consume")
            });
        }
        let answers = tasks.join_all().await;
        assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1, "round {round}");
        assert_eq!(first.credit_balance(&keyed).await, 70);

        // Webhooks, consumption and captures over both replicas.
        mixed_race(&apps, &format!("replicated-mixed-{round}"), round).await;
    }
    first.assert_spend_invariants().await;
}
