//! One writer batch inside its transaction: billing's part first, then every account the batch
//! touches locked and loaded into a book (`load`), every job applied in order (a command by its
//! rule, a billing job by its postings), everything that changed written set-wise (`flush`),
//! the answers assembled, the keys recorded, billing's rows, and last the outbox (top-up
//! attempts and account events). The number of statements
//! depends on which kinds of jobs the batch holds, never on how many.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{BatchStats, Policies, Queued, extension::Extension, flush, load, postings};
use crate::ledger::{
    book::Book,
    commands::{Context, LockSet},
    error::LedgerError,
    outbox,
    store::writes::{self, KeyRecord},
};

/// Applies `jobs` in `txn`, leaving each job its answer; what the batch moved.
// Long on purpose: the batch's statement order (billing, load, apply, flush, keys, billing) is the lock order.
pub(super) async fn apply<X: Extension>(
    txn: &DatabaseTransaction,
    extension: &X,
    policies: Policies,
    jobs: &mut [Queued<X>],
    now: DateTime<Utc>,
) -> Result<BatchStats, LedgerError> {
    // Billing first: it claims events and locks payments before any account row.
    let mut billing = billing_jobs(jobs);
    let (decisions, postings) = if billing.is_empty() {
        (None, Vec::new())
    } else {
        let (decisions, postings) = extension.prepare(txn, &mut billing, now).await?;
        (Some(decisions), postings)
    };
    drop(billing);

    let mut set = LockSet::default();
    for job in jobs.iter() {
        if let Queued::Command(command) = job {
            command.lock(&mut set);
        }
    }
    let mut books = load::books(txn, set, &postings, policies.trial, now).await?;
    let wanted = jobs
        .iter()
        .filter_map(|job| match job {
            Queued::Command(command) => command.key(&books),
            Queued::Extension(_) => None,
        })
        .collect();
    let keys = load::keys(txn, wanted).await?;

    let mut cx = Context::new(&mut books, keys, now);
    let mut postings = postings.into_iter();
    let mut pending_postings = Vec::new();
    for (n, job) in jobs.iter_mut().enumerate() {
        cx.start(n);
        match job {
            Queued::Command(command) => command.apply(&mut cx),
            Queued::Extension(_) => {
                let postings = postings.next().unwrap_or_default();
                pending_postings.push(postings::apply(cx.books_mut(), postings, now)?);
            }
        }
    }
    let taken = cx.into_taken();
    let (ids, mut stats) = flush::books(txn, &books, now).await?;

    let taken: HashMap<usize, _> = taken
        .iter()
        .map(|(key, print, job)| (*job, (key, print)))
        .collect();
    let mut records: Vec<Option<String>> = Vec::with_capacity(jobs.len());
    let mut kept = Vec::new();
    for (n, job) in jobs.iter_mut().enumerate() {
        let Queued::Command(command) = job else {
            records.push(None);
            continue;
        };
        let record = command.resolve(&ids, &records);
        if let Some(((account, operation, key), fingerprint)) = taken.get(&n)
            && let Some(response) = &record
        {
            kept.push(KeyRecord {
                account_id: account.clone(),
                operation: (*operation).to_owned(),
                key: key.clone(),
                fingerprint: (*fingerprint).clone(),
                response: response.clone(),
            });
        }
        records.push(record);
    }
    writes::insert_keys(txn, &kept, now).await?;

    if let Some(decisions) = decisions {
        let posted = pending_postings
            .into_iter()
            .map(|pending| postings::resolve(pending, &ids))
            .collect::<Result<Vec<_>, _>>()?;
        let mut billing = billing_jobs(jobs);
        extension
            .finish(txn, decisions, &mut billing, posted, now)
            .await?;
    }

    // Last: on PostgreSQL the events' lock is held from here to the commit.
    let mut ordered: Vec<&Book> = books.values().collect();
    ordered.sort_by(|a, b| a.account.id.cmp(&b.account.id));
    let planned = outbox::plan(ordered.iter().copied(), policies.outbox, &ids, now)?;
    (stats.events, stats.top_ups) = flush::outbox(txn, &ordered, planned, now).await?;
    Ok(stats)
}

fn billing_jobs<X: Extension>(jobs: &mut [Queued<X>]) -> Vec<&mut X::Job> {
    jobs.iter_mut()
        .filter_map(|job| match job {
            Queued::Extension(job) => Some(job),
            Queued::Command(_) => None,
        })
        .collect()
}
