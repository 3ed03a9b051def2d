//! Reads over the pool: balances as of now, ledger pages and lots. A balance is one statement
//! in the common case; when a hold has run out unseen by the writer, the account's lots and
//! holds are read and the posting rules bring them to now, so no read counts an expired credit.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect,
};

use super::{account_state, hold, lot, metadata_from, moves_from, writes};
use crate::{
    db::sql::Sql,
    entities::{account, credit_hold, credit_ledger, credit_lot},
    ledger::{
        book::{AccountSettings, AccountState, AutoTopUp, Book, Lot, LotMove, Metadata, Then, burn_order},
        kinds::{EntryKind, HoldStatus},
        types::AccountRef,
    },
};

/// An account's balance as of a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Balance {
    pub account: AccountState,
    /// The balance without credits past their expiry.
    pub credit_balance: i64,
    /// What can be spent or reserved: `credit_balance - held_credits`, never below zero.
    pub available_balance: i64,
    pub held_credits: i64,
    /// The soonest expiry among lots with free credits left.
    pub next_expiry_at: Option<DateTime<Utc>>,
    /// How many free credits expire then.
    pub expiring_credits: i64,
}

/// One ledger entry as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryView {
    pub id: i64,
    pub account_id: String,
    pub delta: i64,
    pub balance_after: i64,
    pub kind: EntryKind,
    pub reason: String,
    pub reference: String,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    /// The lots (and debt) the entry moved.
    pub moves: Vec<LotMove>,
}

/// Every column of an account, as `account_from_row` reads them.
const ACCOUNT_COLUMNS: &str = "a.id, a.email, a.credit_balance, a.debt, a.is_trial_user, a.created_at, \
     a.low_balance_threshold, a.overdraft_limit, a.available_balance, a.stripe_customer_id, \
     a.payment_method_id, a.auto_top_up_enabled, a.auto_top_up_threshold, a.auto_top_up_pack_id, \
     a.auto_top_up_monthly_limit, a.auto_top_up_paused";

fn account_from_row(row: &QueryResult) -> Result<AccountState, DbErr> {
    Ok(AccountState {
        id: row.try_get("", "id")?,
        email: row.try_get("", "email")?,
        balance: row.try_get("", "credit_balance")?,
        debt: row.try_get("", "debt")?,
        is_trial_user: row.try_get("", "is_trial_user")?,
        created_at: row.try_get("", "created_at")?,
        last_available: row.try_get("", "available_balance")?,
        settings: AccountSettings {
            low_balance_threshold: row.try_get("", "low_balance_threshold")?,
            overdraft_limit: row.try_get("", "overdraft_limit")?,
            stripe_customer_id: row.try_get("", "stripe_customer_id")?,
            payment_method_id: row.try_get("", "payment_method_id")?,
            auto_top_up: AutoTopUp {
                enabled: row.try_get("", "auto_top_up_enabled")?,
                threshold: row.try_get("", "auto_top_up_threshold")?,
                pack_id: row.try_get("", "auto_top_up_pack_id")?,
                monthly_limit: row.try_get("", "auto_top_up_monthly_limit")?,
                paused: row.try_get("", "auto_top_up_paused")?,
            },
        },
    })
}

