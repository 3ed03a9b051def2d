//! Schema migrations for `credits`, one file per change. Migrations are immutable once landed:
//! SeaORM tracks them by name only, so a schema change is always a new file.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_billing_tables;
mod m20261127_000002_create_adjustments_and_job_locks;
mod m20261201_000001_create_spend_tables;
mod m20261206_000001_create_money_loop_tables;
mod m20261206_000002_create_plans_table;
mod m20261206_000003_add_lot_values_and_moves;
mod m20261206_100000_create_subscriptions_tables;
mod m20261206_230000_create_console_audit;

/// Every migration of the service, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_billing_tables::Migration),
            Box::new(m20261127_000002_create_adjustments_and_job_locks::Migration),
            Box::new(m20261201_000001_create_spend_tables::Migration),
            Box::new(m20261206_000001_create_money_loop_tables::Migration),
            Box::new(m20261206_000002_create_plans_table::Migration),
            Box::new(m20261206_000003_add_lot_values_and_moves::Migration),
            Box::new(m20261206_100000_create_subscriptions_tables::Migration),
            Box::new(m20261206_230000_create_console_audit::Migration),
        ]
    }
}
