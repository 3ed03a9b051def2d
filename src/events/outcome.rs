//! How a Stripe event ended (`stripe_events.outcome`) and which deliveries may take a stored
//! event over again.

/// How an event ended; stored in `stripe_events.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    /// Claimed by a transaction that has not finished it; never seen once it commits.
    Processing,
    Credited,
    /// Another event already credited this session.
    AlreadyCredited,
    /// This very event was processed before.
    Duplicate,
    AwaitingPayment,
    PaymentFailed,
    Expired,
    /// Nothing to change (e.g. expiry of a session that completed).
    NoChange,
    Ignored,
    UnmatchedAccount,
    UnmatchedPack,
    /// A refund or dispute changed the purchase's credits.
    Adjusted,
    /// A refund or dispute for a payment not completed yet: kept, applied at completion.
    AwaitingPurchase,
    /// An unexpected error; the event is retried when Stripe redelivers it.
    Failed,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Credited => "credited",
            Self::AlreadyCredited => "already_credited",
            Self::Duplicate => "duplicate",
            Self::AwaitingPayment => "awaiting_payment",
            Self::PaymentFailed => "payment_failed",
            Self::Expired => "expired",
            Self::NoChange => "no_change",
            Self::Ignored => "ignored",
            Self::UnmatchedAccount => "unmatched_account",
            Self::UnmatchedPack => "unmatched_pack",
            Self::Adjusted => "adjusted",
            Self::AwaitingPurchase => "awaiting_purchase",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }

    /// Every outcome, for listing the accepted words.
    pub const ALL: [EventOutcome; 14] = ALL_OUTCOMES;
}

const ALL_OUTCOMES: [EventOutcome; 14] = [
    EventOutcome::Processing,
    EventOutcome::Credited,
    EventOutcome::AlreadyCredited,
    EventOutcome::Duplicate,
    EventOutcome::AwaitingPayment,
    EventOutcome::PaymentFailed,
    EventOutcome::Expired,
    EventOutcome::NoChange,
    EventOutcome::Ignored,
    EventOutcome::UnmatchedAccount,
    EventOutcome::UnmatchedPack,
    EventOutcome::Adjusted,
    EventOutcome::AwaitingPurchase,
    EventOutcome::Failed,
];

/// Which stored events a delivery may take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// From Stripe: new events, or ones whose last attempt failed.
    Webhook,
    /// An operator replaying a stored event after fixing what it was missing.
    Replay,
    /// Reconciliation: no event exists; only the purchase's status guards crediting.
    Reconcile,
}

impl Delivery {
    pub fn may_reclaim(self, stored_outcome: &str) -> bool {
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

    pub fn reclaimable(self) -> Vec<&'static str> {
        ALL_OUTCOMES
            .iter()
            .filter(|o| self.may_reclaim(o.as_str()))
            .map(|o| o.as_str())
            .collect()
    }
}
