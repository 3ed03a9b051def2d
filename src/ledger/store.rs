//! SeaORM queries and transactions. Every function takes the connection or transaction it runs
//! on, so the caller decides what is atomic.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Expr, OnConflict},
};

use super::{
    error::LedgerError,
    packs::PackSpec,
    types::{AccountId, AccountRef, Email},
};
use crate::entities::{account, credit_pack, credit_purchase};

/// Starts a read-write transaction. On SQLite it takes the write lock at `BEGIN`, so two writers
/// queue on the busy timeout instead of failing on a lock upgrade.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Loads the packs file's packs into the database in one transaction: all or nothing.
pub async fn store_pack_file(
    db: &DatabaseConnection,
    specs: &[PackSpec],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let txn = begin_write(db).await?;
    upsert_packs(&txn, specs, now).await?;
    txn.commit().await
}

/// Proves the database would accept a write right now (on SQLite: that its write lock can be
/// taken), then rolls back.
pub async fn probe_writable(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = begin_write(db).await?;
    txn.execute_unprepared("SELECT 1").await?;
    txn.rollback().await
}

/// Makes the database's packs match the file: upserts each, deactivates the rest. A price id
/// set by `packs sync` survives a file that has none; a price the file pins moves to the pack
/// that pins it, so packs may trade pinned prices. Run it inside one transaction.
pub async fn upsert_packs<C: ConnectionTrait>(
    db: &C,
    specs: &[PackSpec],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // Release every pinned price first: the unique index would refuse a swap done row by row.
    let pinned: Vec<&str> = specs
        .iter()
        .filter_map(|s| s.stripe_price_id.as_deref())
        .collect();
    if !pinned.is_empty() {
        credit_pack::Entity::update_many()
            .col_expr(
                credit_pack::Column::StripePriceId,
                Expr::value(Option::<String>::None),
            )
            .filter(credit_pack::Column::StripePriceId.is_in(pinned))
            .exec(db)
            .await?;
    }
    for spec in specs {
        let model = credit_pack::ActiveModel {
            id: Set(spec.id.clone()),
            name: Set(spec.name.clone()),
            credits: Set(spec.credits),
            unit_amount: Set(spec.unit_amount),
            currency: Set(spec.currency.clone()),
            stripe_price_id: Set(spec.stripe_price_id.clone()),
            active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        };
        credit_pack::Entity::insert(model)
            .on_conflict(
                OnConflict::column(credit_pack::Column::Id)
                    .update_columns([
                        credit_pack::Column::Name,
                        credit_pack::Column::Credits,
                        credit_pack::Column::UnitAmount,
                        credit_pack::Column::Currency,
                        credit_pack::Column::Active,
                        credit_pack::Column::UpdatedAt,
                    ])
                    .value(
                        credit_pack::Column::StripePriceId,
                        Expr::cust("COALESCE(excluded.stripe_price_id, credit_packs.stripe_price_id)"),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    credit_pack::Entity::update_many()
        .col_expr(credit_pack::Column::Active, Expr::value(false))
        .col_expr(credit_pack::Column::UpdatedAt, Expr::value(now))
        .filter(credit_pack::Column::Id.is_not_in(ids))
        .filter(credit_pack::Column::Active.eq(true))
        .exec(db)
        .await?;
    Ok(())
}

/// Packs that can be bought, cheapest first.
pub async fn active_packs<C: ConnectionTrait>(db: &C) -> Result<Vec<credit_pack::Model>, DbErr> {
    credit_pack::Entity::find()
        .filter(credit_pack::Column::Active.eq(true))
        .order_by_asc(credit_pack::Column::UnitAmount)
        .order_by_asc(credit_pack::Column::Id)
        .all(db)
        .await
}

/// Every pack, active or not.
pub async fn all_packs<C: ConnectionTrait>(db: &C) -> Result<Vec<credit_pack::Model>, DbErr> {
    credit_pack::Entity::find()
        .order_by_asc(credit_pack::Column::Id)
        .all(db)
        .await
}

/// The pack sold under a Stripe price, active or not (old sessions may name retired packs).
pub async fn pack_by_price<C: ConnectionTrait>(
    db: &C,
    price_id: &str,
) -> Result<Option<credit_pack::Model>, DbErr> {
    credit_pack::Entity::find()
        .filter(credit_pack::Column::StripePriceId.eq(price_id))
        .one(db)
        .await
}

pub async fn pack_by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<credit_pack::Model>, DbErr> {
    credit_pack::Entity::find_by_id(id).one(db).await
}

pub async fn find_account<C: ConnectionTrait>(
    db: &C,
    by: &AccountRef,
) -> Result<Option<account::Model>, DbErr> {
    match by {
        AccountRef::Id(id) => account::Entity::find_by_id(id.as_str()).one(db).await,
        AccountRef::Email(email) => {
            account::Entity::find()
                .filter(account::Column::Email.eq(email.as_str()))
                .one(db)
                .await
        }
    }
}

/// Returns the account, creating it (trial, zero balance) on first sight and following an
/// email change, unless the email is another account's. Two first calls for one new account
/// racing each other both succeed: the insert yields to an existing row with the same id, and
/// only a clash on the email index means the email is taken.
pub async fn ensure_account<C: ConnectionTrait>(
    db: &C,
    id: &AccountId,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<account::Model, LedgerError> {
    let existing = account::Entity::find_by_id(id.as_str()).one(db).await?;
    if let Some(account) = &existing
        && account.email == email.as_str()
    {
        return Ok(account.clone());
    }
    if let Some(holder) = find_account(db, &AccountRef::Email(email.clone())).await?
        && holder.id != id.as_str()
    {
        return Err(LedgerError::EmailTaken(email.to_string()));
    }
    let result = match existing {
        Some(_) => account::Entity::update_many()
            .col_expr(account::Column::Email, Expr::value(email.as_str()))
            .col_expr(account::Column::UpdatedAt, Expr::value(now))
            .filter(account::Column::Id.eq(id.as_str()))
            .exec(db)
            .await
            .map(|_| ()),
        None => account::Entity::insert(account::ActiveModel {
            id: Set(id.to_string()),
            email: Set(email.to_string()),
            credit_balance: Set(0),
            is_trial_user: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(OnConflict::column(account::Column::Id).do_nothing().to_owned())
        .try_insert()
        .exec_without_returning(db)
        .await
        .map(|_| ()),
    };
    match result {
        Ok(()) => {}
        // Only the email index can still clash: another account took the email meanwhile.
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(LedgerError::EmailTaken(email.to_string()));
        }
        Err(err) => return Err(err.into()),
    }
    let account = account::Entity::find_by_id(id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| LedgerError::Unexpected(anyhow::anyhow!("account {id} vanished after upsert")))?;
    if account.email != email.as_str() {
        // A concurrent first call created it with another email: follow the newer one.
        return Box::pin(ensure_account(db, id, email, now)).await;
    }
    Ok(account)
}

pub async fn purchase_by_idempotency_key<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    key: &str,
) -> Result<Option<credit_purchase::Model>, DbErr> {
    credit_purchase::Entity::find()
        .filter(credit_purchase::Column::AccountId.eq(account_id))
        .filter(credit_purchase::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

pub async fn purchase_by_session<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
) -> Result<Option<credit_purchase::Model>, DbErr> {
    credit_purchase::Entity::find()
        .filter(credit_purchase::Column::StripeCheckoutSessionId.eq(session_id))
        .one(db)
        .await
}

/// Inserts a purchase unless one with the same session (or idempotency key) exists; true when
/// this call inserted it.
pub async fn insert_purchase_if_new<C: ConnectionTrait>(
    db: &C,
    purchase: credit_purchase::Model,
) -> Result<bool, DbErr> {
    let active: credit_purchase::ActiveModel = purchase.into();
    let result = credit_purchase::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec_without_returning(db)
        .await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

/// One page of an account's purchases, newest first, strictly after the cursor id.
pub async fn purchases_page<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<credit_purchase::Model>, DbErr> {
    let mut query = credit_purchase::Entity::find().filter(credit_purchase::Column::AccountId.eq(account_id));
    if let Some(after) = after {
        query = query.filter(credit_purchase::Column::Id.lt(after));
    }
    query
        .order_by_desc(credit_purchase::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
