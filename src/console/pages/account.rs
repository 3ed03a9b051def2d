//! An account's page: balance, available, held, debt, trial, settings, lots, active holds,
//! purchases and subscriptions, the ledger with its allocations (paged), account events, the
//! audit lines, and (for operators) the actions.

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    actions,
    audit::audit_table,
    layout::{self, Viewer, when},
};
use crate::{
    console::{error::ConsoleError, session::Session, state::ConsoleState},
    ledger::{AccountId, AccountRef, EntryView, Listing, PageRequest, book::Lot},
};

/// Entries per ledger page; account events and audit lines shown.
const ENTRIES: i32 = 20;
const EVENTS: u64 = 50;
const AUDIT_LINES: u64 = 20;
const PURCHASES: u64 = 20;

#[derive(Deserialize)]
pub(crate) struct AccountQuery {
    /// The ledger page token (`next_page_token` of the page before).
    #[serde(default)]
    entries: String,
    /// Account events after this sequence.
    #[serde(default)]
    events_after: i64,
    /// What the last action did, shown on top.
    done: Option<String>,
}

pub(crate) async fn account(
    State(state): State<ConsoleState>,
    session: Session,
    Path(account): Path<String>,
    Query(query): Query<AccountQuery>,
) -> Result<Response, ConsoleError> {
    let inner = &state.inner;
    let id = AccountId::parse(&account).map_err(|e| ConsoleError::Invalid(e.to_string()))?;
    let by = AccountRef::Id(id.clone());
    let balance = inner.ledger.balance(&by).await?;
    let settings = inner.ledger.settings(&by).await?;
    let lots = inner.ledger.lots(&by, false).await?;
    let holds = inner.ledger.active_holds(&by).await?;
    let page = PageRequest::parse(Listing::LedgerEntries, ENTRIES, &query.entries)
        .map_err(|e| ConsoleError::Invalid(e.to_string()))?;
    let entries = inner.ledger.entries(&by, &page).await?;
    let events = inner
        .ledger
        .account_events(Some(id.as_str()), query.events_after.max(0), EVENTS)
        .await?;
    let purchases = inner.billing.latest_purchases(id.as_str(), PURCHASES).await?;
    let subscriptions = inner.billing.subscriptions(&id).await?;
    let audit = inner.audit.latest(Some(id.as_str()), AUDIT_LINES).await?;

    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    let account = &balance.account;
    let path = layout::account_path(&account.id);
    let auto = &account.settings.auto_top_up;
    let body = html! {
        (layout::notice(query.done.as_deref()))
        section.summary {
            dl {
                dt { "Account" } dd { code { (account.id) } }
                dt { "Email" } dd { (account.email) }
                dt { "Balance" } dd.balance { (balance.credit_balance) }
                dt { "Available" } dd { (balance.available_balance) }
                dt { "Held" } dd { (balance.held_credits) }
                dt { "Debt" } dd { (account.debt) }
                dt { "Trial" } dd { @if account.is_trial_user { "yes" } @else { "no" } }
                dt { "Next expiry" } dd { @if balance.next_expiry_at.is_some() { (balance.expiring_credits) " on " (when(balance.next_expiry_at)) } @else { "—" } }
                dt { "Created" } dd { (when(Some(account.created_at))) }
            }
            dl {
                dt { "Low-balance alert" } dd { (account.settings.low_balance_threshold.map_or_else(|| "service default".to_owned(), |t| t.to_string())) }
                dt { "Overdraft limit" } dd { (account.settings.overdraft_limit) }
                dt { "Auto top-up" } dd {
                    @if auto.enabled { "on: below " (auto.threshold) ", pack " (auto.pack_id.as_deref().unwrap_or("—")) ", " (auto.monthly_limit) " a month" }
                    @else { "off" }
                    @if let Some(why) = &auto.paused { " (paused: " (why) ")" }
                }
                dt { "Stripe customer" } dd { (account.settings.stripe_customer_id.as_deref().unwrap_or("—")) }
                dt { "Saved card" } dd { @if account.settings.payment_method_id.is_some() { "yes" } @else { "no" } }
            }
        }
        @if viewer.operator() { (actions::forms(&viewer, &path, &account.settings)) }
        h2 { "Lots" }
        (lots_table(&lots))
        h2 { "Active holds" }
        @if holds.is_empty() { p.empty { "No active holds." } } @else {
            table {
                thead { tr { th { "Hold" } th { "Credits" } th { "Reason" } th { "Expires" } th { "Allocations" } @if viewer.operator() { th {} } } }
                tbody { @for hold in &holds { tr {
                    td { code { (hold.id) } } td.num { (hold.credits) } td { (hold.reason) } td { (when(Some(hold.expires_at))) }
                    td { @for a in &hold.allocations { code { (a.lot_id) } ": " (a.credits) br; } }
                    @if viewer.operator() { td { (actions::release_form(&viewer, &path, &hold.id)) } }
                } } }
            }
        }
        h2 { "Recent top-ups" }
        @if settings.recent_top_ups.is_empty() { p.empty { "No top-ups." } } @else {
            table {
                thead { tr { th { "Attempt" } th { "Pack" } th { "State" } th { "Amount" } th { "Credits" } th { "Error" } th { "Next step" } @if viewer.operator() { th {} } } }
                tbody { @for t in &settings.recent_top_ups { tr {
                    td { code { (t.id) } " #" (t.number) } td { (t.pack_id) } td { (t.state.as_str()) }
                    td.num { (t.amount.map(|a| a.to_string()).unwrap_or_default()) " " (t.currency.as_deref().unwrap_or("")) }
                    td.num { (t.credits.map(|c| c.to_string()).unwrap_or_default()) }
                    td { (t.error.as_deref().unwrap_or("")) } td { (when(Some(t.next_action_at))) }
                    @if viewer.operator() { td { @if actions::retryable(t.state) { (actions::top_up_retry_form(&viewer, &path, &t.id)) } } }
                } } }
            }
        }
        h2 { "Purchases" }
        @if purchases.is_empty() { p.empty { "No purchases." } } @else {
            table {
                thead { tr { th { "When" } th { "Status" } th { "Pack" } th { "Credits" } th { "Amount" } th { "Refunded" } th { "Session" } th { "Payment intent" } } }
                tbody { @for p in &purchases { tr {
                    td { (when(Some(p.completed_at.unwrap_or(p.created_at)))) } td { (p.status.as_str()) } td { (p.credit_pack_id) }
                    td.num { (p.credits) } td.num { (p.amount) " " (p.currency) } td.num { (p.amount_refunded) }
                    td { code { (p.session_id) } } td { code { (p.payment_intent_id.as_deref().unwrap_or("—")) } }
                } } }
            }
        }
        h2 { "Subscriptions" }
        @if subscriptions.is_empty() { p.empty { "No subscriptions." } } @else {
            table {
                thead { tr { th { "Subscription" } th { "Plan" } th { "Status" } th { "Period" } th { "Allowance" } th { "Cancels at end" } } }
                tbody { @for s in &subscriptions { tr {
                    td { code { (s.subscription.id) } } td { (s.plan_name) } td { (s.subscription.status.as_str()) }
                    td { (when(s.subscription.current_period_start)) " → " (when(s.subscription.current_period_end)) }
                    td.num { (s.period_allowance) } td { @if s.subscription.cancel_at_period_end { "yes" } @else { "no" } }
                } } }
            }
        }
        h2 id="ledger" { "Ledger" }
        (entries_table(&entries.entries))
        @if let Some(next) = &entries.next_page_token {
            p { a href={ (path) "?entries=" (layout::segment(next)) "#ledger" } { "Older entries →" } }
        }
        h2 id="events" { "Account events" }
        @if events.events.is_empty() { p.empty { "No events." } } @else {
            table {
                thead { tr { th { "#" } th { "When" } th { "Type" } th { "Balance after" } th { "Available after" } th { "Payload" } } }
                tbody { @for e in &events.events { tr {
                    td.num { (e.sequence) } td { (when(Some(e.created_at))) } td { (e.kind.as_str()) }
                    td.num { (e.balance_after) } td.num { (e.available_after) } td { code.payload { (e.payload) } }
                } } }
            }
            @if events.events.len() as u64 == EVENTS {
                p { a href={ (path) "?events_after=" (events.next_after) "#events" } { "Later events →" } }
            }
        }
        h2 { "Audit" }
        (audit_table(&audit))
    };
    Ok(layout::page(&viewer, &format!("Account {}", account.id), body).into_response())
}

