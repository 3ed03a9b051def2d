//! `subscription_invoices`: each paid (or failed) subscription invoice and the allowance it
//! granted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscription_invoices")]
pub struct Model {
    /// Stripe's invoice id: also the reference of its allowance lot and entry.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub subscription_id: String,
    pub account_id: String,
    pub plan_id: String,
    pub billing_reason: String,
    /// The period paid for (the invoice line's `period`).
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    /// Minor units of `currency`.
    pub amount_paid: i64,
    pub currency: String,
    pub amount_refunded: i64,
    /// Allowance credits granted for it.
    pub credits: i64,
    pub stripe_payment_intent_id: Option<String>,
    pub lot_id: Option<String>,
    /// See `billing::subscriptions::InvoiceStatus`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
