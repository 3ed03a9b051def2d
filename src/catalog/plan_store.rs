//! The `plans` table: the only code that reads or writes it. Rows leave as `Plan`s.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};

use super::{Interval, Plan, PlanSpec};
use crate::entities::plan;

fn plan(model: plan::Model) -> Result<Plan, DbErr> {
    let interval = Interval::parse(&model.interval).ok_or_else(|| {
        DbErr::Custom(format!(
            "plan {}: unknown interval {:?}",
            model.id, model.interval
        ))
    })?;
    Ok(Plan {
        id: model.id,
        name: model.name,
        credits: model.credits,
        interval,
        unit_amount: model.unit_amount,
        currency: model.currency,
        rollover_cap: model.rollover_cap,
        stripe_price_id: model.stripe_price_id,
        active: model.active,
    })
}

/// Makes the database's plans match the file, as `store::upsert_packs` does for packs: upserts
/// each (a synced price id survives a file without one; a pinned one moves to the plan that
/// pins it), deactivates the rest. Run it inside the packs' transaction.
pub(crate) async fn upsert_plans<C: ConnectionTrait>(
    db: &C,
    specs: &[PlanSpec],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let pinned: Vec<&str> = specs
        .iter()
        .filter_map(|s| s.stripe_price_id.as_deref())
        .collect();
    if !pinned.is_empty() {
        plan::Entity::update_many()
            .col_expr(plan::Column::StripePriceId, Expr::value(Option::<String>::None))
            .filter(plan::Column::StripePriceId.is_in(pinned))
            .exec(db)
            .await?;
    }
    for spec in specs {
        let model = plan::ActiveModel {
            id: Set(spec.id.clone()),
            name: Set(spec.name.clone()),
            credits: Set(spec.credits),
            interval: Set(spec.interval.as_str().to_owned()),
            unit_amount: Set(spec.unit_amount),
            currency: Set(spec.currency.clone()),
            rollover_cap: Set(spec.rollover_cap),
            stripe_price_id: Set(spec.stripe_price_id.clone()),
            active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        };
        plan::Entity::insert(model)
            .on_conflict(
                OnConflict::column(plan::Column::Id)
                    .update_columns([
                        plan::Column::Name,
                        plan::Column::Credits,
                        plan::Column::Interval,
                        plan::Column::UnitAmount,
                        plan::Column::Currency,
                        plan::Column::RolloverCap,
                        plan::Column::Active,
                        plan::Column::UpdatedAt,
                    ])
                    .value(
                        plan::Column::StripePriceId,
                        Expr::cust("COALESCE(excluded.stripe_price_id, plans.stripe_price_id)"),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    plan::Entity::update_many()
        .col_expr(plan::Column::Active, Expr::value(false))
        .col_expr(plan::Column::UpdatedAt, Expr::value(now))
        .filter(plan::Column::Id.is_not_in(ids))
        .filter(plan::Column::Active.eq(true))
        .exec(db)
        .await?;
    Ok(())
}

/// Points plans at the recurring Stripe prices `packs sync` found or created.
pub(crate) async fn set_price_ids<C: ConnectionTrait>(
    db: &C,
    prices: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for (plan_id, price) in prices {
        plan::Entity::update_many()
            .col_expr(plan::Column::StripePriceId, Expr::value(price.as_str()))
            .col_expr(plan::Column::UpdatedAt, Expr::value(now))
            .filter(plan::Column::Id.eq(plan_id.as_str()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Every plan, active or not.
pub(crate) async fn all_plans<C: ConnectionTrait>(db: &C) -> Result<Vec<Plan>, DbErr> {
    plan::Entity::find()
        .order_by_asc(plan::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(plan)
        .collect()
}
