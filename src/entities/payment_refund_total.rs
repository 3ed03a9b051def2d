//! `payment_refund_totals`: the largest cumulative refunded amount Stripe reported per payment.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_refund_totals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_intent_id: String,
    pub amount_refunded: i64,
    /// Refund and dispute facts recorded for the payment; 0 means there are none to read.
    pub facts: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
