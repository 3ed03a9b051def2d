//! What a batch reads before applying anything: the accounts it names, locked in id order (and
//! the ones `EnsureAccount` and `Import` create), their lots and holds, and the idempotency
//! records its commands' keys already have. An account only credited by billing (a purchase) is loaded
//! without its lots: a credit needs the balance and the debt, nothing else.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{KeyId, KeyUse};
use crate::ledger::{
    LedgerError,
    batch::{Extension, Input, TrialPolicy},
    book::{AccountState, Book, Credit, LotTerms, Metadata},
    command::{Command, Posting},
    kinds::{EntryKind, LotSource},
    store::batch,
    types::AccountRef,
};

/// An account a command creates on first sight: `EnsureAccount` (with the trial credits) or
/// `Import` (with its own balance and trial state, later).
struct Opener<'a> {
    id: &'a str,
    email: &'a str,
    is_trial_user: bool,
    trial: bool,
}

/// Who the batch names, before anything is read.
#[derive(Default)]
struct Named<'a> {
    ids: Vec<String>,
    emails: Vec<String>,
    holds: Vec<String>,
    /// In job order: the first opener of an id decides how it opens.
    openers: Vec<Opener<'a>>,
    /// Named by a command or clawback that needs their lots and holds.
    full: Vec<AccountRef>,
    full_ids: Vec<String>,
}

fn named<'a, X: Extension>(inputs: &'a [Input<X>], postings: &[Vec<Posting>]) -> Named<'a> {
    let mut named = Named::default();
    for input in inputs {
        let Input::Command(command) = input else { continue };
        let by = match command {
            Command::EnsureAccount(ensure) => {
                named.openers.push(Opener {
                    id: ensure.account_id.as_str(),
                    email: ensure.email.as_str(),
                    is_trial_user: true,
                    trial: true,
                });
                named.emails.push(ensure.email.to_string());
                Some(AccountRef::Id(ensure.account_id.clone()))
            }
            Command::Import(import) => {
                named.openers.push(Opener {
                    id: import.account_id.as_str(),
                    email: import.email.as_str(),
                    is_trial_user: import.is_trial_user,
                    trial: false,
                });
                named.emails.push(import.email.to_string());
                Some(AccountRef::Id(import.account_id.clone()))
            }
            Command::Grant(g) => Some(g.account.clone()),
            Command::Consume(c) => Some(c.account.clone()),
            Command::Reserve(r) => Some(r.account.clone()),
            Command::Expire(id) => Some(AccountRef::Id(id.clone())),
            Command::Capture(c) => {
                named.holds.push(c.hold_id.as_str().to_owned());
                None
            }
            Command::Release(hold) => {
                named.holds.push(hold.as_str().to_owned());
                None
            }
            Command::Ping => None,
        };
        if let Some(by) = by {
            match &by {
                AccountRef::Id(id) => named.ids.push(id.to_string()),
                AccountRef::Email(email) => named.emails.push(email.to_string()),
            }
            named.full.push(by);
        }
    }
    for posting in postings.iter().flatten() {
        named.ids.push(posting.account_id().to_owned());
        if matches!(posting, Posting::Clawback { .. }) {
            named.full_ids.push(posting.account_id().to_owned());
        }
    }
    named
}

