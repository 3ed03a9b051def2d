//! `credits import purchases FILE`: each row (`account_id`, `credit_pack_id`, `credits`,
//! `amount`, `currency`, `stripe_checkout_session_id`, `stripe_payment_intent_id`,
//! `completed_at`) checked into a completed purchase, its account and pack looked up, then
//! recorded through the writer once per session, or in a dry run compared with what is stored.

use std::{collections::HashMap, path::Path};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};

use super::{
    CHUNK, IN_FLIGHT, ImportFileError, ImportReport, RowReport, first_of_each, queue_row,
    rows::{self, FieldError, Row},
};
use crate::{
    billing::{Billing, PurchaseStatus, past_purchases::PurchaseImport, store::Purchase},
    catalog::Pack,
    ledger::{AccountId, Credits, MAX_CREDITS, types::bounded_token},
};

/// A purchase's id: a UUIDv7 of its completion time, so listings (newest first by id) keep the
/// history's order.
fn purchase_id(completed_at: DateTime<Utc>) -> Result<String, FieldError> {
    let seconds = u64::try_from(completed_at.timestamp())
        .map_err(|_| FieldError::new("completed_at", "before 1970"))?;
    let timestamp =
        uuid::Timestamp::from_unix(uuid::NoContext, seconds, completed_at.timestamp_subsec_nanos());
    Ok(uuid::Uuid::new_v7(timestamp).to_string())
}

/// Checks one row into the purchase it records.
fn purchase(row: &Row, now: DateTime<Utc>) -> Result<Purchase, FieldError> {
    let completed_at = row
        .time("completed_at")?
        .ok_or_else(|| FieldError::new("completed_at", "missing"))?;
    if completed_at > now {
        return Err(FieldError::new("completed_at", "in the future"));
    }
    let amount = row.integer("amount")?;
    if !(0..=MAX_CREDITS).contains(&amount) {
        return Err(FieldError::new(
            "amount",
            format!("must be from 0 to {MAX_CREDITS} (minor units)"),
        ));
    }
    let currency = row.text("currency")?.trim().to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(FieldError::new("currency", "must be a three-letter ISO code"));
    }
    let intent = row
        .optional_text("stripe_payment_intent_id")?
        .map(|raw| bounded_token("stripe_payment_intent_id", &raw, 255))
        .transpose()?;
    Ok(Purchase {
        id: purchase_id(completed_at)?,
        account_id: AccountId::parse(&row.text("account_id")?)?.to_string(),
        credit_pack_id: bounded_token("credit_pack_id", &row.text("credit_pack_id")?, 255)?,
        credits: Credits::parse(row.integer("credits")?)?.get(),
        amount,
        currency,
        amount_refunded: 0,
        session_id: bounded_token(
            "stripe_checkout_session_id",
            &row.text("stripe_checkout_session_id")?,
            255,
        )?,
        payment_intent_id: intent,
        checkout_url: None,
        idempotency_key: None,
        status: PurchaseStatus::Completed,
        created_at: completed_at,
        completed_at: Some(completed_at),
        credits_expire_at: None,
    })
}

/// Imports the purchases in the file at `path`; `packs` are the packs as sold (the database's
/// and the packs file's).
pub(crate) async fn import(
    billing: &Billing,
    packs: &[Pack],
    path: &Path,
    dry_run: bool,
) -> Result<ImportReport<PurchaseImport>, ImportFileError> {
    let rows = rows::read(path)?;
    let now = Utc::now();
    let mut reports: Vec<RowReport<PurchaseImport>> = Vec::with_capacity(rows.len());
    let mut checked: Vec<(usize, Purchase)> = Vec::with_capacity(rows.len());
    let mut sessions = HashMap::new();
    for (line, row) in rows {
        let result = row
            .and_then(|row| purchase(&row, now).map_err(|e| e.to_string()))
            .and_then(|p| {
                first_of_each(&mut sessions, "stripe_checkout_session_id", &p.session_id, line)?;
                Ok(p)
            });
        let key = result.as_ref().ok().map(|p| p.session_id.clone());
        queue_row(&mut reports, &mut checked, line, key, result);
    }

    let mut ready = Vec::with_capacity(checked.len());
    for chunk in checked.chunks(CHUNK) {
        let purchases: Vec<Purchase> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let (unknown, outcomes) = match billing.unknown_references(&purchases, packs).await {
            Ok(unknown) if dry_run => match billing.dry_run_purchases(&purchases).await {
                Ok(outcomes) => (unknown, outcomes.into_iter().map(Ok).collect()),
                Err(err) => (unknown, vec![Err(err.to_string()); chunk.len()]),
            },
            Ok(unknown) => (unknown, Vec::new()),
            Err(err) => (vec![Some(err.to_string()); chunk.len()], Vec::new()),
        };
        let mut outcomes = outcomes.into_iter();
        for ((at, purchase), unknown) in chunk.iter().zip(unknown) {
            let outcome = outcomes.next();
            match (unknown, outcome) {
                (Some(why), _) => reports[*at].result = Err(why),
                (None, Some(outcome)) => reports[*at].result = outcome,
                (None, None) => ready.push((*at, purchase.clone())),
            }
        }
    }
    let answered: Vec<(usize, Result<PurchaseImport, String>)> = stream::iter(ready)
        .map(|(at, purchase)| async move {
            (
                at,
                billing.import_purchase(purchase).await.map_err(|e| e.to_string()),
            )
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for (at, result) in answered {
        reports[at].result = result;
    }
    Ok(ImportReport {
        rows: reports,
        dry_run,
    })
}
