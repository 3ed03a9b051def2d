//! The ledger writer: many callers' commands share transactions, and a job the database refuses
//! fails alone while the rest of its batch commits.

use std::sync::Arc;

use credits::grpc::pb;
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::helpers::{TestApp, spawn_app};

const CALLERS: usize = 256;

async fn ensure(app: &TestApp, id: &str) {
    app.grpc
        .clone()
        .ensure_account(pb::EnsureAccountRequest {
            account_id: id.into(),
            email: format!("{id}@example.com"),
        })
        .await
        .expect("EnsureAccount");
}

fn grant(account: &str, credits: i64) -> pb::GrantCreditsRequest {
    pb::GrantCreditsRequest {
        account: Some(pb::grant_credits_request::Account::AccountId(account.into())),
        credits,
        idempotency_key: format!("welcome-{account}"),
        reason: "promotion".into(),
        ..Default::default()
    }
}

/// `(sum, count)` of the writer's batch size histogram.
async fn batches(app: &TestApp) -> (f64, f64) {
    let text = app.metrics_text().await;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (
        read("credits_writer_batch_size_sum"),
        read("credits_writer_batch_size_count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_the_database_refuses_fails_alone_and_its_batch_commits() {
    let app = Arc::new(spawn_app().await);
    let accounts: Vec<String> = (0..CALLERS - 1).map(|n| format!("caller-{n}")).collect();
    for id in accounts.iter().chain(std::iter::once(&"poisoned".to_owned())) {
        ensure(&app, id).await;
    }
    // The database refuses any ledger entry of one account: a failure no check in the writer
    // foresees, met only when its batch writes.
    let db = app.db.connect().await;
    let trigger = if app.db.url.starts_with("postgres") {
        "CREATE FUNCTION refuse_poisoned() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.account_id = 'poisoned' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; \
         END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poisoned BEFORE INSERT ON credit_ledger FOR EACH ROW EXECUTE FUNCTION refuse_poisoned()"
    } else {
        "CREATE TRIGGER refuse_poisoned BEFORE INSERT ON credit_ledger WHEN NEW.account_id = 'poisoned' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END"
    };
    db.execute_unprepared(trigger).await.expect("trigger");
    let (sum_before, count_before) = batches(&app).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut calls = tokio::task::JoinSet::new();
    for (n, account) in accounts
        .iter()
        .cloned()
        .chain(["poisoned".to_owned()])
        .enumerate()
    {
        let (app, barrier) = (app.clone(), barrier.clone());
        calls.spawn(async move {
            barrier.wait().await;
            let result = app
                .grpc
                .clone()
                .grant_credits(grant(&account, 10 + n as i64))
                .await;
            (account, n as i64, result.map(tonic::Response::into_inner))
        });
    }
    let results = calls.join_all().await;
    for (account, n, result) in results {
        match (account.as_str(), result) {
            ("poisoned", Err(status)) => assert_eq!(status.code(), Code::Internal, "{status:?}"),
            ("poisoned", Ok(reply)) => panic!("the refused grant was answered {reply:?}"),
            (_, Ok(reply)) => assert_eq!(reply.credit_balance, 10 + n, "{account}"),
            (_, Err(status)) => panic!("{account} failed with the poisoned job: {status:?}"),
        }
    }
    for (n, account) in accounts.iter().enumerate() {
        assert_eq!(app.credit_balance(account).await, 10 + n as i64, "{account}");
    }
    assert_eq!(app.credit_balance("poisoned").await, 0, "nothing half-written");
    app.assert_ledger_matches_balances().await;

    // They were applied in batches, not one transaction per call.
    let (sum, count) = batches(&app).await;
    let (jobs, transactions) = (sum - sum_before, count - count_before);
    assert!(jobs >= CALLERS as f64, "{jobs} jobs in {transactions} batches");
    assert!(
        transactions < jobs,
        "{jobs} jobs in {transactions} batches: no batch held two"
    );
}

#[tokio::test]
async fn the_same_grant_repeated_in_one_batch_applies_once_and_replays_the_first_answer() {
    let app = Arc::new(spawn_app().await);
    ensure(&app, "repeater").await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        calls.spawn(async move {
            app.grpc
                .clone()
                .grant_credits(grant("repeater", 25))
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let replies: Vec<pb::GrantCreditsResponse> = calls
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("grant"))
        .collect();
    assert_eq!(replies.iter().filter(|r| !r.replayed).count(), 1, "one applies");
    let first = replies.iter().find(|r| !r.replayed).expect("the first");
    for reply in &replies {
        assert_eq!(
            (&reply.ledger_entry_id, &reply.lot_id, reply.credit_balance),
            (&first.ledger_entry_id, &first.lot_id, first.credit_balance)
        );
    }
    assert_eq!(app.credit_balance("repeater").await, 25);
    app.assert_ledger_matches_balances().await;
}

/// Deadlocks PostgreSQL detected in the test database so far. A backend counts its deadlocks
/// when it exits, so read this after the replicas are stopped.
async fn deadlocks(db: &crate::helpers::TestDatabase) -> Option<i64> {
    if !db.url.starts_with("postgres") {
        return None;
    }
    let conn = db.connect().await;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await
        .expect("read pg_stat_database")
        .expect("the test database's row");
    let _ = conn.close().await;
    Some(row.try_get_by_index::<i64>(0).expect("deadlocks"))
}

/// Two replicas on one database, racing on the same few accounts: one books purchases paid by
/// webhook (new purchase rows, which reference their account), the other consumes. Their
/// batches lock the accounts in one order and must never deadlock: PostgreSQL detects none,
/// and every call is answered the first time, many rounds over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_on_one_replica_and_consumption_on_the_other_never_deadlock() {
    use crate::helpers::spend::{Paid, completed_event};
    const ROUNDS: usize = 10;
    const ACCOUNTS: usize = 3;
    const EVENTS: usize = 12;
    const CONSUMES: usize = 36;
    let buyer = Arc::new(TestApp::builder().spawn().await);
    let spender = Arc::new(TestApp::builder().database(buyer.db.clone()).spawn().await);
    let db = buyer.db.clone();
    for round in 0..ROUNDS {
        let accounts: Vec<String> = (0..ACCOUNTS).map(|a| format!("lock-order-{round}-{a}")).collect();
        for account in &accounts {
            ensure(&spender, account).await;
            spender
                .grpc
                .clone()
                .grant_credits(grant(account, 1_000))
                .await
                .expect("GrantCredits");
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(EVENTS + CONSUMES));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..EVENTS + CONSUMES {
            let account = accounts[n % ACCOUNTS].clone();
            let (buyer, spender, barrier) = (buyer.clone(), spender.clone(), barrier.clone());
            calls.spawn(async move {
                if n < EVENTS {
                    let paid = Paid {
                        session: format!("cs_lock_order_{round}_{n}"),
                        intent: format!("pi_lock_order_{round}_{n}"),
                    };
                    let body = completed_event(&format!("evt_lock_order_{round}_{n}"), &paid, &account);
                    barrier.wait().await;
                    let status = buyer.post_webhook(&body).await.status();
                    assert_eq!(status, 200, "round {round}: completion {n}");
                } else {
                    barrier.wait().await;
                    let answer = spender
                        .consume(&account, 1, &format!("lock-order-{round}-{n}"))
                        .await;
                    assert!(answer.is_ok(), "round {round}: consume {n}: {answer:?}");
                }
            });
        }
        while let Some(joined) = calls.join_next().await {
            joined.expect("call");
        }
        let per_account = 1_000 + 1_000 * (EVENTS / ACCOUNTS) as i64 - (CONSUMES / ACCOUNTS) as i64;
        for account in &accounts {
            assert_eq!(
                buyer.credit_balance(account).await,
                per_account,
                "round {round}: {account}"
            );
        }
    }
    buyer.assert_ledger_matches_balances().await;
    let (Ok(buyer), Ok(spender)) = (Arc::try_unwrap(buyer), Arc::try_unwrap(spender)) else {
        panic!("the replicas are still shared");
    };
    buyer.stop().await;
    spender.stop().await;
    if let Some(count) = deadlocks(&db).await {
        assert_eq!(
            count, 0,
            "PostgreSQL detected deadlocks between the replicas' batches"
        );
    }
}

/// SQLite: under steady writes the WAL still restarts, so its file stays small. The background
/// checkpoint alone never caught up with the last frame, and the WAL grew by every write (about
/// 10 KB a grant, 33 MB/s at full speed) until the load stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_wal_stays_bounded_under_steady_writes() {
    const CALLERS: usize = 32;
    const GRANTS_EACH: usize = 160;
    const LIMIT: u64 = 16 * 1024 * 1024;
    let app = Arc::new(spawn_app().await);
    if !app.db.url.starts_with("sqlite") {
        return; // PostgreSQL recycles its WAL itself.
    }
    ensure(&app, "wal-steady").await;
    let wal = app.db.dir.path().join("credits.db-wal");
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let app = app.clone();
        callers.spawn(async move {
            for n in 0..GRANTS_EACH {
                let mut request = grant("wal-steady", 1);
                request.idempotency_key = format!("steady-{caller}-{n}");
                app.grpc
                    .clone()
                    .grant_credits(request)
                    .await
                    .expect("GrantCredits");
            }
        });
    }
    let mut largest = 0;
    while !callers.is_empty() {
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        tokio::select! {
            joined = callers.join_next() => { joined.expect("a caller").expect("caller task"); }
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    }
    largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    assert_eq!(
        app.credit_balance("wal-steady").await,
        (CALLERS * GRANTS_EACH) as i64
    );
    assert!(
        largest <= LIMIT,
        "the WAL reached {} MB over {} grants",
        largest / 1_000_000,
        CALLERS * GRANTS_EACH
    );
}
