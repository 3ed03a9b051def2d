//! The vocabulary of one writer batch: the jobs it holds, their answers, what it moved, and the
//! extension billing plugs into it. `writer` queues and runs batches; `apply` applies one.

use std::{collections::HashMap, future::Future};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{
    LedgerError,
    command::{Command, Posted, Posting, Reply},
    kinds::EntryKind,
};

/// Billing's part of a batch: it runs first in the batch's transaction (claiming events,
/// locking payments, deciding what each Stripe event does), hands the ledger the postings each
/// job needs, and after they are applied writes its own rows. The ledger never sees its types.
pub trait Extension: Send + Sync + 'static {
    type Job: Send + Sync + 'static;
    type Done: Send + 'static;
    /// What `prepare` decided and `finish` writes.
    type Batch: Send;

    /// Decides the jobs of one batch; returns the postings of each job, in job order.
    fn prepare<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        jobs: &'a [&'a Self::Job],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Self::Batch, Vec<Vec<Posting>>), LedgerError>> + Send + 'a;

    /// Writes what the jobs changed, given where their postings left each account.
    fn finish<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        batch: Self::Batch,
        posted: Vec<Vec<Posted>>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Self::Done>, LedgerError>> + Send + 'a;
}

/// Credits a new account starts with.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrialPolicy {
    pub credits: i64,
    pub expire_days: Option<u32>,
}

/// A job as the writer holds it.
pub enum Input<X: Extension> {
    Command(Command),
    Extension(X::Job),
}

/// A job's answer.
pub enum Answer<X: Extension> {
    Command(Result<Reply, LedgerError>),
    Extension(Result<X::Done, LedgerError>),
    /// The job could not run (the batch failed for it).
    Failed(LedgerError),
}

/// What a committed batch moved, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// Credits moved per entry kind (absolute).
    pub credits: HashMap<EntryKind, u64>,
    /// Holds reserved, captured, released and expired.
    pub holds: HashMap<&'static str, u64>,
}
