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

async fn list_packs(settings: Settings) -> Result<(), CliError> {
    let file_packs = packs::load_pack_file(&settings.credit_packs_file)?;
    let db = db::connect(&settings).await?;
    let migrated = db::migration_status(&db)
        .await
        .is_ok_and(|s| s.iter().all(|(_, applied)| *applied));
    let rows: Vec<[String; 7]> = if migrated {
        store::all_packs(&db)
            .await?
            .into_iter()
            .map(|p| {
                let price = p.stripe_price_id.unwrap_or_else(|| "-".into());
                let amount = p.unit_amount.to_string();
                [
                    p.id,
                    p.name,
                    p.credits.to_string(),
                    amount,
                    p.currency,
                    price,
                    p.active.to_string(),
                ]
            })
            .collect()
    } else {
        println!(
            "(database not migrated: showing {})",
            settings.credit_packs_file.display()
        );
        file_packs
            .into_iter()
            .map(|p| {
                let price = p.stripe_price_id.unwrap_or_else(|| "-".into());
                let amount = p.unit_amount.to_string();
                [
                    p.id,
                    p.name,
                    p.credits.to_string(),
                    amount,
                    p.currency,
                    price,
                    "true".into(),
                ]
            })
            .collect()
    };
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
    Ok(())
}
