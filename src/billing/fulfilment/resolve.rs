//! Who pays and for what, for sessions no purchase names yet (Payment Links, Checkouts made
//! elsewhere): the account by `client_reference_id`, `metadata.account_id` or email, the pack by
//! `metadata.price_id` or the line items fetched before the job was queued.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{Job, LineItems};
use crate::{
    billing::{
        store::Purchase,
        stripe_event::{CheckoutFacts, EventAction},
        types::PurchaseStatus,
    },
    catalog::Pack,
    event_store::{Delivery, EventOutcome},
    ledger::{
        LedgerError,
        book::AccountState,
        types::{AccountId, Email},
    },
};

/// Purchases for sessions no purchase names yet (Payment Links, Checkouts made elsewhere): who
/// pays (account) and for what (pack). Sessions that match neither are reported per job.
pub(super) async fn resolve_new(
    txn: &DatabaseTransaction,
    jobs: &[&mut Job],
    claimed: &HashSet<usize>,
    known: &HashSet<&str>,
    packs: &[Pack],
    now: DateTime<Utc>,
) -> Result<(Vec<Purchase>, HashMap<usize, (EventOutcome, String)>), LedgerError> {
    let mut unmatched = HashMap::new();
    let mut wanted: Vec<(usize, &CheckoutFacts, &LineItems)> = Vec::new();
    let mut new: Vec<Purchase> = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        match &**job {
            Job::Open { purchase, .. } | Job::Import { purchase, .. } => new.push(purchase.clone()),
            Job::Failed { .. } => {}
            Job::Event {
                event,
                delivery,
                line_items,
                ..
            } => {
                let owned = *delivery == Delivery::Reconcile || claimed.contains(&n);
                if let EventAction::Credit(f) | EventAction::AwaitPayment(f) = &event.action
                    && owned
                    && !known.contains(f.session_id.as_str())
                {
                    wanted.push((n, f, line_items));
                }
            }
        }
    }
    if wanted.is_empty() {
        return Ok((new, unmatched));
    }
    let mut ids: Vec<&str> = Vec::new();
    let mut emails: Vec<String> = Vec::new();
    for (_, facts, _) in &wanted {
        ids.extend(
            [&facts.client_reference_id, &facts.metadata_account_id]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        emails.extend(
            facts
                .email
                .as_deref()
                .and_then(|e| Email::parse(e).ok())
                .map(|e| e.to_string()),
        );
    }
    let email_refs: Vec<&str> = emails.iter().map(String::as_str).collect();
    let accounts = crate::ledger::accounts_named(txn, &ids, &email_refs).await?;
    for (n, facts, line_items) in wanted {
        let Some(account) = match_account(facts, &accounts) else {
            let detail = format!(
                "no account for session {} (client_reference_id {:?}, metadata.account_id {:?}, email {:?})",
                facts.session_id, facts.client_reference_id, facts.metadata_account_id, facts.email
            );
            unmatched.insert(n, (EventOutcome::UnmatchedAccount, detail));
            continue;
        };
        let found = match &facts.top_up {
            // A top-up's PaymentIntent says what it bought.
            Some(top_up) => packs
                .iter()
                .find(|p| p.id == top_up.pack_id)
                .map(|pack| (pack, top_up.credits))
                .ok_or_else(|| format!("no pack {:?} for top-up {}", top_up.pack_id, facts.session_id)),
            None => match_pack(facts, line_items, packs),
        };
        let (pack, credits) = match found {
            Ok(found) => found,
            Err(detail) => {
                unmatched.insert(n, (EventOutcome::UnmatchedPack, detail));
                continue;
            }
        };
        let quantity = credits / pack.credits.max(1);
        new.push(Purchase {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account.id.clone(),
            credit_pack_id: pack.id.clone(),
            credits,
            amount: facts
                .amount_total
                .unwrap_or_else(|| pack.unit_amount.saturating_mul(quantity)),
            currency: facts
                .currency
                .clone()
                .unwrap_or_else(|| pack.currency.clone())
                .to_ascii_lowercase(),
            amount_refunded: 0,
            session_id: facts.session_id.clone(),
            payment_intent_id: facts.payment_intent_id.clone(),
            checkout_url: None,
            idempotency_key: None,
            status: PurchaseStatus::Pending,
            created_at: now,
            completed_at: None,
            credits_expire_at: None,
        });
    }
    Ok((new, unmatched))
}

/// The account a session names: by id (client_reference_id, then metadata), else by email.
fn match_account<'a>(facts: &CheckoutFacts, accounts: &'a [AccountState]) -> Option<&'a AccountState> {
    [&facts.client_reference_id, &facts.metadata_account_id]
        .into_iter()
        .flatten()
        .filter(|id| AccountId::parse(id).is_ok())
        .find_map(|id| accounts.iter().find(|a| &a.id == id))
        .or_else(|| {
            let email = Email::parse(facts.email.as_deref()?).ok()?;
            accounts.iter().find(|a| a.email == email.as_str())
        })
}

/// The pack a session bought and the credits it grants: by its line items when they were
/// fetched (pack credits × quantity), else by `metadata.price_id`; why not, for the event store.
fn match_pack<'a>(
    facts: &CheckoutFacts,
    line_items: &LineItems,
    packs: &'a [Pack],
) -> Result<(&'a Pack, i64), String> {
    let by_metadata = facts
        .metadata_price_id
        .as_deref()
        .and_then(|price| packs.iter().find(|p| p.stripe_price_id.as_deref() == Some(price)))
        .map(|pack| (pack, pack.credits));
    // The line items, when they were asked for, say how many packs were bought.
    let found = match (line_items, by_metadata) {
        (Some(Ok(Some(items))), _) => packs
            .iter()
            .find(|p| p.id == items.pack_id)
            .map(|pack| (pack, items.credits)),
        (Some(Err(why)), _) => {
            return Err(format!(
                "no pack for session {}: line items unavailable: {why}",
                facts.session_id
            ));
        }
        (_, Some(found)) => Some(found),
        (Some(Ok(None)) | None, None) => None,
    };
    found.ok_or_else(|| {
        format!(
            "no pack for session {} (metadata.price_id {:?})",
            facts.session_id, facts.metadata_price_id
        )
    })
}
