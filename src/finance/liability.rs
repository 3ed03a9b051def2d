//! The liability report's arithmetic, pure: every move of every ledger entry up to the end of a
//! period goes into one per-currency accumulator, either the opening liability (before the
//! period) or one line of the period (sold, consumed, expired, clawed back, adjusted, rolled
//! over). The closing liability is the opening plus every lot move of the period, summed apart
//! from the lines, so `opening + sold − consumed − expired − clawed back − adjusted = closing`
//! is a check of the classification, not a definition.
//!
//! Credits without a currency are free (grants, trials, imports): their value is 0, so their
//! lines count credits only (granted = sold, used = consumed).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Flow, Period};
use crate::ledger::{book::LotMove, kinds::EntryKind};

/// Credits and the money they are worth (minor units of the group's currency). Summed in
/// i128: a million entries of i64 values cannot overflow it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Amount {
    pub credits: i128,
    pub value: i128,
}

impl Amount {
    fn add(&mut self, credits: i64, value: i64) {
        self.credits += i128::from(credits);
        self.value += i128::from(value);
    }

    /// Adds a taking (negative move) as a positive amount.
    fn take(&mut self, credits: i64, value: i64) {
        self.credits -= i128::from(credits);
        self.value -= i128::from(value);
    }

    fn minus(self, other: Self) -> Self {
        Self {
            credits: self.credits - other.credits,
            value: self.value - other.value,
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            credits: self.credits + other.credits,
            value: self.value + other.value,
        }
    }

    pub(crate) fn is_zero(self) -> bool {
        self == Self::default()
    }
}

/// One currency's figures for a period (or, with no currency, the free credits').
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Lines {
    /// What the lots held before the period: the liability at `from`.
    pub opening: Amount,
    /// Credits put into lots (purchases, top-ups, allowances, credits restored after a dispute
    /// or refund; grants and trials for free credits), by lot source; `debt` is what paid an
    /// overdraft at once (counted as consumed too).
    pub sold: BTreeMap<String, Amount>,
    /// Credits spent (consumption and captures): recognised revenue.
    pub consumed: Amount,
    /// Credits written off unspent at their lot's expiry (breakage), by lot source.
    pub expired: BTreeMap<String, Amount>,
    /// Credits taken back by refunds and disputes.
    pub clawed_back: Amount,
    /// Credits an adopting import took away (normally nothing).
    pub adjusted: Amount,
    /// Credits moved out of an allowance into its rollover lot: the same credits stay owed.
    pub rolled_over: Amount,
    /// Net of the rollover moves (0 unless a stored move is inconsistent).
    pub rollover_net: Amount,
    /// Every lot move of the period, summed apart from the lines.
    pub moved: Amount,
}

impl Lines {
    pub(crate) fn sold_total(&self) -> Amount {
        self.sold.values().fold(Amount::default(), |a, b| a.plus(*b))
    }

    pub(crate) fn expired_total(&self) -> Amount {
        self.expired.values().fold(Amount::default(), |a, b| a.plus(*b))
    }

    /// The liability at `to`.
    pub(crate) fn closing(&self) -> Amount {
        self.opening.plus(self.moved)
    }

    /// `opening + sold − consumed − expired − clawed back − adjusted (+ rollover net)`, to be
    /// compared with `closing`.
    pub(crate) fn expected_closing(&self) -> Amount {
        self.opening
            .plus(self.sold_total())
            .minus(self.consumed)
            .minus(self.expired_total())
            .minus(self.clawed_back)
            .minus(self.adjusted)
            .plus(self.rollover_net)
    }

    pub(crate) fn identity_holds(&self) -> bool {
        self.expected_closing() == self.closing()
    }
}

