//! What callers ask of the ledger's writer, and what it answers. Every change to a balance is
//! one of these commands (or a `Posting` that billing hands the writer with a Stripe event),
//! applied in a batch and answered once the batch's commit is durable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    book::{Clawback, Credit, Differences, Metadata},
    types::{AccountId, AccountRef, Credits, Email, HoldId, IdempotencyKey, ImportedBalance, Reason},
};

/// Creates the account on first sight (with the trial credits), or finds it.
#[derive(Debug, Clone)]
pub struct EnsureAccount {
    pub account_id: AccountId,
    pub email: Email,
    /// PurchaseCredits follows a buyer's new email; EnsureAccount changes nothing later.
    pub follow_email: bool,
}

/// Credits for promotions and support. Does not end the trial.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub reason: Reason,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: Metadata,
}

/// Spends credits now.
#[derive(Debug, Clone)]
pub struct Consume {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub reason: Reason,
    pub metadata: Metadata,
}

/// Reserves credits for a call whose cost is known only afterwards.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub account: AccountRef,
    pub credits: Credits,
    pub key: IdempotencyKey,
    pub ttl: chrono::Duration,
    pub reason: Reason,
    pub metadata: Metadata,
}

/// Debits part or all of a hold and releases the rest.
#[derive(Debug, Clone)]
pub struct Capture {
    pub hold_id: HoldId,
    pub credits: Credits,
    pub metadata: Metadata,
}

/// An account brought over from another system (`credits import accounts`): created with its
/// balance as an `import` entry and lot, else compared with the stored account and, with
/// `adopt`, moved to the import. Never gets the trial credits.
#[derive(Debug, Clone)]
pub struct ImportAccount {
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
pub enum ImportOutcome {
    /// Created with its balance.
    Created { balance: i64 },
    /// Stored as imported already: nothing to do.
    Unchanged,
    /// Stored otherwise; left as it is (no `adopt`).
    Differs(Differences),
    /// Moved to the import; `differences.delta()` credits recorded as one entry.
    Adopted(Differences),
}

/// A balance change billing decided for a Stripe event, applied in the event's transaction.
#[derive(Debug, Clone)]
pub enum Posting {
    Credit { account_id: String, credit: Credit },
    Clawback { account_id: String, clawback: Clawback },
}

impl Posting {
    pub fn account_id(&self) -> &str {
        match self {
            Self::Credit { account_id, .. } | Self::Clawback { account_id, .. } => account_id,
        }
    }
}

/// Where a posting left its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub account_id: String,
    pub delta: i64,
    pub balance: i64,
    pub entry_id: i64,
}

/// A command for the writer.
#[derive(Debug, Clone)]
pub enum Command {
    EnsureAccount(EnsureAccount),
    Grant(Grant),
    Consume(Consume),
    Reserve(Reserve),
    Capture(Capture),
    Release(HoldId),
    /// Expires the account's lots that are due (the periodic sweep).
    Expire(AccountId),
    Import(ImportAccount),
    /// Proves the write path works: answered once a write transaction could be opened.
    Ping,
}

/// An account as callers see it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub account_id: String,
    pub email: String,
    pub credit_balance: i64,
    pub available_balance: i64,
    pub held_credits: i64,
    pub is_trial_user: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ensured {
    pub account: AccountView,
    pub created: bool,
    /// An existing account now has the email PurchaseCredits named (`follow_email`).
    #[serde(default)]
    pub email_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub credit_balance: i64,
    pub ledger_entry_id: String,
    pub lot_id: String,
    #[serde(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumed {
    pub credit_balance: i64,
    pub available_balance: i64,
    pub ledger_entry_id: String,
    #[serde(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub hold_id: String,
    pub available_balance: i64,
    pub expires_at: DateTime<Utc>,
    #[serde(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureDone {
    pub credit_balance: i64,
    pub available_balance: i64,
    pub ledger_entry_id: String,
    pub released_credits: i64,
    /// What was captured: a repeat with other credits is refused.
    pub credits: i64,
    #[serde(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDone {
    pub available_balance: i64,
    #[serde(skip)]
    pub replayed: bool,
}

/// The writer's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ensured(Ensured),
    Granted(Granted),
    Consumed(Consumed),
    Reserved(Reserved),
    Captured(CaptureDone),
    Released(ReleaseDone),
    Expired { entries: usize },
    Imported(ImportOutcome),
    Pong,
}

impl Reply {
    /// The same answer, marked as a repeat of an earlier call.
    pub fn replayed(self) -> Self {
        match self {
            Self::Granted(r) => Self::Granted(Granted { replayed: true, ..r }),
            Self::Consumed(r) => Self::Consumed(Consumed { replayed: true, ..r }),
            Self::Reserved(r) => Self::Reserved(Reserved { replayed: true, ..r }),
            Self::Captured(r) => Self::Captured(CaptureDone { replayed: true, ..r }),
            Self::Released(r) => Self::Released(ReleaseDone { replayed: true, ..r }),
            other @ (Self::Ensured(_) | Self::Expired { .. } | Self::Imported(_) | Self::Pong) => other,
        }
    }

    /// The answer as an idempotency record keeps it.
    pub fn to_record(&self) -> String {
        let json = match self {
            Self::Granted(r) => serde_json::to_string(r),
            Self::Consumed(r) => serde_json::to_string(r),
            Self::Reserved(r) => serde_json::to_string(r),
            Self::Captured(r) => serde_json::to_string(r),
            Self::Released(r) => serde_json::to_string(r),
            Self::Ensured(r) => serde_json::to_string(r),
            Self::Expired { .. } | Self::Imported(_) | Self::Pong => Ok(String::new()),
        };
        json.unwrap_or_default()
    }

    /// A recorded answer of `operation`, replayed.
    pub fn from_record(operation: &str, record: &str) -> Result<Self, serde_json::Error> {
        let reply = match operation {
            "grant" => Self::Granted(serde_json::from_str(record)?),
            "consume" => Self::Consumed(serde_json::from_str(record)?),
            "reserve" => Self::Reserved(serde_json::from_str(record)?),
            "capture" => Self::Captured(serde_json::from_str(record)?),
            _ => Self::Released(serde_json::from_str(record)?),
        };
        Ok(reply.replayed())
    }
}
