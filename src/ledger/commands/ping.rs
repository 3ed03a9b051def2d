//! Ping: proves the write path works; answered once a write transaction committed.

use super::{Command, Context, EntryIds, LockSet, Reply, Step};
use crate::ledger::error::LedgerError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ping;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pong;

impl Reply for Pong {}

impl Command for Ping {
    type Reply = Pong;
    type Draft = Pong;
    const NAME: &'static str = "ping";

    fn lock(&self, _: &mut LockSet) {}

    fn apply(&self, _: &mut Context<'_>) -> Result<Step<Pong>, LedgerError> {
        Ok(Step::Draft(Pong))
    }

    fn answer(draft: Pong, _: &EntryIds) -> Result<Pong, LedgerError> {
        Ok(draft)
    }
}
