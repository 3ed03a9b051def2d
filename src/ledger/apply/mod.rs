//! One writer batch inside its transaction: billing's part first, then every account the batch
//! touches locked and loaded into a book (`load`), every job applied in order by the posting
//! rules (`commands`), everything that changed written set-wise (`flush`), billing's rows last.
//! The number of statements depends on which kinds of jobs the batch holds, never on how many.

mod commands;
mod flush;
mod load;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

pub use crate::ledger::book::capture_reference;

use super::{
    LedgerError,
    batch::{Answer, BatchStats, Extension, Input, TrialPolicy},
    command::{CaptureDone, Consumed, Granted, Posted, Reply},
    kinds::EntryKind,
    store::batch::{self, KeyRecord},
};

/// An entry's unique key, which the store maps to its id once written.
type EntryKey = (String, EntryKind, String);
/// An idempotency key: account, operation, the caller's key.
type KeyId = (String, &'static str, String);

/// An answer that needs the ids the store gives entries.
enum Pending {
    Ready(Result<Reply, LedgerError>),
    Granted {
        entry: EntryKey,
        lot_id: String,
        balance: i64,
    },
    Consumed {
        entry: EntryKey,
        balance: i64,
        available: i64,
    },
    Captured {
        entry: EntryKey,
        balance: i64,
        available: i64,
        released: i64,
        credits: i64,
    },
    /// The same key earlier in this batch: its answer, replayed.
    ReplayOf(usize),
    /// Billing's job: what each of its postings did.
    Postings(Vec<(EntryKey, i64, i64)>),
}

/// A key seen in this batch: stored before, or taken by a job of this batch.
struct KeyUse {
    fingerprint: String,
    stored: Option<String>,
    first_job: Option<usize>,
}

/// A job's final answer: a reply, or (billing's jobs) where its postings left each account.
enum Resolved {
    Reply(Result<Reply, LedgerError>),
    Postings(Vec<Posted>),
}

/// Runs `inputs` in `txn`; their answers in order, and what they moved.
// Long on purpose: the batch's statement order (billing, load, apply, flush, keys, billing) is the lock order.
pub async fn apply<X: Extension>(
    txn: &DatabaseTransaction,
    extension: &X,
    trial: TrialPolicy,
    inputs: &[Input<X>],
    now: DateTime<Utc>,
) -> Result<(Vec<Answer<X>>, BatchStats), LedgerError> {
    // Billing first: it claims events and locks payments before any account row.
    let jobs: Vec<&X::Job> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Extension(job) => Some(job),
            Input::Command(_) => None,
        })
        .collect();
    let (billing, postings) = if jobs.is_empty() {
        (None, Vec::new())
    } else {
        let (batch, postings) = extension.prepare(txn, &jobs, now).await?;
        (Some(batch), postings)
    };
    let mut books = load::books(txn, inputs, &postings, trial, now).await?;
    let keys = load::keys(txn, inputs, &books).await?;
    let (pending, new_keys) = commands::run(&mut books, keys, inputs, postings, now)?;
    let (ids, stats) = flush::books(txn, &books, now).await?;

    let mut answers: Vec<Answer<X>> = Vec::with_capacity(inputs.len());
    let mut records = Vec::new();
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(inputs.len());
    let mut posted_by_job = Vec::new();
    for item in pending {
        match resolve(item, &ids, &replies, &mut records, &new_keys)? {
            Resolved::Reply(reply) => {
                replies.push(reply.as_ref().ok().cloned());
                answers.push(Answer::Command(reply));
            }
            Resolved::Postings(posted) => {
                replies.push(None);
                posted_by_job.push(posted);
                // Billing's answer replaces this once its rows are written.
                answers.push(Answer::Failed(LedgerError::WriterStopped));
            }
        }
    }
    batch::insert_keys(txn, &records, now).await?;

    if let Some(billing) = billing {
        let mut done = extension
            .finish(txn, billing, posted_by_job, now)
            .await?
            .into_iter();
        for (input, answer) in inputs.iter().zip(answers.iter_mut()) {
            if matches!(input, Input::Extension(_)) {
                *answer = match done.next() {
                    Some(done) => Answer::Extension(Ok(done)),
                    None => Answer::Failed(LedgerError::Unexpected(anyhow::anyhow!(
                        "billing answered too few jobs"
                    ))),
                };
            }
        }
    }
    Ok((answers, stats))
}

fn entry_id(ids: &HashMap<EntryKey, i64>, key: &EntryKey) -> Result<i64, LedgerError> {
    ids.get(key)
        .copied()
        .ok_or_else(|| LedgerError::Unexpected(anyhow::anyhow!("entry {key:?} was not written")))
}

/// Turns a pending answer into its reply (or, for billing's jobs, where its postings left each
/// account); records the answer of a key this batch took.
// Long on purpose: one arm per kind of answer.
fn resolve(
    pending: Pending,
    ids: &HashMap<EntryKey, i64>,
    earlier: &[Option<Reply>],
    records: &mut Vec<KeyRecord>,
    new_keys: &[commands::NewKey],
) -> Result<Resolved, LedgerError> {
    let job = earlier.len();
    let reply = match pending {
        Pending::Ready(reply) => reply,
        Pending::ReplayOf(first) => match earlier.get(first).cloned().flatten() {
            Some(reply) => Ok(reply.replayed()),
            None => Err(LedgerError::Unexpected(anyhow::anyhow!(
                "replayed job {first} has no answer"
            ))),
        },
        Pending::Granted {
            entry,
            lot_id,
            balance,
        } => Ok(Reply::Granted(Granted {
            credit_balance: balance,
            ledger_entry_id: entry_id(ids, &entry)?.to_string(),
            lot_id,
            replayed: false,
        })),
        Pending::Consumed {
            entry,
            balance,
            available,
        } => Ok(Reply::Consumed(Consumed {
            credit_balance: balance,
            available_balance: available,
            ledger_entry_id: entry_id(ids, &entry)?.to_string(),
            replayed: false,
        })),
        Pending::Captured {
            entry,
            balance,
            available,
            released,
            credits,
        } => Ok(Reply::Captured(CaptureDone {
            credit_balance: balance,
            available_balance: available,
            ledger_entry_id: entry_id(ids, &entry)?.to_string(),
            released_credits: released,
            credits,
            replayed: false,
        })),
        Pending::Postings(posted) => {
            let posted = posted
                .into_iter()
                .map(|(entry, delta, balance)| {
                    Ok(Posted {
                        account_id: entry.0.clone(),
                        delta,
                        balance,
                        entry_id: entry_id(ids, &entry)?,
                    })
                })
                .collect::<Result<Vec<_>, LedgerError>>()?;
            return Ok(Resolved::Postings(posted));
        }
    };
    if let Ok(reply) = &reply
        && let Some(((account, operation, key), fingerprint, _)) = new_keys.iter().find(|(_, _, n)| *n == job)
    {
        records.push(KeyRecord {
            account_id: account.clone(),
            operation: (*operation).to_owned(),
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            response: reply.to_record(),
        });
    }
    Ok(Resolved::Reply(reply))
}
