//! Expire: brings one account to now for the periodic sweep: holds past their time release
//! themselves, lots past their expiry that nothing holds are written off.

use super::{Command, Context, EntryIds, LockSet, Reply, Step};
use crate::ledger::{
    error::LedgerError,
    types::{AccountId, AccountRef},
};

#[derive(Debug, Clone)]
pub(crate) struct Expire {
    pub account_id: AccountId,
}

/// How many expiry entries the command wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired {
    pub entries: usize,
}

impl Reply for Expired {}

impl Command for Expire {
    type Reply = Expired;
    type Draft = Expired;
    const NAME: &'static str = "expire";

    fn lock(&self, set: &mut LockSet) {
        set.account(&AccountRef::Id(self.account_id.clone()));
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Expired>, LedgerError> {
        let now = cx.now();
        let Some(book) = cx.books_mut().get_mut(self.account_id.as_str()) else {
            return Ok(Step::Draft(Expired { entries: 0 }));
        };
        let before = book.entries.len();
        book.settle(now);
        Ok(Step::Draft(Expired {
            entries: book.entries.len() - before,
        }))
    }

    fn answer(draft: Expired, _: &EntryIds) -> Result<Expired, LedgerError> {
        Ok(draft)
    }
}
