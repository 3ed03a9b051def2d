//! Time: holds past their time release themselves, lots past their expiry expire once nothing
//! holds them. Rollover: at an allowance lot's expiry, its unspent credits up to the cap move
//! into a lot of their own that lives one more period; the rest expires. One `rollover` entry
//! (delta 0) names both lots, so the sums hold throughout.

use chrono::{DateTime, Utc};

use super::{Book, Lot, LotValue, Metadata, What};
use crate::ledger::kinds::{EntryKind, HoldStatus, LotSource};

impl Book {
    /// Brings the book to `now`: holds past their time release themselves (no entry), then
    /// every lot past its expiry that nothing holds expires (one `expiry` entry per lot).
    pub(crate) fn settle(&mut self, now: DateTime<Utc>) {
        let due: Vec<String> = self
            .holds
            .values()
            .filter(|h| h.status == HoldStatus::Active && h.expires_at <= now)
            .map(|h| h.id.clone())
            .collect();
        for id in due {
            let credits = self.holds.get(&id).map_or(0, |h| h.credits);
            self.close_hold(&id, HoldStatus::Expired, now);
            self.happened(What::HoldExpired { hold_id: id, credits }, now);
        }
        let expiring: Vec<String> = self
            .lots
            .iter()
            .filter(|l| l.is_expired(now) && l.held == 0 && l.remaining > 0)
            .map(|l| l.id.clone())
            .collect();
        for lot_id in expiring {
            self.roll_over(&lot_id, now);
            let mut moves = Vec::new();
            let mut credits = 0;
            self.set_lot(&lot_id, |lot| {
                credits = lot.remaining;
                if lot.source.is_bought() {
                    lot.expired += credits;
                }
                moves.push(lot.take(credits));
            });
            if credits == 0 {
                continue;
            }
            self.append(
                EntryKind::Expiry,
                -credits,
                "expiry",
                &lot_id,
                Metadata::new(),
                Some(lot_id.clone()),
                moves,
                now,
            );
        }
    }

    /// Moves a lot's unspent credits, up to its rollover cap, into a new lot of their own
    /// (one `rollover` entry naming both, delta 0) before the rest expires.
    fn roll_over(&mut self, lot_id: &str, now: DateTime<Utc>) {
        let Some(lot) = self.lots.iter().find(|l| l.id == lot_id) else {
            return;
        };
        let Some(terms) = lot.rollover.clone().filter(|t| t.cap > 0 && t.until > now) else {
            return;
        };
        let credits = lot.remaining.min(terms.cap);
        let source_reference = lot.reference.clone();
        let mut out = None;
        self.set_lot(lot_id, |lot| out = Some(lot.take(credits)));
        let Some(out) = out else { return };
        let rolled = Lot {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: self.account.id.clone(),
            source: LotSource::Rollover,
            reference: source_reference,
            credits,
            remaining: credits,
            held: 0,
            expires_at: Some(terms.until),
            created_at: now,
            value: LotValue {
                minor: -out.value,
                currency: out.currency.clone(),
            },
            value_remaining: -out.value,
            expired: 0,
            rollover: None,
        };
        let moves = vec![out, rolled.opening()];
        let rolled_id = rolled.id.clone();
        self.insert_lot(rolled);
        self.append(
            EntryKind::Rollover,
            0,
            "rollover",
            lot_id,
            Metadata::from([("to_lot_id".to_owned(), rolled_id.clone())]),
            Some(rolled_id),
            moves,
            now,
        );
    }

    /// Ends the rollover of the live lots opened for `reference` (a subscription that ended
    /// has no next period to roll into).
    pub(crate) fn stop_rollover(&mut self, reference: &str) {
        let ids: Vec<String> = self
            .lots
            .iter()
            .filter(|l| l.reference == reference && l.rollover.is_some())
            .map(|l| l.id.clone())
            .collect();
        for id in ids {
            self.set_lot(&id, |lot| lot.rollover = None);
        }
    }
}
