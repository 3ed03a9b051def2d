//! The webhook's error answers: one enum, one mapping to HTTP status and JSON body.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::signature::SignatureError;
use crate::{
    billing::{BillingError, payload::EventParseError},
    metrics::AnswerOutcome,
    report::error_chain,
};

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error("empty body")]
    EmptyBody,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Parse(#[from] EventParseError),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl WebhookError {
    /// A passing fault (database or Stripe unreachable): answered 503 so Stripe redelivers.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Billing(err) if err.is_transient())
    }

    /// The HTTP status, the body's `error` code and the outcome counted.
    fn answer(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::EmptyBody => (StatusCode::BAD_REQUEST, "empty_body", "empty_body"),
            Self::Signature(err) => (StatusCode::BAD_REQUEST, err.code(), "rejected"),
            Self::Parse(EventParseError::NotJson(_)) => (StatusCode::BAD_REQUEST, "invalid_json", "invalid"),
            Self::Parse(EventParseError::NotAnEvent(_)) => {
                (StatusCode::BAD_REQUEST, "not_a_stripe_event", "invalid")
            }
            // Transient: Stripe retries on any non-2xx, so say so.
            Self::Billing(err) if err.is_transient() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "deferred",
            ),
            Self::Billing(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "failed"),
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let (status, code, outcome) = self.answer();
        // Internal causes go to the log, not to the caller.
        let message = if status.is_server_error() {
            "the event could not be processed now; it will be accepted on redelivery".to_owned()
        } else {
            error_chain(&self)
        };
        let mut response = (status, Json(json!({ "error": code, "message": message }))).into_response();
        response.extensions_mut().insert(AnswerOutcome(outcome));
        response
    }
}
