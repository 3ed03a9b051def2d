//! ReserveCredits: reserves credits in a hold for a call whose cost is known only afterwards.
//! Keyed: a repeat answers the first hold.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Books, Command, Context, EntryIds, KeyId, LockSet, Step,
    context::{account_of, fingerprint, metadata_fingerprint, posting_error},
    recorded_reply,
};
use crate::ledger::{
    book::{Metadata, Reservation},
    error::LedgerError,
    types::{AccountRef, Credits, IdempotencyKey, Reason},
};

#[derive(Debug, Clone)]
pub(crate) struct Reserve {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub ttl: chrono::Duration,
    pub reason: Reason,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reserved {
    pub hold_id: String,
    pub available_balance: i64,
    pub expires_at: DateTime<Utc>,
    #[serde(skip)]
    pub replayed: bool,
}

recorded_reply!(Reserved);

impl Command for Reserve {
    type Reply = Reserved;
    type Draft = Reserved;
    const NAME: &'static str = "reserve";

    fn lock(&self, set: &mut LockSet) {
        set.account(&self.account);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        let account = account_of(books, &self.account)?;
        Some((account.to_owned(), "reserve", self.key.as_str().to_owned()))
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Reserved>, LedgerError> {
        let account = cx.account(&self.account)?;
        let print = fingerprint(&[
            &self.credits.get().to_string(),
            &self.ttl.num_seconds().to_string(),
            self.reason.as_str(),
            &metadata_fingerprint(&self.metadata),
        ]);
        let key = (account.clone(), "reserve", self.key.as_str().to_owned());
        if let Some(earlier) = cx.claim(key, print)? {
            return Ok(Step::Replay(earlier));
        }
        let now = cx.now();
        let hold_id = uuid::Uuid::now_v7().to_string();
        let expires_at = now + self.ttl;
        let book = cx.book(&account)?;
        let reservation = Reservation {
            hold_id: hold_id.clone(),
            credits: self.credits.get(),
            expires_at,
            reason: self.reason.as_str().to_owned(),
            metadata: self.metadata.clone(),
        };
        book.reserve(reservation, now)
            .map_err(|e| posting_error(e, &hold_id))?;
        Ok(Step::Draft(Reserved {
            hold_id,
            available_balance: book.available(now),
            expires_at,
            replayed: false,
        }))
    }

    fn answer(draft: Reserved, _: &EntryIds) -> Result<Reserved, LedgerError> {
        Ok(draft)
    }
}
