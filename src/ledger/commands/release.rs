//! ReleaseHold: ends a live hold without a debit. Keyed by the hold: a repeat answers the first
//! release; a hold its expiry released already is answered as a repeat.

use serde::{Deserialize, Serialize};

use super::{
    Books, Command, Context, EntryIds, KeyId, LockSet, Step,
    context::{fingerprint, hold_owner, posting_error},
    recorded_reply,
};
use crate::ledger::{error::LedgerError, types::HoldId};

#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub hold_id: HoldId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReleaseDone {
    pub available_balance: i64,
    #[serde(skip)]
    pub replayed: bool,
}

recorded_reply!(ReleaseDone);

impl Command for Release {
    type Reply = ReleaseDone;
    type Draft = ReleaseDone;
    const NAME: &'static str = "release";

    fn lock(&self, set: &mut LockSet) {
        set.hold(&self.hold_id);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        let hold_id = self.hold_id.as_str();
        Some((hold_owner(books, hold_id)?, "release", hold_id.to_owned()))
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<ReleaseDone>, LedgerError> {
        let hold_id = self.hold_id.as_str();
        let account = cx.hold_owner(hold_id)?;
        let key = (account.clone(), "release", hold_id.to_owned());
        if let Some(earlier) = cx.claim(key, fingerprint(&[]))? {
            return Ok(Step::Replay(earlier));
        }
        let now = cx.now();
        let book = cx.book(&account)?;
        let released = book
            .release(hold_id, now)
            .map_err(|e| posting_error(e, hold_id))?;
        Ok(Step::Draft(ReleaseDone {
            available_balance: book.available(now),
            // Already released by its expiry: nothing was done now.
            replayed: !released,
        }))
    }

    fn answer(draft: ReleaseDone, _: &EntryIds) -> Result<ReleaseDone, LedgerError> {
        Ok(draft)
    }
}
