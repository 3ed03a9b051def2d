//! What one writer batch reads and writes, each a single statement whatever the batch's size.
//! Accounts are locked first (`FOR NO KEY UPDATE`, sorted by id, on PostgreSQL); everything
//! else an account owns (lots, holds, keys) is read after that lock, so it is read as committed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
    sea_query::LockType,
};

use super::{account_state, allocations_text, hold, lot, metadata_text, moves_text};
use crate::{
    db::sql::Sql,
    entities::{account, credit_hold, credit_lot},
    ledger::{
        book::{AccountState, Entry, Hold, Lot},
        kinds::{EntryKind, HoldStatus},
    },
};

/// An idempotency record: a key's first answer and the fingerprint of its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub account_id: String,
    pub operation: String,
    pub key: String,
    pub fingerprint: String,
    pub response: String,
}

/// Locks and reads the accounts named by id or by email, in id order.
pub(crate) async fn lock_accounts<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
    emails: &[&str],
) -> Result<Vec<AccountState>, DbErr> {
    accounts(db, ids, emails, true).await
}

/// Reads the accounts named by id or by email without locking them (to resolve who a Stripe
/// event is for, before the ledger locks anything).
pub(crate) async fn find_accounts<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
    emails: &[&str],
) -> Result<Vec<AccountState>, DbErr> {
    accounts(db, ids, emails, false).await
}

async fn accounts<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
    emails: &[&str],
    lock: bool,
) -> Result<Vec<AccountState>, DbErr> {
    if ids.is_empty() && emails.is_empty() {
        return Ok(Vec::new());
    }
    let mut which = Condition::any();
    if !ids.is_empty() {
        which = which.add(account::Column::Id.is_in(ids.iter().copied()));
    }
    if !emails.is_empty() {
        which = which.add(account::Column::Email.is_in(emails.iter().copied()));
    }
    let mut query = account::Entity::find()
        .filter(which)
        .order_by_asc(account::Column::Id);
    if lock {
        // Not `FOR UPDATE`: a row that references an account (a purchase a Stripe event
        // creates, before the ledger locks its accounts) takes `FOR KEY SHARE` on it, which
        // `FOR UPDATE` waits for, so two replicas' batches deadlocked. We never change an
        // account's id, and `FOR NO KEY UPDATE` still excludes every other writer.
        query = query.lock(LockType::NoKeyUpdate);
    }
    Ok(query.all(db).await?.into_iter().map(account_state).collect())
}

