//! What every command sees while its batch applies: the locked books, the idempotency keys the
//! batch's commands use (with what is stored for them), and the batch's time; what a command
//! asks to lock; and the entry ids its answer reads once the batch is flushed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::AccountView;
use crate::ledger::{
    book::{Book, Metadata, PostingError},
    error::LedgerError,
    kinds::EntryKind,
    types::{AccountRef, HoldId, InvalidInput},
};

/// The books of a batch, by account id.
pub(crate) type Books = HashMap<String, Book>;

/// An idempotency key: account, operation, the caller's key.
pub(crate) type KeyId = (String, &'static str, String);

/// An entry's unique key, which the store maps to its id once written.
pub(super) type EntryKey = (String, EntryKind, String);

/// The ids the store gave a batch's entries.
#[derive(Debug, Default)]
pub(crate) struct EntryIds(HashMap<EntryKey, i64>);

impl EntryIds {
    pub(crate) fn new(ids: HashMap<EntryKey, i64>) -> Self {
        Self(ids)
    }

    pub(crate) fn get(&self, key: &EntryKey) -> Result<i64, LedgerError> {
        self.0
            .get(key)
            .copied()
            .ok_or_else(|| LedgerError::Unexpected(anyhow::anyhow!("entry {key:?} was not written")))
    }
}

/// An account a command creates on first sight.
#[derive(Debug, Clone)]
pub(crate) struct Opener {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) is_trial_user: bool,
    /// Opens with the trial credits (EnsureAccount; an import brings its own balance).
    pub(crate) trial: bool,
}

/// What a batch's commands name, before anything is read.
#[derive(Debug, Default)]
pub(crate) struct LockSet {
    pub(crate) ids: Vec<String>,
    pub(crate) emails: Vec<String>,
    pub(crate) holds: Vec<String>,
    /// Top-up attempts the commands change (their accounts are named too).
    pub(crate) top_ups: Vec<String>,
    /// In job order: the first opener of an id decides how it opens.
    pub(crate) openers: Vec<Opener>,
}

impl LockSet {
    /// An account the command changes: locked, with its lots and holds.
    pub(crate) fn account(&mut self, by: &AccountRef) {
        match by {
            AccountRef::Id(id) => self.ids.push(id.to_string()),
            AccountRef::Email(email) => self.emails.push(email.to_string()),
        }
    }

    /// A hold the command changes: its account is locked, with its lots and holds.
    pub(crate) fn hold(&mut self, hold: &HoldId) {
        self.holds.push(hold.as_str().to_owned());
    }

    /// An account the command creates if nobody has it (nor its email) yet.
    pub(crate) fn open(&mut self, opener: Opener) {
        self.emails.push(opener.email.clone());
        self.openers.push(opener);
    }
}

/// What a command's rule leaves: its draft answer, or the answer of an earlier use of its key.
pub(crate) enum Step<D> {
    Draft(D),
    Replay(Replay),
}

/// Where a repeated key's answer is.
#[derive(Debug, Clone)]
pub(crate) enum Replay {
    /// Recorded by an earlier batch.
    Stored(String),
    /// Given to job `n` of this batch.
    Job(usize),
}

/// A key the batch's commands use: stored before, or taken by a job of this batch.
pub(crate) struct KeyUse {
    pub fingerprint: String,
    pub stored: Option<String>,
    pub first_job: Option<usize>,
}

/// A key this batch took: its id, the parameters' fingerprint, the job whose answer it keeps.
pub(crate) type TakenKey = (KeyId, String, usize);

