//! The posting rules on their own: burn order, debt, holds, expiry, and properties that hold for
//! any sequence of postings.

use chrono::{Duration, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::ledger::kinds::LotSource;

pub(super) fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0)
        .single()
        .expect("valid time")
}

pub(super) fn book() -> Book {
    Book::load(
        AccountState::new("acct", "a@example.com", true, t(0)),
        Vec::new(),
        Vec::new(),
    )
}

pub(super) fn credit(id: &str, credits: i64, expires_at: Option<DateTime<Utc>>) -> Credit {
    Credit {
        credits,
        kind: EntryKind::Grant,
        reason: "promo".into(),
        reference: id.into(),
        metadata: Metadata::new(),
        lot: LotTerms {
            id: id.into(),
            source: LotSource::Grant,
            reference: id.into(),
            expires_at,
            value: LotValue::free(),
            rollover: None,
        },
        ends_trial: false,
    }
}

pub(super) fn purchase(id: &str, credits: i64) -> Credit {
    Credit {
        kind: EntryKind::Purchase,
        lot: LotTerms {
            source: LotSource::Purchase,
            value: LotValue::paid(credits * 10, "usd"),
            ..credit(id, credits, None).lot
        },
        ends_trial: true,
        ..credit(id, credits, None)
    }
}

pub(super) fn debit(credits: i64, reference: &str) -> Debit {
    Debit {
        credits,
        reason: "usage".into(),
        reference: reference.into(),
        metadata: Metadata::new(),
    }
}

fn remaining(book: &Book) -> Vec<(&str, i64)> {
    book.lots().iter().map(|l| (l.id.as_str(), l.remaining)).collect()
}

/// `balance = Σ remaining - debt` and `balance = Σ entries` (the book starts empty).
pub(super) fn assert_invariants(book: &Book) {
    let lots: i64 = book.lots().iter().map(|l| l.remaining).sum();
    assert_eq!(book.account.balance, lots - book.account.debt, "lots minus debt");
    let entries: i64 = book.entries.iter().map(|e| e.delta).sum();
    assert_eq!(book.account.balance, entries, "sum of entries");
    for lot in book.lots() {
        assert!(lot.remaining >= lot.held && lot.held >= 0, "{lot:?}");
    }
    assert!(book.account.debt >= 0);
}

/// A subscription period's allowance worth 7 per credit, rolling up to `cap` credits into a
/// lot that lives 300 s past its expiry.
pub(super) fn allowance(id: &str, credits: i64, expires_at: DateTime<Utc>, cap: i64) -> Credit {
    Credit {
        kind: EntryKind::Allowance,
        lot: LotTerms {
            source: LotSource::Allowance,
            value: LotValue::paid(credits * 7, "usd"),
            rollover: Some(RolloverTerms {
                cap,
                until: expires_at + Duration::seconds(300),
            }),
            ..credit(id, credits, Some(expires_at)).lot
        },
        ..credit(id, credits, Some(expires_at))
    }
}

/// Every entry's moves add up to its delta; every lot's moves add up to what is left of its
/// credits and of its value, which never goes below zero or above what was paid.
pub(super) fn assert_moves(book: &Book) {
    for entry in &book.entries {
        let moved: i64 = entry.moves.iter().map(|m| m.credits).sum();
        assert_eq!(moved, entry.delta, "{entry:?}");
    }
    for lot in book.lots() {
        let moves = book
            .entries
            .iter()
            .flat_map(|e| &e.moves)
            .filter(|m| m.lot_id.as_deref() == Some(lot.id.as_str()));
        let (credits, value) = moves.fold((0, 0), |(c, v), m| (c + m.credits, v + m.value));
        assert_eq!(credits, lot.remaining, "credits moved of {lot:?}");
        assert_eq!(value, lot.value_remaining, "value moved of {lot:?}");
        assert!(
            lot.value_remaining >= 0 && lot.value_remaining <= lot.value.minor,
            "{lot:?}"
        );
        if lot.remaining == 0 {
            assert_eq!(lot.value_remaining, 0, "an empty lot is worth nothing: {lot:?}");
        }
    }
}

