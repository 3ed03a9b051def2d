//! Account-event deliveries to `NOTIFY_WEBHOOK_URL`: their state, and sending undelivered
//! ones again (as `credits notifications retry` does). Top-ups are on each account's page.

use axum::{
    Form,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::{
    actions::{checked, common},
    layout::{self, Viewer, when},
};
use crate::{
    console::{
        audit::AuditEntry, auth::see_other, error::ConsoleError, session::Session, state::ConsoleState,
    },
    notify::{DeliveryState, ListFilter, NotifyError},
};

/// Deliveries a listing shows.
const LISTED: u64 = 200;

impl From<NotifyError> for ConsoleError {
    fn from(err: NotifyError) -> Self {
        match err {
            NotifyError::Database(err) => err.into(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    state: String,
    done: Option<String>,
}

pub(crate) async fn list(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let filter = match query.state.as_str() {
        "failed" => ListFilter::Failed,
        "all" => ListFilter::All,
        _ => ListFilter::Pending,
    };
    let rows = state.inner.notifications.list(filter, None, LISTED).await?;
    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    let body = html! {
        (layout::notice(query.done.as_deref()))
        p.filters {
            a href="/console/notifications" { "Pending" } " · "
            a href="/console/notifications?state=failed" { "Given up" } " · "
            a href="/console/notifications?state=all" { "All" }
        }
        @if rows.is_empty() { p.empty { "Nothing here." } } @else {
            table {
                thead { tr { th { "Event" } th { "Account" } th { "Type" } th { "Created" } th { "State" } th { "Attempts" } th { "Next" } th { "Last error" } @if viewer.operator() { th {} } } }
                tbody { @for n in &rows { tr {
                    td { code { (n.id) } }
                    td { a href=(layout::account_path(&n.account_id)) { (n.account_id) } }
                    td { (n.kind.as_str()) } td { (when(Some(n.created_at))) }
                    td { span class={ "outcome " (n.state().as_str()) } { (n.state().as_str()) } }
                    td.num { (n.delivery.attempts) } td { (when(n.delivery.next_at)) }
                    td { (n.delivery.last_error.as_deref().unwrap_or("")) }
                    @if viewer.operator() { td {
                        @if n.state() != DeliveryState::Delivered {
                            form.inline method="post" action="/console/notifications/retry" {
                                (common(&viewer))
                                input type="hidden" name="event_id" value=(n.id);
                                input name="reason" required maxlength="64" placeholder="reason";
                                button type="submit" { "Retry" }
                            }
                        }
                    } }
                } } }
            }
        }
    };
    Ok(layout::page(&viewer, "Notifications", body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    event_id: String,
}

pub(crate) async fn retry(
    State(state): State<ConsoleState>,
    session: Session,
    Form(form): Form<RetryForm>,
) -> Result<Response, ConsoleError> {
    let (reason, key) = checked(&state, &session, &form.csrf, &form.key, &form.reason)?;
    let id = form.event_id.trim().to_owned();
    let report = state.inner.notifications.retry(std::slice::from_ref(&id)).await?;
    if !report.missing.is_empty() {
        return Err(ConsoleError::NotFound(format!("event {id} not found")));
    }
    let entry = AuditEntry {
        actor: session.user.clone(),
        role: session.role,
        action: "retry_notification",
        account_id: None,
        reason: reason.as_str().to_owned(),
        details: json!({ "event_id": id, "queued": !report.queued.is_empty() }),
        key: key.as_str().to_owned(),
    };
    state.inner.audit.record(entry).await?;
    let message = if report.queued.is_empty() {
        "Already delivered."
    } else {
        "Queued for delivery now."
    };
    Ok(see_other(
        &format!("/console/notifications?done={}", layout::segment(message)),
        None,
    ))
}
