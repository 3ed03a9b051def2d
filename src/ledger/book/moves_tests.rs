//! Moves: every debit names the lots (and debt) that paid for it with their value; rollover,
//! expiry and refunds after expiry as explicit moves.

use super::{
    tests::{allowance, assert_invariants, assert_moves, book, credit, debit, purchase, t},
    *,
};
use crate::ledger::kinds::LotSource;

#[test]
fn a_debit_spanning_three_lots_of_different_sources_names_all_three() {
    let mut book = book();
    book.credit(allowance("allow", 10, t(100), 0), t(0));
    book.credit(credit("promo", 10, Some(t(200))), t(0));
    book.credit(purchase("bought", 10), t(0));
    book.debit(debit(25, "call"), t(1)).expect("debit");
    let entry = book.entries.last().expect("entry");
    let named: Vec<(Option<&str>, Option<LotSource>, i64, i64)> = entry
        .moves
        .iter()
        .map(|m| (m.lot_id.as_deref(), m.source, m.credits, m.value))
        .collect();
    assert_eq!(
        named,
        vec![
            (Some("allow"), Some(LotSource::Allowance), -10, -70),
            (Some("promo"), Some(LotSource::Grant), -10, 0),
            (Some("bought"), Some(LotSource::Purchase), -5, -50),
        ]
    );
    assert_moves(&book);
}

#[test]
fn an_allowance_rolls_over_up_to_its_cap_and_the_rest_expires_with_its_value() {
    let mut book = book();
    book.credit(allowance("period1", 100, t(100), 30), t(0));
    book.debit(debit(40, "call"), t(1)).expect("debit");
    book.settle(t(100));
    let kinds: Vec<(EntryKind, i64)> = book.entries.iter().map(|e| (e.kind, e.delta)).collect();
    assert_eq!(
        kinds,
        vec![
            (EntryKind::Allowance, 100),
            (EntryKind::Consumption, -40),
            (EntryKind::Rollover, 0),
            (EntryKind::Expiry, -30),
        ]
    );
    let rolled = book
        .lots()
        .iter()
        .find(|l| l.source == LotSource::Rollover)
        .expect("a rollover lot");
    assert_eq!((rolled.remaining, rolled.value_remaining), (30, 210));
    assert_eq!(rolled.expires_at, Some(t(400)));
    assert_eq!(rolled.reference, "period1");
    let expiry = book.entries.last().expect("expiry");
    assert_eq!(
        expiry.moves[0].value, -210,
        "the expired part is breakage worth its value"
    );
    assert_eq!(book.account.balance, 30);
    assert_moves(&book);
    // It never runs twice, and the rolled credits expire at the next period's end.
    book.settle(t(101));
    assert_eq!(book.entries.len(), 4);
    book.settle(t(400));
    assert_eq!(book.account.balance, 0);
    assert_eq!(book.entries.len(), 5, "a rollover lot does not roll again");
    assert_moves(&book);
}

#[test]
fn a_stopped_rollover_expires_everything() {
    let mut book = book();
    book.credit(allowance("period1", 100, t(100), 30), t(0));
    book.stop_rollover("period1");
    book.settle(t(100));
    assert_eq!(book.account.balance, 0);
    assert!(book.entries.iter().all(|e| e.kind != EntryKind::Rollover));
}

#[test]
fn a_refund_after_its_lot_expired_does_not_take_other_purchases_credits() {
    let mut book = book();
    let mut expiring = purchase("first", 100);
    expiring.lot.expires_at = Some(t(100));
    book.credit(expiring, t(0));
    book.credit(purchase("second", 50), t(0));
    book.debit(debit(30, "call"), t(1)).expect("debit");
    book.settle(t(100));
    assert_eq!(book.account.balance, 50, "70 expired");
    let refund = Clawback {
        credits: 100,
        kind: EntryKind::Refund,
        reference: "re_1".into(),
        metadata: Metadata::new(),
        purchase_reference: "first".into(),
    };
    book.claw_back(refund, t(101)).expect("refund");
    // Only the 30 spent credits are taken back (from the other purchase); the expired 70 are
    // gone already.
    assert_eq!(book.account.balance, 20);
    let entry = book.entries.last().expect("refund entry");
    assert_eq!(entry.delta, -30);
    assert_eq!(
        entry.metadata.get("expired_credits").map(String::as_str),
        Some("70")
    );
    assert_moves(&book);
    assert_invariants(&book);
    // A second refund of the same purchase finds no expired credits left to account for.
    let again = Clawback {
        credits: 10,
        kind: EntryKind::Refund,
        reference: "re_2".into(),
        metadata: Metadata::new(),
        purchase_reference: "first".into(),
    };
    book.claw_back(again, t(102)).expect("refund");
    assert_eq!(book.account.balance, 10);
}
