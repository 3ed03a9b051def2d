//! `POST /account/stripe-webhook/`: verify on the raw bytes, parse, apply exactly once, answer
//! `{"status": "success"}`.

use std::time::Instant;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tracing::{Span, field::Empty};

use super::{WebhookState, error::WebhookError, signature};
use crate::{
    billing::{
        BillingError, FulfilmentReport,
        payload::{event_type_label, parse_event},
    },
    metrics::AnswerOutcome,
    report::error_chain,
};

/// One span per delivery, named like the route; the caller's body never goes into it.
#[tracing::instrument(
    name = "stripe.webhook",
    skip_all,
    fields(
        otel.kind = "server",
        otel.status_code = Empty,
        http.route = super::WEBHOOK_PATH,
        event_id = Empty,
        event_type = Empty,
        outcome = Empty,
        account_id = Empty,
        credits = Empty,
        latency_ms = Empty,
    )
)]
pub(crate) async fn stripe_webhook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let started = Instant::now();
    if body.is_empty() {
        return Err(WebhookError::EmptyBody);
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    if state.secrets.is_empty() {
        tracing::warn!("accepting an unsigned webhook: STRIPE_WEBHOOK_SECRET is unset (development only)");
    } else if let Err(err) = signature::verify(
        &body,
        header,
        &state.secrets,
        state.tolerance,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(reason = err.code(), "webhook refused");
        state.metrics.webhook("unknown", "rejected", 0, started);
        return Err(err.into());
    }
    let event = match parse_event(&body) {
        Ok(event) => event,
        Err(err) => {
            state.metrics.webhook("unknown", "invalid", 0, started);
            // Signed by Stripe yet unreadable: billing keeps it for operators to replay.
            if !state.secrets.is_empty() {
                state.billing.record_unparsable(&body, &err).await;
            }
            return Err(err.into());
        }
    };
    let span = Span::current();
    span.record("event_id", event.id.as_str());
    span.record("event_type", event.event_type.as_str());
    // The event (with its payload) goes to the writer; the log line needs only these.
    let (event_id, event_type) = (event.id.clone(), event.event_type.clone());

    match state.billing.process_event(event).await {
        Ok(report) => Ok(answered(&state, &span, &report, &event_id, &event_type, started)),
        Err(err) => Err(refused(&state, &span, err, &event_id, &event_type, started)),
    }
}

/// Logs, traces and counts a stored outcome; the answer Stripe gets.
fn answered(
    state: &WebhookState,
    span: &Span,
    report: &FulfilmentReport,
    event_id: &str,
    event_type: &str,
    started: Instant,
) -> Response {
    let ms = started.elapsed().as_millis() as u64;
    let session_id = report.session_id.as_deref().unwrap_or("");
    let account_id = report.account_id.as_deref().unwrap_or("");
    match report.detail.as_deref() {
        Some(detail) => {
            tracing::error!(
                event_id,
                event_type,
                session_id,
                account_id,
                credits = report.credits,
                outcome = report.outcome.as_str(),
                ms,
                detail,
                "stripe event not matched; replay it once the account or pack exists"
            )
        }
        None => {
            tracing::info!(
                event_id,
                event_type,
                session_id,
                account_id,
                credits = report.credits,
                outcome = report.outcome.as_str(),
                ms,
                "stripe event processed"
            )
        }
    }
    let outcome = report.outcome.as_str();
    span.record("outcome", outcome);
    span.record("credits", report.credits);
    if let Some(account_id) = report.account_id.as_deref() {
        span.record("account_id", account_id);
    }
    span.record(
        "latency_ms",
        i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    );
    state
        .metrics
        .webhook(event_type_label(event_type), outcome, report.credits, started);
    let mut answer = Json(json!({ "status": "success" })).into_response();
    answer.extensions_mut().insert(AnswerOutcome(outcome));
    answer
}

/// Logs, traces and counts a failure (billing has stored a permanent one as failed).
fn refused(
    state: &WebhookState,
    span: &Span,
    err: BillingError,
    event_id: &str,
    event_type: &str,
    started: Instant,
) -> WebhookError {
    let ms = started.elapsed().as_millis() as u64;
    let err = WebhookError::from(err);
    let transient = err.is_transient();
    let outcome = if transient { "deferred" } else { "failed" };
    span.record("outcome", outcome);
    span.record("otel.status_code", "ERROR");
    span.record("latency_ms", i64::try_from(ms).unwrap_or(i64::MAX));
    state
        .metrics
        .webhook(event_type_label(event_type), outcome, 0, started);
    if transient {
        tracing::warn!(event_id, event_type, ms, error = %error_chain(&err), "stripe event deferred; Stripe will redeliver");
    } else {
        tracing::error!(event_id, event_type, ms, error = ?err, "stripe event failed");
    }
    err
}
