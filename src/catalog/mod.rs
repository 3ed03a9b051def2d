//! What is sold: credit packs and subscription plans. The packs file (`file`, its `[[plan]]`
//! tables in `plan_file`), their tables (`store`, `plan_store`) and the sync of both to Stripe
//! Products and Prices (`sync`).

pub mod file;
pub mod file_error;
pub mod plan_file;
pub(crate) mod plan_store;
pub mod store;
pub(crate) mod sync;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

pub use file::{CatalogSpec, PackSpec};
pub(crate) use file::{PackFileError, load_catalog_file, load_pack_file};
pub use plan_file::{Interval, PlanSpec};
pub(crate) use sync::{SyncError, SyncReport};

use crate::stripe::StripeGateway;

/// The packs table as the rest of the service uses it.
#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
}

impl Catalog {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Upserts the file's packs and deactivates the ones it no longer has (at every start).
    pub async fn store_pack_file(&self, packs: &[PackSpec]) -> Result<(), DbErr> {
        store::store_pack_file(&self.db, packs, Utc::now()).await
    }

    /// Upserts the file's packs and plans and deactivates the ones it no longer has (at start).
    pub async fn store_catalog_file(&self, spec: &CatalogSpec) -> Result<(), DbErr> {
        store::store_catalog_file(&self.db, spec, Utc::now()).await
    }

    /// Every plan stored, active or not.
    pub async fn all_plans(&self) -> Result<Vec<Plan>, DbErr> {
        plan_store::all_plans(&self.db).await
    }

    /// Every pack stored, active or not.
    pub async fn all(&self) -> Result<Vec<Pack>, DbErr> {
        store::all_packs(&self.db).await
    }

    /// Syncs the file's packs and plans to Stripe Products and Prices (see `sync`).
    pub async fn sync(
        &self,
        stripe: &StripeGateway,
        file: &CatalogSpec,
        dry_run: bool,
    ) -> Result<SyncReport, SyncError> {
        sync::sync_catalog(&self.db, stripe, file, dry_run).await
    }
}

/// A pack as the service sells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub id: String,
    pub name: String,
    pub credits: i64,
    /// Minor units of `currency`.
    pub unit_amount: i64,
    pub currency: String,
    /// `None` until the pack is synced to Stripe.
    pub stripe_price_id: Option<String>,
    pub active: bool,
    /// A purchase's credits expire this many days after it completes; `None`: never.
    pub expires_after_days: Option<u32>,
}

/// A subscription plan as the service sells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// Credits granted each period.
    pub credits: i64,
    pub interval: Interval,
    /// Minor units of `currency`, charged each period.
    pub unit_amount: i64,
    pub currency: String,
    /// Unspent allowance carried into the next period, at most.
    pub rollover_cap: i64,
    /// `None` until the plan is synced to Stripe.
    pub stripe_price_id: Option<String>,
    pub active: bool,
}

/// The plans as the service sells them after its next start, as `as_sold` orders packs.
pub fn plans_as_sold(file: &[PlanSpec], stored: Vec<Plan>) -> Vec<Plan> {
    let mut plans: Vec<Plan> = file
        .iter()
        .map(|spec| Plan {
            id: spec.id.clone(),
            name: spec.name.clone(),
            credits: spec.credits,
            interval: spec.interval,
            unit_amount: spec.unit_amount,
            currency: spec.currency.clone(),
            rollover_cap: spec.rollover_cap,
            stripe_price_id: spec.stripe_price_id.clone().or_else(|| {
                stored
                    .iter()
                    .find(|s| s.id == spec.id)
                    .and_then(|s| s.stripe_price_id.clone())
            }),
            active: true,
        })
        .collect();
    plans.extend(
        stored
            .into_iter()
            .filter(|s| !file.iter().any(|f| f.id == s.id))
            .map(|s| Plan { active: false, ..s }),
    );
    plans
}

/// The packs as the service sells them after its next start: the file's packs (a price pinned
/// in the file, else the one the database holds), then the database's packs no longer in the
/// file, inactive.
pub fn as_sold(file: &[PackSpec], stored: Vec<Pack>) -> Vec<Pack> {
    let mut packs: Vec<Pack> = file
        .iter()
        .map(|spec| Pack {
            id: spec.id.clone(),
            name: spec.name.clone(),
            credits: spec.credits,
            unit_amount: spec.unit_amount,
            currency: spec.currency.clone(),
            stripe_price_id: spec.stripe_price_id.clone().or_else(|| {
                stored
                    .iter()
                    .find(|s| s.id == spec.id)
                    .and_then(|s| s.stripe_price_id.clone())
            }),
            active: true,
            expires_after_days: spec.expires_after_days,
        })
        .collect();
    packs.extend(
        stored
            .into_iter()
            .filter(|s| !file.iter().any(|f| f.id == s.id))
            .map(|s| Pack { active: false, ..s }),
    );
    packs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_sold_prefers_the_files_pins_and_lists_retired_packs_last() {
        let file = file::parse_packs(
            "p.toml",
            "[[pack]]\nid = \"a\"\nname = \"A\"\ncredits = 1\nunit_amount = 1\ncurrency = \"usd\"\n",
        )
        .expect("valid");
        let stored = |id: &str, price: &str| Pack {
            id: id.into(),
            name: id.to_uppercase(),
            credits: 1,
            unit_amount: 1,
            currency: "usd".into(),
            stripe_price_id: Some(price.into()),
            active: true,
            expires_after_days: None,
        };
        let sold = as_sold(&file, vec![stored("a", "price_a"), stored("old", "price_old")]);
        let rows: Vec<(&str, Option<&str>, bool)> = sold
            .iter()
            .map(|p| (p.id.as_str(), p.stripe_price_id.as_deref(), p.active))
            .collect();
        assert_eq!(
            rows,
            [("a", Some("price_a"), true), ("old", Some("price_old"), false)]
        );
    }
}
