//! Posting rules, pure and in memory: how each change moves one account's book (its balance,
//! debt, lots and holds) and which ledger entries it appends. The writer loads the books a batch
//! touches, applies every command here in order and stores what changed; reads `settle` a loaded
//! snapshot to see the book as of now. Nothing here knows about SQL or transports.
//!
//! The rules, in one place:
//! - Every credit is a lot. A credit pays the account's debt first; the rest stays in its lot.
//! - Debits (consumption, captures) take from unexpired lots in burn order: soonest expiry
//!   first, lots that never expire last, oldest first on ties. They never go below what is
//!   available: the free (unheld) credits of unexpired lots, minus debt.
//! - A hold reserves free credits from lots in burn order. Reserved credits do not expire while
//!   held; a lot past its expiry expires (one `expiry` entry) once nothing holds it any more.
//! - An import opens an account with its balance as one lot, or (adopting) moves a stored one
//!   to the imported balance (`import`).
//! - A clawback (refund, dispute) takes from its purchase's own lots first, then the others in
//!   burn order; what it cannot find becomes debt, so the balance may go below zero.
//! - Invariant: `balance = Σ lots.remaining - debt`, and `balance` is the sum of the entries.

mod as_of;
mod clawback;
mod expiry;
mod opening;
mod parts;
mod top_up;

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use as_of::Then;
use chrono::{DateTime, Utc};
pub(crate) use opening::{Differences, Imported};
pub(crate) use parts::*;
pub(crate) use top_up::TopUpStep;

use super::kinds::{EntryKind, EventType, HoldStatus};

/// One account's balance, debt, live lots and the holds a batch needs, with what changed.
#[derive(Debug, Clone)]
pub(crate) struct Book {
    pub account: AccountState,
    /// Lots with credits left (and lots opened here), in burn order.
    lots: Vec<Lot>,
    holds: BTreeMap<String, Hold>,
    /// The top-up attempts the batch names.
    top_ups: BTreeMap<String, TopUpAttempt>,
    changed_top_ups: BTreeSet<String>,
    /// Attempts started here (after a decline, or when Stripe showed none was charged).
    new_top_ups: Vec<TopUpAttempt>,
    /// Entries appended since the book was loaded.
    pub entries: Vec<Entry>,
    /// What happened since the book was loaded, in order (entries, holds running out, a
    /// command's own events): what the batch's account events are made of.
    pub happenings: Vec<Happening>,
    account_changed: bool,
    settings_changed: bool,
    new_lots: BTreeSet<String>,
    changed_lots: BTreeSet<String>,
    new_holds: BTreeSet<String>,
    changed_holds: BTreeSet<String>,
    /// True when the account row itself is new.
    pub opened: bool,
    /// The available credits after the account's last change before this batch (`None`:
    /// not known): what the batch's first change is compared with.
    pub available_before: Option<i64>,
}

/// What marks a capture's entry reference; ConsumeCredits refuses keys that begin with it.
pub(crate) const CAPTURE_PREFIX: &str = "hold:";

/// The reference of a capture's entry: the hold, marked, so no caller key can collide.
pub(crate) fn capture_reference(hold_id: &str) -> String {
    format!("{CAPTURE_PREFIX}{hold_id}")
}

impl Book {
    /// A book over stored state: the account, its lots with credits left, and the holds that
    /// matter (the ones commands name and the active ones).
    pub(crate) fn load(account: AccountState, mut lots: Vec<Lot>, holds: Vec<Hold>) -> Self {
        lots.sort_by(burn_order);
        Self {
            available_before: account.last_available,
            account,
            lots,
            holds: holds.into_iter().map(|h| (h.id.clone(), h)).collect(),
            top_ups: BTreeMap::new(),
            changed_top_ups: BTreeSet::new(),
            new_top_ups: Vec::new(),
            entries: Vec::new(),
            happenings: Vec::new(),
            account_changed: false,
            settings_changed: false,
            new_lots: BTreeSet::new(),
            changed_lots: BTreeSet::new(),
            new_holds: BTreeSet::new(),
            changed_holds: BTreeSet::new(),
            opened: false,
        }
    }

    /// A book for an account created in this batch.
    pub(crate) fn open(account: AccountState) -> Self {
        let mut book = Self::load(account, Vec::new(), Vec::new());
        book.opened = true;
        book.account_changed = true;
        book
    }

    /// Follows the buyer's new email (PurchaseCredits); the caller checked it is free.
    /// Whether the email was another.
    pub(crate) fn change_email(&mut self, email: &str) -> bool {
        let changed = self.account.email != email;
        if changed {
            self.account.email = email.to_owned();
            self.account_changed = true;
        }
        changed
    }

