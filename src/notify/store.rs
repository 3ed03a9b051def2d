//! The delivery side of `account_events` (the ledger's store inserts the rows): which events are
//! due, recording each attempt, the operators' listings and requeues, and retention. Rows leave
//! as `Notification`s. A pending event is one neither delivered nor given up; the partial index
//! `idx_account_events_undelivered (account_id, sequence)` holds exactly those.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{Backlog, Delivery, ListFilter, Notification};
use crate::{db::sql::Sql, entities::account_event, ledger::kinds::EventType};

fn notification(model: account_event::Model) -> Result<Notification, DbErr> {
    let kind = EventType::parse(&model.r#type).ok_or_else(|| {
        DbErr::Type(format!(
            "account_events.type: unreadable stored value {:?}",
            model.r#type
        ))
    })?;
    Ok(Notification {
        sequence: model.sequence,
        id: model.id,
        account_id: model.account_id,
        kind,
        balance_after: model.balance_after,
        available_after: model.available_after,
        entry_id: model.entry_id,
        payload: model.payload,
        created_at: model.created_at,
        delivery: Delivery {
            attempts: model.delivery_attempts,
            next_at: model.next_delivery_at,
            last_error: model.last_delivery_error,
            delivered_at: model.delivered_at,
            given_up_at: model.delivery_given_up_at,
        },
    })
}

fn all(models: Vec<account_event::Model>) -> Result<Vec<Notification>, DbErr> {
    models.into_iter().map(notification).collect()
}

fn pending() -> Condition {
    Condition::all()
        .add(account_event::Column::DeliveredAt.is_null())
        .add(account_event::Column::DeliveryGivenUpAt.is_null())
}

/// `FROM account_events e WHERE e is pending and no earlier event of its account is`: the head
/// of each account's queue.
const HEADS: &str = "FROM account_events e WHERE e.delivered_at IS NULL AND e.delivery_given_up_at IS NULL \
     AND NOT EXISTS (SELECT 1 FROM account_events p WHERE p.account_id = e.account_id \
     AND p.sequence < e.sequence AND p.delivered_at IS NULL AND p.delivery_given_up_at IS NULL)";

/// The first pending event of each account whose attempt is due at `now`, oldest first.
pub(crate) async fn due_heads<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT e.* ")
        .push(HEADS)
        // Rows always get one on insert; a missing one is due rather than stuck.
        .push(" AND (e.next_delivery_at IS NULL OR e.next_delivery_at <= ")
        .param(now)
        .push(") ORDER BY e.sequence LIMIT ")
        .param(i64::try_from(limit).unwrap_or(i64::MAX));
    all(account_event::Entity::find()
        .from_raw_sql(sql.build())
        .all(db)
        .await?)
}

/// When the next attempt of any account's first pending event falls due.
pub(crate) async fn next_due<C: ConnectionTrait>(db: &C) -> Result<Option<DateTime<Utc>>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT e.* ")
        .push(HEADS)
        .push(" ORDER BY e.next_delivery_at LIMIT 1");
    let head = account_event::Entity::find()
        .from_raw_sql(sql.build())
        .one(db)
        .await?;
    Ok(head.and_then(|h| h.next_delivery_at))
}

/// An account's pending events after `after` (a sequence), oldest first.
pub(crate) async fn pending_after<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    all(account_event::Entity::find()
        .filter(pending())
        .filter(account_event::Column::AccountId.eq(account_id))
        .filter(account_event::Column::Sequence.gt(after))
        .order_by_asc(account_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?)
}

