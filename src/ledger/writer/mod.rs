//! The ledger's writer: the one write path for balances. Callers submit commands (and billing
//! its Stripe-event jobs) to a queue; a writer task takes whatever is queued, up to a bound,
//! and applies it in one database transaction with a fixed number of set-wise statements, then
//! answers every caller once the commit is durable. With one caller nothing waits for a batch
//! to fill: a batch is simply what is queued when the writer is free.
//!
//! Failures: a serialization failure or deadlock (PostgreSQL 40001/40P01) retries the batch; a
//! passing fault answers every caller with it (503 / UNAVAILABLE, nothing written); any other
//! error reruns the batch one job per savepoint, so a job that fails on its own fails alone.
//!
//! SQLite has one writer task on one connection: no busy-timeout queueing on the hot path.
//! PostgreSQL has a few (`DATABASE_WRITER_CONNECTIONS`), sharing the queue; rows are locked in
//! a fixed order (event ids, payment intents, then accounts, each sorted), so they never
//! deadlock on each other; accounts are locked `FOR NO KEY UPDATE`, which the `FOR KEY SHARE`
//! of a row that references one (a new purchase) does not conflict with.

mod batch;
mod extension;
mod flush;
mod job;
mod load;
mod postings;
mod signals;

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr, TransactionTrait, sqlx};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) use extension::{Extension, ExtensionJob, Posted, Posting, TrialPolicy};
use job::{Job, Submitted};
pub(crate) use signals::Signals;

use super::{commands::Command, error::LedgerError, kinds::EntryKind, outbox::OutboxPolicy};
use crate::{db, metrics::Metrics};

/// How the writer runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    /// Writer tasks, each with its own connection (1 on SQLite).
    pub connections: usize,
    /// The most jobs applied in one transaction.
    pub max_batch: usize,
    /// Jobs that may wait in the queue.
    pub queue: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            connections: 1,
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// A job in the writer's queue: one of the ledger's commands, or one of billing's jobs.
pub(crate) enum Queued<X: Extension> {
    Command(Box<dyn Job>),
    Extension(X::Job),
}

impl<X: Extension> Queued<X> {
    fn deliver(self) {
        match self {
            Self::Command(job) => job.deliver(),
            Self::Extension(job) => job.deliver(),
        }
    }

    fn fail(self, err: LedgerError) {
        match self {
            Self::Command(job) => job.fail(err),
            Self::Extension(job) => job.fail(err),
        }
    }
}

/// What the queue holds: one job, or a group of commands queued together so that one batch
/// takes them all (a group is never split, whatever `max_batch` says).
pub(crate) enum Entry<X: Extension> {
    One(Queued<X>),
    Group(Vec<Box<dyn Job>>),
}

impl<X: Extension> Entry<X> {
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Group(jobs) => jobs.len(),
        }
    }

    fn into_jobs(self, jobs: &mut Vec<Queued<X>>) {
        match self {
            Self::One(job) => jobs.push(job),
            Self::Group(group) => jobs.extend(group.into_iter().map(Queued::Command)),
        }
    }
}

/// What a committed batch moved, for the metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchStats {
    /// Credits moved per entry kind (absolute).
    pub credits: HashMap<EntryKind, u64>,
    /// Holds reserved, captured, released and expired.
    pub holds: HashMap<&'static str, u64>,
    /// Account events and top-up attempts written.
    pub events: usize,
    pub top_ups: usize,
}

/// What batches follow besides the posting rules: the credits a new account starts with, and
/// which account events changes write.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policies {
    pub trial: TrialPolicy,
    pub outbox: OutboxPolicy,
}

/// Submits jobs to the writer; cheap to clone.
pub(crate) struct WriterHandle<X: Extension> {
    queue: mpsc::Sender<Entry<X>>,
}

