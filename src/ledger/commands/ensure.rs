//! EnsureAccount: creates the account on first sight (with the trial credits), or finds it.
//! PurchaseCredits uses it too, and moves a known account to the buyer's new email.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Books, Command, Context, EntryIds, LockSet, Opener, Reply, Step};
use crate::ledger::{
    book::Book,
    error::LedgerError,
    types::{AccountId, AccountRef, Email},
};

#[derive(Debug, Clone)]
pub(crate) struct EnsureAccount {
    pub(crate) account_id: AccountId,
    pub(crate) email: Email,
    /// PurchaseCredits follows a buyer's new email; EnsureAccount changes nothing later.
    pub(crate) follow_email: bool,
}

/// An account as callers see it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountView {
    pub account_id: String,
    pub email: String,
    pub credit_balance: i64,
    pub available_balance: i64,
    pub held_credits: i64,
    pub is_trial_user: bool,
    pub created_at: DateTime<Utc>,
}

impl AccountView {
    /// The account of a book as of `now`: no credit past its lot's expiry is counted.
    pub(crate) fn of(book: &Book, now: DateTime<Utc>) -> Self {
        Self {
            account_id: book.account.id.clone(),
            email: book.account.email.clone(),
            credit_balance: book.account.balance - book.dead(now),
            available_balance: book.available(now),
            held_credits: book.held(now),
            is_trial_user: book.account.is_trial_user,
            created_at: book.account.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ensured {
    pub account: AccountView,
    pub created: bool,
    /// An existing account now has the email PurchaseCredits named (`follow_email`).
    pub email_changed: bool,
}

impl Reply for Ensured {}

impl Command for EnsureAccount {
    type Reply = Ensured;
    type Draft = Ensured;
    const NAME: &'static str = "ensure_account";

    fn lock(&self, set: &mut LockSet) {
        set.open(Opener {
            id: self.account_id.as_str().to_owned(),
            email: self.email.as_str().to_owned(),
            is_trial_user: true,
            trial: true,
        });
        set.account(&AccountRef::Id(self.account_id.clone()));
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Ensured>, LedgerError> {
        let (id, email) = (self.account_id.as_str(), self.email.as_str());
        if email_holder(cx.books(), email).is_some_and(|holder| holder != id) {
            return Err(LedgerError::EmailTaken(email.to_owned()));
        }
        let book = cx.book(id)?;
        let created = book.opened;
        let email_changed = self.follow_email && !created && book.change_email(email);
        // A later call in the same batch sees it as existing.
        book.opened = false;
        let account = cx
            .view(id)
            .ok_or_else(|| LedgerError::NotFound(format!("account {id}")))?;
        Ok(Step::Draft(Ensured {
            account,
            created,
            email_changed,
        }))
    }

    fn answer(draft: Ensured, _: &EntryIds) -> Result<Ensured, LedgerError> {
        Ok(draft)
    }
}

/// The account holding `email` among the loaded books.
pub(super) fn email_holder<'b>(books: &'b Books, email: &str) -> Option<&'b str> {
    books
        .values()
        .find(|b| b.account.email == email)
        .map(|b| b.account.id.as_str())
}
