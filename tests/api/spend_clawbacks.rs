//! Refunds and disputes on an account that also has grants and spends: the clawback takes the
//! refunded purchase's own lot first, then the other lots in burn order, then goes into debt;
//! a later credit pays the debt first. What callers see while in debt.

use chrono::Utc;
use tonic::Code;

use crate::helpers::{
    TestApp, spawn_app,
    spend::{STANDARD_AMOUNT, assert_refused, dispute_event, refunded_event},
};

async fn buyer_app() -> TestApp {
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app
}

#[tokio::test]
async fn a_refund_takes_its_purchase_lot_first_then_the_other_lots_in_burn_order() {
    let app = buyer_app().await;
    app.ensure("refunded").await;
    app.grant_expiring("refunded", 200, "soon", Utc::now() + chrono::Duration::days(2))
        .await;
    let paid = app.buy_standard("refunded", "refunded").await;
    app.grant("refunded", 300, "later").await;
    let lots = |rows: [(&str, i64); 3]| {
        rows.iter()
            .map(|(r, n)| ((*r).to_owned(), *n))
            .collect::<Vec<_>>()
    };
    let session = paid.session.as_str();

    // A third of the money back: floor(1000 × 500 / 1500) = 333 credits, from the purchase's
    // lot although the grant expiring soon comes first in burn order.
    app.deliver(&refunded_event("evt_refund_500", &paid, 500)).await;
    assert_eq!(app.credit_balance("refunded").await, 1167);
    assert_eq!(
        app.lot_remaining("refunded").await,
        lots([("soon", 200), (session, 667), ("later", 300)])
    );

    // Spending burns the soonest expiry, then the older of the never-expiring lots.
    app.consume("refunded", 300, "spend").await.expect("consume");
    assert_eq!(
        app.lot_remaining("refunded").await,
        lots([("soon", 0), (session, 567), ("later", 300)])
    );

    // The rest of the money back: 667 more, 567 from the purchase, 100 from the next lot.
    app.deliver(&refunded_event("evt_refund_all", &paid, STANDARD_AMOUNT))
        .await;
    assert_eq!(
        app.lot_remaining("refunded").await,
        lots([("soon", 0), (session, 0), ("later", 200)])
    );
    let balance = app.balance("refunded").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.available_balance), (200, 200));
    assert_eq!(
        app.entries_of_kind("refunded", "refund").await,
        [(-333, "refund".to_owned()), (-667, "refund".to_owned())]
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_refund_of_spent_credits_is_debt_which_refuses_spending_and_a_later_credit_pays_first() {
    let app = buyer_app().await;
    app.ensure("debtor").await;
    let paid = app.buy_standard("debtor", "debtor").await;
    app.consume("debtor", 1000, "spent").await.expect("spend it all");
    app.deliver(&refunded_event("evt_debtor_refund", &paid, STANDARD_AMOUNT))
        .await;

    let balance = app.balance("debtor").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (-1000, 0, 0),
        "the debt shows as a negative balance; nothing is available"
    );
    assert_refused(
        app.consume("debtor", 1, "more").await,
        Code::FailedPrecondition,
        "0 available",
    );
    assert_refused(
        app.reserve("debtor", 1, "hold", 60).await,
        Code::FailedPrecondition,
        "0 available",
    );

    // A grant pays the debt before anything stays in its lot.
    let granted = app.grant("debtor", 400, "goodwill").await;
    assert_eq!(granted.credit_balance, -600);
    let lot = app
        .lots("debtor", true)
        .await
        .into_iter()
        .find(|l| l.id == granted.lot_id)
        .expect("the grant's lot");
    assert_eq!((lot.credits, lot.remaining), (400, 0));
    assert_refused(
        app.consume("debtor", 1, "more").await,
        Code::FailedPrecondition,
        "0 available",
    );

    // A purchase too: 600 pay the rest of the debt, 400 stay.
    let second = app.buy_standard("debtor", "debtor_again").await;
    let balance = app.balance("debtor").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.available_balance), (400, 400));
    let lot = app
        .lots("debtor", false)
        .await
        .into_iter()
        .find(|l| l.reference == second.session)
        .expect("the second purchase's lot");
    assert_eq!((lot.credits, lot.remaining), (1000, 400));
    app.consume("debtor", 400, "again")
        .await
        .expect("spend what is left");
    assert_eq!(app.credit_balance("debtor").await, 0);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_dispute_takes_its_purchase_lot_first_and_a_won_dispute_gives_it_back() {
    let app = buyer_app().await;
    app.ensure("disputed").await;
    app.grant_expiring("disputed", 500, "soon", Utc::now() + chrono::Duration::days(1))
        .await;
    let paid = app.buy_standard("disputed", "disputed").await;

    app.deliver(&dispute_event(
        "evt_dp_open",
        &paid,
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    assert_eq!(app.credit_balance("disputed").await, 500);
    assert_eq!(
        app.lot_remaining("disputed").await,
        [("soon".to_owned(), 500), (paid.session.clone(), 0)],
        "the disputed purchase's own lot, not the one expiring first"
    );

    app.deliver(&dispute_event(
        "evt_dp_won",
        &paid,
        "charge.dispute.closed",
        "won",
    ))
    .await;
    assert_eq!(app.credit_balance("disputed").await, 1500);
    let entries = app.entries_of_kind("disputed", "dispute").await;
    assert_eq!(
        entries,
        [(-1000, "dispute".to_owned()), (1000, "dispute".to_owned())]
    );
    // What was given back is a lot of the purchase again, spent after the expiring grant.
    let lots = app.lots("disputed", false).await;
    assert_eq!(
        lots.iter()
            .map(|l| (l.source.as_str(), l.reference.as_str(), l.remaining))
            .collect::<Vec<_>>(),
        [("grant", "soon", 500), ("purchase", paid.session.as_str(), 1000)]
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_refund_never_takes_held_credits() {
    let app = buyer_app().await;
    app.ensure("held-refund").await;
    let paid = app.buy_standard("held-refund", "held_refund").await;
    let hold = app
        .reserve("held-refund", 700, "call", 60)
        .await
        .expect("reserve");
    app.deliver(&refunded_event("evt_held_refund", &paid, STANDARD_AMOUNT))
        .await;
    // 300 free credits go back, the other 700 become debt while the hold keeps its credits.
    let balance = app.balance("held-refund").await.expect("GetBalance");
    assert_eq!(
        (
            balance.credit_balance,
            balance.available_balance,
            balance.held_credits
        ),
        (0, 0, 700)
    );
    let captured = app
        .capture(&hold.hold_id, 200)
        .await
        .expect("the hold still captures");
    assert_eq!(
        (
            captured.credit_balance,
            captured.available_balance,
            captured.released_credits
        ),
        (-200, 0, 500)
    );
    app.assert_spend_invariants().await;
}
