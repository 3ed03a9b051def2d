//! What a book is made of and what postings take: lots, holds, entries, the terms of each
//! posting, and why one may be refused.

use std::{cmp::Ordering, collections::BTreeMap};

use chrono::{DateTime, Utc};

use crate::ledger::kinds::{EntryKind, EventType, HoldStatus, LotSource, TopUpState};

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
    pub settings: AccountSettings,
    /// Available credits after the account's last change (`None` until it changes): what a
    /// change is compared with, so one that time made (a lot expiring) still counts.
    pub last_available: Option<i64>,
}

impl AccountState {
    /// A new account: nothing in it, the service's default settings.
    pub(crate) fn new(id: &str, email: &str, is_trial_user: bool, now: DateTime<Utc>) -> Self {
        Self {
            id: id.to_owned(),
            email: email.to_owned(),
            balance: 0,
            debt: 0,
            is_trial_user,
            created_at: now,
            settings: AccountSettings::default(),
            last_available: None,
        }
    }
}

/// What an account's owner set: balance alerts, auto top-up, overdraft and the saved card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AccountSettings {
    /// `None`: the service's default; 0: no balance alerts.
    pub low_balance_threshold: Option<i64>,
    /// Credits the balance may go below zero by.
    pub overdraft_limit: i64,
    pub stripe_customer_id: Option<String>,
    pub payment_method_id: Option<String>,
    pub auto_top_up: AutoTopUp,
}

/// Automatic top-ups: when a change takes the available credits below `threshold`, `pack_id`
/// is bought with the saved card, at most `monthly_limit` (minor units) a calendar month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AutoTopUp {
    pub enabled: bool,
    pub threshold: i64,
    pub pack_id: Option<String>,
    pub monthly_limit: i64,
    /// Why it stopped on its own (`requires_action`, `declined`); `None` while it runs.
    pub paused: Option<String>,
}

impl AutoTopUp {
    /// Running: enabled, not paused, with a pack.
    pub(crate) fn running(&self) -> Option<&str> {
        (self.enabled && self.paused.is_none())
            .then_some(self.pack_id.as_deref())
            .flatten()
    }
}

/// Credits from one purchase, top-up, allowance, rollover, grant, trial or import.
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
    /// What was paid for `credits` (0 for free credits).
    pub value: LotValue,
    /// The part of `value` still owed: what `remaining` is worth.
    pub value_remaining: i64,
    /// Credits written off at expiry that no refund has accounted for yet.
    pub expired: i64,
    /// What happens to unspent credits at expiry instead of losing them all.
    pub rollover: Option<RolloverTerms>,
}

/// `floor(value × part / whole)` without overflow: the money `part` of `whole` credits worth
/// `value` are worth.
pub(super) fn share(value: i64, part: i64, whole: i64) -> i64 {
    let share = i128::from(value) * i128::from(part) / i128::from(whole.max(1));
    i64::try_from(share).unwrap_or(value)
}

/// Money paid for a lot's credits, in minor units of `currency`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LotValue {
    pub minor: i64,
    pub currency: Option<String>,
}

impl LotValue {
    /// Credits nobody paid for (grants, trials, imports).
    pub(crate) fn free() -> Self {
        Self::default()
    }

    pub(crate) fn paid(minor: i64, currency: &str) -> Self {
        Self {
            minor,
            currency: Some(currency.to_owned()),
        }
    }
}

/// At its lot's expiry, up to `cap` unspent credits move into a rollover lot that lives until
/// `until`; the rest expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RolloverTerms {
    pub cap: i64,
    pub until: DateTime<Utc>,
}

/// What an entry did to one lot, or (no lot) to the debt: `credits` is the change of the lot's
/// remaining credits (of `-debt`), `value` the money those credits are worth. An entry's
/// moves add up to its delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LotMove {
    pub lot_id: Option<String>,
    pub credits: i64,
    pub value: i64,
    pub source: Option<LotSource>,
    pub currency: Option<String>,
}

impl LotMove {
    /// A change of the debt (`credits` > 0: debt paid).
    pub(crate) fn debt(credits: i64, value: i64, currency: Option<String>) -> Self {
        Self {
            lot_id: None,
            credits,
            value,
            source: None,
            currency,
        }
    }
}