/// The liability report of a period, built entry by entry (in any order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Liability {
    pub period: Period,
    /// By currency; `None` holds the free credits.
    pub currencies: BTreeMap<Option<String>, Lines>,
    /// Entries read (all before `to`).
    pub entries_read: u64,
    /// Entries of the period.
    pub entries_in_period: u64,
    /// Entries that changed a balance but were written before entries kept their moves: their
    /// credits and value are in no figure above.
    pub unsplit_before: u64,
    pub unsplit_in_period: u64,
}

impl Liability {
    pub(crate) fn new(period: Period) -> Self {
        Self {
            period,
            ..Self::default()
        }
    }

    /// Whether the identity holds for every currency.
    pub(crate) fn holds(&self) -> bool {
        self.currencies.values().all(Lines::identity_holds)
    }

    /// Takes one entry into account; entries at or after `to` are ignored.
    pub(crate) fn add(&mut self, flow: &Flow) {
        if flow.created_at >= self.period.to {
            return;
        }
        self.entries_read += 1;
        let before = flow.created_at < self.period.from;
        if !before {
            self.entries_in_period += 1;
        }
        let Some(moves) = &flow.moves else {
            if flow.delta != 0 {
                if before {
                    self.unsplit_before += 1;
                } else {
                    self.unsplit_in_period += 1;
                }
            }
            return;
        };
        for mv in moves {
            // Looked up first: a clone of the key only for a currency not seen yet.
            if !self.currencies.contains_key(&mv.currency) {
                self.currencies.insert(mv.currency.clone(), Lines::default());
            }
            let Some(lines) = self.currencies.get_mut(&mv.currency) else {
                continue;
            };
            if before {
                if mv.lot_id.is_some() {
                    lines.opening.add(mv.credits, mv.value);
                }
            } else {
                classify(lines, flow.kind, mv);
            }
        }
    }
}

/// Puts one move of the period into its line.
fn classify(lines: &mut Lines, kind: EntryKind, mv: &LotMove) {
    let source = mv.source.as_ref().map_or("debt", |s| s.as_str());
    if mv.lot_id.is_none() {
        // A credit that paid debt: sold and, since the debt was spent credit, consumed at once.
        // A move into debt (an overdraft, a clawback past the lots) moves no lot: no value.
        if mv.credits > 0 {
            by_source(&mut lines.sold, source, |a| a.add(mv.credits, mv.value));
            lines.consumed.add(mv.credits, mv.value);
        }
        return;
    }
    lines.moved.add(mv.credits, mv.value);
    if kind == EntryKind::Rollover {
        lines.rollover_net.add(mv.credits, mv.value);
        if mv.credits < 0 {
            lines.rolled_over.take(mv.credits, mv.value);
        }
        return;
    }
    if mv.credits >= 0 {
        by_source(&mut lines.sold, source, |a| a.add(mv.credits, mv.value));
        return;
    }
    match kind {
        EntryKind::Consumption => lines.consumed.take(mv.credits, mv.value),
        EntryKind::Expiry => by_source(&mut lines.expired, source, |a| a.take(mv.credits, mv.value)),
        EntryKind::Refund | EntryKind::Dispute => lines.clawed_back.take(mv.credits, mv.value),
        EntryKind::Import
        | EntryKind::Purchase
        | EntryKind::Grant
        | EntryKind::Trial
        | EntryKind::Allowance
        | EntryKind::Rollover => lines.adjusted.take(mv.credits, mv.value),
    }
}

/// Changes the line of one source, made (its key allocated) the first time it is named.
fn by_source(map: &mut BTreeMap<String, Amount>, source: &str, change: impl FnOnce(&mut Amount)) {
    if let Some(amount) = map.get_mut(source) {
        change(amount);
        return;
    }
    let mut amount = Amount::default();
    change(&mut amount);
    map.insert(source.to_owned(), amount);
}

/// A period as the reports print it: `[from, to)`.
pub(crate) fn describe(period: &Period) -> String {
    format!("[{}, {})", stamp(period.from), stamp(period.to))
}

/// A time as the reports print it: RFC 3339, UTC, to the microsecond when it has one.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests;
