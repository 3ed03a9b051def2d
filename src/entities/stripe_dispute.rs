//! `stripe_disputes`: each dispute seen, its Stripe status and what it did to the credits.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_disputes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub payment_intent_id: String,
    pub amount: i64,
    /// See `billing::types::DisputeStatus`.
    pub status: String,
    /// See `billing::settlement::DisputeHoldState`.
    pub hold_state: String,
    pub held_credits: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
