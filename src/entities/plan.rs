//! `plans`: subscription plans, loaded from the `[[plan]]` tables of `CREDIT_PACKS_FILE`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// Credits granted each period.
    pub credits: i64,
    /// `month` or `year`.
    pub interval: String,
    /// Minor units of `currency`, charged each period.
    pub unit_amount: i64,
    pub currency: String,
    pub rollover_cap: i64,
    #[sea_orm(unique)]
    pub stripe_price_id: Option<String>,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
