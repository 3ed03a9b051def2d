//! The ledger: the only code that changes balances. Accounts, their credit lots, holds and the
//! append-only entries; every change is a command applied by the writer (`writer`, `apply`)
//! under the posting rules (`book`), answered once committed. Reads go to the pool.
//!
//! - `book`: posting rules, pure (lots, burn order, debt, holds, expiry).
//! - `command`: what callers ask and what they get back.
//! - `writer`, `apply`: the group-commit write path and one batch of it.
//! - `import`: accounts brought over from another system, applied or dry-run.
//! - `store`: the ledger's tables.
//! - `types`, `kinds`, `error`: validated inputs, stored vocabularies, the error callers see.

pub mod apply;
pub mod batch;
pub mod book;
pub mod command;
pub mod error;
pub mod import;
pub mod kinds;
pub mod store;
pub mod types;
pub mod writer;

use chrono::Utc;
use sea_orm::DatabaseConnection;

pub use batch::{Extension, TrialPolicy};
pub use error::LedgerError;
pub use store::reads::{Balance, EntryView};
pub use types::*;
pub use writer::{WriterHandle, WriterSettings};

use book::{Book, Lot};
use command::{
    AccountView, CaptureDone, Command, Consume, Consumed, EnsureAccount, Ensured, Grant, Granted,
    ImportAccount, ImportOutcome, ReleaseDone, Reply, Reserve, Reserved,
};

/// One page of ledger entries and the token for the next (None on the last page).
#[derive(Debug, Clone)]
pub struct EntryPage {
    pub entries: Vec<EntryView>,
    pub next_page_token: Option<String>,
}

/// Accounts with due lots or run-out holds handled per sweep pass.
const SWEEP_BATCH: u64 = 500;

/// The ledger as callers use it: cheap to clone.
pub struct Ledger<X: Extension> {
    writer: WriterHandle<X>,
    reads: DatabaseConnection,
}

impl<X: Extension> Clone for Ledger<X> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            reads: self.reads.clone(),
        }
    }
}

fn unexpected(reply: Reply) -> LedgerError {
    LedgerError::Unexpected(anyhow::anyhow!("the writer answered {reply:?}"))
}

impl<X: Extension> Ledger<X> {
    pub fn new(writer: WriterHandle<X>, reads: DatabaseConnection) -> Self {
        Self { writer, reads }
    }

    pub fn writer(&self) -> &WriterHandle<X> {
        &self.writer
    }

