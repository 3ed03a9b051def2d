//! Domain errors → `tonic::Status`, each in one exhaustive match. Internal causes are logged
//! here and never sent to the caller.

use tonic::Status;

use crate::{billing::BillingError, ledger::LedgerError, stripe::StripeError};

pub fn ledger_status(err: LedgerError) -> Status {
    match err {
        LedgerError::InvalidInput(invalid) => Status::invalid_argument(invalid.to_string()),
        LedgerError::NotFound(what) => Status::not_found(format!("{what} not found")),
        LedgerError::EmailTaken(email) => {
            Status::already_exists(format!("email {email} belongs to another account"))
        }
        LedgerError::Insufficient { available, asked } => Status::failed_precondition(format!(
            "not enough credits: {available} available, {asked} asked"
        )),
        LedgerError::HoldClosed { hold_id, status } => {
            Status::failed_precondition(format!("hold {hold_id} is {status}"))
        }
        LedgerError::Contended(what) => {
            tracing::warn!(what, "concurrent update; the caller should retry");
            Status::aborted("concurrent update; retry")
        }
        LedgerError::DatabaseUnavailable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            Status::unavailable("database unavailable; retry later")
        }
        LedgerError::WriterStopped => {
            Status::unavailable("the service is stopping; retry on another replica")
        }
        LedgerError::Unexpected(cause) => {
            tracing::error!(error = ?cause, "unexpected error");
            Status::internal("internal error")
        }
    }
}

pub fn billing_status(err: BillingError) -> Status {
    match err {
        BillingError::Ledger(err) => ledger_status(err),
        BillingError::Stripe(StripeError::NotConfigured) => {
            Status::failed_precondition("Stripe is not configured on this service")
        }
        BillingError::Stripe(StripeError::Rejected { message, .. }) => {
            Status::failed_precondition(format!("Stripe rejected the request: {message}"))
        }
        BillingError::Stripe(StripeError::Unavailable(cause)) => {
            tracing::warn!(%cause, "Stripe unavailable");
            Status::unavailable("Stripe is unavailable; retry later")
        }
    }
}
