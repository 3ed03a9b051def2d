//! `LedgerError` → `tonic::Status`, in one exhaustive match. Internal causes are logged here
//! and never sent to the caller.

use tonic::Status;

use crate::{ledger::LedgerError, stripe::StripeError};

pub fn to_status(err: LedgerError) -> Status {
    match err {
        LedgerError::InvalidInput(invalid) => Status::invalid_argument(invalid.to_string()),
        LedgerError::NotFound(what) => Status::not_found(format!("{what} not found")),
        LedgerError::EmailTaken(email) => {
            Status::already_exists(format!("email {email} belongs to another account"))
        }
        LedgerError::Stripe(StripeError::NotConfigured) => {
            Status::failed_precondition("Stripe is not configured on this service")
        }
        LedgerError::Stripe(StripeError::Rejected { message, .. }) => {
            Status::failed_precondition(format!("Stripe rejected the request: {message}"))
        }
        LedgerError::Stripe(StripeError::Unavailable(cause)) => {
            tracing::warn!(%cause, "Stripe unavailable");
            Status::unavailable("Stripe is unavailable; retry later")
        }
        LedgerError::Contended(what) => {
            tracing::warn!(what, "concurrent update; the caller should retry");
            Status::aborted("concurrent update; retry")
        }
        LedgerError::DatabaseUnavailable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            Status::unavailable("database unavailable; retry later")
        }
        LedgerError::Unexpected(cause) => {
            tracing::error!(error = ?cause, "unexpected error");
            Status::internal("internal error")
        }
    }
}
