//! `credit_packs`: what can be bought, loaded from `CREDIT_PACKS_FILE`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_packs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub credits: i64,
    /// Minor units of `currency`.
    pub unit_amount: i64,
    pub currency: String,
    #[sea_orm(unique)]
    pub stripe_price_id: Option<String>,
    pub active: bool,
    pub expires_after_days: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
