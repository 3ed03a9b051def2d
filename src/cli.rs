//! The `credits` command line: `serve` (the default), `migrate`, `packs list`.

use clap::{Parser, Subcommand};

use crate::{
    app::{Application, StartupError},
    config::Settings,
    db,
    ledger::{
        self, Ledger,
        fulfilment::{Delivery, EventOutcome},
        packs, store,
    },
    shutdown,
    stripe::StripeGateway,
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
    Usage(#[from] packs::PackFileError),
    /// A setting only `serve` needs is missing or unsafe: exit 2.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
        Command::Serve => serve(settings).await,
        Command::Migrate { status } => migrate(settings, status).await,
        Command::Packs {
            command: PacksCommand::List,
        } => list_packs(settings).await,
        Command::Packs {
            command: PacksCommand::Sync { dry_run },
        } => sync_packs(settings, dry_run).await,
        Command::Events { command } => events(settings, command).await,
        Command::Reconcile { since } => reconcile(settings, since).await,
    }
}

/// The ledger over the configured database and Stripe, as `serve` would build it.
async fn ledger(settings: &Settings) -> Result<Ledger, CliError> {
    let db = db::connect(settings).await?;
    let stripe = StripeGateway::new(&settings.stripe).map_err(anyhow::Error::new)?;
    Ok(Ledger::new(
        db,
        stripe,
        settings.frontend_url.clone(),
        settings.redirects.clone(),
    ))
}

fn ago(age: std::time::Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(36_500))
}

async fn events(settings: Settings, command: EventsCommand) -> Result<(), CliError> {
    let ledger = ledger(&settings).await?;
    match command {
        EventsCommand::List {
            outcome,
            since,
            limit,
        } => {
            let outcome = match outcome.as_deref() {
                None => None,
                Some(raw) => {
                    Some(EventOutcome::parse(raw).ok_or_else(|| anyhow::anyhow!("unknown outcome {raw:?}"))?)
                }
            };
            let events = ledger::events::list_events(ledger.db(), outcome, since.map(ago), limit)
                .await
                .map_err(anyhow::Error::new)?;
            println!(
                "{:<32} {:<42} {:<18} {:<25} ERROR",
                "ID", "TYPE", "OUTCOME", "RECEIVED"
            );
            for e in &events {
                println!(
                    "{:<32} {:<42} {:<18} {:<25} {}",
                    e.id,
                    e.event_type,
                    e.outcome,
                    e.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    e.error.as_deref().unwrap_or("")
                );
            }
            println!("{} event(s)", events.len());
        }
        EventsCommand::Replay { event_id } => {
            let stored = ledger::events::find_event(ledger.db(), &event_id)
                .await
                .map_err(anyhow::Error::new)?;
            let event =
                crate::webhook::event::parse_event(stored.payload.as_bytes()).map_err(anyhow::Error::new)?;
            let report = ledger
                .apply_event(&event, Delivery::Replay)
                .await
                .map_err(anyhow::Error::new)?;
            let outcome = match report.outcome {
                EventOutcome::Duplicate => {
                    format!("already processed (outcome {}); nothing to do", stored.outcome)
                }
                other => other.as_str().to_owned(),
            };
            println!("{event_id}: {outcome}");
            println!(
                "session {} account {} credits {}{}",
                report.session_id.as_deref().unwrap_or("-"),
                report.account_id.as_deref().unwrap_or("-"),
                report.credits,
                report.detail.map(|d| format!(" ({d})")).unwrap_or_default()
            );
        }
        EventsCommand::Prune => {
            let pruned = ledger::jobs::prune_events(ledger.db(), settings.event_retention_days)
                .await
                .map_err(anyhow::Error::new)?;
            println!(
                "pruned {pruned} event(s) older than {} days",
                settings.event_retention_days
            );
        }
    }
    Ok(())
}