    pub(crate) fn lots(&self) -> &[Lot] {
        &self.lots
    }

    pub(crate) fn hold(&self, id: &str) -> Option<&Hold> {
        self.holds.get(id)
    }

    /// Credits reserved by live holds.
    pub(crate) fn held(&self, now: DateTime<Utc>) -> i64 {
        self.holds
            .values()
            .filter(|h| h.is_live(now))
            .map(|h| h.credits)
            .sum()
    }

    /// The account's own credits that can be spent or reserved now: never below zero, even in
    /// debt. A hold reserving into the overdraft takes from this first.
    pub(crate) fn available(&self, now: DateTime<Utc>) -> i64 {
        (self.unreserved(now)).max(0)
    }

    /// What a debit or a hold may take now: the available credits plus what the overdraft
    /// limit still allows below zero.
    pub(crate) fn spendable(&self, now: DateTime<Utc>) -> i64 {
        (self.unreserved(now) + self.account.settings.overdraft_limit).max(0)
    }

    /// Free credits of unexpired lots, minus debt and what holds reserve beyond the lots.
    fn unreserved(&self, now: DateTime<Utc>) -> i64 {
        let free: i64 = self
            .lots
            .iter()
            .filter(|l| !l.is_expired(now))
            .map(Lot::free)
            .sum();
        let overdrawn: i64 = self
            .holds
            .values()
            .filter(|h| h.status == HoldStatus::Active)
            .map(Hold::overdraft)
            .sum();
        free - self.account.debt - overdrawn
    }

    /// Records a command's own event (an auto top-up's outcome), in order with the rest.
    pub(crate) fn signal(&mut self, kind: EventType, payload: serde_json::Value, now: DateTime<Utc>) {
        let level = self.account.last_available;
        self.happened(What::Signal { kind, payload }, now);
        // A signal moves no balance: an account without a level yet still has none.
        if level.is_none() {
            self.account.last_available = None;
        }
    }

    /// Changes the account's settings (balance alerts, auto top-up, overdraft, saved card).
    pub(crate) fn change_settings(&mut self, change: impl FnOnce(&mut AccountSettings)) {
        let before = self.account.settings.clone();
        change(&mut self.account.settings);
        if self.account.settings != before {
            self.settings_changed = true;
            self.account_changed = true;
        }
    }

    fn happened(&mut self, what: What, now: DateTime<Utc>) {
        let available = self.available(now);
        self.account.last_available = Some(available);
        let happening = Happening {
            what,
            balance_after: self.account.balance,
            available_after: available,
        };
        self.happenings.push(happening);
        // The next batch compares its changes with this.
        self.account_changed = true;
    }

