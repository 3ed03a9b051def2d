//! GetBalance by account id or email.

use credits::grpc::pb::{self, get_balance_request::Account};
use tonic::Code;

use crate::helpers::{STANDARD_PRICE, spawn_app};

async fn get(
    app: &crate::helpers::TestApp,
    account: Option<Account>,
) -> Result<pb::GetBalanceResponse, tonic::Status> {
    app.grpc
        .clone()
        .get_balance(pb::GetBalanceRequest { account, as_of: None })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn get_balance_finds_an_account_by_id_or_by_email_in_any_case() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase("user-7", "Seven@Example.com", STANDARD_PRICE)
        .await
        .expect("account created");

    let by_id = get(&app, Some(Account::AccountId("user-7".into())))
        .await
        .expect("by id");
    let by_email = get(&app, Some(Account::Email("SEVEN@example.COM".into())))
        .await
        .expect("by email");
    assert_eq!(by_id, by_email);
    assert_eq!(
        by_id,
        pb::GetBalanceResponse {
            account_id: "user-7".into(),
            email: "seven@example.com".into(),
            credit_balance: 0,
            is_trial_user: true,
            available_balance: 0,
            held_credits: 0,
            next_expiry_at: None,
            expiring_credits: 0,
        }
    );
}

#[tokio::test]
async fn get_balance_errors() {
    let app = spawn_app().await;
    let missing = get(&app, Some(Account::AccountId("nobody".into())))
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    let missing = get(&app, Some(Account::Email("nobody@example.com".into())))
        .await
        .expect_err("unknown email");
    assert_eq!(missing.code(), Code::NotFound);
    let none = get(&app, None).await.expect_err("no account given");
    assert_eq!(none.code(), Code::InvalidArgument);
    assert!(none.message().contains("account"));
    let bad = get(&app, Some(Account::Email("nope".into())))
        .await
        .expect_err("bad email");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("email"));
    let empty = get(&app, Some(Account::AccountId(" ".into())))
        .await
        .expect_err("empty id");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().contains("account_id"));
}
