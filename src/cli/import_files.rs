//! `credits import accounts|purchases FILE`: migrate (unless a dry run), run the import, print
//! one line per row that changed, differs or failed, then a summary. Exit code 1 when any row
//! failed or differs, 2 when the file cannot be read.

use std::io::Write;

use super::{CliError, ImportCommand, commands::STOP_GRACE};
use crate::{
    app::Services,
    billing::past_purchases::PurchaseImport,
    catalog::{self, Catalog},
    config::Settings,
    db,
    ledger::{book::Differences, commands::ImportOutcome},
    ops::import_files::{self, ImportReport, RowReport, accounts},
};

pub(super) async fn run(settings: Settings, command: ImportCommand) -> Result<(), CliError> {
    let dry_run = match &command {
        ImportCommand::Accounts { dry_run, .. } | ImportCommand::Purchases { dry_run, .. } => *dry_run,
    };
    let pack_file = match &command {
        ImportCommand::Purchases { .. } => Some(catalog::load_pack_file(&settings.credit_packs_file)?),
        ImportCommand::Accounts { .. } => None,
    };
    let db = db::connect(&settings).await?;
    if dry_run {
        let migrated = db::migration_status(&db)
            .await
            .is_ok_and(|s| s.iter().all(|(_, applied)| *applied));
        if !migrated {
            return Err(anyhow::anyhow!(
                "the database is not migrated: run `credits migrate` first (an import without --dry-run migrates by itself)"
            )
            .into());
        }
    } else if settings.migrate_on_start {
        db::migrate(&db).await?;
    }
    let packs = match pack_file {
        Some(file) => {
            let catalog = Catalog::new(db.clone());
            if !dry_run {
                // As `serve` does at start: the file's packs are what purchases may name.
                catalog.store_pack_file(&file).await?;
            }
            Some(catalog::as_sold(&file, catalog.all().await?))
        }
        None => None,
    };
    let services = Services::start(&settings, db).await?;
    let billing = services.billing.clone();
    let result = match command {
        ImportCommand::Accounts { file, adopt, dry_run } => {
            accounts::import(&services.ledger, &file, accounts::Options { adopt, dry_run })
                .await
                .map(|report| print(&report, "accounts", describe_account))
        }
        ImportCommand::Purchases { file, dry_run } => {
            import_files::purchases::import(&billing, packs.as_deref().unwrap_or_default(), &file, dry_run)
                .await
                .map(|report| print(&report, "purchases", describe_purchase))
        }
    };
    drop(billing);
    services.stop(STOP_GRACE).await;
    let (failed, differ) = result?;
    if failed > 0 || differ > 0 {
        return Err(anyhow::anyhow!(
            "import: {failed} row(s) failed, {differ} differ from what is stored (see the lines above)"
        )
        .into());
    }
    Ok(())
}

/// What a row's line says, and its tally: `None` for rows left unchanged (not printed).
type Described = Option<(&'static str, String)>;

fn differences(d: &Differences) -> String {
    let mut parts = Vec::new();
    if let Some((stored, file)) = d.balance {
        parts.push(format!("balance {stored} stored, {file} in the file"));
    }
    if let Some((stored, file)) = &d.email {
        parts.push(format!("email {stored} stored, {file} in the file"));
    }
    if let Some((stored, file)) = d.is_trial_user {
        parts.push(format!("is_trial_user {stored} stored, {file} in the file"));
    }
    parts.join("; ")
}

fn describe_account(outcome: &ImportOutcome, dry_run: bool) -> Described {
    let would = if dry_run { "would be " } else { "" };
    match outcome {
        ImportOutcome::Unchanged => None,
        ImportOutcome::Created { balance } => {
            Some(("created", format!("{would}created with {balance} credits")))
        }
        ImportOutcome::Differs(d) => Some((
            "differ",
            format!(
                "differs: {}; left as it is (--adopt records the difference)",
                differences(d)
            ),
        )),
        ImportOutcome::Adopted(d) => Some((
            "adopted",
            format!("{would}adopted ({:+} credits): {}", d.delta(), differences(d)),
        )),
    }
}

fn describe_purchase(outcome: &PurchaseImport, dry_run: bool) -> Described {
    match outcome {
        PurchaseImport::Unchanged => None,
        PurchaseImport::Recorded => Some((
            "recorded",
            if dry_run { "would be recorded" } else { "recorded" }.to_owned(),
        )),
        PurchaseImport::Differs(fields) => Some(("differ", format!("differs: {fields}; left as it is"))),
    }
}

/// Prints each row that changed, differs or failed, then the tally; returns (failed, differ).
fn print<T>(
    report: &ImportReport<T>,
    what: &str,
    describe: impl Fn(&T, bool) -> Described,
) -> (usize, usize) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut tally: Vec<(&'static str, usize)> = Vec::new();
    let mut count = |label: &'static str| match tally.iter_mut().find(|(l, _)| *l == label) {
        Some((_, n)) => *n += 1,
        None => tally.push((label, 1)),
    };
    for RowReport { line, key, result } in &report.rows {
        let key = key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default();
        let text = match result {
            Ok(outcome) => match describe(outcome, report.dry_run) {
                None => {
                    count("unchanged");
                    continue;
                }
                Some((label, text)) => {
                    count(label);
                    text
                }
            },
            Err(why) => {
                count("failed");
                format!("error: {why}")
            }
        };
        // A closed stdout (a pipe into `head`) must not fail the import that already ran.
        let _ = writeln!(out, "line {line}: {key}{text}");
    }
    let order = ["created", "recorded", "adopted", "unchanged", "differ", "failed"];
    tally.sort_by_key(|(label, _)| order.iter().position(|o| o == label));
    let summary: Vec<String> = tally.iter().map(|(label, n)| format!("{n} {label}")).collect();
    let _ = writeln!(
        out,
        "{what}: {} row(s){}{}",
        report.rows.len(),
        if summary.is_empty() {
            String::new()
        } else {
            format!(": {}", summary.join(", "))
        },
        if report.dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    );
    let _ = out.flush();
    let get = |label| tally.iter().find(|(l, _)| *l == label).map_or(0, |(_, n)| *n);
    (get("failed"), get("differ"))
}
