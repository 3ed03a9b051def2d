//! Periodic jobs shared by replicas: a lease row per job keeps each to one replica at a time,
//! on SQLite and PostgreSQL alike, and a crashed holder's lease simply runs out.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

use super::{LedgerError, fulfilment::EventOutcome};
use crate::entities::{job_lock, stripe_event};

/// Takes the lease on `job` for `ttl` unless another holder's lease is still running.
pub async fn try_lock<C: ConnectionTrait>(
    db: &C,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, LedgerError> {
    let now = Utc::now();
    job_lock::Entity::insert(job_lock::ActiveModel {
        name: Set(job.to_owned()),
        holder: Set(String::new()),
        locked_until: Set(now - chrono::Duration::seconds(1)),
    })
    .on_conflict(OnConflict::column(job_lock::Column::Name).do_nothing().to_owned())
    .try_insert()
    .exec_without_returning(db)
    .await?;
    let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
    let taken = job_lock::Entity::update_many()
        .col_expr(job_lock::Column::Holder, Expr::value(holder))
        .col_expr(job_lock::Column::LockedUntil, Expr::value(until))
        .filter(job_lock::Column::Name.eq(job))
        .filter(job_lock::Column::LockedUntil.lt(now))
        .exec(db)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// Ends `holder`'s lease on `job` early.
pub async fn unlock<C: ConnectionTrait>(db: &C, job: &str, holder: &str) -> Result<(), LedgerError> {
    job_lock::Entity::update_many()
        .col_expr(
            job_lock::Column::LockedUntil,
            Expr::value(Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(job_lock::Column::Name.eq(job))
        .filter(job_lock::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes processed events older than `days`, keeping unmatched and failed ones for replay.
pub async fn prune_events<C: ConnectionTrait>(db: &C, days: u32) -> Result<u64, LedgerError> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let keep = [
        EventOutcome::UnmatchedAccount.as_str(),
        EventOutcome::UnmatchedPack.as_str(),
        EventOutcome::Failed.as_str(),
        EventOutcome::AwaitingPurchase.as_str(),
    ];
    let result = stripe_event::Entity::delete_many()
        .filter(stripe_event::Column::ReceivedAt.lt(cutoff))
        .filter(stripe_event::Column::ProcessedAt.is_not_null())
        .filter(stripe_event::Column::Outcome.is_not_in(keep))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
