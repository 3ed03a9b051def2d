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
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
