//! `credits-bench faults <scenario>`: the release binary under faults, on loopback, bounded in
//! time; each scenario prints one result line (scenario, database, runs, events and debits
//! acknowledged, lost, doubled) and exits non-zero on any violation. See BENCHMARKS.md.
//!
//! - `kill`: `kill -9` at random moments under load, restarted on the same database.
//! - `pg-outage`: the PostgreSQL server stopped for a while under load, then started again.
//! - `disk-full`: the SQLite database's file system filled up under load, then freed.
//! - `sigterm`: SIGTERM under load (with holds, purchases waiting on a slow Stripe, and callers
//!   that write HTTP/2 like grpc-core): every call in flight answered, never cut, exit 0.
//! - `replicas`: two replicas on one PostgreSQL database, one killed under load.
//! - `top-up-kill`: `kill -9` while auto top-ups' PaymentIntents are being created by a slow
//!   fake Stripe; each PaymentIntent once per key, credited once, nothing left charging.
//!
//! After each: every event is redelivered and every key replayed, and the invariants checked
//! through gRPC (`check`).

mod check;
mod core_like;
mod moments;
mod pg;
mod rig;
mod scenarios;
mod service;
mod stripe;
mod top_up;
mod traffic;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    Kill,
    PgOutage,
    DiskFull,
    Sigterm,
    Replicas,
    TopUpKill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Database {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "credits-bench faults",
    about = "Run the release binary under a fault; check nothing was lost or doubled"
)]
pub(crate) struct FaultArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: Database,
    /// Kills (`kill`, `top-up-kill`) or repetitions (the other scenarios).
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Seconds of load around each fault.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Seconds the fault lasts (`pg-outage`, `disk-full`).
    #[arg(long, default_value_t = 5)]
    pub outage: u64,
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 20)]
    pub accounts: usize,
    /// The service binary; default: `credits` beside this one (target/release).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// The PostgreSQL cluster of the fault scenarios' own, created if absent; never the shared one.
    #[arg(long, default_value = "faults")]
    pub pg_cluster: String,
    #[arg(long, default_value_t = 5433)]
    pub pg_port: u16,
    /// Seed of the random moments (default: the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl FaultArgs {
    fn load(&self) -> Duration {
        Duration::from_secs(self.seconds.max(1))
    }
}

/// Runs the scenario; the process's exit code.
pub(crate) async fn main(args: FaultArgs) -> anyhow::Result<std::process::ExitCode> {
    let started = std::time::Instant::now();
    let (runs, tally) = scenarios::run(&args).await?;
    let name = args
        .scenario
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let database = format!("{:?}", args.database).to_lowercase();
    for violation in &tally.violations {
        println!("violation: {violation}");
    }
    println!(
        "faults scenario={name} database={database} runs={runs} events_acked={} debits_acked={} lost={} doubled={} violations={} seconds={:.1}",
        tally.events_acked,
        tally.debits_acked,
        tally.lost,
        tally.doubled,
        tally.violations.len(),
        started.elapsed().as_secs_f64()
    );
    let ok = tally.violations.is_empty() && tally.lost == 0 && tally.doubled == 0;
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
