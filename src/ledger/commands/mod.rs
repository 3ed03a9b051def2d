//! The commands that change balances, one file each: what a caller asks, which accounts and
//! holds it locks, its idempotency key, its rule over the batch's books, and how its answer is
//! assembled once the batch's entries have ids. The writer applies any [`Command`] in a batch
//! and answers it once the batch is committed.
//!
//! Adding a command: a new file here implementing [`Command`], and its `mod` line below.
//! `context` is what every command sees while its batch applies.

mod context;

mod capture;
mod consume;
mod ensure;
mod expire;
mod grant;
mod import_account;
mod ping;
mod release;
mod reserve;
mod save_customer;
mod settle_top_up;
mod update_settings;

pub(crate) use capture::Capture;
pub(crate) use consume::{Consume, Consumed};
pub(crate) use context::{Books, Context, EntryIds, KeyId, LockSet, Opener, Replay, Step};
pub(crate) use context::{KeyUse, posting_error};
pub(crate) use ensure::{AccountView, EnsureAccount};
pub(crate) use expire::Expire;
pub(crate) use grant::Grant;
pub(crate) use import_account::{ImportAccount, ImportOutcome, dry_run_imports};
pub(crate) use ping::Ping;
pub(crate) use release::Release;
pub(crate) use reserve::Reserve;
pub(crate) use save_customer::SaveCustomer;
pub(crate) use settle_top_up::SettleTopUp;
pub(crate) use update_settings::{AutoTopUpChange, SettingsChange, SettingsView, UpdateSettings};

use crate::ledger::error::LedgerError;

/// A change the writer applies in a batch.
pub(crate) trait Command: Send + 'static {
    /// What the caller gets once the batch is committed.
    type Reply: Reply;
    /// What the rule leaves for the answer until the batch's entries have ids.
    type Draft: Send + 'static;
    /// The command's name in logs and spans.
    const NAME: &'static str;

    /// The accounts and holds to lock and load before the batch applies anything.
    fn lock(&self, set: &mut LockSet);

    /// The idempotency key, once the books are loaded; `None` for commands without one.
    fn key(&self, books: &Books) -> Option<KeyId> {
        let _ = books;
        None
    }

    /// The rule, applied to the loaded books in job order. A refusal changes nothing.
    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<Self::Draft>, LedgerError>;

    /// The answer, once the batch's entries have ids.
    fn answer(draft: Self::Draft, ids: &EntryIds) -> Result<Self::Reply, LedgerError>;
}

/// A command's answer. A keyed command's answer is kept with its key and replayed to repeats.
pub(crate) trait Reply: Send + Sized + 'static {
    /// The answer as its key's record keeps it; `None` for answers never recorded.
    fn record(&self) -> Option<String> {
        None
    }

    /// A recorded answer, marked as a repeat; `None` when the record does not read back.
    fn replay(record: &str) -> Option<Self> {
        let _ = record;
        None
    }
}

/// Implements [`Reply`] for an answer that is recorded as JSON and has a `replayed` flag.
macro_rules! recorded_reply {
    ($reply:ty) => {
        impl $crate::ledger::commands::Reply for $reply {
            fn record(&self) -> Option<String> {
                serde_json::to_string(self).ok()
            }

            fn replay(record: &str) -> Option<Self> {
                serde_json::from_str::<Self>(record).ok().map(|reply| Self {
                    replayed: true,
                    ..reply
                })
            }
        }
    };
}
pub(crate) use recorded_reply;