#[test]
fn debits_burn_the_soonest_expiring_lot_first_and_never_expiring_last() {
    let mut book = book();
    book.credit(credit("never", 100, None), t(0));
    book.credit(credit("late", 100, Some(t(2000))), t(1));
    book.credit(credit("soon", 100, Some(t(1000))), t(2));
    book.credit(credit("soon-newer", 100, Some(t(1000))), t(3));
    book.debit(debit(150, "k1"), t(10)).expect("enough");
    assert_eq!(
        remaining(&book),
        [("soon", 0), ("soon-newer", 50), ("late", 100), ("never", 100)],
        "expiring lots first, oldest first on ties, never-expiring last"
    );
    assert_invariants(&book);
}

#[test]
fn a_debit_never_goes_below_the_available_balance() {
    let mut book = book();
    book.credit(credit("g", 100, None), t(0));
    assert_eq!(
        book.debit(debit(101, "k"), t(1)),
        Err(PostingError::Insufficient {
            available: 100,
            asked: 101
        })
    );
    assert!(book.entries.len() == 1, "nothing written");
    book.debit(debit(100, "k"), t(1)).expect("exactly all");
    assert_eq!(book.account.balance, 0);
}

#[test]
fn a_clawback_takes_the_purchase_lot_first_then_burn_order_then_debt() {
    let mut book = book();
    book.credit(credit("grant", 100, Some(t(500))), t(0));
    book.credit(purchase("cs_1", 300), t(1));
    book.debit(debit(250, "spend"), t(2)).expect("enough");
    // grant (expires first) burnt 100, cs_1 burnt 150: cs_1 holds 150.
    assert_eq!(remaining(&book), [("grant", 0), ("cs_1", 150)]);
    let posted = book
        .claw_back(
            Clawback {
                credits: 300,
                kind: EntryKind::Refund,
                reference: "evt_refund".into(),
                metadata: Metadata::new(),
                purchase_reference: "cs_1".into(),
            },
            t(3),
        )
        .expect("a loaded book");
    assert_eq!(posted.balance, -150);
    assert_eq!(book.account.debt, 150);
    assert_eq!(
        book.available(t(3)),
        0,
        "in debt nothing is available, nothing below zero"
    );
    assert_invariants(&book);

    // A later credit pays the debt first.
    book.credit(credit("later", 200, None), t(4));
    assert_eq!(book.account.debt, 0);
    assert_eq!(book.account.balance, 50);
    assert_eq!(remaining(&book).last(), Some(&("later", 50)));
    assert_invariants(&book);
}

#[test]
fn holds_lower_the_available_balance_and_captures_release_the_rest() {
    let mut book = book();
    book.credit(credit("g", 100, None), t(0));
    book.reserve(
        Reservation {
            hold_id: "h1".into(),
            credits: 60,
            expires_at: t(300),
            reason: "call".into(),
            metadata: Metadata::new(),
        },
        t(1),
    )
    .expect("reserve");
    assert_eq!(
        (book.account.balance, book.available(t(2)), book.held(t(2))),
        (100, 40, 60)
    );
    assert!(matches!(
        book.debit(debit(41, "k"), t(2)),
        Err(PostingError::Insufficient { available: 40, .. })
    ));
    assert_eq!(
        book.capture("h1", 61, Metadata::new(), t(3)),
        Err(PostingError::OverCapture { held: 60, asked: 61 })
    );
    let captured = book.capture("h1", 25, Metadata::new(), t(3)).expect("capture");
    assert_eq!((captured.posted.balance, captured.released), (75, 35));
    assert_eq!((book.available(t(4)), book.held(t(4))), (75, 0));
    assert_eq!(
        book.capture("h1", 25, Metadata::new(), t(4)),
        Err(PostingError::HoldClosed(HoldStatus::Captured))
    );
    assert_eq!(
        book.release("h1", t(4)),
        Err(PostingError::HoldClosed(HoldStatus::Captured))
    );
    assert_invariants(&book);
}

#[test]
fn an_expired_hold_releases_itself_without_an_entry() {
    let mut book = book();
    book.credit(credit("g", 100, None), t(0));
    book.reserve(
        Reservation {
            hold_id: "h".into(),
            credits: 100,
            expires_at: t(60),
            reason: "call".into(),
            metadata: Metadata::new(),
        },
        t(0),
    )
    .expect("reserve");
    assert_eq!(book.available(t(59)), 0);
    book.settle(t(60));
    assert_eq!(book.available(t(60)), 100);
    assert_eq!(book.hold("h").map(|h| h.status), Some(HoldStatus::Expired));
    assert_eq!(book.entries.len(), 1, "no entry for the release");
    assert_eq!(
        book.capture("h", 1, Metadata::new(), t(61)),
        Err(PostingError::HoldClosed(HoldStatus::Expired))
    );
    assert_eq!(book.release("h", t(61)), Ok(false), "already released by expiry");
}

