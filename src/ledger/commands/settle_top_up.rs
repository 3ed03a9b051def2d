//! SettleTopUp: the top-up worker reports a step of an attempt (see `book::top_up`). The
//! attempt's state is the key: a step reported twice, or after the webhook moved the attempt
//! on, finds another state and changes nothing.

use super::{Command, Context, EntryIds, LockSet, Reply, Step};
use crate::ledger::{book::TopUpStep, error::LedgerError, kinds::TopUpState};

#[derive(Debug, Clone)]
pub(crate) struct SettleTopUp {
    pub account_id: String,
    pub attempt_id: String,
    pub step: TopUpStep,
}

/// The attempt's state after the step, and whether the step applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopUpSettled {
    pub state: TopUpState,
    pub applied: bool,
}

impl Reply for TopUpSettled {}

impl Command for SettleTopUp {
    type Reply = TopUpSettled;
    type Draft = TopUpSettled;
    const NAME: &'static str = "settle_top_up";

    fn lock(&self, set: &mut LockSet) {
        set.ids.push(self.account_id.clone());
        set.top_ups.push(self.attempt_id.clone());
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<TopUpSettled>, LedgerError> {
        let now = cx.now();
        let book = cx.book(&self.account_id)?;
        book.settle(now);
        let (state, applied) = book
            .step_top_up(&self.attempt_id, self.step.clone(), now)
            .ok_or_else(|| LedgerError::NotFound(format!("top-up attempt {}", self.attempt_id)))?;
        Ok(Step::Draft(TopUpSettled { state, applied }))
    }

    fn answer(draft: TopUpSettled, _: &EntryIds) -> Result<TopUpSettled, LedgerError> {
        Ok(draft)
    }
}
