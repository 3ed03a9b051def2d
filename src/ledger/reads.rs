//! What callers read of the ledger, over the read pool: balances as of now, accounts, entries
//! page by page, lots in burn order. No credit past its lot's expiry is ever counted.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{
    api::Ledger,
    book::{AccountSettings, AccountState, Book, Lot, TopUpAttempt},
    commands::AccountView,
    error::LedgerError,
    store::{
        self,
        reads::{Balance, EntryView},
    },
    types::{AccountRef, Listing, PageRequest, encode_page_token},
    writer::Extension,
};

/// Top-up attempts `GetAccountSettings` shows.
const RECENT_TOP_UPS: u64 = 5;

/// An account's settings, where its balance stands and its latest top-up attempts.
#[derive(Debug, Clone)]
pub(crate) struct SettingsRead {
    pub account_id: String,
    pub settings: AccountSettings,
    pub available_balance: i64,
    pub recent_top_ups: Vec<TopUpAttempt>,
}

/// One page of ledger entries and the token for the next (None on the last page).
#[derive(Debug, Clone)]
pub(crate) struct EntryPage {
    pub entries: Vec<EntryView>,
    pub next_page_token: Option<String>,
}

impl<X: Extension> Ledger<X> {
    /// The balance as of now: no credit past its lot's expiry is counted.
    pub(crate) async fn balance(&self, by: &AccountRef) -> Result<Balance, LedgerError> {
        store::reads::balance(&self.reads, by, Utc::now())
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    /// The balance as it stood at `at`, rebuilt from the ledger.
    pub(crate) async fn balance_as_of(
        &self,
        by: &AccountRef,
        at: DateTime<Utc>,
    ) -> Result<Balance, LedgerError> {
        let account = store::reads::find_account(&self.reads, by)
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))?;
        Ok(store::reads::then(&self.reads, account, at).await?)
    }

    /// An account's lots as they stood at `at`; spent ones too when asked.
    pub(crate) async fn lots_as_of(
        &self,
        by: &AccountRef,
        include_spent: bool,
        at: DateTime<Utc>,
    ) -> Result<Vec<Lot>, LedgerError> {
        let account_id = self.account_id(by).await?;
        let mut lots = store::reads::lots_then(&self.reads, &account_id, at).await?;
        for lot in &mut lots {
            if lot.is_expired(at) {
                lot.remaining = lot.held;
            }
        }
        if !include_spent {
            lots.retain(|l| l.remaining > 0);
        }
        Ok(lots)
    }

    /// The account as EnsureAccount describes it.
    pub(crate) async fn account(&self, by: &AccountRef) -> Result<AccountView, LedgerError> {
        let balance = self.balance(by).await?;
        Ok(AccountView {
            account_id: balance.account.id,
            email: balance.account.email,
            credit_balance: balance.credit_balance,
            available_balance: balance.available_balance,
            held_credits: balance.held_credits,
            is_trial_user: balance.account.is_trial_user,
            created_at: balance.account.created_at,
        })
    }

    /// The id of the account `by` names.
    pub(crate) async fn account_id(&self, by: &AccountRef) -> Result<String, LedgerError> {
        store::reads::find_account(&self.reads, by)
            .await?
            .map(|account| account.id)
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    /// The account that saved a card as Stripe Customer `customer_id`, if any.
    pub(crate) async fn account_of_customer(&self, customer_id: &str) -> Result<Option<String>, LedgerError> {
        Ok(store::reads::account_of_customer(&self.reads, customer_id).await?)
    }

    /// Whether any account has one of these ids or emails.
    pub(crate) async fn any_account(&self, ids: &[&str], emails: &[&str]) -> Result<bool, LedgerError> {
        Ok(!store::writes::find_accounts(&self.reads, ids, emails)
            .await?
            .is_empty())
    }

    /// The ids of the accounts that exist among `ids`.
    pub(crate) async fn existing_accounts(&self, ids: &[&str]) -> Result<Vec<String>, LedgerError> {
        Ok(store::writes::find_accounts(&self.reads, ids, &[])
            .await?
            .into_iter()
            .map(|account| account.id)
            .collect())
    }

    /// An account's entries, newest first.
    pub(crate) async fn entries(
        &self,
        by: &AccountRef,
        page: &PageRequest,
    ) -> Result<EntryPage, LedgerError> {
        let account_id = self.account_id(by).await?;
        let before = page.after.as_deref().and_then(|c| c.parse::<i64>().ok());
        let mut entries = store::reads::entries_page(&self.reads, &account_id, before, page.size + 1).await?;
        let next_page_token = if entries.len() as u64 > page.size {
            entries.truncate(page.size as usize);
            entries
                .last()
                .map(|last| encode_page_token(Listing::LedgerEntries, &last.id.to_string()))
        } else {
            None
        };
        Ok(EntryPage {
            entries,
            next_page_token,
        })
    }

    /// An account's settings and latest top-up attempts.
    pub(crate) async fn settings(&self, by: &AccountRef) -> Result<SettingsRead, LedgerError> {
        let balance = self.balance(by).await?;
        let recent_top_ups =
            store::outbox::account_top_ups(&self.reads, &balance.account.id, RECENT_TOP_UPS).await?;
        Ok(SettingsRead {
            account_id: balance.account.id,
            settings: balance.account.settings,
            available_balance: balance.available_balance,
            recent_top_ups,
        })
    }

    /// Top-up attempts whose next step is due, oldest first.
    pub(crate) async fn due_top_ups(&self, limit: u64) -> Result<Vec<TopUpAttempt>, LedgerError> {
        Ok(store::outbox::due_top_ups(&self.reads, Utc::now(), limit).await?)
    }

    /// What an account's top-ups may have charged since `since` (minor units).
    pub(crate) async fn top_ups_charged_since(
        &self,
        account_id: &str,
        since: chrono::DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        Ok(store::outbox::charged_since(&self.reads, account_id, since).await?)
    }

    /// An account's lots in burn order, as of now: a lot past its expiry keeps only what a live
    /// hold reserves (what the sweep will leave), so no listing counts an expired credit.
    pub(crate) async fn lots(&self, by: &AccountRef, include_spent: bool) -> Result<Vec<Lot>, LedgerError> {
        let account = store::reads::find_account(&self.reads, by)
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))?;
        let now = Utc::now();
        let mut lots = store::reads::lots(&self.reads, &account.id, include_spent).await?;
        if !lots.iter().any(|l| l.is_expired(now) && l.remaining > 0) {
            return Ok(lots);
        }
        // Holds past their time no longer keep anything: bring the book to now first.
        let holds = store::writes::holds(&self.reads, &[], &[account.id.as_str()]).await?;
        let live = lots.iter().filter(|l| l.remaining > 0).cloned().collect();
        let mut book = Book::load(account, live, holds);
        book.settle(now);
        for lot in &mut lots {
            if let Some(settled) = book.lots().iter().find(|s| s.id == lot.id) {
                lot.clone_from(settled);
            }
            if lot.is_expired(now) {
                lot.remaining = lot.held;
            }
        }
        if !include_spent {
            lots.retain(|l| l.remaining > 0);
        }
        Ok(lots)
    }
}

/// The accounts with these ids or emails, read in `db`: billing's part of a writer batch reads
/// them in the batch's transaction.
pub(crate) async fn accounts_named<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
    emails: &[&str],
) -> Result<Vec<AccountState>, LedgerError> {
    Ok(store::writes::find_accounts(db, ids, emails).await?)
}

impl<X: Extension> Ledger<X> {
    /// An account's active holds (the console's account page).
    pub(crate) async fn active_holds(&self, by: &AccountRef) -> Result<Vec<super::book::Hold>, LedgerError> {
        let account_id = self.account_id(by).await?;
        Ok(store::writes::holds(&self.reads, &[], &[account_id.as_str()]).await?)
    }
}
