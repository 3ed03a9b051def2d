//! Billing's postings for one of its jobs, applied to the batch's books: credits (a purchase,
//! an auto top-up, an allowance), clawbacks (a refund or dispute), a saved card, a top-up's
//! payment and the end of a subscription's rollover; and
//! where each entry left its account once entries have ids.

use chrono::{DateTime, Utc};

use super::extension::{Posted, Posting};
use crate::ledger::{
    commands::{Books, EntryIds},
    error::LedgerError,
    kinds::{EntryKind, LotSource},
};

/// A posting applied, waiting for its entry's id.
pub(super) struct Pending {
    entry: (String, EntryKind, String),
    delta: i64,
    balance: i64,
}

/// Applies one job's postings; an account billing named but nobody created fails the batch
/// (and so, rerun alone, the job).
pub(super) fn apply(
    books: &mut Books,
    postings: Vec<Posting>,
    now: DateTime<Utc>,
) -> Result<Vec<Pending>, LedgerError> {
    let mut applied = Vec::with_capacity(postings.len());
    for posting in postings {
        let account = posting.account_id().to_owned();
        let Some(book) = books.get_mut(&account) else {
            return Err(LedgerError::Unexpected(anyhow::anyhow!(
                "posting for unknown account {account}"
            )));
        };
        let (kind, reference, delta, balance) = match posting {
            Posting::Credit { credit, .. } => {
                let (kind, reference, delta) = (credit.kind, credit.reference.clone(), credit.credits);
                if credit.lot.source == LotSource::Purchase {
                    book.purchase_completed();
                }
                (kind, reference, delta, book.credit(credit, now).balance)
            }
            Posting::SaveCard {
                customer_id,
                payment_method_id,
                ..
            } => {
                book.change_settings(|s| {
                    s.stripe_customer_id = Some(customer_id);
                    s.payment_method_id = Some(payment_method_id);
                });
                continue;
            }
            Posting::StopRollover { lot_reference, .. } => {
                book.stop_rollover(&lot_reference);
                continue;
            }
            Posting::TopUpPaid {
                attempt_id,
                payment_intent_id,
                credits,
                ..
            } => {
                book.top_up_paid(&attempt_id, &payment_intent_id, credits, now);
                continue;
            }
            Posting::Clawback { clawback, .. } => {
                let (kind, reference, delta) = (clawback.kind, clawback.reference.clone(), -clawback.credits);
                let balance = book
                    .claw_back(clawback, now)
                    .map_err(|e| crate::ledger::commands::posting_error(e, ""))?
                    .balance;
                (kind, reference, delta, balance)
            }
        };
        applied.push(Pending {
            entry: (account, kind, reference),
            delta,
            balance,
        });
    }
    Ok(applied)
}

/// Where a job's postings left each account.
pub(super) fn resolve(pending: Vec<Pending>, ids: &EntryIds) -> Result<Vec<Posted>, LedgerError> {
    pending
        .into_iter()
        .map(|p| {
            Ok(Posted {
                entry_id: ids.get(&p.entry)?,
                account_id: p.entry.0,
                delta: p.delta,
                balance: p.balance,
            })
        })
        .collect()
}
