//! What a batch writes beyond balances: account settings, top-up attempts and account events
//! (`accounts` settings columns, `top_up_attempts`, `account_events`), plus the reads of both
//! tables the ledger's readers and the top-up worker need.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::bad;
use crate::{
    db::sql::Sql,
    entities::{account_event, top_up_attempt},
    ledger::{
        book::{AccountState, TopUpAttempt},
        kinds::{EventType, TopUpState},
        outbox::NewEvent,
    },
};

/// Writes the settings of accounts whose owners changed them.
pub(crate) async fn update_settings<C: ConnectionTrait>(
    db: &C,
    accounts: &[AccountState],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if accounts.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "WITH v(id, low, overdraft, customer, method, enabled, threshold, pack, monthly, paused) AS (VALUES ",
    )
    .rows(accounts, |a| {
        let s = &a.settings;
        vec![
            a.id.clone().into(),
            s.low_balance_threshold.into(),
            s.overdraft_limit.into(),
            s.stripe_customer_id.clone().into(),
            s.payment_method_id.clone().into(),
            s.auto_top_up.enabled.into(),
            s.auto_top_up.threshold.into(),
            s.auto_top_up.pack_id.clone().into(),
            s.auto_top_up.monthly_limit.into(),
            s.auto_top_up.paused.clone().into(),
        ]
    })
    .push(
        ") UPDATE accounts SET low_balance_threshold = v.low, overdraft_limit = v.overdraft, \
         stripe_customer_id = v.customer, payment_method_id = v.method, auto_top_up_enabled = v.enabled, \
         auto_top_up_threshold = v.threshold, auto_top_up_pack_id = v.pack, \
         auto_top_up_monthly_limit = v.monthly, auto_top_up_paused = v.paused, updated_at = ",
    )
    .param(now)
    .push(" FROM v WHERE accounts.id = v.id");
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// The attempts with these ids.
pub(crate) async fn top_ups<C: ConnectionTrait>(db: &C, ids: &[&str]) -> Result<Vec<TopUpAttempt>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    top_up_attempt::Entity::find()
        .filter(top_up_attempt::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(top_up)
        .collect()
}

/// Attempts in flight whose next step is due, oldest first (for the top-up worker).
pub(crate) async fn due_top_ups<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<TopUpAttempt>, DbErr> {
    top_up_attempt::Entity::find()
        .filter(top_up_attempt::Column::State.is_in([
            TopUpState::Pending.as_str(),
            TopUpState::Charging.as_str(),
            TopUpState::Unknown.as_str(),
            TopUpState::AwaitingPayment.as_str(),
        ]))
        .filter(top_up_attempt::Column::NextActionAt.lte(now))
        .order_by_asc(top_up_attempt::Column::NextActionAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(top_up)
        .collect()
}

/// An account's attempts, newest first.
pub(crate) async fn account_top_ups<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    limit: u64,
) -> Result<Vec<TopUpAttempt>, DbErr> {
    top_up_attempt::Entity::find()
        .filter(top_up_attempt::Column::AccountId.eq(account_id))
        .order_by_desc(top_up_attempt::Column::CreatedAt)
        .order_by_desc(top_up_attempt::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(top_up)
        .collect()
}

/// What an account's top-ups may have charged since `since` (minor units): every attempt that
/// asked Stripe for money and was not declined or abandoned.
pub(crate) async fn charged_since<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    since: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM top_up_attempts WHERE account_id = ",
    )
    .param(account_id)
    .push(" AND created_at >= ")
    .param(since)
    .push(" AND state IN (")
    .list([
        TopUpState::Charging.as_str(),
        TopUpState::Unknown.as_str(),
        TopUpState::AwaitingPayment.as_str(),
        TopUpState::Succeeded.as_str(),
    ])
    .push(")");
    let row = db.query_one_raw(sql.build()).await?;
    row.map_or(Ok(0), |row| row.try_get("", "total"))
}

