//! Where credits came from and went: every entry names the lots (and debt) it moved with their
//! value, lots show their source and value, and a balance can be read as of any earlier moment
//! from the ledger alone.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use credits::grpc::pb;

use crate::helpers::{
    TestApp, spawn_app,
    spend::{STANDARD_AMOUNT, refunded_event, timestamp},
};

/// An entry's allocations as `(lot reference or "debt", credits, value, source)`.
fn named(app_lots: &[pb::CreditLot], entry: &pb::LedgerEntry) -> Vec<(String, i64, i64, String)> {
    entry
        .allocations
        .iter()
        .map(|a| {
            let lot = app_lots
                .iter()
                .find(|l| l.id == a.lot_id)
                .map_or_else(|| "debt".to_owned(), |l| l.reference.clone());
            (lot, a.credits, a.value, a.source.clone())
        })
        .collect()
}

#[tokio::test]
async fn a_debit_spanning_three_lots_of_different_sources_names_all_three_with_their_value() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.ensure("mixed").await;
    app.grant_expiring("mixed", 100, "promo", Utc::now() + chrono::Duration::days(1))
        .await;
    let paid = app.buy_standard("mixed", "mixed").await;
    app.grant("mixed", 50, "support").await;

    // 100 free credits expiring first, then the purchase (1,000 credits for 1,500), then the
    // newer grant: one debit of 1,120 takes from all three.
    app.consume("mixed", 1120, "big-call").await.expect("consume");
    let lots = app.lots("mixed", true).await;
    let bought = lots
        .iter()
        .find(|l| l.reference == paid.session)
        .expect("purchase lot");
    assert_eq!(
        (
            bought.source.as_str(),
            bought.value,
            bought.currency.as_str(),
            bought.unit_value.as_str()
        ),
        ("purchase", STANDARD_AMOUNT, "usd", "1.5")
    );
    assert_eq!((bought.remaining, bought.value_remaining), (0, 0));
    let promo = lots.iter().find(|l| l.reference == "promo").expect("grant lot");
    assert_eq!((promo.value, promo.unit_value.as_str()), (0, "0"));

    let entries = app.entries("mixed").await;
    let consumption = entries
        .iter()
        .find(|e| e.kind == "consumption")
        .expect("consumption");
    assert_eq!(
        named(&lots, consumption),
        [
            ("promo".to_owned(), -100, 0, "grant".to_owned()),
            (paid.session.clone(), -1000, -1500, "purchase".to_owned()),
            ("support".to_owned(), -20, 0, "grant".to_owned()),
        ]
    );
    // A partial debit of a paid lot takes its share of the value, rounded down; the lot's
    // last credit takes what is left of it.
    let second = app.buy_standard("mixed", "mixed-again").await;
    app.consume("mixed", 131, "part").await.expect("consume");
    let lots = app.lots("mixed", true).await;
    let entries = app.entries("mixed").await;
    let part = entries.iter().find(|e| e.reference == "part").expect("part");
    assert_eq!(
        named(&lots, part),
        [
            ("support".to_owned(), -30, 0, "grant".to_owned()),
            (second.session.clone(), -101, -151, "purchase".to_owned()),
        ]
    );
    app.consume("mixed", 899, "last").await.expect("consume");
    let entries = app.entries("mixed").await;
    let last = entries.iter().find(|e| e.reference == "last").expect("last");
    assert_eq!(
        named(&lots, last),
        [(second.session.clone(), -899, -1349, "purchase".to_owned())]
    );
    // A refund of spent credits: nothing left in the lot, so the whole of it is debt.
    app.deliver(&refunded_event("evt_refund_spent", &paid, STANDARD_AMOUNT))
        .await;
    let entries = app.entries("mixed").await;
    let refund = entries.iter().find(|e| e.kind == "refund").expect("refund");
    assert_eq!(
        named(&lots, refund),
        [("debt".to_owned(), -1000, 0, String::new())]
    );
    for entry in &entries {
        let moved: i64 = entry.allocations.iter().map(|a| a.credits).sum();
        assert_eq!(moved, entry.delta, "allocations add up to the delta of {entry:?}");
    }
    app.assert_spend_invariants().await;
}

