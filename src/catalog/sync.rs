//! `packs sync`: make Stripe sell exactly the packs in the file (the seed's
//! `create_credit_packs`), then point each pack at its Price. Running it twice creates nothing.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

use super::{PackSpec, store};
use crate::{
    db,
    stripe::{StripeError, StripeGateway},
};

/// Why a sync stopped; the database is unchanged either way.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("database")]
    Database(#[from] DbErr),
}

/// What sync does (or, on a dry run, would do) for one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPlan {
    pub pack_id: String,
    pub product_id: String,
    pub lookup_key: String,
    pub create_product: bool,
    /// The Price to use when one already exists.
    pub existing_price: Option<String>,
    /// The Price the pack points at now, archived when it changes.
    pub archive_price: Option<String>,
    /// The file pins this pack's price id: sync leaves it alone.
    pub pinned: bool,
}

impl PackPlan {
    pub fn describe(&self) -> String {
        if self.pinned {
            return format!("{}: price pinned in the packs file; left alone", self.pack_id);
        }
        let mut steps = Vec::new();
        if self.create_product {
            steps.push(format!("create product {}", self.product_id));
        }
        match &self.existing_price {
            Some(price) => steps.push(format!("use price {price} ({})", self.lookup_key)),
            None => steps.push(format!("create price {}", self.lookup_key)),
        }
        if let Some(old) = &self.archive_price {
            steps.push(format!("archive price {old}"));
        }
        format!("{}: {}", self.pack_id, steps.join(", "))
    }

    fn changes_nothing(&self, current: Option<&str>) -> bool {
        self.pinned
            || (!self.create_product && self.existing_price.as_deref().is_some_and(|p| Some(p) == current))
    }
}

/// The outcome of a sync run: each pack's plan, and the price it now points at.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub plans: Vec<PackPlan>,
    pub prices: Vec<(String, String)>,
    pub unchanged: usize,
}

/// `credits_<pack>_<currency>_<amount>`: a new amount or currency is a new Price.
pub(crate) fn lookup_key(pack: &PackSpec) -> String {
    format!("credits_{}_{}_{}", pack.id, pack.currency, pack.unit_amount)
}

fn metadata(pack: &PackSpec) -> HashMap<String, String> {
    HashMap::from([
        ("pack_id".to_owned(), pack.id.clone()),
        ("credits".to_owned(), pack.credits.to_string()),
    ])
}

/// Plans with reads only; `dry_run` stops there. Otherwise creates what is missing in Stripe,
/// then writes the file's packs and their price ids in one transaction: a Stripe failure leaves
/// the database as it was, and a re-run finds what the failed run created.
// Long on purpose: find-or-create per pack, in the order Stripe needs (product, price, store).
pub(crate) async fn sync_packs(
    db: &DatabaseConnection,
    stripe: &StripeGateway,
    packs: &[PackSpec],
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let stored = match store::all_packs(db).await {
        Ok(stored) => stored,
        // A dry run may look at a database that was never migrated.
        Err(_) if dry_run => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let stored: HashMap<String, Option<String>> =
        stored.into_iter().map(|p| (p.id, p.stripe_price_id)).collect();
    let mut report = SyncReport::default();
    for pack in packs {
        let current = stored.get(&pack.id).cloned().flatten();
        let key = lookup_key(pack);
        let product_id = format!("credits_pack_{}", pack.id);
        let plan = if pack.stripe_price_id.is_some() {
            PackPlan {
                pack_id: pack.id.clone(),
                product_id,
                lookup_key: key,
                create_product: false,
                existing_price: pack.stripe_price_id.clone(),
                archive_price: None,
                pinned: true,
            }
        } else {
            let existing = stripe
                .price_by_lookup_key(&key)
                .await?
                .filter(|p| p.unit_amount == Some(pack.unit_amount) && p.currency == pack.currency)
                .map(|p| p.id);
            let create_product = existing.is_none() && !stripe.product_exists(&product_id).await?;
            let archive_price = current.clone().filter(|old| Some(old) != existing.as_ref());
            PackPlan {
                pack_id: pack.id.clone(),
                product_id,
                lookup_key: key,
                create_product,
                existing_price: existing,
                archive_price,
                pinned: false,
            }
        };
        if plan.changes_nothing(current.as_deref()) {
            report.unchanged += 1;
        }
        report.plans.push(plan);
    }
    if dry_run {
        return Ok(report);
    }

    for (pack, plan) in packs.iter().zip(&report.plans) {
        if plan.pinned {
            continue;
        }
        if plan.create_product {
            stripe
                .create_product(&plan.product_id, &pack.name, metadata(pack))
                .await?;
        }
        let price = match &plan.existing_price {
            Some(price) => price.clone(),
            None => {
                stripe
                    .create_price(
                        &plan.product_id,
                        pack.unit_amount,
                        &pack.currency,
                        &plan.lookup_key,
                        metadata(pack),
                    )
                    .await?
            }
        };
        if let Some(old) = &plan.archive_price {
            stripe.archive_price(old).await?;
        }
        report.prices.push((pack.id.clone(), price));
    }

    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    store::upsert_packs(&txn, packs, now).await?;
    store::set_price_ids(&txn, &report.prices, now).await?;
    txn.commit().await?;
    Ok(report)
}
