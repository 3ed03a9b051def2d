//! `subscriptions` and `subscription_invoices`: the only code that reads or writes them. The
//! writer's batch locks and writes them set-wise; GetSubscription and ListSubscriptions read
//! them over the pool. Rows leave as domain types.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};

use super::types::{InvoiceStatus, Subscription, SubscriptionInvoice, SubscriptionStatus};
use crate::entities::{subscription, subscription_invoice};

fn subscription(model: subscription::Model) -> Subscription {
    Subscription {
        status: SubscriptionStatus::parse(&model.status),
        id: model.id,
        account_id: model.account_id,
        plan_id: model.plan_id,
        customer_id: model.stripe_customer_id,
        current_period_start: model.current_period_start,
        current_period_end: model.current_period_end,
        cancel_at_period_end: model.cancel_at_period_end,
        canceled_at: model.canceled_at,
        state_version: model.state_version,
        created_at: model.created_at,
    }
}

fn invoice(model: subscription_invoice::Model) -> Result<SubscriptionInvoice, DbErr> {
    let status = InvoiceStatus::parse(&model.status)
        .ok_or_else(|| DbErr::Type(format!("subscription_invoices.status {:?}", model.status)))?;
    Ok(SubscriptionInvoice {
        id: model.id,
        subscription_id: model.subscription_id,
        account_id: model.account_id,
        plan_id: model.plan_id,
        billing_reason: model.billing_reason,
        period_start: model.period_start,
        period_end: model.period_end,
        amount_paid: model.amount_paid,
        currency: model.currency,
        amount_refunded: model.amount_refunded,
        credits: model.credits,
        payment_intent_id: model.stripe_payment_intent_id,
        lot_id: model.lot_id,
        status,
        created_at: model.created_at,
    })
}

fn subscription_model(s: &Subscription, now: DateTime<Utc>) -> subscription::ActiveModel {
    subscription::ActiveModel {
        id: Set(s.id.clone()),
        account_id: Set(s.account_id.clone()),
        plan_id: Set(s.plan_id.clone()),
        stripe_customer_id: Set(s.customer_id.clone()),
        status: Set(s.status.as_str().to_owned()),
        current_period_start: Set(s.current_period_start),
        current_period_end: Set(s.current_period_end),
        cancel_at_period_end: Set(s.cancel_at_period_end),
        canceled_at: Set(s.canceled_at),
        state_version: Set(s.state_version),
        created_at: Set(s.created_at),
        updated_at: Set(now),
    }
}

/// Locks these subscriptions, inserting the ones no row holds yet as given (a stored row is
/// kept as it is): one statement, in id order, so every subscription a batch names has a row
/// and is locked. Returns the rows as stored.
pub(crate) async fn lock_or_open<C: ConnectionTrait>(
    db: &C,
    rows: &[Subscription],
    now: DateTime<Utc>,
) -> Result<Vec<Subscription>, DbErr> {
    let mut sorted: Vec<&Subscription> = rows.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted.dedup_by(|later, first| later.id == first.id);
    if sorted.is_empty() {
        return Ok(Vec::new());
    }
    // Writing a stored row (its `updated_at` only) is what takes its lock.
    Ok(
        subscription::Entity::insert_many(sorted.into_iter().map(|s| subscription_model(s, now)))
            .on_conflict(
                OnConflict::column(subscription::Column::Id)
                    .update_column(subscription::Column::UpdatedAt)
                    .to_owned(),
            )
            .exec_with_returning(db)
            .await?
            .into_iter()
            .map(subscription)
            .collect(),
    )
}

/// These subscriptions as committed now (no lock).
pub(crate) async fn by_ids<C: ConnectionTrait>(db: &C, ids: &[&str]) -> Result<Vec<Subscription>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(subscription::Entity::find()
        .filter(subscription::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(subscription)
        .collect())
}