impl<X: Extension> Clone for WriterHandle<X> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<X: Extension> WriterHandle<X> {
    /// Applies a command; answers once its batch is committed.
    pub(crate) async fn command<C: Command>(&self, command: C) -> Result<C::Reply, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Entry::One(Queued::Command(Box::new(Submitted::new(command, tx)))))
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Applies commands as one group, in one batch (with whatever else is queued); answers each
    /// on its own, in order, once that batch is committed. A command refused fails alone.
    pub(crate) async fn commands<C: Command>(&self, commands: Vec<C>) -> Vec<Result<C::Reply, LedgerError>> {
        let mut answers = Vec::with_capacity(commands.len());
        let group = commands
            .into_iter()
            .map(|command| {
                let (tx, rx) = oneshot::channel();
                answers.push(rx);
                Box::new(Submitted::new(command, tx)) as Box<dyn Job>
            })
            .collect();
        if self.queue.send(Entry::Group(group)).await.is_err() {
            return answers.iter().map(|_| Err(LedgerError::WriterStopped)).collect();
        }
        let mut replies = Vec::with_capacity(answers.len());
        for answer in answers {
            replies.push(answer.await.unwrap_or(Err(LedgerError::WriterStopped)));
        }
        replies
    }

    /// Queues one of billing's jobs; the job itself carries where its answer goes.
    pub(crate) async fn extension(&self, job: X::Job) -> Result<(), LedgerError> {
        self.queue
            .send(Entry::One(Queued::Extension(job)))
            .await
            .map_err(|_| LedgerError::WriterStopped)
    }
}

struct Shared<X: Extension> {
    db: DatabaseConnection,
    extension: Arc<X>,
    policies: Policies,
    max_batch: usize,
    signals: Signals,
    metrics: Metrics,
}

