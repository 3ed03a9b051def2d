//! What can go wrong in the domain, in the terms callers act on. Each transport maps these once.

use sea_orm::{DbErr, RuntimeErr, sqlx};

use super::types::InvalidInput;
use crate::stripe::StripeError;

/// The domain's error: a variant per thing a caller can act on, plus `Unexpected`.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("{0} not found")]
    NotFound(String),
    #[error("email {0} belongs to another account")]
    EmailTaken(String),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    /// The database did not answer: worth retrying.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] DbErr),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<DbErr> for LedgerError {
    fn from(err: DbErr) -> Self {
        if is_transient(&err) {
            Self::DatabaseUnavailable(err)
        } else {
            Self::Unexpected(anyhow::Error::new(err).context("database query failed"))
        }
    }
}

/// Connection loss, pool exhaustion, lock timeouts and server shutdown: a retry may succeed.
pub fn is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: connection exceptions (08), operator intervention (57),
                // insufficient resources (53), serialization/deadlock (40).
                // SQLite: 5 BUSY, 6 LOCKED (and their extended codes).
                code.starts_with("08")
                    || code.starts_with("57")
                    || code.starts_with("53")
                    || code.starts_with("40")
                    || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
            }
            _ => false,
        },
        _ => false,
    }
}
