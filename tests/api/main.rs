//! Integration tests: the real service over real gRPC and HTTP, on SQLite by default and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.

mod helpers;

mod cli;
mod database_outage;
mod grpc_auth;
mod grpc_balance;
mod grpc_packs;
mod grpc_purchase;
mod grpc_purchase_concurrency;
mod grpc_purchases;
mod health;
mod holds;
mod http_timeouts;
mod ledger_writer;
mod lifecycle;
mod load_shedding;
mod logging;
mod metrics;
mod operations;
mod packs_sync;
mod settlement_races;
mod telemetry;
mod webhook_adjustments;
mod webhook_concurrency;
mod webhook_failures;
mod webhook_flood;
mod webhook_fulfilment;
mod webhook_input;
