//! `credits-bench`: drives a running credits service and prints one JSON line per scenario, then
//! a table. Each figure stands beside a ceiling measured in the same run (see `ceiling`), since
//! the machine is shared and absolute numbers drift between runs. `credits-bench faults <scenario>`
//! instead runs the service itself under a fault and checks nothing was lost (`faults`);
//! `credits-bench reports` times the finance reports over a million entries (`reports`). See
//! BENCHMARKS.md.

mod ceiling;
mod faults;
mod load;
mod reports;
mod scenarios;
mod webhook;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use scenarios::{Outcome, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Webhook,
    Duplicates,
    GrpcBalance,
    Consume,
    /// `consume` with balance alerts and auto top-up on (needs the service's Stripe to answer
    /// PaymentIntents: `.ci/fake_stripe.py`).
    ConsumeLoop,
    ReserveCapture,
    /// `consume` with every caller spending from ONE account: the single writer's batches on
    /// a hot row.
    HotAccount,
    /// ConsumeCreditsBatch of 1,000 debits per call (a figure per call; debits/s in the notes).
    ConsumeBatch,
    /// Every scenario, then the ceilings.
    All,
    /// Only the ceilings (no service needed).
    Ceilings,
    /// Serve the bare tonic echo the `echo` ceiling measures (started by the ceiling itself).
    #[value(hide = true)]
    EchoServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(
    name = "credits-bench",
    about = "Load a running credits service; print figures beside same-run ceilings"
)]
struct Args {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// The service's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// The service's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// The service's STRIPE_WEBHOOK_SECRET.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET")]
    secret: String,
    /// A GRPC_AUTH_TOKENS token, when the service wants one.
    #[arg(long, env = "CREDITS_BENCH_TOKEN")]
    token: Option<String>,
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// Seconds per scenario.
    #[arg(long, short = 'd', default_value_t = 20)]
    duration: u64,
    #[arg(long, short = 'm', default_value_t = 1000)]
    accounts: usize,
    /// Copies of the one event in `duplicates`.
    #[arg(long, default_value_t = 50)]
    copies: usize,
    /// Which database the service runs on, for the ceilings.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// With `--backend postgres`: a URL the ceilings may create scratch databases from.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_admin: String,
    /// Skip the ceilings.
    #[arg(long)]
    no_ceilings: bool,
    /// Create the accounts with SQL in this database (the service's) instead of EnsureAccount:
    /// lets the same command measure a build that has no EnsureAccount.
    #[arg(long)]
    seed_database: Option<String>,
}

fn line(outcome: &Outcome, concurrency: usize, batch: Option<f64>) -> Value {
    let m = &outcome.measured;
    json!({
        "scenario": outcome.scenario,
        "concurrency": concurrency,
        "ok": m.ok,
        "failed": m.failed,
        "seconds": (m.elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "per_second": m.per_second().round(),
        "p50_ms": (m.quantile_ms(0.5) * 100.0).round() / 100.0,
        "p99_ms": (m.quantile_ms(0.99) * 100.0).round() / 100.0,
        "exact": outcome.exact,
        "mean_batch": batch.map(|b| (b * 10.0).round() / 10.0),
        "notes": outcome.notes,
    })
}

/// The writer's batch histogram (sum, count) from `/metrics`.
async fn batches(http: &reqwest::Client, base: &str) -> Option<(f64, f64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        read("credits_writer_batch_size_sum")?,
        read("credits_writer_batch_size_count")?,
    ))
}

