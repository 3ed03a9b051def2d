//! `subscriptions`: each Stripe subscription as its newest event left it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscriptions")]
pub struct Model {
    /// Stripe's subscription id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub plan_id: String,
    pub stripe_customer_id: Option<String>,
    /// See `billing::subscriptions::SubscriptionStatus`.
    pub status: String,
    pub current_period_start: Option<DateTimeUtc>,
    pub current_period_end: Option<DateTimeUtc>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTimeUtc>,
    /// The event that set this state: its `created` × 10 + its kind's rank (0: from an invoice).
    pub state_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