fn sum(expr: &str) -> String {
    // PostgreSQL sums BIGINTs as NUMERIC.
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

/// The account with its balance brought to `now`.
// Long on purpose: one read of account, lots and holds, brought to `now` as the book would.
pub(crate) async fn balance<C: ConnectionTrait>(
    db: &C,
    by: &AccountRef,
    now: DateTime<Utc>,
) -> Result<Option<Balance>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    let free = "l.remaining - l.held";
    sql.push(&format!("SELECT {ACCOUNT_COLUMNS}, "))
        .push(&format!("(SELECT {} FROM credit_holds h WHERE h.account_id = a.id AND h.status = ", sum("h.credits")))
        .param(HoldStatus::Active.as_str())
        .push(" AND h.expires_at > ")
        .param(now)
        .push(") AS held, (SELECT COUNT(*) FROM credit_holds h WHERE h.account_id = a.id AND h.status = ")
        .param(HoldStatus::Active.as_str())
        .push(" AND h.expires_at <= ")
        .param(now)
        .push(
            ") AS stale_holds, (SELECT COUNT(*) FROM credit_lots l WHERE l.account_id = a.id \
             AND l.remaining > l.held AND l.rollover_cap > 0 AND l.expires_at <= ",
        )
        .param(now)
        .push(&format!(
            ") AS due_rollovers, (SELECT {} FROM credit_lots l WHERE l.account_id = a.id AND l.remaining > l.held \
             AND l.expires_at <= ",
            sum(free)
        ))
        .param(now)
        .push(
            ") AS dead, (SELECT MIN(l.expires_at) FROM credit_lots l WHERE l.account_id = a.id \
             AND l.remaining > l.held AND l.expires_at > ",
        )
        .param(now)
        .push(") AS next_expiry FROM accounts a WHERE ");
    match by {
        AccountRef::Id(id) => sql.push("a.id = ").param(id.as_str()),
        AccountRef::Email(email) => sql.push("a.email = ").param(email.as_str()),
    };
    let Some(row) = db.query_one_raw(sql.build()).await? else {
        return Ok(None);
    };
    let account = account_from_row(&row)?;
    let stale_holds: i64 = row.try_get("", "stale_holds")?;
    let due_rollovers: i64 = row.try_get("", "due_rollovers")?;
    if stale_holds > 0 || due_rollovers > 0 {
        // A hold ran out, or an allowance is due to roll over, and nothing has written since:
        // see the book as the writer would.
        return Ok(Some(settled(db, account, now).await?));
    }
    let held: i64 = row.try_get("", "held")?;
    let dead: i64 = row.try_get("", "dead")?;
    let next_expiry_at: Option<DateTime<Utc>> = row.try_get("", "next_expiry")?;
    let expiring_credits = match next_expiry_at {
        Some(at) => expiring_at(db, &account.id, at).await?,
        None => 0,
    };
    let credit_balance = account.balance - dead;
    Ok(Some(Balance {
        // In debt nothing is available; it is never negative.
        available_balance: (credit_balance - held).max(0),
        credit_balance,
        held_credits: held,
        next_expiry_at,
        expiring_credits,
        account,
    }))
}

async fn expiring_at<C: ConnectionTrait>(db: &C, account_id: &str, at: DateTime<Utc>) -> Result<i64, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(&format!(
        "SELECT {} AS credits FROM credit_lots l WHERE l.account_id = ",
        sum("l.remaining - l.held")
    ))
    .param(account_id)
    .push(" AND l.remaining > l.held AND l.expires_at = ")
    .param(at);
    match db.query_one_raw(sql.build()).await? {
        Some(row) => row.try_get("", "credits"),
        None => Ok(0),
    }
}

/// The slow path: the account's lots and holds, settled to `now` by the posting rules.
async fn settled<C: ConnectionTrait>(
    db: &C,
    account: AccountState,
    now: DateTime<Utc>,
) -> Result<Balance, DbErr> {
    let ids = [account.id.as_str()];
    let lots = writes::live_lots(db, &ids).await?;
    let holds = writes::holds(db, &[], &ids).await?;
    let mut book = Book::load(account, lots, holds);
    book.settle(now);
    let held = book.held(now);
    let dead = book.dead(now);
    let next_expiry_at = book
        .lots()
        .iter()
        .filter(|l| !l.is_expired(now) && l.remaining > l.held)
        .filter_map(|l| l.expires_at)
        .min();
    let expiring_credits = book
        .lots()
        .iter()
        .filter(|l| next_expiry_at.is_some() && l.expires_at == next_expiry_at)
        .map(|l| l.remaining - l.held)
        .sum();
    let credit_balance = book.account.balance - dead;
    Ok(Balance {
        available_balance: book.available(now),
        credit_balance,
        held_credits: held,
        next_expiry_at,
        expiring_credits,
        account: book.account,
    })
}

pub(crate) async fn find_account<C: ConnectionTrait>(
    db: &C,
    by: &AccountRef,
) -> Result<Option<AccountState>, DbErr> {
    let query = match by {
        AccountRef::Id(id) => account::Entity::find_by_id(id.as_str()),
        AccountRef::Email(email) => account::Entity::find().filter(account::Column::Email.eq(email.as_str())),
    };
    Ok(query.one(db).await?.map(account_state))
}

