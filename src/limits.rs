//! HTTP load shedding: a concurrency limit that answers 503 at once instead of queueing, and a
//! per-request timeout. The gRPC side has its own in `grpc::guard`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::HttpSettings;

#[derive(Clone)]
struct Limits {
    slots: Arc<Semaphore>,
    settings: HttpSettings,
}

/// Applies the limits to every route of `router` (the webhook; probes and metrics stay outside).
pub fn limit_http(router: Router, settings: HttpSettings) -> Router {
    let limits = Limits {
        slots: Arc::new(Semaphore::new(settings.concurrency_limit)),
        settings,
    };
    router.layer(middleware::from_fn_with_state(limits, shed))
}

async fn shed(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.slots.try_acquire_owned() else {
        tracing::warn!(
            path = request.uri().path(),
            "HTTP concurrency limit reached; answering 503"
        );
        return unavailable("overloaded");
    };
    match tokio::time::timeout(limits.settings.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout = ?limits.settings.request_timeout, "HTTP request timed out; answering 503");
            unavailable("timeout")
        }
    }
}

/// 503 with `Retry-After`, which Stripe and other clients honour by retrying later.
fn unavailable(reason: &'static str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": reason }))).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