#[test]
fn a_lot_expires_once_and_held_credits_wait_for_their_hold() {
    let mut book = book();
    book.credit(credit("promo", 100, Some(t(100))), t(0));
    book.credit(credit("paid", 50, None), t(0));
    book.reserve(
        Reservation {
            hold_id: "h".into(),
            credits: 30,
            expires_at: t(1000),
            reason: "call".into(),
            metadata: Metadata::new(),
        },
        t(10),
    )
    .expect("reserve from promo, which expires first");
    // Past promo's expiry: its 70 free credits are dead, the 30 held ones wait.
    book.settle(t(200));
    assert_eq!(book.available(t(200)), 50);
    assert_eq!(book.dead(t(200)), 70);
    assert!(
        !book.entries.iter().any(|e| e.kind == EntryKind::Expiry),
        "not yet: one entry per lot"
    );
    // Capturing 10 of the 30: the other 20 and the 70 expire then, in one entry.
    book.capture("h", 10, Metadata::new(), t(300)).expect("capture");
    let expiries: Vec<(i64, &str)> = book
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Expiry)
        .map(|e| (e.delta, e.reference.as_str()))
        .collect();
    assert_eq!(expiries, [(-90, "promo")]);
    assert_eq!(book.account.balance, 50);
    book.settle(t(400));
    assert_eq!(
        book.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Expiry)
            .count(),
        1
    );
    assert_invariants(&book);
}

#[test]
fn a_purchase_ends_the_trial_and_a_grant_does_not() {
    let mut book = book();
    book.credit(credit("g", 10, None), t(0));
    assert!(book.account.is_trial_user);
    book.credit(purchase("cs", 10), t(1));
    assert!(!book.account.is_trial_user);
}

#[test]
fn changes_list_new_and_changed_rows_once() {
    let mut book = book();
    book.credit(credit("g", 100, None), t(0));
    book.debit(debit(10, "k"), t(1)).expect("debit");
    let changes = book.changes();
    assert_eq!(changes.new_lots.len(), 1);
    assert!(
        changes.changed_lots.is_empty(),
        "a new lot is inserted with its final state"
    );
    assert_eq!(changes.new_lots[0].remaining, 90);
    assert_eq!(changes.entries.len(), 2);
    assert!(changes.account.is_some());
}

#[derive(Debug, Clone)]
enum Step {
    Grant { credits: i64, expires_in: Option<i64> },
    Purchase { credits: i64 },
    Consume { credits: i64 },
    Reserve { credits: i64, ttl: i64 },
    Capture { hold: usize, credits: i64 },
    Release { hold: usize },
    ClawBack { purchase: usize, credits: i64 },
    Wait { seconds: i64 },
    Allowance { credits: i64, expires_in: i64, cap: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..500i64, proptest::option::of(1..400i64))
            .prop_map(|(credits, expires_in)| Step::Grant { credits, expires_in }),
        (1..500i64).prop_map(|credits| Step::Purchase { credits }),
        (1..300i64).prop_map(|credits| Step::Consume { credits }),
        (1..300i64, 1..400i64).prop_map(|(credits, ttl)| Step::Reserve { credits, ttl }),
        (0..8usize, 1..300i64).prop_map(|(hold, credits)| Step::Capture { hold, credits }),
        (0..8usize).prop_map(|hold| Step::Release { hold }),
        (0..8usize, 1..600i64).prop_map(|(purchase, credits)| Step::ClawBack { purchase, credits }),
        (1..200i64).prop_map(|seconds| Step::Wait { seconds }),
        (1..500i64, 1..300i64, 0..300i64).prop_map(|(credits, expires_in, cap)| Step::Allowance {
            credits,
            expires_in,
            cap
        }),
    ]
}

