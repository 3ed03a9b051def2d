//! `credit_purchases`: one row per Checkout Session, from pending to completed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_purchases")]
pub struct Model {
    /// UUIDv7 text, so ordering by id is ordering by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub credit_pack_id: String,
    /// Credits granted (pack credits × line item quantity).
    pub quantity: i64,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub amount_refunded: i64,
    #[sea_orm(unique)]
    pub stripe_checkout_session_id: String,
    pub stripe_payment_intent_id: Option<String>,
    pub checkout_url: Option<String>,
    pub idempotency_key: Option<String>,
    /// See `billing::types::PurchaseStatus`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// When the credits this purchase granted expire; `None`: never.
    pub credits_expire_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
