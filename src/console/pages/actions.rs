//! Operator actions on an account, each with a required reason and a one-time key in the form
//! (a double submit acts once): grant credits, release a hold, change settings, pause auto
//! top-up, retry a top-up attempt now. Each goes through the same ledger or billing call as its RPC, then is audited.

use axum::{
    Form,
    extract::{Path, State},
    response::Response,
};
use chrono::{NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, Viewer};
use crate::{
    console::{
        audit::AuditEntry,
        auth::{Need, see_other},
        error::ConsoleError,
        session::{Session, random_id},
        state::ConsoleState,
    },
    ledger::{
        AccountId, AccountRef, Credits, HoldId, IdempotencyKey, InvalidInput, Reason,
        book::{AccountSettings, Metadata, TopUpStep},
        commands::{AutoTopUpChange, Grant, Release, SettingsChange, SettleTopUp},
        kinds::TopUpState,
    },
};

/// The fields every action form carries.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// The one-time key the form was rendered with.
    #[serde(default)]
    key: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    credits: String,
    /// `YYYY-MM-DD`: the grant expires at the start of that day (UTC); blank: never.
    #[serde(default)]
    expires_on: String,
    #[serde(default)]
    low_balance_threshold: String,
    #[serde(default)]
    overdraft_limit: String,
    /// A checkbox: present when ticked.
    auto_top_up: Option<String>,
    #[serde(default)]
    top_up_threshold: String,
    #[serde(default)]
    top_up_pack: String,
    #[serde(default)]
    top_up_monthly_limit: String,
}

/// The hidden fields and the reason every action form starts with.
pub(crate) fn common(viewer: &Viewer<'_>) -> Markup {
    html! {
        (viewer.csrf_field())
        input type="hidden" name="key" value=(random_id());
    }
}

pub(crate) fn reason_field() -> Markup {
    html! { label { "Reason" input name="reason" required maxlength="64" placeholder="why (kept in the audit log)"; } }
}

/// The action forms of an account's page.
pub(crate) fn forms(viewer: &Viewer<'_>, path: &str, settings: &AccountSettings) -> Markup {
    let auto = &settings.auto_top_up;
    html! {
        section.actions {
            form.action method="post" action={ (path) "/grant" } {
                h3 { "Grant credits" }
                (common(viewer))
                label { "Credits" input name="credits" type="number" min="1" required; }
                (reason_field())
                label { "Expires on (optional)" input name="expires_on" type="date"; }
                button type="submit" { "Grant" }
            }
            form.action method="post" action={ (path) "/settings" } {
                h3 { "Settings" }
                (common(viewer))
                label { "Low-balance alert" input name="low_balance_threshold" type="number" min="0" value=(settings.low_balance_threshold.map(|t| t.to_string()).unwrap_or_default()); }
                label { "Overdraft limit" input name="overdraft_limit" type="number" min="0" value=(settings.overdraft_limit); }
                label.check { input name="auto_top_up" type="checkbox" value="on" checked[auto.enabled]; "Auto top-up" }
                label { "below" input name="top_up_threshold" type="number" min="0" value=(auto.threshold); }
                label { "pack" input name="top_up_pack" value=(auto.pack_id.as_deref().unwrap_or("")); }
                label { "monthly limit (minor units)" input name="top_up_monthly_limit" type="number" min="0" value=(auto.monthly_limit); }
                (reason_field())
                button type="submit" { "Save settings" }
            }
            @if auto.enabled {
                form.action method="post" action={ (path) "/pause-top-up" } {
                    h3 { "Pause auto top-up" }
                    (common(viewer))
                    (reason_field())
                    button type="submit" { "Pause" }
                }
            }
        }
    }
}

/// The release button of one hold.
pub(crate) fn release_form(viewer: &Viewer<'_>, path: &str, hold_id: &str) -> Markup {
    html! {
        form.inline method="post" action={ (path) "/holds/" (layout::segment(hold_id)) "/release" } {
            (common(viewer))
            input name="reason" required maxlength="64" placeholder="reason";
            button type="submit" { "Release" }
        }
    }
}

/// Whether an attempt waits on its backoff, so that an operator may make it due now.
pub(crate) fn retryable(state: TopUpState) -> bool {
    matches!(
        state,
        TopUpState::Pending | TopUpState::Unknown | TopUpState::AwaitingPayment
    )
}

