//! Import files as rows: JSON Lines (`.jsonl`, `.ndjson`: one object per line) or CSV (`.csv`,
//! a header line naming the fields), told apart by the extension. Each row keeps its line
//! number; a row that cannot be read is one bad row, and the rest are still read. Values are
//! read leniently where exports differ: a number or its text, `true`/`false` or PostgreSQL's
//! `t`/`f`, an empty CSV cell or a JSON `null` for an absent optional field.

use std::{collections::HashMap, path::Path};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Why an import file cannot be read at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    #[error("{path}: unknown file type: name it .jsonl, .ndjson or .csv")]
    UnknownFormat { path: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unreadable CSV header: {reason}")]
    Header { path: String, reason: String },
}

/// A field that is missing or does not hold what it must: `field: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<crate::ledger::types::InvalidInput> for FieldError {
    fn from(err: crate::ledger::types::InvalidInput) -> Self {
        Self::new(err.field, err.reason)
    }
}

enum Cell {
    Json(Value),
    Text(String),
}

/// One row of an import file, by field name.
pub(crate) struct Row {
    cells: HashMap<String, Cell>,
}

/// A file's rows in order: each one read, or why its line could not be.
pub(crate) type Rows = Vec<(usize, Result<Row, String>)>;

/// Reads every row of the file at `path`.
pub(crate) fn read(path: &Path) -> Result<Rows, ImportFileError> {
    let name = path.display().to_string();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let read_error = |source| ImportFileError::Read {
        path: name.clone(),
        source,
    };
    match extension.as_deref() {
        Some("jsonl" | "ndjson") => Ok(json_lines(&std::fs::read_to_string(path).map_err(read_error)?)),
        Some("csv") => csv_rows(&name, std::fs::File::open(path).map_err(read_error)?),
        _ => Err(ImportFileError::UnknownFormat { path: name }),
    }
}

fn json_lines(text: &str) -> Rows {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let row = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(object)) => Ok(Row {
                    cells: object.into_iter().map(|(k, v)| (k, Cell::Json(v))).collect(),
                }),
                Ok(_) => Err("not a JSON object".to_owned()),
                Err(err) => Err(format!("not JSON: {err}")),
            };
            (n + 1, row)
        })
        .collect()
}

