//! The console's audit log and its store: the only code that speaks to `console_audit`.
//! Operator actions are written here once their change has gone through (keyed by the form's
//! one-time key, so a double submit writes one row); pages read it back.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};

use crate::{config::ConsoleRole, entities::console_audit};

/// One operator action as the log keeps it.
#[derive(Debug, Clone)]
pub(crate) struct AuditEntry {
    pub actor: String,
    pub role: ConsoleRole,
    /// `grant`, `release_hold`, `update_settings`, `pause_auto_top_up`, `replay_event`, ...
    pub action: &'static str,
    pub account_id: Option<String>,
    pub reason: String,
    /// What was asked and answered, as JSON.
    pub details: serde_json::Value,
    /// The form's one-time key.
    pub key: String,
}

/// A stored audit line.
#[derive(Debug, Clone)]
pub(crate) struct AuditLine {
    pub id: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub account_id: Option<String>,
    pub reason: String,
    pub details: String,
    pub at: DateTime<Utc>,
}

/// The audit log over the read pool.
#[derive(Clone)]
pub(crate) struct AuditLog {
    db: DatabaseConnection,
}

impl AuditLog {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Writes `entry` unless a line with its key exists (a double submit).
    #[tracing::instrument(skip_all, fields(actor = %entry.actor, action = entry.action), err)]
    pub(crate) async fn record(&self, entry: AuditEntry) -> Result<(), DbErr> {
        console_audit::Entity::insert(console_audit::ActiveModel {
            actor: Set(entry.actor),
            role: Set(entry.role.as_str().to_owned()),
            action: Set(entry.action.to_owned()),
            account_id: Set(entry.account_id),
            reason: Set(entry.reason),
            details: Set(entry.details.to_string()),
            idempotency_key: Set(entry.key),
            created_at: Set(Utc::now()),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(console_audit::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .try_insert()
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Whether a line with this key was written (the action went through once already).
    pub(crate) async fn has_key(&self, key: &str) -> Result<bool, DbErr> {
        Ok(console_audit::Entity::find()
            .filter(console_audit::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// The latest lines, newest first: of one account, or all.
    pub(crate) async fn latest(&self, account_id: Option<&str>, limit: u64) -> Result<Vec<AuditLine>, DbErr> {
        let mut query = console_audit::Entity::find();
        if let Some(account) = account_id {
            query = query.filter(console_audit::Column::AccountId.eq(account));
        }
        let rows = query
            .order_by_desc(console_audit::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| AuditLine {
                id: row.id,
                actor: row.actor,
                role: row.role,
                action: row.action,
                account_id: row.account_id,
                reason: row.reason,
                details: row.details,
                at: row.created_at,
            })
            .collect())
    }
}
