use chrono::{DateTime, Utc};

use super::*;
use crate::ledger::kinds::LotSource;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn period() -> Period {
    Period {
        from: at(100),
        to: at(200),
    }
}

fn lot(id: &str, credits: i64, value: i64, source: LotSource, currency: Option<&str>) -> LotMove {
    LotMove {
        lot_id: Some(id.to_owned()),
        credits,
        value,
        source: Some(source),
        currency: currency.map(str::to_owned),
    }
}

fn debt(credits: i64, value: i64, currency: Option<&str>) -> LotMove {
    LotMove {
        lot_id: None,
        credits,
        value,
        source: None,
        currency: currency.map(str::to_owned),
    }
}

fn flow(kind: EntryKind, second: i64, moves: Vec<LotMove>) -> Flow {
    Flow {
        kind,
        created_at: at(second),
        delta: moves.iter().map(|m| m.credits).sum(),
        moves: Some(moves),
    }
}

const USD: Option<&str> = Some("usd");

fn usd(report: &Liability) -> &Lines {
    report.currencies.get(&Some("usd".to_owned())).expect("usd lines")
}

fn amount(credits: i128, value: i128) -> Amount {
    Amount { credits, value }
}

#[test]
fn a_purchase_consumed_expired_and_refunded_gives_the_exact_lines() {
    let mut report = Liability::new(period());
    for f in [
        // Before the period: 1000 credits bought for 1500, 300 spent.
        flow(
            EntryKind::Purchase,
            10,
            vec![lot("p1", 1000, 1500, LotSource::Purchase, USD)],
        ),
        flow(
            EntryKind::Consumption,
            20,
            vec![lot("p1", -300, -450, LotSource::Purchase, USD)],
        ),
        // In it: a free grant, a second purchase, a refund, spending and an expiry.
        flow(
            EntryKind::Grant,
            110,
            vec![lot("g", 100, 0, LotSource::Grant, None)],
        ),
        flow(
            EntryKind::Purchase,
            120,
            vec![lot("p2", 1000, 1500, LotSource::Purchase, USD)],
        ),
        flow(
            EntryKind::Refund,
            130,
            vec![lot("p1", -200, -300, LotSource::Purchase, USD)],
        ),
        flow(
            EntryKind::Consumption,
            140,
            vec![lot("p1", -300, -450, LotSource::Purchase, USD)],
        ),
        flow(
            EntryKind::Expiry,
            150,
            vec![lot("p1", -200, -300, LotSource::Purchase, USD)],
        ),
        flow(
            EntryKind::Consumption,
            160,
            vec![lot("g", -50, 0, LotSource::Grant, None)],
        ),
        // At the period's end: not in it.
        flow(
            EntryKind::Consumption,
            200,
            vec![lot("p2", -10, -15, LotSource::Purchase, USD)],
        ),
    ] {
        report.add(&f);
    }
    let lines = usd(&report);
    assert_eq!(lines.opening, amount(700, 1050));
    assert_eq!(lines.sold_total(), amount(1000, 1500));
    assert_eq!(lines.consumed, amount(300, 450));
    assert_eq!(lines.expired.get("purchase"), Some(&amount(200, 300)));
    assert_eq!(lines.clawed_back, amount(200, 300));
    assert_eq!(lines.closing(), amount(1000, 1500));
    assert!(lines.identity_holds());
    let free = report.currencies.get(&None).expect("free lines");
    assert_eq!(
        (free.opening, free.sold_total(), free.consumed, free.closing()),
        (amount(0, 0), amount(100, 0), amount(50, 0), amount(50, 0))
    );
    assert!(report.holds());
    assert_eq!((report.entries_read, report.entries_in_period), (8, 6));
}

#[test]
fn a_credit_that_pays_debt_is_sold_and_consumed_at_once_and_outside_the_liability() {
    let mut report = Liability::new(period());
    report.add(&flow(EntryKind::Consumption, 110, vec![debt(-40, 0, None)]));
    report.add(&flow(
        EntryKind::Purchase,
        120,
        vec![lot("p", 60, 90, LotSource::Purchase, USD), debt(40, 60, USD)],
    ));
    let lines = usd(&report);
    assert_eq!(lines.sold.get("debt"), Some(&amount(40, 60)));
    assert_eq!(lines.sold_total(), amount(100, 150));
    assert_eq!(lines.consumed, amount(40, 60));
    assert_eq!(lines.closing(), amount(60, 90));
    assert!(report.holds());
}

#[test]
fn a_rollover_moves_value_without_selling_or_breaking_anything() {
    let mut report = Liability::new(period());
    report.add(&flow(
        EntryKind::Allowance,
        50,
        vec![lot("a", 100, 1000, LotSource::Allowance, USD)],
    ));
    report.add(&flow(
        EntryKind::Rollover,
        150,
        vec![
            lot("a", -30, -300, LotSource::Allowance, USD),
            lot("r", 30, 300, LotSource::Rollover, USD),
        ],
    ));
    report.add(&flow(
        EntryKind::Expiry,
        150,
        vec![lot("a", -70, -700, LotSource::Allowance, USD)],
    ));
    let lines = usd(&report);
    assert_eq!(lines.sold_total(), amount(0, 0));
    assert_eq!(lines.rolled_over, amount(30, 300));
    assert_eq!(lines.expired.get("allowance"), Some(&amount(70, 700)));
    assert_eq!(lines.closing(), amount(30, 300));
    assert!(report.holds());
}

#[test]
fn entries_without_moves_are_counted_not_guessed() {
    let mut report = Liability::new(period());
    let legacy = |second| Flow {
        kind: EntryKind::Purchase,
        created_at: at(second),
        delta: 1000,
        moves: None,
    };
    report.add(&legacy(10));
    report.add(&legacy(150));
    report.add(&Flow {
        delta: 0,
        ..legacy(160)
    });
    assert_eq!((report.unsplit_before, report.unsplit_in_period), (1, 1));
    assert!(report.currencies.is_empty());
}

#[test]
fn a_one_sided_rollover_shows_as_its_net_in_the_identity() {
    let mut report = Liability::new(period());
    report.add(&flow(
        EntryKind::Rollover,
        150,
        vec![lot("r", 30, 300, LotSource::Rollover, USD)],
    ));
    // The rollover's net is in the identity: it still holds, but the net shows.
    assert!(report.holds());
    assert_eq!(usd(&report).rollover_net, amount(30, 300));
}

#[test]
fn the_identity_holds_after_any_sequence_of_moves() {
    let kinds = EntryKind::ALL;
    let sources = LotSource::ALL;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..200 {
        let mut report = Liability::new(period());
        for _ in 0..50 {
            let kind = kinds[next(kinds.len() as u64) as usize];
            let moves = (0..1 + next(3))
                .map(|_| {
                    let credits = next(2000) as i64 - 1000;
                    let value = credits * (1 + next(3) as i64);
                    let currency = [None, USD, Some("eur")][next(3) as usize];
                    if next(5) == 0 {
                        debt(credits, value.abs(), currency)
                    } else {
                        let source = sources[next(sources.len() as u64) as usize];
                        lot("x", credits, value, source, currency)
                    }
                })
                .collect();
            report.add(&flow(kind, next(250) as i64, moves));
        }
        for lines in report.currencies.values() {
            assert_eq!(lines.expected_closing(), lines.closing(), "{lines:?}");
        }
    }
}