/// The account whose saved card belongs to Stripe Customer `customer_id`.
pub(crate) async fn account_of_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<Option<String>, DbErr> {
    account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(account::Column::StripeCustomerId.eq(customer_id))
        .into_tuple::<String>()
        .one(db)
        .await
}

/// One page of an account's entries, newest first, strictly older than `before`.
pub(crate) async fn entries_page<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<EntryView>, DbErr> {
    let mut query = credit_ledger::Entity::find().filter(credit_ledger::Column::AccountId.eq(account_id));
    if let Some(before) = before {
        query = query.filter(credit_ledger::Column::Id.lt(before));
    }
    query
        .order_by_desc(credit_ledger::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|e| {
            Ok(EntryView {
                moves: moves_from(e.allocations.as_deref())?,
                kind: EntryKind::parse(&e.kind)
                    .ok_or_else(|| DbErr::Type(format!("entry kind {:?}", e.kind)))?,
                metadata: e
                    .metadata
                    .as_deref()
                    .map(metadata_from)
                    .transpose()?
                    .unwrap_or_default(),
                id: e.id,
                account_id: e.account_id,
                delta: e.delta,
                balance_after: e.balance_after,
                reason: e.reason,
                reference: e.reference,
                created_at: e.created_at,
            })
        })
        .collect()
}

/// An account's lots in burn order; spent ones too when asked.
pub(crate) async fn lots<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    include_spent: bool,
) -> Result<Vec<Lot>, DbErr> {
    let mut query = credit_lot::Entity::find().filter(credit_lot::Column::AccountId.eq(account_id));
    if !include_spent {
        query = query.filter(credit_lot::Column::Remaining.gt(0));
    }
    let mut lots = query
        .all(db)
        .await?
        .into_iter()
        .map(lot)
        .collect::<Result<Vec<_>, _>>()?;
    lots.sort_by(burn_order);
    Ok(lots)
}

/// An account as it stood at `at`: its balance then (the last entry written up to `at`) and
/// its lots and holds rewound from the moves of every entry written since.
pub(crate) async fn then<C: ConnectionTrait>(
    db: &C,
    account: AccountState,
    at: DateTime<Utc>,
) -> Result<Balance, DbErr> {
    let last = credit_ledger::Entity::find()
        .filter(credit_ledger::Column::AccountId.eq(account.id.as_str()))
        .filter(credit_ledger::Column::CreatedAt.lte(at))
        .order_by_desc(credit_ledger::Column::Id)
        .one(db)
        .await?;
    let balance_then = last.map_or(0, |e| e.balance_after);
    let then = rewound(db, &account.id, at).await?;
    let credit_balance = balance_then - then.dead();
    let (next_expiry_at, expiring_credits) = then.next_expiry();
    Ok(Balance {
        available_balance: (credit_balance - then.held).max(0),
        credit_balance,
        held_credits: then.held,
        next_expiry_at,
        expiring_credits,
        account,
    })
}

/// An account's lots as they stood at `at`, in burn order.
pub(crate) async fn lots_then<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Lot>, DbErr> {
    let mut lots = rewound(db, account_id, at).await?.lots;
    lots.sort_by(burn_order);
    Ok(lots)
}

/// The account's lots now, rewound by the moves of the entries written after `at`, with the
/// holds live then.
async fn rewound<C: ConnectionTrait>(db: &C, account_id: &str, at: DateTime<Utc>) -> Result<Then, DbErr> {
    let rows = credit_ledger::Entity::find()
        .select_only()
        .column(credit_ledger::Column::Allocations)
        .filter(credit_ledger::Column::AccountId.eq(account_id))
        .filter(credit_ledger::Column::CreatedAt.gt(at))
        .into_tuple::<Option<String>>()
        .all(db)
        .await?;
    let mut later = Vec::new();
    for raw in rows {
        later.extend(moves_from(raw.as_deref())?);
    }
    let holds = credit_hold::Entity::find()
        .filter(credit_hold::Column::AccountId.eq(account_id))
        .filter(credit_hold::Column::CreatedAt.lte(at))
        .filter(credit_hold::Column::ExpiresAt.gt(at))
        .all(db)
        .await?
        .into_iter()
        .map(hold)
        .collect::<Result<Vec<_>, _>>()?;
    let lots = self::lots(db, account_id, true).await?;
    Ok(Then::rewind(lots, &later, &holds, at))
}
