//! The event rules on books: one event per entry kind, alerts once per crossing, a top-up per
//! crossing of its threshold.

use std::collections::HashMap;

use chrono::{Duration, TimeZone};

use super::*;
use crate::ledger::{
    book::{AccountState, Credit, Debit, LotTerms, LotValue, Metadata},
    kinds::{EntryKind, LotSource},
};

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0)
        .single()
        .expect("valid time")
}

/// A stored account (its level known) with `credits` in one lot.
fn book_with(credits: i64, threshold: Option<i64>) -> Book {
    let mut account = AccountState::new("acct", "a@example.com", false, t(0));
    account.settings.low_balance_threshold = threshold;
    account.last_available = Some(0);
    let mut book = Book::load(account, Vec::new(), Vec::new());
    if credits > 0 {
        book.credit(grant("opening", credits, None), t(0));
    }
    // As the next batch loads it.
    reload(&book)
}

fn reload(book: &Book) -> Book {
    Book::load(book.account.clone(), book.lots().to_vec(), Vec::new())
}

fn grant(id: &str, credits: i64, expires_at: Option<DateTime<Utc>>) -> Credit {
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

fn debit(credits: i64, reference: &str) -> Debit {
    Debit {
        credits,
        reason: "usage".into(),
        reference: reference.into(),
        metadata: Metadata::new(),
    }
}

fn ids(book: &Book) -> EntryIds {
    let map: HashMap<_, _> = book
        .entries
        .iter()
        .enumerate()
        .map(|(n, e)| ((e.account_id.clone(), e.kind, e.reference.clone()), n as i64 + 1))
        .collect();
    EntryIds::new(map)
}

fn kinds(book: &Book, policy: OutboxPolicy) -> Vec<EventType> {
    let outbox = plan([book], policy, &ids(book), t(100)).expect("plan");
    outbox.events.iter().map(|e| e.kind).collect()
}

const ALERTS: OutboxPolicy = OutboxPolicy {
    low_balance_threshold: 100,
    consumed_events: false,
};

#[test]
fn debits_across_the_threshold_alert_once_per_crossing() {
    let mut book = book_with(300, None);
    for n in 0..5 {
        book.debit(debit(50, &format!("d{n}")), t(1)).expect("debit");
    }
    // 300 → 50: one crossing, however many debits were below the line.
    assert_eq!(kinds(&book, ALERTS), [EventType::BalanceLow]);
    let mut book = reload(&book);
    book.debit(debit(30, "d5"), t(2)).expect("debit");
    assert_eq!(kinds(&book, ALERTS), [], "20 left: still low, not depleted");
    book.debit(debit(20, "d6"), t(3)).expect("debit");
    assert_eq!(kinds(&book, ALERTS), [EventType::BalanceDepleted]);
    let mut book = reload(&book);
    book.credit(grant("back", 150, None), t(4));
    assert_eq!(
        kinds(&book, ALERTS),
        [EventType::CreditsGranted, EventType::BalanceRecovered]
    );
}

#[test]
fn one_debit_from_above_to_zero_says_low_and_depleted() {
    let mut book = book_with(120, None);
    book.debit(debit(120, "all"), t(1)).expect("debit");
    assert_eq!(
        kinds(&book, ALERTS),
        [EventType::BalanceLow, EventType::BalanceDepleted]
    );
}

#[test]
fn a_threshold_of_zero_turns_alerts_off_and_the_account_setting_wins() {
    let mut book = book_with(300, Some(0));
    book.debit(debit(300, "all"), t(1)).expect("debit");
    assert_eq!(kinds(&book, ALERTS), []);
    let mut book = book_with(300, Some(250));
    book.debit(debit(60, "d"), t(1)).expect("debit");
    assert_eq!(kinds(&book, OutboxPolicy::default()), [EventType::BalanceLow]);
}

#[test]
fn an_expiring_lot_is_a_change_like_any_other() {
    let mut book = book_with(50, None);
    book.credit(grant("soon", 100, Some(t(10))), t(1));
    let mut book = reload(&book);
    book.settle(t(20));
    let outbox = plan([&book], ALERTS, &ids(&book), t(20)).expect("plan");
    let events: Vec<(EventType, i64)> = outbox
        .events
        .iter()
        .map(|e| (e.kind, e.available_after))
        .collect();
    assert_eq!(events, [(EventType::LotExpired, 50), (EventType::BalanceLow, 50)]);
    assert_eq!(outbox.events[0].payload["credits"], 100);
    assert_eq!(outbox.events[0].payload["lot_id"], "soon");
}

#[test]
fn consumption_events_are_written_only_when_asked() {
    let mut book = book_with(300, None);
    book.debit(debit(10, "d"), t(1)).expect("debit");
    assert_eq!(kinds(&book, ALERTS), []);
    let on = OutboxPolicy {
        consumed_events: true,
        ..ALERTS
    };
    assert_eq!(kinds(&book, on), [EventType::CreditsConsumed]);
}

#[test]
fn a_new_account_sets_its_level_without_an_alert() {
    let mut book = Book::open(AccountState::new("new", "n@example.com", true, t(0)));
    book.credit(grant("trial", 20, None), t(0));
    assert_eq!(kinds(&book, ALERTS), [EventType::CreditsGranted]);
}

fn with_top_up(book: &mut Book, card: bool) {
    let settings = &mut book.account.settings;
    settings.auto_top_up.enabled = true;
    settings.auto_top_up.threshold = 200;
    settings.auto_top_up.pack_id = Some("pack_small".into());
    settings.auto_top_up.monthly_limit = 10_000;
    settings.payment_method_id = card.then(|| "pm_1".to_owned());
}

#[test]
fn falling_below_the_top_up_threshold_starts_one_attempt_per_crossing() {
    let mut book = book_with(300, None);
    with_top_up(&mut book, true);
    for n in 0..10 {
        book.debit(debit(25, &format!("d{n}")), t(1)).expect("debit");
    }
    let outbox = plan([&book], ALERTS, &ids(&book), t(1)).expect("plan");
    assert_eq!(outbox.top_ups.len(), 1);
    assert_eq!(outbox.top_ups[0].pack_id, "pack_small");
    assert_eq!(outbox.top_ups[0].state, crate::ledger::kinds::TopUpState::Pending);

    // Already below: further debits start nothing.
    let mut book = reload(&book);
    book.debit(debit(10, "more"), t(2)).expect("debit");
    assert!(
        plan([&book], ALERTS, &ids(&book), t(2))
            .expect("plan")
            .top_ups
            .is_empty()
    );
}

#[test]
fn no_top_up_without_a_saved_card_or_while_paused() {
    let mut book = book_with(300, None);
    with_top_up(&mut book, false);
    book.debit(debit(150, "d"), t(1)).expect("debit");
    assert!(
        plan([&book], ALERTS, &ids(&book), t(1))
            .expect("plan")
            .top_ups
            .is_empty()
    );

    let mut book = book_with(300, None);
    with_top_up(&mut book, true);
    book.account.settings.auto_top_up.paused = Some("requires_action".into());
    book.debit(debit(150, "d"), t(1)).expect("debit");
    assert!(
        plan([&book], ALERTS, &ids(&book), t(1))
            .expect("plan")
            .top_ups
            .is_empty()
    );
}

#[test]
fn a_hold_running_out_is_an_event_and_can_recover_the_balance() {
    let mut book = book_with(150, None);
    book.reserve(
        crate::ledger::book::Reservation {
            hold_id: "h".into(),
            credits: 100,
            expires_at: t(10),
            reason: "job".into(),
            metadata: Metadata::new(),
        },
        t(1),
    )
    .expect("reserve");
    let mut book = reload_with_holds(&book);
    book.settle(t(11));
    assert_eq!(
        kinds(&book, ALERTS),
        [EventType::HoldExpired, EventType::BalanceRecovered]
    );
    let _ = Duration::zero();
}

fn reload_with_holds(book: &Book) -> Book {
    let hold = book.hold("h").cloned().into_iter().collect();
    Book::load(book.account.clone(), book.lots().to_vec(), hold)
}
