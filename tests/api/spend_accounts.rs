//! EnsureAccount: created once with the trial credits as one `trial` entry, found unchanged
//! afterwards, refused when the email is another account's; grants keep the trial.

use std::sync::Arc;

use chrono::Utc;
use tonic::Code;

use crate::helpers::{TestApp, spawn_app, spend::assert_refused};

async fn trial_app() -> TestApp {
    TestApp::builder()
        .env("TRIAL_CREDITS", "50")
        .env("TRIAL_CREDITS_EXPIRE_DAYS", "14")
        .spawn()
        .await
}

#[tokio::test]
async fn the_first_ensure_account_creates_the_account_with_the_trial_credits_once() {
    let app = trial_app().await;
    let before = Utc::now();
    let first = app.ensure("newcomer").await;
    assert!(first.created);
    let account = first.account.expect("the account");
    assert_eq!(
        (
            account.account_id.as_str(),
            account.email.as_str(),
            account.credit_balance,
            account.available_balance,
            account.held_credits,
            account.is_trial_user
        ),
        ("newcomer", "newcomer@example.com", 50, 50, 0, true)
    );
    assert!(account.created_at.is_some());

    let entries = app.entries("newcomer").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let trial = &entries[0];
    assert_eq!(
        (
            trial.kind.as_str(),
            trial.reason.as_str(),
            trial.delta,
            trial.balance_after
        ),
        ("trial", "trial", 50, 50)
    );
    let lots = app.lots("newcomer", false).await;
    assert_eq!(lots.len(), 1);
    assert_eq!((lots[0].source.as_str(), lots[0].credits), ("trial", 50));
    let expires = crate::helpers::spend::time_of(lots[0].expires_at.as_ref().expect("trial expiry"));
    let days = (expires - before).num_hours();
    assert!((14 * 24 - 1..=14 * 24).contains(&days), "{days} h");

    // A later call changes nothing, whatever email it brings.
    app.grant("newcomer", 5, "welcome").await;
    let again = app
        .ensure_with("newcomer", "changed@example.com")
        .await
        .expect("EnsureAccount again");
    assert!(!again.created);
    let same = again.account.expect("the account");
    assert_eq!(
        (same.email.as_str(), same.credit_balance, same.created_at),
        ("newcomer@example.com", 55, account.created_at)
    );
    assert_eq!(app.entries_of_kind("newcomer", "trial").await.len(), 1);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn without_trial_credits_an_account_starts_empty_with_no_entry() {
    let app = spawn_app().await;
    let created = app.ensure("plain").await;
    assert!(created.created);
    let account = created.account.expect("the account");
    assert_eq!((account.credit_balance, account.is_trial_user), (0, true));
    assert!(app.entries("plain").await.is_empty());
    assert!(app.lots("plain", true).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_ensure_accounts_create_one_account_and_one_trial_entry() {
    let app = Arc::new(trial_app().await);
    for round in 0..5 {
        let id = format!("racer-{round}");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (app, id) = (app.clone(), id.clone());
            calls.spawn(async move { app.ensure(&id).await });
        }
        let answers = calls.join_all().await;
        assert_eq!(
            answers.iter().filter(|a| a.created).count(),
            1,
            "round {round}: one creates"
        );
        assert!(
            answers
                .iter()
                .all(|a| a.account.as_ref().map(|a| a.credit_balance) == Some(50))
        );
        assert_eq!(
            app.entries_of_kind(&id, "trial").await,
            [(50, "trial".to_owned())]
        );
    }
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn an_email_held_by_another_account_is_already_exists() {
    let app = spawn_app().await;
    app.ensure_with("first", "Shared@Example.com")
        .await
        .expect("first");
    assert_refused(
        app.ensure_with("second", "shared@example.COM").await,
        Code::AlreadyExists,
        "shared@example.com",
    );
    // The refused account was not created.
    assert_eq!(
        app.balance("second").await.map_err(|s| s.code()),
        Err(Code::NotFound)
    );
    // An existing account asking for another's email is refused too, and keeps its own.
    app.ensure_with("third", "third@example.com")
        .await
        .expect("third");
    assert_refused(
        app.ensure_with("third", "shared@example.com").await,
        Code::AlreadyExists,
        "email",
    );
    assert_eq!(
        app.balance("third").await.expect("GetBalance").email,
        "third@example.com"
    );
}

#[tokio::test]
async fn a_grant_keeps_the_trial_and_a_purchase_ends_it() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.ensure("trialist").await;
    app.grant("trialist", 100, "promo").await;
    assert!(app.balance("trialist").await.expect("GetBalance").is_trial_user);
    app.buy_standard("trialist", "trialist").await;
    let balance = app.balance("trialist").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.is_trial_user), (1100, false));
    app.assert_spend_invariants().await;
}
