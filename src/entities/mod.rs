//! SeaORM entities, one file per table. The schema itself lives in `migrations/`.

pub mod account;
pub mod account_event;
pub mod console_audit;
pub mod credit_hold;
pub mod credit_ledger;
pub mod credit_lot;
pub mod credit_pack;
pub mod credit_purchase;
pub mod idempotency_key;
pub mod job_lock;
pub mod payment_refund_total;
pub mod plan;
pub mod stripe_dispute;
pub mod stripe_event;
pub mod stripe_refund;
pub mod subscription;
pub mod subscription_invoice;
pub mod top_up_attempt;
