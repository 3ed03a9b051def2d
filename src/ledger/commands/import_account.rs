//! ImportAccount: an account brought over from another system (`credits import accounts`),
//! created with its balance as an `import` entry and lot, else compared with the stored account
//! and, with `adopt`, moved to the import. Never gets the trial credits. The dry run loads the
//! same books over the read pool (locking and writing nothing) and applies the same rule.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{Books, Command, Context, EntryIds, LockSet, Opener, Reply, Step, ensure::email_holder};
use crate::ledger::{
    book::{AccountState, Book, Differences, Imported},
    error::LedgerError,
    store::writes,
    types::{AccountId, AccountRef, Email, ImportedBalance},
};

#[derive(Debug, Clone)]
pub(crate) struct ImportAccount {
    pub account_id: AccountId,
    pub email: Email,
    pub balance: ImportedBalance,
    pub is_trial_user: bool,
    /// When the imported credits expire; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Record the difference when the stored account differs, instead of reporting it.
    pub adopt: bool,
}

/// What an import did (or, in a dry run, would do) to its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImportOutcome {
    /// Created with its balance.
    Created { balance: i64 },
    /// Stored as imported already: nothing to do.
    Unchanged,
    /// Stored otherwise; left as it is (no `adopt`).
    Differs(Differences),
    /// Moved to the import; `differences.delta()` credits recorded as one entry.
    Adopted(Differences),
}

impl Reply for ImportOutcome {}

impl Command for ImportAccount {
    type Reply = ImportOutcome;
    type Draft = ImportOutcome;
    const NAME: &'static str = "import_account";

    fn lock(&self, set: &mut LockSet) {
        set.open(Opener {
            id: self.account_id.as_str().to_owned(),
            email: self.email.as_str().to_owned(),
            is_trial_user: self.is_trial_user,
            trial: false,
        });
        set.account(&AccountRef::Id(self.account_id.clone()));
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<ImportOutcome>, LedgerError> {
        let now = cx.now();
        apply(cx.books_mut(), self, now).map(Step::Draft)
    }

    fn answer(draft: ImportOutcome, _: &EntryIds) -> Result<ImportOutcome, LedgerError> {
        Ok(draft)
    }
}

/// The import as the book sees it.
fn imported(import: &ImportAccount) -> Imported {
    Imported {
        email: import.email.as_str().to_owned(),
        balance: import.balance.get(),
        is_trial_user: import.is_trial_user,
        expires_at: import.expires_at,
    }
}

/// Applies one import to the loaded books: opens an account created for it in this batch,
/// else compares the stored one and, with `adopt`, moves it to the import.
fn apply(
    books: &mut Books,
    import: &ImportAccount,
    now: DateTime<Utc>,
) -> Result<ImportOutcome, LedgerError> {
    let (id, email) = (import.account_id.as_str(), import.email.as_str());
    if email_holder(books, email).is_some_and(|holder| holder != id) {
        return Err(LedgerError::EmailTaken(email.to_owned()));
    }
    let book = books
        .get_mut(id)
        .ok_or_else(|| LedgerError::NotFound(format!("account {id}")))?;
    let imported = imported(import);
    let lot_id = uuid::Uuid::now_v7().to_string();
    if book.opened {
        // A later command of the batch sees it as existing.
        book.opened = false;
        let posted = book.open_imported(&imported, lot_id, now);
        return Ok(ImportOutcome::Created {
            balance: posted.balance,
        });
    }
    let differences = book.compare(&imported, now);
    if differences.is_empty() {
        return Ok(ImportOutcome::Unchanged);
    }
    if !import.adopt {
        return Ok(ImportOutcome::Differs(differences));
    }
    let reference = format!("adopt:{lot_id}");
    book.adopt(&imported, &differences, &reference, lot_id, now)
        .map_err(|err| LedgerError::Unexpected(anyhow::anyhow!("adopting {id}: {err}")))?;
    Ok(ImportOutcome::Adopted(differences))
}

/// What these imports would do, read as committed now: each one's outcome (or refusal), in
/// order; nothing is locked or written.
pub(crate) async fn dry_run_imports<C: ConnectionTrait>(
    db: &C,
    imports: &[ImportAccount],
    now: DateTime<Utc>,
) -> Result<Vec<Result<ImportOutcome, LedgerError>>, LedgerError> {
    let ids: Vec<&str> = imports.iter().map(|i| i.account_id.as_str()).collect();
    let emails: Vec<&str> = imports.iter().map(|i| i.email.as_str()).collect();
    let accounts = writes::find_accounts(db, &ids, &emails).await?;
    let account_ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let mut lots = writes::live_lots(db, &account_ids).await?;
    let with_holds: Vec<&str> = account_ids
        .iter()
        .copied()
        .filter(|id| lots.iter().any(|l| l.account_id == *id && l.held > 0))
        .collect();
    let mut holds = writes::holds(db, &[], &with_holds).await?;
    let mut books = Books::with_capacity(imports.len());
    for account in accounts {
        let id = account.id.clone();
        let (own_lots, rest): (Vec<_>, Vec<_>) = lots.into_iter().partition(|l| l.account_id == id);
        lots = rest;
        let (own_holds, rest): (Vec<_>, Vec<_>) = holds.into_iter().partition(|h| h.account_id == id);
        holds = rest;
        books.insert(id, Book::load(account, own_lots, own_holds));
    }
    let mut outcomes = Vec::with_capacity(imports.len());
    for import in imports {
        let (id, email) = (import.account_id.as_str(), import.email.as_str());
        // As the writer would open it: a new id whose email nobody holds.
        if !books.contains_key(id) && books.values().all(|b| b.account.email != email) {
            books.insert(
                id.to_owned(),
                Book::open(AccountState::new(id, email, import.is_trial_user, now)),
            );
        }
        outcomes.push(apply(&mut books, import, now));
    }
    Ok(outcomes)
}
