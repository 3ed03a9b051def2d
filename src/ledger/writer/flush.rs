//! Writing what a batch changed: every book's accounts, settings, lots, entries, holds and
//! top-up attempts, one set-wise statement per kind of row (entries come back with their ids,
//! for the answers); then, last, the batch's outbox: new top-up attempts and account events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::BatchStats;
use crate::ledger::{
    book::{Book, TopUpAttempt, capture_reference},
    commands::{Books, EntryIds},
    error::LedgerError,
    kinds::{EntryKind, EventType, HoldStatus},
    outbox::{NewEvent, Outbox},
    store::{self, outbox, writes},
};

/// Writes every book's changes; returns the ids of the appended entries.
pub(super) async fn books(
    txn: &DatabaseTransaction,
    books: &Books,
    now: DateTime<Utc>,
) -> Result<(EntryIds, BatchStats), LedgerError> {
    let (mut accounts, mut settings, mut top_ups) = (Vec::new(), Vec::new(), Vec::new());
    let (mut new_lots, mut changed_lots, mut new_holds, mut changed_holds, mut entries) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for book in books.values() {
        let changes = book.changes();
        if changes.settings_changed {
            settings.extend(changes.account.clone());
        }
        accounts.extend(changes.account);
        top_ups.extend(changes.changed_top_ups);
        new_lots.extend(changes.new_lots);
        changed_lots.extend(changes.changed_lots);
        new_holds.extend(changes.new_holds);
        changed_holds.extend(changes.changed_holds);
        entries.extend(changes.entries);
    }
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    writes::update_accounts(txn, &accounts, now).await?;
    settings.sort_by(|a, b| a.id.cmp(&b.id));
    outbox::update_settings(txn, &settings, now).await?;
    outbox::update_top_ups(txn, &top_ups).await?;
    writes::insert_lots(txn, &new_lots).await?;
    writes::update_lots(txn, &changed_lots).await?;
    let ids = writes::insert_entries(txn, &entries).await?;
    let captures: HashMap<String, i64> = new_holds
        .iter()
        .chain(&changed_holds)
        .filter_map(|h| {
            let id = ids.get(&(
                h.account_id.clone(),
                EntryKind::Consumption,
                capture_reference(&h.id),
            ))?;
            Some((h.id.clone(), *id))
        })
        .collect();
    writes::insert_holds(txn, &new_holds).await?;
    writes::update_holds(txn, &changed_holds, &captures).await?;
    let mut stats = BatchStats::default();
    for entry in &entries {
        *stats.credits.entry(entry.kind).or_default() += entry.delta.unsigned_abs();
    }
    for hold in new_holds.iter().chain(&changed_holds) {
        if new_holds.iter().any(|h| h.id == hold.id) && changed_holds.iter().all(|h| h.id != hold.id) {
            *stats.holds.entry("reserved").or_default() += 1;
        }
        if hold.status != HoldStatus::Active {
            *stats.holds.entry(hold.status.as_str()).or_default() += 1;
        }
    }
    Ok((EntryIds::new(ids), stats))
}

/// Writes the batch's outbox, last in its transaction: the top-up attempts its books started
/// and crossings planned (each account keeps at most one in flight), then the events, with one
/// `top_up.started` for each attempt inserted. Returns how many events were written.
pub(super) async fn outbox(
    txn: &DatabaseTransaction,
    books: &[&Book],
    planned: Outbox,
    now: DateTime<Utc>,
) -> Result<(usize, usize), LedgerError> {
    let mut attempts: Vec<TopUpAttempt> = books
        .iter()
        .flat_map(|book| book.changes().new_top_ups)
        .chain(planned.top_ups)
        .collect();
    attempts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    let inserted = store::outbox::insert_top_ups(txn, &attempts).await?;
    let mut events = planned.events;
    for attempt in attempts.iter().filter(|a| inserted.contains(&a.id)) {
        let Some(book) = books.iter().find(|b| b.account.id == attempt.account_id) else {
            continue;
        };
        let position = events
            .iter()
            .rposition(|e| e.account_id == attempt.account_id)
            .map_or(events.len(), |p| p + 1);
        events.insert(position, started_event(book, attempt, now));
    }
    store::outbox::insert_events(txn, &events).await?;
    Ok((events.len(), inserted.len()))
}

fn started_event(book: &Book, attempt: &TopUpAttempt, now: DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        account_id: attempt.account_id.clone(),
        kind: EventType::TopUpStarted,
        balance_after: book.account.balance,
        available_after: book.account.last_available.unwrap_or_default(),
        entry_id: None,
        payload: serde_json::json!({
            "attempt_id": attempt.id,
            "pack_id": attempt.pack_id,
            "attempt": attempt.number,
        }),
        created_at: now,
    }
}
