//! What can go wrong in the domain, in the terms callers act on. Each transport maps these once.

use sea_orm::DbErr;

use super::{kinds::HoldStatus, types::InvalidInput};

/// The ledger's error: a variant per thing a caller can act on, plus `Unexpected`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("{0} not found")]
    NotFound(String),
    #[error("email {0} belongs to another account")]
    EmailTaken(String),
    /// A debit or reservation asked for more than is available; nothing was written.
    #[error("not enough credits: {available} available, {asked} asked")]
    Insufficient { available: i64, asked: i64 },
    /// The account is not in a state that allows the change (the message says which).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The hold was already captured, released or expired.
    #[error("hold {hold_id} is {status}")]
    HoldClosed { hold_id: String, status: HoldStatus },
    /// The database did not answer: worth retrying.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] DbErr),
    /// The writer is not taking commands (the service is stopping): retry on another replica.
    #[error("the ledger writer is stopped")]
    WriterStopped,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl LedgerError {
    /// A passing fault: the same request may succeed later (503 / UNAVAILABLE).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::DatabaseUnavailable(_) | Self::WriterStopped => true,
            Self::InvalidInput(_)
            | Self::NotFound(_)
            | Self::EmailTaken(_)
            | Self::Insufficient { .. }
            | Self::FailedPrecondition(_)
            | Self::HoldClosed { .. }
            | Self::Unexpected(_) => false,
        }
    }
}

impl From<DbErr> for LedgerError {
    fn from(err: DbErr) -> Self {
        if crate::db::errors::is_transient(&err) {
            Self::DatabaseUnavailable(err)
        } else {
            Self::Unexpected(anyhow::Error::new(err).context("database query failed"))
        }
    }
}
