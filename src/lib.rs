//! `credits`: sells prepaid credit packs through Stripe Checkout and credits accounts exactly
//! once when Stripe's webhook says the payment went through.
//!
//! # Layout
//! - `config`: settings parsed once from the environment.
//! - `app`: builds and runs the service (gRPC + HTTP listeners, shutdown order).
//! - `grpc/`: `credits.v1.CreditsService`, health and reflection; converts and maps errors.
//! - `webhook/`: `POST /account/stripe-webhook/`: signature, payload parsing, error answers.
//! - `ledger/`: the domain (accounts, packs, purchases, fulfilment) and its SeaORM store.
//! - `stripe/`: the Stripe API calls, over async-stripe.
//! - `entities/`: SeaORM entities; the schema is in the `migration` crate.
//! - `health`, `db`, `shutdown`, `telemetry`, `cli`: process plumbing.
//! - `metrics` (`GET /metrics`), `limits` (HTTP load shedding): operations.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod grpc;
pub mod health;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod scheduler;
pub mod shutdown;
pub mod stripe;
pub mod telemetry;
pub mod webhook;