/// Writes the state of changed attempts.
pub(crate) async fn update_top_ups<C: ConnectionTrait>(
    db: &C,
    attempts: &[TopUpAttempt],
) -> Result<(), DbErr> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, state, intent, amount, currency, credits, error, unknown_since, next_at, updated_at) AS (VALUES ")
        .rows(attempts, |a| {
            vec![
                a.id.clone().into(),
                a.state.as_str().into(),
                a.payment_intent_id.clone().into(),
                a.amount.into(),
                a.currency.clone().into(),
                a.credits.into(),
                a.error.clone().into(),
                a.unknown_since.into(),
                a.next_action_at.into(),
                a.updated_at.into(),
            ]
        })
        .push(
            ") UPDATE top_up_attempts SET state = v.state, payment_intent_id = v.intent, amount = v.amount, \
             currency = v.currency, credits = v.credits, error = v.error, unknown_since = v.unknown_since, \
             next_action_at = v.next_at, updated_at = v.updated_at FROM v WHERE top_up_attempts.id = v.id",
        );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Inserts new attempts, except for accounts that already have one in flight (the partial
/// unique index refuses those); returns the ids inserted.
pub(crate) async fn insert_top_ups<C: ConnectionTrait>(
    db: &C,
    attempts: &[TopUpAttempt],
) -> Result<Vec<String>, DbErr> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO top_up_attempts (id, account_id, pack_id, number, state, payment_intent_id, amount, \
         currency, credits, error, next_action_at, created_at, updated_at) VALUES ",
    )
    .rows(attempts, |a| {
        vec![
            a.id.clone().into(),
            a.account_id.clone().into(),
            a.pack_id.clone().into(),
            a.number.into(),
            a.state.as_str().into(),
            a.payment_intent_id.clone().into(),
            a.amount.into(),
            a.currency.clone().into(),
            a.credits.into(),
            a.error.clone().into(),
            a.next_action_at.into(),
            a.created_at.into(),
            a.updated_at.into(),
        ]
    })
    .push(" ON CONFLICT DO NOTHING RETURNING id");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter().map(|row| row.try_get::<String>("", "id")).collect()
}

/// Appends events. On PostgreSQL the batch first takes a transaction-level lock that every
/// event writer takes, so events commit in `sequence` order and a reader that has seen
/// sequence `n` will never see a smaller one commit later. SQLite has one writer anyway.
pub(crate) async fn insert_events<C: ConnectionTrait>(db: &C, events: &[NewEvent]) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    if backend == DbBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENTS_LOCK})"))
            .await?;
    }
    let mut sql = Sql::new(backend);
    sql.push(
        "INSERT INTO account_events (id, account_id, type, balance_after, available_after, entry_id, payload, \
         created_at, delivery_attempts, next_delivery_at) VALUES ",
    )
    .rows(events, |e| {
        vec![
            e.id.clone().into(),
            e.account_id.clone().into(),
            e.kind.as_str().into(),
            e.balance_after.into(),
            e.available_after.into(),
            e.entry_id.into(),
            e.payload.to_string().into(),
            e.created_at.into(),
            0_i32.into(),
            e.created_at.into(),
        ]
    });
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// The advisory lock key event writers share ("credits" in ASCII, as a number).
const EVENTS_LOCK: i64 = 0x0063_7265_6469_7473;

/// A stored account event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEvent {
    pub sequence: i64,
    pub id: String,
    pub account_id: String,
    pub kind: EventType,
    pub balance_after: i64,
    pub available_after: i64,
    pub entry_id: Option<i64>,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Events after `after` (a sequence), oldest first, for one account or all.
pub(crate) async fn events_after<C: ConnectionTrait>(
    db: &C,
    account_id: Option<&str>,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let mut query = account_event::Entity::find().filter(account_event::Column::Sequence.gt(after));
    if let Some(account_id) = account_id {
        query = query.filter(account_event::Column::AccountId.eq(account_id));
    }
    query
        .order_by_asc(account_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(stored_event)
        .collect()
}

pub(crate) fn stored_event(model: account_event::Model) -> Result<StoredEvent, DbErr> {
    Ok(StoredEvent {
        kind: EventType::parse(&model.r#type).ok_or_else(|| bad("account_events.type", &model.r#type))?,
        sequence: model.sequence,
        id: model.id,
        account_id: model.account_id,
        balance_after: model.balance_after,
        available_after: model.available_after,
        entry_id: model.entry_id,
        payload: model.payload,
        created_at: model.created_at,
    })
}

fn top_up(model: top_up_attempt::Model) -> Result<TopUpAttempt, DbErr> {
    Ok(TopUpAttempt {
        state: TopUpState::parse(&model.state).ok_or_else(|| bad("top_up_attempts.state", &model.state))?,
        id: model.id,
        account_id: model.account_id,
        pack_id: model.pack_id,
        number: model.number,
        payment_intent_id: model.payment_intent_id,
        amount: model.amount,
        currency: model.currency,
        credits: model.credits,
        error: model.error,
        unknown_since: model.unknown_since,
        next_action_at: model.next_action_at,
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}
