//! The ledger as callers use it: commands sent to the writer and answered once committed,
//! billing's jobs queued, the expiry sweep. Reads are in `reads`.

use chrono::Utc;
use sea_orm::DatabaseConnection;

use super::{
    commands::{self, Command, Expire, ImportAccount, ImportOutcome},
    error::LedgerError,
    store,
    types::AccountId,
    writer::{Extension, Signals, WriterHandle},
};

/// Accounts with due lots or run-out holds handled per sweep pass.
const SWEEP_BATCH: u64 = 500;

/// The ledger as callers use it: cheap to clone.
pub(crate) struct Ledger<X: Extension> {
    writer: WriterHandle<X>,
    pub(super) reads: DatabaseConnection,
    pub(super) signals: Signals,
}

impl<X: Extension> Clone for Ledger<X> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            reads: self.reads.clone(),
            signals: self.signals.clone(),
        }
    }
}

impl<X: Extension> Ledger<X> {
    pub(crate) fn new(writer: WriterHandle<X>, reads: DatabaseConnection, signals: Signals) -> Self {
        Self {
            writer,
            reads,
            signals,
        }
    }

    /// What committed batches signal (account events, top-up attempts).
    pub(crate) fn signals(&self) -> &Signals {
        &self.signals
    }

    /// Applies a command; answers once its batch is committed.
    #[tracing::instrument(skip_all, fields(command = C::NAME), err)]
    pub(crate) async fn send<C: Command>(&self, command: C) -> Result<C::Reply, LedgerError> {
        self.writer.command(command).await
    }

    /// Applies commands together, in one batch; each answered (or refused) on its own, in order.
    #[tracing::instrument(skip_all, fields(command = C::NAME, commands = commands.len()))]
    pub(crate) async fn send_all<C: Command>(&self, commands: Vec<C>) -> Vec<Result<C::Reply, LedgerError>> {
        self.writer.commands(commands).await
    }

    /// Queues one of billing's jobs (it carries where its answer goes).
    pub(crate) async fn submit(&self, job: X::Job) -> Result<(), LedgerError> {
        self.writer.extension(job).await
    }

    /// Proves the write path works: a write transaction opened and committed (with whatever
    /// else was queued).
    pub(crate) async fn ping(&self) -> Result<(), LedgerError> {
        self.writer.command(commands::Ping).await.map(|_| ())
    }

    /// What these imports would do, read over the pool; nothing is locked or written.
    pub(crate) async fn dry_run_imports(
        &self,
        imports: &[ImportAccount],
    ) -> Result<Vec<Result<ImportOutcome, LedgerError>>, LedgerError> {
        commands::dry_run_imports(&self.reads, imports, Utc::now()).await
    }

    /// One pass of the expiry sweep: every account with a lot past its expiry or a hold past its
    /// time gets an `Expire` command. Returns the expiry entries written.
    pub(crate) async fn sweep(&self) -> Result<usize, LedgerError> {
        let now = Utc::now();
        let mut due = store::writes::accounts_with_due_lots(&self.reads, now, SWEEP_BATCH).await?;
        due.extend(store::writes::accounts_with_stale_holds(&self.reads, now, SWEEP_BATCH).await?);
        due.sort();
        due.dedup();
        let mut commands = tokio::task::JoinSet::new();
        for account_id in due.into_iter().filter_map(|id| AccountId::parse(&id).ok()) {
            let writer = self.writer.clone();
            commands.spawn(async move { writer.command(Expire { account_id }).await });
        }
        let mut written = 0;
        while let Some(reply) = commands.join_next().await {
            let reply = reply.map_err(|err| LedgerError::Unexpected(anyhow::anyhow!("sweep task: {err}")))?;
            written += reply?.entries;
        }
        Ok(written)
    }
}