/// Locks every account the batch names (creating the ones `EnsureAccount` and `Import` bring)
/// and loads the lots and holds of those that need them.
// Long on purpose: the load order (accounts, then lots and holds of those that need them) in one place.
pub(super) async fn books<X: Extension>(
    txn: &DatabaseTransaction,
    inputs: &[Input<X>],
    postings: &[Vec<Posting>],
    trial: TrialPolicy,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Book>, LedgerError> {
    let mut named = named(inputs, postings);
    let hold_refs: Vec<&str> = named.holds.iter().map(String::as_str).collect();
    let owners = batch::hold_owners(txn, &hold_refs).await?;
    named.ids.extend(owners.values().cloned());
    named.full_ids.extend(owners.into_values());
    named.ids.sort();
    named.ids.dedup();
    named.emails.sort();
    named.emails.dedup();

    let ids: Vec<&str> = named.ids.iter().map(String::as_str).collect();
    let emails: Vec<&str> = named.emails.iter().map(String::as_str).collect();
    let mut accounts = batch::lock_accounts(txn, &ids, &emails).await?;
    let opened = open_accounts(txn, &named.openers, &mut accounts, now).await?;

    // Which of them need their lots: everything but accounts that are only credited.
    let mut full: HashSet<String> = named.full_ids.iter().cloned().collect();
    for by in &named.full {
        let found = accounts.iter().find(|a| match by {
            AccountRef::Id(id) => a.id == id.as_str(),
            AccountRef::Email(email) => a.email == email.as_str(),
        });
        full.extend(found.map(|a| a.id.clone()));
    }
    let full_ids: Vec<&str> = accounts
        .iter()
        .map(|a| a.id.as_str())
        .filter(|id| full.contains(*id))
        .collect();
    let mut lots = batch::live_lots(txn, &full_ids).await?;
    let with_holds: Vec<&str> = full_ids
        .iter()
        .copied()
        .filter(|id| lots.iter().any(|l| l.account_id == *id && l.held > 0))
        .collect();
    let mut holds = batch::holds(txn, &hold_refs, &with_holds).await?;

    let mut books = HashMap::with_capacity(accounts.len() + opened.len());
    for account in accounts {
        let id = account.id.clone();
        let book = if full.contains(&id) {
            let own_lots = drain_where(&mut lots, |l| l.account_id == id);
            let own_holds = drain_where(&mut holds, |h| h.account_id == id);
            Book::load(account, own_lots, own_holds)
        } else {
            Book::credit_only(account)
        };
        books.insert(id, book);
    }
    for account in opened {
        let id = account.id.clone();
        let by_ensure = named.openers.iter().find(|o| o.id == id).is_some_and(|o| o.trial);
        let mut book = Book::open(account);
        if by_ensure && trial.credits > 0 {
            book.credit(trial_credit(&id, trial, now), now);
        }
        books.insert(id, book);
    }
    Ok(books)
}

/// Creates the accounts `EnsureAccount` and `Import` bring: the first claimant of a free email
/// gets it. Returns those created here; ones another writer created meanwhile join `accounts`.
async fn open_accounts(
    txn: &DatabaseTransaction,
    openers: &[Opener<'_>],
    accounts: &mut Vec<AccountState>,
    now: DateTime<Utc>,
) -> Result<Vec<AccountState>, LedgerError> {
    let mut opening: Vec<AccountState> = Vec::new();
    for opener in openers {
        let (id, email) = (opener.id, opener.email);
        let known = accounts.iter().chain(&opening).any(|a| a.id == id);
        let taken = accounts
            .iter()
            .chain(&opening)
            .any(|a| a.email == email && a.id != id);
        if !known && !taken {
            opening.push(AccountState {
                id: id.to_owned(),
                email: email.to_owned(),
                balance: 0,
                debt: 0,
                is_trial_user: opener.is_trial_user,
                created_at: now,
            });
        }
    }
    let inserted = batch::insert_accounts(txn, &opening, now).await?;
    let lost: Vec<&AccountState> = opening.iter().filter(|a| !inserted.contains(&a.id)).collect();
    if !lost.is_empty() {
        // Another writer created them (or took their emails) since the lock: lock theirs.
        let ids: Vec<&str> = lost.iter().map(|a| a.id.as_str()).collect();
        let emails: Vec<&str> = lost.iter().map(|a| a.email.as_str()).collect();
        for account in batch::lock_accounts(txn, &ids, &emails).await? {
            if accounts.iter().all(|a| a.id != account.id) {
                accounts.push(account);
            }
        }
    }
    Ok(opening.into_iter().filter(|a| inserted.contains(&a.id)).collect())
}

fn drain_where<T>(items: &mut Vec<T>, keep: impl Fn(&T) -> bool) -> Vec<T> {
    let (mine, rest): (Vec<T>, Vec<T>) = std::mem::take(items).into_iter().partition(|i| keep(i));
    *items = rest;
    mine
}

fn trial_credit(account_id: &str, trial: TrialPolicy, now: DateTime<Utc>) -> Credit {
    Credit {
        credits: trial.credits,
        kind: EntryKind::Trial,
        reason: EntryKind::Trial.as_str().to_owned(),
        reference: account_id.to_owned(),
        metadata: Metadata::new(),
        lot: LotTerms {
            id: uuid::Uuid::now_v7().to_string(),
            source: LotSource::Trial,
            reference: account_id.to_owned(),
            expires_at: trial
                .expire_days
                .map(|days| now + chrono::Duration::days(i64::from(days))),
        },
        ends_trial: false,
    }
}

/// The account a caller names, among the loaded books.
pub(super) fn account_of<'b>(books: &'b HashMap<String, Book>, by: &AccountRef) -> Option<&'b str> {
    match by {
        AccountRef::Id(id) => books.get(id.as_str()).map(|b| b.account.id.as_str()),
        AccountRef::Email(email) => books
            .values()
            .find(|b| b.account.email == email.as_str())
            .map(|b| b.account.id.as_str()),
    }
}

