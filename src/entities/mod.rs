//! SeaORM entities, one file per table. The schema itself lives in `migrations/`.

pub mod account;
pub mod credit_ledger;
pub mod credit_pack;
pub mod credit_purchase;
pub mod stripe_event;
