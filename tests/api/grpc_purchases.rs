//! ListPurchases: newest first, paged with opaque tokens.

use credits::grpc::pb::{self, list_purchases_request::Account};
use tonic::Code;

use crate::helpers::{STANDARD_PRICE, STARTER_PRICE, TestApp, spawn_app};

async fn list(
    app: &TestApp,
    account: Account,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListPurchasesResponse, tonic::Status> {
    app.grpc
        .clone()
        .list_purchases(pb::ListPurchasesRequest {
            account: Some(account),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn list_purchases_pages_newest_first_across_pages() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    let mut made = Vec::new();
    for i in 0..5 {
        let price = if i % 2 == 0 { STANDARD_PRICE } else { STARTER_PRICE };
        made.push(
            app.purchase("user-1", "a@example.com", price)
                .await
                .expect("purchase"),
        );
    }
    // Another account's purchases never show.
    app.purchase("user-2", "b@example.com", STANDARD_PRICE)
        .await
        .expect("other account");

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(&app, Account::AccountId("user-1".into()), 2, &token)
            .await
            .expect("page");
        pages += 1;
        assert!(page.purchases.len() <= 2);
        seen.extend(page.purchases);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let ids: Vec<&str> = seen.iter().map(|p| p.id.as_str()).collect();
    let want: Vec<&str> = made.iter().rev().map(|m| m.purchase_id.as_str()).collect();
    assert_eq!(ids, want, "newest first, each once");

    let newest = &seen[0];
    assert_eq!(newest.account_id, "user-1");
    assert_eq!(newest.credit_pack_id, "standard");
    assert_eq!(newest.credit_pack_name, "Standard");
    assert_eq!(newest.quantity, 1000);
    assert_eq!(newest.amount, 1500);
    assert_eq!(newest.currency, "usd");
    assert_eq!(newest.status(), pb::PurchaseStatus::Pending);
    assert_eq!(newest.stripe_checkout_session_id, made[4].checkout_session_id);
    assert!(newest.created_at.is_some());
    assert!(newest.completed_at.is_none());

    // By email, default page size: everything on one page.
    let all = list(&app, Account::Email("A@EXAMPLE.COM".into()), 0, "")
        .await
        .expect("by email");
    assert_eq!(all.purchases.len(), 5);
    assert!(all.next_page_token.is_empty());
}

#[tokio::test]
async fn list_purchases_errors() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.purchase("user-1", "a@example.com", STANDARD_PRICE)
        .await
        .expect("purchase");

    let bad_token = list(&app, Account::AccountId("user-1".into()), 10, "not-our-token")
        .await
        .expect_err("foreign token");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert!(bad_token.message().contains("page_token"));
    let negative = list(&app, Account::AccountId("user-1".into()), -1, "")
        .await
        .expect_err("negative size");
    assert_eq!(negative.code(), Code::InvalidArgument);
    assert!(negative.message().contains("page_size"));
    let unknown = list(&app, Account::AccountId("nobody".into()), 10, "")
        .await
        .expect_err("unknown account");
    assert_eq!(unknown.code(), Code::NotFound);
    let huge = list(&app, Account::AccountId("user-1".into()), 100_000, "")
        .await
        .expect("clamped to 500");
    assert_eq!(huge.purchases.len(), 1);
    let none = app
        .grpc
        .clone()
        .list_purchases(pb::ListPurchasesRequest::default())
        .await
        .expect_err("no account");
    assert_eq!(none.code(), Code::InvalidArgument);
}