/// The account holding a hold, among the loaded books.
pub(super) fn hold_owner(books: &HashMap<String, Book>, hold_id: &str) -> Option<String> {
    books
        .values()
        .find(|b| b.hold(hold_id).is_some())
        .map(|b| b.account.id.clone())
}

/// The idempotency key a command uses: `(account, operation, key)`.
pub(super) fn key_of(command: &Command, books: &HashMap<String, Book>) -> Option<KeyId> {
    match command {
        Command::Grant(g) => Some((
            account_of(books, &g.account)?.to_owned(),
            "grant",
            g.key.as_str().to_owned(),
        )),
        Command::Consume(c) => Some((
            account_of(books, &c.account)?.to_owned(),
            "consume",
            c.key.as_str().to_owned(),
        )),
        Command::Reserve(r) => Some((
            account_of(books, &r.account)?.to_owned(),
            "reserve",
            r.key.as_str().to_owned(),
        )),
        Command::Capture(c) => Some((
            hold_owner(books, c.hold_id.as_str())?,
            "capture",
            c.hold_id.as_str().to_owned(),
        )),
        Command::Release(hold) => Some((
            hold_owner(books, hold.as_str())?,
            "release",
            hold.as_str().to_owned(),
        )),
        Command::EnsureAccount(_) | Command::Expire(_) | Command::Import(_) | Command::Ping => None,
    }
}

fn operation_name(raw: &str) -> Option<&'static str> {
    ["grant", "consume", "reserve", "capture", "release"]
        .into_iter()
        .find(|op| *op == raw)
}

/// The stored records of every key the batch's commands use.
pub(super) async fn keys<X: Extension>(
    txn: &DatabaseTransaction,
    inputs: &[Input<X>],
    books: &HashMap<String, Book>,
) -> Result<HashMap<KeyId, KeyUse>, LedgerError> {
    let mut wanted: Vec<(String, String, String)> = inputs
        .iter()
        .filter_map(|input| match input {
            Input::Command(command) => key_of(command, books),
            Input::Extension(_) => None,
        })
        .map(|(account, operation, key)| (account, operation.to_owned(), key))
        .collect();
    wanted.sort();
    wanted.dedup();
    let stored = batch::keys(txn, &wanted).await?;
    Ok(stored
        .into_iter()
        .filter_map(|r| {
            let operation = operation_name(&r.operation)?;
            Some((
                (r.account_id, operation, r.key),
                KeyUse {
                    fingerprint: r.fingerprint,
                    stored: Some(r.response),
                    first_job: None,
                },
            ))
        })
        .collect())
}
