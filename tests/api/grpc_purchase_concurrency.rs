//! PurchaseCredits under concurrency and across accounts: first purchases racing to create one
//! account, and idempotency keys that two accounts happen to share.

use std::sync::Arc;

use credits::grpc::pb;
use sha2::{Digest, Sha256};

use crate::helpers::{STANDARD_PRICE, STARTER_PRICE, TestApp, spawn_app};

fn request(account_id: &str, email: &str, price_id: &str, key: &str) -> pb::PurchaseCreditsRequest {
    pb::PurchaseCreditsRequest {
        account_id: account_id.into(),
        email: email.into(),
        price_id: price_id.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// The `Idempotency-Key` header of every Checkout Session request, in order.
async fn sent_keys(app: &TestApp) -> Vec<Option<String>> {
    app.stripe_requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/v1/checkout/sessions")
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_first_purchases_for_one_new_account_at_once_both_succeed() {
    let app = Arc::new(spawn_app().await);
    app.mock_checkout_sessions().await;
    for round in 0..40 {
        let account = format!("new-buyer-{round}");
        let email = format!("new-buyer-{round}@example.com");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut calls = tokio::task::JoinSet::new();
        for price in [STANDARD_PRICE, STARTER_PRICE] {
            let (app, barrier) = (app.clone(), barrier.clone());
            let (account, email) = (account.clone(), email.clone());
            calls.spawn(async move {
                barrier.wait().await;
                app.purchase(&account, &email, price).await
            });
        }
        for result in calls.join_all().await {
            let started = result.unwrap_or_else(|status| panic!("round {round}: {status:?}"));
            assert!(!started.checkout_session_id.is_empty());
        }
        let balance = app.balance(&account).await.expect("the account exists once");
        assert_eq!(
            (balance.email.as_str(), balance.credit_balance),
            (email.as_str(), 0)
        );
        assert_eq!(app.purchases_of(&account).await.len(), 2, "round {round}");
    }
}

#[tokio::test]
async fn a_new_account_with_an_email_held_by_another_is_still_already_exists() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase("holder", "shared@example.com", STANDARD_PRICE)
        .await
        .expect("first account");
    let status = app
        .purchase("newcomer", "SHARED@example.com", STANDARD_PRICE)
        .await
        .expect_err("the email is taken");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    assert!(app.balance("newcomer").await.is_err(), "no account was made");
}

#[tokio::test]
async fn the_stripe_idempotency_key_is_derived_from_the_account_and_the_callers_key() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let expected = |account: &str, key: &str| hex::encode(Sha256::digest(format!("{account}\n{key}")));

    // Two accounts that both use `order-1`: two sessions, two different Stripe keys.
    let first = app
        .grpc
        .clone()
        .purchase_credits(request("acct-a", "a@example.com", STANDARD_PRICE, "order-1"))
        .await
        .expect("first account")
        .into_inner();
    let second = app
        .grpc
        .clone()
        .purchase_credits(request("acct-b", "b@example.com", STANDARD_PRICE, "order-1"))
        .await
        .expect("second account, same caller key")
        .into_inner();
    assert_ne!(first.checkout_session_id, second.checkout_session_id);
    assert_eq!(
        sent_keys(&app).await,
        [
            Some(expected("acct-a", "order-1")),
            Some(expected("acct-b", "order-1"))
        ]
    );

    // The same account repeating its key still gets its first session, with no Stripe call.
    let repeat = app
        .grpc
        .clone()
        .purchase_credits(request("acct-a", "a@example.com", STANDARD_PRICE, "order-1"))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(repeat, first);
    assert_eq!(sent_keys(&app).await.len(), 2);
}
