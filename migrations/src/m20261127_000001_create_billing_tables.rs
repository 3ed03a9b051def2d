//! Accounts, credit packs, purchases, the credit ledger and the Stripe event store.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(string(Accounts::Id).primary_key())
                    // Stored lower-cased, so the unique index makes matching case-insensitive.
                    .col(string_uniq(Accounts::Email))
                    .col(big_integer(Accounts::CreditBalance).default(0))
                    .col(boolean(Accounts::IsTrialUser).default(true))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditPacks::Table)
                    .if_not_exists()
                    .col(string(CreditPacks::Id).primary_key())
                    .col(string(CreditPacks::Name))
                    .col(big_integer(CreditPacks::Credits))
                    .col(big_integer(CreditPacks::UnitAmount))
                    .col(string_len(CreditPacks::Currency, 3))
                    .col(string_null(CreditPacks::StripePriceId).unique_key())
                    .col(boolean(CreditPacks::Active).default(true))
                    .col(timestamp_with_time_zone(CreditPacks::CreatedAt))
                    .col(timestamp_with_time_zone(CreditPacks::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditPurchases::Table)
                    .if_not_exists()
                    .col(string(CreditPurchases::Id).primary_key())
                    .col(string(CreditPurchases::AccountId))
                    .col(string(CreditPurchases::CreditPackId))
                    .col(big_integer(CreditPurchases::Quantity))
                    .col(big_integer(CreditPurchases::Amount))
                    .col(string_len(CreditPurchases::Currency, 3))
                    .col(big_integer(CreditPurchases::AmountRefunded).default(0))
                    .col(string_uniq(CreditPurchases::StripeCheckoutSessionId))
                    .col(string_null(CreditPurchases::StripePaymentIntentId))
                    .col(text_null(CreditPurchases::CheckoutUrl))
                    .col(string_null(CreditPurchases::IdempotencyKey))
                    .col(string(CreditPurchases::Status))
                    .col(timestamp_with_time_zone(CreditPurchases::CreatedAt))
                    .col(timestamp_with_time_zone_null(CreditPurchases::CompletedAt))
                    .col(timestamp_with_time_zone(CreditPurchases::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditPurchases::Table, CreditPurchases::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditPurchases::Table, CreditPurchases::CreditPackId)
                            .to(CreditPacks::Table, CreditPacks::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_purchases_account_id_id")
                    .table(CreditPurchases::Table)
                    .col(CreditPurchases::AccountId)
                    .col(CreditPurchases::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_purchases_idempotency")
                    .table(CreditPurchases::Table)
                    .col(CreditPurchases::AccountId)
                    .col(CreditPurchases::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_purchases_payment_intent")
                    .table(CreditPurchases::Table)
                    .col(CreditPurchases::StripePaymentIntentId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditLedger::Table)
                    .if_not_exists()
                    .col(big_pk_auto(CreditLedger::Id))
                    .col(string(CreditLedger::AccountId))
                    .col(big_integer(CreditLedger::Delta))
                    .col(big_integer(CreditLedger::BalanceAfter))
                    .col(string(CreditLedger::Reason))
                    .col(string(CreditLedger::Reference))
                    .col(timestamp_with_time_zone(CreditLedger::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditLedger::Table, CreditLedger::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_ledger_reason_reference")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::Reason)
                    .col(CreditLedger::Reference)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_ledger_account_id")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::AccountId)
                    .col(CreditLedger::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StripeEvents::Table)
                    .if_not_exists()
                    .col(string(StripeEvents::Id).primary_key())
                    .col(string(StripeEvents::EventType))
                    .col(string_null(StripeEvents::CheckoutSessionId))
                    .col(text(StripeEvents::Payload))
                    .col(string(StripeEvents::Outcome))
                    .col(text_null(StripeEvents::Error))
                    .col(timestamp_with_time_zone(StripeEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(StripeEvents::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_events_outcome_received_at")
                    .table(StripeEvents::Table)
                    .col(StripeEvents::Outcome)
                    .col(StripeEvents::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StripeEvents::Table.into_iden(),
            CreditLedger::Table.into_iden(),
            CreditPurchases::Table.into_iden(),
            CreditPacks::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Email,
    CreditBalance,
    IsTrialUser,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditPacks {
    Table,
    Id,
    Name,
    Credits,
    UnitAmount,
    Currency,
    StripePriceId,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditPurchases {
    Table,
    Id,
    AccountId,
    CreditPackId,
    Quantity,
    Amount,
    Currency,
    AmountRefunded,
    StripeCheckoutSessionId,
    StripePaymentIntentId,
    CheckoutUrl,
    IdempotencyKey,
    Status,
    CreatedAt,
    CompletedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditLedger {
    Table,
    Id,
    AccountId,
    Delta,
    BalanceAfter,
    Reason,
    Reference,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    EventType,
    CheckoutSessionId,
    Payload,
    Outcome,
    Error,
    ReceivedAt,
    ProcessedAt,
}
