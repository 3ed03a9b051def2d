//! The `stripe_events` table: the only code that reads or writes it. Claims and finishes are
//! set-wise, one statement for a whole batch of the writer; rows leave as `StoredEvent`s.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
};

use super::{Delivery, EventOutcome, StoredEvent};
use crate::{db::sql::Sql, entities::stripe_event};

/// A verified event as it is first stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub checkout_session_id: Option<&'a str>,
    /// The exact body Stripe sent.
    pub payload: &'a str,
}

/// How one claimed event ended.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub id: String,
    pub outcome: EventOutcome,
    pub error: Option<String>,
}

fn stored(model: stripe_event::Model) -> Result<StoredEvent, DbErr> {
    let outcome = EventOutcome::parse(&model.outcome)
        .ok_or_else(|| DbErr::Type(format!("stripe_events.outcome {:?} is no outcome", model.outcome)))?;
    Ok(StoredEvent {
        id: model.id,
        event_type: model.event_type,
        checkout_session_id: model.checkout_session_id,
        payload: model.payload,
        outcome,
        error: model.error,
        received_at: model.received_at,
        processed_at: model.processed_at,
    })
}

/// Claims events in one statement: new ones are inserted as `processing`, stored ones are taken
/// over only when `delivery` may retry their outcome. Returns the ids claimed here; the others
/// belong to another delivery (a duplicate). Ids are claimed in sorted order, so two writers
/// claiming overlapping batches wait for each other instead of deadlocking.
pub(crate) async fn claim<C: ConnectionTrait>(
    db: &C,
    delivery: Delivery,
    events: &[NewEvent<'_>],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, DbErr> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sorted: Vec<&NewEvent<'_>> = events.iter().collect();
    sorted.sort_by_key(|e| e.id);
    sorted.dedup_by_key(|e| e.id);
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO stripe_events (id, event_type, checkout_session_id, payload, outcome, error, \
         received_at, processed_at) VALUES ",
    )
    .rows(&sorted, |e| {
        vec![
            e.id.into(),
            e.event_type.into(),
            e.checkout_session_id.map(str::to_owned).into(),
            e.payload.into(),
            EventOutcome::Processing.as_str().into(),
            Value::String(None),
            now.into(),
            Value::ChronoDateTimeUtc(None),
        ]
    });
    let retryable = delivery.reclaimable();
    if retryable.is_empty() {
        sql.push(" ON CONFLICT (id) DO NOTHING");
    } else {
        sql.push(" ON CONFLICT (id) DO UPDATE SET outcome = ")
            .param(EventOutcome::Processing.as_str())
            .push(", error = NULL WHERE stripe_events.outcome IN (")
            .list(retryable)
            .push(")");
    }
    sql.push(" RETURNING id");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter().map(|row| row.try_get::<String>("", "id")).collect()
}

/// Writes how each claimed event ended, in one statement.
pub(crate) async fn finish<C: ConnectionTrait>(
    db: &C,
    finished: &[Finished],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if finished.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, outcome, error) AS (VALUES ")
        .rows(finished, |f| {
            vec![
                f.id.clone().into(),
                f.outcome.as_str().into(),
                f.error.clone().into(),
            ]
        })
        .push(") UPDATE stripe_events SET outcome = v.outcome, error = v.error, processed_at = ")
        .param(now)
        .push(" FROM v WHERE stripe_events.id = v.id");
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// The stored outcome of each of these events that exists.
pub(crate) async fn outcomes<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
) -> Result<HashMap<String, EventOutcome>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = stripe_event::Entity::find()
        .select_only()
        .column(stripe_event::Column::Id)
        .column(stripe_event::Column::Outcome)
        .filter(stripe_event::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, outcome)| EventOutcome::parse(&outcome).map(|o| (id, o)))
        .collect())
}

/// Stored events, newest first, optionally of one outcome and received since a time.
pub(crate) async fn list<C: ConnectionTrait>(
    db: &C,
    outcome: Option<EventOutcome>,
    since: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let mut query = stripe_event::Entity::find();
    if let Some(outcome) = outcome {
        query = query.filter(stripe_event::Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(since) = since {
        query = query.filter(stripe_event::Column::ReceivedAt.gte(since));
    }
    query
        .order_by_desc(stripe_event::Column::ReceivedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(stored)
        .collect()
}

pub(crate) async fn find<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<StoredEvent>, DbErr> {
    stripe_event::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(stored)
        .transpose()
}

/// Deletes processed events older than `days`, keeping the ones an operator may replay.
pub(crate) async fn prune<C: ConnectionTrait>(db: &C, days: u32) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let keep = [
        EventOutcome::UnmatchedAccount.as_str(),
        EventOutcome::UnmatchedPack.as_str(),
        EventOutcome::Failed.as_str(),
        EventOutcome::AwaitingPurchase.as_str(),
    ];
    let result = stripe_event::Entity::delete_many()
        .filter(stripe_event::Column::ReceivedAt.lt(cutoff))
        .filter(stripe_event::Column::ProcessedAt.is_not_null())
        .filter(stripe_event::Column::Outcome.is_not_in(keep))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
