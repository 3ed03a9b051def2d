//! The five fault scenarios. Each runs the traffic in the background while a controller
//! injects the fault `runs` times at random moments, then judges what the calls were answered
//! during the fault, and finally the invariants (`Rig::judge`).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{
    Database, FaultArgs, Scenario,
    check::Tally,
    moments::Moments,
    rig::{Rig, Store, store},
    traffic::{Answer, Op, Record},
};

/// Runs the chosen scenario: how many faults it injected, and the tally.
pub(super) async fn run(args: &FaultArgs) -> anyhow::Result<(u32, Tally)> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("seed {seed}");
    let mut moments = Moments(seed.max(1));
    if args.scenario == Scenario::TopUpKill {
        return super::top_up::run(args, &mut moments).await;
    }
    let (replicas, store) = match args.scenario {
        Scenario::Kill | Scenario::Sigterm | Scenario::TopUpKill => (1, store(args.database)),
        Scenario::PgOutage => (1, Store::Postgres),
        Scenario::Replicas => (2, Store::Postgres),
        Scenario::DiskFull => (
            1,
            Store::Sqlite {
                tmpfs: Some("64m".into()),
            },
        ),
    };
    if matches!(args.scenario, Scenario::PgOutage | Scenario::Replicas) && args.database != Database::Postgres
    {
        anyhow::bail!("this scenario runs on PostgreSQL: pass --database postgres");
    }
    if args.scenario == Scenario::DiskFull && args.database != Database::Sqlite {
        anyhow::bail!("disk-full runs on SQLite");
    }
    let sigterm = args.scenario == Scenario::Sigterm;
    // SIGTERM comes while purchases wait on a slow Stripe, and with no delay before draining.
    let extra = if sigterm {
        let stripe = super::stripe::start().await?;
        vec![
            ("STRIPE_SECRET_KEY", "sk_test_faults".to_owned()),
            ("STRIPE_API_BASE", format!("http://{stripe}")),
            ("SHUTDOWN_DELAY", "0".to_owned()),
        ]
    } else {
        Vec::new()
    };
    let (mut rig, mut services) = Rig::new(args, replicas, store, &extra).await?;
    rig.traffic.holds = sigterm;
    rig.traffic.purchases = sigterm;

    let stop = CancellationToken::new();
    let load = {
        let (traffic, stop) = (rig.traffic.clone(), stop.clone());
        let (concurrency, limit) = (args.concurrency, Duration::from_secs(600));
        tokio::spawn(async move { traffic.run(concurrency, stop, limit).await })
    };
    let core_like = sigterm.then(|| {
        let replicas = rig.launches.iter().map(|l| l.grpc).collect();
        let account = rig.traffic.accounts[0].clone();
        tokio::spawn(super::core_like::run(replicas, account, stop.clone()))
    });
    let mut tally = Tally::default();
    let mut windows = Vec::new();
    for _ in 0..args.runs {
        tokio::time::sleep(moments.between(Duration::from_millis(300), args.load())).await;
        match args.scenario {
            Scenario::Kill | Scenario::TopUpKill => {
                services.remove(0).kill().await?;
                services.insert(0, rig.launches[0].start(&rig.http).await?);
            }
            Scenario::Sigterm => {
                let service = services.remove(0);
                let at = Instant::now();
                service.terminate()?;
                match service.wait(Duration::from_secs(30)).await? {
                    Some(0) => {}
                    code => tally.violation(format!("exit code {code:?} after SIGTERM, not 0")),
                }
                services.insert(0, rig.launches[0].start(&rig.http).await?);
                windows.push((at, Instant::now()));
            }
            Scenario::PgOutage => windows.push(outage(&rig, args, &mut tally).await?),
            Scenario::DiskFull => windows.push(disk_full(&rig, args, &mut tally).await?),
            Scenario::Replicas => {
                let at = Instant::now();
                services.remove(0).kill().await?;
                tokio::time::sleep(args.load()).await;
                windows.push((at, Instant::now()));
                services.insert(0, rig.launches[0].start(&rig.http).await?);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let records = load.await?;
    judge_answers(args.scenario, &records, &windows, &mut tally);
    if let Some(core_like) = core_like {
        let calls = core_like.await?;
        let answered = calls
            .iter()
            .filter(|c| c.end == super::core_like::StreamEnd::Answered)
            .count();
        eprintln!(
            "grpc-core-like callers: {} streams, {answered} answered",
            calls.len()
        );
        // Each stream is answered or, above a GOAWAY's last stream id, never processed.
        for call in calls
            .iter()
            .filter(|c| matches!(c.end, super::core_like::StreamEnd::Cut(_)))
        {
            tally.violation(format!("grpc-core-like {} cut: {:?}", call.method, call.end));
        }
    }

    let survivor = usize::from(args.scenario == Scenario::Replicas);
    tally.add(rig.judge(&records, survivor, args.concurrency).await?);
    if args.scenario == Scenario::DiskFull {
        let full = rig.log_lines("full");
        match full.first() {
            Some(line) => eprintln!("the log says: {}", line.chars().take(400).collect::<String>()),
            None => tally.violation("no log line says the disk is full".into()),
        }
    }
    eprintln!(
        "calls {} (acknowledged {})",
        records.len(),
        records.iter().filter(|r| r.answer.acknowledged()).count()
    );
    for service in services {
        service.terminate()?;
        if let Some(code) = service.wait(Duration::from_secs(30)).await?.filter(|c| *c != 0) {
            tally.violation(format!("exit code {code} at the end"));
        }
    }
    rig.finish(!tally.violations.is_empty()).await;
    Ok((args.runs, tally))
}

/// What the calls made during each fault window were answered.
fn judge_answers(scenario: Scenario, records: &[Record], windows: &[(Instant, Instant)], tally: &mut Tally) {
    for (n, &(from, to)) in windows.iter().enumerate() {
        match scenario {
            Scenario::PgOutage => {
                let during: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.sent >= from && r.answered <= to)
                    .collect();
                if during.is_empty() {
                    tally.violation(format!("outage {n}: no call was answered during it"));
                }
                eprintln!(
                    "outage {n}: {} call(s) sent and answered while it lasted",
                    during.len()
                );
                for record in during {
                    let expected = match record.op {
                        Op::Event { .. } => Answer::Http(503),
                        Op::Consume { .. } | Op::Hold { .. } | Op::Purchase { .. } => {
                            Answer::Grpc(tonic::Code::Unavailable)
                        }
                    };
                    if record.answer != expected {
                        tally.violation(format!(
                            "outage {n}: {:?} answered {:?}, not {expected:?}",
                            record.op, record.answer
                        ));
                    }
                }
            }
            Scenario::Sigterm => {
                // Calls sent well before the signal (and after the previous restart) were on
                // the server by then: each gets its real answer, which here is always success.
                let margin = Duration::from_millis(100);
                let since = windows.get(n.wrapping_sub(1)).map(|w| w.1);
                let sent_before: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.sent + margin < from && since.is_none_or(|s| r.sent > s))
                    .collect();
                let in_flight = sent_before.iter().filter(|r| r.answered > from).count();
                eprintln!("SIGTERM {n}: {in_flight} call(s) in flight");
                for record in sent_before.into_iter().filter(|r| !r.answer.acknowledged()) {
                    tally.violation(format!(
                        "SIGTERM {n}: in-flight {:?} answered {:?}",
                        record.op, record.answer
                    ));
                }
            }
            Scenario::Replicas => {
                let survivor: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.replica == 1 && r.sent >= from && r.answered <= to)
                    .collect();
                if survivor.is_empty() {
                    tally.violation(format!("kill {n}: the survivor answered nothing"));
                }
                for record in survivor.iter().filter(|r| !r.answer.acknowledged()) {
                    tally.violation(format!(
                        "kill {n}: the survivor answered {:?} {:?}",
                        record.op, record.answer
                    ));
                }
            }
            Scenario::DiskFull => {
                let failed = records
                    .iter()
                    .filter(|r| r.sent >= from && r.answered <= to && !r.answer.acknowledged())
                    .count();
                eprintln!("disk full {n}: {failed} call(s) refused while it lasted");
            }
            Scenario::Kill | Scenario::TopUpKill => {}
        }
    }
}

