//! The `credit_packs` table: the only code that reads or writes it. Rows leave as `Pack`s.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};

use super::{CatalogSpec, Pack, PackSpec, plan_store};
use crate::{db, entities::credit_pack};

fn pack(model: credit_pack::Model) -> Pack {
    Pack {
        id: model.id,
        name: model.name,
        credits: model.credits,
        unit_amount: model.unit_amount,
        currency: model.currency,
        stripe_price_id: model.stripe_price_id,
        active: model.active,
        expires_after_days: model.expires_after_days.and_then(|d| u32::try_from(d).ok()),
    }
}

/// Makes the database's packs match the file: upserts each, deactivates the rest. A price id
/// set by `packs sync` survives a file that has none; a price the file pins moves to the pack
/// that pins it, so packs may trade pinned prices. Run it inside one transaction.
// Long on purpose: one transaction whose steps must stay in this order.
pub(crate) async fn upsert_packs<C: ConnectionTrait>(
    db: &C,
    specs: &[PackSpec],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // Release every pinned price first: the unique index would refuse a swap done row by row.
    let pinned: Vec<&str> = specs
        .iter()
        .filter_map(|s| s.stripe_price_id.as_deref())
        .collect();
    if !pinned.is_empty() {
        credit_pack::Entity::update_many()
            .col_expr(
                credit_pack::Column::StripePriceId,
                Expr::value(Option::<String>::None),
            )
            .filter(credit_pack::Column::StripePriceId.is_in(pinned))
            .exec(db)
            .await?;
    }
    for spec in specs {
        let model = credit_pack::ActiveModel {
            id: Set(spec.id.clone()),
            name: Set(spec.name.clone()),
            credits: Set(spec.credits),
            unit_amount: Set(spec.unit_amount),
            currency: Set(spec.currency.clone()),
            stripe_price_id: Set(spec.stripe_price_id.clone()),
            active: Set(true),
            expires_after_days: Set(spec.expires_after_days.map(i64::from)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        credit_pack::Entity::insert(model)
            .on_conflict(
                OnConflict::column(credit_pack::Column::Id)
                    .update_columns([
                        credit_pack::Column::Name,
                        credit_pack::Column::Credits,
                        credit_pack::Column::UnitAmount,
                        credit_pack::Column::Currency,
                        credit_pack::Column::Active,
                        credit_pack::Column::ExpiresAfterDays,
                        credit_pack::Column::UpdatedAt,
                    ])
                    .value(
                        credit_pack::Column::StripePriceId,
                        Expr::cust("COALESCE(excluded.stripe_price_id, credit_packs.stripe_price_id)"),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    credit_pack::Entity::update_many()
        .col_expr(credit_pack::Column::Active, Expr::value(false))
        .col_expr(credit_pack::Column::UpdatedAt, Expr::value(now))
        .filter(credit_pack::Column::Id.is_not_in(ids))
        .filter(credit_pack::Column::Active.eq(true))
        .exec(db)
        .await?;
    Ok(())
}

/// Loads the packs file's packs into the database in one transaction: all or nothing.
pub async fn store_pack_file(
    db: &DatabaseConnection,
    specs: &[PackSpec],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let txn = db::begin_write(db).await?;
    upsert_packs(&txn, specs, now).await?;
    txn.commit().await
}

/// Loads the packs file's packs and plans into the database in one transaction: all or nothing.
pub async fn store_catalog_file(
    db: &DatabaseConnection,
    spec: &CatalogSpec,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let txn = db::begin_write(db).await?;
    upsert_packs(&txn, &spec.packs, now).await?;
    plan_store::upsert_plans(&txn, &spec.plans, now).await?;
    txn.commit().await
}

/// Points packs at the Stripe prices `packs sync` found or created.
pub(crate) async fn set_price_ids<C: ConnectionTrait>(
    db: &C,
    prices: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for (pack_id, price) in prices {
        credit_pack::Entity::update_many()
            .col_expr(credit_pack::Column::StripePriceId, Expr::value(price.as_str()))
            .col_expr(credit_pack::Column::UpdatedAt, Expr::value(now))
            .filter(credit_pack::Column::Id.eq(pack_id.as_str()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Packs that can be bought, cheapest first.
pub(crate) async fn active_packs<C: ConnectionTrait>(db: &C) -> Result<Vec<Pack>, DbErr> {
    Ok(credit_pack::Entity::find()
        .filter(credit_pack::Column::Active.eq(true))
        .order_by_asc(credit_pack::Column::UnitAmount)
        .order_by_asc(credit_pack::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(pack)
        .collect())
}

/// Every pack, active or not.
pub(crate) async fn all_packs<C: ConnectionTrait>(db: &C) -> Result<Vec<Pack>, DbErr> {
    Ok(credit_pack::Entity::find()
        .order_by_asc(credit_pack::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(pack)
        .collect())
}

/// The packs sold under these Stripe prices, active or not (old sessions may name retired
/// packs).
pub(crate) async fn packs_by_prices<C: ConnectionTrait>(
    db: &C,
    price_ids: &[&str],
) -> Result<Vec<Pack>, DbErr> {
    if price_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(credit_pack::Entity::find()
        .filter(credit_pack::Column::StripePriceId.is_in(price_ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(pack)
        .collect())
}

/// The pack sold under one Stripe price.
pub(crate) async fn pack_by_price<C: ConnectionTrait>(db: &C, price_id: &str) -> Result<Option<Pack>, DbErr> {
    Ok(packs_by_prices(db, &[price_id]).await?.into_iter().next())
}

/// The pack with this id, active or not.
pub(crate) async fn pack_by_id<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Pack>, DbErr> {
    Ok(credit_pack::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(pack))
}
