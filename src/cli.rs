//! The `credits` command line: `serve` (the default), `migrate`, `packs list`.

use clap::{Parser, Subcommand};

use crate::{
    app::{Application, StartupError},
    config::Settings,
    db,
    ledger::{packs, store},
    shutdown,
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
}

#[derive(Debug, Subcommand)]
pub enum PacksCommand {
    /// Print the packs the service sells.
    List,
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
    }
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
