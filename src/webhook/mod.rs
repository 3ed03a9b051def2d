//! Stripe's webhook route on the HTTP side.

pub(crate) mod error;
pub(crate) mod handler;
pub mod signature;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
    routing::post,
};
use secrecy::SecretString;

use crate::{
    billing::Billing,
    metrics::{AnswerOutcome, Metrics},
};

/// The path Stripe is configured to call, kept from the system this replaces.
pub(crate) const WEBHOOK_PATH: &str = "/account/stripe-webhook/";

/// Larger bodies are answered 413 before they are read whole.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handler needs.
#[derive(Clone)]
pub(crate) struct WebhookState {
    pub billing: Billing,
    /// Empty only in development, where unsigned events are accepted with a warning.
    pub secrets: Vec<SecretString>,
    pub tolerance: Duration,
    pub metrics: Metrics,
}

/// The webhook route; merged into the HTTP router by `app`.
pub(crate) fn router(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handler::stripe_webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts every answer of the webhook route by status and outcome. Applied outermost, so the
/// load shedder's 503s, the body deadline's 408s and the body limit's 413s count too.
pub(crate) fn count_answers(router: Router, metrics: Metrics) -> Router {
    router.layer(middleware::from_fn_with_state(metrics, count_answer))
}

async fn count_answer(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let webhook = request.uri().path() == WEBHOOK_PATH;
    let response = next.run(request).await;
    if webhook {
        let status = response.status();
        let outcome = match response.extensions().get::<AnswerOutcome>() {
            Some(AnswerOutcome(outcome)) => outcome,
            None => unlabelled(status),
        };
        metrics.webhook_response(status.as_u16(), outcome);
    }
    response
}

/// Answers no part of ours labelled: axum's own (body too large, a body that failed to read,
/// a method other than POST).
fn unlabelled(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::BAD_REQUEST => "unreadable_body",
        _ => "other",
    }
}
