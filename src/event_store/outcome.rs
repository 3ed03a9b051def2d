//! How a Stripe event ended (`stripe_events.outcome`) and which deliveries may take a stored
//! event over again.

use crate::vocab::text_enum;

text_enum!(
    /// How an event ended; stored in `stripe_events.outcome`.
    pub EventOutcome {
        /// Claimed by a transaction that has not finished it; never seen once it commits.
        Processing => "processing",
        Credited => "credited",
        /// Another event already credited this session.
        AlreadyCredited => "already_credited",
        /// This very event was processed before.
        Duplicate => "duplicate",
        AwaitingPayment => "awaiting_payment",
        PaymentFailed => "payment_failed",
        Expired => "expired",
        /// Nothing to change (e.g. expiry of a session that completed).
        NoChange => "no_change",
        Ignored => "ignored",
        UnmatchedAccount => "unmatched_account",
        UnmatchedPack => "unmatched_pack",
        /// A refund or dispute changed the purchase's credits.
        Adjusted => "adjusted",
        /// A subscription's state changed (`customer.subscription.*`).
        Updated => "updated",
        /// A refund or dispute for a payment not completed yet: kept, applied at completion.
        AwaitingPurchase => "awaiting_purchase",
        /// An unexpected error; the event is retried when Stripe redelivers it.
        Failed => "failed",
    }
);

/// Which stored events a delivery may take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Delivery {
    /// From Stripe: new events, or ones whose last attempt failed.
    Webhook,
    /// An operator replaying a stored event after fixing what it was missing.
    Replay,
    /// Reconciliation: no event exists; only the purchase's status guards crediting.
    Reconcile,
}

impl Delivery {
    pub(crate) fn may_reclaim(self, stored_outcome: &str) -> bool {
        let retryable: &[EventOutcome] = match self {
            Self::Webhook => &[EventOutcome::Failed],
            Self::Replay => &[
                EventOutcome::Failed,
                EventOutcome::UnmatchedAccount,
                EventOutcome::UnmatchedPack,
            ],
            Self::Reconcile => &[],
        };
        retryable.iter().any(|o| o.as_str() == stored_outcome)
    }

    pub(crate) fn reclaimable(self) -> Vec<&'static str> {
        EventOutcome::ALL
            .iter()
            .filter(|o| self.may_reclaim(o.as_str()))
            .map(|o| o.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_through_its_text() {
        for outcome in EventOutcome::ALL {
            assert_eq!(EventOutcome::parse(outcome.as_str()), Some(*outcome));
        }
        assert_eq!(EventOutcome::parse("credit"), None);
    }

    #[test]
    fn replay_takes_back_failed_and_unmatched_events_only() {
        assert_eq!(Delivery::Webhook.reclaimable(), ["failed"]);
        assert_eq!(
            Delivery::Replay.reclaimable(),
            ["unmatched_account", "unmatched_pack", "failed"]
        );
        assert!(Delivery::Reconcile.reclaimable().is_empty());
    }
}