/// Which account each of these holds belongs to.
pub(crate) async fn hold_owners<C: ConnectionTrait>(
    db: &C,
    hold_ids: &[&str],
) -> Result<HashMap<String, String>, DbErr> {
    if hold_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = credit_hold::Entity::find()
        .select_only()
        .column(credit_hold::Column::Id)
        .column(credit_hold::Column::AccountId)
        .filter(credit_hold::Column::Id.is_in(hold_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Inserts accounts that do not exist yet; returns the ids inserted here. The rest clashed with
/// a row another writer created meanwhile, by id or by email (PostgreSQL checks a conflict
/// target only against committed rows, so any unique index may be the one that clashes).
pub(crate) async fn insert_accounts<C: ConnectionTrait>(
    db: &C,
    accounts: &[AccountState],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, DbErr> {
    if accounts.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO accounts (id, email, credit_balance, debt, is_trial_user, created_at, updated_at) VALUES ",
    )
    .rows(accounts, |a| {
        vec![
            a.id.clone().into(),
            a.email.clone().into(),
            0_i64.into(),
            0_i64.into(),
            a.is_trial_user.into(),
            a.created_at.into(),
            now.into(),
        ]
    })
    .push(" ON CONFLICT DO NOTHING RETURNING id");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter().map(|row| row.try_get::<String>("", "id")).collect()
}

/// The lots of these accounts that still hold credits, and bought lots whose expired credits a
/// refund may still account for.
pub(crate) async fn live_lots<C: ConnectionTrait>(db: &C, account_ids: &[&str]) -> Result<Vec<Lot>, DbErr> {
    if account_ids.is_empty() {
        return Ok(Vec::new());
    }
    credit_lot::Entity::find()
        .filter(credit_lot::Column::AccountId.is_in(account_ids.iter().copied()))
        .filter(
            Condition::any()
                .add(credit_lot::Column::Remaining.gt(0))
                .add(credit_lot::Column::Expired.gt(0)),
        )
        .all(db)
        .await?
        .into_iter()
        .map(lot)
        .collect()
}

/// The holds commands name, and every active hold of these accounts.
pub(crate) async fn holds<C: ConnectionTrait>(
    db: &C,
    hold_ids: &[&str],
    account_ids: &[&str],
) -> Result<Vec<Hold>, DbErr> {
    if hold_ids.is_empty() && account_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut which = Condition::any();
    if !hold_ids.is_empty() {
        which = which.add(credit_hold::Column::Id.is_in(hold_ids.iter().copied()));
    }
    if !account_ids.is_empty() {
        which = which.add(
            Condition::all()
                .add(credit_hold::Column::AccountId.is_in(account_ids.iter().copied()))
                .add(credit_hold::Column::Status.eq(HoldStatus::Active.as_str())),
        );
    }
    credit_hold::Entity::find()
        .filter(which)
        .all(db)
        .await?
        .into_iter()
        .map(hold)
        .collect()
}

/// The stored records of these `(account, operation, key)` triples.
pub(crate) async fn keys<C: ConnectionTrait>(
    db: &C,
    wanted: &[(String, String, String)],
) -> Result<Vec<KeyRecord>, DbErr> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT account_id, operation, key, fingerprint, response FROM idempotency_keys \
         WHERE (account_id, operation, key) IN (VALUES ",
    )
    .rows(wanted, |(a, o, k)| {
        vec![a.clone().into(), o.clone().into(), k.clone().into()]
    })
    .push(")");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| {
            Ok(KeyRecord {
                account_id: row.try_get("", "account_id")?,
                operation: row.try_get("", "operation")?,
                key: row.try_get("", "key")?,
                fingerprint: row.try_get("", "fingerprint")?,
                response: row.try_get("", "response")?,
            })
        })
        .collect()
}

/// Writes balances, debt, trial state, email and last available credits of changed accounts.
pub(crate) async fn update_accounts<C: ConnectionTrait>(
    db: &C,
    accounts: &[AccountState],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if accounts.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, email, balance, debt, trial, available) AS (VALUES ")
        .rows(accounts, |a| {
            vec![
                a.id.clone().into(),
                a.email.clone().into(),
                a.balance.into(),
                a.debt.into(),
                a.is_trial_user.into(),
                a.last_available.into(),
            ]
        })
        .push(
            ") UPDATE accounts SET email = v.email, credit_balance = v.balance, debt = v.debt, \
             is_trial_user = v.trial, available_balance = v.available, updated_at = ",
        )
        .param(now)
        .push(" FROM v WHERE accounts.id = v.id");
    db.execute_raw(sql.build()).await?;
    Ok(())
}

pub(crate) async fn insert_lots<C: ConnectionTrait>(db: &C, lots: &[Lot]) -> Result<(), DbErr> {
    if lots.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO credit_lots (id, account_id, source, reference, credits, remaining, held, expires_at, \
         created_at, value, value_remaining, currency, expired, rollover_cap, rollover_until) VALUES ",
    )
    .rows(lots, |l| {
        vec![
            l.id.clone().into(),
            l.account_id.clone().into(),
            l.source.as_str().into(),
            l.reference.clone().into(),
            l.credits.into(),
            l.remaining.into(),
            l.held.into(),
            l.expires_at.into(),
            l.created_at.into(),
            l.value.minor.into(),
            l.value_remaining.into(),
            l.value.currency.clone().into(),
            l.expired.into(),
            l.rollover.as_ref().map(|r| r.cap).into(),
            l.rollover.as_ref().map(|r| r.until).into(),
        ]
    });
    db.execute_raw(sql.build()).await?;
    Ok(())
}