/// Records a 2xx answer; false when the event was no longer pending (pruned or delivered).
pub(crate) async fn mark_delivered<C: ConnectionTrait>(
    db: &C,
    sequence: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let done = account_event::Entity::update_many()
        .col_expr(account_event::Column::DeliveredAt, Expr::value(now))
        .col_expr(
            account_event::Column::DeliveryAttempts,
            Expr::col(account_event::Column::DeliveryAttempts).add(1),
        )
        .filter(account_event::Column::Sequence.eq(sequence))
        .filter(account_event::Column::DeliveredAt.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// A failed attempt: why, and either when the next one is due or when it was given up.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub error: String,
    pub next_at: DateTime<Utc>,
    pub given_up_at: Option<DateTime<Utc>>,
}

/// Records a failed attempt; false when the event was no longer pending.
pub(crate) async fn mark_failed<C: ConnectionTrait>(
    db: &C,
    sequence: i64,
    failure: &Failure,
) -> Result<bool, DbErr> {
    let done = account_event::Entity::update_many()
        .col_expr(
            account_event::Column::DeliveryAttempts,
            Expr::col(account_event::Column::DeliveryAttempts).add(1),
        )
        .col_expr(
            account_event::Column::LastDeliveryError,
            Expr::value(failure.error.clone()),
        )
        .col_expr(
            account_event::Column::NextDeliveryAt,
            Expr::value(failure.next_at),
        )
        .col_expr(
            account_event::Column::DeliveryGivenUpAt,
            Expr::value(failure.given_up_at),
        )
        .filter(account_event::Column::Sequence.eq(sequence))
        .filter(pending())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Events by state, newest first.
pub(crate) async fn list<C: ConnectionTrait>(
    db: &C,
    filter: ListFilter,
    account_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let mut query = account_event::Entity::find();
    query = match filter {
        ListFilter::Pending => query.filter(pending()),
        ListFilter::Failed => query
            .filter(account_event::Column::DeliveredAt.is_null())
            .filter(account_event::Column::DeliveryGivenUpAt.is_not_null()),
        ListFilter::All => query,
    };
    if let Some(account_id) = account_id {
        query = query.filter(account_event::Column::AccountId.eq(account_id));
    }
    all(query
        .order_by_desc(account_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?)
}

/// The events with these ids.
pub(crate) async fn by_ids<C: ConnectionTrait>(db: &C, ids: &[String]) -> Result<Vec<Notification>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    all(account_event::Entity::find()
        .filter(account_event::Column::Id.is_in(ids.iter().map(String::as_str)))
        .all(db)
        .await?)
}

/// Makes undelivered events (given up or not) due at `now` again; returns the sequences changed.
pub(crate) async fn requeue<C: ConnectionTrait>(
    db: &C,
    sequences: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("UPDATE account_events SET delivery_given_up_at = NULL, next_delivery_at = ")
        .param(now)
        .push(" WHERE delivered_at IS NULL AND sequence IN (")
        .list(sequences.iter().copied())
        .push(") RETURNING sequence");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| row.try_get::<i64>("", "sequence"))
        .collect()
}

/// Makes every given-up event due at `now` again; returns how many.
pub(crate) async fn requeue_given_up<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let done = account_event::Entity::update_many()
        .col_expr(
            account_event::Column::DeliveryGivenUpAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(account_event::Column::NextDeliveryAt, Expr::value(now))
        .filter(account_event::Column::DeliveredAt.is_null())
        .filter(account_event::Column::DeliveryGivenUpAt.is_not_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Deletes events created before `before`; with `keep_pending`, not the pending ones.
pub(crate) async fn prune<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    keep_pending: bool,
) -> Result<u64, DbErr> {
    let mut delete = account_event::Entity::delete_many().filter(account_event::Column::CreatedAt.lt(before));
    if keep_pending {
        delete = delete.filter(
            Condition::any()
                .add(account_event::Column::DeliveredAt.is_not_null())
                .add(account_event::Column::DeliveryGivenUpAt.is_not_null()),
        );
    }
    Ok(delete.exec(db).await?.rows_affected)
}

/// How many events are pending, and when the oldest was written.
pub(crate) async fn backlog<C: ConnectionTrait>(db: &C) -> Result<Backlog, DbErr> {
    let count = account_event::Entity::find().filter(pending()).count(db).await?;
    let oldest = account_event::Entity::find()
        .filter(pending())
        .order_by_asc(account_event::Column::Sequence)
        .one(db)
        .await?
        .map(|e| e.created_at);
    Ok(Backlog { count, oldest })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use sea_orm::{Database, DatabaseConnection};

    use super::*;
    use crate::ledger::{outbox::NewEvent, store::outbox::insert_events};

    async fn database(dir: &tempfile::TempDir) -> DatabaseConnection {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("notify.db").display());
        let db = Database::connect(&url).await.expect("open SQLite");
        crate::db::migrate(&db).await.expect("migrate");
        db
    }

    async fn insert(db: &DatabaseConnection, events: &[(&str, &str, DateTime<Utc>)]) {
        let rows: Vec<NewEvent> = events
            .iter()
            .map(|(id, account, at)| NewEvent {
                id: (*id).to_owned(),
                account_id: (*account).to_owned(),
                kind: EventType::CreditsGranted,
                balance_after: 1,
                available_after: 1,
                entry_id: None,
                payload: serde_json::json!({}),
                created_at: *at,
            })
            .collect();
        insert_events(db, &rows).await.expect("insert events");
    }

    fn ids(events: &[Notification]) -> Vec<&str> {
        events.iter().map(|e| e.id.as_str()).collect()
    }

    fn sequence_of(events: &[Notification], id: &str) -> i64 {
        events
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.sequence)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_account_s_later_events_wait_while_an_earlier_one_is_pending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = database(&dir).await;
        let now = Utc::now();
        let then = now - Duration::minutes(1);
        insert(&db, &[("a1", "a", then), ("a2", "a", then), ("b1", "b", then)]).await;
        let heads = due_heads(&db, now, 10).await.expect("heads");
        assert_eq!(ids(&heads), ["a1", "b1"]);
        let a1 = sequence_of(&heads, "a1");

        let later = now + Duration::seconds(30);
        let failure = Failure {
            error: "HTTP 500".into(),
            next_at: later,
            given_up_at: None,
        };
        assert!(mark_failed(&db, a1, &failure).await.expect("record"));
        assert_eq!(ids(&due_heads(&db, now, 10).await.expect("heads")), ["b1"]);
        assert_eq!(
            next_due(&db).await.expect("next").map(|t| t.timestamp()),
            Some(then.timestamp())
        );
        let b1 = sequence_of(&heads, "b1");
        assert!(mark_delivered(&db, b1, now).await.expect("record"));
        assert!(!mark_delivered(&db, b1, now).await.expect("record"), "once");
        assert_eq!(
            next_due(&db).await.expect("next").map(|t| t.timestamp()),
            Some(later.timestamp())
        );

        let given_up = Failure {
            given_up_at: Some(now),
            ..failure
        };
        assert!(mark_failed(&db, a1, &given_up).await.expect("record"));
        assert_eq!(ids(&due_heads(&db, now, 10).await.expect("heads")), ["a2"]);
        let failed = list(&db, ListFilter::Failed, None, 10).await.expect("list");
        assert_eq!(ids(&failed), ["a1"]);
        assert_eq!(failed[0].delivery.attempts, 2);

        assert_eq!(requeue_given_up(&db, now).await.expect("requeue"), 1);
        assert_eq!(ids(&due_heads(&db, now, 10).await.expect("heads")), ["a1"]);
        let backlog = backlog(&db).await.expect("backlog");
        assert_eq!(backlog.count, 2);
    }

    #[tokio::test]
    async fn retention_keeps_undelivered_events_only_while_a_webhook_is_configured() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = database(&dir).await;
        let now = Utc::now();
        let old = now - Duration::days(40);
        insert(
            &db,
            &[
                ("old-delivered", "a", old),
                ("old-given-up", "b", old),
                ("old-pending", "c", old),
                ("new", "c", now),
            ],
        )
        .await;
        let all = list(&db, ListFilter::All, None, 10).await.expect("list");
        mark_delivered(&db, sequence_of(&all, "old-delivered"), now)
            .await
            .expect("record");
        let failure = Failure {
            error: "HTTP 500".into(),
            next_at: now,
            given_up_at: Some(now),
        };
        mark_failed(&db, sequence_of(&all, "old-given-up"), &failure)
            .await
            .expect("record");

        let cutoff = now - Duration::days(30);
        assert_eq!(prune(&db, cutoff, true).await.expect("prune"), 2);
        let left = list(&db, ListFilter::All, None, 10).await.expect("list");
        assert_eq!(ids(&left), ["new", "old-pending"]);
        assert_eq!(prune(&db, cutoff, false).await.expect("prune"), 1);
        assert_eq!(
            ids(&list(&db, ListFilter::All, None, 10).await.expect("list")),
            ["new"]
        );
    }
}
