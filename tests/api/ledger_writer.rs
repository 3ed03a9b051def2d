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
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
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
