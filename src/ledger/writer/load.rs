//! What a batch reads before applying anything: the accounts its commands and postings name,
//! locked in id order (and the ones a command opens), their lots and holds, and the idempotency
//! records its commands' keys already have. Every account comes with its live lots (even a
//! credit reports the available credits it leaves), its active holds when it has any, and the
//! top-up attempts the batch names.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::extension::{Posting, TrialPolicy};
use crate::ledger::{
    book::{AccountState, Book, Credit, LotTerms, LotValue, Metadata},
    commands::{Books, KeyId, KeyUse, LockSet, Opener},
    error::LedgerError,
    kinds::{EntryKind, LotSource},
    store::{outbox, writes},
};

/// Locks every account the batch names (creating the ones commands open)
/// and loads their lots and the holds that matter.
// Long on purpose: the load order (accounts, then their lots and holds) in one place.
pub(super) async fn books(
    txn: &DatabaseTransaction,
    mut named: LockSet,
    postings: &[Vec<Posting>],
    trial: TrialPolicy,
    now: DateTime<Utc>,
) -> Result<Books, LedgerError> {
    for posting in postings.iter().flatten() {
        named.ids.push(posting.account_id().to_owned());
        named.top_ups.extend(posting.top_up().map(str::to_owned));
    }
    let hold_refs: Vec<&str> = named.holds.iter().map(String::as_str).collect();
    let owners = writes::hold_owners(txn, &hold_refs).await?;
    named.ids.extend(owners.into_values());
    named.ids.sort();
    named.ids.dedup();
    named.emails.sort();
    named.emails.dedup();

    let ids: Vec<&str> = named.ids.iter().map(String::as_str).collect();
    let emails: Vec<&str> = named.emails.iter().map(String::as_str).collect();
    let mut accounts = writes::lock_accounts(txn, &ids, &emails).await?;
    let opened = open_accounts(txn, &named.openers, &mut accounts, now).await?;

    // Every account's lots: even a credit reports the available credits it leaves. Active holds
    // of accounts whose lots are held, or that may hold into an overdraft.
    let account_ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let lots = writes::live_lots(txn, &account_ids).await?;
    let held: HashSet<&str> = lots
        .iter()
        .filter(|l| l.held > 0)
        .map(|l| l.account_id.as_str())
        .collect();
    let with_holds: Vec<&str> = accounts
        .iter()
        .filter(|a| a.settings.overdraft_limit > 0 || held.contains(a.id.as_str()))
        .map(|a| a.id.as_str())
        .collect();
    let holds = writes::holds(txn, &hold_refs, &with_holds).await?;
    // Read after their accounts' locks: every change of an attempt locks its account first.
    let top_up_ids: Vec<&str> = named.top_ups.iter().map(String::as_str).collect();
    let top_ups = outbox::top_ups(txn, &top_up_ids).await?;

    let mut lots = by_account(lots, |l| &l.account_id);
    let mut holds = by_account(holds, |h| &h.account_id);
    let mut top_ups = by_account(top_ups, |a| &a.account_id);
    let mut books = HashMap::with_capacity(accounts.len() + opened.len());
    for account in accounts {
        let id = account.id.clone();
        let own_lots = lots.remove(&id).unwrap_or_default();
        let own_holds = holds.remove(&id).unwrap_or_default();
        let mut book = Book::load(account, own_lots, own_holds);
        book.add_top_ups(top_ups.remove(&id).unwrap_or_default());
        // Unchanged since before account events: its level is what it has now. One that holds
        // nothing (just opened, never credited) sets its level with its first change instead.
        let holds_something = book.account.balance != 0 || book.account.debt != 0 || !book.lots().is_empty();
        if book.available_before.is_none() && holds_something {
            book.available_before = Some(book.available(now));
        }
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

/// Creates the accounts commands open: the first claimant of a free email
/// gets it. Returns those created here; ones another writer created meanwhile join `accounts`.
async fn open_accounts(
    txn: &DatabaseTransaction,
    openers: &[Opener],
    accounts: &mut Vec<AccountState>,
    now: DateTime<Utc>,
) -> Result<Vec<AccountState>, LedgerError> {
    let mut opening: Vec<AccountState> = Vec::new();
    for opener in openers {
        let (id, email) = (opener.id.as_str(), opener.email.as_str());
        let known = accounts.iter().chain(&opening).any(|a| a.id == id);
        let taken = accounts
            .iter()
            .chain(&opening)
            .any(|a| a.email == email && a.id != id);
        if !known && !taken {
            opening.push(AccountState::new(id, email, opener.is_trial_user, now));
        }
    }
    let inserted = writes::insert_accounts(txn, &opening, now).await?;
    let lost: Vec<&AccountState> = opening.iter().filter(|a| !inserted.contains(&a.id)).collect();
    if !lost.is_empty() {
        // Another writer created them (or took their emails) since the lock: lock theirs.
        let ids: Vec<&str> = lost.iter().map(|a| a.id.as_str()).collect();
        let emails: Vec<&str> = lost.iter().map(|a| a.email.as_str()).collect();
        for account in writes::lock_accounts(txn, &ids, &emails).await? {
            if accounts.iter().all(|a| a.id != account.id) {
                accounts.push(account);
            }
        }
    }
    Ok(opening.into_iter().filter(|a| inserted.contains(&a.id)).collect())
}

/// Rows split by their account, in their order (one pass: a batch of a thousand accounts
/// partitioned its lots once per account before).
fn by_account<T>(items: Vec<T>, account: impl Fn(&T) -> &String) -> HashMap<String, Vec<T>> {
    let mut split: HashMap<String, Vec<T>> = HashMap::new();
    for item in items {
        split.entry(account(&item).clone()).or_default().push(item);
    }
    split
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
            value: LotValue::free(),
            rollover: None,
        },
        ends_trial: false,
    }
}

/// The stored records of the keys the batch's commands use.
pub(super) async fn keys(
    txn: &DatabaseTransaction,
    mut wanted: Vec<KeyId>,
) -> Result<HashMap<KeyId, KeyUse>, LedgerError> {
    wanted.sort();
    wanted.dedup();
    let query: Vec<(String, String, String)> = wanted
        .iter()
        .map(|(account, operation, key)| (account.clone(), (*operation).to_owned(), key.clone()))
        .collect();
    let stored = writes::keys(txn, &query).await?;
    Ok(stored
        .into_iter()
        .filter_map(|r| {
            // The operation's name as the command spells it.
            let (account, operation, key) = wanted
                .iter()
                .find(|(a, o, k)| *a == r.account_id && *o == r.operation && *k == r.key)?
                .clone();
            Some((
                (account, operation, key),
                KeyUse {
                    fingerprint: r.fingerprint,
                    stored: Some(r.response),
                    first_job: None,
                },
            ))
        })
        .collect())
}
