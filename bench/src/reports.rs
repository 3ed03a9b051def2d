//! `credits-bench reports`: fills a database with a million ledger entries (accounts buying
//! packs, spending them, grants, expiries, each entry with its lot moves), then times the
//! finance reports as finance runs them, the `credits` binary as a process: `report
//! liability` over a month late in the year (it streams every entry before the month's end) and
//! over the whole year, and `accounts statement` of the account with the most entries. Prints
//! one JSON line per run with the seconds and the peak resident memory (VmHWM).

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use credits::entities::{account, credit_ledger};
use sea_orm::{ConnectionTrait, Database, EntityTrait, IntoActiveModel, TransactionTrait};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "credits-bench reports")]
pub(crate) struct ReportArgs {
    /// The database to fill: a fresh SQLite file by default (PostgreSQL: an empty database).
    #[arg(long)]
    database: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Accounts besides the big one.
    #[arg(long, default_value_t = 900)]
    accounts: u64,
    /// Entries of the big account (its statement is timed).
    #[arg(long, default_value_t = 100_000)]
    big: u64,
    /// The `credits` binary to time.
    #[arg(long, default_value = "target/release/credits")]
    credits: PathBuf,
    /// Use the database as it is (filled by an earlier run).
    #[arg(long)]
    no_fill: bool,
}

/// Entries are a year long: 2026-01-01 onwards, evenly spaced.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// One account's history as it is generated: every hundredth entry a pack (1000 credits for
/// 1500), one a free grant of 100, one the pack's expiry; the rest spend 10 credits.
struct History {
    id: String,
    balance: i64,
    pack: (String, i64, i64),
    grant: (String, i64),
    step: u64,
}

impl History {
    fn new(id: String) -> Self {
        Self {
            id,
            balance: 0,
            pack: (String::new(), 0, 0),
            grant: (String::new(), 0),
            step: 0,
        }
    }

    /// The next entry: kind, delta, moves.
    fn next(&mut self) -> (&'static str, i64, String) {
        let step = self.step;
        self.step += 1;
        let (kind, delta, moves) = match step % 100 {
            0 => {
                self.pack = (format!("{}-p{step}", self.id), 1000, 1500);
                let moves = json!([[self.pack.0, 1000, 1500, "purchase", "usd"]]);
                ("purchase", 1000, moves)
            }
            50 => {
                self.grant = (format!("{}-g{step}", self.id), self.grant.1 + 100);
                let moves = json!([[self.grant.0, 100, 0, "grant", null]]);
                ("grant", 100, moves)
            }
            99 if self.pack.1 > 0 => {
                let (lot, credits, value) = std::mem::take(&mut self.pack);
                let moves = json!([[lot, -credits, -value, "purchase", "usd"]]);
                ("expiry", -credits, moves)
            }
            _ if self.pack.1 >= 10 => {
                let value = self.pack.2 * 10 / self.pack.1;
                self.pack.1 -= 10;
                self.pack.2 -= value;
                let moves = json!([[self.pack.0, -10, -value, "purchase", "usd"]]);
                ("consumption", -10, moves)
            }
            _ if self.grant.1 >= 10 => {
                self.grant.1 -= 10;
                let moves = json!([[self.grant.0, -10, 0, "grant", null]]);
                ("consumption", -10, moves)
            }
            _ => ("consumption", -10, json!([[null, -10, 0, null, null]])),
        };
        self.balance += delta;
        (kind, delta, moves.to_string())
    }
}