/// The retry button of one top-up attempt.
pub(crate) fn top_up_retry_form(viewer: &Viewer<'_>, path: &str, attempt_id: &str) -> Markup {
    html! {
        form.inline method="post" action={ (path) "/top-ups/" (layout::segment(attempt_id)) "/retry" } {
            (common(viewer))
            input name="reason" required maxlength="64" placeholder="reason";
            button type="submit" { "Retry now" }
        }
    }
}

fn invalid(err: InvalidInput) -> ConsoleError {
    ConsoleError::Invalid(err.to_string())
}

/// The checks every action passes: CSRF and role, then the reason and the one-time key.
pub(crate) fn checked(
    state: &ConsoleState,
    session: &Session,
    csrf: &str,
    key: &str,
    reason: &str,
) -> Result<(Reason, IdempotencyKey), ConsoleError> {
    state.authorize(session, csrf, Need::Operator)?;
    let reason = Reason::parse(reason).map_err(invalid)?;
    let well_formed = key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed {
        return Err(ConsoleError::Invalid(
            "the form's key is missing; reload the page".into(),
        ));
    }
    let key = IdempotencyKey::parse(&format!("console-{key}")).map_err(invalid)?;
    Ok((reason, key))
}

fn prepare(
    state: &ConsoleState,
    session: &Session,
    form: &ActionForm,
    account: &str,
) -> Result<(AccountId, Reason, IdempotencyKey), ConsoleError> {
    let (reason, key) = checked(state, session, &form.csrf, &form.key, &form.reason)?;
    let account = AccountId::parse(account).map_err(invalid)?;
    Ok((account, reason, key))
}

async fn audit(
    state: &ConsoleState,
    session: &Session,
    action: &'static str,
    account: &AccountId,
    reason: &Reason,
    key: &IdempotencyKey,
    details: serde_json::Value,
) -> Result<(), ConsoleError> {
    let entry = AuditEntry {
        actor: session.user.clone(),
        role: session.role,
        action,
        account_id: Some(account.as_str().to_owned()),
        reason: reason.as_str().to_owned(),
        details,
        key: key.as_str().to_owned(),
    };
    state.inner.audit.record(entry).await?;
    Ok(())
}

fn done(account: &AccountId, message: &str) -> Response {
    let path = layout::account_path(account.as_str());
    see_other(&format!("{path}?done={}", layout::segment(message)), None)
}

pub(crate) async fn grant(
    State(state): State<ConsoleState>,
    session: Session,
    Path(account): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let (account, reason, key) = prepare(&state, &session, &form, &account)?;
    let credits = form
        .credits
        .trim()
        .parse::<i64>()
        .map_err(|_| InvalidInput::new("credits", "must be a whole number"))
        .and_then(Credits::parse)
        .map_err(invalid)?;
    let expires_at = match form.expires_on.trim() {
        "" => None,
        day => Some(
            NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .ok_or_else(|| ConsoleError::Invalid("expires on: not a date".into()))?,
        ),
    };
    let metadata = Metadata::from([
        ("source".to_owned(), "console".to_owned()),
        ("operator".to_owned(), session.user.clone()),
    ]);
    let granted = state
        .inner
        .ledger
        .send(Grant {
            account: AccountRef::Id(account.clone()),
            credits,
            key: key.clone(),
            reason: reason.clone(),
            expires_at,
            metadata,
        })
        .await?;
    let details = json!({
        "credits": credits.get(),
        "expires_at": expires_at.map(|t| t.to_rfc3339()),
        "ledger_entry_id": granted.ledger_entry_id,
        "lot_id": granted.lot_id,
    });
    audit(&state, &session, "grant", &account, &reason, &key, details).await?;
    let message = if granted.replayed {
        "Already granted with this form: nothing changed.".to_owned()
    } else {
        format!("Granted {} credits.", credits.get())
    };
    Ok(done(&account, &message))
}