    /// The read pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.reads
    }

    /// Creates the account (with the trial credits) on first sight, or finds it; `follow_email`
    /// moves an existing account to the given email (PurchaseCredits).
    pub async fn ensure_account(
        &self,
        account_id: AccountId,
        email: Email,
        follow_email: bool,
    ) -> Result<Ensured, LedgerError> {
        match self
            .writer
            .command(Command::EnsureAccount(EnsureAccount {
                account_id,
                email,
                follow_email,
            }))
            .await?
        {
            Reply::Ensured(ensured) => Ok(ensured),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(skip_all, fields(credits = grant.credits.get()), err)]
    pub async fn grant(&self, grant: Grant) -> Result<Granted, LedgerError> {
        match self.writer.command(Command::Grant(grant)).await? {
            Reply::Granted(granted) => Ok(granted),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(skip_all, fields(credits = consume.credits.get()), err)]
    pub async fn consume(&self, consume: Consume) -> Result<Consumed, LedgerError> {
        match self.writer.command(Command::Consume(consume)).await? {
            Reply::Consumed(consumed) => Ok(consumed),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(skip_all, fields(credits = reserve.credits.get()), err)]
    pub async fn reserve(&self, reserve: Reserve) -> Result<Reserved, LedgerError> {
        match self.writer.command(Command::Reserve(reserve)).await? {
            Reply::Reserved(reserved) => Ok(reserved),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(skip_all, fields(hold_id = capture.hold_id.as_str()), err)]
    pub async fn capture(&self, capture: command::Capture) -> Result<CaptureDone, LedgerError> {
        match self.writer.command(Command::Capture(capture)).await? {
            Reply::Captured(captured) => Ok(captured),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(skip_all, fields(hold_id = hold_id.as_str()), err)]
    pub async fn release(&self, hold_id: HoldId) -> Result<ReleaseDone, LedgerError> {
        match self.writer.command(Command::Release(hold_id)).await? {
            Reply::Released(released) => Ok(released),
            other => Err(unexpected(other)),
        }
    }

    /// Creates an imported account with its balance, or compares (and with `adopt` moves) the
    /// stored one; answered once committed.
    #[tracing::instrument(skip_all, fields(account_id = import.account_id.as_str()), err)]
    pub async fn import_account(&self, import: ImportAccount) -> Result<ImportOutcome, LedgerError> {
        match self.writer.command(Command::Import(import)).await? {
            Reply::Imported(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// What these imports would do, read over the pool; nothing is locked or written.
    pub async fn dry_run_imports(
        &self,
        imports: &[ImportAccount],
    ) -> Result<Vec<Result<ImportOutcome, LedgerError>>, LedgerError> {
        import::dry_run(&self.reads, imports, Utc::now()).await
    }

    /// Proves the write path works: a write transaction opened and committed (with whatever
    /// else was queued).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        self.writer.command(Command::Ping).await.map(|_| ())
    }

    /// The balance as of now: no credit past its lot's expiry is counted.
    pub async fn balance(&self, by: &AccountRef) -> Result<Balance, LedgerError> {
        store::reads::balance(&self.reads, by, Utc::now())
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    /// The account as EnsureAccount describes it.
    pub async fn account(&self, by: &AccountRef) -> Result<AccountView, LedgerError> {
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

    /// An account's entries, newest first.
    pub async fn entries(&self, by: &AccountRef, page: &PageRequest) -> Result<EntryPage, LedgerError> {
        let account = store::reads::find_account(&self.reads, by)
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))?;
        let before = page.after.as_deref().and_then(|c| c.parse::<i64>().ok());
        let mut entries = store::reads::entries_page(&self.reads, &account.id, before, page.size + 1).await?;
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

    /// An account's lots in burn order, as of now: a lot past its expiry keeps only what a live
    /// hold reserves (what the sweep will leave), so no listing counts an expired credit.
    pub async fn lots(&self, by: &AccountRef, include_spent: bool) -> Result<Vec<Lot>, LedgerError> {
        let account = store::reads::find_account(&self.reads, by)
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))?;
        let now = Utc::now();
        let mut lots = store::reads::lots(&self.reads, &account.id, include_spent).await?;
        if !lots.iter().any(|l| l.is_expired(now) && l.remaining > 0) {
            return Ok(lots);
        }
        // Holds past their time no longer keep anything: bring the book to now first.
        let holds = store::batch::holds(&self.reads, &[], &[account.id.as_str()]).await?;
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

    /// One pass of the expiry sweep: every account with a lot past its expiry or a hold past its
    /// time gets an `Expire` command. Returns the expiry entries written.
    pub async fn sweep(&self) -> Result<usize, LedgerError> {
        let now = Utc::now();
        let mut due = store::batch::accounts_with_due_lots(&self.reads, now, SWEEP_BATCH).await?;
        due.extend(store::batch::accounts_with_stale_holds(&self.reads, now, SWEEP_BATCH).await?);
        due.sort();
        due.dedup();
        let mut commands = tokio::task::JoinSet::new();
        for id in due.into_iter().filter_map(|id| AccountId::parse(&id).ok()) {
            let writer = self.writer.clone();
            commands.spawn(async move { writer.command(Command::Expire(id)).await });
        }
        let mut written = 0;
        while let Some(reply) = commands.join_next().await {
            let reply = reply.map_err(|err| LedgerError::Unexpected(anyhow::anyhow!("sweep task: {err}")))?;
            if let Reply::Expired { entries } = reply? {
                written += entries;
            }
        }
        Ok(written)
    }
}