async fn sync_packs(settings: Settings, dry_run: bool) -> Result<(), CliError> {
    let packs = packs::load_pack_file(&settings.credit_packs_file)?;
    let ledger = ledger(&settings).await?;
    if !dry_run && settings.migrate_on_start {
        db::migrate(ledger.db()).await?;
    }
    let report = ledger::pack_sync::sync_packs(ledger.db(), ledger.stripe(), &packs, dry_run)
        .await
        .map_err(|err| anyhow::anyhow!("packs sync: {err}; the database was not changed"))?;
    for plan in &report.plans {
        println!("{}{}", if dry_run { "plan " } else { "" }, plan.describe());
    }
    if dry_run {
        println!(
            "dry run: nothing was written ({} of {} packs already in sync)",
            report.unchanged,
            report.plans.len()
        );
    } else {
        for (pack, price) in &report.prices {
            println!("{pack} -> {price}");
        }
        println!(
            "synced {} pack(s), {} already in sync",
            report.plans.len(),
            report.unchanged
        );
    }
    Ok(())
}

async fn reconcile(settings: Settings, since: std::time::Duration) -> Result<(), CliError> {
    let ledger = ledger(&settings).await?;
    let report = ledger.reconcile(ago(since)).await.map_err(anyhow::Error::new)?;
    println!(
        "examined {} completed session(s): {} credited now, {} already credited, {} unpaid, {} unmatched, {} failed",
        report.examined,
        report.credited.len(),
        report.already_credited,
        report.unpaid,
        report.unmatched.len(),
        report.failed.len()
    );
    for session in &report.credited {
        println!("credited {session}");
    }
    for (session, why) in &report.unmatched {
        println!("unmatched {session}: {why}");
    }
    for (session, error) in &report.failed {
        println!("failed {session}: {error}");
    }
    if !report.failed.is_empty() {
        return Err(anyhow::anyhow!(
            "reconcile: {} session(s) failed; run it again once Stripe and the database answer",
            report.failed.len()
        )
        .into());
    }
    Ok(())
}

async fn serve(settings: Settings) -> Result<(), CliError> {
    settings.grpc.check_serving(settings.app_env)?;
    tracing::info!(config = %settings, "starting credits {}", env!("CARGO_PKG_VERSION"));
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown::on_signal()).await?;
    Ok(())
}

async fn migrate(settings: Settings, status_only: bool) -> Result<(), CliError> {
    let db = db::connect(&settings).await?;
    if !status_only {
        db::migrate(&db).await?;
    }
    for (name, applied) in db::migration_status(&db).await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}

/// The packs as the service sells them after its next start: the file's packs, with the price
/// ids the database holds, then database packs no longer in the file (inactive).
async fn list_packs(settings: Settings) -> Result<(), CliError> {
    let file_packs = packs::load_pack_file(&settings.credit_packs_file)?;
    let db = db::connect(&settings).await?;
    let migrated = db::migration_status(&db)
        .await
        .is_ok_and(|s| s.iter().all(|(_, applied)| *applied));
    let stored = if migrated {
        store::all_packs(&db).await?
    } else {
        Vec::new()
    };
    let mut rows: Vec<[String; 7]> = Vec::new();
    for p in &file_packs {
        let stored_price = stored
            .iter()
            .find(|s| s.id == p.id)
            .and_then(|s| s.stripe_price_id.clone());
        let price = p
            .stripe_price_id
            .clone()
            .or(stored_price)
            .unwrap_or_else(|| "-".into());
        rows.push([
            p.id.clone(),
            p.name.clone(),
            p.credits.to_string(),
            p.unit_amount.to_string(),
            p.currency.clone(),
            price,
            "true".into(),
        ]);
    }
    for s in stored
        .into_iter()
        .filter(|s| !file_packs.iter().any(|p| p.id == s.id))
    {
        let price = s.stripe_price_id.unwrap_or_else(|| "-".into());
        rows.push([
            s.id,
            s.name,
            s.credits.to_string(),
            s.unit_amount.to_string(),
            s.currency,
            price,
            "false".into(),
        ]);
    }
    let header = [
        "ID",
        "NAME",
        "CREDITS",
        "AMOUNT",
        "CURRENCY",
        "STRIPE PRICE",
        "ACTIVE",
    ]
    .map(String::from);
    for [id, name, credits, amount, currency, price, active] in std::iter::once(header).chain(rows) {
        println!("{id:<16} {name:<24} {credits:>8} {amount:>10} {currency:<8} {price:<32} {active}");
    }
    if !migrated {
        println!("(database not migrated yet: price ids stored by the service are not shown)");
    }
    Ok(())
}
