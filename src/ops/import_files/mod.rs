//! Bringing accounts and purchases over from the Django app (`credits import`): the files are
//! read into rows (`rows`), each row checked into a ledger command or a purchase (`accounts`,
//! `purchases`), and the rows that passed are handed to the writer many at a time, so they
//! commit in its batches. Every row gets its own result: a bad one does not stop the rest.

pub(crate) mod accounts;
pub(crate) mod purchases;
pub(crate) mod rows;

use std::collections::HashMap;

pub(crate) use rows::ImportFileError;

/// Rows handed to the writer at once: enough to fill its batches back to back.
const IN_FLIGHT: usize = 512;
/// Rows read together in a dry run or a reference check.
const CHUNK: usize = 500;

/// What became of one row of an import file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowReport<T> {
    pub line: usize,
    /// The account id or session id the row names, when it could be read.
    pub key: Option<String>,
    pub result: Result<T, String>,
}

/// Every row of a file, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportReport<T> {
    pub rows: Vec<RowReport<T>>,
    pub dry_run: bool,
}

/// Files a checked row: queued for the writer, its report a placeholder its answer replaces, or
/// reported refused.
fn queue_row<T, C>(
    reports: &mut Vec<RowReport<T>>,
    queued: &mut Vec<(usize, C)>,
    line: usize,
    key: Option<String>,
    checked: Result<C, String>,
) {
    let result = match checked {
        Ok(row) => {
            queued.push((reports.len(), row));
            Err(String::new())
        }
        Err(why) => Err(why),
    };
    reports.push(RowReport { line, key, result });
}

/// Refuses a row whose key an earlier row of the file already has.
fn first_of_each(
    seen: &mut HashMap<String, usize>,
    field: &str,
    key: &str,
    line: usize,
) -> Result<(), String> {
    match seen.get(key) {
        Some(first) => Err(format!("{field}: {key} is on line {first} already")),
        None => {
            seen.insert(key.to_owned(), line);
            Ok(())
        }
    }
}