    /// Credits past their lot's expiry that only wait for their hold to end (not spendable,
    /// not yet written off). Readers subtract them from the balance.
    pub(crate) fn dead(&self, now: DateTime<Utc>) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.is_expired(now))
            .map(Lot::free)
            .sum()
    }

    /// Adds credits: pays the debt first, keeps the rest in a new lot.
    pub(crate) fn credit(&mut self, credit: Credit, now: DateTime<Utc>) -> Posted {
        self.settle(now);
        let paid = credit.credits.min(self.account.debt).max(0);
        self.account.debt -= paid;
        let remaining = credit.credits - paid;
        let value = credit.lot.value.minor;
        let kept = if paid == 0 {
            value
        } else {
            share(value, remaining, credit.credits)
        };
        let lot = Lot {
            id: credit.lot.id.clone(),
            account_id: self.account.id.clone(),
            source: credit.lot.source,
            reference: credit.lot.reference,
            credits: credit.credits,
            remaining,
            held: 0,
            expires_at: credit.lot.expires_at,
            created_at: now,
            value_remaining: kept,
            expired: 0,
            rollover: credit.lot.rollover,
            value: credit.lot.value,
        };
        let mut moves = vec![lot.opening()];
        if paid > 0 {
            moves.push(LotMove::debt(paid, value - kept, lot.value.currency.clone()));
        }
        self.insert_lot(lot);
        if credit.ends_trial {
            self.account.is_trial_user = false;
        }
        let entry = self.append(
            credit.kind,
            credit.credits,
            &credit.reason,
            &credit.reference,
            credit.metadata,
            Some(credit.lot.id.clone()),
            moves,
            now,
        );
        Posted {
            entry,
            lot_id: Some(credit.lot.id),
            balance: self.account.balance,
        }
    }

    fn insert_lot(&mut self, lot: Lot) {
        self.new_lots.insert(lot.id.clone());
        let position = self
            .lots
            .binary_search_by(|l| burn_order(l, &lot))
            .unwrap_or_else(|p| p);
        self.lots.insert(position, lot);
    }

    /// Spends credits, never below what is spendable: the free credits, then (up to the
    /// overdraft limit) debt.
    pub(crate) fn debit(&mut self, debit: Debit, now: DateTime<Utc>) -> Result<Posted, PostingError> {
        self.settle(now);
        let spendable = self.spendable(now);
        if debit.credits > spendable {
            return Err(PostingError::Insufficient {
                available: spendable,
                asked: debit.credits,
            });
        }
        let mut moves = Vec::new();
        let overdrawn = self.take_free(debit.credits, now, |_| true, &mut moves);
        if overdrawn > 0 {
            self.account.debt += overdrawn;
            moves.push(LotMove::debt(-overdrawn, 0, None));
        }
        let entry = self.append(
            EntryKind::Consumption,
            -debit.credits,
            &debit.reason,
            &debit.reference,
            debit.metadata,
            None,
            moves,
            now,
        );
        Ok(Posted {
            entry,
            lot_id: None,
            balance: self.account.balance,
        })
    }

    /// Reserves credits in a new hold: free credits of lots in burn order, the rest (up to the
    /// overdraft limit) against the overdraft.
    pub(crate) fn reserve(
        &mut self,
        reservation: Reservation,
        now: DateTime<Utc>,
    ) -> Result<(), PostingError> {
        self.settle(now);
        let spendable = self.spendable(now);
        if reservation.credits > spendable {
            return Err(PostingError::Insufficient {
                available: spendable,
                asked: reservation.credits,
            });
        }
        let mut left = reservation.credits;
        let mut allocations = Vec::new();
        let mut touched = Vec::new();
        for lot in self.lots.iter_mut().filter(|l| !l.is_expired(now)) {
            if left == 0 {
                break;
            }
            let take = lot.free().min(left);
            if take > 0 {
                lot.held += take;
                left -= take;
                allocations.push(Allocation {
                    lot_id: lot.id.clone(),
                    credits: take,
                });
                touched.push(lot.id.clone());
            }
        }
        self.mark_lots(touched);
        let hold = Hold {
            id: reservation.hold_id.clone(),
            account_id: self.account.id.clone(),
            credits: reservation.credits,
            status: HoldStatus::Active,
            expires_at: reservation.expires_at,
            allocations,
            reason: reservation.reason,
            metadata: reservation.metadata,
            captured_credits: None,
            created_at: now,
            closed_at: None,
        };
        self.new_holds.insert(hold.id.clone());
        self.holds.insert(hold.id.clone(), hold);
        self.happened(What::Reserved, now);
        Ok(())
    }

    /// Debits `credits` of a live hold (from the lots it reserved, in order) and releases the
    /// rest.
    pub(crate) fn capture(
        &mut self,
        hold_id: &str,
        credits: i64,
        metadata: Metadata,
        now: DateTime<Utc>,
    ) -> Result<Captured, PostingError> {
        self.settle(now);
        let hold = self.holds.get(hold_id).ok_or(PostingError::HoldNotFound)?;
        if hold.status != HoldStatus::Active {
            return Err(PostingError::HoldClosed(hold.status));
        }
        if credits > hold.credits {
            return Err(PostingError::OverCapture {
                held: hold.credits,
                asked: credits,
            });
        }
        let (reason, mut entry_metadata, allocations) = (
            hold.reason.clone(),
            hold.metadata.clone(),
            hold.allocations.clone(),
        );
        let mut left = credits;
        let mut moves = Vec::new();
        for allocation in &allocations {
            let take = allocation.credits.min(left);
            left -= take;
            self.set_lot(&allocation.lot_id, |lot| {
                lot.held -= allocation.credits;
                if take > 0 {
                    moves.push(lot.take(take));
                }
            });
        }
        // What the hold reserved against the overdraft becomes debt.
        if left > 0 {
            self.account.debt += left;
            moves.push(LotMove::debt(-left, 0, None));
        }
        self.set_hold(hold_id, |hold| {
            hold.status = HoldStatus::Captured;
            hold.captured_credits = Some(credits);
            hold.closed_at = Some(now);
        });
        entry_metadata.extend(metadata);
        let entry = self.append(
            EntryKind::Consumption,
            -credits,
            &reason,
            &capture_reference(hold_id),
            entry_metadata,
            None,
            moves,
            now,
        );
        // Lots past their expiry that only this hold kept alive expire now.
        self.settle(now);
        Ok(Captured {
            posted: Posted {
                entry,
                lot_id: None,
                balance: self.account.balance,
            },
            released: self.holds.get(hold_id).map_or(0, |h| h.credits - credits),
        })
    }

    /// Ends a live hold without a debit. False when it had already expired (nothing to do).
    pub(crate) fn release(&mut self, hold_id: &str, now: DateTime<Utc>) -> Result<bool, PostingError> {
        self.settle(now);
        let hold = self.holds.get(hold_id).ok_or(PostingError::HoldNotFound)?;
        match hold.status {
            HoldStatus::Active => {}
            HoldStatus::Released | HoldStatus::Expired => return Ok(false),
            HoldStatus::Captured => return Err(PostingError::HoldClosed(HoldStatus::Captured)),
        }
        self.close_hold(hold_id, HoldStatus::Released, now);
        self.happened(What::Reserved, now);
        self.settle(now);
        Ok(true)
    }

    /// Everything to store.
    pub(crate) fn changes(&self) -> BookChanges {
        let lot = |id: &String| self.lots.iter().find(|l| &l.id == id).cloned();
        BookChanges {
            account: self.account_changed.then(|| self.account.clone()),
            settings_changed: self.settings_changed,
            new_lots: self.new_lots.iter().filter_map(lot).collect(),
            changed_lots: self
                .changed_lots
                .iter()
                .filter(|id| !self.new_lots.contains(*id))
                .filter_map(lot)
                .collect(),
            new_holds: self
                .new_holds
                .iter()
                .filter_map(|id| self.holds.get(id).cloned())
                .collect(),
            changed_holds: self
                .changed_holds
                .iter()
                .filter(|id| !self.new_holds.contains(*id))
                .filter_map(|id| self.holds.get(id).cloned())
                .collect(),
            entries: self.entries.clone(),
            changed_top_ups: self
                .changed_top_ups
                .iter()
                .filter_map(|id| self.top_ups.get(id).cloned())
                .collect(),
            new_top_ups: self.new_top_ups.clone(),
        }
    }

    /// Takes up to `credits` free credits from unexpired lots matching `which`, in burn order,
    /// recording each lot's move; returns what it could not find.
    fn take_free(
        &mut self,
        credits: i64,
        now: DateTime<Utc>,
        which: impl Fn(&Lot) -> bool,
        moves: &mut Vec<LotMove>,
    ) -> i64 {
        let mut left = credits;
        let mut touched = Vec::new();
        for lot in self.lots.iter_mut().filter(|l| !l.is_expired(now) && which(l)) {
            if left == 0 {
                break;
            }
            let take = lot.free().min(left);
            if take > 0 {
                moves.push(lot.take(take));
                left -= take;
                touched.push(lot.id.clone());
            }
        }
        self.mark_lots(touched);
        left
    }

    fn close_hold(&mut self, hold_id: &str, status: HoldStatus, now: DateTime<Utc>) {
        let Some(allocations) = self.holds.get(hold_id).map(|h| h.allocations.clone()) else {
            return;
        };
        for allocation in &allocations {
            self.set_lot(&allocation.lot_id, |lot| lot.held -= allocation.credits);
        }
        self.set_hold(hold_id, |hold| {
            hold.status = status;
            hold.closed_at = Some(now);
        });
    }

    // Every argument is one column of the entry.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        kind: EntryKind,
        delta: i64,
        reason: &str,
        reference: &str,
        metadata: Metadata,
        lot_id: Option<String>,
        moves: Vec<LotMove>,
        now: DateTime<Utc>,
    ) -> usize {
        self.account.balance += delta;
        self.account_changed = true;
        self.entries.push(Entry {
            account_id: self.account.id.clone(),
            kind,
            delta,
            balance_after: self.account.balance,
            reason: reason.to_owned(),
            reference: reference.to_owned(),
            metadata,
            created_at: now,
            lot_id,
            moves,
        });
        let entry = self.entries.len() - 1;
        self.happened(What::Entry(entry), now);
        entry
    }

    fn set_lot(&mut self, lot_id: &str, change: impl FnOnce(&mut Lot)) {
        if let Some(lot) = self.lots.iter_mut().find(|l| l.id == lot_id) {
            change(lot);
            self.changed_lots.insert(lot_id.to_owned());
        }
    }

    fn set_hold(&mut self, hold_id: &str, change: impl FnOnce(&mut Hold)) {
        if let Some(hold) = self.holds.get_mut(hold_id) {
            change(hold);
            self.changed_holds.insert(hold_id.to_owned());
        }
    }

    fn mark_lots(&mut self, ids: Vec<String>) {
        self.changed_lots.extend(ids);
    }
}

#[cfg(test)]
mod moves_tests;
#[cfg(test)]
mod tests;
