//! The ledger: the only code that changes balances. Accounts, their credit lots, holds and the
//! append-only entries; every change is a command applied by the writer under the posting
//! rules, answered once committed. Reads go to the pool.
//!
//! - `commands/`: one file per command: what it locks, its key, its rule, its answer.
//! - `writer/`: the group-commit write path (queue, batch, load, flush) and billing's hook.
//! - `book/`: posting rules, pure (lots, burn order, debt, holds, expiry, imports).
//! - `store/`: the ledger's tables.
//! - `api`: the `Ledger` callers hold; `reads`: balances, entries and lots as they read them.
//! - `types`, `kinds`, `error`: validated inputs, stored vocabularies, the error callers see.

mod api;
pub mod book;
pub mod commands;
pub mod error;
pub mod kinds;
mod reads;
pub mod store;
pub mod types;
pub mod writer;

pub use api::Ledger;
pub use error::LedgerError;
pub use reads::{EntryPage, accounts_named};
pub use store::reads::{Balance, EntryView};
pub use types::*;
pub use writer::{Extension, ExtensionJob, Posted, Posting, TrialPolicy, WriterHandle, WriterSettings};
