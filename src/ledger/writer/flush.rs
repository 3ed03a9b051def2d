//! Writing what a batch changed: every book's accounts, lots, entries and holds, one set-wise
//! statement per kind of row. Entries come back with their ids, for the answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::BatchStats;
use crate::ledger::{
    book::capture_reference,
    commands::{Books, EntryIds},
    error::LedgerError,
    kinds::{EntryKind, HoldStatus},
    store::writes,
};

/// Writes every book's changes; returns the ids of the appended entries.
pub(super) async fn books(
    txn: &DatabaseTransaction,
    books: &Books,
    now: DateTime<Utc>,
) -> Result<(EntryIds, BatchStats), LedgerError> {
    let mut accounts = Vec::new();
    let (mut new_lots, mut changed_lots, mut new_holds, mut changed_holds, mut entries) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for book in books.values() {
        let changes = book.changes();
        accounts.extend(changes.account);
        new_lots.extend(changes.new_lots);
        changed_lots.extend(changes.changed_lots);
        new_holds.extend(changes.new_holds);
        changed_holds.extend(changes.changed_holds);
        entries.extend(changes.entries);
    }
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    writes::update_accounts(txn, &accounts, now).await?;
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
