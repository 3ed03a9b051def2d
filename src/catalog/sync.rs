//! `packs sync`: make Stripe sell exactly the packs and plans in the file (the seed's
//! `create_credit_packs`), then point each at its Price: a one-time Price per pack, a recurring
//! one per plan. Running it twice creates nothing.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

use super::{CatalogSpec, Interval, PackSpec, PlanSpec, plan_store, store};
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

/// What sync does (or, on a dry run, would do) for one pack or subscription plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPlan {
    /// The pack's or the subscription plan's id.
    pub id: String,
    /// `Some` for a subscription plan: its Price recurs every interval.
    pub recurring: Option<Interval>,
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
        let label = match self.recurring {
            Some(_) => format!("subscription {}", self.id),
            None => self.id.clone(),
        };
        if self.pinned {
            return format!("{label}: price pinned in the packs file; left alone");
        }
        let mut steps = Vec::new();
        if self.create_product {
            steps.push(format!("create product {}", self.product_id));
        }
        let kind = match self.recurring {
            Some(interval) => format!("recurring ({interval}) price"),
            None => "price".to_owned(),
        };
        match &self.existing_price {
            Some(price) => steps.push(format!("use {kind} {price} ({})", self.lookup_key)),
            None => steps.push(format!("create {kind} {}", self.lookup_key)),
        }
        if let Some(old) = &self.archive_price {
            steps.push(format!("archive price {old}"));
        }
        format!("{label}: {}", steps.join(", "))
    }

    fn changes_nothing(&self, current: Option<&str>) -> bool {
        self.pinned
            || (!self.create_product && self.existing_price.as_deref().is_some_and(|p| Some(p) == current))
    }
}

/// The outcome of a sync run: each pack's and plan's step, and the price each now points at.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub plans: Vec<PackPlan>,
    pub prices: Vec<(String, String)>,
    pub unchanged: usize,
    /// The subscription plans' steps, prices and count already in sync.
    pub subscriptions: Vec<PackPlan>,
    pub subscription_prices: Vec<(String, String)>,
    pub subscriptions_unchanged: usize,
}

/// `credits_<pack>_<currency>_<amount>`: a new amount or currency is a new Price.
pub(crate) fn lookup_key(pack: &PackSpec) -> String {
    format!("credits_{}_{}_{}", pack.id, pack.currency, pack.unit_amount)
}

/// `credits_plan_<plan>_<currency>_<amount>_<interval>`: new terms are a new Price.
pub(crate) fn plan_lookup_key(plan: &PlanSpec) -> String {
    format!(
        "credits_plan_{}_{}_{}_{}",
        plan.id, plan.currency, plan.unit_amount, plan.interval
    )
}

/// The `Idempotency-Key` of a create: the object it makes, named by plan id and terms, so a
/// retried or concurrent sync makes it once (Stripe keeps keys 24 hours).
fn idempotency_key(object: &str) -> String {
    format!("credits-sync-{object}")
}

fn metadata(pack: &PackSpec) -> HashMap<String, String> {
    HashMap::from([
        ("pack_id".to_owned(), pack.id.clone()),
        ("credits".to_owned(), pack.credits.to_string()),
    ])
}

fn plan_metadata(plan: &PlanSpec) -> HashMap<String, String> {
    HashMap::from([
        ("plan_id".to_owned(), plan.id.clone()),
        ("credits".to_owned(), plan.credits.to_string()),
        ("interval".to_owned(), plan.interval.to_string()),
        ("rollover_cap".to_owned(), plan.rollover_cap.to_string()),
    ])
}

/// What the file says one item costs; sync finds or creates its Price.
struct Terms<'a> {
    id: &'a str,
    product_id: String,
    lookup_key: String,
    unit_amount: i64,
    currency: &'a str,
    recurring: Option<Interval>,
    pinned_price: Option<&'a String>,
}

/// One item's step, with reads only: its Price by lookup key, else whether its Product exists.
async fn plan_item(
    stripe: &StripeGateway,
    terms: Terms<'_>,
    current: Option<&String>,
) -> Result<PackPlan, SyncError> {
    if terms.pinned_price.is_some() {
        return Ok(PackPlan {
            id: terms.id.to_owned(),
            recurring: terms.recurring,
            product_id: terms.product_id,
            lookup_key: terms.lookup_key,
            create_product: false,
            existing_price: terms.pinned_price.cloned(),
            archive_price: None,
            pinned: true,
        });
    }
    let interval = terms.recurring.map(Interval::as_str);
    let existing = stripe
        .price_by_lookup_key(&terms.lookup_key)
        .await?
        .filter(|p| {
            p.unit_amount == Some(terms.unit_amount)
                && p.currency == terms.currency
                // A pack's Price is one-time; a plan's recurs every interval.
                && (terms.recurring.is_none() || p.recurring_interval.as_deref() == interval)
        })
        .map(|p| p.id);
    let create_product = existing.is_none() && !stripe.product_exists(&terms.product_id).await?;
    let archive_price = current.cloned().filter(|old| Some(old) != existing.as_ref());
    Ok(PackPlan {
        id: terms.id.to_owned(),
        recurring: terms.recurring,
        product_id: terms.product_id,
        lookup_key: terms.lookup_key,
        create_product,
        existing_price: existing,
        archive_price,
        pinned: false,
    })
}

