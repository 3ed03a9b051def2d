//! Outbound webhooks of account events: each event is POSTed, signed, to `NOTIFY_WEBHOOK_URL`,
//! at least once (receivers dedupe by its stable id) and in order per account (an account's
//! later events wait while an earlier one is neither delivered nor given up); accounts proceed
//! independently. The delivery state lives on the `account_events` rows themselves.
//!
//! - `worker`: the delivery passes `serve` runs (one replica at a time, outside the writer).
//! - `client`: the HTTP client, with its deadline; `body`: the JSON of one event;
//!   `signature`: `Credits-Signature`; `backoff`: when to retry and when to give up.
//! - `store`: the delivery queries on `account_events`, and their retention.
//!
//! `Notifications` is what operators (the CLI) and the scheduler's retention job use.

pub(crate) mod backoff;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod signature;
pub(crate) mod store;
pub(crate) mod worker;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

pub(crate) use worker::Notifier;

use crate::ledger::kinds::EventType;

/// Why a notification query failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("database")]
    Database(#[from] DbErr),
}

/// Where an event's delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Failed at least once; tried again at `next_at`.
    Retrying,
    /// A receiver answered 2xx.
    Delivered,
    /// Failed past `NOTIFY_GIVE_UP_AFTER`; `credits notifications retry` sends it again.
    GivenUp,
}

impl DeliveryState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::GivenUp => "given_up",
        }
    }
}

/// Which events a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFilter {
    /// Neither delivered nor given up (pending and retrying).
    Pending,
    /// Given up.
    Failed,
    All,
}

/// The delivery columns of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub attempts: i32,
    pub next_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub given_up_at: Option<DateTime<Utc>>,
}

/// An account event with the state of its delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Notification {
    pub sequence: i64,
    pub id: String,
    pub account_id: String,
    pub kind: EventType,
    pub balance_after: i64,
    pub available_after: i64,
    pub entry_id: Option<i64>,
    /// A JSON object, as stored.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub delivery: Delivery,
}

impl Notification {
    pub(crate) fn state(&self) -> DeliveryState {
        let d = &self.delivery;
        if d.delivered_at.is_some() {
            DeliveryState::Delivered
        } else if d.given_up_at.is_some() {
            DeliveryState::GivenUp
        } else if d.attempts > 0 {
            DeliveryState::Retrying
        } else {
            DeliveryState::Pending
        }
    }
}

/// What `retry` did with the ids it was given.
#[derive(Debug, Default)]
pub(crate) struct RetryReport {
    /// Queued for delivery now.
    pub queued: Vec<String>,
    /// Already delivered: left alone.
    pub delivered: Vec<String>,
    /// No such event (or pruned).
    pub missing: Vec<String>,
}

/// The events still to deliver.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Backlog {
    /// Neither delivered nor given up.
    pub count: u64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// Account event deliveries as operators and periodic jobs see them, over the read pool.
#[derive(Clone)]
pub(crate) struct Notifications {
    db: DatabaseConnection,
}

impl Notifications {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Up to `limit` events, newest first, by delivery state and optionally of one account.
    pub(crate) async fn list(
        &self,
        filter: ListFilter,
        account_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Notification>, NotifyError> {
        Ok(store::list(&self.db, filter, account_id, limit).await?)
    }

    /// Queues these events for delivery now, given up or not (delivered ones are left alone).
    pub(crate) async fn retry(&self, ids: &[String]) -> Result<RetryReport, NotifyError> {
        let found = store::by_ids(&self.db, ids).await?;
        let mut report = RetryReport::default();
        let mut queue = Vec::new();
        for id in ids {
            match found.iter().find(|n| &n.id == id) {
                None => report.missing.push(id.clone()),
                Some(n) if n.state() == DeliveryState::Delivered => report.delivered.push(id.clone()),
                Some(n) => queue.push(n.sequence),
            }
        }
        let queued = store::requeue(&self.db, &queue, Utc::now()).await?;
        report.queued = found
            .into_iter()
            .filter(|n| queued.contains(&n.sequence))
            .map(|n| n.id)
            .collect();
        Ok(report)
    }

    /// Queues every given-up event for delivery now; returns how many.
    pub(crate) async fn retry_given_up(&self) -> Result<u64, NotifyError> {
        Ok(store::requeue_given_up(&self.db, Utc::now()).await?)
    }

    /// Deletes events older than `days`; with `keep_pending` (a webhook is configured), not
    /// those still waiting for their delivery.
    pub(crate) async fn prune(&self, days: u32, keep_pending: bool) -> Result<u64, NotifyError> {
        let before = Utc::now() - chrono::Duration::days(i64::from(days));
        Ok(store::prune(&self.db, before, keep_pending).await?)
    }
}
