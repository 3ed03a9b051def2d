//! GrantCredits: credits for promotions and support, as a lot of their own. Does not end the
//! trial. Keyed: a repeat answers the first grant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Books, Command, Context, EntryIds, KeyId, LockSet, Step,
    context::{account_of, fingerprint, metadata_fingerprint},
    recorded_reply,
};
use crate::ledger::{
    book::{Credit, LotTerms, LotValue, Metadata},
    commands::context::EntryKey,
    error::LedgerError,
    kinds::{EntryKind, LotSource},
    types::{AccountRef, Credits, IdempotencyKey, InvalidInput, Reason},
};

#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub reason: Reason,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Granted {
    pub credit_balance: i64,
    pub ledger_entry_id: String,
    pub lot_id: String,
    #[serde(skip)]
    pub replayed: bool,
}

recorded_reply!(Granted);

pub(crate) struct Draft {
    entry: EntryKey,
    lot_id: String,
    balance: i64,
}

impl Command for Grant {
    type Reply = Granted;
    type Draft = Draft;
    const NAME: &'static str = "grant";

    fn lock(&self, set: &mut LockSet) {
        set.account(&self.account);
    }

    fn key(&self, books: &Books) -> Option<KeyId> {
        let account = account_of(books, &self.account)?;
        Some((account.to_owned(), "grant", self.key.as_str().to_owned()))
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Draft>, LedgerError> {
        let account = cx.account(&self.account)?;
        let expires = self.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        let print = fingerprint(&[
            &self.credits.get().to_string(),
            self.reason.as_str(),
            &expires,
            &metadata_fingerprint(&self.metadata),
        ]);
        let key = (account.clone(), "grant", self.key.as_str().to_owned());
        if let Some(earlier) = cx.claim(key, print)? {
            return Ok(Step::Replay(earlier));
        }
        let now = cx.now();
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(InvalidInput::new("expires_at", "must be in the future").into());
        }
        let lot_id = uuid::Uuid::now_v7().to_string();
        let book = cx.book(&account)?;
        let posted = book.credit(
            Credit {
                credits: self.credits.get(),
                kind: EntryKind::Grant,
                reason: self.reason.as_str().to_owned(),
                reference: self.key.as_str().to_owned(),
                metadata: self.metadata.clone(),
                lot: LotTerms {
                    id: lot_id.clone(),
                    source: LotSource::Grant,
                    reference: self.key.as_str().to_owned(),
                    expires_at: self.expires_at,
                    value: LotValue::free(),
                    rollover: None,
                },
                ends_trial: false,
            },
            now,
        );
        Ok(Step::Draft(Draft {
            entry: (account, EntryKind::Grant, self.key.as_str().to_owned()),
            lot_id,
            balance: posted.balance - book.dead(now),
        }))
    }

    fn answer(draft: Draft, ids: &EntryIds) -> Result<Granted, LedgerError> {
        Ok(Granted {
            credit_balance: draft.balance,
            ledger_entry_id: ids.get(&draft.entry)?.to_string(),
            lot_id: draft.lot_id,
            replayed: false,
        })
    }
}
