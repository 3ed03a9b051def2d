//! `credit_lots`: the credits of one purchase, grant, trial or import, spent in burn order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_lots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    /// See `ledger::kinds::LotSource`.
    pub source: String,
    pub reference: String,
    pub credits: i64,
    pub remaining: i64,
    pub held: i64,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// Money paid for `credits`, minor units of `currency` (0: free).
    pub value: i64,
    pub value_remaining: i64,
    pub currency: Option<String>,
    /// Written off at expiry, not yet accounted for by a refund.
    pub expired: i64,
    pub rollover_cap: Option<i64>,
    pub rollover_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
