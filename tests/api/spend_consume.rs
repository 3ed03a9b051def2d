//! ConsumeCredits and the idempotency rules every write shares: a debit never below the
//! available balance, the first answer replayed for a repeated key, other parameters refused,
//! keys scoped to the account and the operation.

use std::{collections::HashMap, sync::Arc};

use credits::{entities::idempotency_key, grpc::pb};
use sea_orm::{EntityTrait, sea_query::Expr};
use tonic::Code;

use crate::helpers::{
    spawn_app,
    spend::{assert_refused, consume_request, grant_request},
};

#[tokio::test]
async fn consume_debits_the_balance_and_records_a_consumption_entry_with_reason_and_metadata() {
    let app = spawn_app().await;
    app.ensure("spender").await;
    app.grant("spender", 100, "fund").await;
    let pb::ConsumeCreditsResponse {
        credit_balance,
        available_balance,
        ledger_entry_id,
        replayed,
    } = app
        .send_consume(pb::ConsumeCreditsRequest {
            metadata: HashMap::from([("request".to_owned(), "r-17".to_owned())]),
            ..consume_request("spender", 30, "call-17")
        })
        .await
        .expect("ConsumeCredits");
    assert_eq!((credit_balance, available_balance, replayed), (70, 70, false));

    let entries = app.entries("spender").await;
    let entry = &entries[0];
    assert_eq!(entry.id, ledger_entry_id, "newest first");
    assert_eq!(
        (
            entry.kind.as_str(),
            entry.reason.as_str(),
            entry.reference.as_str(),
            entry.delta,
            entry.balance_after
        ),
        ("consumption", "usage", "call-17", -30, 70)
    );
    assert_eq!(entry.metadata.get("request").map(String::as_str), Some("r-17"));
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn consuming_more_than_is_available_is_failed_precondition_and_writes_nothing() {
    let app = spawn_app().await;
    app.ensure("short").await;
    app.grant("short", 40, "fund").await;
    app.reserve("short", 15, "hold", 0).await.expect("reserve");
    let refused = app.consume("short", 26, "too-much").await;
    assert_refused(refused.clone(), Code::FailedPrecondition, "25 available");
    assert_refused(refused, Code::FailedPrecondition, "26 asked");
    assert_eq!(app.entries("short").await.len(), 1, "only the grant");
    let balance = app.balance("short").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.available_balance), (40, 25));

    // A refused call takes no key: the same call succeeds once the credits are there.
    app.grant("short", 10, "top-up").await;
    let consumed = app.consume("short", 26, "too-much").await.expect("now enough");
    assert_eq!((consumed.credit_balance, consumed.replayed), (24, false));
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn consume_by_email_debits_the_same_account() {
    let app = spawn_app().await;
    app.ensure_with("mailer", "Mailer@Example.com")
        .await
        .expect("ensure");
    app.grant("mailer", 10, "fund").await;
    let consumed = app
        .send_consume(pb::ConsumeCreditsRequest {
            account: Some(pb::consume_credits_request::Account::Email(
                "MAILER@example.com".into(),
            )),
            ..consume_request("", 4, "by-mail")
        })
        .await
        .expect("by email");
    assert_eq!(consumed.credit_balance, 6);
    // The key is the account's, however the account is named.
    let by_id = app.consume("mailer", 4, "by-mail").await.expect("by id");
    assert!(by_id.replayed);
    assert_eq!(app.credit_balance("mailer").await, 6);
}

