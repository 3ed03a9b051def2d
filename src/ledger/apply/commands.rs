//! Applying a batch's jobs in order to the loaded books: the idempotency rules (a repeated key
//! answers the first answer, another use of it is refused) and each command's posting.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{KeyId, KeyUse, Pending, capture_reference, load};
use crate::ledger::{
    LedgerError,
    batch::{Extension, Input},
    book::{Book, Credit, Debit, LotTerms, Metadata, PostingError, Reservation},
    command::{
        AccountView, Capture, Command, Consume, EnsureAccount, Ensured, Grant, Posting, ReleaseDone, Reply,
        Reserve, Reserved,
    },
    kinds::{EntryKind, HoldStatus, LotSource},
    types::{AccountRef, HoldId, InvalidInput},
};

/// A key this batch took: its id, the parameters' fingerprint, the job whose answer it keeps.
pub(super) type NewKey = (KeyId, String, usize);

/// Applies every job; their pending answers in order, and the keys the batch took.
pub(super) fn run<X: Extension>(
    books: &mut HashMap<String, Book>,
    keys: HashMap<KeyId, KeyUse>,
    inputs: &[Input<X>],
    postings: Vec<Vec<Posting>>,
    now: DateTime<Utc>,
) -> Result<(Vec<Pending>, Vec<NewKey>), LedgerError> {
    let mut state = Applying {
        books,
        keys,
        now,
        new_keys: Vec::new(),
    };
    let mut postings = postings.into_iter();
    let mut pending = Vec::with_capacity(inputs.len());
    for (n, input) in inputs.iter().enumerate() {
        pending.push(match input {
            Input::Command(command) => state.command(n, command),
            Input::Extension(_) => state.postings(postings.next().unwrap_or_default())?,
        });
    }
    Ok((pending, state.new_keys))
}

/// SHA-256 of a command's parameters: the same key with other parameters is refused.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

fn metadata_fingerprint(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_default()
}

fn posting_error(err: PostingError, hold_id: &str) -> LedgerError {
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
        PostingError::NotLoaded => {
            LedgerError::Unexpected(anyhow::anyhow!("a posting needed lots its batch did not load"))
        }
    }
}

struct Applying<'a> {
    books: &'a mut HashMap<String, Book>,
    keys: HashMap<KeyId, KeyUse>,
    now: DateTime<Utc>,
    new_keys: Vec<NewKey>,
}

