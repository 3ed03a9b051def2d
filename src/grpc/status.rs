//! Domain errors → `tonic::Status`, each in one exhaustive match. Internal causes are logged
//! here and never sent to the caller.

use tonic::Status;

use crate::{billing::BillingError, ledger::LedgerError};

pub(crate) fn ledger_status(err: LedgerError) -> Status {
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
        LedgerError::FailedPrecondition(why) => Status::failed_precondition(why),
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

pub(crate) fn billing_status(err: BillingError) -> Status {
    match err {
        BillingError::PackNotFound(price) => {
            Status::not_found(format!("credit pack with price {} not found", price.as_str()))
        }
        BillingError::PlanNotFound(plan) => Status::not_found(format!("plan {plan} not found")),
        BillingError::SubscriptionNotFound(id) => Status::not_found(format!("subscription {id} not found")),
        BillingError::RedirectRefused { field, reason } => {
            Status::invalid_argument(format!("invalid {field}: {reason}"))
        }
        BillingError::AccountNotFound(account) => Status::not_found(format!("{account} not found")),
        BillingError::StripeNotConfigured => {
            Status::failed_precondition("Stripe is not configured on this service")
        }
        BillingError::StripeRejected(message) => {
            Status::failed_precondition(format!("Stripe rejected the request: {message}"))
        }
        BillingError::StripeUnavailable(cause) => {
            tracing::warn!(%cause, "Stripe unavailable");
            Status::unavailable("Stripe is unavailable; retry later")
        }
        BillingError::DatabaseUnavailable(cause) => {
            tracing::warn!(%cause, "database unavailable");
            Status::unavailable("database unavailable; retry later")
        }
        BillingError::InvalidInput(invalid) => Status::invalid_argument(invalid.to_string()),
        BillingError::Ledger(err) => ledger_status(err),
        BillingError::Unexpected(cause) => {
            tracing::error!(error = ?cause, "unexpected error");
            Status::internal("internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnAcquireErr, DbErr};
    use tonic::Code;

    use super::*;
    use crate::{
        billing::PriceId,
        ledger::{AccountId, AccountRef, InvalidInput},
    };

    fn answer(err: BillingError) -> (Code, String) {
        let status = billing_status(err);
        (status.code(), status.message().to_owned())
    }

    #[test]
    fn billing_errors_keep_the_codes_and_messages_callers_read() {
        let price = PriceId::parse("price_nope").expect("a price id");
        let account = AccountRef::Id(AccountId::parse("user-1").expect("an account id"));
        let cases = [
            (
                BillingError::PackNotFound(price),
                Code::NotFound,
                "credit pack with price price_nope not found",
            ),
            (
                BillingError::PlanNotFound("pro-monthly".into()),
                Code::NotFound,
                "plan pro-monthly not found",
            ),
            (
                BillingError::SubscriptionNotFound("sub_nope".into()),
                Code::NotFound,
                "subscription sub_nope not found",
            ),
            (
                BillingError::RedirectRefused {
                    field: "success_url",
                    reason: "origin not allowed".into(),
                },
                Code::InvalidArgument,
                "invalid success_url: origin not allowed",
            ),
            (
                BillingError::AccountNotFound(account),
                Code::NotFound,
                "account user-1 not found",
            ),
            (
                BillingError::StripeNotConfigured,
                Code::FailedPrecondition,
                "Stripe is not configured on this service",
            ),
            (
                BillingError::StripeRejected("No such price".into()),
                Code::FailedPrecondition,
                "Stripe rejected the request: No such price",
            ),
            (
                BillingError::StripeUnavailable("timed out".into()),
                Code::Unavailable,
                "Stripe is unavailable; retry later",
            ),
            (
                DbErr::ConnectionAcquire(ConnAcquireErr::Timeout).into(),
                Code::Unavailable,
                "database unavailable; retry later",
            ),
            (
                DbErr::Custom("no such column".into()).into(),
                Code::Internal,
                "internal error",
            ),
            (
                BillingError::InvalidInput(InvalidInput::new("page_size", "negative")),
                Code::InvalidArgument,
                "invalid page_size: negative",
            ),
            (
                BillingError::Ledger(LedgerError::WriterStopped),
                Code::Unavailable,
                "the service is stopping; retry on another replica",
            ),
            (
                BillingError::Unexpected(anyhow::anyhow!("secret detail")),
                Code::Internal,
                "internal error",
            ),
        ];
        for (err, code, message) in cases {
            assert_eq!(answer(err), (code, message.to_owned()));
        }
    }
}
