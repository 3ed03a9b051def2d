//! Clawbacks (refunds, disputes): what is left of the purchase's own lots first, then what of
//! them already expired (gone: never taken twice), then the other lots, then debt.

use chrono::{DateTime, Utc};

use super::{Book, Clawback, Lot, LotMove, Posted, PostingError};

impl Book {
    /// Takes credits back: what is left of the purchase's own lots first, then credits of its
    /// lots that already expired (gone already: not taken again), then the other lots in burn
    /// order, then debt. The entry's delta is what the balance lost.
    pub(crate) fn claw_back(
        &mut self,
        clawback: Clawback,
        now: DateTime<Utc>,
    ) -> Result<Posted, PostingError> {
        self.settle(now);
        let own = |lot: &Lot| lot.source.is_bought() && lot.reference == clawback.purchase_reference;
        let mut moves = Vec::new();
        let left = self.take_free(clawback.credits, now, own, &mut moves);
        let left = self.forgive_expired(left, &clawback.purchase_reference);
        let forgiven = clawback.credits - moves.iter().map(|m| -m.credits).sum::<i64>() - left;
        let left = self.take_free(left, now, |_| true, &mut moves);
        if left > 0 {
            self.account.debt += left;
            moves.push(LotMove::debt(-left, 0, None));
        }
        let mut metadata = clawback.metadata;
        if forgiven > 0 {
            metadata.insert("expired_credits".to_owned(), forgiven.to_string());
        }
        let entry = self.append(
            clawback.kind,
            -(clawback.credits - forgiven),
            clawback.kind.as_str(),
            &clawback.reference,
            metadata,
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

    /// Accounts for up to `credits` of a clawback with the purchase's credits that already
    /// expired (their expiry took them); returns what is left to take.
    fn forgive_expired(&mut self, credits: i64, reference: &str) -> i64 {
        let ids: Vec<String> = self
            .lots
            .iter()
            .filter(|l| l.source.is_bought() && l.reference == reference && l.expired > 0)
            .map(|l| l.id.clone())
            .collect();
        let mut left = credits;
        for id in ids {
            self.set_lot(&id, |lot| {
                let take = lot.expired.min(left);
                lot.expired -= take;
                left -= take;
            });
        }
        left
    }
}
