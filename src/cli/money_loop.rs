//! What `credits accounts show` prints of the money loop (settings and recent top-ups), and
//! `credits accounts events`.

use super::print::when;
use crate::{
    app::AppLedger,
    ledger::{AccountRef, InvalidInput, LedgerError, SettingsRead},
};

/// Events per `accounts events` call, as ListAccountEvents allows.
const MAX_EVENTS: u64 = 1000;

pub(super) fn print_settings(read: &SettingsRead) {
    let s = &read.settings;
    let threshold = s
        .low_balance_threshold
        .map_or_else(|| "service default".to_owned(), |t| t.to_string());
    println!("low-balance threshold  {threshold}");
    println!("overdraft limit        {}", s.overdraft_limit);
    println!(
        "saved card             {}",
        s.payment_method_id.as_deref().unwrap_or("none")
    );
    let top_up = &s.auto_top_up;
    if top_up.enabled {
        println!(
            "auto top-up            {} below {} credits, at most {} a month{}",
            top_up.pack_id.as_deref().unwrap_or("?"),
            top_up.threshold,
            top_up.monthly_limit,
            top_up
                .paused
                .as_deref()
                .map(|why| format!(", paused: {why}"))
                .unwrap_or_default()
        );
    } else {
        println!("auto top-up            off");
    }
    if read.recent_top_ups.is_empty() {
        return;
    }
    println!("TOP-UPS ({}, newest first)", read.recent_top_ups.len());
    for t in &read.recent_top_ups {
        println!(
            "  {} {:<16} #{} {:<12} {:>8} credits {} {}",
            when(Some(t.created_at)),
            t.state.as_str(),
            t.number,
            t.pack_id,
            t.credits.unwrap_or(0),
            t.payment_intent_id.as_deref().unwrap_or("-"),
            t.error.as_deref().unwrap_or("")
        );
    }
}

/// Prints up to `limit` events of the account after sequence `after`, then the cursor to
/// resume from.
pub(super) async fn events(
    ledger: &AppLedger,
    by: &AccountRef,
    after: i64,
    limit: u64,
) -> Result<(), LedgerError> {
    if after < 0 {
        return Err(InvalidInput::new("after", "must not be negative").into());
    }
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(InvalidInput::new("limit", format!("must be from 1 to {MAX_EVENTS}")).into());
    }
    let account_id = ledger.account_id(by).await?;
    let page = ledger.account_events(Some(&account_id), after, limit).await?;
    println!(
        "{:>10} {:<23} {:<20} {:>12} {:>12} {:>8} ID / PAYLOAD",
        "SEQUENCE", "CREATED", "TYPE", "BALANCE", "AVAILABLE", "ENTRY"
    );
    for e in &page.events {
        println!(
            "{:>10} {:<23} {:<20} {:>12} {:>12} {:>8} {} {}",
            e.sequence,
            e.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            e.kind.as_str(),
            e.balance_after,
            e.available_after,
            e.entry_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            e.id,
            e.payload
        );
    }
    println!("next: --after {}", page.next_after);
    Ok(())
}
