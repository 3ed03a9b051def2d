//! `credits accounts show|events|grant`: one account as operators look at it, its events, and
//! support grants through the same ledger writer command as GrantCredits.

use chrono::{DateTime, SubsecRound, Utc};

use super::{AccountsCommand, CliError, money_loop, print::when};
use crate::{
    app::{AppLedger, Services},
    billing::Billing,
    ledger::{
        AccountId, AccountRef, Credits, Email, EntryView, IdempotencyKey, InvalidInput, LedgerError, Listing,
        PageRequest, Reason,
        book::{Lot, Metadata},
        commands::Grant,
        kinds::LotSource,
    },
};

/// How many entries `accounts show` prints.
const SHOWN_ENTRIES: i32 = 20;

pub(super) async fn run(services: &Services, command: AccountsCommand) -> Result<(), CliError> {
    let ledger = &services.ledger;
    match command {
        AccountsCommand::Show { account } => show(ledger, &services.billing, &account).await,
        // Reads only: `cli::run` prints it over a read connection, without a writer.
        AccountsCommand::Statement { .. } => Err(CliError::Failed(anyhow::anyhow!(
            "accounts statement is printed by cli::run"
        ))),
        AccountsCommand::Events {
            account,
            after,
            limit,
        } => {
            let by = resolve(ledger, &account).await?;
            money_loop::events(ledger, &by, after, limit)
                .await
                .map_err(failed)
        }
        AccountsCommand::Grant {
            account,
            credits,
            reason,
            expires_in,
            key,
        } => {
            let request = GrantArgs::parse(&credits, &reason, expires_in.as_deref(), key.as_deref())?;
            grant(ledger, &account, request).await
        }
    }
}

/// A ledger error as the command line reports it: bad input exits 2, the rest 1.
fn failed(err: LedgerError) -> CliError {
    match err {
        LedgerError::InvalidInput(invalid) => CliError::Argument(invalid),
        other => CliError::Failed(anyhow::Error::new(other)),
    }
}

/// The account an operator names by id or by email: the id first, since an id may look like
/// an email.
async fn resolve(ledger: &AppLedger, raw: &str) -> Result<AccountRef, CliError> {
    let id = AccountId::parse(raw).map(AccountRef::Id);
    let email = Email::parse(raw).map(AccountRef::Email);
    for by in [&id, &email].into_iter().flatten() {
        match ledger.account(by).await {
            Ok(account) => {
                let id = AccountId::parse(&account.account_id).map_err(CliError::Argument)?;
                return Ok(AccountRef::Id(id));
            }
            Err(LedgerError::NotFound(_)) => {}
            Err(err) => return Err(failed(err)),
        }
    }
    match (id, email) {
        (Err(invalid), Err(_)) => Err(CliError::Argument(InvalidInput::new(
            "account",
            format!(
                "{raw:?} is neither an account id nor an email: {}",
                invalid.reason
            ),
        ))),
        _ => Err(CliError::Failed(anyhow::anyhow!(
            "no account with id or email {raw:?}"
        ))),
    }
}

/// How many purchases `accounts show` lists.
const SHOWN_PURCHASES: u64 = 20;

async fn show(ledger: &AppLedger, billing: &Billing, raw: &str) -> Result<(), CliError> {
    let by = resolve(ledger, raw).await?;
    let balance = ledger.balance(&by).await.map_err(failed)?;
    let lots = ledger.lots(&by, false).await.map_err(failed)?;
    let page = PageRequest::parse(Listing::LedgerEntries, SHOWN_ENTRIES, "").map_err(CliError::Argument)?;
    let entries = ledger.entries(&by, &page).await.map_err(failed)?.entries;

    let account = &balance.account;
    println!("account    {}", account.id);
    println!("email      {}", account.email);
    println!("balance    {}", balance.credit_balance);
    println!("available  {}", balance.available_balance);
    println!("held       {}", balance.held_credits);
    println!("trial      {}", if account.is_trial_user { "yes" } else { "no" });
    if let Some(at) = balance.next_expiry_at {
        println!("expiring   {} on {}", balance.expiring_credits, when(Some(at)));
    }
    println!("created    {}", when(Some(account.created_at)));
    println!();
    money_loop::print_settings(&ledger.settings(&by).await.map_err(failed)?);
    println!();
    print_lots(&lots);
    println!();
    print_entries(&entries);
    println!();
    let purchases = billing
        .latest_purchases(&account.id, SHOWN_PURCHASES)
        .await
        .map_err(anyhow::Error::new)?;
    print_purchases(&purchases);
    Ok(())
}

