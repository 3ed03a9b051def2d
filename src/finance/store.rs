//! The reports' reads of `credit_ledger` (and `accounts`, to name a statement's account): pages
//! of entries in id order after a given id (keyset), so a report holds one page at a time.
//! Rows leave as the reports' types.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{Flow, Period, StatementEntry};
use crate::{
    entities::{account, credit_ledger},
    ledger::{kinds::EntryKind, store::moves_from},
};

fn kind(raw: &str) -> Result<EntryKind, DbErr> {
    EntryKind::parse(raw)
        .ok_or_else(|| DbErr::Type(format!("credit_ledger.kind: unreadable stored value {raw:?}")))
}

/// Entries after id `after` created before `before`, at most `limit`, in id order.
pub(super) async fn flows(
    db: &DatabaseConnection,
    after: i64,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(i64, Flow)>, DbErr> {
    type Row = (i64, String, DateTime<Utc>, i64, Option<String>);
    let rows: Vec<Row> = credit_ledger::Entity::find()
        .select_only()
        .column(credit_ledger::Column::Id)
        .column(credit_ledger::Column::Kind)
        .column(credit_ledger::Column::CreatedAt)
        .column(credit_ledger::Column::Delta)
        .column(credit_ledger::Column::Allocations)
        .filter(credit_ledger::Column::Id.gt(after))
        .filter(credit_ledger::Column::CreatedAt.lt(before))
        .order_by_asc(credit_ledger::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter()
        .map(|(id, raw_kind, created_at, delta, allocations)| {
            Ok((
                id,
                Flow {
                    kind: kind(&raw_kind)?,
                    created_at,
                    delta,
                    moves: match allocations {
                        Some(raw) => Some(moves_from(Some(&raw))?),
                        None => None,
                    },
                },
            ))
        })
        .collect()
}

/// The id of the account with this id, or else with this email.
pub(super) async fn account_named(db: &DatabaseConnection, raw: &str) -> Result<Option<String>, DbErr> {
    let ids: Vec<String> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(
            Condition::any()
                .add(account::Column::Id.eq(raw))
                .add(account::Column::Email.eq(raw.to_lowercase())),
        )
        .into_tuple()
        .all(db)
        .await?;
    // An id may look like an email: the id wins.
    Ok(ids.iter().find(|id| *id == raw).or(ids.first()).cloned())
}

/// `balance_after` of the account's last entry created before `at` (0 without one).
pub(super) async fn balance_before(
    db: &DatabaseConnection,
    account_id: &str,
    at: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let last: Option<i64> = credit_ledger::Entity::find()
        .select_only()
        .column(credit_ledger::Column::BalanceAfter)
        .filter(credit_ledger::Column::AccountId.eq(account_id))
        .filter(credit_ledger::Column::CreatedAt.lt(at))
        .order_by_desc(credit_ledger::Column::Id)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(last.unwrap_or(0))
}

/// The account's entries of the period after id `after`, at most `limit`, in id order.
pub(super) async fn statement_page(
    db: &DatabaseConnection,
    account_id: &str,
    period: Period,
    after: i64,
    limit: u64,
) -> Result<Vec<StatementEntry>, DbErr> {
    let rows = credit_ledger::Entity::find()
        .filter(credit_ledger::Column::AccountId.eq(account_id))
        .filter(credit_ledger::Column::Id.gt(after))
        .filter(credit_ledger::Column::CreatedAt.gte(period.from))
        .filter(credit_ledger::Column::CreatedAt.lt(period.to))
        .order_by_asc(credit_ledger::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(StatementEntry {
                kind: kind(&row.kind)?,
                moves: match row.allocations {
                    Some(raw) => Some(moves_from(Some(&raw))?),
                    None => None,
                },
                id: row.id,
                created_at: row.created_at,
                delta: row.delta,
                balance_after: row.balance_after,
                reason: row.reason,
                reference: row.reference,
            })
        })
        .collect()
}