async fn measured(
    target: &Target,
    scenario: Scenario,
    copies: usize,
) -> anyhow::Result<(Outcome, Option<f64>)> {
    let base = target
        .webhook_url
        .trim_end_matches("/account/stripe-webhook/")
        .to_owned();
    let before = batches(&target.http, &base).await;
    // The whole name: `consume` and `consume-loop` must not share accounts (or keys).
    let target = &target.for_scenario(&format!("{scenario:?}").to_lowercase());
    let mut outcome = match scenario {
        Scenario::Webhook => scenarios::webhook(target).await?,
        Scenario::Duplicates => scenarios::duplicates(target, copies).await?,
        Scenario::GrpcBalance => scenarios::grpc_balance(target).await?,
        Scenario::Consume => scenarios::consume(target).await?,
        Scenario::ConsumeLoop => scenarios::consume_loop(target).await?,
        Scenario::ReserveCapture => scenarios::reserve_capture(target).await?,
        Scenario::HotAccount => scenarios::hot_account(target).await?,
        Scenario::ConsumeBatch => scenarios::consume_batch(target).await?,
        Scenario::All | Scenario::Ceilings | Scenario::EchoServer => anyhow::bail!("not one scenario"),
    };
    if let Some(err) = target.first_error.get() {
        outcome.notes["first_error"] = Value::from(err.as_str());
    }
    let after = batches(&target.http, &base).await;
    let batch = match (before, after) {
        (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => Some((s1 - s0) / (c1 - c0)),
        _ => None,
    };
    Ok((outcome, batch))
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    // `credits-bench faults …` runs the service itself under a fault (see `faults`).
    if std::env::args().nth(1).as_deref() == Some("faults") {
        let args = faults::FaultArgs::parse_from(std::env::args().skip(1));
        return faults::main(args).await;
    }
    if std::env::args().nth(1).as_deref() == Some("reports") {
        let args = reports::ReportArgs::parse_from(std::env::args().skip(1));
        return reports::main(args).await;
    }
    let args = Args::parse();
    if args.scenario == Scenario::EchoServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        ceiling::serve_echo(listener).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let duration = Duration::from_secs(args.duration);
    // Connected on first use, so `ceilings` runs without a service.
    let grpc = tonic::transport::Channel::from_shared(args.grpc.clone())?.connect_lazy();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let target = Target {
        grpc,
        http,
        webhook_url: format!("{}/account/stripe-webhook/", args.http.trim_end_matches('/')),
        secret: args.secret.clone(),
        token: args.token.clone(),
        concurrency: args.concurrency,
        duration,
        accounts: args.accounts,
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        seed_database: args.seed_database.clone(),
        first_error: std::sync::Arc::default(),
    };
    let chosen: Vec<Scenario> = match args.scenario {
        Scenario::All => vec![
            Scenario::Webhook,
            Scenario::Duplicates,
            Scenario::GrpcBalance,
            Scenario::Consume,
            Scenario::ConsumeLoop,
            Scenario::ReserveCapture,
            Scenario::HotAccount,
            Scenario::ConsumeBatch,
        ],
        Scenario::Ceilings | Scenario::EchoServer => Vec::new(),
        one => vec![one],
    };
    let mut table: Vec<(String, f64, f64, bool, Option<f64>)> = Vec::new();
    for scenario in chosen {
        let (outcome, batch) = measured(&target, scenario, args.copies).await?;
        println!("{}", line(&outcome, args.concurrency, batch));
        table.push((
            outcome.scenario.to_owned(),
            outcome.measured.per_second(),
            outcome.measured.quantile_ms(0.99),
            outcome.exact,
            batch,
        ));
    }

    let mut ceilings: Vec<(&str, f64)> = Vec::new();
    if !args.no_ceilings {
        let admin = (args.backend == Backend::Postgres).then_some(args.postgres_admin.as_str());
        let writer = ceiling::writer(admin, args.concurrency, duration, args.accounts.min(1000)).await?;
        println!(
            "{}",
            json!({"ceiling": "writer", "backend": format!("{:?}", args.backend).to_lowercase(), "per_second": writer.per_second().round(), "p99_ms": writer.quantile_ms(0.99)})
        );
        ceilings.push(("writer", writer.per_second()));
        if let Some(admin) = admin {
            match ceiling::pgbench(admin, args.concurrency, duration, args.accounts.min(1000)).await {
                Ok(tps) => {
                    println!("{}", json!({"ceiling": "pgbench", "per_second": tps.round()}));
                    ceilings.push(("pgbench", tps));
                }
                Err(err) => eprintln!("pgbench ceiling skipped: {err}"),
            }
        }
        let echo = ceiling::echo(args.concurrency, duration).await?;
        println!(
            "{}",
            json!({"ceiling": "echo", "per_second": echo.per_second().round(), "p99_ms": echo.quantile_ms(0.99)})
        );
        ceilings.push(("echo", echo.per_second()));
    }

    println!();
    println!(
        "{:<16} {:>10} {:>9} {:>6} {:>8}  ratio to ceilings",
        "scenario", "per s", "p99 ms", "exact", "batch"
    );
    for (scenario, per_second, p99, exact, batch) in table {
        let against: &[&str] = match scenario.as_str() {
            "webhook" => &["writer", "pgbench"],
            "consume" | "consume-loop" | "reserve-capture" => &["writer"],
            "duplicates" => &[],
            _ => &["echo"],
        };
        let ratios: Vec<String> = ceilings
            .iter()
            .filter(|(name, _)| against.contains(name))
            .map(|(name, ceiling)| {
                format!(
                    "{:.0}% of {name} ({ceiling:.0}/s)",
                    100.0 * per_second / ceiling.max(1e-9)
                )
            })
            .collect();
        println!(
            "{scenario:<16} {per_second:>10.0} {p99:>9.1} {:>6} {:>8}  {}",
            exact,
            batch.map_or_else(|| "-".to_owned(), |b| format!("{b:.1}")),
            ratios.join(", ")
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
