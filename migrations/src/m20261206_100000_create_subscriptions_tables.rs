//! Subscriptions through Stripe Billing: `subscriptions` (each Stripe subscription's state as its
//! newest event left it) and `subscription_invoices` (each subscription invoice, the allowance it
//! granted and what was refunded of it).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .if_not_exists()
                    // Stripe's subscription id.
                    .col(string(Subscriptions::Id).primary_key())
                    .col(string(Subscriptions::AccountId))
                    .col(string(Subscriptions::PlanId))
                    .col(string_null(Subscriptions::StripeCustomerId))
                    // `incomplete`, `active`, `past_due`, `canceled`, … (Stripe's statuses).
                    .col(string_len(Subscriptions::Status, 32))
                    .col(timestamp_with_time_zone_null(Subscriptions::CurrentPeriodStart))
                    .col(timestamp_with_time_zone_null(Subscriptions::CurrentPeriodEnd))
                    .col(boolean(Subscriptions::CancelAtPeriodEnd).default(false))
                    .col(timestamp_with_time_zone_null(Subscriptions::CanceledAt))
                    // The Stripe event that set this state: its `created` × 10 + the event
                    // kind's rank; an older event changes nothing. 0: known from an invoice only.
                    .col(big_integer(Subscriptions::StateVersion).default(0))
                    .col(timestamp_with_time_zone(Subscriptions::CreatedAt))
                    .col(timestamp_with_time_zone(Subscriptions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Subscriptions::Table, Subscriptions::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_subscriptions_account_id")
                    .table(Subscriptions::Table)
                    .col(Subscriptions::AccountId)
                    .col(Subscriptions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SubscriptionInvoices::Table)
                    .if_not_exists()
                    // Stripe's invoice id; also the reference of its allowance lot and entry.
                    .col(string(SubscriptionInvoices::Id).primary_key())
                    .col(string(SubscriptionInvoices::SubscriptionId))
                    .col(string(SubscriptionInvoices::AccountId))
                    .col(string(SubscriptionInvoices::PlanId))
                    // `subscription_create`, `subscription_cycle`, `subscription_update`.
                    .col(string_len(SubscriptionInvoices::BillingReason, 32))
                    // The period paid for: the invoice line's `period`.
                    .col(timestamp_with_time_zone(SubscriptionInvoices::PeriodStart))
                    .col(timestamp_with_time_zone(SubscriptionInvoices::PeriodEnd))
                    // Minor units of `currency`.
                    .col(big_integer(SubscriptionInvoices::AmountPaid))
                    .col(string_len(SubscriptionInvoices::Currency, 3))
                    .col(big_integer(SubscriptionInvoices::AmountRefunded).default(0))
                    // Allowance credits granted for it (0 until paid).
                    .col(big_integer(SubscriptionInvoices::Credits).default(0))
                    .col(string_null(SubscriptionInvoices::StripePaymentIntentId))
                    .col(string_null(SubscriptionInvoices::LotId))
                    // `payment_failed`, `paid`, `refunded`.
                    .col(string_len(SubscriptionInvoices::Status, 32))
                    .col(timestamp_with_time_zone(SubscriptionInvoices::CreatedAt))
                    .col(timestamp_with_time_zone(SubscriptionInvoices::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SubscriptionInvoices::Table, SubscriptionInvoices::SubscriptionId)
                            .to(Subscriptions::Table, Subscriptions::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SubscriptionInvoices::Table, SubscriptionInvoices::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_subscription_invoices_subscription")
                    .table(SubscriptionInvoices::Table)
                    .col(SubscriptionInvoices::SubscriptionId)
                    .col(SubscriptionInvoices::PeriodEnd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_subscription_invoices_payment_intent")
                    .table(SubscriptionInvoices::Table)
                    .col(SubscriptionInvoices::StripePaymentIntentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SubscriptionInvoices::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Subscriptions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    AccountId,
    PlanId,
    StripeCustomerId,
    Status,
    CurrentPeriodStart,
    CurrentPeriodEnd,
    CancelAtPeriodEnd,
    CanceledAt,
    StateVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SubscriptionInvoices {
    Table,
    Id,
    SubscriptionId,
    AccountId,
    PlanId,
    BillingReason,
    PeriodStart,
    PeriodEnd,
    AmountPaid,
    Currency,
    AmountRefunded,
    Credits,
    StripePaymentIntentId,
    LotId,
    Status,
    CreatedAt,
    UpdatedAt,
}
