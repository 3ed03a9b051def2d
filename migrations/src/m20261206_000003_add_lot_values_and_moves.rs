//! What credits are worth and where every entry took them from: each lot keeps the money paid
//! for it (`value`, `currency`), what is left of that value, the credits its expiry wrote off
//! that no refund has accounted for, and its rollover terms; each ledger entry keeps its moves
//! (`allocations`: the lots, or the debt, it changed, with their value).
//!
//! Existing purchase and top-up lots get their purchase's amount; everything else was free.
//! Entries written before this change have no moves (NULL).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let lot_columns = [
            big_integer(CreditLots::Value).default(0).to_owned(),
            big_integer(CreditLots::ValueRemaining).default(0).to_owned(),
            string_len_null(CreditLots::Currency, 3).to_owned(),
            big_integer(CreditLots::Expired).default(0).to_owned(),
            big_integer_null(CreditLots::RolloverCap).to_owned(),
            timestamp_with_time_zone_null(CreditLots::RolloverUntil).to_owned(),
        ];
        for column in lot_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(CreditLots::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(CreditLedger::Table)
                    // JSON [[lot_id|null, credits, value, source|null, currency|null], …]
                    .add_column(text_null(CreditLedger::Allocations))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE credit_lots SET \
               value = (SELECT p.amount FROM credit_purchases p \
                 WHERE p.stripe_checkout_session_id = credit_lots.reference), \
               currency = (SELECT p.currency FROM credit_purchases p \
                 WHERE p.stripe_checkout_session_id = credit_lots.reference) \
             WHERE source IN ('purchase', 'top_up') AND EXISTS (SELECT 1 FROM credit_purchases p \
               WHERE p.stripe_checkout_session_id = credit_lots.reference)",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE credit_lots SET value_remaining = value * remaining / credits WHERE credits > 0 AND value > 0",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CreditLedger::Table)
                    .drop_column(CreditLedger::Allocations)
                    .to_owned(),
            )
            .await?;
        for column in [
            CreditLots::Value,
            CreditLots::ValueRemaining,
            CreditLots::Currency,
            CreditLots::Expired,
            CreditLots::RolloverCap,
            CreditLots::RolloverUntil,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(CreditLots::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum CreditLots {
    Table,
    Value,
    ValueRemaining,
    Currency,
    Expired,
    RolloverCap,
    RolloverUntil,
}

#[derive(DeriveIden)]
enum CreditLedger {
    Table,
    Allocations,
}
