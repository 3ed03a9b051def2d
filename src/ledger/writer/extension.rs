//! What billing plugs into a writer batch: its jobs run first in the batch's transaction
//! (claiming events, locking payments, deciding what each Stripe event does), hand the ledger
//! the postings each job needs, and after those are applied write billing's own rows and fill
//! each job's answer. The ledger never sees billing's types.

use std::future::Future;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use crate::ledger::{
    book::{Clawback, Credit},
    error::LedgerError,
};

/// Billing's part of a batch.
pub(crate) trait Extension: Send + Sync + 'static {
    /// One of billing's jobs; it carries where its answer goes.
    type Job: ExtensionJob;
    /// What `prepare` decided and `finish` writes.
    type Decisions: Send;

    /// Decides the jobs of one batch (each job keeps its decision); returns the postings of
    /// each job, in job order.
    fn prepare<'a, 'b: 'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        jobs: &'a mut [&'b mut Self::Job],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Self::Decisions, Vec<Vec<Posting>>), LedgerError>> + Send + 'a;

    /// Writes what the jobs changed, given where their postings left each account, and gives
    /// each job its answer (sent once the batch is committed).
    fn finish<'a, 'b: 'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        decisions: Self::Decisions,
        jobs: &'a mut [&'b mut Self::Job],
        posted: Vec<Vec<Posted>>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'a;

    /// A job failed on its own (its savepoint rolled back): records what billing keeps of such
    /// a failure, in the same transaction.
    fn failed<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        job: &'a Self::Job,
        error: &'a LedgerError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'a;
}

/// A job of billing's as the writer holds it: answered once its batch is committed.
pub(crate) trait ExtensionJob: Send + Sync + 'static {
    /// Sends the answer `finish` gave it.
    fn deliver(self);
    /// Sends an error instead: the job could not be applied.
    fn fail(self, err: LedgerError);
}

/// A balance change billing decided for a Stripe event, applied in the event's transaction.
#[derive(Debug, Clone)]
pub(crate) enum Posting {
    Credit {
        account_id: String,
        credit: Credit,
    },
    Clawback {
        account_id: String,
        clawback: Clawback,
    },
    /// A Checkout buyer asked to keep the card: the account's Stripe Customer and the payment
    /// method auto top-ups charge.
    SaveCard {
        account_id: String,
        customer_id: String,
        payment_method_id: String,
    },
    /// An auto top-up's PaymentIntent succeeded (its credit is a `Credit` beside this).
    TopUpPaid {
        account_id: String,
        attempt_id: String,
        payment_intent_id: String,
        credits: i64,
    },
    /// A subscription ended: the live lots opened for `lot_reference` (an invoice's allowance
    /// and what rolled over from it) no longer roll over at their expiry. No entry.
    StopRollover {
        account_id: String,
        lot_reference: String,
    },
}

impl Posting {
    pub(crate) fn account_id(&self) -> &str {
        match self {
            Self::Credit { account_id, .. }
            | Self::Clawback { account_id, .. }
            | Self::SaveCard { account_id, .. }
            | Self::TopUpPaid { account_id, .. }
            | Self::StopRollover { account_id, .. } => account_id,
        }
    }

    /// The top-up attempt the posting changes.
    pub(crate) fn top_up(&self) -> Option<&str> {
        match self {
            Self::TopUpPaid { attempt_id, .. } => Some(attempt_id),
            _ => None,
        }
    }
}

/// Where a posting left its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posted {
    pub account_id: String,
    pub delta: i64,
    pub balance: i64,
    pub entry_id: i64,
}

/// Credits a new account starts with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TrialPolicy {
    pub credits: i64,
    pub expire_days: Option<u32>,
}
