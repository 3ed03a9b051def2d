//! The operator console: server-rendered pages under `/console` on the HTTP port, off unless
//! configured. A transport like `grpc/` and `webhook/`: it signs operators in, converts forms
//! and maps errors; the ledger and billing decide, and every operator action is audited.
//!
//! - `session`: signed session cookies and CSRF tokens (pure); `auth`: sign-in, rate limits,
//!   the trusted proxy header, roles.
//! - `audit`: the audit log and its table's store.
//! - `pages/`: one file per concern (layout, search, account, actions, events, audit).
//! - `error`: `ConsoleError`, mapped once to an HTTP status.

mod audit;
mod auth;
mod error;
mod pages;
mod session;

use std::sync::Arc;

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use sea_orm::DatabaseConnection;

use self::{audit::AuditLog, auth::Gate, session::Signer};
use crate::{
    billing::{Billing, Fulfilment},
    config::ConsoleSettings,
    event_store::EventLog,
    ledger::Ledger,
    notify::Notifications,
};

pub(crate) use auth::hash_password;
pub(crate) use error::ConsoleError;

/// The ledger as the service runs it.
type AppLedger = Ledger<Fulfilment>;

/// The domain services the console reads and acts through.
pub(crate) struct ConsoleServices {
    pub ledger: AppLedger,
    pub billing: Billing,
    pub events: EventLog,
    pub notifications: Notifications,
    /// The read pool, for the audit log.
    pub db: DatabaseConnection,
}

/// What every console handler gets.
#[derive(Clone)]
pub(crate) struct ConsoleState {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Gate,
    signer: Signer,
    ledger: AppLedger,
    billing: Billing,
    events: EventLog,
    notifications: Notifications,
    audit: AuditLog,
}

/// The stylesheet, the console's only asset.
const CSS: &str = include_str!("console.css");

/// The console's routes, to merge into the HTTP router.
pub(crate) fn router(settings: ConsoleSettings, services: ConsoleServices) -> Router {
    let signer = Signer::new(settings.session_secret.clone());
    let state = ConsoleState {
        inner: Arc::new(Inner {
            gate: Gate::new(settings),
            signer,
            audit: AuditLog::new(services.db),
            ledger: services.ledger,
            billing: services.billing,
            events: services.events,
            notifications: services.notifications,
        }),
    };
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
        .route("/console/events", get(pages::events::list))
        .route("/console/events/{event}", get(pages::events::show))
        .route("/console/events/{event}/replay", post(pages::events::replay))
        .route("/console/notifications", get(pages::notifications::list))
        .route("/console/notifications/retry", post(pages::notifications::retry))
        .route("/console/audit", get(pages::audit::list))
        .with_state(state)
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
