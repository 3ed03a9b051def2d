//! The operator console: server-rendered pages under `/console` on the HTTP port, off unless
//! configured. A transport like `grpc/` and `webhook/`: it signs operators in, converts forms
//! and maps errors; the ledger and billing decide, and every operator action is audited.
//!
//! - `session`: signed session cookies and CSRF tokens (pure); `gate`: failed sign-ins counted,
//!   signed-out sessions, the trusted proxy header; `auth`: sign-in and sign-out, CSRF and roles;
//!   `password`: argon2id hashes.
//! - `audit`: the audit log and its table's store.
//! - `pages/`: one file per concern (layout, search, account, actions, events, audit).
//! - `error`: `ConsoleError`, mapped once to an HTTP status; `state`: what handlers share.

mod audit;
mod auth;
mod error;
mod gate;
mod pages;
mod password;
mod session;
mod state;

use axum::{
    Router,
    http::{HeaderValue, header},
    middleware,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use self::state::ConsoleState;
use crate::config::ConsoleSettings;

pub(crate) use password::hash_password;
pub(crate) use state::ConsoleServices;

/// The stylesheet, the console's only asset.
const CSS: &str = include_str!("console.css");

/// The console's routes, to merge into the HTTP router.
pub(crate) fn router(settings: ConsoleSettings, services: ConsoleServices) -> Router {
    let state = ConsoleState::new(settings, services);
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/search") }))
        .route("/console/", get(|| async { Redirect::to("/console/search") }))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/search", get(pages::search::search))
        .route("/console/accounts/{account}", get(pages::account::account))
        .route("/console/accounts/{account}/grant", post(pages::actions::grant))
        .route(
            "/console/accounts/{account}/holds/{hold}/release",
            post(pages::actions::release_hold),
        )
        .route(
            "/console/accounts/{account}/settings",
            post(pages::actions::update_settings),
        )
        .route(
            "/console/accounts/{account}/pause-top-up",
            post(pages::actions::pause_top_up),
        )
        .route(
            "/console/accounts/{account}/top-ups/{attempt}/retry",
            post(pages::actions::retry_top_up),
        )
        .route("/console/events", get(pages::events::list))
        .route("/console/events/{event}", get(pages::events::show))
        .route("/console/events/{event}/replay", post(pages::events::replay))
        .route("/console/notifications", get(pages::notifications::list))
        .route("/console/notifications/retry", post(pages::notifications::retry))
        .route("/console/audit", get(pages::audit::list))
        .with_state(state)
        .layer(middleware::map_response(protect))
}

/// Headers on every console answer: nothing cached, no framing, only our own assets and forms.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
}
