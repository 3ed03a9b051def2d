//! The tower service in front of `CreditsService` (health and reflection stay outside it):
//! bearer-token auth, a concurrency limit that sheds load with RESOURCE_EXHAUSTED instead of
//! queueing, a per-request timeout, one tracing span per RPC, and the RPC metrics.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body, codegen::BoxFuture, server::NamedService};
use tower::Service;
use tracing::{Instrument, Span};

use super::{auth::BearerTokens, service::rpc_method};
use crate::{metrics::Metrics, telemetry};

/// What every guarded RPC shares.
struct Shared {
    tokens: BearerTokens,
    slots: Arc<Semaphore>,
    timeout: Duration,
    metrics: Metrics,
}

/// Wraps a tonic service; keeps its `NamedService` name so the router still finds it.
#[derive(Clone)]
pub(crate) struct Guarded<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(
        inner: S,
        tokens: BearerTokens,
        concurrency_limit: usize,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                tokens,
                slots: Arc::new(Semaphore::new(concurrency_limit)),
                timeout,
                metrics,
            }),
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Guarded<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per call (the limit sheds instead of applying back-pressure).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was driven ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        // Normalised before anything records it: the path is the caller's to choose.
        let method = rpc_method(request.uri().path());
        let span = telemetry::rpc_span(S::NAME, method, request.headers());
        let started = Instant::now();
        let future = async move {
            let authorization = request.headers().get("authorization").map(|v| v.as_bytes());
            let response = if !shared.tokens.accepts(authorization) {
                Status::unauthenticated("missing or invalid bearer token").into_http()
            } else if let Ok(_permit) = shared.slots.clone().try_acquire_owned() {
                match tokio::time::timeout(shared.timeout, inner.call(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => Status::deadline_exceeded("request timed out").into_http(),
                }
            } else {
                Status::resource_exhausted("server busy; retry with backoff").into_http()
            };
            let code = response_code(&response);
            let elapsed = started.elapsed();
            shared.metrics.rpc(method, code_name(code), elapsed);
            let span = Span::current();
            span.record("rpc.grpc.status_code", code as i32);
            // i64: OpenTelemetry has no unsigned integers.
            span.record(
                "latency_ms",
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            );
            if is_server_error(code) {
                span.record("otel.status_code", "ERROR");
            }
            tracing::info!(
                method,
                code = code_name(code),
                ms = elapsed.as_millis() as u64,
                "rpc"
            );
            Ok(response)
        };
        Box::pin(future.instrument(span))
    }
}

/// A unary error is sent trailers-only, so its code is in the headers; no code there means the
/// handler answered and OK follows in the trailers.
fn response_code(response: &Response<Body>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .map_or(Code::Ok, |v| Code::from_bytes(v.as_bytes()))
}

/// The canonical upper-case name used in metrics and logs.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Codes that mean the server failed (OpenTelemetry marks only these spans as errors).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}
