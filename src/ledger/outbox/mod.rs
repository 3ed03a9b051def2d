//! Account events, planned from what a batch's books went through: one event per entry (by its
//! kind), per hold that ran out and per command's own signal; balance alerts where the
//! available credits crossed the account's threshold; and an auto top-up attempt where they
//! fell below its top-up threshold. Pure: the writer stores the plan in the batch's
//! transaction, so an event exists exactly when its change committed.
//!
//! The alert rule: with threshold `t > 0`, available credits are *above* (`≥ t`), *low*
//! (`0 < a < t`) or *depleted* (`≤ 0`). Going down from above emits `balance.low` (and
//! `balance.depleted` too when it lands at zero), from low to depleted `balance.depleted`;
//! coming back to above emits `balance.recovered`. Moving within a level emits nothing, so a
//! run of debits below the line emits no more alerts. Every change counts, a lot expiring or a
//! hold running out included; settings changes and signals do not move the balance.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    book::{Book, Entry, Happening, TopUpAttempt, What},
    commands::EntryIds,
    error::LedgerError,
    kinds::{EntryKind, EventType},
};

/// The service's side of the event rules.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutboxPolicy {
    /// Threshold of accounts that set none; 0: no balance alerts by default.
    pub low_balance_threshold: i64,
    /// Write `credits.consumed` events (one per debit).
    pub consumed_events: bool,
}

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub id: String,
    pub account_id: String,
    pub kind: EventType,
    pub balance_after: i64,
    pub available_after: i64,
    pub entry_id: Option<i64>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

impl NewEvent {
    fn new(
        book: &Book,
        kind: EventType,
        happening: &Happening,
        entry_id: Option<i64>,
        payload: Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            account_id: book.account.id.clone(),
            kind,
            balance_after: happening.balance_after,
            available_after: happening.available_after,
            entry_id,
            payload,
            created_at: now,
        }
    }
}

/// What a batch writes besides its rows: the events, in order per account, and the top-up
/// attempts crossings started.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub events: Vec<NewEvent>,
    pub top_ups: Vec<TopUpAttempt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Depleted,
    Low,
    Above,
}

fn level(available: i64, threshold: i64) -> Level {
    if available <= 0 {
        Level::Depleted
    } else if available < threshold {
        Level::Low
    } else {
        Level::Above
    }
}

/// The events and top-up attempts of `books` (in the order given), with the ids their entries
/// were stored under.
pub(crate) fn plan<'a>(
    books: impl IntoIterator<Item = &'a Book>,
    policy: OutboxPolicy,
    ids: &EntryIds,
    now: DateTime<Utc>,
) -> Result<Outbox, LedgerError> {
    let mut outbox = Outbox::default();
    for book in books {
        plan_book(book, policy, ids, now, &mut outbox)?;
    }
    Ok(outbox)
}

