//! Stripe's webhook route on the HTTP side.

pub mod error;
pub mod event;
pub mod handler;
pub mod signature;

use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit, routing::post};
use secrecy::SecretString;

use crate::{billing::Billing, metrics::Metrics};

/// The path Stripe is configured to call, kept from the system this replaces.
pub const WEBHOOK_PATH: &str = "/account/stripe-webhook/";

/// Larger bodies are answered 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub billing: Billing,
    /// Empty only in development, where unsigned events are accepted with a warning.
    pub secrets: Vec<SecretString>,
    pub tolerance: Duration,
    pub metrics: Metrics,
}

/// The webhook route; merged into the HTTP router by `app`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handler::stripe_webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