#[tokio::test]
async fn a_repeated_key_with_the_same_parameters_replays_the_first_answer_and_changes_nothing() {
    let app = spawn_app().await;
    app.ensure("repeat").await;
    app.grant("repeat", 100, "fund").await;
    let first = app.consume("repeat", 10, "once").await.expect("first");
    app.consume("repeat", 5, "other").await.expect("another call");
    let again = app.consume("repeat", 10, "once").await.expect("again");
    assert!(again.replayed);
    assert_eq!(
        (
            again.credit_balance,
            again.available_balance,
            &again.ledger_entry_id
        ),
        (
            first.credit_balance,
            first.available_balance,
            &first.ledger_entry_id
        ),
        "the first answer, as it was"
    );
    assert_eq!(app.credit_balance("repeat").await, 85);

    let granted = app.grant("repeat", 7, "bonus").await;
    let regrant = app.grant("repeat", 7, "bonus").await;
    assert!(regrant.replayed && !granted.replayed);
    assert_eq!(
        (&regrant.ledger_entry_id, &regrant.lot_id, regrant.credit_balance),
        (&granted.ledger_entry_id, &granted.lot_id, granted.credit_balance)
    );
    assert_eq!(app.credit_balance("repeat").await, 92);
    assert_eq!(app.entries("repeat").await.len(), 4);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_invalid_argument() {
    let app = spawn_app().await;
    app.ensure("strict").await;
    app.grant("strict", 100, "fund").await;
    app.consume("strict", 10, "k").await.expect("first");
    assert_refused(
        app.consume("strict", 11, "k").await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_refused(
        app.send_consume(pb::ConsumeCreditsRequest {
            reason: "other".into(),
            ..consume_request("strict", 10, "k")
        })
        .await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_refused(
        app.send_consume(pb::ConsumeCreditsRequest {
            metadata: HashMap::from([("a".to_owned(), "b".to_owned())]),
            ..consume_request("strict", 10, "k")
        })
        .await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_refused(
        app.send_grant(grant_request("strict", 99, "fund")).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    app.reserve("strict", 5, "hold", 60).await.expect("reserve");
    assert_refused(
        app.reserve("strict", 5, "hold", 61).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    assert_eq!(app.credit_balance("strict").await, 90);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_key_is_scoped_to_its_account_and_its_operation() {
    let app = spawn_app().await;
    for id in ["left", "right"] {
        app.ensure(id).await;
        app.grant(id, 100, "shared-key").await;
    }
    // The same key for a consumption and a reservation of the account that granted with it.
    let consumed = app.consume("left", 10, "shared-key").await.expect("consume");
    assert!(!consumed.replayed);
    let reserved = app.reserve("left", 10, "shared-key", 0).await.expect("reserve");
    assert!(!reserved.replayed);
    // And on another account, with other parameters.
    let other = app
        .consume("right", 25, "shared-key")
        .await
        .expect("other account");
    assert!(!other.replayed);
    assert_eq!(app.credit_balance("left").await, 90);
    assert_eq!(app.credit_balance("right").await, 75);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn keys_are_kept_beyond_a_day() {
    let app = spawn_app().await;
    app.ensure("old-key").await;
    app.grant("old-key", 100, "fund").await;
    let first = app.consume("old-key", 10, "last-year").await.expect("first");
    // Age every record by a year: keys are kept forever, not 24 h.
    idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(365)),
        )
        .exec(&app.db.connect().await)
        .await
        .expect("age the keys");
    let again = app.consume("old-key", 10, "last-year").await.expect("again");
    assert!(again.replayed);
    assert_eq!(again.ledger_entry_id, first.ledger_entry_id);
    assert_eq!(app.credit_balance("old-key").await, 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_calls_with_one_key_apply_once_and_all_get_the_first_answer() {
    let app = Arc::new(spawn_app().await);
    for round in 0..10 {
        let account = format!("racy-{round}");
        app.ensure(&account).await;
        app.grant(&account, 100, "fund").await;
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (app, account, barrier) = (app.clone(), account.clone(), barrier.clone());
            calls.spawn(async move {
                barrier.wait().await;
                app.consume(&account, 30, "the-one").await.expect("consume")
            });
        }
        let answers = calls.join_all().await;
        assert_eq!(
            answers.iter().filter(|a| !a.replayed).count(),
            1,
            "round {round}: one applies"
        );
        for answer in &answers {
            assert_eq!(
                (
                    answer.credit_balance,
                    answer.available_balance,
                    &answer.ledger_entry_id
                ),
                (70, 70, &answers[0].ledger_entry_id),
                "round {round}"
            );
        }
        assert_eq!(app.credit_balance(&account).await, 70, "round {round}");
        assert_eq!(app.entries_of_kind(&account, "consumption").await.len(), 1);
    }
    app.assert_spend_invariants().await;
}