fn csv_rows(name: &str, file: impl std::io::Read) -> Result<Rows, ImportFileError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let headers = reader
        .headers()
        .map_err(|err| ImportFileError::Header {
            path: name.to_owned(),
            reason: err.to_string(),
        })?
        .clone();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line() as usize);
                let cells = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_owned(), Cell::Text(v.to_owned())))
                    .collect();
                rows.push((line, Ok(Row { cells })));
            }
            Err(err) => {
                let line = err.position().map_or(line, |p| p.line() as usize);
                rows.push((line, Err(format!("unreadable CSV record: {err}"))));
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

impl Row {
    /// The field as text; `None` when absent, null or empty.
    fn raw(&self, field: &str) -> Result<Option<String>, FieldError> {
        Ok(match self.cells.get(field) {
            None | Some(Cell::Json(Value::Null)) => None,
            Some(Cell::Text(text)) => Some(text.clone()),
            Some(Cell::Json(Value::String(text))) => Some(text.clone()),
            Some(Cell::Json(Value::Number(n))) => Some(n.to_string()),
            Some(Cell::Json(Value::Bool(b))) => Some(b.to_string()),
            Some(Cell::Json(_)) => return Err(FieldError::new(field, "must be a string, number or boolean")),
        }
        .filter(|t| !t.trim().is_empty()))
    }

    /// A field that must be there.
    pub(crate) fn text(&self, field: &str) -> Result<String, FieldError> {
        self.raw(field)?.ok_or_else(|| FieldError::new(field, "missing"))
    }

    pub(crate) fn optional_text(&self, field: &str) -> Result<Option<String>, FieldError> {
        self.raw(field)
    }

    /// A whole number, written as one or as its text.
    pub(crate) fn integer(&self, field: &str) -> Result<i64, FieldError> {
        let text = self.text(field)?;
        text.trim()
            .parse::<i64>()
            .map_err(|_| FieldError::new(field, format!("{text:?} is not a whole number")))
    }

    /// `true`/`false`, `t`/`f` (PostgreSQL), `1`/`0`, `yes`/`no`, in any case.
    pub(crate) fn boolean(&self, field: &str) -> Result<bool, FieldError> {
        let text = self.text(field)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Ok(true),
            "false" | "f" | "0" | "no" => Ok(false),
            _ => Err(FieldError::new(field, format!("{text:?} is not true or false"))),
        }
    }

    /// An RFC 3339 time (`2026-01-31T12:00:00Z`, any offset), when present.
    pub(crate) fn time(&self, field: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
        self.raw(field)?
            .map(|text| {
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|err| FieldError::new(field, format!("{text:?} is not an RFC 3339 time: {err}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_values(rows: &Rows, field: &str) -> Vec<Result<String, String>> {
        rows.iter()
            .map(|(_, row)| {
                row.as_ref()
                    .map_err(Clone::clone)
                    .and_then(|r| r.text(field).map_err(|e| e.to_string()))
            })
            .collect()
    }

    #[test]
    fn json_lines_keep_their_line_numbers_and_skip_blank_lines() {
        let rows = json_lines("{\"a\": 1}\n\n{\"a\": \"x\"}\n[1]\n{oops\n");
        let lines: Vec<usize> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        assert_eq!(
            field_values(&rows, "a")[..2],
            [Ok("1".to_owned()), Ok("x".to_owned())]
        );
        assert_eq!(
            rows[2].1.as_ref().err().map(String::as_str),
            Some("not a JSON object")
        );
        assert!(rows[3].1.as_ref().is_err_and(|e| e.starts_with("not JSON")));
    }

    #[test]
    fn csv_rows_are_numbered_by_the_line_they_start_on() {
        let text = "a,b\n1,\"two\nlines\"\n3,4\n5\n";
        let rows = csv_rows("t.csv", text.as_bytes()).expect("readable");
        let lines: Vec<usize> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert_eq!(
            field_values(&rows, "b")[..2],
            [Ok("two\nlines".to_owned()), Ok("4".to_owned())]
        );
        assert!(rows[2].1.is_err(), "a record with too few fields");
    }

    #[test]
    fn values_are_read_as_each_export_writes_them() {
        let rows = json_lines(concat!(
            "{\"n\": 5, \"b\": true, \"t\": \"2026-01-01T00:00:00+01:00\", \"e\": null}\n",
            "{\"n\": \"-7\", \"b\": \"f\", \"t\": \"\", \"e\": {}}\n",
            "{\"n\": 1.5, \"b\": \"maybe\", \"t\": \"yesterday\"}\n",
        ));
        let row = |n: usize| rows[n].1.as_ref().expect("row");
        assert_eq!(row(0).integer("n"), Ok(5));
        assert_eq!(row(0).boolean("b"), Ok(true));
        assert_eq!(
            row(0).time("t").map(|t| t.map(|t| t.to_rfc3339())),
            Ok(Some("2025-12-31T23:00:00+00:00".to_owned()))
        );
        assert_eq!(row(0).optional_text("e"), Ok(None));
        assert_eq!(row(1).integer("n"), Ok(-7));
        assert_eq!(row(1).boolean("b"), Ok(false));
        assert_eq!(row(1).time("t"), Ok(None), "empty means absent");
        assert!(row(1).text("e").is_err(), "an object is not a value");
        assert!(row(2).integer("n").is_err());
        assert!(row(2).boolean("b").is_err());
        assert!(row(2).time("t").is_err());
        assert_eq!(
            row(2).text("missing").map_err(|e| e.to_string()),
            Err("missing: missing".to_owned())
        );
    }

    #[test]
    fn the_extension_decides_the_format() {
        let err = read(Path::new("/nonexistent/accounts.txt")).err();
        assert!(matches!(err, Some(ImportFileError::UnknownFormat { .. })));
        let err = read(Path::new("/nonexistent/accounts.JSONL")).err();
        assert!(matches!(err, Some(ImportFileError::Read { .. })));
    }
}