fn lots_table(lots: &[Lot]) -> Markup {
    html! {
        @if lots.is_empty() { p.empty { "No lots with credits left." } } @else {
            table {
                thead { tr { th { "Lot" } th { "Source" } th { "Reference" } th { "Credits" } th { "Remaining" } th { "Held" } th { "Value" } th { "Expires" } } }
                tbody { @for lot in lots { tr {
                    td { code { (lot.id) } } td { (lot.source.as_str()) } td { code { (lot.reference) } }
                    td.num { (lot.credits) } td.num { (lot.remaining) } td.num { (lot.held) }
                    td.num { (lot.value.minor) " " (lot.value.currency.as_deref().unwrap_or("")) }
                    td { (when(lot.expires_at)) }
                } } }
            }
        }
    }
}

fn entries_table(entries: &[EntryView]) -> Markup {
    html! {
        @if entries.is_empty() { p.empty { "No entries." } } @else {
            table.ledger {
                thead { tr { th { "#" } th { "When" } th { "Kind" } th { "Reason" } th { "Delta" } th { "Balance" } th { "Reference" } th { "Allocations" } } }
                tbody { @for e in entries { tr {
                    td.num { (e.id) } td { (when(Some(e.created_at))) } td { (e.kind.as_str()) } td { (e.reason) }
                    td.num { (e.delta) } td.num { (e.balance_after) } td { code { (e.reference) } }
                    td.moves { @for m in &e.moves {
                        @match &m.lot_id { Some(lot) => { code { (lot) } }, None => { "debt" } }
                        ": " (m.credits) @if m.value != 0 { " (" (m.value) " " (m.currency.as_deref().unwrap_or("")) ")" } br;
                    } }
                } } }
            }
        }
    }
}