proptest! {
    /// Whatever happens, in whatever order: the sums are conserved, nothing goes negative but
    /// the balance through a clawback, and debits never exceed what was available.
    #[test]
    fn any_sequence_of_postings_conserves_credits(steps in proptest::collection::vec(step(), 1..60)) {
        let mut book = book();
        let mut now = t(0);
        let mut holds: Vec<String> = Vec::new();
        let mut purchases: Vec<String> = Vec::new();
        for (n, step) in steps.into_iter().enumerate() {
            now += Duration::seconds(1);
            let id = format!("x{n}");
            match step {
                Step::Grant { credits, expires_in } => {
                    book.credit(credit(&id, credits, expires_in.map(|s| now + Duration::seconds(s))), now);
                }
                Step::Purchase { credits } => {
                    book.credit(purchase(&id, credits), now);
                    purchases.push(id);
                }
                Step::Consume { credits } => {
                    book.settle(now);
                    let available = book.available(now);
                    let result = book.debit(debit(credits, &id), now);
                    prop_assert_eq!(result.is_ok(), credits <= available);
                }
                Step::Reserve { credits, ttl } => {
                    book.settle(now);
                    let available = book.available(now);
                    let reserved = book.reserve(Reservation {
                        hold_id: id.clone(),
                        credits,
                        expires_at: now + Duration::seconds(ttl),
                        reason: "call".into(),
                        metadata: Metadata::new(),
                    }, now);
                    prop_assert_eq!(reserved.is_ok(), credits <= available);
                    if reserved.is_ok() {
                        holds.push(id);
                    }
                }
                Step::Capture { hold, credits } => {
                    if let Some(hold) = holds.get(hold) {
                        let _ = book.capture(hold, credits, Metadata::new(), now);
                    }
                }
                Step::Release { hold } => {
                    if let Some(hold) = holds.get(hold) {
                        let _ = book.release(hold, now);
                    }
                }
                Step::ClawBack { purchase, credits } => {
                    if let Some(reference) = purchases.get(purchase) {
                        let clawback = Clawback {
                            credits,
                            kind: EntryKind::Refund,
                            reference: id.clone(),
                            metadata: Metadata::new(),
                            purchase_reference: reference.clone(),
                        };
                        prop_assert!(book.claw_back(clawback, now).is_ok());
                    }
                }
                Step::Wait { seconds } => {
                    now += Duration::seconds(seconds);
                    book.settle(now);
                }
                Step::Allowance { credits, expires_in, cap } => {
                    book.credit(allowance(&id, credits, now + Duration::seconds(expires_in), cap), now);
                    purchases.push(id);
                }
            }
            assert_moves(&book);
            let lots: i64 = book.lots().iter().map(|l| l.remaining).sum();
            prop_assert_eq!(book.account.balance, lots - book.account.debt);
            let entries: i64 = book.entries.iter().map(|e| e.delta).sum();
            prop_assert_eq!(book.account.balance, entries);
            let held_by_lots: i64 = book.lots().iter().map(|l| l.held).sum();
            let held_by_holds: i64 = holds
                .iter()
                .filter_map(|h| book.hold(h))
                .filter(|h| h.status == HoldStatus::Active)
                .map(|h| h.credits)
                .sum();
            prop_assert_eq!(held_by_lots, held_by_holds, "lots hold exactly what active holds reserve");
            for lot in book.lots() {
                prop_assert!(lot.remaining >= lot.held && lot.held >= 0 && lot.remaining <= lot.credits);
            }
            prop_assert!(book.account.debt >= 0);
            // Once settled, expired lots keep only what a hold still reserves.
            book.settle(now);
            for lot in book.lots().iter().filter(|l| l.is_expired(now)) {
                prop_assert!(lot.remaining == 0 || lot.held > 0, "{:?}", lot);
            }
        }
    }

    /// Debits take lots strictly in burn order: a later lot is touched only once every earlier
    /// unexpired lot is empty.
    #[test]
    fn debits_follow_the_burn_order(
        lots in proptest::collection::vec((1..100i64, proptest::option::of(10..1000i64)), 1..10),
        spend in 1..500i64,
    ) {
        let mut book = book();
        for (n, (credits, expires_in)) in lots.iter().enumerate() {
            book.credit(credit(&format!("l{n}"), *credits, expires_in.map(t)), t(n as i64));
        }
        let now = t(5);
        let total: i64 = book.lots().iter().filter(|l| !l.is_expired(now)).map(|l| l.remaining).sum();
        let result = book.debit(debit(spend, "k"), now);
        prop_assert_eq!(result.is_ok(), spend <= total);
        if result.is_ok() {
            let mut ordered: Vec<&Lot> = book.lots().iter().filter(|l| !l.is_expired(now)).collect();
            ordered.sort_by(|a, b| burn_order(a, b));
            let mut seen_partial = false;
            for lot in ordered {
                if seen_partial {
                    prop_assert_eq!(lot.remaining, lot.credits, "a later lot was touched early");
                } else if lot.remaining > 0 {
                    seen_partial = true;
                }
            }
        }
    }
}

