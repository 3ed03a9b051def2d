//! What can go wrong in billing, in the terms callers act on. Stripe's and the database's
//! errors are sorted here, so the transports map this one enum and nothing below it.

use sea_orm::DbErr;

use super::types::PriceId;
use crate::{
    db,
    ledger::{AccountRef, InvalidInput, LedgerError},
    stripe::StripeError,
};

/// Billing's error: a variant per thing a caller can act on, the ledger's errors passing
/// through, and `Unexpected`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BillingError {
    /// No active pack sells this Stripe price.
    #[error("credit pack with price {} not found", .0.as_str())]
    PackNotFound(PriceId),
    /// No subscription plan with this id is on sale (unknown, inactive, or not yet synced to
    /// Stripe).
    #[error("plan {0} not found")]
    PlanNotFound(String),
    /// No subscription with this id is known.
    #[error("subscription {0} not found")]
    SubscriptionNotFound(String),
    /// A redirect URL leads where Checkout may not send the buyer.
    #[error("invalid {field}: {reason}")]
    RedirectRefused { field: &'static str, reason: String },
    /// The account billing looked up does not exist.
    #[error("{0} not found")]
    AccountNotFound(AccountRef),
    /// `STRIPE_SECRET_KEY` is not set.
    #[error("Stripe is not configured (STRIPE_SECRET_KEY is unset)")]
    StripeNotConfigured,
    /// Stripe refused the request (4xx): its own message says why.
    #[error("Stripe rejected the request: {0}")]
    StripeRejected(String),
    /// Stripe could not be reached, timed out, or failed (5xx): worth retrying.
    #[error("Stripe is unavailable: {0}")]
    StripeUnavailable(String),
    /// Billing's own reads got no answer from the database: worth retrying.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] DbErr),
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// The ledger (and its writer, which runs billing's jobs) failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl BillingError {
    /// A passing fault (Stripe or the database not answering): the same request may succeed
    /// later, so an event that met it is not recorded as failed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::StripeUnavailable(_) | Self::DatabaseUnavailable(_) => true,
            Self::Ledger(err) => err.is_transient(),
            Self::PackNotFound(_)
            | Self::PlanNotFound(_)
            | Self::SubscriptionNotFound(_)
            | Self::RedirectRefused { .. }
            | Self::AccountNotFound(_)
            | Self::StripeNotConfigured
            | Self::StripeRejected(_)
            | Self::InvalidInput(_)
            | Self::Unexpected(_) => false,
        }
    }
}

impl From<StripeError> for BillingError {
    fn from(err: StripeError) -> Self {
        match err {
            StripeError::NotConfigured => Self::StripeNotConfigured,
            StripeError::Rejected { message, .. } => Self::StripeRejected(message),
            StripeError::Unavailable(cause) => Self::StripeUnavailable(cause),
        }
    }
}

impl From<DbErr> for BillingError {
    fn from(err: DbErr) -> Self {
        if db::errors::is_transient(&err) {
            Self::DatabaseUnavailable(err)
        } else {
            Self::Unexpected(anyhow::Error::new(err).context("database query failed"))
        }
    }
}
