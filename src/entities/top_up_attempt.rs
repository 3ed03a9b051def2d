//! `top_up_attempts`: automatic top-ups, at most one in flight per account.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "top_up_attempts")]
pub struct Model {
    /// Also the Stripe Idempotency-Key of the attempt's PaymentIntent.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub pack_id: String,
    pub number: i32,
    /// See `ledger::kinds::TopUpState`.
    pub state: String,
    pub payment_intent_id: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub credits: Option<i64>,
    pub error: Option<String>,
    pub unknown_since: Option<DateTimeUtc>,
    pub next_action_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
