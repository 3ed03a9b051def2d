//! The audit log: every operator action, newest first (also shown per account).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use maud::{Markup, html};

use super::layout::{self, Viewer, when};
use crate::console::{audit::AuditLine, error::ConsoleError, session::Session, state::ConsoleState};

/// Lines the audit page shows.
const LINES: u64 = 200;

pub(crate) async fn list(
    State(state): State<ConsoleState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    let lines = state.inner.audit.latest(None, LINES).await?;
    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    Ok(layout::page(&viewer, "Audit log", audit_table(&lines)).into_response())
}

/// Audit lines as a table.
pub(crate) fn audit_table(lines: &[AuditLine]) -> Markup {
    html! {
        @if lines.is_empty() { p.empty { "No operator actions yet." } } @else {
            table.audit {
                thead { tr { th { "#" } th { "When" } th { "Who" } th { "Role" } th { "Action" } th { "Account" } th { "Reason" } th { "Details" } } }
                tbody { @for line in lines { tr {
                    td.num { (line.id) } td { (when(Some(line.at))) } td { (line.actor) } td { (line.role) }
                    td { (line.action) }
                    td { @if let Some(account) = &line.account_id { a href=(layout::account_path(account)) { (account) } } }
                    td { (line.reason) } td { code.payload { (line.details) } }
                } } }
            }
        }
    }
}