async fn fill(url: &str, args: &ReportArgs) -> anyhow::Result<()> {
    let db = Database::connect(url).await?;
    credits::db::migrate(&db).await?;
    let spacing = Duration::from_secs(365 * 24 * 3600 / args.entries.max(1));
    let others = (args.entries.saturating_sub(args.big)) / args.accounts.max(1);
    let mut histories: Vec<(History, u64)> = (0..=args.accounts)
        .map(|a| {
            let count = if a == 0 { args.big } else { others };
            (History::new(format!("bench-{a}")), count)
        })
        .collect();
    let accounts: Vec<account::ActiveModel> = histories
        .iter()
        .map(|(h, _)| {
            account::Model {
                id: h.id.clone(),
                email: format!("{}@example.com", h.id),
                credit_balance: 0,
                debt: 0,
                is_trial_user: false,
                low_balance_threshold: None,
                overdraft_limit: 0,
                available_balance: None,
                stripe_customer_id: None,
                payment_method_id: None,
                auto_top_up_enabled: false,
                auto_top_up_threshold: 0,
                auto_top_up_pack_id: None,
                auto_top_up_monthly_limit: 0,
                auto_top_up_paused: None,
                created_at: start(),
                updated_at: start(),
            }
            .into_active_model()
        })
        .collect();
    for chunk in accounts.chunks(500) {
        account::Entity::insert_many(chunk.to_vec()).exec(&db).await?;
    }
    let began = Instant::now();
    let mut written: u64 = 0;
    let mut rows = Vec::with_capacity(1000);
    let mut txn = db.begin().await?;
    // Round robin: the accounts' entries interleave as they would in a real ledger.
    while written < args.entries {
        let mut any = false;
        for (history, count) in &mut histories {
            if history.step >= *count || written >= args.entries {
                continue;
            }
            any = true;
            let (kind, delta, moves) = history.next();
            let at = start() + spacing * u32::try_from(written).unwrap_or(u32::MAX);
            rows.push(credit_ledger::ActiveModel {
                id: sea_orm::ActiveValue::NotSet,
                account_id: sea_orm::ActiveValue::Set(history.id.clone()),
                delta: sea_orm::ActiveValue::Set(delta),
                balance_after: sea_orm::ActiveValue::Set(history.balance),
                kind: sea_orm::ActiveValue::Set(kind.to_owned()),
                reason: sea_orm::ActiveValue::Set(kind.to_owned()),
                reference: sea_orm::ActiveValue::Set(format!("r{written}")),
                metadata: sea_orm::ActiveValue::Set(None),
                created_at: sea_orm::ActiveValue::Set(at),
                allocations: sea_orm::ActiveValue::Set(Some(moves)),
            });
            written += 1;
            if rows.len() == 1000 {
                credit_ledger::Entity::insert_many(std::mem::take(&mut rows))
                    .exec(&txn)
                    .await?;
                if written.is_multiple_of(100_000) {
                    txn.commit().await?;
                    txn = db.begin().await?;
                    eprintln!(
                        "filled {written} entries ({:.0} s)",
                        began.elapsed().as_secs_f64()
                    );
                }
            }
        }
        if !any {
            break;
        }
    }
    if !rows.is_empty() {
        credit_ledger::Entity::insert_many(rows).exec(&txn).await?;
    }
    txn.commit().await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute_unprepared("ANALYZE credit_ledger").await?;
    }
    eprintln!(
        "filled {written} entries in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the binary with `args`; seconds and peak resident memory (MB).
async fn timed(credits: &PathBuf, url: &str, args: &[&str]) -> anyhow::Result<(f64, f64)> {
    let began = Instant::now();
    let mut child = tokio::process::Command::new(credits)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let status_file = child.id().map(|pid| format!("/proc/{pid}/status"));
    let mut peak_kb: f64 = 0.0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(path) = &status_file
            && let Ok(text) = std::fs::read_to_string(path)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seconds = began.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "credits {} failed: {status}", args.join(" "));
    Ok((seconds, peak_kb / 1024.0))
}

pub(crate) async fn main(args: ReportArgs) -> anyhow::Result<std::process::ExitCode> {
    let scratch = tempfile_dir()?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/reports.db?mode=rwc", scratch.display()));
    if !args.no_fill {
        fill(&url, &args).await?;
    }
    let runs: [(&str, Vec<&str>); 4] = [
        (
            "liability-month",
            vec![
                "report",
                "liability",
                "--from",
                "2026-11-01",
                "--to",
                "2026-12-01",
            ],
        ),
        (
            "liability-year-csv",
            vec![
                "report",
                "liability",
                "--from",
                "2026-01-01",
                "--to",
                "2027-01-01",
                "--format",
                "csv",
            ],
        ),
        (
            "statement-year",
            vec![
                "accounts",
                "statement",
                "bench-0",
                "--from",
                "2026-01-01",
                "--to",
                "2027-01-01",
            ],
        ),
        (
            "statement-year-csv",
            vec![
                "accounts",
                "statement",
                "bench-0",
                "--from",
                "2026-01-01",
                "--to",
                "2027-01-01",
                "--format",
                "csv",
            ],
        ),
    ];
    // The ceiling: the database itself reading every entry's moves, nothing sent back.
    let db = Database::connect(&url).await?;
    let began = Instant::now();
    db.execute_unprepared("SELECT COUNT(*), SUM(LENGTH(allocations)) FROM credit_ledger")
        .await?;
    let scan = began.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"ceiling": "scan", "backend": url.split(':').next(), "seconds": (scan * 100.0).round() / 100.0})
    );
    for (name, command) in runs {
        let (seconds, peak_mb) = timed(&args.credits, &url, &command).await?;
        println!(
            "{}",
            json!({
                "scenario": name,
                "entries": args.entries,
                "big_account_entries": args.big,
                "backend": url.split(':').next(),
                "seconds": (seconds * 100.0).round() / 100.0,
                "peak_rss_mb": (peak_mb * 10.0).round() / 10.0,
            })
        );
    }
    if args.database.is_none() {
        std::fs::remove_dir_all(&scratch).ok();
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A scratch directory for the default SQLite file.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("credits-bench-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
