//! What a book is made of and what postings take: lots, holds, entries, the terms of each
//! posting, and why one may be refused.

use std::{cmp::Ordering, collections::BTreeMap};

use chrono::{DateTime, Utc};

use crate::ledger::kinds::{EntryKind, HoldStatus, LotSource};

/// Caller-supplied key/value pairs kept with an entry or hold.
pub(crate) type Metadata = BTreeMap<String, String>;

/// The account row a book is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountState {
    pub id: String,
    pub email: String,
    pub balance: i64,
    pub debt: i64,
    pub is_trial_user: bool,
    pub created_at: DateTime<Utc>,
}

/// Credits from one purchase, grant, trial or import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lot {
    pub id: String,
    pub account_id: String,
    pub source: LotSource,
    pub reference: String,
    pub credits: i64,
    /// Not yet consumed, clawed back or expired; includes `held`.
    pub remaining: i64,
    /// Reserved by active holds.
    pub held: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Lot {
    pub(crate) fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub(super) fn free(&self) -> i64 {
        self.remaining - self.held
    }
}

/// Soonest expiry first, never-expiring last, oldest first on ties (then by id, for a total
/// order).
pub(crate) fn burn_order(a: &Lot, b: &Lot) -> Ordering {
    let by_expiry = match (a.expires_at, b.expires_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_expiry
        .then(a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// Credits a hold reserves in one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub lot_id: String,
    pub credits: i64,
}

/// A reservation of credits whose cost is known only later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    pub id: String,
    pub account_id: String,
    pub credits: i64,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    /// In burn order at the time of the reservation.
    pub allocations: Vec<Allocation>,
    pub reason: String,
    pub metadata: Metadata,
    pub captured_credits: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// Active and not past its time to live.
    pub(crate) fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == HoldStatus::Active && self.expires_at > now
    }
}

/// A ledger entry appended by a posting; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub account_id: String,
    pub kind: EntryKind,
    pub delta: i64,
    pub balance_after: i64,
    pub reason: String,
    pub reference: String,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
}

/// The lot a credit opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LotTerms {
    pub id: String,
    pub source: LotSource,
    pub reference: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Credits added to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credit {
    pub credits: i64,
    pub kind: EntryKind,
    pub reason: String,
    pub reference: String,
    pub metadata: Metadata,
    pub lot: LotTerms,
    /// The seed's `fill_credits`: a purchase ends the trial; grants do not.
    pub ends_trial: bool,
}

/// Credits taken because they were spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Debit {
    pub credits: i64,
    pub reason: String,
    pub reference: String,
    pub metadata: Metadata,
}

/// Credits taken back because the money went back (a refund or a dispute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clawback {
    pub credits: i64,
    pub kind: EntryKind,
    pub reference: String,
    pub metadata: Metadata,
    /// The purchase's lots (`source = purchase`, this reference) are taken from first.
    pub purchase_reference: String,
}

/// A new hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub hold_id: String,
    pub credits: i64,
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    pub metadata: Metadata,
}

/// Why a posting was refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PostingError {
    #[error("not enough credits: {available} available, {asked} asked")]
    Insufficient { available: i64, asked: i64 },
    #[error("hold not found")]
    HoldNotFound,
    #[error("hold is {0}")]
    HoldClosed(HoldStatus),
    #[error("cannot capture {asked} credits of a hold of {held}")]
    OverCapture { held: i64, asked: i64 },
    /// The book was loaded for credits only (its lots were not read).
    #[error("the account's lots were not loaded")]
    NotLoaded,
}

/// What a book changed, for the store to write.
#[derive(Debug, Clone, Default)]
pub(crate) struct BookChanges {
    pub account: Option<AccountState>,
    pub new_lots: Vec<Lot>,
    pub changed_lots: Vec<Lot>,
    pub new_holds: Vec<Hold>,
    pub changed_holds: Vec<Hold>,
    pub entries: Vec<Entry>,
}

/// Where a posting left the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posted {
    /// Index into `Book::entries`.
    pub entry: usize,
    pub lot_id: Option<String>,
    pub balance: i64,
}

/// What a capture did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    pub posted: Posted,
    pub released: i64,
}
