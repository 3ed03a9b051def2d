//! Periodic jobs shared by replicas: a lease row per job keeps each to one replica at a time,
//! on SQLite and PostgreSQL alike, and a crashed holder's lease simply runs out.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

use crate::entities::job_lock;

/// The leases of periodic jobs, over the read pool.
#[derive(Clone)]
pub(crate) struct Leases {
    db: DatabaseConnection,
}

impl Leases {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Takes the lease on `job` for `ttl` unless another holder's lease is still running.
    pub(crate) async fn take(&self, job: &str, holder: &str, ttl: Duration) -> Result<bool, DbErr> {
        try_lock(&self.db, job, holder, ttl).await
    }

    /// Ends `holder`'s lease on `job` early.
    pub(crate) async fn release(&self, job: &str, holder: &str) -> Result<(), DbErr> {
        unlock(&self.db, job, holder).await
    }
}

/// Takes the lease on `job` for `ttl` unless another holder's lease is still running.
pub async fn try_lock<C: ConnectionTrait>(
    db: &C,
    job: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, DbErr> {
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
pub async fn unlock<C: ConnectionTrait>(db: &C, job: &str, holder: &str) -> Result<(), DbErr> {
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