fn with_overdraft(limit: i64) -> Book {
    let mut book = book();
    book.account.settings.overdraft_limit = limit;
    book
}

#[test]
fn a_debit_may_take_the_balance_down_to_minus_the_overdraft_limit_and_no_further() {
    let mut book = with_overdraft(50);
    book.credit(credit("a", 30, None), t(0));
    assert_eq!(book.spendable(t(0)), 80);
    book.debit(debit(70, "d1"), t(1)).expect("into the overdraft");
    assert_eq!((book.account.balance, book.account.debt), (-40, 40));
    assert_eq!(book.available(t(1)), 0);
    assert_eq!(
        book.debit(debit(11, "d2"), t(2)),
        Err(PostingError::Insufficient {
            available: 10,
            asked: 11
        })
    );
    book.debit(debit(10, "d3"), t(3)).expect("to the limit");
    assert_eq!(book.account.balance, -50);
    assert_invariants(&book);
    // The next credit repays the debt first.
    book.credit(purchase("p", 80), t(4));
    assert_eq!((book.account.balance, book.account.debt), (30, 0));
    assert_invariants(&book);
}

#[test]
fn a_hold_reserves_into_the_overdraft_and_its_capture_turns_that_part_into_debt() {
    let mut book = with_overdraft(40);
    book.credit(credit("a", 20, None), t(0));
    let hold = |id: &str, credits: i64| Reservation {
        hold_id: id.into(),
        credits,
        expires_at: t(3600),
        reason: "job".into(),
        metadata: Metadata::new(),
    };
    book.reserve(hold("h1", 50), t(1)).expect("20 own + 30 overdraft");
    assert_eq!(
        book.spendable(t(1)),
        10,
        "the hold's overdraft part counts against the limit"
    );
    assert_eq!(
        book.reserve(hold("h2", 11), t(1)),
        Err(PostingError::Insufficient {
            available: 10,
            asked: 11
        })
    );
    assert_eq!(
        book.debit(debit(11, "d"), t(1)),
        Err(PostingError::Insufficient {
            available: 10,
            asked: 11
        })
    );
    let captured = book.capture("h1", 45, Metadata::new(), t(2)).expect("capture");
    assert_eq!(captured.posted.balance, -25);
    assert_eq!(book.account.debt, 25);
    assert_eq!(book.spendable(t(2)), 15);
    assert_invariants(&book);
}

proptest! {
    #[test]
    fn racing_debits_and_holds_never_take_the_balance_below_minus_the_limit(
        limit in 0_i64..200,
        opening in 0_i64..200,
        steps in proptest::collection::vec((0_u8..3, 1_i64..80), 1..40),
    ) {
        let mut book = with_overdraft(limit);
        if opening > 0 {
            book.credit(credit("open", opening, None), t(0));
        }
        let mut holds = Vec::new();
        for (n, (op, credits)) in steps.into_iter().enumerate() {
            let at = t(n as i64 + 1);
            match op {
                0 => { let _ = book.debit(debit(credits, &format!("d{n}")), at); }
                1 => {
                    let id = format!("h{n}");
                    let reservation = Reservation {
                        hold_id: id.clone(), credits, expires_at: t(100_000), reason: "job".into(),
                        metadata: Metadata::new(),
                    };
                    if book.reserve(reservation, at).is_ok() { holds.push((id, credits)); }
                }
                _ => if let Some((id, held)) = holds.pop() {
                    book.capture(&id, held, Metadata::new(), at).expect("capture a live hold");
                },
            }
            let reserved: i64 = holds.iter().map(|(_, c)| c).sum();
            prop_assert!(book.account.balance - reserved >= -limit, "balance {} held {reserved} limit {limit}", book.account.balance);
            assert_invariants(&book);
        }
    }
}
