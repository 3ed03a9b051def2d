//! Reports finance closes the books with, read from the ledger's entries and their moves:
//! the liability report of a period (what was sold, consumed, expired, clawed back, and what is
//! still owed at both ends) and an account's statement. Both stream the entries in pages by id
//! (keyset), so memory stays constant whatever the ledger's size.
//!
//! - `liability`: the report's arithmetic, pure (per-currency accumulators, the identity).
//! - `statement`: an account's statement, handed out row by row.
//! - `store`: the paged reads of `credit_ledger` (and the account a statement names).

pub(crate) mod liability;
pub(crate) mod statement;
mod store;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use crate::ledger::{book::LotMove, kinds::EntryKind};
pub(crate) use liability::Liability;

/// One entry of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatementEntry {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub kind: EntryKind,
    pub delta: i64,
    pub balance_after: i64,
    pub reason: String,
    pub reference: String,
    /// `None`: written before entries kept their moves.
    pub moves: Option<Vec<LotMove>>,
}

/// Entries read per query.
const PAGE: u64 = 10_000;

/// A report's period: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Default for Period {
    fn default() -> Self {
        Self {
            from: DateTime::<Utc>::MIN_UTC,
            to: DateTime::<Utc>::MAX_UTC,
        }
    }
}

impl Period {
    /// A period that ends after it starts.
    pub(crate) fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, ReportError> {
        if from >= to {
            return Err(ReportError::EmptyPeriod);
        }
        Ok(Self { from, to })
    }
}

/// One ledger entry as the liability report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flow {
    pub kind: EntryKind,
    pub created_at: DateTime<Utc>,
    pub delta: i64,
    /// `None`: written before entries kept their moves.
    pub moves: Option<Vec<LotMove>>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("--from must be before --to")]
    EmptyPeriod,
    #[error("no account with id or email {0:?}")]
    NoAccount(String),
    #[error("reading the ledger")]
    Database(#[from] DbErr),
    /// The reader (stdout) went away or failed.
    #[error("writing the report")]
    Output(#[from] std::io::Error),
}

/// Reads every entry before the period's end, page by page, into the liability report.
#[tracing::instrument(skip_all)]
pub(crate) async fn liability(db: &DatabaseConnection, period: Period) -> Result<Liability, ReportError> {
    let mut report = Liability::new(period);
    let mut after = 0;
    loop {
        let page = store::flows(db, after, period.to, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (_, flow) in &page {
            report.add(flow);
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    Ok(report)
}