/// Locks and reads the invoices with these ids, paid by these payment intents or of these
/// subscriptions, in id order.
pub(crate) async fn lock_invoices<C: ConnectionTrait>(
    db: &C,
    ids: &[&str],
    intents: &[&str],
    subscriptions: &[&str],
) -> Result<Vec<SubscriptionInvoice>, DbErr> {
    let mut which = Condition::any();
    if !ids.is_empty() {
        which = which.add(subscription_invoice::Column::Id.is_in(ids.iter().copied()));
    }
    if !intents.is_empty() {
        which = which.add(subscription_invoice::Column::StripePaymentIntentId.is_in(intents.iter().copied()));
    }
    if !subscriptions.is_empty() {
        which = which.add(subscription_invoice::Column::SubscriptionId.is_in(subscriptions.iter().copied()));
    }
    if which.is_empty() {
        return Ok(Vec::new());
    }
    subscription_invoice::Entity::find()
        .filter(which)
        .order_by_asc(subscription_invoice::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?
        .into_iter()
        .map(invoice)
        .collect()
}

/// Writes these subscriptions as they are now (every column but `created_at`).
pub(crate) async fn save<C: ConnectionTrait>(
    db: &C,
    changed: &[Subscription],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if changed.is_empty() {
        return Ok(());
    }
    use subscription::Column as C;
    subscription::Entity::insert_many(changed.iter().map(|s| subscription_model(s, now)))
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([
                    C::AccountId,
                    C::PlanId,
                    C::StripeCustomerId,
                    C::Status,
                    C::CurrentPeriodStart,
                    C::CurrentPeriodEnd,
                    C::CancelAtPeriodEnd,
                    C::CanceledAt,
                    C::StateVersion,
                    C::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Writes these invoices as they are now (inserted, or every column but `created_at`).
pub(crate) async fn save_invoices<C: ConnectionTrait>(
    db: &C,
    changed: &[SubscriptionInvoice],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if changed.is_empty() {
        return Ok(());
    }
    use subscription_invoice::Column as C;
    let models = changed.iter().map(|i| subscription_invoice::ActiveModel {
        id: Set(i.id.clone()),
        subscription_id: Set(i.subscription_id.clone()),
        account_id: Set(i.account_id.clone()),
        plan_id: Set(i.plan_id.clone()),
        billing_reason: Set(i.billing_reason.clone()),
        period_start: Set(i.period_start),
        period_end: Set(i.period_end),
        amount_paid: Set(i.amount_paid),
        currency: Set(i.currency.clone()),
        amount_refunded: Set(i.amount_refunded),
        credits: Set(i.credits),
        stripe_payment_intent_id: Set(i.payment_intent_id.clone()),
        lot_id: Set(i.lot_id.clone()),
        status: Set(i.status.as_str().to_owned()),
        created_at: Set(i.created_at),
        updated_at: Set(now),
    });
    subscription_invoice::Entity::insert_many(models)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([
                    C::PlanId,
                    C::BillingReason,
                    C::PeriodStart,
                    C::PeriodEnd,
                    C::AmountPaid,
                    C::Currency,
                    C::AmountRefunded,
                    C::Credits,
                    C::StripePaymentIntentId,
                    C::LotId,
                    C::Status,
                    C::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One subscription (over the pool).
pub(crate) async fn by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Subscription>, DbErr> {
    Ok(subscription::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(subscription))
}

/// An account's subscriptions, newest first.
pub(crate) async fn of_account<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
) -> Result<Vec<Subscription>, DbErr> {
    Ok(subscription::Entity::find()
        .filter(subscription::Column::AccountId.eq(account_id))
        .order_by_desc(subscription::Column::CreatedAt)
        .order_by_desc(subscription::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(subscription)
        .collect())
}

/// The invoices of these subscriptions.
pub(crate) async fn invoices_of<C: ConnectionTrait>(
    db: &C,
    subscriptions: &[&str],
) -> Result<Vec<SubscriptionInvoice>, DbErr> {
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    subscription_invoice::Entity::find()
        .filter(subscription_invoice::Column::SubscriptionId.is_in(subscriptions.iter().copied()))
        .order_by_asc(subscription_invoice::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(invoice)
        .collect()
}

/// One invoice (over the pool).
pub(crate) async fn invoice_by_id<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<SubscriptionInvoice>, DbErr> {
    subscription_invoice::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(invoice)
        .transpose()
}
