//! Subscriptions as billing reads and keeps them: Stripe's subscription statuses, the invoice
//! statuses this service keeps, what a subscription or invoice event says, and the rows of
//! `subscriptions` and `subscription_invoices` as domain types.

use chrono::{DateTime, Utc};

use crate::vocab::text_enum;

text_enum!(
    /// A subscription's status as Stripe reports it (`subscriptions.status`).
    pub open SubscriptionStatus {
        Incomplete => "incomplete",
        IncompleteExpired => "incomplete_expired",
        Trialing => "trialing",
        Active => "active",
        PastDue => "past_due",
        Canceled => "canceled",
        Unpaid => "unpaid",
        Paused => "paused",
    }
);

impl SubscriptionStatus {
    /// Ended for good: no later event brings it back.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }
}

text_enum!(
    /// Where a subscription invoice is (`subscription_invoices.status`).
    pub(crate) InvoiceStatus {
        /// `invoice.payment_failed`: nothing granted (yet).
        PaymentFailed => "payment_failed",
        /// Paid: its allowance was granted.
        Paid => "paid",
        /// Refunded in full, or a dispute was lost: its allowance was taken back.
        Refunded => "refunded",
    }
);

impl InvoiceStatus {
    /// Its allowance was granted (whatever was taken back since).
    pub(crate) fn granted(self) -> bool {
        matches!(self, Self::Paid | Self::Refunded)
    }
}

/// Which subscription event a state came from: on equal `created` seconds, a later kind wins
/// (an `updated` sent in the second of `created` is newer; `deleted` is last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscriptionEventKind {
    Created,
    Updated,
    Deleted,
}

impl SubscriptionEventKind {
    /// The state version of an event of this kind created at `created` (Stripe's seconds);
    /// `None` when it does not fit.
    pub(crate) fn version(self, created: i64) -> Option<i64> {
        let rank = match self {
            Self::Created => 1,
            Self::Updated => 2,
            Self::Deleted => 3,
        };
        created.checked_mul(10)?.checked_add(rank)
    }
}

/// `customer.subscription.*`: the subscription as the event shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFacts {
    pub subscription_id: String,
    /// `metadata.account_id` (Subscribe sets it through `subscription_data`).
    pub account_id: Option<String>,
    /// `metadata.plan_id`.
    pub plan_id: Option<String>,
    /// The first item's price, which names the plan after an upgrade.
    pub price_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: SubscriptionStatus,
    /// The first item's `current_period_start/end`.
    pub current_period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    /// `customer.subscription.deleted`: ended, whatever the status says.
    pub deleted: bool,
    /// `SubscriptionEventKind::version` of the event.
    pub version: i64,
}

/// `invoice.paid` / `invoice.payment_failed` of a subscription invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceFacts {
    pub invoice_id: String,
    /// `parent.subscription_details.subscription`.
    pub subscription_id: String,
    /// `parent.subscription_details.metadata.account_id`.
    pub account_id: Option<String>,
    /// `parent.subscription_details.metadata.plan_id`.
    pub plan_id: Option<String>,
    /// The paid line's `pricing.price_details.price`.
    pub price_id: Option<String>,
    /// `subscription_create`, `subscription_cycle`, `subscription_update`, …
    pub billing_reason: String,
    /// The period paid for: the subscription line's `period` (not the invoice's own).
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Minor units of `currency`.
    pub amount_paid: i64,
    pub currency: String,
    /// From the event's `payments` when it carries them; else read from Stripe before the job
    /// is queued.
    pub payment_intent_id: Option<String>,
    /// The event's `created` × 10 + 2 (an invoice event ranks as an update).
    pub version: i64,
}

/// A row of `subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub id: String,
    pub account_id: String,
    pub plan_id: String,
    pub customer_id: Option<String>,
    pub status: SubscriptionStatus,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub state_version: i64,
    pub created_at: DateTime<Utc>,
}

/// A row of `subscription_invoices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionInvoice {
    pub id: String,
    pub subscription_id: String,
    pub account_id: String,
    pub plan_id: String,
    pub billing_reason: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub amount_paid: i64,
    pub currency: String,
    pub amount_refunded: i64,
    pub credits: i64,
    pub payment_intent_id: Option<String>,
    pub lot_id: Option<String>,
    pub status: InvoiceStatus,
    pub created_at: DateTime<Utc>,
}

/// A subscription as GetSubscription and ListSubscriptions show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionView {
    pub subscription: Subscription,
    pub plan_name: String,
    /// Allowance granted for the current period (every paid invoice of the subscription that
    /// pays for a period ending when the current one does).
    pub period_allowance: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for status in SubscriptionStatus::ALL {
            assert_eq!(&SubscriptionStatus::parse(status.as_str()), status);
        }
        assert_eq!(
            SubscriptionStatus::parse("something_new"),
            SubscriptionStatus::Other("something_new".into())
        );
        for status in InvoiceStatus::ALL {
            assert_eq!(InvoiceStatus::parse(status.as_str()), Some(*status));
        }
    }

    #[test]
    fn a_later_kind_wins_within_one_second() {
        let created = SubscriptionEventKind::Created.version(100);
        let updated = SubscriptionEventKind::Updated.version(100);
        let deleted = SubscriptionEventKind::Deleted.version(100);
        assert!(created < updated && updated < deleted);
        assert!(deleted < SubscriptionEventKind::Created.version(101));
        assert_eq!(SubscriptionEventKind::Created.version(i64::MAX), None);
    }
}