pub(crate) async fn release_hold(
    State(state): State<ConsoleState>,
    session: Session,
    Path((account, hold)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let (account, reason, key) = prepare(&state, &session, &form, &account)?;
    let hold_id = HoldId::parse(&hold).map_err(invalid)?;
    let holds = state
        .inner
        .ledger
        .active_holds(&AccountRef::Id(account.clone()))
        .await?;
    if !holds.iter().any(|h| h.id == hold_id.as_str()) {
        // A double submit: the first released it and was audited under this key.
        if state.inner.audit.has_key(key.as_str()).await? {
            return Ok(done(&account, "Hold released."));
        }
        return Err(ConsoleError::NotFound(format!(
            "no active hold {hold} on this account"
        )));
    }
    let released = state
        .inner
        .ledger
        .send(Release {
            hold_id: hold_id.clone(),
        })
        .await?;
    let details = json!({ "hold_id": hold_id.as_str(), "available_balance": released.available_balance });
    audit(&state, &session, "release_hold", &account, &reason, &key, details).await?;
    Ok(done(&account, "Hold released."))
}

/// A whole number from a form field; blank is `None`.
fn number(field: &'static str, raw: &str) -> Result<Option<i64>, ConsoleError> {
    match raw.trim() {
        "" => Ok(None),
        n => n
            .parse::<i64>()
            .map(Some)
            .map_err(|_| invalid(InvalidInput::new(field, "must be a whole number"))),
    }
}

pub(crate) async fn update_settings(
    State(state): State<ConsoleState>,
    session: Session,
    Path(account): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let (account, reason, key) = prepare(&state, &session, &form, &account)?;
    let change = SettingsChange {
        low_balance_threshold: number("low_balance_threshold", &form.low_balance_threshold)?,
        overdraft_limit: number("overdraft_limit", &form.overdraft_limit)?,
        auto_top_up: Some(AutoTopUpChange {
            enabled: form.auto_top_up.is_some(),
            threshold: number("auto_top_up.threshold", &form.top_up_threshold)?.unwrap_or(0),
            pack_id: form.top_up_pack.trim().to_owned(),
            monthly_limit: number("auto_top_up.monthly_limit", &form.top_up_monthly_limit)?.unwrap_or(0),
        }),
    };
    let asked = format!("{change:?}");
    let view = state
        .inner
        .billing
        .update_settings(AccountRef::Id(account.clone()), change)
        .await?;
    let details = json!({ "change": asked, "changed": view.changed });
    audit(
        &state,
        &session,
        "update_settings",
        &account,
        &reason,
        &key,
        details,
    )
    .await?;
    Ok(done(
        &account,
        if view.changed {
            "Settings saved."
        } else {
            "Settings unchanged."
        },
    ))
}

pub(crate) async fn pause_top_up(
    State(state): State<ConsoleState>,
    session: Session,
    Path(account): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let (account, reason, key) = prepare(&state, &session, &form, &account)?;
    let by = AccountRef::Id(account.clone());
    let current = state.inner.ledger.settings(&by).await?.settings.auto_top_up;
    // Off, with its threshold, pack and limit kept, so turning it back on is one tick.
    let change = SettingsChange {
        auto_top_up: Some(AutoTopUpChange {
            enabled: false,
            threshold: current.threshold,
            pack_id: current.pack_id.unwrap_or_default(),
            monthly_limit: current.monthly_limit,
        }),
        ..SettingsChange::default()
    };
    let view = state.inner.billing.update_settings(by, change).await?;
    let details = json!({ "changed": view.changed, "at": Utc::now().to_rfc3339() });
    audit(
        &state,
        &session,
        "pause_auto_top_up",
        &account,
        &reason,
        &key,
        details,
    )
    .await?;
    Ok(done(&account, "Auto top-up paused."))
}

/// A top-up attempt waiting on its backoff becomes due now: the worker takes its next step at its
/// next pass, with the attempt's own idempotency key (no second charge). Twice acts once.
pub(crate) async fn retry_top_up(
    State(state): State<ConsoleState>,
    session: Session,
    Path((account, attempt)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    let (account, reason, key) = prepare(&state, &session, &form, &account)?;
    if state.inner.audit.has_key(key.as_str()).await? {
        return Ok(done(&account, "Top-up due now."));
    }
    let settled = state
        .inner
        .ledger
        .send(SettleTopUp {
            account_id: account.as_str().to_owned(),
            attempt_id: attempt.clone(),
            step: TopUpStep::RunNow,
        })
        .await?;
    if !settled.applied {
        return Err(ConsoleError::Invalid(format!(
            "top-up attempt {attempt} is {}: only a pending, unknown or awaiting one can be retried",
            settled.state.as_str()
        )));
    }
    let details = json!({ "attempt_id": attempt, "state": settled.state.as_str() });
    audit(&state, &session, "retry_top_up", &account, &reason, &key, details).await?;
    Ok(done(
        &account,
        "Top-up due now: the worker takes its next step at its next pass.",
    ))
}
