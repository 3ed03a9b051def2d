//! The `credits` command line: what each subcommand takes (clap) and how it fails (exit codes);
//! `commands` runs them, printing what the domain returns; `import` runs `credits import`.

mod commands;
mod import;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    app::StartupError,
    catalog,
    config::Settings,
    ledger::{AccountId, AccountRef, Email},
    ops::import::ImportFileError,
};

#[derive(Debug, Parser)]
#[command(
    name = "credits",
    version,
    about = "Prepaid credit packs sold through Stripe Checkout"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Bring accounts and purchases over from the Django app (JSON Lines or CSV).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Credit paid Checkout Sessions whose webhook never arrived.
    Reconcile {
        /// How far back to look (e.g. 90m, 72h, 7d).
        #[arg(long, default_value = "72h", value_parser = parse_age)]
        since: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print stored events, newest first.
    List {
        /// Only this outcome (e.g. unmatched_account, unmatched_pack, failed, credited).
        #[arg(long)]
        outcome: Option<String>,
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
pub enum AccountsCommand {
    /// Print an account's balance, trial state and latest purchases.
    Show {
        /// The account's id, or its email.
        #[arg(value_parser = parse_account)]
        account: AccountRef,
    },
}

fn parse_account(raw: &str) -> Result<AccountRef, String> {
    let by = if raw.contains('@') {
        Email::parse(raw).map(AccountRef::Email)
    } else {
        AccountId::parse(raw).map(AccountRef::Id)
    };
    by.map_err(|err| err.to_string())
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
            command: AccountsCommand::Show { account },
        } => commands::show_account(settings, account).await,
        Command::Import { command } => import::run(settings, command).await,
        Command::Reconcile { since } => commands::reconcile(settings, since).await,
    }
}
