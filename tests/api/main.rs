//! Integration tests: the real service over real gRPC and HTTP, on SQLite by default and on
//! PostgreSQL when `TEST_DATABASE_URL` is set.
// A test binary exports nothing: its helpers' `pub` is for the other test modules.
#![allow(unreachable_pub)]

mod helpers;

mod account_event_races;
mod account_event_stream;
mod account_events;
mod auto_top_up;
mod cli;
mod cli_exit_codes;
mod console;
mod console_actions;
mod console_browser;
mod database_outage;
mod finance_reports;
mod grpc_auth;
mod grpc_balance;
mod grpc_packs;
mod grpc_purchase;
mod grpc_purchase_concurrency;
mod grpc_purchases;
mod health;
mod http_timeouts;
mod import;
mod ledger_history;
mod ledger_writer;
mod lifecycle;
mod load_shedding;
mod logging;
mod metrics;
mod monitoring_queries;
mod notify;
mod operations;
mod overdraft;
mod packs_plans;
mod packs_sync;
mod settlement_races;
mod shutdown_drain;
mod spend_accounts;
mod spend_batch;
mod spend_clawbacks;
mod spend_cli;
mod spend_consume;
mod spend_holds;
mod spend_listings;
mod spend_lots;
mod spend_metrics;
mod spend_races;
mod spend_validation;
mod startup_errors;
mod subscriptions;
mod subscriptions_races;
mod subscriptions_refunds;
mod subscriptions_rollover;
mod subscriptions_webhooks;
mod telemetry;
mod webhook_adjustments;
mod webhook_answers;
mod webhook_concurrency;
mod webhook_failures;
mod webhook_flood;
mod webhook_fulfilment;
mod webhook_input;
mod webhook_quantity;
