//! The book as it stood at an earlier moment, rebuilt from the ledger: today's lots minus what
//! the entries written since moved (every entry names its lots), and the holds that were live
//! then. Nothing is read from a snapshot that could drift from the entries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Hold, Lot, LotMove};

/// An account's lots and holds at `at`.
#[derive(Debug, Clone)]
pub(crate) struct Then {
    pub at: DateTime<Utc>,
    /// The lots that existed then, with what they had left and what holds reserved.
    pub lots: Vec<Lot>,
    /// Credits reserved by holds live then.
    pub held: i64,
}

impl Then {
    /// `lots`: the account's lots now (spent ones too); `later`: the moves of every entry
    /// written after `at`; `holds`: holds created up to `at` (the live ones are picked here).
    pub(crate) fn rewind(lots: Vec<Lot>, later: &[LotMove], holds: &[Hold], at: DateTime<Utc>) -> Self {
        let mut since: HashMap<&str, (i64, i64)> = HashMap::new();
        for moved in later {
            if let Some(lot_id) = moved.lot_id.as_deref() {
                let sum = since.entry(lot_id).or_default();
                sum.0 += moved.credits;
                sum.1 += moved.value;
            }
        }
        let live: Vec<&Hold> = holds
            .iter()
            .filter(|h| h.created_at <= at && h.expires_at > at && h.closed_at.is_none_or(|c| c > at))
            .collect();
        let mut reserved: HashMap<&str, i64> = HashMap::new();
        for hold in &live {
            for allocation in &hold.allocations {
                *reserved.entry(allocation.lot_id.as_str()).or_default() += allocation.credits;
            }
        }
        let lots = lots
            .into_iter()
            .filter(|lot| lot.created_at <= at)
            .map(|mut lot| {
                let (credits, value) = since.get(lot.id.as_str()).copied().unwrap_or_default();
                lot.remaining -= credits;
                lot.value_remaining -= value;
                lot.held = reserved.get(lot.id.as_str()).copied().unwrap_or_default();
                lot
            })
            .collect();
        Self {
            at,
            lots,
            held: live.iter().map(|h| h.credits).sum(),
        }
    }

    /// Credits past their lot's expiry then, not reserved and not due to roll over: what a
    /// balance read at `at` did not count.
    pub(crate) fn dead(&self) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.is_expired(self.at))
            .map(|l| {
                let free = (l.remaining - l.held).max(0);
                let rolls = l
                    .rollover
                    .as_ref()
                    .filter(|r| r.until > self.at && l.held == 0)
                    .map_or(0, |r| free.min(r.cap));
                free - rolls
            })
            .sum()
    }

    /// The soonest expiry after `at` among lots with free credits, and how many expire then.
    pub(crate) fn next_expiry(&self) -> (Option<DateTime<Utc>>, i64) {
        let free = |l: &&Lot| !l.is_expired(self.at) && l.remaining > l.held;
        let next = self.lots.iter().filter(free).filter_map(|l| l.expires_at).min();
        let expiring = self
            .lots
            .iter()
            .filter(free)
            .filter(|l| next.is_some() && l.expires_at == next)
            .map(|l| l.remaining - l.held)
            .sum();
        (next, expiring)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::ledger::{
        book::{AccountState, Book, Credit, Debit, LotTerms, LotValue, Metadata, Reservation},
        kinds::{EntryKind, LotSource},
    };

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0)
            .single()
            .expect("valid time")
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

    type Step = dyn Fn(&mut Book, DateTime<Utc>);

    #[test]
    fn rewinding_gives_back_every_earlier_state() {
        let mut book = Book::load(
            AccountState::new("a", "a@example.com", false, t(0)),
            Vec::new(),
            Vec::new(),
        );
        let mut seen = Vec::new();
        let mut holds = Vec::new();
        let steps: Vec<Box<Step>> = vec![
            Box::new(|b, now| {
                b.credit(grant("g1", 100, Some(t(50))), now);
            }),
            Box::new(|b, now| {
                b.credit(grant("g2", 40, None), now);
            }),
            Box::new(|b, now| {
                let _ = b.debit(
                    Debit {
                        credits: 30,
                        reason: "call".into(),
                        reference: "c1".into(),
                        metadata: Metadata::new(),
                    },
                    now,
                );
            }),
            Box::new(|b, now| {
                let _ = b.reserve(
                    Reservation {
                        hold_id: "h1".into(),
                        credits: 20,
                        expires_at: now + Duration::seconds(100),
                        reason: "call".into(),
                        metadata: Metadata::new(),
                    },
                    now,
                );
            }),
            Box::new(|b, now| {
                let _ = b.capture("h1", 5, Metadata::new(), now);
            }),
            Box::new(|b, now| b.settle(now)),
        ];
        for (n, step) in steps.iter().enumerate() {
            let now = t(i64::try_from(n).unwrap_or_default() * 20 + 1);
            step(&mut book, now);
            if let Some(hold) = book.hold("h1") {
                holds = vec![hold.clone()];
            }
            let balance = book.account.balance - book.dead(now);
            seen.push((now, book.entries.len(), balance, book.held(now)));
        }
        for (at, entries, balance, held) in seen {
            let later: Vec<LotMove> = book.entries[entries..]
                .iter()
                .flat_map(|e| e.moves.clone())
                .collect();
            let then = Then::rewind(book.lots().to_vec(), &later, &holds, at);
            let balance_then: i64 = book.entries[..entries].iter().map(|e| e.delta).sum();
            assert_eq!(balance_then - then.dead(), balance, "balance at {at}");
            assert_eq!(then.held, held, "held at {at}");
        }
    }
}
