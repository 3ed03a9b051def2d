//! `credit_holds`: credits reserved for a call whose cost is known only afterwards.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_holds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub credits: i64,
    /// See `ledger::kinds::HoldStatus`.
    pub status: String,
    pub expires_at: DateTimeUtc,
    /// JSON `[[lot_id, credits], …]`.
    #[sea_orm(column_type = "Text")]
    pub allocations: String,
    pub reason: String,
    /// JSON object.
    #[sea_orm(column_type = "Text")]
    pub metadata: String,
    pub captured_credits: Option<i64>,
    pub capture_entry_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub closed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
