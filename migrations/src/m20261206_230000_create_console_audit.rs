//! The console's audit log: `console_audit`, one row per operator action (who, in which role,
//! what, on which account, why, when). Rows are only ever inserted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsoleAudit::Table)
                    .if_not_exists()
                    .col(big_integer(ConsoleAudit::Id).auto_increment().primary_key())
                    .col(string_len(ConsoleAudit::Actor, 128))
                    .col(string_len(ConsoleAudit::Role, 16))
                    // `grant`, `release_hold`, `update_settings`, `pause_auto_top_up`, ...
                    .col(string_len(ConsoleAudit::Action, 64))
                    .col(string_null(ConsoleAudit::AccountId))
                    .col(text(ConsoleAudit::Reason))
                    // What was asked and answered, as JSON.
                    .col(text(ConsoleAudit::Details))
                    // The form's one-time key: a double submit writes one row.
                    .col(string(ConsoleAudit::IdempotencyKey).unique_key())
                    .col(timestamp_with_time_zone(ConsoleAudit::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_console_audit_account")
                    .table(ConsoleAudit::Table)
                    .col(ConsoleAudit::AccountId)
                    .col(ConsoleAudit::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsoleAudit::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ConsoleAudit {
    Table,
    Id,
    Actor,
    Role,
    Action,
    AccountId,
    Reason,
    Details,
    IdempotencyKey,
    CreatedAt,
}
