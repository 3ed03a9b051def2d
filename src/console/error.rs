//! What a console request can end in besides its page, mapped once to an HTTP status. Internal
//! errors are logged with their causes and shown as an opaque line.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::pages::layout;
use crate::{billing::BillingError, ledger::LedgerError, report::error_chain};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No valid session: the browser is sent to the sign-in page.
    #[error("sign-in required")]
    SignInRequired,
    /// A missing or wrong CSRF token, or a viewer asking for an operator's action.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Too many failed sign-ins for this name or address.
    #[error("too many failed sign-ins; try again later")]
    TooManyAttempts,
    #[error("{0}")]
    NotFound(String),
    /// The form is wrong (the message says which field).
    #[error("{0}")]
    Invalid(String),
    /// The domain refused the change as things stand (a closed hold, a key reused).
    #[error("{0}")]
    Conflict(String),
    /// The database or the ledger writer is not answering: worth retrying.
    #[error("the service is unavailable; try again")]
    Unavailable,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<LedgerError> for ConsoleError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::InvalidInput(invalid) => Self::Invalid(invalid.to_string()),
            LedgerError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            err @ (LedgerError::EmailTaken(_)
            | LedgerError::Insufficient { .. }
            | LedgerError::FailedPrecondition(_)
            | LedgerError::HoldClosed { .. }) => Self::Conflict(err.to_string()),
            LedgerError::DatabaseUnavailable(_) | LedgerError::WriterStopped => Self::Unavailable,
            LedgerError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

impl From<BillingError> for ConsoleError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::Ledger(err) => err.into(),
            BillingError::InvalidInput(invalid) => Self::Invalid(invalid.to_string()),
            err @ (BillingError::PackNotFound(_)
            | BillingError::PlanNotFound(_)
            | BillingError::SubscriptionNotFound(_)
            | BillingError::AccountNotFound(_)) => Self::NotFound(err.to_string()),
            err @ BillingError::RedirectRefused { .. } => Self::Invalid(err.to_string()),
            err @ (BillingError::StripeNotConfigured | BillingError::StripeRejected(_)) => {
                Self::Conflict(err.to_string())
            }
            BillingError::StripeUnavailable(_) | BillingError::DatabaseUnavailable(_) => Self::Unavailable,
            BillingError::Unexpected(err) => Self::Unexpected(err),
        }
    }
}

impl From<sea_orm::DbErr> for ConsoleError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Unexpected(anyhow::Error::new(err).context("database"))
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::SignInRequired => {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/sign-in")]).into_response();
            }
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(err) => {
                tracing::error!(error = %error_chain(err.as_ref() as &dyn std::error::Error), "console request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            Self::Unexpected(_) => "something went wrong; the cause is in the service's log".to_owned(),
            other => other.to_string(),
        };
        (status, layout::error_page(status, &message)).into_response()
    }
}
