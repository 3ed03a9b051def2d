//! Events under races. Balance alerts under racing debits: 32 ConsumeCredits released at once across a low-balance
//! threshold write exactly one `balance.low` (and one `balance.depleted` when they reach zero),
//! round after round; on PostgreSQL the racers are split over two replicas of one database.
//! After every round the ledger matches the balances, the events of the account follow its
//! changes in order, and the last event is where GetBalance says the account is. And a
//! purchase and its refund delivered many times at once write one event each.

use std::sync::Arc;

use tokio::{sync::Barrier, task::JoinSet};
use tonic::{Code, Status};

use crate::helpers::{
    TestApp, TestDatabase,
    events::{count, payload, types},
    spend::{Paid, STANDARD_AMOUNT, completed_event, refunded_event},
};

const ROUNDS: usize = 21;
const RACERS: usize = 32;
const THRESHOLD: i64 = 100;

/// Retries what a caller would retry (briefly unavailable), with the same key.
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

/// `RACERS` debits of `credits` each, released together, spread over `apps`; how many
/// succeeded (every refusal must be FAILED_PRECONDITION).
async fn race(apps: &[Arc<TestApp>], account: &str, credits: i64) -> usize {
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for n in 0..RACERS {
        let (app, barrier, account) = (apps[n % apps.len()].clone(), barrier.clone(), account.to_owned());
        tasks.spawn(async move {
            let key = format!("race-{n}");
            barrier.wait().await;
            retrying(|| app.consume(&account, credits, &key)).await
        });
    }
    let mut succeeded = 0;
    for result in tasks.join_all().await {
        match result {
            Ok(_) => succeeded += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    succeeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_racing_debits_across_the_threshold_write_one_alert_per_crossing() {
    let builder = || TestApp::builder().env("ACCOUNT_EVENTS_CONSUMED", "true");
    let first = Arc::new(builder().spawn().await);
    let mut apps = vec![first.clone()];
    if TestDatabase::is_postgres() {
        apps.push(Arc::new(builder().database(first.db.clone()).spawn().await));
    }
    for round in 0..ROUNDS {
        // (funded, each debit, debits that fit, whether they reach zero)
        let (funded, each, fit, to_zero) = match round % 3 {
            0 => (320, 10, 32, true),
            1 => (200, 5, 32, false),
            _ => (250, 10, 25, true),
        };
        let account = format!("racer-{round}");
        first.ensure(&account).await;
        first.grant(&account, funded, "fund").await;
        first.set_threshold(&account, THRESHOLD).await;
        let succeeded = race(&apps, &account, each).await;
        assert_eq!(succeeded, fit, "round {round}: debits that fit");

        let balance = apps[round % apps.len()]
            .balance(&account)
            .await
            .expect("GetBalance");
        let left = funded - each * fit as i64;
        assert_eq!(
            (balance.credit_balance, balance.available_balance),
            (left, left),
            "round {round}"
        );
        first.assert_ledger_matches_balances().await;

        let events = first.account_events(&account).await;
        let kinds = types(&events);
        assert_eq!(count(&events, "balance.low"), 1, "round {round}: {kinds:?}");
        assert_eq!(
            count(&events, "balance.depleted"),
            usize::from(to_zero),
            "round {round}: {kinds:?}"
        );
        assert_eq!(count(&events, "balance.recovered"), 0, "round {round}: {kinds:?}");
        assert_eq!(count(&events, "credits.consumed"), fit, "round {round}");
        // Events follow the changes in order: each debit leaves the balance one step lower.
        let consumed: Vec<i64> = events
            .iter()
            .filter(|e| e.r#type == "credits.consumed")
            .map(|e| e.balance_after)
            .collect();
        let expected: Vec<i64> = (1..=fit as i64).map(|n| funded - each * n).collect();
        assert_eq!(consumed, expected, "round {round}");
        let low = events.iter().find(|e| e.r#type == "balance.low").expect("low");
        let before = payload(low)["available_before"]
            .as_i64()
            .expect("available_before");
        assert!(
            before >= THRESHOLD && low.available_after < THRESHOLD,
            "round {round}: the crossing debit wrote it: {before} → {}",
            low.available_after
        );
        assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
        let last = events.last().expect("events");
        assert_eq!(
            (last.balance_after, last.available_after),
            (balance.credit_balance, balance.available_balance),
            "round {round}: the last event is where the account is"
        );
    }
    first.assert_spend_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redeliveries_of_a_purchase_and_its_refund_write_one_event_each() {
    let first = Arc::new(TestApp::builder().spawn().await);
    first.mock_checkout_sessions().await;
    let mut apps = vec![first.clone()];
    if TestDatabase::is_postgres() {
        apps.push(Arc::new(
            TestApp::builder().database(first.db.clone()).spawn().await,
        ));
    }
    for round in 0..5 {
        let account = format!("redelivered-{round}");
        first.ensure(&account).await;
        let started = first
            .purchase(
                &account,
                &format!("{account}@example.com"),
                crate::helpers::STANDARD_PRICE,
            )
            .await
            .expect("PurchaseCredits");
        let paid = Paid {
            session: started.checkout_session_id,
            intent: format!("pi_redelivered_{round}"),
        };
        // 24 deliveries at once: the same event 16 times, and 8 copies under other ids.
        let bodies: Vec<String> = (0..24)
            .map(|n| {
                let id = if n % 3 == 0 {
                    format!("evt_copy_{round}_{n}")
                } else {
                    format!("evt_paid_{round}")
                };
                completed_event(&id, &paid, &account)
            })
            .collect();
        deliver_all(&apps, bodies).await;
        let refunds: Vec<String> = (0..24)
            .map(|n| {
                let id = if n % 3 == 0 {
                    format!("evt_refund_copy_{round}_{n}")
                } else {
                    format!("evt_refund_{round}")
                };
                refunded_event(&id, &paid, STANDARD_AMOUNT)
            })
            .collect();
        deliver_all(&apps, refunds).await;

        let events = first.account_events(&account).await;
        assert_eq!(
            types(&events),
            ["credits.purchased", "credits.clawed_back"],
            "round {round}"
        );
        assert_eq!(
            (events[0].balance_after, events[1].balance_after),
            (1000, 0),
            "round {round}"
        );
        assert_eq!(first.credit_balance(&account).await, 0);
        first.assert_ledger_matches_balances().await;
    }
}

/// Posts every body at once, spread over `apps`, each until acknowledged.
async fn deliver_all(apps: &[Arc<TestApp>], bodies: Vec<String>) {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let mut tasks = JoinSet::new();
    for (n, body) in bodies.into_iter().enumerate() {
        let (app, barrier) = (apps[n % apps.len()].clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.deliver(&body).await;
        });
    }
    tasks.join_all().await;
}
