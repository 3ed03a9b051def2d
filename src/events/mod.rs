//! The Stripe event store: every verified event with its raw payload and outcome. Claims and
//! finishes run inside the ledger writer's transaction (exactly once per event id); listing,
//! replay lookups and pruning serve operators.

pub mod outcome;
pub mod store;

use chrono::{DateTime, Utc};

pub use outcome::{Delivery, EventOutcome};

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
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
