//! A command as the writer holds it: the command, where its answer goes, and what the current
//! attempt at its batch made of it. Type-erased, so one queue holds every kind of command and
//! each caller still gets its command's own reply type.

use tokio::sync::oneshot;

use crate::ledger::{
    commands::{Books, Command, Context, EntryIds, KeyId, LockSet, Replay, Reply, Step},
    error::LedgerError,
};

/// Any command in the writer's queue.
pub(crate) trait Job: Send {
    fn lock(&self, set: &mut LockSet);
    fn key(&self, books: &Books) -> Option<KeyId>;
    /// Applies the rule (a new attempt forgets the last one's outcome).
    fn apply(&mut self, cx: &mut Context<'_>);
    /// Assembles the answer; returns its record, which a key taken by this job keeps and a
    /// repeat of it in the same batch replays. `earlier` holds the records of the jobs before.
    fn resolve(&mut self, ids: &EntryIds, earlier: &[Option<String>]) -> Option<String>;
    /// Sends the answer (after the commit).
    fn deliver(self: Box<Self>);
    /// Sends an error instead: the job could not be applied.
    fn fail(self: Box<Self>, err: LedgerError);
}

enum Attempt<C: Command> {
    Applied(Result<Step<C::Draft>, LedgerError>),
    Resolved(Result<C::Reply, LedgerError>),
}

/// A command and its caller.
pub(crate) struct Submitted<C: Command> {
    command: C,
    reply_to: oneshot::Sender<Result<C::Reply, LedgerError>>,
    attempt: Option<Attempt<C>>,
}

impl<C: Command> Submitted<C> {
    pub(crate) fn new(command: C, reply_to: oneshot::Sender<Result<C::Reply, LedgerError>>) -> Self {
        Self {
            command,
            reply_to,
            attempt: None,
        }
    }
}

fn replay<R: Reply>(record: Option<&str>) -> Result<R, LedgerError> {
    record
        .and_then(R::replay)
        .ok_or_else(|| LedgerError::Unexpected(anyhow::anyhow!("a recorded answer does not read back")))
}

impl<C: Command> Job for Submitted<C> {
    fn lock(&self, set: &mut LockSet) {
        self.command.lock(set);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        self.command.key(books)
    }

    fn apply(&mut self, cx: &mut Context<'_>) {
        let applied = self.command.apply(cx);
        if applied.is_err() {
            cx.refused();
        }
        self.attempt = Some(Attempt::Applied(applied));
    }

    fn resolve(&mut self, ids: &EntryIds, earlier: &[Option<String>]) -> Option<String> {
        let reply = match self.attempt.take() {
            Some(Attempt::Applied(Ok(Step::Draft(draft)))) => C::answer(draft, ids),
            Some(Attempt::Applied(Ok(Step::Replay(Replay::Stored(record))))) => replay(Some(&record)),
            Some(Attempt::Applied(Ok(Step::Replay(Replay::Job(first))))) => {
                replay(earlier.get(first).and_then(Option::as_deref))
            }
            Some(Attempt::Applied(Err(err))) => Err(err),
            Some(Attempt::Resolved(done)) => done,
            None => Err(LedgerError::Unexpected(anyhow::anyhow!(
                "{} was never applied",
                C::NAME
            ))),
        };
        let record = reply.as_ref().ok().and_then(Reply::record);
        self.attempt = Some(Attempt::Resolved(reply));
        record
    }

    fn deliver(self: Box<Self>) {
        let answer = match self.attempt {
            Some(Attempt::Resolved(reply)) => reply,
            _ => Err(LedgerError::Unexpected(anyhow::anyhow!(
                "{} was committed without an answer",
                C::NAME
            ))),
        };
        // A caller that gave up (timed out, disconnected) no longer listens; its job is done.
        let _ = self.reply_to.send(answer);
    }

    fn fail(self: Box<Self>, err: LedgerError) {
        let _ = self.reply_to.send(Err(err));
    }
}
