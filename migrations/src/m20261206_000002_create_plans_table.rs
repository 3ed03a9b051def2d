//! Subscription plans (`[[plan]]` in the packs file): `plans`, loaded at every start like
//! `credit_packs`; a plan removed from the file is deactivated, never deleted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Plans::Table)
                    .if_not_exists()
                    .col(string(Plans::Id).primary_key())
                    .col(string(Plans::Name))
                    // Credits granted each period.
                    .col(big_integer(Plans::Credits))
                    // `month` or `year`.
                    .col(string_len(Plans::Interval, 8))
                    // Minor units of `currency`, charged each period.
                    .col(big_integer(Plans::UnitAmount))
                    .col(string_len(Plans::Currency, 3))
                    .col(big_integer(Plans::RolloverCap).default(0))
                    // A recurring Stripe Price; NULL until `packs sync` creates or finds it.
                    .col(string_null(Plans::StripePriceId).unique_key())
                    .col(boolean(Plans::Active).default(true))
                    .col(timestamp_with_time_zone(Plans::CreatedAt))
                    .col(timestamp_with_time_zone(Plans::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Plans::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Plans {
    Table,
    Id,
    Name,
    Credits,
    Interval,
    UnitAmount,
    Currency,
    RolloverCap,
    StripePriceId,
    Active,
    CreatedAt,
    UpdatedAt,
}