/// What GetBalance said at a moment.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    credit_balance: i64,
    available_balance: i64,
    held_credits: i64,
    next_expiry_at: Option<i64>,
    expiring_credits: i64,
}

fn seen(balance: &pb::GetBalanceResponse) -> Seen {
    Seen {
        credit_balance: balance.credit_balance,
        available_balance: balance.available_balance,
        held_credits: balance.held_credits,
        next_expiry_at: balance.next_expiry_at.as_ref().map(|t| t.seconds),
        expiring_credits: balance.expiring_credits,
    }
}

async fn balance_as_of(app: &TestApp, account: &str, at: DateTime<Utc>) -> pb::GetBalanceResponse {
    app.grpc
        .clone()
        .get_balance(pb::GetBalanceRequest {
            account: Some(pb::get_balance_request::Account::AccountId(account.into())),
            as_of: Some(timestamp(at)),
        })
        .await
        .expect("GetBalance as_of")
        .into_inner()
}

/// Records what GetBalance says now, at a moment strictly between writes.
async fn observe(app: &TestApp, account: &str, history: &mut Vec<(DateTime<Utc>, Seen)>) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let at = Utc::now().trunc_subsecs(6);
    let balance = app.balance(account).await.expect("GetBalance");
    history.push((at, seen(&balance)));
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test]
async fn a_balance_as_of_any_moment_equals_what_was_read_then() {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.ensure("timeline").await;
    let mut history = Vec::new();
    observe(&app, "timeline", &mut history).await;
    let soon = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(2);
    app.grant_expiring("timeline", 40, "short", soon).await;
    observe(&app, "timeline", &mut history).await;
    let paid = app.buy_standard("timeline", "timeline").await;
    observe(&app, "timeline", &mut history).await;
    app.consume("timeline", 25, "c1").await.expect("consume");
    observe(&app, "timeline", &mut history).await;
    let hold = app.reserve("timeline", 300, "h1", 600).await.expect("reserve");
    observe(&app, "timeline", &mut history).await;
    app.capture(&hold.hold_id, 120).await.expect("capture");
    observe(&app, "timeline", &mut history).await;
    let second = app.reserve("timeline", 200, "h2", 600).await.expect("reserve");
    observe(&app, "timeline", &mut history).await;
    // The short grant's lot runs out with nobody writing: reads stop counting it at once.
    if let Ok(left) = (soon - Utc::now()).to_std() {
        tokio::time::sleep(left + Duration::from_millis(100)).await;
    }
    observe(&app, "timeline", &mut history).await;
    app.release(&second.hold_id).await.expect("release");
    observe(&app, "timeline", &mut history).await;
    app.deliver(&refunded_event("evt_refund_half", &paid, STANDARD_AMOUNT / 2))
        .await;
    observe(&app, "timeline", &mut history).await;
    app.consume("timeline", 10, "c2").await.expect("consume");
    observe(&app, "timeline", &mut history).await;

    for (at, then) in &history {
        let rebuilt = balance_as_of(&app, "timeline", *at).await;
        assert_eq!(&seen(&rebuilt), then, "as of {at}");
    }
    // Lots as of a moment: before the purchase only the short grant was there.
    let (before_purchase, _) = &history[1];
    let lots = app
        .grpc
        .clone()
        .list_credit_lots(pb::ListCreditLotsRequest {
            account: Some(pb::list_credit_lots_request::Account::AccountId(
                "timeline".into(),
            )),
            include_spent: true,
            as_of: Some(timestamp(*before_purchase)),
        })
        .await
        .expect("ListCreditLots as_of")
        .into_inner()
        .lots;
    let listed: Vec<(&str, i64)> = lots.iter().map(|l| (l.reference.as_str(), l.remaining)).collect();
    assert_eq!(listed, [("short", 40)]);
    app.assert_spend_invariants().await;
}
