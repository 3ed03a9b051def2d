//! Each subcommand: ask the domain, print the answer.

use std::time::Duration;

use super::{AccountsCommand, CliError, EventsCommand};
use crate::{
    app::{Application, Services},
    catalog,
    catalog::Catalog,
    config::Settings,
    db,
    event_store::{EventLog, EventOutcome},
    ops,
    report::error_chain,
    shutdown,
    stripe::StripeGateway,
};

/// How long a command lets the writer finish after its work is answered.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);

fn ago(age: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(36_500))
}

/// Billing over the configured database and Stripe, with a writer of its own, as `serve` runs it.
pub(super) async fn services(settings: &Settings) -> Result<Services, CliError> {
    let db = db::connect(settings).await?;
    Ok(Services::start(settings, db).await?)
}

pub(super) async fn serve(settings: Settings) -> Result<(), CliError> {
    settings.check_stripe_for_serving()?;
    settings.grpc.check_serving(settings.app_env)?;
    tracing::info!(config = %settings, "starting credits {}", env!("CARGO_PKG_VERSION"));
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown::on_signal()).await?;
    Ok(())
}

pub(super) async fn migrate(settings: Settings, status_only: bool) -> Result<(), CliError> {
    let db = db::connect(&settings).await?;
    if !status_only {
        db::migrate(&db).await?;
    }
    for (name, applied) in db::migration_status(&db).await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}

pub(super) async fn events(settings: Settings, command: EventsCommand) -> Result<(), CliError> {
    match command {
        EventsCommand::List {
            outcome,
            since,
            limit,
        } => {
            let log = EventLog::new(db::connect(&settings).await?);
            let listed = log.list(outcome, since.map(ago), limit).await?;
            println!(
                "{:<32} {:<42} {:<18} {:<25} ERROR",
                "ID", "TYPE", "OUTCOME", "RECEIVED"
            );
            for e in &listed {
                println!(
                    "{:<32} {:<42} {:<18} {:<25} {}",
                    e.id,
                    e.event_type,
                    e.outcome.as_str(),
                    e.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    e.error.as_deref().unwrap_or("")
                );
            }
            println!("{} event(s)", listed.len());
        }
        EventsCommand::Replay { event_id } => {
            let services = services(&settings).await?;
            let result = replay(&services, &event_id).await;
            services.stop(STOP_GRACE).await;
            result?;
        }
        EventsCommand::Prune => {
            let log = EventLog::new(db::connect(&settings).await?);
            let pruned = log.prune(settings.event_retention_days).await?;
            println!(
                "pruned {pruned} event(s) older than {} days",
                settings.event_retention_days
            );
        }
    }
    Ok(())
}

pub(super) async fn accounts(settings: Settings, command: AccountsCommand) -> Result<(), CliError> {
    let services = services(&settings).await?;
    let result = super::accounts::run(&services, command).await;
    services.stop(STOP_GRACE).await;
    result
}

async fn replay(services: &Services, event_id: &str) -> Result<(), CliError> {
    let stored = services
        .events
        .find(event_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("stripe event {event_id} not found"))?;
    let report = services
        .billing
        .replay(&stored.payload)
        .await
        .map_err(anyhow::Error::new)?;
    let outcome = match report.outcome {
        EventOutcome::Duplicate => format!(
            "already processed (outcome {}); nothing to do",
            stored.outcome.as_str()
        ),
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
    Ok(())
}

pub(super) async fn sync_packs(settings: Settings, dry_run: bool) -> Result<(), CliError> {
    settings.check_stripe_key()?;
    let file = catalog::load_catalog_file(&settings.credit_packs_file)?;
    let db = db::connect(&settings).await?;
    if !dry_run && settings.migrate_on_start {
        db::migrate(&db).await?;
    }
    let stripe = StripeGateway::new(&settings.stripe).map_err(anyhow::Error::new)?;
    let report = Catalog::new(db)
        .sync(&stripe, &file, dry_run)
        .await
        .map_err(|err| anyhow::anyhow!("packs sync: {}; the database was not changed", error_chain(&err)))?;
    for plan in report.plans.iter().chain(&report.subscriptions) {
        println!("{}{}", if dry_run { "plan " } else { "" }, plan.describe());
    }
    // Said only when the file has plans, so a packs-only file prints what it always did.
    let plans = if report.subscriptions.is_empty() {
        String::new()
    } else {
        format!(
            "; {} plan(s), {} already in sync",
            report.subscriptions.len(),
            report.subscriptions_unchanged
        )
    };
    if dry_run {
        println!(
            "dry run: nothing was written ({} of {} packs already in sync){plans}",
            report.unchanged,
            report.plans.len()
        );
    } else {
        for (id, price) in report.prices.iter().chain(&report.subscription_prices) {
            println!("{id} -> {price}");
        }
        println!(
            "synced {} pack(s), {} already in sync{plans}",
            report.plans.len(),
            report.unchanged
        );
    }
    Ok(())
}

pub(super) async fn reconcile(settings: Settings, since: Duration) -> Result<(), CliError> {
    settings.check_stripe_key()?;
    let services = services(&settings).await?;
    let result = ops::reconcile(&services.billing, ago(since)).await;
    services.stop(STOP_GRACE).await;
    let report = result.map_err(anyhow::Error::new)?;
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

/// The packs and plans as the service sells them after its next start.
pub(super) async fn list_packs(settings: Settings) -> Result<(), CliError> {
    let file = catalog::load_catalog_file(&settings.credit_packs_file)?;
    let db = db::connect(&settings).await?;
    let migrated = db::migration_status(&db)
        .await
        .is_ok_and(|s| s.iter().all(|(_, applied)| *applied));
    let (stored, stored_plans) = if migrated {
        let catalog = Catalog::new(db);
        (catalog.all().await?, catalog.all_plans().await?)
    } else {
        (Vec::new(), Vec::new())
    };
    println!(
        "{:<16} {:<24} {:>8} {:>10} {:<8} {:<32} ACTIVE",
        "ID", "NAME", "CREDITS", "AMOUNT", "CURRENCY", "STRIPE PRICE"
    );
    for p in catalog::as_sold(&file.packs, stored) {
        println!(
            "{:<16} {:<24} {:>8} {:>10} {:<8} {:<32} {}",
            p.id,
            p.name,
            p.credits,
            p.unit_amount,
            p.currency,
            p.stripe_price_id.as_deref().unwrap_or("-"),
            p.active
        );
    }
    let plans = catalog::plans_as_sold(&file.plans, stored_plans);
    if !plans.is_empty() {
        println!();
        println!(
            "{:<16} {:<24} {:>14} {:<8} {:>10} {:<8} {:>12} {:<32} ACTIVE",
            "PLAN",
            "NAME",
            "CREDITS/PERIOD",
            "INTERVAL",
            "AMOUNT",
            "CURRENCY",
            "ROLLOVER CAP",
            "STRIPE PRICE"
        );
    }
    for p in plans {
        println!(
            "{:<16} {:<24} {:>14} {:<8} {:>10} {:<8} {:>12} {:<32} {}",
            p.id,
            p.name,
            p.credits,
            p.interval.as_str(),
            p.unit_amount,
            p.currency,
            p.rollover_cap,
            p.stripe_price_id.as_deref().unwrap_or("-"),
            p.active
        );
    }
    if !migrated {
        println!("(database not migrated yet: price ids stored by the service are not shown)");
    }
    Ok(())
}