/// Plans with reads only; `dry_run` stops there. Otherwise creates what is missing in Stripe,
/// then writes the file's packs and plans and their price ids in one transaction: a Stripe
/// failure leaves the database as it was, and a re-run finds what the failed run created.
// Long on purpose: find-or-create per item, in the order Stripe needs (product, price, store).
pub(crate) async fn sync_catalog(
    db: &DatabaseConnection,
    stripe: &StripeGateway,
    file: &CatalogSpec,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let stored = match store::all_packs(db).await {
        Ok(stored) => stored,
        // A dry run may look at a database that was never migrated.
        Err(_) if dry_run => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let stored_plans = match plan_store::all_plans(db).await {
        Ok(stored) => stored,
        // Nor migrated to 0.3.0 (no `plans` table yet).
        Err(_) if dry_run => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    let stored: HashMap<String, Option<String>> =
        stored.into_iter().map(|p| (p.id, p.stripe_price_id)).collect();
    let stored_plans: HashMap<String, Option<String>> = stored_plans
        .into_iter()
        .map(|p| (p.id, p.stripe_price_id))
        .collect();
    let mut report = SyncReport::default();
    for pack in &file.packs {
        let current = stored.get(&pack.id).cloned().flatten();
        let terms = Terms {
            id: &pack.id,
            product_id: format!("credits_pack_{}", pack.id),
            lookup_key: lookup_key(pack),
            unit_amount: pack.unit_amount,
            currency: &pack.currency,
            recurring: None,
            pinned_price: pack.stripe_price_id.as_ref(),
        };
        let plan = plan_item(stripe, terms, current.as_ref()).await?;
        if plan.changes_nothing(current.as_deref()) {
            report.unchanged += 1;
        }
        report.plans.push(plan);
    }
    for sub in &file.plans {
        let current = stored_plans.get(&sub.id).cloned().flatten();
        let terms = Terms {
            id: &sub.id,
            product_id: format!("credits_plan_{}", sub.id),
            lookup_key: plan_lookup_key(sub),
            unit_amount: sub.unit_amount,
            currency: &sub.currency,
            recurring: Some(sub.interval),
            pinned_price: sub.stripe_price_id.as_ref(),
        };
        let plan = plan_item(stripe, terms, current.as_ref()).await?;
        if plan.changes_nothing(current.as_deref()) {
            report.subscriptions_unchanged += 1;
        }
        report.subscriptions.push(plan);
    }
    if dry_run {
        return Ok(report);
    }

    for (pack, plan) in file.packs.iter().zip(&report.plans) {
        if plan.pinned {
            continue;
        }
        if plan.create_product {
            stripe
                .create_product(&plan.product_id, &pack.name, metadata(pack), None)
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
                        None,
                        &plan.lookup_key,
                        metadata(pack),
                        None,
                    )
                    .await?
            }
        };
        if let Some(old) = &plan.archive_price {
            stripe.archive_price(old).await?;
        }
        report.prices.push((pack.id.clone(), price));
    }
    for (sub, plan) in file.plans.iter().zip(&report.subscriptions) {
        if plan.pinned {
            continue;
        }
        if plan.create_product {
            let key = idempotency_key(&plan.product_id);
            stripe
                .create_product(&plan.product_id, &sub.name, plan_metadata(sub), Some(&key))
                .await?;
        }
        let price = match &plan.existing_price {
            Some(price) => price.clone(),
            None => {
                let key = idempotency_key(&format!("{}_{}", plan.lookup_key, sub.credits));
                stripe
                    .create_price(
                        &plan.product_id,
                        sub.unit_amount,
                        &sub.currency,
                        Some(sub.interval.as_str()),
                        &plan.lookup_key,
                        plan_metadata(sub),
                        Some(&key),
                    )
                    .await?
            }
        };
        if let Some(old) = &plan.archive_price {
            stripe.archive_price(old).await?;
        }
        report.subscription_prices.push((sub.id.clone(), price));
    }

    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    store::upsert_packs(&txn, &file.packs, now).await?;
    store::set_price_ids(&txn, &report.prices, now).await?;
    plan_store::upsert_plans(&txn, &file.plans, now).await?;
    plan_store::set_price_ids(&txn, &report.subscription_prices, now).await?;
    txn.commit().await?;
    Ok(report)
}