impl Applying<'_> {
    fn command(&mut self, n: usize, command: &Command) -> Pending {
        let result = match command {
            Command::EnsureAccount(ensure) => self.ensure(ensure),
            Command::Grant(grant) => self.grant(n, grant),
            Command::Consume(consume) => self.consume(n, consume),
            Command::Reserve(reserve) => self.reserve(n, reserve),
            Command::Capture(capture) => self.capture(n, capture),
            Command::Release(hold) => self.release(n, hold),
            Command::Expire(account) => Ok(self.expire(account.as_str())),
            Command::Import(import) => crate::ledger::import::apply(self.books, import, self.now)
                .map(|outcome| Pending::Ready(Ok(Reply::Imported(outcome)))),
            Command::Ping => Ok(Pending::Ready(Ok(Reply::Pong))),
        };
        result.unwrap_or_else(|err| {
            // A refused command takes no key: a retry may succeed.
            self.new_keys.retain(|(_, _, job)| *job != n);
            self.keys
                .retain(|_, seen| seen.first_job != Some(n) || seen.stored.is_some());
            Pending::Ready(Err(err))
        })
    }

    /// Checks a key: `Ok(None)` when new (and now taken by job `n`), `Ok(Some(..))` with the
    /// earlier answer when repeated with the same parameters.
    fn key(&mut self, n: usize, key: KeyId, fingerprint: String) -> Result<Option<Pending>, LedgerError> {
        match self.keys.get(&key) {
            Some(seen) if seen.fingerprint != fingerprint => Err(LedgerError::InvalidInput(
                InvalidInput::new("idempotency_key", "already used with other parameters"),
            )),
            Some(KeyUse {
                stored: Some(stored), ..
            }) => Reply::from_record(key.1, stored)
                .map(|reply| Some(Pending::Ready(Ok(reply))))
                .map_err(|err| {
                    LedgerError::Unexpected(anyhow::anyhow!("stored answer of {key:?} unreadable: {err}"))
                }),
            Some(KeyUse {
                first_job: Some(first),
                ..
            }) => Ok(Some(Pending::ReplayOf(*first))),
            Some(_) => Ok(None),
            None => {
                let seen = KeyUse {
                    fingerprint: fingerprint.clone(),
                    stored: None,
                    first_job: Some(n),
                };
                self.keys.insert(key.clone(), seen);
                self.new_keys.push((key, fingerprint, n));
                Ok(None)
            }
        }
    }

    fn book(&mut self, account_id: &str) -> Result<&mut Book, LedgerError> {
        self.books
            .get_mut(account_id)
            .ok_or_else(|| LedgerError::NotFound(format!("account {account_id}")))
    }

    fn account(&self, by: &AccountRef) -> Result<String, LedgerError> {
        load::account_of(self.books, by)
            .map(str::to_owned)
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    fn hold_owner(&self, hold_id: &str) -> Result<String, LedgerError> {
        load::hold_owner(self.books, hold_id).ok_or_else(|| LedgerError::NotFound(format!("hold {hold_id}")))
    }

    fn view(&self, account_id: &str) -> Option<AccountView> {
        let book = self.books.get(account_id)?;
        Some(AccountView {
            account_id: book.account.id.clone(),
            email: book.account.email.clone(),
            credit_balance: book.account.balance - book.dead(self.now),
            available_balance: book.available(self.now),
            held_credits: book.held(self.now),
            is_trial_user: book.account.is_trial_user,
            created_at: book.account.created_at,
        })
    }

    fn ensure(&mut self, ensure: &EnsureAccount) -> Result<Pending, LedgerError> {
        let (id, email) = (ensure.account_id.as_str(), ensure.email.as_str());
        let holder = self
            .books
            .values()
            .find(|b| b.account.email == email)
            .map(|b| b.account.id.clone());
        if holder.as_deref().is_some_and(|h| h != id) {
            return Err(LedgerError::EmailTaken(email.to_owned()));
        }
        let book = self.book(id)?;
        let created = book.opened;
        let email_changed = ensure.follow_email && !created && book.change_email(email);
        // A later call in the same batch sees it as existing.
        book.opened = false;
        let account = self
            .view(id)
            .ok_or_else(|| LedgerError::NotFound(format!("account {id}")))?;
        Ok(Pending::Ready(Ok(Reply::Ensured(Ensured {
            account,
            created,
            email_changed,
        }))))
    }

    fn grant(&mut self, n: usize, grant: &Grant) -> Result<Pending, LedgerError> {
        let account = self.account(&grant.account)?;
        let expires = grant.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        let print = fingerprint(&[
            &grant.credits.get().to_string(),
            grant.reason.as_str(),
            &expires,
            &metadata_fingerprint(&grant.metadata),
        ]);
        if let Some(earlier) = self.key(
            n,
            (account.clone(), "grant", grant.key.as_str().to_owned()),
            print,
        )? {
            return Ok(earlier);
        }
        let now = self.now;
        if grant.expires_at.is_some_and(|at| at <= now) {
            return Err(InvalidInput::new("expires_at", "must be in the future").into());
        }
        let lot_id = uuid::Uuid::now_v7().to_string();
        let book = self.book(&account)?;
        let posted = book.credit(
            Credit {
                credits: grant.credits.get(),
                kind: EntryKind::Grant,
                reason: grant.reason.as_str().to_owned(),
                reference: grant.key.as_str().to_owned(),
                metadata: grant.metadata.clone(),
                lot: LotTerms {
                    id: lot_id.clone(),
                    source: LotSource::Grant,
                    reference: grant.key.as_str().to_owned(),
                    expires_at: grant.expires_at,
                },
                ends_trial: false,
            },
            now,
        );
        Ok(Pending::Granted {
            entry: (account, EntryKind::Grant, grant.key.as_str().to_owned()),
            lot_id,
            balance: posted.balance - book.dead(now),
        })
    }

    fn consume(&mut self, n: usize, consume: &Consume) -> Result<Pending, LedgerError> {
        let account = self.account(&consume.account)?;
        let print = fingerprint(&[
            &consume.credits.get().to_string(),
            consume.reason.as_str(),
            &metadata_fingerprint(&consume.metadata),
        ]);
        if let Some(earlier) = self.key(
            n,
            (account.clone(), "consume", consume.key.as_str().to_owned()),
            print,
        )? {
            return Ok(earlier);
        }
        let now = self.now;
        let book = self.book(&account)?;
        let debit = Debit {
            credits: consume.credits.get(),
            reason: consume.reason.as_str().to_owned(),
            reference: consume.key.as_str().to_owned(),
            metadata: consume.metadata.clone(),
        };
        let posted = book.debit(debit, now).map_err(|e| posting_error(e, ""))?;
        Ok(Pending::Consumed {
            entry: (account, EntryKind::Consumption, consume.key.as_str().to_owned()),
            balance: posted.balance - book.dead(now),
            available: book.available(now),
        })
    }

    fn reserve(&mut self, n: usize, reserve: &Reserve) -> Result<Pending, LedgerError> {
        let account = self.account(&reserve.account)?;
        let print = fingerprint(&[
            &reserve.credits.get().to_string(),
            &reserve.ttl.num_seconds().to_string(),
            reserve.reason.as_str(),
            &metadata_fingerprint(&reserve.metadata),
        ]);
        if let Some(earlier) = self.key(
            n,
            (account.clone(), "reserve", reserve.key.as_str().to_owned()),
            print,
        )? {
            return Ok(earlier);
        }
        let now = self.now;
        let hold_id = uuid::Uuid::now_v7().to_string();
        let expires_at = now + reserve.ttl;
        let book = self.book(&account)?;
        let reservation = Reservation {
            hold_id: hold_id.clone(),
            credits: reserve.credits.get(),
            expires_at,
            reason: reserve.reason.as_str().to_owned(),
            metadata: reserve.metadata.clone(),
        };
        book.reserve(reservation, now)
            .map_err(|e| posting_error(e, &hold_id))?;
        Ok(Pending::Ready(Ok(Reply::Reserved(Reserved {
            hold_id,
            available_balance: book.available(now),
            expires_at,
            replayed: false,
        }))))
    }

    fn capture(&mut self, n: usize, capture: &Capture) -> Result<Pending, LedgerError> {
        let hold_id = capture.hold_id.as_str();
        let account = self.hold_owner(hold_id)?;
        let print = fingerprint(&[&capture.credits.get().to_string()]);
        match self.key(n, (account.clone(), "capture", hold_id.to_owned()), print) {
            Ok(Some(earlier)) => return Ok(earlier),
            Ok(None) => {}
            // Captured before with other credits: the hold is closed.
            Err(_) => {
                return Err(posting_error(
                    PostingError::HoldClosed(HoldStatus::Captured),
                    hold_id,
                ));
            }
        }
        let now = self.now;
        let book = self.book(&account)?;
        let captured = book
            .capture(hold_id, capture.credits.get(), capture.metadata.clone(), now)
            .map_err(|e| posting_error(e, hold_id))?;
        Ok(Pending::Captured {
            entry: (account, EntryKind::Consumption, capture_reference(hold_id)),
            balance: captured.posted.balance - book.dead(now),
            available: book.available(now),
            released: captured.released,
            credits: capture.credits.get(),
        })
    }

    fn release(&mut self, n: usize, hold: &HoldId) -> Result<Pending, LedgerError> {
        let hold_id = hold.as_str();
        let account = self.hold_owner(hold_id)?;
        if let Some(earlier) = self.key(
            n,
            (account.clone(), "release", hold_id.to_owned()),
            fingerprint(&[]),
        )? {
            return Ok(earlier);
        }
        let now = self.now;
        let book = self.book(&account)?;
        let released = book
            .release(hold_id, now)
            .map_err(|e| posting_error(e, hold_id))?;
        Ok(Pending::Ready(Ok(Reply::Released(ReleaseDone {
            available_balance: book.available(now),
            // Already released by its expiry: nothing was done now.
            replayed: !released,
        }))))
    }

    fn expire(&mut self, account: &str) -> Pending {
        let now = self.now;
        let Some(book) = self.books.get_mut(account) else {
            return Pending::Ready(Ok(Reply::Expired { entries: 0 }));
        };
        let before = book.entries.len();
        book.settle(now);
        Pending::Ready(Ok(Reply::Expired {
            entries: book.entries.len() - before,
        }))
    }

    /// Applies billing's postings for one job; an account billing named but nobody created
    /// fails the batch (and so, rerun alone, the job).
    fn postings(&mut self, postings: Vec<Posting>) -> Result<Pending, LedgerError> {
        let now = self.now;
        let mut posted = Vec::with_capacity(postings.len());
        for posting in postings {
            let account = posting.account_id().to_owned();
            let Some(book) = self.books.get_mut(&account) else {
                return Err(LedgerError::Unexpected(anyhow::anyhow!(
                    "posting for unknown account {account}"
                )));
            };
            let (kind, reference, delta, balance) = match posting {
                Posting::Credit { credit, .. } => {
                    let (kind, reference, delta) = (credit.kind, credit.reference.clone(), credit.credits);
                    (kind, reference, delta, book.credit(credit, now).balance)
                }
                Posting::Clawback { clawback, .. } => {
                    let (kind, reference, delta) =
                        (clawback.kind, clawback.reference.clone(), -clawback.credits);
                    let balance = book
                        .claw_back(clawback, now)
                        .map_err(|e| posting_error(e, ""))?
                        .balance;
                    (kind, reference, delta, balance)
                }
            };
            posted.push(((account, kind, reference), delta, balance));
        }
        Ok(Pending::Postings(posted))
    }
}
