//! `credits import accounts FILE`: each row (`account_id`, `email`, `credit_balance`,
//! `is_trial_user`, optional `expires_at`) checked into an `Import` command, then applied
//! through the writer, or in a dry run read against the stored accounts.

use std::{collections::HashMap, path::Path};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};

use super::{
    CHUNK, IN_FLIGHT, ImportFileError, ImportReport, RowReport, first_of_each, queue_row,
    rows::{self, FieldError, Row},
};
use crate::ledger::{
    AccountId, Email, Extension, ImportedBalance, Ledger,
    commands::{ImportAccount, ImportOutcome},
};

/// How to import accounts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Record the difference when a stored account differs, instead of reporting it.
    pub adopt: bool,
    /// Read and report only.
    pub dry_run: bool,
}

/// Checks one row into its command.
fn command(row: &Row, adopt: bool, now: DateTime<Utc>) -> Result<ImportAccount, FieldError> {
    let expires_at = row.time("expires_at")?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(FieldError::new(
            "expires_at",
            "in the past: those credits have expired; export the balance without them",
        ));
    }
    Ok(ImportAccount {
        account_id: AccountId::parse(&row.text("account_id")?)?,
        email: Email::parse(&row.text("email")?)?,
        balance: ImportedBalance::parse(row.integer("credit_balance")?)?,
        is_trial_user: row.boolean("is_trial_user")?,
        expires_at,
        adopt,
    })
}

/// Imports the accounts in the file at `path`.
pub(crate) async fn import<X: Extension>(
    ledger: &Ledger<X>,
    path: &Path,
    options: Options,
) -> Result<ImportReport<ImportOutcome>, ImportFileError> {
    let rows = rows::read(path)?;
    let now = Utc::now();
    let mut reports: Vec<RowReport<ImportOutcome>> = Vec::with_capacity(rows.len());
    let mut commands: Vec<(usize, ImportAccount)> = Vec::with_capacity(rows.len());
    let (mut ids, mut emails) = (HashMap::new(), HashMap::new());
    for (line, row) in rows {
        let checked = row.and_then(|row| command(&row, options.adopt, now).map_err(|e| e.to_string()));
        let checked = checked.and_then(|c| {
            first_of_each(&mut ids, "account_id", c.account_id.as_str(), line)?;
            first_of_each(&mut emails, "email", c.email.as_str(), line)?;
            Ok(c)
        });
        let key = checked.as_ref().ok().map(|c| c.account_id.to_string());
        queue_row(&mut reports, &mut commands, line, key, checked);
    }
    if options.dry_run {
        for chunk in commands.chunks(CHUNK) {
            let imports: Vec<ImportAccount> = chunk.iter().map(|(_, c)| c.clone()).collect();
            let outcomes = match ledger.dry_run_imports(&imports).await {
                Ok(outcomes) => outcomes
                    .into_iter()
                    .map(|o| o.map_err(|e| e.to_string()))
                    .collect(),
                Err(err) => vec![Err(err.to_string()); chunk.len()],
            };
            for ((at, _), outcome) in chunk.iter().zip(outcomes) {
                reports[*at].result = outcome;
            }
        }
    } else {
        let answered: Vec<(usize, Result<ImportOutcome, String>)> = stream::iter(commands)
            .map(|(at, command)| async move { (at, ledger.send(command).await.map_err(|e| e.to_string())) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (at, result) in answered {
            reports[at].result = result;
        }
    }
    Ok(ImportReport {
        rows: reports,
        dry_run: options.dry_run,
    })
}
