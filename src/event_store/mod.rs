//! The Stripe event store: every verified event with its raw payload and outcome. Claims and
//! finishes run inside the ledger writer's transaction (exactly once per event id); listing,
//! replay lookups and pruning serve operators.

pub(crate) mod outcome;
pub(crate) mod store;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

pub(crate) use outcome::{Delivery, EventOutcome};

/// The event store as operators read it: listings, one event for replay, retention.
#[derive(Clone)]
pub(crate) struct EventLog {
    db: DatabaseConnection,
}

impl EventLog {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Stored events, newest first, optionally of one outcome and received since a time.
    pub(crate) async fn list(
        &self,
        outcome: Option<EventOutcome>,
        since: Option<DateTime<Utc>>,
        limit: u64,
    ) -> Result<Vec<StoredEvent>, DbErr> {
        store::list(&self.db, outcome, since, limit).await
    }

    pub(crate) async fn find(&self, id: &str) -> Result<Option<StoredEvent>, DbErr> {
        store::find(&self.db, id).await
    }

    /// Deletes processed events older than `days`, keeping the ones an operator may replay.
    pub(crate) async fn prune(&self, days: u32) -> Result<u64, DbErr> {
        store::prune(&self.db, days).await
    }
}

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub checkout_session_id: Option<String>,
    /// The exact body Stripe sent, for replay.
    pub payload: String,
    pub outcome: EventOutcome,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}
