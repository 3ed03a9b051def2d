//! Stripe events: the stored ones filtered by type and outcome, one event's payload, and the
//! replay of one that failed or was unmatched (as `credits events replay` does).

use axum::{
    Form,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::{
    actions::{checked, common, reason_field},
    layout::{self, Viewer, when},
};
use crate::{
    console::{
        audit::AuditEntry, auth::see_other, error::ConsoleError, session::Session, state::ConsoleState,
    },
    event_store::{Delivery, EventOutcome},
};

/// Events a listing reads before filtering by type.
const LISTED: u64 = 200;

#[derive(Deserialize)]
pub(crate) struct EventQuery {
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    outcome: String,
}

pub(crate) async fn list(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<EventQuery>,
) -> Result<Response, ConsoleError> {
    let outcome = match query.outcome.trim() {
        "" => None,
        raw => EventOutcome::parse(raw),
    };
    let wanted = query.event_type.trim();
    let mut events = state.inner.events.list(outcome, None, LISTED).await?;
    events.retain(|e| wanted.is_empty() || e.event_type.contains(wanted));
    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    let body = html! {
        form.filters method="get" action="/console/events" {
            label { "Type" input name="type" value=(wanted) placeholder="checkout.session.completed"; }
            label { "Outcome" select name="outcome" {
                option value="" { "any" }
                @for o in EventOutcome::ALL { option value=(o.as_str()) selected[query.outcome == o.as_str()] { (o.as_str()) } }
            } }
            button type="submit" { "Filter" }
        }
        @if events.is_empty() { p.empty { "No events." } } @else {
            table {
                thead { tr { th { "Event" } th { "Type" } th { "Outcome" } th { "Received" } th { "Processed" } th { "Error" } } }
                tbody { @for e in &events { tr {
                    td { a href={ "/console/events/" (layout::segment(&e.id)) } { code { (e.id) } } }
                    td { (e.event_type) } td { span class={ "outcome " (e.outcome.as_str()) } { (e.outcome.as_str()) } }
                    td { (when(Some(e.received_at))) } td { (when(e.processed_at)) }
                    td { (e.error.as_deref().unwrap_or("")) }
                } } }
            }
        }
    };
    Ok(layout::page(&viewer, "Stripe events", body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

pub(crate) async fn show(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, ConsoleError> {
    let event = state
        .inner
        .events
        .find(&id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("stripe event {id} not found")))?;
    let payload = serde_json::from_str::<serde_json::Value>(&event.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| event.payload.clone());
    let replayable = Delivery::Replay.may_reclaim(event.outcome.as_str());
    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    let body = html! {
        (layout::notice(query.done.as_deref()))
        dl.summary {
            dt { "Type" } dd { (event.event_type) }
            dt { "Outcome" } dd { (event.outcome.as_str()) }
            dt { "Error" } dd { (event.error.as_deref().unwrap_or("—")) }
            dt { "Checkout session" } dd { code { (event.checkout_session_id.as_deref().unwrap_or("—")) } }
            dt { "Received" } dd { (when(Some(event.received_at))) }
            dt { "Processed" } dd { (when(event.processed_at)) }
        }
        @if replayable && viewer.operator() {
            form.action method="post" action={ "/console/events/" (layout::segment(&event.id)) "/replay" } {
                h3 { "Replay" }
                (common(&viewer))
                (reason_field())
                button type="submit" { "Replay this event" }
            }
        }
        h2 { "Payload" }
        pre.payload { (payload) }
    };
    Ok(layout::page(&viewer, &format!("Event {}", event.id), body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn replay(
    State(state): State<ConsoleState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ReplayForm>,
) -> Result<Response, ConsoleError> {
    let (reason, key) = checked(&state, &session, &form.csrf, &form.key, &form.reason)?;
    let event = state
        .inner
        .events
        .find(&id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("stripe event {id} not found")))?;
    let report = state.inner.billing.replay(&event.payload).await?;
    let entry = AuditEntry {
        actor: session.user.clone(),
        role: session.role,
        action: "replay_event",
        account_id: report.account_id.clone(),
        reason: reason.as_str().to_owned(),
        details: json!({
            "event_id": event.id,
            "before": event.outcome.as_str(),
            "outcome": report.outcome.as_str(),
            "credits": report.credits,
            "detail": report.detail,
        }),
        key: key.as_str().to_owned(),
    };
    state.inner.audit.record(entry).await?;
    let message = format!("Replayed: {}", report.outcome.as_str());
    let path = format!(
        "/console/events/{}?done={}",
        layout::segment(&event.id),
        layout::segment(&message)
    );
    Ok(see_other(&path, None))
}