/// Starts the writer tasks on `db` (the writer's own pool). Once `stop` fires they take no new
/// jobs, finish what is queued and end (as they do when every handle is dropped).
pub(crate) fn spawn<X: Extension>(
    db: DatabaseConnection,
    extension: Arc<X>,
    policies: Policies,
    settings: WriterSettings,
    metrics: Metrics,
    signals: Signals,
    stop: CancellationToken,
) -> (WriterHandle<X>, Vec<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    metrics.writer_queue_capacity(settings.queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let shared = Arc::new(Shared {
        db,
        extension,
        policies,
        max_batch: settings.max_batch.max(1),
        signals,
        metrics,
    });
    let tasks = (0..settings.connections.max(1))
        .map(|_| tokio::spawn(run(shared.clone(), rx.clone(), stop.clone())))
        .collect();
    (WriterHandle { queue: tx }, tasks)
}

async fn run<X: Extension>(
    shared: Arc<Shared<X>>,
    queue: Arc<Mutex<mpsc::Receiver<Entry<X>>>>,
    stop: CancellationToken,
) {
    loop {
        let (jobs, waiting) = {
            let mut queue = queue.lock().await;
            let first = tokio::select! {
                job = queue.recv() => job,
                () = stop.cancelled() => {
                    // No new jobs; what is queued still runs, then `recv` answers None.
                    queue.close();
                    queue.recv().await
                }
            };
            let Some(first) = first else {
                return;
            };
            let mut jobs = Vec::with_capacity(first.len());
            first.into_jobs(&mut jobs);
            while jobs.len() < shared.max_batch {
                match queue.try_recv() {
                    Ok(entry) => entry.into_jobs(&mut jobs),
                    Err(_) => break,
                }
            }
            (jobs, queue.len())
        };
        shared.metrics.writer_batch(jobs.len(), waiting);
        shared.process(jobs).await;
    }
}

/// Serialization failures and deadlocks: the whole batch is tried again.
fn is_retryable(err: &LedgerError) -> bool {
    let LedgerError::DatabaseUnavailable(
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)),
    ) = err
    else {
        return false;
    };
    match e.as_ref() {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

const RETRIES: u32 = 4;

impl<X: Extension> Shared<X> {
    async fn process(&self, mut jobs: Vec<Queued<X>>) {
        // Microseconds, as PostgreSQL stores them: an answer shows the times a read shows later.
        let now = Utc::now().trunc_subsecs(6);
        let mut attempt = 0;
        loop {
            let result = self.batch(&mut jobs, now).await;
            if result.is_err() {
                // A failed transaction can leave SQLite's connection inside it: start afresh.
                db::discard_sqlite_writer_connection(&self.db).await;
            }
            match result {
                Ok(stats) => {
                    self.record(&stats);
                    jobs.into_iter().for_each(Queued::deliver);
                    return;
                }
                Err(err) if is_retryable(&err) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %err, "writer batch lost a race; retrying");
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                Err(err) if err.is_transient() => {
                    // Disk full, database gone: nothing written, every caller told to retry.
                    tracing::warn!(error = %crate::report::error_chain(&err), jobs = jobs.len(), "writer batch not written; its callers retry");
                    for job in jobs {
                        job.fail(share(&err));
                    }
                    return;
                }
                Err(err) => {
                    if jobs.len() > 1 {
                        tracing::warn!(error = %err, jobs = jobs.len(), "writer batch failed; applying its jobs one by one");
                    }
                    self.one_by_one(jobs, now).await;
                    return;
                }
            }
        }
    }

    async fn batch(&self, jobs: &mut [Queued<X>], now: DateTime<Utc>) -> Result<BatchStats, LedgerError> {
        let started = std::time::Instant::now();
        let txn = db::begin_write(&self.db).await?;
        let begun = started.elapsed();
        let stats = batch::apply(&txn, &*self.extension, self.policies, jobs, now).await?;
        let applied_at = started.elapsed();
        txn.commit().await?;
        tracing::debug!(
            jobs = jobs.len(),
            begin_us = begun.as_micros() as u64,
            apply_us = (applied_at - begun).as_micros() as u64,
            commit_us = (started.elapsed() - applied_at).as_micros() as u64,
            "writer batch committed"
        );
        Ok(stats)
    }

    /// Counts what a committed batch moved.
    fn record(&self, stats: &BatchStats) {
        self.signals.committed(stats);
        self.metrics.account_events(stats.events as u64);
        for (kind, credits) in &stats.credits {
            self.metrics.ledger_credits(kind.as_str(), *credits);
        }
        for (outcome, count) in &stats.holds {
            self.metrics.holds(outcome, *count);
        }
    }

    /// Each job in a savepoint of one transaction: one that fails is rolled back alone, and
    /// billing records what it keeps of the failure in the same transaction.
    async fn one_by_one(&self, mut jobs: Vec<Queued<X>>, now: DateTime<Utc>) {
        let mut failures: Vec<Option<LedgerError>> = Vec::with_capacity(jobs.len());
        let attempt = async {
            let txn = db::begin_write(&self.db).await?;
            let mut committed = Vec::new();
            for job in &mut jobs {
                let savepoint = txn.begin().await?;
                let result = batch::apply(
                    &savepoint,
                    &*self.extension,
                    self.policies,
                    std::slice::from_mut(job),
                    now,
                )
                .await;
                match result {
                    Ok(stats) => {
                        savepoint.commit().await?;
                        committed.push(stats);
                        failures.push(None);
                    }
                    // The database itself failing (disk full, gone) is no job's own fault,
                    // and may have ended the whole transaction: every job waits for a retry.
                    Err(err) if err.is_transient() => return Err(err),
                    Err(err) => {
                        savepoint.rollback().await?;
                        tracing::error!(error = ?err, "writer job failed on its own");
                        if let Queued::Extension(job) = job {
                            self.extension.failed(&txn, job, &err, now).await?;
                        }
                        failures.push(Some(err));
                    }
                }
            }
            txn.commit().await?;
            Ok::<_, LedgerError>(committed)
        };
        match attempt.await {
            Ok(committed) => {
                for stats in &committed {
                    self.record(stats);
                }
                for (job, failure) in jobs.into_iter().zip(failures) {
                    match failure {
                        None => job.deliver(),
                        Some(err) => job.fail(err),
                    }
                }
            }
            Err(err) => {
                db::discard_sqlite_writer_connection(&self.db).await;
                for job in jobs {
                    job.fail(share(&err));
                }
            }
        }
    }
}

/// One error for many callers: the cause goes to the log once, each caller gets its kind.
fn share(err: &LedgerError) -> LedgerError {
    match err {
        LedgerError::InvalidInput(e) => LedgerError::InvalidInput(e.clone()),
        LedgerError::NotFound(what) => LedgerError::NotFound(what.clone()),
        LedgerError::EmailTaken(email) => LedgerError::EmailTaken(email.clone()),
        LedgerError::FailedPrecondition(why) => LedgerError::FailedPrecondition(why.clone()),
        LedgerError::Insufficient { available, asked } => LedgerError::Insufficient {
            available: *available,
            asked: *asked,
        },
        LedgerError::HoldClosed { hold_id, status } => LedgerError::HoldClosed {
            hold_id: hold_id.clone(),
            status: *status,
        },
        LedgerError::DatabaseUnavailable(cause) => {
            LedgerError::DatabaseUnavailable(DbErr::Custom(cause.to_string()))
        }
        LedgerError::WriterStopped => LedgerError::WriterStopped,
        LedgerError::Unexpected(cause) => {
            LedgerError::Unexpected(anyhow::anyhow!(crate::report::error_chain(cause.as_ref())))
        }
    }
}