/// The latest purchases, as the seed's shell check showed them.
fn print_purchases(purchases: &[crate::billing::Purchase]) {
    println!("PURCHASES ({}, newest first)", purchases.len());
    for p in purchases {
        println!(
            "  {} {:<10} {:<12} {:>8} credits {:>8} {} {}",
            when(Some(p.completed_at.unwrap_or(p.created_at))),
            p.status.as_str(),
            p.credit_pack_id,
            p.credits,
            p.amount,
            p.currency,
            p.session_id
        );
    }
}

fn print_lots(lots: &[Lot]) {
    println!("LOTS ({}, in burn order)", lots.len());
    println!(
        "{:<36} {:<8} {:<40} {:>12} {:>12} EXPIRES",
        "ID", "SOURCE", "REFERENCE", "CREDITS", "REMAINING"
    );
    for lot in lots {
        println!(
            "{:<36} {:<8} {:<40} {:>12} {:>12} {}",
            lot.id,
            lot.source.as_str(),
            lot.reference,
            lot.credits,
            lot.remaining,
            when(lot.expires_at)
        );
    }
}

fn print_entries(entries: &[EntryView]) {
    println!("ENTRIES (last {}, newest first)", entries.len());
    println!(
        "{:>8} {:<23} {:<11} {:<16} {:>12} {:>12} REFERENCE",
        "ID", "CREATED", "KIND", "REASON", "DELTA", "BALANCE"
    );
    for e in entries {
        println!(
            "{:>8} {:<23} {:<11} {:<16} {:>12} {:>12} {}",
            e.id,
            e.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            e.kind.as_str(),
            e.reason,
            e.delta,
            e.balance_after,
            e.reference
        );
    }
}

/// What `accounts grant` was asked, validated as GrantCredits validates it.
struct GrantArgs {
    credits: Credits,
    reason: Reason,
    expires_at: Option<DateTime<Utc>>,
    key: IdempotencyKey,
    /// True when no `--key` was given and one was made up.
    generated_key: bool,
}

impl GrantArgs {
    fn parse(
        credits: &str,
        reason: &str,
        expires_in: Option<&str>,
        key: Option<&str>,
    ) -> Result<Self, CliError> {
        let credits = credits
            .trim()
            .parse::<i64>()
            .map_err(|_| InvalidInput::new("credits", format!("{credits:?} is not a whole number")))
            .and_then(Credits::parse)?;
        let reason = Reason::parse(reason)?;
        let expires_at = match expires_in {
            None => None,
            Some(raw) => {
                let after = crate::config::parse_duration(raw)
                    .ok()
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .and_then(|d| Utc::now().trunc_subsecs(6).checked_add_signed(d))
                    .ok_or_else(|| {
                        InvalidInput::new(
                            "--expires-in",
                            format!("{raw:?} is not a duration like 90m, 72h or 30d"),
                        )
                    })?;
                Some(after)
            }
        };
        let (key, generated_key) = match key {
            Some(raw) => (IdempotencyKey::parse(raw)?, false),
            None => (
                IdempotencyKey::parse(&format!("cli-{}", uuid::Uuid::now_v7()))?,
                true,
            ),
        };
        Ok(Self {
            credits,
            reason,
            expires_at,
            key,
            generated_key,
        })
    }
}

async fn grant(ledger: &AppLedger, raw: &str, mut args: GrantArgs) -> Result<(), CliError> {
    let by = resolve(ledger, raw).await?;
    if !args.generated_key && args.expires_at.is_some() {
        // `--expires-in` counts from the first run: a repeat asks for the expiry that run
        // stored, so it is the same grant and replays.
        let first = ledger
            .lots(&by, true)
            .await
            .map_err(failed)?
            .into_iter()
            .find(|lot| lot.source == LotSource::Grant && lot.reference == args.key.as_str());
        if let Some(at) = first.and_then(|lot| lot.expires_at) {
            args.expires_at = Some(at);
        }
    }
    if args.generated_key {
        // Printed first, so an operator whose grant fails on the way can repeat it safely.
        println!(
            "key {} (repeat with --key {} to grant at most once)",
            args.key.as_str(),
            args.key.as_str()
        );
    }
    let (credits, key) = (args.credits.get(), args.key.as_str().to_owned());
    let granted = ledger
        .send(Grant {
            account: by.clone(),
            credits: args.credits,
            key: args.key,
            reason: args.reason,
            expires_at: args.expires_at,
            metadata: Metadata::from([("source".to_owned(), "cli".to_owned())]),
        })
        .await
        .map_err(failed)?;
    let account = match &by {
        AccountRef::Id(id) => id.as_str(),
        AccountRef::Email(email) => email.as_str(),
    };
    if granted.replayed {
        println!("already granted with key {key}: nothing changed");
    } else {
        println!(
            "granted {credits} credits to {account} (expires {})",
            when(args.expires_at)
        );
    }
    println!(
        "balance {} entry {} lot {}",
        granted.credit_balance, granted.ledger_entry_id, granted.lot_id
    );
    Ok(())
}
