//! Rollover through the real interfaces: at a period's end, unspent allowance up to the plan's
//! cap moves into a rollover lot and the rest expires, once, as ledger entries naming the lots;
//! the next period's grant and the rollover come out the same whichever arrives first.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::helpers::{
    TestApp,
    subscriptions::{
        PRO_AMOUNT, PRO_CREDITS, PRO_PRICE, PRO_ROLLOVER_CAP, Period, SUBSCRIPTION_PACKS, event,
        invoice_json, with_payment,
    },
};

/// A subscription app whose expiry sweep runs every `sweep`.
async fn app(sweep: &str) -> TestApp {
    TestApp::builder()
        .packs(SUBSCRIPTION_PACKS)
        .env("EXPIRY_INTERVAL", sweep)
        .spawn()
        .await
}

/// `invoice.paid` of a Pro invoice for `period`, with the fake Stripe answering its payments.
async fn paid(app: &TestApp, id: &str, sub: &str, account: &str, reason: &str, period: Period) -> String {
    let invoice: Value = with_payment(
        invoice_json(id, sub, account, reason, PRO_AMOUNT, PRO_PRICE, period),
        &format!("pi_{id}"),
    );
    app.mock_invoice(&invoice).await;
    event(&format!("evt_{id}"), "invoice.paid", period.start, invoice)
}

/// A first period ending `seconds` from now, and the month after it.
fn periods(seconds: i64) -> (Period, Period) {
    let end = Utc::now().timestamp() + seconds;
    let first = Period {
        start: end - 30 * 86_400,
        end,
    };
    (first, first.next())
}

async fn until(at: i64) {
    let left = at - Utc::now().timestamp();
    if left >= 0 {
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(left).unwrap_or(0) * 1000 + 300,
        ))
        .await;
    }
}

/// Asserts the rollover's outcome on `account`: 2,000 of the first 10,000 spent, 5,000 (the cap)
/// rolled into a lot of their own that names the first invoice, 3,000 expired, and the second
/// period's 10,000 granted once.
async fn assert_rolled(app: &TestApp, account: &str, first_invoice: &str, second_invoice: &str) {
    let spent = 2_000;
    let expired = PRO_CREDITS - spent - PRO_ROLLOVER_CAP;
    assert_eq!(
        app.credit_balance(account).await,
        PRO_ROLLOVER_CAP + PRO_CREDITS,
        "rolled plus the new period"
    );
    let lots = app.lots(account, true).await;
    let rolled: Vec<_> = lots.iter().filter(|l| l.source == "rollover").collect();
    assert_eq!(rolled.len(), 1, "one rollover lot: {lots:?}");
    assert_eq!(
        (
            rolled[0].reference.as_str(),
            rolled[0].credits,
            rolled[0].remaining
        ),
        (first_invoice, PRO_ROLLOVER_CAP, PRO_ROLLOVER_CAP)
    );
    // The rolled credits keep their share of what the first invoice paid.
    assert_eq!(rolled[0].value, PRO_AMOUNT * PRO_ROLLOVER_CAP / PRO_CREDITS);
    let allowances: Vec<_> = lots
        .iter()
        .filter(|l| l.source == "allowance")
        .map(|l| (l.reference.as_str(), l.remaining))
        .collect();
    assert_eq!(allowances, [(first_invoice, 0), (second_invoice, PRO_CREDITS)]);
    let entries = app.entries(account).await;
    let kinds: Vec<(&str, i64)> = entries.iter().rev().map(|e| (e.kind.as_str(), e.delta)).collect();
    let rollover = entries
        .iter()
        .find(|e| e.kind == "rollover")
        .expect("a rollover entry");
    let moved: Vec<i64> = rollover.allocations.iter().map(|a| a.credits).collect();
    assert_eq!(
        moved,
        [-PRO_ROLLOVER_CAP, PRO_ROLLOVER_CAP],
        "out of the allowance, into the rollover lot"
    );
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "rollover").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|(k, _)| *k == "expiry")
            .copied()
            .collect::<Vec<_>>(),
        [("expiry", -expired)]
    );
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "allowance").count(),
        2,
        "{kinds:?}"
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn the_next_invoice_before_the_period_end_then_a_read_and_a_debit_roll_over_once() {
    // No sweep during the test: the read and the next command bring the account past the end.
    let app = app("1h").await;
    let (account, sub) = ("early-next", "sub_early_next");
    app.ensure(account).await;
    let (first, second) = periods(3);
    let first_paid = paid(&app, "in_early_1", sub, account, "subscription_create", first).await;
    app.deliver(&first_paid).await;
    app.consume(account, 2_000, "use-1").await.expect("consume");
    // The cycle invoice comes before the first period ends: both periods' lots live together.
    let second_paid = paid(&app, "in_early_2", sub, account, "subscription_cycle", second).await;
    app.deliver(&second_paid).await;
    assert_eq!(app.credit_balance(account).await, 18_000);

    until(first.end).await;
    // Nothing has written since the end, yet a read already counts what rolls over.
    assert_eq!(app.credit_balance(account).await, 15_000);
    // A command brings the book past the end: rollover and expiry are written, once.
    let hold = app.reserve(account, 1, "nudge", 60).await.expect("reserve");
    app.release(&hold.hold_id).await.expect("release");
    // Redeliveries change nothing.
    app.deliver(&first_paid).await;
    app.deliver(&second_paid).await;
    assert_rolled(&app, account, "in_early_1", "in_early_2").await;
}

#[tokio::test]
async fn the_period_end_swept_before_the_next_invoice_arrives_rolls_over_the_same() {
    let app = app("1s").await;
    let (account, sub) = ("late-next", "sub_late_next");
    app.ensure(account).await;
    let (first, second) = periods(2);
    let first_paid = paid(&app, "in_late_1", sub, account, "subscription_create", first).await;
    app.deliver(&first_paid).await;
    app.consume(account, 2_000, "use-1").await.expect("consume");
    until(first.end + 2).await;
    // The sweep has rolled it over: the balance is the rollover lot alone.
    assert_eq!(app.credit_balance(account).await, PRO_ROLLOVER_CAP);
    let entries = app.entries(account).await;
    assert!(entries.iter().any(|e| e.kind == "rollover"), "swept: {entries:?}");
    // Then the cycle invoice, twice and with the first again.
    let second_paid = paid(&app, "in_late_2", sub, account, "subscription_cycle", second).await;
    app.deliver_all(vec![second_paid.clone(), second_paid, first_paid])
        .await;
    assert_rolled(&app, account, "in_late_1", "in_late_2").await;
}
