//! The ledger: the only code that changes balances. Accounts, their credit lots, holds and the
//! append-only entries; every change is a command applied by the writer under the posting
//! rules, answered once committed. Reads go to the pool.
//!
//! - `commands/`: one file per command: what it locks, its key, its rule, its answer.
//! - `writer/`: the group-commit write path (queue, batch, load, flush) and billing's hook.
//! - `book/`: posting rules, pure (lots, burn order, debt, holds, expiry, imports, overdraft).
//! - `outbox`: the account events and top-up attempts a batch's changes cause, pure.
//! - `store/`: the ledger's tables.
//! - `api`: the `Ledger` callers hold; `reads`: balances, entries, lots and settings as they read
//!   them; `events`: account events, paged and streamed.
//! - `types`, `kinds`, `error`: validated inputs, stored vocabularies, the error callers see.

mod api;
pub(crate) mod book;
pub(crate) mod commands;
pub(crate) mod error;
mod events;
pub(crate) mod kinds;
pub(crate) mod outbox;
mod reads;
pub(crate) mod store;
pub(crate) mod types;
pub(crate) mod writer;

pub(crate) use api::Ledger;
pub(crate) use error::LedgerError;
pub(crate) use outbox::OutboxPolicy;
pub(crate) use reads::{SettingsRead, accounts_named};
pub(crate) use store::reads::{Balance, EntryView};
pub(crate) use types::*;
pub(crate) use writer::{
    Extension, ExtensionJob, Policies, Posted, Posting, Signals, TrialPolicy, WriterSettings,
};
