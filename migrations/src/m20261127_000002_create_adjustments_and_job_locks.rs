//! Refunds and disputes (kept by payment intent, so they can arrive before the purchase
//! completes) and lease rows that keep periodic jobs to one replica at a time.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PaymentRefundTotals::Table)
                    .if_not_exists()
                    .col(string(PaymentRefundTotals::PaymentIntentId).primary_key())
                    // The largest cumulative `charge.amount_refunded` seen.
                    .col(big_integer(PaymentRefundTotals::AmountRefunded))
                    .col(timestamp_with_time_zone(PaymentRefundTotals::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StripeRefunds::Table)
                    .if_not_exists()
                    .col(string(StripeRefunds::Id).primary_key())
                    .col(string(StripeRefunds::PaymentIntentId))
                    .col(big_integer(StripeRefunds::Amount))
                    .col(string(StripeRefunds::Status))
                    .col(timestamp_with_time_zone(StripeRefunds::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_refunds_payment_intent")
                    .table(StripeRefunds::Table)
                    .col(StripeRefunds::PaymentIntentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StripeDisputes::Table)
                    .if_not_exists()
                    .col(string(StripeDisputes::Id).primary_key())
                    .col(string(StripeDisputes::PaymentIntentId))
                    .col(big_integer(StripeDisputes::Amount))
                    .col(string(StripeDisputes::Status))
                    // none → held → released | lost
                    .col(string(StripeDisputes::HoldState).default("none"))
                    .col(big_integer(StripeDisputes::HeldCredits).default(0))
                    .col(timestamp_with_time_zone(StripeDisputes::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_disputes_payment_intent")
                    .table(StripeDisputes::Table)
                    .col(StripeDisputes::PaymentIntentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JobLocks::Table)
                    .if_not_exists()
                    .col(string(JobLocks::Name).primary_key())
                    .col(string(JobLocks::Holder))
                    .col(timestamp_with_time_zone(JobLocks::LockedUntil))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            JobLocks::Table.into_iden(),
            StripeDisputes::Table.into_iden(),
            StripeRefunds::Table.into_iden(),
            PaymentRefundTotals::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum PaymentRefundTotals {
    Table,
    PaymentIntentId,
    AmountRefunded,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripeRefunds {
    Table,
    Id,
    PaymentIntentId,
    Amount,
    Status,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripeDisputes {
    Table,
    Id,
    PaymentIntentId,
    Amount,
    Status,
    HoldState,
    HeldCredits,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobLocks {
    Table,
    Name,
    Holder,
    LockedUntil,
}
