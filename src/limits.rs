//! HTTP load shedding: a concurrency limit that answers 503 at once instead of queueing, a
//! per-request timeout, and a deadline for the request body. The gRPC side has its own in
//! `grpc::guard`.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde_json::json;
use tokio::{sync::Semaphore, time::Sleep};
use tokio_util::sync::CancellationToken;

use crate::{config::HttpSettings, metrics::AnswerOutcome};

#[derive(Clone)]
struct Limits {
    slots: Arc<Semaphore>,
    settings: HttpSettings,
}

/// Applies the limits to every route of `router` (the webhook; probes and metrics stay outside).
pub(crate) fn limit_http(router: Router, settings: HttpSettings) -> Router {
    let limits = Limits {
        slots: Arc::new(Semaphore::new(settings.concurrency_limit)),
        settings,
    };
    router.layer(middleware::from_fn_with_state(limits, shed))
}

/// Gives every request of `router` `timeout` from its headers to the end of its body; a body
/// still arriving then is answered 408 and the connection closed. Applied outside `limit_http`,
/// so a trickling client releases its webhook slot at the deadline.
pub(crate) fn limit_body_read(router: Router, timeout: Duration) -> Router {
    router.layer(middleware::from_fn_with_state(timeout, body_deadline))
}

/// Answers 503 `shutting_down` to every request of `router` still running when `ended` fires
/// (the shutdown grace ran out): Stripe redelivers, and the connection can close cleanly.
pub(crate) fn end_at_grace(router: Router, ended: CancellationToken) -> Router {
    router.layer(middleware::from_fn_with_state(ended, grace))
}

async fn grace(State(ended): State<CancellationToken>, request: Request, next: Next) -> Response {
    tokio::select! {
        biased;
        response = next.run(request) => response,
        () = ended.cancelled() => {
            tracing::warn!("HTTP request still running when the shutdown grace ran out; answering 503");
            unavailable("shutting_down")
        }
    }
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
    response.extensions_mut().insert(AnswerOutcome(reason));
    response
}

async fn body_deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    // The handler saw a failed body read; what it answered (axum's 400) says less than this.
    if !expired.load(Ordering::Acquire) {
        return response;
    }
    tracing::warn!(?timeout, "HTTP request body not received in time; answering 408");
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        Json(json!({ "error": "body_read_timeout" })),
    )
        .into_response();
    // The rest of the body may still be on its way; the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
        .extensions_mut()
        .insert(AnswerOutcome("body_read_timeout"));
    response
}

/// The body never arrived whole within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
struct BodyReadTimeout(Duration);

/// A request body that fails once its deadline passes, however steadily bytes trickle in.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // The deadline before the data, so a body that keeps trickling in is still cut; a body
        // already complete is not failed by a late poll.
        if !this.inner.is_end_stream() && this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(this.timeout)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
