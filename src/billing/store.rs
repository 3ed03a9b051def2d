//! Billing's tables (`credit_purchases`, `payment_refund_totals`, `stripe_refunds`,
//! `stripe_disputes`): the only code that reads or writes them. The writer's batch reads and
//! writes them set-wise; listings read them over the pool. Rows leave as domain types.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{
    settlement::{DisputeFact, DisputeHold, RefundFact},
    types::{DisputeStatus, PurchaseStatus, RefundStatus},
};
use crate::{
    db::sql::Sql,
    entities::{credit_purchase, payment_refund_total, stripe_dispute, stripe_refund},
};

/// A purchase: one per Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Purchase {
    pub id: String,
    pub account_id: String,
    pub credit_pack_id: String,
    /// Credits granted on completion.
    pub credits: i64,
    /// Minor units of `currency`: what the session charged.
    pub amount: i64,
    pub currency: String,
    pub amount_refunded: i64,
    pub session_id: String,
    pub payment_intent_id: Option<String>,
    pub checkout_url: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: PurchaseStatus,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub credits_expire_at: Option<DateTime<Utc>>,
}

/// A payment intent's lock row and cumulative charge refund total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaymentRow {
    pub payment_intent_id: String,
    /// The largest cumulative `charge.amount_refunded` seen.
    pub charge_refunded: i64,
    /// Refund and dispute facts recorded; 0 means none to read.
    pub facts: i64,
}

fn purchase(model: credit_purchase::Model) -> Result<Purchase, DbErr> {
    let status = PurchaseStatus::parse(&model.status)
        .ok_or_else(|| DbErr::Type(format!("credit_purchases.status {:?}", model.status)))?;
    Ok(Purchase {
        id: model.id,
        account_id: model.account_id,
        credit_pack_id: model.credit_pack_id,
        credits: model.quantity,
        amount: model.amount,
        currency: model.currency,
        amount_refunded: model.amount_refunded,
        session_id: model.stripe_checkout_session_id,
        payment_intent_id: model.stripe_payment_intent_id,
        checkout_url: model.checkout_url,
        idempotency_key: model.idempotency_key,
        status,
        created_at: model.created_at,
        completed_at: model.completed_at,
        credits_expire_at: model.credits_expire_at,
    })
}

fn purchases(models: Vec<credit_purchase::Model>) -> Result<Vec<Purchase>, DbErr> {
    models.into_iter().map(purchase).collect()
}

/// Purchases of these sessions, as committed now (no lock).
pub(crate) async fn by_sessions<C: ConnectionTrait>(
    db: &C,
    sessions: &[&str],
) -> Result<Vec<Purchase>, DbErr> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    purchases(
        credit_purchase::Entity::find()
            .filter(credit_purchase::Column::StripeCheckoutSessionId.is_in(sessions.iter().copied()))
            .all(db)
            .await?,
    )
}

/// Inserts purchases whose session has none yet; returns the sessions inserted here.
pub(crate) async fn insert<C: ConnectionTrait>(
    db: &C,
    new: &[Purchase],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, DbErr> {
    if new.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sorted: Vec<&Purchase> = new.iter().collect();
    // Stable: of one session's purchases the first stays, as `prepare` expects.
    sorted.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    sorted.dedup_by(|later, first| later.session_id == first.session_id);
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO credit_purchases (id, account_id, credit_pack_id, quantity, amount, currency, amount_refunded, \
         stripe_checkout_session_id, stripe_payment_intent_id, checkout_url, idempotency_key, status, created_at, \
         completed_at, credits_expire_at, updated_at) VALUES ",
    )
    .rows(&sorted, |p| {
        vec![
            p.id.clone().into(),
            p.account_id.clone().into(),
            p.credit_pack_id.clone().into(),
            p.credits.into(),
            p.amount.into(),
            p.currency.clone().into(),
            p.amount_refunded.into(),
            p.session_id.clone().into(),
            p.payment_intent_id.clone().into(),
            p.checkout_url.clone().into(),
            p.idempotency_key.clone().into(),
            p.status.as_str().into(),
            p.created_at.into(),
            p.completed_at.into(),
            p.credits_expire_at.into(),
            now.into(),
        ]
    })
    // Another session clashing, or the same account repeating an idempotency key.
    .push(" ON CONFLICT DO NOTHING RETURNING stripe_checkout_session_id");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "stripe_checkout_session_id"))
        .collect()
}

