//! `account_events`: the outbox of what happened to balances, in commit order, with the state
//! of its delivery to `NOTIFY_WEBHOOK_URL`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub sequence: i64,
    #[sea_orm(unique)]
    pub id: String,
    pub account_id: String,
    /// See `ledger::events::EventType`.
    pub r#type: String,
    pub balance_after: i64,
    pub available_after: i64,
    pub entry_id: Option<i64>,
    /// A small JSON object, by type.
    pub payload: String,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub delivery_attempts: i32,
    pub next_delivery_at: Option<DateTimeUtc>,
    pub last_delivery_error: Option<String>,
    pub delivery_given_up_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
