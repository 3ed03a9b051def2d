//! `credit_ledger`: append-only balance changes, unique per (account, kind, reference).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_ledger")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: String,
    pub delta: i64,
    pub balance_after: i64,
    /// See `ledger::kinds::EntryKind`.
    pub kind: String,
    /// The caller's word for grants and consumption, the kind's name for the rest.
    pub reason: String,
    pub reference: String,
    /// JSON object of the caller's metadata, if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub metadata: Option<String>,
    pub created_at: DateTimeUtc,
    /// JSON moves `[[lot_id|null, credits, value, source|null, currency|null], …]`; NULL for
    /// entries written before moves were kept.
    #[sea_orm(column_type = "Text", nullable)]
    pub allocations: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