/// Locks and reads the purchases of these sessions or paid by these payment intents, in
/// session order.
pub(crate) async fn lock<C: ConnectionTrait>(
    db: &C,
    sessions: &[&str],
    intents: &[&str],
) -> Result<Vec<Purchase>, DbErr> {
    if sessions.is_empty() && intents.is_empty() {
        return Ok(Vec::new());
    }
    let mut which = Condition::any();
    if !sessions.is_empty() {
        which = which.add(credit_purchase::Column::StripeCheckoutSessionId.is_in(sessions.iter().copied()));
    }
    if !intents.is_empty() {
        which = which.add(credit_purchase::Column::StripePaymentIntentId.is_in(intents.iter().copied()));
    }
    purchases(
        credit_purchase::Entity::find()
            .filter(which)
            .order_by_asc(credit_purchase::Column::StripeCheckoutSessionId)
            .lock_exclusive()
            .all(db)
            .await?,
    )
}

/// Writes what changed of these purchases (status, amounts, payment intent, times).
pub(crate) async fn update<C: ConnectionTrait>(
    db: &C,
    changed: &[Purchase],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if changed.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("WITH v(id, status, amount, refunded, intent, completed_at, expire_at) AS (VALUES ")
        .rows(changed, |p| {
            vec![
                p.id.clone().into(),
                p.status.as_str().into(),
                p.amount.into(),
                p.amount_refunded.into(),
                p.payment_intent_id.clone().into(),
                p.completed_at.into(),
                p.credits_expire_at.into(),
            ]
        })
        .push(
            ") UPDATE credit_purchases SET status = v.status, amount = v.amount, amount_refunded = v.refunded, \
             stripe_payment_intent_id = v.intent, completed_at = v.completed_at, credits_expire_at = v.expire_at, \
             updated_at = ",
        )
        .param(now)
        .push(" FROM v WHERE credit_purchases.id = v.id");
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Takes the lock row of each payment intent (created empty on first sight), in sorted order:
/// everything that settles one payment runs one at a time.
pub(crate) async fn lock_payments<C: ConnectionTrait>(
    db: &C,
    intents: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<PaymentRow>, DbErr> {
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&str> = intents.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if db.get_database_backend() != DbBackend::Postgres {
        // SQLite's write transaction already excludes every other writer: read the rows only
        // (a missing one reads as empty); `update_payments` creates what a fact needs.
        let found: Vec<(String, i64, i64)> = payment_refund_total::Entity::find()
            .select_only()
            .column(payment_refund_total::Column::PaymentIntentId)
            .column(payment_refund_total::Column::AmountRefunded)
            .column(payment_refund_total::Column::Facts)
            .filter(payment_refund_total::Column::PaymentIntentId.is_in(sorted.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        return Ok(sorted
            .into_iter()
            .map(|pi| {
                let row = found.iter().find(|(id, ..)| id == pi);
                PaymentRow {
                    payment_intent_id: pi.to_owned(),
                    charge_refunded: row.map_or(0, |r| r.1),
                    facts: row.map_or(0, |r| r.2),
                }
            })
            .collect());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO payment_refund_totals (payment_intent_id, amount_refunded, facts, updated_at) VALUES ",
    )
    .rows(&sorted, |pi| {
        vec![(*pi).into(), 0_i64.into(), 0_i64.into(), now.into()]
    })
    // Writing the row even when it exists is what takes its lock.
    .push(
        " ON CONFLICT (payment_intent_id) DO UPDATE SET updated_at = excluded.updated_at \
             RETURNING payment_intent_id, amount_refunded, facts",
    );
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| {
            Ok(PaymentRow {
                payment_intent_id: row.try_get("", "payment_intent_id")?,
                charge_refunded: row.try_get("", "amount_refunded")?,
                facts: row.try_get("", "facts")?,
            })
        })
        .collect()
}

/// Writes each payment's charge refund total and fact count (creating rows SQLite only read).
pub(crate) async fn update_payments<C: ConnectionTrait>(
    db: &C,
    rows: &[PaymentRow],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO payment_refund_totals (payment_intent_id, amount_refunded, facts, updated_at) VALUES ",
    )
    .rows(rows, |p| {
        vec![
            p.payment_intent_id.clone().into(),
            p.charge_refunded.into(),
            p.facts.into(),
            now.into(),
        ]
    })
    .push(
        " ON CONFLICT (payment_intent_id) DO UPDATE SET amount_refunded = excluded.amount_refunded, \
             facts = excluded.facts, updated_at = excluded.updated_at",
    );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// The refunds recorded for these payments.
pub(crate) async fn refunds<C: ConnectionTrait>(
    db: &C,
    intents: &[&str],
) -> Result<Vec<(String, RefundFact)>, DbErr> {
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    Ok(stripe_refund::Entity::find()
        .filter(stripe_refund::Column::PaymentIntentId.is_in(intents.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|r| {
            (
                r.payment_intent_id,
                RefundFact {
                    refund_id: r.id,
                    amount: r.amount,
                    status: RefundStatus::parse(&r.status),
                },
            )
        })
        .collect())
}

/// The disputes recorded for these payments, with what each holds.
pub(crate) async fn disputes<C: ConnectionTrait>(
    db: &C,
    intents: &[&str],
) -> Result<Vec<(String, DisputeFact, DisputeHold)>, DbErr> {
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    stripe_dispute::Entity::find()
        .filter(stripe_dispute::Column::PaymentIntentId.is_in(intents.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|d| {
            let hold = DisputeHold::parse(&d.hold_state, d.held_credits)
                .ok_or_else(|| DbErr::Type(format!("stripe_disputes.hold_state {:?}", d.hold_state)))?;
            Ok((
                d.payment_intent_id,
                DisputeFact {
                    dispute_id: d.id,
                    amount: d.amount,
                    status: DisputeStatus::parse(&d.status),
                },
                hold,
            ))
        })
        .collect()
}

/// Writes refunds as last reported (one row per refund id).
pub(crate) async fn upsert_refunds<C: ConnectionTrait>(
    db: &C,
    refunds: &[(String, RefundFact)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if refunds.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("INSERT INTO stripe_refunds (id, payment_intent_id, amount, status, updated_at) VALUES ")
        .rows(refunds, |(pi, r)| {
            vec![
                r.refund_id.clone().into(),
                pi.clone().into(),
                r.amount.into(),
                r.status.as_str().into(),
                now.into(),
            ]
        })
        .push(
            " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, status = excluded.status, \
             updated_at = excluded.updated_at",
        );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Writes disputes as last reported, with what each holds now.
pub(crate) async fn upsert_disputes<C: ConnectionTrait>(
    db: &C,
    disputes: &[(String, DisputeFact, DisputeHold)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if disputes.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO stripe_disputes (id, payment_intent_id, amount, status, hold_state, held_credits, updated_at) \
         VALUES ",
    )
    .rows(disputes, |(pi, d, hold)| {
        vec![
            d.dispute_id.clone().into(),
            pi.clone().into(),
            d.amount.into(),
            d.status.as_str().into(),
            hold.state().as_str().into(),
            hold.credits().into(),
            now.into(),
        ]
    })
    .push(
        " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, status = excluded.status, \
         hold_state = excluded.hold_state, held_credits = excluded.held_credits, updated_at = excluded.updated_at",
    );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// A purchase by its session (over the pool).
pub(crate) async fn by_session<C: ConnectionTrait>(db: &C, session: &str) -> Result<Option<Purchase>, DbErr> {
    Ok(by_sessions(db, &[session]).await?.into_iter().next())
}

/// The purchase an account opened with an idempotency key.
pub(crate) async fn by_idempotency_key<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    key: &str,
) -> Result<Option<Purchase>, DbErr> {
    credit_purchase::Entity::find()
        .filter(credit_purchase::Column::AccountId.eq(account_id))
        .filter(credit_purchase::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .map(purchase)
        .transpose()
}

/// One page of an account's purchases, newest first, strictly older than the cursor id.
pub(crate) async fn page<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Purchase>, DbErr> {
    let mut query = credit_purchase::Entity::find().filter(credit_purchase::Column::AccountId.eq(account_id));
    if let Some(after) = after {
        query = query.filter(credit_purchase::Column::Id.lt(after));
    }
    purchases(
        query
            .order_by_desc(credit_purchase::Column::Id)
            .limit(limit)
            .all(db)
            .await?,
    )
}
