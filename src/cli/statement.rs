//! `credits accounts statement`: an account's entries of a period with the lots (and debt)
//! each moved, between its opening and closing balance, printed as the entries stream in.

use std::io::{BufWriter, Stdout, Write};

use chrono::{DateTime, Utc};
use clap::ValueEnum;

use super::{CliError, report::failed};
use crate::{
    config::Settings,
    db,
    finance::{
        Period,
        liability::{describe, stamp},
        statement::{Closing, Opening, StatementEntry, StatementSink, statement},
    },
    ledger::book::LotMove,
};

/// How a statement is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatementFormat {
    /// An entry a line, its moves indented under it.
    Table,
    /// One row per move (an entry without moves: one row), between an `opening_balance` and a
    /// `closing_balance` row.
    Csv,
}

pub(super) async fn run(
    settings: Settings,
    account: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: StatementFormat,
) -> Result<(), CliError> {
    let period = Period::new(from, to).map_err(failed)?;
    let db = db::connect(&settings).await?;
    let out = BufWriter::new(std::io::stdout());
    let closing = match format {
        StatementFormat::Table => statement(&db, account, period, &mut Table { out }).await,
        StatementFormat::Csv => {
            let mut sink = Csv {
                out: ::csv::Writer::from_writer(out),
            };
            statement(&db, account, period, &mut sink).await
        }
    }
    .map_err(failed)?;
    if closing.breaks > 0 {
        eprintln!(
            "credits: warning: {} entries do not follow on from the balance before them",
            closing.breaks
        );
    }
    Ok(())
}

struct Table {
    out: BufWriter<Stdout>,
}

impl StatementSink for Table {
    fn opening(&mut self, opening: &Opening) -> std::io::Result<()> {
        writeln!(
            self.out,
            "statement of {} {}",
            opening.account_id,
            describe(&opening.period)
        )?;
        writeln!(self.out, "opening balance {}", opening.balance)?;
        writeln!(
            self.out,
            "{:>10}  {:<27}  {:<11} {:>10} {:>12}  reason / reference",
            "id", "created_at", "kind", "delta", "balance"
        )
    }

    fn entry(&mut self, entry: &StatementEntry) -> std::io::Result<()> {
        writeln!(
            self.out,
            "{:>10}  {:<27}  {:<11} {:>10} {:>12}  {} / {}",
            entry.id,
            stamp(entry.created_at),
            entry.kind.as_str(),
            entry.delta,
            entry.balance_after,
            entry.reason,
            entry.reference
        )?;
        match &entry.moves {
            None if entry.delta != 0 => {
                writeln!(self.out, "{:>12}(no moves: written before they were kept)", "")
            }
            None => Ok(()),
            Some(moves) => moves.iter().try_for_each(|m| {
                writeln!(
                    self.out,
                    "{:>12}{:<38} {:>+10} credits  value {:+} {}  {}",
                    "",
                    m.lot_id
                        .as_deref()
                        .map_or("debt".to_owned(), |id| format!("lot {id}")),
                    m.credits,
                    m.value,
                    m.currency.as_deref().unwrap_or("free"),
                    m.source.map_or("", |s| s.as_str())
                )
            }),
        }
    }

    fn closing(&mut self, _opening: &Opening, closing: &Closing) -> std::io::Result<()> {
        writeln!(
            self.out,
            "closing balance {} ({} entries)",
            closing.balance, closing.entries
        )?;
        self.out.flush()
    }
}

struct Csv {
    out: ::csv::Writer<BufWriter<Stdout>>,
}

const HEADER: [&str; 12] = [
    "entry_id",
    "created_at",
    "kind",
    "reason",
    "reference",
    "delta",
    "balance_after",
    "lot_id",
    "credits",
    "value",
    "source",
    "currency",
];

impl Csv {
    fn balance(&mut self, at: DateTime<Utc>, line: &str, balance: i64) -> std::io::Result<()> {
        let (at, balance) = (stamp(at), balance.to_string());
        let mut row = [""; 12];
        row[1] = &at;
        row[2] = line;
        row[6] = &balance;
        Ok(self.out.write_record(row)?)
    }
}

impl StatementSink for Csv {
    fn opening(&mut self, opening: &Opening) -> std::io::Result<()> {
        self.out.write_record(HEADER)?;
        self.balance(opening.period.from, "opening_balance", opening.balance)
    }

    fn entry(&mut self, entry: &StatementEntry) -> std::io::Result<()> {
        let fixed = [
            entry.id.to_string(),
            stamp(entry.created_at),
            entry.kind.as_str().to_owned(),
            entry.reason.clone(),
            entry.reference.clone(),
            entry.delta.to_string(),
            entry.balance_after.to_string(),
        ];
        let moves = entry.moves.as_deref().unwrap_or_default();
        if moves.is_empty() {
            let row = fixed.iter().map(String::as_str).chain([""; 5]);
            return Ok(self.out.write_record(row)?);
        }
        for m in moves {
            let movement = move_columns(m);
            let row = fixed.iter().chain(movement.iter()).map(String::as_str);
            self.out.write_record(row)?;
        }
        Ok(())
    }

    fn closing(&mut self, opening: &Opening, closing: &Closing) -> std::io::Result<()> {
        self.balance(opening.period.to, "closing_balance", closing.balance)?;
        self.out.flush()
    }
}

fn move_columns(m: &LotMove) -> [String; 5] {
    [
        m.lot_id.clone().unwrap_or_default(),
        m.credits.to_string(),
        m.value.to_string(),
        m.source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        m.currency.clone().unwrap_or_default(),
    ]
}
