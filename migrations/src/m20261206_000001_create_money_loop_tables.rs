//! Closing the money loop: per-account settings (balance alerts, auto top-up, overdraft, the
//! saved card), the account events outbox (with its outbound-webhook delivery state) and
//! auto top-up attempts.
//!
//! - `accounts` gains the settings and `available_balance`: the available credits after the
//!   account's last change, so a change that time made (a lot expiring, a hold running out) is
//!   seen as a crossing when the account is next touched.
//! - `account_events`: one row per thing that happened to a balance, written in the
//!   transaction of the change; `sequence` orders them (on PostgreSQL, writers that insert
//!   events commit one at a time, so a reader never sees a later sequence before an earlier one).
//! - `top_up_attempts`: at most one in flight per account, enforced by a partial unique index.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The states of an attempt that is still in flight (see `top_up_attempts`).
const IN_FLIGHT: &str = "state IN ('pending', 'charging', 'unknown', 'awaiting_payment')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // Long on purpose: one statement per column (SQLite adds one column per ALTER TABLE).
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            // NULL: the service's default (LOW_BALANCE_THRESHOLD); 0: no balance alerts.
            big_integer_null(Accounts::LowBalanceThreshold).to_owned(),
            // Credits the balance may go below zero by (ConsumeCredits, CaptureHold).
            big_integer(Accounts::OverdraftLimit).default(0).to_owned(),
            // Available credits after the last change; NULL until the account changes again.
            big_integer_null(Accounts::AvailableBalance).to_owned(),
            string_null(Accounts::StripeCustomerId).to_owned(),
            string_null(Accounts::PaymentMethodId).to_owned(),
            boolean(Accounts::AutoTopUpEnabled).default(false).to_owned(),
            big_integer(Accounts::AutoTopUpThreshold).default(0).to_owned(),
            string_null(Accounts::AutoTopUpPackId).to_owned(),
            // Minor units of the pack's currency a calendar month's top-ups may charge.
            big_integer(Accounts::AutoTopUpMonthlyLimit).default(0).to_owned(),
            // Why auto top-up stopped on its own (`requires_action`, `declined`); NULL: running.
            string_null(Accounts::AutoTopUpPaused).to_owned(),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AccountEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AccountEvents::Sequence))
                    .col(string_uniq(AccountEvents::Id))
                    .col(string(AccountEvents::AccountId))
                    .col(string(AccountEvents::Type))
                    .col(big_integer(AccountEvents::BalanceAfter))
                    .col(big_integer(AccountEvents::AvailableAfter))
                    .col(big_integer_null(AccountEvents::EntryId))
                    // A small JSON object whose fields depend on the type.
                    .col(text(AccountEvents::Payload))
                    .col(timestamp_with_time_zone(AccountEvents::CreatedAt))
                    .col(timestamp_with_time_zone_null(AccountEvents::DeliveredAt))
                    .col(integer(AccountEvents::DeliveryAttempts).default(0))
                    .col(timestamp_with_time_zone_null(AccountEvents::NextDeliveryAt))
                    .col(text_null(AccountEvents::LastDeliveryError))
                    .col(timestamp_with_time_zone_null(AccountEvents::DeliveryGivenUpAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_account_events_account_sequence")
                    .table(AccountEvents::Table)
                    .col(AccountEvents::AccountId)
                    .col(AccountEvents::Sequence)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_account_events_created_at")
                    .table(AccountEvents::Table)
                    .col(AccountEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // The delivery worker reads only what is still to deliver.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_account_events_undelivered ON account_events \
                 (account_id, sequence) WHERE delivered_at IS NULL AND delivery_given_up_at IS NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TopUpAttempts::Table)
                    .if_not_exists()
                    // Also the Stripe Idempotency-Key of the attempt's one PaymentIntent.
                    .col(string(TopUpAttempts::Id).primary_key())
                    .col(string(TopUpAttempts::AccountId))
                    .col(string(TopUpAttempts::PackId))
                    // 1 for the attempt a balance crossing started; 2 and 3 after declines.
                    .col(integer(TopUpAttempts::Number))
                    // pending | charging | unknown | awaiting_payment | succeeded | declined |
                    // requires_action | limit_reached | failed | abandoned
                    .col(string(TopUpAttempts::State))
                    .col(string_null(TopUpAttempts::PaymentIntentId))
                    .col(big_integer_null(TopUpAttempts::Amount))
                    .col(string_null(TopUpAttempts::Currency))
                    .col(big_integer_null(TopUpAttempts::Credits))
                    .col(text_null(TopUpAttempts::Error))
                    // When Stripe's answer was first lost: a new attempt waits on it.
                    .col(timestamp_with_time_zone_null(TopUpAttempts::UnknownSince))
                    .col(timestamp_with_time_zone(TopUpAttempts::NextActionAt))
                    .col(timestamp_with_time_zone(TopUpAttempts::CreatedAt))
                    .col(timestamp_with_time_zone(TopUpAttempts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS uniq_top_up_attempts_in_flight ON top_up_attempts \
             (account_id) WHERE {IN_FLIGHT}"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS uniq_top_up_attempts_payment_intent ON top_up_attempts \
             (payment_intent_id) WHERE payment_intent_id IS NOT NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_top_up_attempts_state_next")
                    .table(TopUpAttempts::Table)
                    .col(TopUpAttempts::State)
                    .col(TopUpAttempts::NextActionAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TopUpAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AccountEvents::Table).to_owned())
            .await?;
        for column in [
            Accounts::LowBalanceThreshold,
            Accounts::OverdraftLimit,
            Accounts::AvailableBalance,
            Accounts::StripeCustomerId,
            Accounts::PaymentMethodId,
            Accounts::AutoTopUpEnabled,
            Accounts::AutoTopUpThreshold,
            Accounts::AutoTopUpPackId,
            Accounts::AutoTopUpMonthlyLimit,
            Accounts::AutoTopUpPaused,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    LowBalanceThreshold,
    OverdraftLimit,
    AvailableBalance,
    StripeCustomerId,
    PaymentMethodId,
    AutoTopUpEnabled,
    AutoTopUpThreshold,
    AutoTopUpPackId,
    AutoTopUpMonthlyLimit,
    AutoTopUpPaused,
}

#[derive(DeriveIden)]
enum AccountEvents {
    Table,
    Sequence,
    Id,
    AccountId,
    Type,
    BalanceAfter,
    AvailableAfter,
    EntryId,
    Payload,
    CreatedAt,
    DeliveredAt,
    DeliveryAttempts,
    NextDeliveryAt,
    LastDeliveryError,
    DeliveryGivenUpAt,
}

#[derive(DeriveIden)]
enum TopUpAttempts {
    Table,
    Id,
    AccountId,
    PackId,
    Number,
    State,
    PaymentIntentId,
    Amount,
    Currency,
    Credits,
    Error,
    UnknownSince,
    NextActionAt,
    CreatedAt,
    UpdatedAt,
}
