//! ConsumeCredits: spends credits now, never below what is available. Keyed.

use serde::{Deserialize, Serialize};

use super::{
    Books, Command, Context, EntryIds, KeyId, LockSet, Step,
    context::{EntryKey, account_of, fingerprint, metadata_fingerprint, posting_error},
    recorded_reply,
};
use crate::ledger::{
    book::{Debit, Metadata},
    error::LedgerError,
    kinds::EntryKind,
    types::{AccountRef, Credits, IdempotencyKey, Reason},
};

#[derive(Debug, Clone)]
pub(crate) struct Consume {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub reason: Reason,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Consumed {
    pub credit_balance: i64,
    pub available_balance: i64,
    pub ledger_entry_id: String,
    #[serde(skip)]
    pub replayed: bool,
}

recorded_reply!(Consumed);

pub(crate) struct Draft {
    entry: EntryKey,
    balance: i64,
    available: i64,
}

impl Command for Consume {
    type Reply = Consumed;
    type Draft = Draft;
    const NAME: &'static str = "consume";

    fn lock(&self, set: &mut LockSet) {
        set.account(&self.account);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        let account = account_of(books, &self.account)?;
        Some((account.to_owned(), "consume", self.key.as_str().to_owned()))
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Draft>, LedgerError> {
        let account = cx.account(&self.account)?;
        let print = fingerprint(&[
            &self.credits.get().to_string(),
            self.reason.as_str(),
            &metadata_fingerprint(&self.metadata),
        ]);
        let key = (account.clone(), "consume", self.key.as_str().to_owned());
        if let Some(earlier) = cx.claim(key, print)? {
            return Ok(Step::Replay(earlier));
        }
        let now = cx.now();
        let book = cx.book(&account)?;
        let debit = Debit {
            credits: self.credits.get(),
            reason: self.reason.as_str().to_owned(),
            reference: self.key.as_str().to_owned(),
            metadata: self.metadata.clone(),
        };
        let posted = book.debit(debit, now).map_err(|e| posting_error(e, ""))?;
        Ok(Step::Draft(Draft {
            entry: (account, EntryKind::Consumption, self.key.as_str().to_owned()),
            balance: posted.balance - book.dead(now),
            available: book.available(now),
        }))
    }

    fn answer(draft: Draft, ids: &EntryIds) -> Result<Consumed, LedgerError> {
        Ok(Consumed {
            credit_balance: draft.balance,
            available_balance: draft.available,
            ledger_entry_id: ids.get(&draft.entry)?.to_string(),
            replayed: false,
        })
    }
}