/// The state a batch's commands apply to.
pub(crate) struct Context<'a> {
    books: &'a mut Books,
    keys: HashMap<KeyId, KeyUse>,
    taken: Vec<TakenKey>,
    job: usize,
    now: DateTime<Utc>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(books: &'a mut Books, keys: HashMap<KeyId, KeyUse>, now: DateTime<Utc>) -> Self {
        Self {
            books,
            keys,
            taken: Vec::new(),
            job: 0,
            now,
        }
    }

    /// The batch's time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Job `n` applies next.
    pub(crate) fn start(&mut self, job: usize) {
        self.job = job;
    }

    /// The current job was refused: the key it took is free again, so a retry may succeed.
    pub(crate) fn refused(&mut self) {
        let job = self.job;
        self.taken.retain(|(_, _, n)| *n != job);
        self.keys
            .retain(|_, seen| seen.first_job != Some(job) || seen.stored.is_some());
    }

    /// The keys the batch took, for their records.
    pub(crate) fn into_taken(self) -> Vec<TakenKey> {
        self.taken
    }

    pub(crate) fn books(&self) -> &Books {
        self.books
    }

    pub(crate) fn books_mut(&mut self) -> &mut Books {
        self.books
    }

    pub(crate) fn book(&mut self, account_id: &str) -> Result<&mut Book, LedgerError> {
        self.books
            .get_mut(account_id)
            .ok_or_else(|| LedgerError::NotFound(format!("account {account_id}")))
    }

    /// The id of the account a caller names, among the loaded books.
    pub(crate) fn account(&self, by: &AccountRef) -> Result<String, LedgerError> {
        account_of(self.books, by)
            .map(str::to_owned)
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    /// The account holding a hold, among the loaded books.
    pub(crate) fn hold_owner(&self, hold_id: &str) -> Result<String, LedgerError> {
        hold_owner(self.books, hold_id).ok_or_else(|| LedgerError::NotFound(format!("hold {hold_id}")))
    }

    /// An account as callers see it now.
    pub(crate) fn view(&self, account_id: &str) -> Option<AccountView> {
        let book = self.books.get(account_id)?;
        Some(AccountView::of(book, self.now))
    }

    /// Checks a key: `Ok(None)` when new (and now taken by the current job), `Ok(Some(..))`
    /// when repeated with the same parameters, refused when used with other parameters.
    pub(crate) fn claim(&mut self, key: KeyId, fingerprint: String) -> Result<Option<Replay>, LedgerError> {
        match self.keys.get(&key) {
            Some(seen) if seen.fingerprint != fingerprint => Err(LedgerError::InvalidInput(
                InvalidInput::new("idempotency_key", "already used with other parameters"),
            )),
            Some(KeyUse {
                stored: Some(stored), ..
            }) => Ok(Some(Replay::Stored(stored.clone()))),
            Some(KeyUse {
                first_job: Some(first),
                ..
            }) => Ok(Some(Replay::Job(*first))),
            Some(_) => Ok(None),
            None => {
                let seen = KeyUse {
                    fingerprint: fingerprint.clone(),
                    stored: None,
                    first_job: Some(self.job),
                };
                self.keys.insert(key.clone(), seen);
                self.taken.push((key, fingerprint, self.job));
                Ok(None)
            }
        }
    }
}

/// The account a caller names, among loaded books.
pub(crate) fn account_of<'b>(books: &'b Books, by: &AccountRef) -> Option<&'b str> {
    match by {
        AccountRef::Id(id) => books.get(id.as_str()).map(|b| b.account.id.as_str()),
        AccountRef::Email(email) => books
            .values()
            .find(|b| b.account.email == email.as_str())
            .map(|b| b.account.id.as_str()),
    }
}

/// The account holding a hold, among loaded books.
pub(crate) fn hold_owner(books: &Books, hold_id: &str) -> Option<String> {
    books
        .values()
        .find(|b| b.hold(hold_id).is_some())
        .map(|b| b.account.id.clone())
}

/// SHA-256 of a command's parameters: the same key with other parameters is refused.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

pub(crate) fn metadata_fingerprint(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_default()
}

/// A posting rule's refusal as callers see it.
pub(crate) fn posting_error(err: PostingError, hold_id: &str) -> LedgerError {
    match err {
        PostingError::Insufficient { available, asked } => LedgerError::Insufficient { available, asked },
        PostingError::HoldNotFound => LedgerError::NotFound(format!("hold {hold_id}")),
        PostingError::HoldClosed(status) => LedgerError::HoldClosed {
            hold_id: hold_id.to_owned(),
            status,
        },
        PostingError::OverCapture { held, asked } => LedgerError::InvalidInput(InvalidInput::new(
            "credits",
            format!("{asked} is more than the {held} credits held"),
        )),
    }
}
