//! `credits report liability`: the liability report of a period as a table, CSV or JSON; a
//! failed identity is said on stderr and fails the command (exit 1) after the report is out.

use std::{
    collections::BTreeMap,
    io::{BufWriter, Write},
};

use chrono::{DateTime, NaiveDate, Utc};
use clap::ValueEnum;
use serde_json::{Value, json};

use super::CliError;
use crate::{
    config::Settings,
    db,
    finance::{
        self, Liability, Period, ReportError,
        liability::{Amount, Lines, describe, stamp},
    },
    ledger::InvalidInput,
};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for people.
    Table,
    /// One row per figure: currency, line, source, credits, value.
    Csv,
    Json,
}

/// `--from` / `--to`: RFC 3339 (`2026-12-01T00:00:00Z`) or a date (midnight UTC).
pub(super) fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| format!("{raw:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

/// A report error as the command line reports it: an empty period exits 2, the rest 1.
pub(super) fn failed(err: ReportError) -> CliError {
    match err {
        ReportError::EmptyPeriod => CliError::Argument(InvalidInput::new("--from", err.to_string())),
        other => CliError::Failed(anyhow::Error::new(other)),
    }
}

pub(super) async fn liability(
    settings: Settings,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: ReportFormat,
) -> Result<(), CliError> {
    let period = Period::new(from, to).map_err(failed)?;
    let db = db::connect(&settings).await?;
    let report = finance::liability(&db, period).await.map_err(failed)?;
    let mut out = BufWriter::new(std::io::stdout());
    match format {
        ReportFormat::Table => table(&mut out, &report),
        ReportFormat::Csv => csv(&mut out, &report),
        ReportFormat::Json => serde_json::to_writer_pretty(&mut out, &as_json(&report))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
    }
    .and_then(|()| out.flush())
    .map_err(|err| failed(err.into()))?;
    if report.unsplit_before + report.unsplit_in_period > 0 {
        eprintln!(
            "credits: warning: {} entries before the period and {} in it predate lot moves; their \
             credits and value are in no figure",
            report.unsplit_before, report.unsplit_in_period
        );
    }
    let broken: Vec<String> = report
        .currencies
        .iter()
        .filter(|(_, lines)| !lines.identity_holds())
        .map(|(currency, _)| name(currency.as_deref()).to_owned())
        .collect();
    if !broken.is_empty() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "THE LIABILITY IDENTITY DOES NOT HOLD for {}: opening + sold - consumed - expired - clawed \
             back - adjusted differs from closing (see the report)",
            broken.join(", ")
        )));
    }
    Ok(())
}

/// A currency as printed: free credits have none.
fn name(currency: Option<&str>) -> &str {
    currency.unwrap_or("free")
}

/// Paid currencies first, free credits last.
fn ordered(report: &Liability) -> impl Iterator<Item = (Option<&str>, &Lines)> {
    let paid = report.currencies.iter().filter(|(c, _)| c.is_some());
    let free = report.currencies.iter().filter(|(c, _)| c.is_none());
    paid.chain(free).map(|(c, l)| (c.as_deref(), l))
}

fn table(out: &mut impl Write, report: &Liability) -> std::io::Result<()> {
    writeln!(out, "liability report {}", describe(&report.period))?;
    writeln!(
        out,
        "entries read {} ({} in the period); value in minor units",
        report.entries_read, report.entries_in_period
    )?;
    if report.unsplit_before + report.unsplit_in_period > 0 {
        writeln!(
            out,
            "WARNING: {} entries before the period and {} in it predate lot moves: not in these figures",
            report.unsplit_before, report.unsplit_in_period
        )?;
    }
    for (currency, lines) in ordered(report) {
        let free = currency.is_none();
        writeln!(out)?;
        if free {
            writeln!(out, "{:<34} {:>14}", "free credits", "credits")?;
        } else {
            writeln!(out, "{:<34} {:>14} {:>16}", name(currency), "credits", "value")?;
        }
        let row = |out: &mut dyn Write, label: &str, amount: Amount| {
            if free {
                writeln!(out, "  {label:<32} {:>14}", amount.credits)
            } else {
                writeln!(out, "  {label:<32} {:>14} {:>16}", amount.credits, amount.value)
            }
        };
        let (opening, closing) = if free {
            ("outstanding at from", "outstanding at to")
        } else {
            ("opening liability", "closing liability")
        };
        row(out, opening, lines.opening)?;
        row(out, if free { "granted" } else { "sold" }, lines.sold_total())?;
        for (source, amount) in &lines.sold {
            row(out, &format!("  {source}"), *amount)?;
        }
        let consumed = if free {
            "used"
        } else {
            "consumed (recognised revenue)"
        };
        row(out, consumed, lines.consumed)?;
        row(out, "expired (breakage)", lines.expired_total())?;
        for (source, amount) in &lines.expired {
            row(out, &format!("  {source}"), *amount)?;
        }
        row(out, "clawed back", lines.clawed_back)?;
        if !lines.adjusted.is_zero() {
            row(out, "adjusted by imports", lines.adjusted)?;
        }
        if !lines.rolled_over.is_zero() {
            row(out, "rolled over (still owed)", lines.rolled_over)?;
        }
        row(out, closing, lines.closing())?;
        writeln!(out, "  {}", identity_line(lines, free))?;
    }
    if report.currencies.is_empty() {
        writeln!(
            out,
            "\nno lot moves before the period's end: nothing owed at either end; the identity holds"
        )?;
    }
    Ok(())
}

