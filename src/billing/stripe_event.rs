//! Stripe events as billing reads them: what each verified event asks (`EventAction`), and what
//! applying it did (`FulfilmentReport`). The webhook parses payloads into these; reconciliation
//! builds them from listed sessions.

use super::{
    settlement::{DisputeFact, RefundFact},
    subscriptions::{InvoiceFacts, SubscriptionFacts},
};
use crate::event_store::EventOutcome;

/// The facts of a Checkout Session that fulfilment reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutFacts {
    pub session_id: String,
    pub client_reference_id: Option<String>,
    pub metadata_account_id: Option<String>,
    /// `customer_details.email`, else `customer_email`.
    pub email: Option<String>,
    pub metadata_price_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    /// The session's Stripe Customer (`customer`).
    pub customer_id: Option<String>,
    /// PurchaseCredits asked to keep the card (`metadata.save_payment_method`).
    pub save_card: bool,
    /// Set when the "session" is an auto top-up's PaymentIntent (`payment_intent.succeeded`
    /// with `metadata.top_up_attempt_id`): `session_id` is then the attempt id.
    pub top_up: Option<TopUpFacts>,
}

/// What a top-up's PaymentIntent says it bought (its metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopUpFacts {
    pub pack_id: String,
    pub credits: i64,
}

/// How Stripe reports refunded money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundReport {
    /// `charge.refunded`: the cumulative amount refunded on the charge.
    ChargeTotal { amount_refunded: i64 },
    /// `refund.created` / `refund.updated`: one refund and its status.
    Refund(RefundFact),
}

/// What an event asks of billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// Paid (or nothing to pay): credit the account once.
    Credit(CheckoutFacts),
    /// Completed but the money has not arrived (delayed methods): record and wait.
    AwaitPayment(CheckoutFacts),
    /// The delayed payment failed.
    MarkFailed(CheckoutFacts),
    /// The buyer never paid.
    MarkExpired(CheckoutFacts),
    /// Money went back to the buyer (`charge.refunded`, `refund.*`).
    Refund {
        payment_intent_id: String,
        report: RefundReport,
    },
    /// A dispute opened, changed or closed (`charge.dispute.*`).
    Dispute {
        payment_intent_id: String,
        fact: DisputeFact,
    },
    /// A subscription was created, changed or ended (`customer.subscription.*`).
    Subscription(SubscriptionFacts),
    /// A subscription invoice was paid: grant its period's allowance once.
    InvoicePaid(InvoiceFacts),
    /// A subscription invoice's payment failed: the subscription is past due.
    InvoiceFailed(InvoiceFacts),
    /// An event type this service does not act on.
    Ignore,
}

impl EventAction {
    /// The Checkout Session an action is about.
    pub fn facts(&self) -> Option<&CheckoutFacts> {
        match self {
            Self::Credit(f) | Self::AwaitPayment(f) | Self::MarkFailed(f) | Self::MarkExpired(f) => Some(f),
            Self::Refund { .. }
            | Self::Dispute { .. }
            | Self::Subscription(_)
            | Self::InvoicePaid(_)
            | Self::InvoiceFailed(_)
            | Self::Ignore => None,
        }
    }
}

/// A verified Stripe event, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    /// The exact body Stripe sent, kept for replay.
    pub payload: String,
    pub action: EventAction,
}

/// What happened to one event, for the caller's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FulfilmentReport {
    pub outcome: EventOutcome,
    pub session_id: Option<String>,
    pub account_id: Option<String>,
    /// Net credits the event moved (negative when taken back).
    pub credits: i64,
    /// Why an event could not be matched, for operators.
    pub detail: Option<String>,
}
