//! An account's statement for a period: its balance before the period, every entry of the
//! period with the moves it made (oldest first), and its balance at the end, handed to a sink
//! row by row as pages of entries arrive.

use sea_orm::DatabaseConnection;

pub(crate) use super::StatementEntry;
use super::{PAGE, Period, ReportError, store};

/// Where a statement starts: the account and its balance before the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opening {
    pub account_id: String,
    pub period: Period,
    /// `balance_after` of the account's last entry before the period (0 without one).
    pub balance: i64,
}

/// Where a statement ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closing {
    /// `balance_after` of the period's last entry (the opening balance without one).
    pub balance: i64,
    pub entries: u64,
    /// Entries whose `balance_after − delta` is not the balance before them.
    pub breaks: u64,
}

/// What prints a statement as it streams.
pub(crate) trait StatementSink {
    fn opening(&mut self, opening: &Opening) -> std::io::Result<()>;
    fn entry(&mut self, entry: &StatementEntry) -> std::io::Result<()>;
    fn closing(&mut self, opening: &Opening, closing: &Closing) -> std::io::Result<()>;
}

/// Streams the statement of the account named (by id or email) into `sink`.
#[tracing::instrument(skip_all, fields(account = %account))]
pub(crate) async fn statement(
    db: &DatabaseConnection,
    account: &str,
    period: Period,
    sink: &mut impl StatementSink,
) -> Result<Closing, ReportError> {
    let account_id = store::account_named(db, account)
        .await?
        .ok_or_else(|| ReportError::NoAccount(account.to_owned()))?;
    let opening = Opening {
        balance: store::balance_before(db, &account_id, period.from).await?,
        account_id,
        period,
    };
    sink.opening(&opening)?;
    let mut closing = Closing {
        balance: opening.balance,
        entries: 0,
        breaks: 0,
    };
    let mut after = 0;
    loop {
        let page = store::statement_page(db, &opening.account_id, period, after, PAGE).await?;
        for entry in &page {
            if entry.balance_after - entry.delta != closing.balance {
                closing.breaks += 1;
            }
            closing.balance = entry.balance_after;
            closing.entries += 1;
            sink.entry(entry)?;
        }
        let Some(last) = page.last() else { break };
        after = last.id;
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    sink.closing(&opening, &closing)?;
    Ok(closing)
}
