//! The ledger's stored vocabularies as enums: entry kinds, lot sources and hold statuses. Each
//! is text in the database; unknown text read back is a bug, reported by the store.

use crate::vocab::text_enum;

text_enum!(
    /// Why a ledger entry changed a balance (`credit_ledger.kind`).
    pub(crate) EntryKind {
        Purchase => "purchase",
        Grant => "grant",
        Trial => "trial",
        Consumption => "consumption",
        Refund => "refund",
        Dispute => "dispute",
        Expiry => "expiry",
        Import => "import",
        /// A subscription period's allowance.
        Allowance => "allowance",
        /// Unspent allowance moved into a rollover lot at its period's end (delta 0).
        Rollover => "rollover",
    }
);

text_enum!(
    /// Where a lot of credits came from (`credit_lots.source`).
    pub(crate) LotSource {
        Purchase => "purchase",
        Grant => "grant",
        Trial => "trial",
        Import => "import",
        TopUp => "top_up",
        /// A subscription invoice's allowance for its period.
        Allowance => "allowance",
        /// Allowance carried over into the next period.
        Rollover => "rollover",
    }
);

text_enum!(
    /// Where a hold is in its life (`credit_holds.status`).
    pub(crate) HoldStatus {
        Active => "active",
        Captured => "captured",
        Released => "released",
        Expired => "expired",
    }
);

text_enum!(
    /// What an account event says happened (`account_events.type`).
    pub(crate) EventType {
        CreditsPurchased => "credits.purchased",
        CreditsGranted => "credits.granted",
        CreditsConsumed => "credits.consumed",
        CreditsClawedBack => "credits.clawed_back",
        CreditsRestored => "credits.restored",
        CreditsImported => "credits.imported",
        LotExpired => "lot.expired",
        HoldExpired => "hold.expired",
        BalanceLow => "balance.low",
        BalanceDepleted => "balance.depleted",
        BalanceRecovered => "balance.recovered",
        TopUpStarted => "top_up.started",
        TopUpSucceeded => "top_up.succeeded",
        TopUpRequiresAction => "top_up.requires_action",
        TopUpDeclined => "top_up.declined",
        TopUpFailed => "top_up.failed",
        TopUpLimitReached => "top_up.limit_reached",
        SettingsChanged => "settings.changed",
    }
);

text_enum!(
    /// Where an automatic top-up is (`top_up_attempts.state`). The first four are in flight:
    /// an account has at most one of those.
    pub(crate) TopUpState {
        /// Recorded by the change that crossed the threshold; no charge started yet.
        Pending => "pending",
        /// The PaymentIntent is being created (a restart resumes it with the same key).
        Charging => "charging",
        /// Stripe failed or timed out: whether a PaymentIntent exists is being found out.
        Unknown => "unknown",
        /// Created; `payment_intent.succeeded` credits it.
        AwaitingPayment => "awaiting_payment",
        Succeeded => "succeeded",
        /// The card was declined; a later attempt (its own key) may follow.
        Declined => "declined",
        RequiresAction => "requires_action",
        LimitReached => "limit_reached",
        /// Stripe refused the charge for another reason than the card (the saved card is
        /// gone, the price is unusable): auto top-up is turned off.
        Failed => "failed",
        /// Not charged: Stripe showed no PaymentIntent for it, or auto top-up was turned off
        /// (or no longer needed) before it started.
        Abandoned => "abandoned",
    }
);

impl LotSource {
    /// Paid for (Checkout, an auto top-up, a subscription invoice and what rolled over from
    /// it): a refund or a dispute takes it back.
    pub(crate) fn is_bought(self) -> bool {
        matches!(
            self,
            Self::Purchase | Self::TopUp | Self::Allowance | Self::Rollover
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(*kind));
        }
        for source in LotSource::ALL {
            assert_eq!(LotSource::parse(source.as_str()), Some(*source));
        }
        for status in HoldStatus::ALL {
            assert_eq!(HoldStatus::parse(status.as_str()), Some(*status));
        }
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(*kind));
        }
        for state in TopUpState::ALL {
            assert_eq!(TopUpState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(EntryKind::parse("processing"), None);
    }
}