impl Lot {
    pub(crate) fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub(super) fn free(&self) -> i64 {
        self.remaining - self.held
    }

    /// Takes `credits` (at most `remaining`) out of the lot with their share of its value; the
    /// last credit takes what is left of it, so a lot's moves add up to its value exactly.
    pub(super) fn take(&mut self, credits: i64) -> LotMove {
        let value = if credits >= self.remaining {
            self.value_remaining
        } else {
            let share =
                i128::from(self.value_remaining) * i128::from(credits) / i128::from(self.remaining.max(1));
            i64::try_from(share).unwrap_or(self.value_remaining)
        };
        self.remaining -= credits;
        self.value_remaining -= value;
        LotMove {
            lot_id: Some(self.id.clone()),
            credits: -credits,
            value: -value,
            source: Some(self.source),
            currency: self.value.currency.clone(),
        }
    }

    /// The move that opened the lot with `credits` of its value.
    pub(super) fn opening(&self) -> LotMove {
        LotMove {
            lot_id: Some(self.id.clone()),
            credits: self.remaining,
            value: self.value_remaining,
            source: Some(self.source),
            currency: self.value.currency.clone(),
        }
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
    /// What the hold reserves beyond the lots' credits, against the overdraft limit.
    pub(crate) fn overdraft(&self) -> i64 {
        self.credits - self.allocations.iter().map(|a| a.credits).sum::<i64>()
    }

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
    /// The lot a credit opened, or the lot an expiry wrote off.
    pub lot_id: Option<String>,
    /// The lots (and debt) the entry moved, in order.
    pub moves: Vec<LotMove>,
}

/// Something that happened to a book, in order, with where it left the balance: what the
/// account events of a batch are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Happening {
    pub what: What,
    pub balance_after: i64,
    pub available_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    /// `Book::entries[n]` was appended.
    Entry(usize),
    /// A hold ran past its time and released its credits.
    HoldExpired { hold_id: String, credits: i64 },
    /// A hold reserved or gave back credits: no event of its own, but the available credits
    /// moved, so it may cross a threshold.
    Reserved,
    /// A command's own event (an auto top-up's outcome), with its payload.
    Signal {
        kind: EventType,
        payload: serde_json::Value,
    },
}

/// One automatic top-up: a charge of the saved card for a pack, whose id is also the Stripe
/// Idempotency-Key of its one PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopUpAttempt {
    pub id: String,
    pub account_id: String,
    pub pack_id: String,
    /// 1 for the attempt a crossing started; 2 and 3 after declines.
    pub number: i32,
    pub state: TopUpState,
    pub payment_intent_id: Option<String>,
    /// What the charge asks, in minor units of `currency`, for `credits`: set when it starts.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub credits: Option<i64>,
    pub error: Option<String>,
    /// When Stripe's answer to its charge was first lost.
    pub unknown_since: Option<DateTime<Utc>>,
    /// When the worker next looks at it.
    pub next_action_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TopUpAttempt {
    /// A new attempt, waiting for the worker from `at`.
    pub(crate) fn new(
        account_id: &str,
        pack_id: &str,
        number: i32,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: format!("topup_{}", uuid::Uuid::now_v7().simple()),
            account_id: account_id.to_owned(),
            pack_id: pack_id.to_owned(),
            number,
            state: TopUpState::Pending,
            payment_intent_id: None,
            amount: None,
            currency: None,
            credits: None,
            error: None,
            unknown_since: None,
            next_action_at: at,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The lot a credit opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LotTerms {
    pub id: String,
    pub source: LotSource,
    pub reference: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub value: LotValue,
    pub rollover: Option<RolloverTerms>,
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
}

/// What a book changed, for the store to write.
#[derive(Debug, Clone, Default)]
pub(crate) struct BookChanges {
    pub account: Option<AccountState>,
    /// The account's settings changed too.
    pub settings_changed: bool,
    pub new_lots: Vec<Lot>,
    pub changed_lots: Vec<Lot>,
    pub new_holds: Vec<Hold>,
    pub changed_holds: Vec<Hold>,
    pub entries: Vec<Entry>,
    /// Top-up attempts whose state changed, and new ones (inserted unless the account already
    /// has one in flight).
    pub changed_top_ups: Vec<TopUpAttempt>,
    pub new_top_ups: Vec<TopUpAttempt>,
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