fn plan_book(
    book: &Book,
    policy: OutboxPolicy,
    ids: &EntryIds,
    now: DateTime<Utc>,
    outbox: &mut Outbox,
) -> Result<(), LedgerError> {
    let settings = &book.account.settings;
    let alert_at = settings
        .low_balance_threshold
        .unwrap_or(policy.low_balance_threshold);
    let top_up = settings
        .auto_top_up
        .running()
        .filter(|_| settings.payment_method_id.is_some());
    let mut before = book.available_before;
    let mut top_up_started = false;
    for happening in &book.happenings {
        // The entry the change wrote, if it wrote one: its alerts name it too.
        let mut caused_by = None;
        match &happening.what {
            What::Entry(n) => {
                let Some(entry) = book.entries.get(*n) else {
                    continue;
                };
                let id = ids.get(&(entry.account_id.clone(), entry.kind, entry.reference.clone()))?;
                caused_by = Some(id);
                if let Some((kind, payload)) = entry_event(book, entry, policy) {
                    outbox
                        .events
                        .push(NewEvent::new(book, kind, happening, Some(id), payload, now));
                }
            }
            What::Reserved => {}
            What::HoldExpired { hold_id, credits } => {
                let payload = json!({ "hold_id": hold_id, "credits": credits });
                outbox.events.push(NewEvent::new(
                    book,
                    EventType::HoldExpired,
                    happening,
                    None,
                    payload,
                    now,
                ));
            }
            What::Signal { kind, payload } => {
                outbox
                    .events
                    .push(NewEvent::new(book, *kind, happening, None, payload.clone(), now));
                // Turning auto top-up on below its threshold starts one at once.
                let started = *kind == EventType::SettingsChanged
                    && payload.get("auto_top_up_started") == Some(&Value::Bool(true));
                if let Some(pack_id) = top_up
                    && started
                    && !top_up_started
                    && happening.available_after < settings.auto_top_up.threshold
                {
                    top_up_started = true;
                    outbox
                        .top_ups
                        .push(TopUpAttempt::new(&book.account.id, pack_id, 1, now, now));
                }
                continue;
            }
        }
        let after = happening.available_after;
        let Some(was) = before.replace(after) else {
            // Nothing to compare with (a new account): this change sets the level.
            continue;
        };
        if alert_at > 0 {
            for &kind in crossings(level(was, alert_at), level(after, alert_at)) {
                let payload = json!({ "threshold": alert_at, "available_before": was });
                outbox
                    .events
                    .push(NewEvent::new(book, kind, happening, caused_by, payload, now));
            }
        }
        if let Some(pack_id) = top_up {
            let threshold = settings.auto_top_up.threshold;
            if !top_up_started && was >= threshold && after < threshold {
                top_up_started = true;
                outbox
                    .top_ups
                    .push(TopUpAttempt::new(&book.account.id, pack_id, 1, now, now));
            }
        }
    }
    Ok(())
}

/// The alerts of one change from level `was` to `now`.
fn crossings(was: Level, now: Level) -> &'static [EventType] {
    match (was, now) {
        (Level::Above, Level::Low) => &[EventType::BalanceLow],
        (Level::Above, Level::Depleted) => &[EventType::BalanceLow, EventType::BalanceDepleted],
        (Level::Low, Level::Depleted) => &[EventType::BalanceDepleted],
        (Level::Low | Level::Depleted, Level::Above) => &[EventType::BalanceRecovered],
        _ => &[],
    }
}

/// The event an entry makes, if any, with its payload.
fn entry_event(book: &Book, entry: &Entry, policy: OutboxPolicy) -> Option<(EventType, Value)> {
    let credits = entry.delta.abs();
    let mut payload = json!({
        "credits": credits,
        "reason": entry.reason,
        "reference": entry.reference,
    });
    let source = entry
        .lot_id
        .as_deref()
        .and_then(|id| book.lots().iter().find(|l| l.id == id))
        .map(|l| l.source);
    if let (Some(lot_id), Value::Object(fields)) = (&entry.lot_id, &mut payload) {
        fields.insert("lot_id".into(), json!(lot_id));
        if let Some(source) = source {
            fields.insert("source".into(), json!(source.as_str()));
        }
    }
    if !entry.metadata.is_empty()
        && let Value::Object(fields) = &mut payload
    {
        fields.insert("metadata".into(), json!(entry.metadata));
    }
    let kind = match entry.kind {
        EntryKind::Purchase => EventType::CreditsPurchased,
        EntryKind::Grant | EntryKind::Trial | EntryKind::Allowance => EventType::CreditsGranted,
        // Credits only change lots: the balance stays.
        EntryKind::Rollover => return None,
        EntryKind::Import => EventType::CreditsImported,
        EntryKind::Consumption if policy.consumed_events => EventType::CreditsConsumed,
        EntryKind::Consumption => return None,
        EntryKind::Refund | EntryKind::Dispute if entry.delta < 0 => EventType::CreditsClawedBack,
        EntryKind::Refund | EntryKind::Dispute => EventType::CreditsRestored,
        EntryKind::Expiry => EventType::LotExpired,
    };
    Some((kind, payload))
}

#[cfg(test)]
mod tests;
