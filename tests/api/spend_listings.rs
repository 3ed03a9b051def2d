//! ListLedgerEntries (newest first, in pages, every kind with its reason and reference),
//! ListCreditLots with and without spent lots, and GetBalance's spend fields.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use credits::grpc::pb;

use crate::helpers::{
    TestApp,
    spend::{STANDARD_AMOUNT, dispute_event, grant_request, refunded_event},
};

async fn page(
    app: &TestApp,
    by: pb::list_ledger_entries_request::Account,
    size: i32,
    token: &str,
) -> pb::ListLedgerEntriesResponse {
    app.grpc
        .clone()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            account: Some(by),
            page_size: size,
            page_token: token.into(),
        })
        .await
        .expect("ListLedgerEntries")
        .into_inner()
}

#[tokio::test]
async fn the_ledger_lists_every_kind_newest_first_in_pages_with_reasons_and_references() {
    let app = TestApp::builder()
        .env("TRIAL_CREDITS", "10")
        .env("EXPIRY_INTERVAL", "1s")
        .spawn()
        .await;
    app.mock_checkout_sessions().await;
    let id = "listed";
    app.ensure(id).await;
    let granted = app
        .send_grant(pb::GrantCreditsRequest {
            metadata: HashMap::from([("ticket".to_owned(), "T-9".to_owned())]),
            reason: "promotion".into(),
            ..grant_request(id, 100, "promo-1")
        })
        .await
        .expect("grant");
    let paid = app.buy_standard(id, "listed").await;
    app.consume(id, 30, "call-1").await.expect("consume");
    let hold = app.reserve(id, 20, "call-2", 60).await.expect("reserve");
    app.capture(&hold.hold_id, 15).await.expect("capture");
    app.deliver(&refunded_event("evt_listed_refund", &paid, STANDARD_AMOUNT / 3))
        .await;
    let second = app.buy_standard(id, "listed_2").await;
    app.deliver(&dispute_event(
        "evt_listed_dispute",
        &second,
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    // Last, so nothing spends it first: a grant the sweep writes off.
    let expiring = app
        .grant_expiring(id, 5, "brief", Utc::now() + chrono::Duration::seconds(1))
        .await;
    for _ in 0..300 {
        if !app.entries_of_kind(id, "expiry").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pages of three, newest first, until a page without a token.
    let by_email = pb::list_ledger_entries_request::Account::Email("LISTED@example.com".into());
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = page(&app, by_email.clone(), 3, &token).await;
        assert!(answer.entries.len() <= 3);
        pages += 1;
        listed.extend(answer.entries);
        if answer.next_page_token.is_empty() {
            break;
        }
        token = answer.next_page_token;
    }
    assert_eq!(listed.len(), 10, "{listed:#?}");
    assert_eq!(pages, 4);
    let ids: Vec<i64> = listed.iter().map(|e| e.id.parse().expect("numeric id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(
        page(&app, by_email, 0, "").await.entries,
        listed,
        "page_size 0 means 50: one page"
    );

    let oldest_first: Vec<&pb::LedgerEntry> = listed.iter().rev().collect();
    let mut balance = 0;
    for entry in &oldest_first {
        balance += entry.delta;
        assert_eq!(entry.balance_after, balance, "{entry:?}");
        assert_eq!(entry.account_id, id);
        assert!(entry.created_at.is_some());
    }
    let shape: Vec<(&str, &str, &str, i64)> = oldest_first
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_str(), e.reference.as_str(), e.delta))
        .collect();
    let capture_reference = format!("hold:{}", hold.hold_id);
    let expected = vec![
        ("trial", "trial", id, 10),
        ("grant", "promotion", "promo-1", 100),
        ("purchase", "purchase", paid.session.as_str(), 1000),
        ("consumption", "usage", "call-1", -30),
        ("consumption", "call", capture_reference.as_str(), -15),
        ("refund", "refund", "evt_listed_refund", -333),
        ("purchase", "purchase", second.session.as_str(), 1000),
        ("dispute", "dispute", "evt_listed_dispute", -1000),
        ("grant", "support", "brief", 5),
        ("expiry", "expiry", expiring.lot_id.as_str(), -5),
    ];
    assert_eq!(shape, expected);
    let promo = oldest_first[1];
    assert_eq!(promo.id, granted.ledger_entry_id);
    assert_eq!(promo.metadata.get("ticket").map(String::as_str), Some("T-9"));
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn list_credit_lots_lists_lots_with_credits_left_or_all_of_them_in_burn_order() {
    let app = crate::helpers::spawn_app().await;
    app.ensure("lots").await;
    let soon = Utc::now() + chrono::Duration::days(1);
    app.grant("lots", 10, "forever").await;
    app.grant_expiring("lots", 10, "soon", soon).await;
    app.grant_expiring("lots", 10, "later", soon + chrono::Duration::days(1))
        .await;
    app.consume("lots", 10, "spend").await.expect("consume");
    let refs = |lots: Vec<pb::CreditLot>| lots.into_iter().map(|l| l.reference).collect::<Vec<_>>();
    assert_eq!(refs(app.lots("lots", false).await), ["later", "forever"]);
    assert_eq!(refs(app.lots("lots", true).await), ["soon", "later", "forever"]);
    let by_email = app
        .grpc
        .clone()
        .list_credit_lots(pb::ListCreditLotsRequest {
            account: Some(pb::list_credit_lots_request::Account::Email(
                "lots@example.com".into(),
            )),
            include_spent: true,
            as_of: None,
        })
        .await
        .expect("by email")
        .into_inner()
        .lots;
    assert_eq!(by_email, app.lots("lots", true).await);
}
