//! CaptureHold: debits part or all of a live hold, from the lots it reserved, and releases the
//! rest. Keyed by the hold: a repeat with the same credits answers the first capture.

use serde::{Deserialize, Serialize};

use super::{
    Books, Command, Context, EntryIds, KeyId, LockSet, Step,
    context::{EntryKey, fingerprint, hold_owner, posting_error},
    recorded_reply,
};
use crate::ledger::{
    book::{Metadata, PostingError, capture_reference},
    error::LedgerError,
    kinds::{EntryKind, HoldStatus},
    types::{Credits, HoldId},
};

#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub hold_id: HoldId,
    pub credits: Credits,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaptureDone {
    pub credit_balance: i64,
    pub available_balance: i64,
    pub ledger_entry_id: String,
    pub released_credits: i64,
    /// What was captured: a repeat with other credits is refused.
    pub credits: i64,
    #[serde(skip)]
    pub replayed: bool,
}

recorded_reply!(CaptureDone);

pub(crate) struct Draft {
    entry: EntryKey,
    balance: i64,
    available: i64,
    released: i64,
    credits: i64,
}

impl Command for Capture {
    type Reply = CaptureDone;
    type Draft = Draft;
    const NAME: &'static str = "capture";

    fn lock(&self, set: &mut LockSet) {
        set.hold(&self.hold_id);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        let hold_id = self.hold_id.as_str();
        Some((hold_owner(books, hold_id)?, "capture", hold_id.to_owned()))
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Draft>, LedgerError> {
        let hold_id = self.hold_id.as_str();
        let account = cx.hold_owner(hold_id)?;
        let print = fingerprint(&[&self.credits.get().to_string()]);
        match cx.claim((account.clone(), "capture", hold_id.to_owned()), print) {
            Ok(Some(earlier)) => return Ok(Step::Replay(earlier)),
            Ok(None) => {}
            // Captured before with other credits: the hold is closed.
            Err(_) => {
                return Err(posting_error(
                    PostingError::HoldClosed(HoldStatus::Captured),
                    hold_id,
                ));
            }
        }
        let now = cx.now();
        let book = cx.book(&account)?;
        let captured = book
            .capture(hold_id, self.credits.get(), self.metadata.clone(), now)
            .map_err(|e| posting_error(e, hold_id))?;
        Ok(Step::Draft(Draft {
            entry: (account, EntryKind::Consumption, capture_reference(hold_id)),
            balance: captured.posted.balance - book.dead(now),
            available: book.available(now),
            released: captured.released,
            credits: self.credits.get(),
        }))
    }

    fn answer(draft: Draft, ids: &EntryIds) -> Result<CaptureDone, LedgerError> {
        Ok(CaptureDone {
            credit_balance: draft.balance,
            available_balance: draft.available,
            ledger_entry_id: ids.get(&draft.entry)?.to_string(),
            released_credits: draft.released,
            credits: draft.credits,
            replayed: false,
        })
    }
}
