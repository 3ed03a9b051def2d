//! The spend side: credit lots (what a balance is made of, with expiry), holds, idempotency
//! records kept forever, ledger entry kinds and metadata, account debt, and pack expiry.
//!
//! Existing balances become one opening lot per account (or debt, when negative), so the
//! invariant `balance = unexpired lots' remaining - debt` holds from the first start.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CreditLots::Table)
                    .if_not_exists()
                    .col(string(CreditLots::Id).primary_key())
                    .col(string(CreditLots::AccountId))
                    // purchase | grant | trial | import
                    .col(string(CreditLots::Source))
                    .col(string(CreditLots::Reference))
                    .col(big_integer(CreditLots::Credits))
                    // Not yet consumed, clawed back or expired; includes what holds reserve.
                    .col(big_integer(CreditLots::Remaining))
                    // Reserved by active holds; never expires while held.
                    .col(big_integer(CreditLots::Held).default(0))
                    .col(timestamp_with_time_zone_null(CreditLots::ExpiresAt))
                    .col(timestamp_with_time_zone(CreditLots::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditLots::Table, CreditLots::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_lots_account_remaining")
                    .table(CreditLots::Table)
                    .col(CreditLots::AccountId)
                    .col(CreditLots::Remaining)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_lots_expires_at")
                    .table(CreditLots::Table)
                    .col(CreditLots::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditHolds::Table)
                    .if_not_exists()
                    .col(string(CreditHolds::Id).primary_key())
                    .col(string(CreditHolds::AccountId))
                    .col(big_integer(CreditHolds::Credits))
                    // active | captured | released | expired
                    .col(string(CreditHolds::Status))
                    .col(timestamp_with_time_zone(CreditHolds::ExpiresAt))
                    // JSON [[lot_id, credits], …]: which lots the hold reserves, in burn order.
                    .col(text(CreditHolds::Allocations))
                    .col(string(CreditHolds::Reason))
                    .col(text(CreditHolds::Metadata))
                    .col(big_integer_null(CreditHolds::CapturedCredits))
                    .col(big_integer_null(CreditHolds::CaptureEntryId))
                    .col(timestamp_with_time_zone(CreditHolds::CreatedAt))
                    .col(timestamp_with_time_zone_null(CreditHolds::ClosedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditHolds::Table, CreditHolds::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_holds_account_status")
                    .table(CreditHolds::Table)
                    .col(CreditHolds::AccountId)
                    .col(CreditHolds::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_holds_status_expires_at")
                    .table(CreditHolds::Table)
                    .col(CreditHolds::Status)
                    .col(CreditHolds::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(string(IdempotencyKeys::AccountId))
                    .col(string(IdempotencyKeys::Operation))
                    .col(string(IdempotencyKeys::Key))
                    // SHA-256 of the request's parameters: the same key with other ones is refused.
                    .col(string(IdempotencyKeys::Fingerprint))
                    // The first answer, replayed to every repeat.
                    .col(text(IdempotencyKeys::Response))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::AccountId)
                            .col(IdempotencyKeys::Operation)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(CreditLedger::Table)
                    .add_column(string(CreditLedger::Kind).default("purchase"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CreditLedger::Table)
                    .add_column(text_null(CreditLedger::Metadata))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(big_integer(Accounts::Debt).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CreditPacks::Table)
                    .add_column(big_integer_null(CreditPacks::ExpiresAfterDays))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CreditPurchases::Table)
                    // When the credits a completed purchase granted expire (its pack's
                    // `expires_after_days` at completion); credits given back later keep it.
                    .add_column(timestamp_with_time_zone_null(CreditPurchases::CreditsExpireAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentRefundTotals::Table)
                    // Refund and dispute facts recorded for the payment: 0 means none to read.
                    .add_column(big_integer(PaymentRefundTotals::Facts).default(0))
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        // Entry kinds from the reasons used so far; a dispute's release gets a reference of its
        // own, since (account, kind, reference) is now what makes an entry unique.
        for sql in [
            "UPDATE credit_ledger SET kind = 'refund' WHERE reason = 'refund'",
            "UPDATE credit_ledger SET kind = 'dispute', reason = 'dispute' WHERE reason = 'dispute_hold'",
            "UPDATE credit_ledger SET kind = 'dispute', reason = 'dispute', reference = reference || '/release' \
             WHERE reason = 'dispute_release'",
            "UPDATE credit_ledger SET kind = 'consumption' WHERE reason NOT IN ('purchase', 'refund', 'dispute')",
            "UPDATE payment_refund_totals SET facts = 1",
        ] {
            db.execute_unprepared(sql).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_credit_ledger_reason_reference")
                    .table(CreditLedger::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_credit_ledger_account_kind_reference")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::AccountId)
                    .col(CreditLedger::Kind)
                    .col(CreditLedger::Reference)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // Opening lots for the balances that exist: never expiring, made of purchases.
        db.execute_unprepared(
            "INSERT INTO credit_lots (id, account_id, source, reference, credits, remaining, held, expires_at, created_at) \
             SELECT 'opening-' || id, id, 'purchase', 'opening-balance', credit_balance, credit_balance, 0, NULL, updated_at \
             FROM accounts WHERE credit_balance > 0",
        )
        .await?;
        db.execute_unprepared("UPDATE accounts SET debt = -credit_balance WHERE credit_balance < 0")
            .await?;

        if manager.get_database_backend() == DbBackend::Postgres {
            // A payload (~4 KB) compressed with lz4 stays in its row: faster to write than
            // pglz, and than moving it out of line uncompressed. Servers built without lz4
            // keep the default.
            db.execute_unprepared(
                "DO $$ BEGIN ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION lz4; \
                 EXCEPTION WHEN feature_not_supported THEN NULL; END $$",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            CreditHolds::Table.into_iden(),
            CreditLots::Table.into_iden(),
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
    Debt,
}

#[derive(DeriveIden)]
enum CreditPacks {
    Table,
    ExpiresAfterDays,
}

#[derive(DeriveIden)]
enum CreditPurchases {
    Table,
    CreditsExpireAt,
}

#[derive(DeriveIden)]
enum PaymentRefundTotals {
    Table,
    Facts,
}

#[derive(DeriveIden)]
enum CreditLedger {
    Table,
    AccountId,
    Kind,
    Reference,
    Metadata,
}

#[derive(DeriveIden)]
enum CreditLots {
    Table,
    Id,
    AccountId,
    Source,
    Reference,
    Credits,
    Remaining,
    Held,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CreditHolds {
    Table,
    Id,
    AccountId,
    Credits,
    Status,
    ExpiresAt,
    Allocations,
    Reason,
    Metadata,
    CapturedCredits,
    CaptureEntryId,
    CreatedAt,
    ClosedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    AccountId,
    Operation,
    Key,
    Fingerprint,
    Response,
    CreatedAt,
}
