//! The `credits` command line: what each subcommand takes (clap) and how it fails (exit codes);
//! `commands` runs them, printing what the domain returns; `import_files` runs `credits import`,
//! `notifications` runs `credits notifications`; `report` and `statement` print the finance
//! reports.

mod accounts;
mod commands;
mod import_files;
mod money_loop;
mod notifications;
mod print;
mod report;
mod statement;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
pub use report::ReportFormat;
pub use statement::StatementFormat;

use crate::{
    app::StartupError, catalog, config::Settings, event_store::EventOutcome, grpc::tls::TlsError,
    ops::import_files::ImportFileError,
};

#[derive(Debug, Parser)]
#[command(
    name = "credits",
    version,
    about = "Prepaid credit packs sold through Stripe Checkout"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations (unless MIGRATE_ON_START=false), load packs, serve gRPC and HTTP.
    Serve,
    /// Apply pending migrations, or print their state.
    Migrate {
        /// Print which migrations are applied and pending; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Credit packs.
    Packs {
        #[command(subcommand)]
        command: PacksCommand,
    },
    /// The stored Stripe events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// One account: its balance, lots and entries; support grants.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Bring accounts and purchases over from the Django app (JSON Lines or CSV).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Account event deliveries to NOTIFY_WEBHOOK_URL: list them, send given-up ones again.
    Notifications {
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Reports for finance: the liability of a period.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The operator console's helpers.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// Credit paid Checkout Sessions whose webhook never arrived.
    Reconcile {
        /// How far back to look (e.g. 90m, 72h, 7d).
        #[arg(long, default_value = "72h", value_parser = parse_age)]
        since: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Read a password from stdin (one line) and print its argon2id hash, for CONSOLE_USERS.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per currency, for [from, to): credits sold, consumed (recognised revenue), expired
    /// (breakage, by lot source), clawed back, free credits granted and used, the liability at
    /// both ends, and the identity between them (exit 1 when it does not hold).
    Liability {
        /// Start, inclusive: RFC 3339 (2026-12-01T00:00:00Z) or a date (midnight UTC).
        #[arg(long, value_parser = report::parse_time)]
        from: DateTime<Utc>,
        /// End, exclusive.
        #[arg(long, value_parser = report::parse_time)]
        to: DateTime<Utc>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print stored events, newest first.
    List {
        /// Only this outcome (e.g. unmatched_account, unmatched_pack, failed, credited).
        #[arg(long, value_parser = parse_outcome)]
        outcome: Option<EventOutcome>,
        /// Only events received this recently (e.g. 24h, 7d).
        #[arg(long, value_parser = parse_age)]
        since: Option<std::time::Duration>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Run a stored event through fulfilment again (after creating the missing account or pack).
    Replay {
        /// Stripe's event id, evt_…
        event_id: String,
    },
    /// Delete processed events older than EVENT_RETENTION_DAYS now (serve does it hourly).
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// Print account events with their delivery state, newest first (default: --pending).
    List {
        /// Neither delivered nor given up (pending and retrying).
        #[arg(long, group = "state")]
        pending: bool,
        /// Given up after NOTIFY_GIVE_UP_AFTER.
        #[arg(long, group = "state")]
        failed: bool,
        /// Every stored event, delivered ones included.
        #[arg(long, group = "state")]
        all: bool,
        /// Only this account's events.
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Send undelivered events again now: these ids, or every given-up one.
    Retry {
        /// Event ids (evt_…).
        #[arg(required_unless_present = "all_given_up", conflicts_with = "all_given_up")]
        event_ids: Vec<String>,
        /// Every given-up event.
        #[arg(long)]
        all_given_up: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Print the balance, available and held credits, trial state, settings (alerts, auto
    /// top-up, overdraft), recent top-ups, lots, the last 20 entries and purchases.
    Show {
        /// The account's id or email.
        account: String,
    },
    /// Print an account's events (alerts, purchases, top-up outcomes, ...), oldest first, as
    /// ListAccountEvents does.
    Events {
        /// The account's id or email.
        account: String,
        /// Only events after this sequence (the cursor a consumer resumes from).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// The account's entries of [from, to) with the lots (and debt) each moved, between its
    /// opening and closing balance.
    Statement {
        /// The account's id or email.
        account: String,
        /// Start, inclusive: RFC 3339 (2026-12-01T00:00:00Z) or a date (midnight UTC).
        #[arg(long, value_parser = report::parse_time)]
        from: DateTime<Utc>,
        /// End, exclusive.
        #[arg(long, value_parser = report::parse_time)]
        to: DateTime<Utc>,
        #[arg(long, value_enum, default_value = "table")]
        format: StatementFormat,
    },
    /// Grant credits (a lot of their own), as GrantCredits does; repeating a --key grants once.
    Grant {
        /// The account's id or email.
        account: String,
        /// 1 to 10^12.
        credits: String,
        /// The ledger entry's reason (`support`, `promotion`, …), 1 to 64 characters.
        #[arg(long)]
        reason: String,
        /// When the credits expire, from now (e.g. 30d, 72h); never when left out.
        #[arg(long)]
        expires_in: Option<String>,
        /// Idempotency key; one is made up and printed when left out.
        #[arg(long)]
        key: Option<String>,
    },
}

fn parse_outcome(raw: &str) -> Result<EventOutcome, String> {
    EventOutcome::parse(raw).ok_or_else(|| {
        let known: Vec<&str> = EventOutcome::ALL.iter().map(|o| o.as_str()).collect();
        format!("{raw:?} is not one of {}", known.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Accounts and their balances: account_id, email, credit_balance, is_trial_user, and
    /// optionally expires_at (RFC 3339).
    Accounts {
        /// A .jsonl / .ndjson (one JSON object per line) or .csv (with a header line) file.
        file: PathBuf,
        /// Where a stored account differs, record the difference: the file wins.
        #[arg(long)]
        adopt: bool,
        /// Print what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Completed purchases, for ListPurchases and refunds (they credit nothing): account_id,
    /// credit_pack_id, credits, amount, currency, stripe_checkout_session_id,
    /// stripe_payment_intent_id, completed_at (RFC 3339).
    Purchases {
        /// A .jsonl / .ndjson or .csv file.
        file: PathBuf,
        /// Print what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_age(raw: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(raw)
}

#[derive(Debug, Subcommand)]
pub enum PacksCommand {
    /// Print the packs the service sells.
    List,
    /// Create each pack's Stripe Product and Price (or find them) and store the price ids.
    Sync {
        /// Print the plan; call nothing in Stripe that writes, change nothing in the database.
        #[arg(long)]
        dry_run: bool,
    },
}

/// How a command failed; `main` turns it into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The operator's input (a file) is wrong: exit 2, like a bad variable.
    #[error(transparent)]
    Usage(#[from] catalog::PackFileError),
    /// A setting only `serve` needs is missing or unsafe: exit 2.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An argument is invalid (credits out of range, an empty reason, …): exit 2.
    #[error(transparent)]
    Argument(#[from] crate::ledger::InvalidInput),
    /// An import file that cannot be read at all: exit 2.
    #[error(transparent)]
    Input(#[from] ImportFileError),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<StartupError> for CliError {
    fn from(err: StartupError) -> Self {
        match err {
            StartupError::Packs(err) => Self::Usage(err),
            // A PEM file that cannot be read or used is a bad setting, like any other: exit 2.
            StartupError::Tls(TlsError::Read { var, path, source }) => Self::Config(
                crate::config::ConfigError::new(var, format!("cannot read {}: {source}", path.display())),
            ),
            StartupError::Tls(TlsError::Invalid { var, path, reason }) => Self::Config(
                crate::config::ConfigError::new(var, format!("{}: {reason}", path.display())),
            ),
            other => Self::Failed(other.into()),
        }
    }
}

impl From<sea_orm::DbErr> for CliError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Failed(anyhow::Error::new(err).context("database"))
    }
}

pub async fn run(cli: Cli, settings: Settings) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => commands::serve(settings).await,
        Command::Migrate { status } => commands::migrate(settings, status).await,
        Command::Packs {
            command: PacksCommand::List,
        } => commands::list_packs(settings).await,
        Command::Packs {
            command: PacksCommand::Sync { dry_run },
        } => commands::sync_packs(settings, dry_run).await,
        Command::Events { command } => commands::events(settings, command).await,
        Command::Accounts {
            command:
                AccountsCommand::Statement {
                    account,
                    from,
                    to,
                    format,
                },
        } => statement::run(settings, &account, from, to, format).await,
        Command::Accounts { command } => commands::accounts(settings, command).await,
        Command::Report {
            command: ReportCommand::Liability { from, to, format },
        } => report::liability(settings, from, to, format).await,
        Command::Import { command } => import_files::run(settings, command).await,
        Command::Notifications { command } => notifications::run(settings, command).await,
        Command::Reconcile { since } => commands::reconcile(settings, since).await,
        Command::Console {
            command: ConsoleCommand::HashPassword,
        } => hash_password(),
    }
}

/// `credits console hash-password`: one line from stdin in, its hash out; the password is
/// never echoed or logged.
fn hash_password() -> Result<(), CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|err| CliError::Failed(anyhow::Error::new(err).context("reading stdin")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::Argument(crate::ledger::InvalidInput::new(
            "password",
            "empty: pipe the password on stdin",
        )));
    }
    let hash = crate::console::hash_password(password)
        .map_err(|err| CliError::Failed(anyhow::anyhow!("hashing failed: {err}")))?;
    println!("{hash}");
    Ok(())
}

/// Parses the command line. `--help` and `--version` are printed (`Err(0)`); a usage error is
/// printed on one line (`Err(2)`).
pub fn parse() -> Result<Cli, u8> {
    Cli::try_parse().map_err(|err| {
        if !err.use_stderr() {
            let _ = err.print();
            return 0;
        }
        eprintln!("credits: {}", one_line(&err.to_string()));
        2
    })
}

/// clap's message without its usage and tips: the first paragraph, on one line.
fn one_line(message: &str) -> String {
    let first: Vec<&str> = message
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    first.join(" ").trim_start_matches("error: ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_fit_on_one_line() {
        let err =
            Cli::try_parse_from(["credits", "accounts", "grant", "acct", "5"]).expect_err("no --reason");
        let line = one_line(&err.to_string());
        assert!(line.starts_with("the following required arguments"), "{line}");
        assert!(line.contains("--reason"), "{line}");
        assert!(!line.contains('\n'));
    }
}
