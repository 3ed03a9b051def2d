//! The event store as operators see it: listing stored Stripe events.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{LedgerError, fulfilment::EventOutcome};
use crate::entities::stripe_event;

/// Stored events, newest first, optionally of one outcome and received since a time.
pub async fn list_events<C: ConnectionTrait>(
    db: &C,
    outcome: Option<EventOutcome>,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<stripe_event::Model>, LedgerError> {
    let mut query = stripe_event::Entity::find();
    if let Some(outcome) = outcome {
        query = query.filter(stripe_event::Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = since {
        query = query.filter(stripe_event::Column::ReceivedAt.gte(since));
    }
    Ok(query
        .order_by_desc(stripe_event::Column::ReceivedAt)
        .limit(limit)
        .all(db)
        .await?)
}

pub async fn find_event<C: ConnectionTrait>(db: &C, id: &str) -> Result<stripe_event::Model, LedgerError> {
    stripe_event::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| LedgerError::NotFound(format!("stripe event {id}")))
}
