//! Overdraft through the real interfaces: `overdraft_limit` (UpdateAccountSettings) lets
//! ConsumeCredits take the balance down to `-overdraft_limit` and never further, however many
//! debits race (40 at once, round after round, over two replicas on PostgreSQL); holds never
//! reserve beyond the available credits plus the limit; the next credit repays the debt first.
//! And what UpdateAccountSettings refuses.

use std::sync::Arc;

use credits::grpc::pb;
use tokio::{sync::Barrier, task::JoinSet};
use tonic::{Code, Status};

use crate::helpers::{TestApp, TestDatabase, spend::assert_refused};

const RACERS: usize = 40;

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

/// `RACERS` consumptions (or reserves, then captures of each) of `each` credits released at
/// once over `apps`; how many succeeded. Every refusal is FAILED_PRECONDITION, and no answer
/// shows a balance below `-limit`.
async fn race(apps: &[Arc<TestApp>], account: &str, each: i64, limit: i64, holds: bool) -> usize {
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for n in 0..RACERS {
        let (app, barrier, account) = (apps[n % apps.len()].clone(), barrier.clone(), account.to_owned());
        tasks.spawn(async move {
            let key = format!("race-{n}");
            barrier.wait().await;
            if holds {
                retrying(|| app.reserve(&account, each, &key, 60))
                    .await
                    .map(|h| (h.hold_id, None))
            } else {
                retrying(|| app.consume(&account, each, &key))
                    .await
                    .map(|c| (String::new(), Some(c.credit_balance)))
            }
        });
    }
    let mut won = Vec::new();
    for result in tasks.join_all().await {
        match result {
            Ok((hold, balance)) => {
                if let Some(balance) = balance {
                    assert!(balance >= -limit, "a debit answered {balance} below -{limit}");
                }
                won.push(hold);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(status.message().contains("not enough credits"), "{status:?}");
            }
        }
    }
    if holds {
        for hold in &won {
            apps[0].capture(hold, each).await.expect("capture");
        }
    }
    won.len()
}

