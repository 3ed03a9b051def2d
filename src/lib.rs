//! `credits`: sells prepaid credit packs through Stripe Checkout and credits accounts exactly
//! once when Stripe's webhook says the payment went through.
//!
//! # Layout
//! Arrows run one way: transports → billing/ops → ledger → stores → entities.
//! - `config`: settings parsed once from the environment.
//! - `app`: the services, built once (ledger, billing, event log, leases, metrics), and the
//!   running service (gRPC + HTTP listeners, the writer, shutdown order).
//! - `grpc/`: `credits.v1.CreditsService`, health and reflection; converts and maps errors.
//! - `webhook/`: `POST /account/stripe-webhook/`: signature, hand-off to billing, error answers.
//! - `console/`: the operator console under `/console` on the HTTP port: sign-in, sessions,
//!   CSRF, roles, pages over the ledger, billing and event store, and its audit log.
//! - `cli/`: the command line over the same services.
//! - `ledger/`: the only code that changes balances: one file per command, the group-commit
//!   writer, posting rules (lots, holds, debt, expiry) and its store.
//! - `billing/`: checkout, Stripe's payloads, Stripe events into ledger postings, refund and
//!   dispute settlement, its own error type.
//! - `event_store/`: the Stripe event store.
//! - `finance/`: reports finance closes the books with (liability, account statements), read
//!   from the ledger's entries and their lot moves, streamed.
//! - `notify/`: account events POSTed, signed, to `NOTIFY_WEBHOOK_URL` (the delivery worker,
//!   its client, signature, backoff and store), and their retention.
//! - `catalog/`: credit packs and subscription plans: the file, the tables, the sync to Stripe.
//! - `ops/`: reconciliation, job leases, the scheduler of periodic jobs, the import files of
//!   accounts and purchases from the Django app.
//! - `stripe/`: the Stripe API calls, over async-stripe.
//! - `entities/`: SeaORM entities; the schema is in the `migration` crate.
//! - `net/`: the connections under both servers: the gRPC accept loop (TLS), the HTTP/2 guard
//!   and lingering close that keep a graceful shutdown graceful.
//! - `health`, `db/`, `shutdown`, `telemetry`: process plumbing.
//! - `vocab` (text-stored enums, one macro) and `report` (an error and its causes on one
//!   line): neutral helpers any module may use.
//! - `metrics` (`GET /metrics`), `limits` (HTTP load shedding and read timeouts): operations.
// Stripe's generated types nest deeply; proving a future that holds them `Send` needs more.
#![recursion_limit = "256"]

pub mod app;
pub mod billing;
pub mod catalog;
pub mod cli;
pub mod config;
pub(crate) mod console;
pub mod db;
pub mod entities;
pub(crate) mod event_store;
pub(crate) mod finance;
pub mod grpc;
pub(crate) mod health;
pub(crate) mod ledger;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod net;
pub(crate) mod notify;
pub mod ops;
pub mod report;
pub(crate) mod shutdown;
pub(crate) mod stripe;
pub mod telemetry;
pub(crate) mod vocab;
pub mod webhook;
