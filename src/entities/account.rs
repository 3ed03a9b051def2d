//! `accounts`: one row per caller user id, holding the credit balance.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Lower-cased on the way in.
    #[sea_orm(unique)]
    pub email: String,
    /// Always the sum of the account's `credit_ledger` deltas.
    pub credit_balance: i64,
    /// Credits taken back beyond what the lots held (a refund of spent credits); a later
    /// credit pays it first. `credit_balance = Σ lots.remaining - debt`.
    pub debt: i64,
    pub is_trial_user: bool,
    /// NULL: the service's default (`LOW_BALANCE_THRESHOLD`); 0: no balance alerts.
    pub low_balance_threshold: Option<i64>,
    /// Credits the balance may go below zero by.
    pub overdraft_limit: i64,
    /// Available credits after the account's last change (NULL until it changes).
    pub available_balance: Option<i64>,
    pub stripe_customer_id: Option<String>,
    pub payment_method_id: Option<String>,
    pub auto_top_up_enabled: bool,
    pub auto_top_up_threshold: i64,
    pub auto_top_up_pack_id: Option<String>,
    /// Minor units a calendar month's automatic top-ups may charge.
    pub auto_top_up_monthly_limit: i64,
    /// Why auto top-up stopped on its own; NULL while it runs.
    pub auto_top_up_paused: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