async fn replicas() -> Vec<Arc<TestApp>> {
    let first = Arc::new(TestApp::builder().spawn().await);
    let mut apps = vec![first.clone()];
    if TestDatabase::is_postgres() {
        apps.push(Arc::new(
            TestApp::builder().database(first.db.clone()).spawn().await,
        ));
    }
    apps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_racing_debits_never_take_the_balance_below_minus_the_limit_and_the_next_credit_repays_first() {
    let apps = replicas().await;
    let app = apps[0].clone();
    app.mock_checkout_sessions().await;
    for round in 0..8_i64 {
        // Some rounds end exactly at the limit, others a few credits above it; odd rounds race
        // holds (then capture them) instead of consuming directly.
        let (funded, limit, each) = (60 + 5 * round, 25 + 3 * round, 4 + round % 3);
        let holds = round % 2 == 1;
        let account = format!("overdrawn-{round}");
        app.ensure(&account).await;
        app.grant(&account, funded, "fund").await;
        let set = app.set_overdraft(&account, limit).await;
        assert_eq!(set.overdraft_limit, limit);

        let fit = usize::try_from((funded + limit) / each).expect("a count");
        assert!(fit < RACERS, "round {round}: some must be refused");
        let succeeded = race(&apps, &account, each, limit, holds).await;
        assert_eq!(
            succeeded, fit,
            "round {round}: as many as the balance and limit allow"
        );
        let left = funded - each * fit as i64;
        assert!(-limit <= left && left < -limit + each, "round {round}: {left}");
        let balance = apps[apps.len() - 1].balance(&account).await.expect("GetBalance");
        assert_eq!(
            (
                balance.credit_balance,
                balance.available_balance,
                balance.held_credits
            ),
            (left, 0, 0),
            "round {round}"
        );
        // At the limit: one more credit is refused, whoever asks.
        assert_refused(
            app.consume(&account, each, "one-more").await,
            Code::FailedPrecondition,
            "not enough credits",
        );
        app.assert_spend_invariants().await;

        // The next credit repays the debt first: a grant, or a purchase every third round.
        let debt = -left;
        let (credits, source) = if round % 3 == 0 {
            app.buy_standard(&account, &format!("repay-{round}")).await;
            (1000, "purchase")
        } else {
            app.grant(&account, 100, "repay").await;
            (100, "grant")
        };
        let balance = app.balance(&account).await.expect("GetBalance");
        assert_eq!(
            (balance.credit_balance, balance.available_balance),
            (credits - debt, credits - debt),
            "round {round}"
        );
        let lots = app.lots(&account, false).await;
        assert_eq!(lots.len(), 1, "round {round}: {lots:?}");
        assert_eq!(
            (lots[0].source.as_str(), lots[0].credits, lots[0].remaining),
            (source, credits, credits - debt),
            "round {round}: the debt came out of the new lot"
        );
        app.assert_spend_invariants().await;
    }
}

#[tokio::test]
async fn holds_reserve_no_more_than_the_available_credits_plus_the_limit() {
    let apps = replicas().await;
    let app = &apps[0];
    app.ensure("holder").await;
    app.grant("holder", 100, "fund").await;
    app.set_overdraft("holder", 50).await;

    assert_refused(
        app.reserve("holder", 151, "too-big", 60).await,
        Code::FailedPrecondition,
        "not enough credits",
    );
    let big = app
        .reserve("holder", 120, "big", 60)
        .await
        .expect("100 own + 20 overdraft");
    assert_eq!(big.available_balance, 0);
    assert_refused(
        app.reserve("holder", 31, "over", 60).await,
        Code::FailedPrecondition,
        "not enough credits",
    );
    let rest = app
        .reserve("holder", 30, "rest", 60)
        .await
        .expect("the last 30 of the limit");
    assert_refused(
        app.consume("holder", 1, "nothing-left").await,
        Code::FailedPrecondition,
        "not enough credits",
    );
    // Releasing the small hold gives its 30 back; capturing the big one makes its overdraft
    // part debt.
    app.release(&rest.hold_id).await.expect("release");
    let captured = app.capture(&big.hold_id, 120).await.expect("capture");
    assert_eq!((captured.credit_balance, captured.available_balance), (-20, 0));
    assert_refused(
        app.reserve("holder", 31, "past-limit", 60).await,
        Code::FailedPrecondition,
        "not enough credits",
    );
    app.reserve("holder", 30, "to-limit", 60)
        .await
        .expect("down to -50");
    app.assert_spend_invariants().await;

    // Lowering the limit below what is already used refuses every further debit.
    app.set_overdraft("holder", 0).await;
    assert_refused(
        app.consume("holder", 1, "after-lowering").await,
        Code::FailedPrecondition,
        "not enough credits",
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn update_account_settings_refuses_what_it_cannot_set() {
    let app = TestApp::builder().spawn().await;
    app.ensure("settings").await;
    let by_id = || {
        Some(pb::update_account_settings_request::Account::AccountId(
            "settings".into(),
        ))
    };
    let request = |low: Option<i64>, overdraft: Option<i64>| pb::UpdateAccountSettingsRequest {
        account: by_id(),
        low_balance_threshold: low,
        overdraft_limit: overdraft,
        auto_top_up: None,
    };
    for (low, overdraft, field) in [
        (None, Some(-1), "overdraft_limit"),
        (None, Some(1_000_000_000_001), "overdraft_limit"),
        (Some(-1), None, "low_balance_threshold"),
        (Some(i64::MAX), None, "low_balance_threshold"),
    ] {
        assert_refused(
            app.update_settings(request(low, overdraft)).await,
            Code::InvalidArgument,
            field,
        );
    }
    let top_up = |pack: &str, threshold: i64, monthly_limit: i64| pb::UpdateAccountSettingsRequest {
        account: by_id(),
        auto_top_up: Some(pb::AutoTopUp {
            enabled: true,
            threshold,
            pack_id: pack.into(),
            monthly_limit,
            paused_reason: String::new(),
        }),
        ..Default::default()
    };
    assert_refused(
        app.update_settings(top_up("no-such-pack", 100, 10_000)).await,
        Code::InvalidArgument,
        "no-such-pack",
    );
    assert_refused(
        app.update_settings(top_up("starter", 100, 499)).await,
        Code::InvalidArgument,
        "monthly_limit",
    );
    assert_refused(
        app.update_settings(top_up("starter", 0, 10_000)).await,
        Code::InvalidArgument,
        "auto_top_up.threshold",
    );
    assert_refused(
        app.update_settings(top_up("starter", -5, 10_000)).await,
        Code::InvalidArgument,
        "auto_top_up.threshold",
    );
    assert_refused(
        app.update_settings(top_up("starter", 100, 10_000)).await,
        Code::FailedPrecondition,
        "payment method",
    );
    assert_refused(
        app.update_settings(pb::UpdateAccountSettingsRequest {
            account: Some(pb::update_account_settings_request::Account::AccountId(
                "ghost".into(),
            )),
            overdraft_limit: Some(10),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "ghost",
    );
    // Nothing refused changed anything, nor wrote an event.
    let shown = app
        .grpc
        .clone()
        .get_account_settings(pb::GetAccountSettingsRequest {
            account: Some(pb::get_account_settings_request::Account::AccountId(
                "settings".into(),
            )),
        })
        .await
        .expect("GetAccountSettings")
        .into_inner();
    assert_eq!(
        (
            shown.overdraft_limit,
            shown.low_balance_threshold,
            shown.low_balance_threshold_is_default
        ),
        (0, 0, true)
    );
    assert!(!shown.auto_top_up.is_some_and(|t| t.enabled));
    assert!(app.account_events("settings").await.is_empty());

    // A valid change writes settings.changed once; the same values again write nothing.
    app.set_overdraft("settings", 10).await;
    app.set_overdraft("settings", 10).await;
    let events = app.account_events("settings").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type, "settings.changed");
    let body = crate::helpers::events::payload(&events[0]);
    assert_eq!(body["overdraft_limit"], 10);
}