pub(crate) async fn update_lots<C: ConnectionTrait>(db: &C, lots: &[Lot]) -> Result<(), DbErr> {
    if lots.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, remaining, held, value_remaining, expired, rollover_cap) AS (VALUES ")
        .rows(lots, |l| {
            vec![
                l.id.clone().into(),
                l.remaining.into(),
                l.held.into(),
                l.value_remaining.into(),
                l.expired.into(),
                l.rollover.as_ref().map(|r| r.cap).into(),
            ]
        })
        .push(
            ") UPDATE credit_lots SET remaining = v.remaining, held = v.held, value_remaining = v.value_remaining, \
             expired = v.expired, rollover_cap = v.rollover_cap FROM v WHERE credit_lots.id = v.id",
        );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

pub(crate) async fn insert_holds<C: ConnectionTrait>(db: &C, holds: &[Hold]) -> Result<(), DbErr> {
    if holds.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO credit_holds (id, account_id, credits, status, expires_at, allocations, reason, metadata, \
         captured_credits, capture_entry_id, created_at, closed_at) VALUES ",
    )
    .rows(holds, |h| {
        vec![
            h.id.clone().into(),
            h.account_id.clone().into(),
            h.credits.into(),
            h.status.as_str().into(),
            h.expires_at.into(),
            allocations_text(h).into(),
            h.reason.clone().into(),
            metadata_text(&h.metadata).unwrap_or_else(|| "{}".to_owned()).into(),
            h.captured_credits.into(),
            Value::BigInt(None),
            h.created_at.into(),
            h.closed_at.into(),
        ]
    });
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Writes the status of changed holds; `capture_entries` names the entry each capture wrote.
pub(crate) async fn update_holds<C: ConnectionTrait>(
    db: &C,
    holds: &[Hold],
    capture_entries: &HashMap<String, i64>,
) -> Result<(), DbErr> {
    if holds.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, status, captured, entry, closed_at) AS (VALUES ")
        .rows(holds, |h| {
            vec![
                h.id.clone().into(),
                h.status.as_str().into(),
                h.captured_credits.into(),
                capture_entries.get(&h.id).copied().into(),
                h.closed_at.into(),
            ]
        })
        .push(
            ") UPDATE credit_holds SET status = v.status, captured_credits = v.captured, \
             capture_entry_id = v.entry, closed_at = v.closed_at FROM v WHERE credit_holds.id = v.id",
        );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Appends entries; returns each one's id by its unique `(account, kind, reference)`.
pub(crate) async fn insert_entries<C: ConnectionTrait>(
    db: &C,
    entries: &[Entry],
) -> Result<HashMap<(String, EntryKind, String), i64>, DbErr> {
    if entries.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO credit_ledger (account_id, delta, balance_after, kind, reason, reference, metadata, \
         created_at, allocations) VALUES ",
    )
    .rows(entries, |e| {
        vec![
            e.account_id.clone().into(),
            e.delta.into(),
            e.balance_after.into(),
            e.kind.as_str().into(),
            e.reason.clone().into(),
            e.reference.clone().into(),
            metadata_text(&e.metadata).into(),
            e.created_at.into(),
            moves_text(&e.moves).into(),
        ]
    })
    .push(" RETURNING id, account_id, kind, reference");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("", "kind")?;
            let kind = EntryKind::parse(&kind).ok_or_else(|| DbErr::Type(format!("entry kind {kind:?}")))?;
            Ok((
                (
                    row.try_get("", "account_id")?,
                    kind,
                    row.try_get("", "reference")?,
                ),
                row.try_get("", "id")?,
            ))
        })
        .collect()
}

pub(crate) async fn insert_keys<C: ConnectionTrait>(
    db: &C,
    records: &[KeyRecord],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO idempotency_keys (account_id, operation, key, fingerprint, response, created_at) VALUES ",
    )
    .rows(records, |r| {
        vec![
            r.account_id.clone().into(),
            r.operation.clone().into(),
            r.key.clone().into(),
            r.fingerprint.clone().into(),
            r.response.clone().into(),
            now.into(),
        ]
    });
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Accounts with lots past their expiry that still hold credits (for the sweep).
pub(crate) async fn accounts_with_due_lots<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    credit_lot::Entity::find()
        .select_only()
        .column(credit_lot::Column::AccountId)
        .distinct()
        .filter(credit_lot::Column::ExpiresAt.lte(now))
        .filter(credit_lot::Column::Remaining.gt(0))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// Accounts with active holds past their time to live (for the sweep).
pub(crate) async fn accounts_with_stale_holds<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    credit_hold::Entity::find()
        .select_only()
        .column(credit_hold::Column::AccountId)
        .distinct()
        .filter(credit_hold::Column::Status.eq(HoldStatus::Active.as_str()))
        .filter(credit_hold::Column::ExpiresAt.lte(now))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}