/// `identity: 1050 + 1500 − 450 − 300 − 300 = 1500 holds` (credits for free credits).
fn identity_line(lines: &Lines, free: bool) -> String {
    let pick = |a: Amount| if free { a.credits } else { a.value };
    let mut text = format!(
        "identity: {} + {} - {} - {} - {}",
        pick(lines.opening),
        pick(lines.sold_total()),
        pick(lines.consumed),
        pick(lines.expired_total()),
        pick(lines.clawed_back)
    );
    if !lines.adjusted.is_zero() {
        text.push_str(&format!(" - {}", pick(lines.adjusted)));
    }
    if !lines.rollover_net.is_zero() {
        text.push_str(&format!(" + {}", pick(lines.rollover_net)));
    }
    let expected = pick(lines.expected_closing());
    let closing = pick(lines.closing());
    if lines.identity_holds() {
        format!("{text} = {closing}  holds")
    } else {
        format!(
            "{text} = {expected}, but the closing liability is {closing} (credits {} vs {}): DOES NOT HOLD",
            lines.expected_closing().credits,
            lines.closing().credits
        )
    }
}

fn csv(out: &mut impl Write, report: &Liability) -> std::io::Result<()> {
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(["currency", "line", "source", "credits", "value"])?;
    let from = stamp(report.period.from);
    let to = stamp(report.period.to);
    writer.write_record(["", "from", from.as_str(), "", ""])?;
    writer.write_record(["", "to", to.as_str(), "", ""])?;
    let count = |line: &str, n: u64| {
        [
            "".to_owned(),
            line.to_owned(),
            String::new(),
            n.to_string(),
            String::new(),
        ]
    };
    writer.write_record(count("entries_in_period", report.entries_in_period))?;
    writer.write_record(count("entries_without_moves_before", report.unsplit_before))?;
    writer.write_record(count("entries_without_moves_in_period", report.unsplit_in_period))?;
    for (currency, lines) in ordered(report) {
        let currency = currency.unwrap_or("");
        let mut row = |line: &str, source: &str, amount: Amount| {
            writer.write_record([
                currency,
                line,
                source,
                &amount.credits.to_string(),
                &amount.value.to_string(),
            ])
        };
        row("opening", "", lines.opening)?;
        row("sold", "", lines.sold_total())?;
        for (source, amount) in &lines.sold {
            row("sold", source, *amount)?;
        }
        row("consumed", "", lines.consumed)?;
        row("expired", "", lines.expired_total())?;
        for (source, amount) in &lines.expired {
            row("expired", source, *amount)?;
        }
        row("clawed_back", "", lines.clawed_back)?;
        row("adjusted", "", lines.adjusted)?;
        row("rolled_over", "", lines.rolled_over)?;
        row("closing", "", lines.closing())?;
        // 0 and 0 when the identity holds.
        row("identity_gap", "", gap(lines))?;
    }
    writer.flush()
}

/// `closing − (opening + sold − consumed − expired − clawed back − adjusted)`.
fn gap(lines: &Lines) -> Amount {
    let (closing, expected) = (lines.closing(), lines.expected_closing());
    Amount {
        credits: closing.credits - expected.credits,
        value: closing.value - expected.value,
    }
}

/// A sum as a JSON number; one beyond i64 (never seen) as a string rather than rounded.
fn number(n: i128) -> Value {
    i64::try_from(n).map_or_else(|_| Value::from(n.to_string()), Value::from)
}

fn as_json(report: &Liability) -> Value {
    let amount = |a: Amount| json!({"credits": number(a.credits), "value": number(a.value)});
    let by_source = |map: &BTreeMap<String, Amount>| -> Value {
        map.iter().map(|(s, a)| (s.clone(), amount(*a))).collect()
    };
    let currencies: Vec<Value> = ordered(report)
        .map(|(currency, lines)| {
            json!({
                "currency": currency,
                "opening": amount(lines.opening),
                "sold": amount(lines.sold_total()),
                "sold_by_source": by_source(&lines.sold),
                "consumed": amount(lines.consumed),
                "expired": amount(lines.expired_total()),
                "expired_by_source": by_source(&lines.expired),
                "clawed_back": amount(lines.clawed_back),
                "adjusted": amount(lines.adjusted),
                "rolled_over": amount(lines.rolled_over),
                "closing": amount(lines.closing()),
                "identity_holds": lines.identity_holds(),
                "identity_gap": amount(gap(lines)),
            })
        })
        .collect();
    json!({
        "from": stamp(report.period.from),
        "to": stamp(report.period.to),
        "entries_read": report.entries_read,
        "entries_in_period": report.entries_in_period,
        "entries_without_moves_before": report.unsplit_before,
        "entries_without_moves_in_period": report.unsplit_in_period,
        "identity_holds": report.holds(),
        "currencies": currencies,
    })
}