/// Health and readiness as a prober sees them now.
async fn probe(rig: &Rig) -> (Option<u16>, Option<ServingStatus>) {
    let launch = &rig.launches[0];
    let ready = rig
        .http
        .get(format!("{}/readyz", launch.http_url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    let health = match tonic::transport::Channel::from_shared(launch.grpc_url()) {
        Ok(channel) => HealthClient::new(channel.connect_lazy())
            .check(HealthCheckRequest {
                service: "credits.v1.CreditsService".into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner().status()),
        Err(_) => None,
    };
    (ready, health)
}

/// Stops the scenarios' PostgreSQL for `--outage` seconds, probing `/readyz` and health all the
/// while; then starts it and waits for the service to say it serves again.
async fn outage(rig: &Rig, args: &FaultArgs, tally: &mut Tally) -> anyhow::Result<(Instant, Instant)> {
    let Some(cluster) = &rig.cluster else {
        anyhow::bail!("no PostgreSQL cluster");
    };
    cluster.stop()?;
    let stopped = Instant::now();
    let length = Duration::from_secs(args.outage.max(1));
    // Health is re-probed every 250 ms with a 2 s timeout: allow it 3 s to notice.
    let noticed = stopped + Duration::from_secs(3).min(length / 2 + Duration::from_millis(500));
    let mut seen = 0;
    while stopped.elapsed() < length {
        let at = Instant::now();
        let (ready, health) = probe(rig).await;
        // The server starts only after this loop: every probe in it saw the outage.
        if at >= noticed {
            seen += 1;
            if ready != Some(503) {
                tally.violation(format!("/readyz answered {ready:?} during the outage, not 503"));
            }
            if health != Some(ServingStatus::NotServing) {
                tally.violation(format!(
                    "health said {health:?} during the outage, not NOT_SERVING"
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if seen == 0 {
        tally.violation("the outage was too short to probe".into());
    }
    let restarting = Instant::now();
    cluster.start().await?;
    let back = Instant::now();
    loop {
        if let (Some(200), Some(ServingStatus::Serving)) = probe(rig).await {
            eprintln!(
                "recovered {} ms after PostgreSQL was back",
                back.elapsed().as_millis()
            );
            break;
        }
        if back.elapsed() > Duration::from_secs(30) {
            tally.violation("the service did not recover within 30 s of PostgreSQL's return".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((stopped, restarting))
}

/// Fills the SQLite database's tmpfs for `--outage` seconds, then frees it and waits until a
/// write succeeds again.
async fn disk_full(rig: &Rig, args: &FaultArgs, tally: &mut Tally) -> anyhow::Result<(Instant, Instant)> {
    use std::io::Write;
    let Some(mount) = &rig.mount else {
        anyhow::bail!("no tmpfs");
    };
    let filler = mount.path().join("filler");
    {
        let mut file = std::fs::File::create(&filler)?;
        let chunk = vec![0_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last bytes the chunks left.
        while file.write_all(&chunk[..512]).is_ok() {}
        let _ = file.sync_all();
    }
    let filled = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.outage.max(1))).await;
    let freeing = Instant::now();
    std::fs::remove_file(&filler)?;
    let mut client = rig.traffic.targets[0].client();
    let mut k = 0;
    loop {
        k += 1;
        let probe = client
            .ensure_account(
                rig.traffic.targets[0].request(credits::grpc::pb::EnsureAccountRequest {
                    account_id: format!("probe-{}-{k}", rig.traffic.run),
                    email: format!("probe-{}-{k}@faults.example", rig.traffic.run),
                }),
            )
            .await;
        if probe.is_ok() {
            eprintln!(
                "writes succeed again {} ms after the space was freed",
                freeing.elapsed().as_millis()
            );
            break;
        }
        if freeing.elapsed() > Duration::from_secs(30) {
            tally.violation("writes did not succeed within 30 s of freeing the disk".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((filled, freeing))
}
