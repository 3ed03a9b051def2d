//! Background jobs of `serve`: the expiry sweep, event retention, the auto top-up worker, and
//! reconciliation when `RECONCILE_INTERVAL` is set. Each run takes its job's lease first, so N replicas run each
//! job once per period.

use std::{future::Future, time::Duration};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{jobs::Leases, reconcile};
use crate::{
    billing::Billing,
    config::{Settings, TopUpSettings},
    event_store::EventLog,
    ledger::{Extension, Ledger},
    metrics::Metrics,
};

const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// What the periodic jobs use.
pub(crate) struct Jobs<X: Extension> {
    pub ledger: Ledger<X>,
    pub billing: Billing,
    pub events: EventLog,
    pub leases: Leases,
    pub metrics: Metrics,
}

/// Starts the jobs; they stop when `stop` fires.
// Long on purpose: one block per periodic job.
pub(crate) fn spawn<X: Extension>(
    jobs: Jobs<X>,
    settings: &Settings,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Jobs {
        ledger,
        billing,
        events,
        leases,
        metrics,
    } = jobs;
    let holder = uuid::Uuid::now_v7().to_string();
    let mut tasks = Vec::new();

    let expiry = settings.ledger.expiry_interval;
    tasks.push(every(expiry, Start::Now, stop.clone(), {
        let (ledger, leases, holder) = (ledger.clone(), leases.clone(), holder.clone());
        move || {
            let (ledger, leases, holder) = (ledger.clone(), leases.clone(), holder.clone());
            async move {
                if !lease(&leases, "expiry", &holder, expiry).await {
                    return;
                }
                match ledger.sweep().await {
                    Ok(0) => {}
                    Ok(entries) => tracing::info!(entries, "expired credits written off"),
                    Err(err) => tracing::warn!(error = %err, "expiry sweep failed; next run retries"),
                }
                // Free the lease at once: the next period may start on any replica.
                if let Err(err) = leases.release("expiry", &holder).await {
                    tracing::warn!(error = %err, "could not release the expiry lease");
                }
            }
        }
    }));

    let retention_days = settings.event_retention_days;
    // An hour after start, not at start: a restart loop must not turn into a pruning loop.
    tasks.push(every(RETENTION_PERIOD, Start::AfterPeriod, stop.clone(), {
        let (leases, holder) = (leases.clone(), holder.clone());
        move || {
            let (events, leases, holder) = (events.clone(), leases.clone(), holder.clone());
            async move {
                if !lease(&leases, "event_retention", &holder, RETENTION_PERIOD).await {
                    return;
                }
                match events.prune(retention_days).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, retention_days, "old stripe events pruned"),
                    Err(err) => tracing::warn!(error = %err, "event retention failed"),
                }
            }
        }
    }));

    tasks.push(top_ups(
        billing.clone(),
        ledger.signals().top_ups(),
        leases.clone(),
        holder.clone(),
        settings.top_up,
        stop.clone(),
    ));

    if let Some(interval) = settings.reconcile_interval {
        let lookback = settings.reconcile_lookback;
        tasks.push(every(interval, Start::Now, stop, move || {
            let (billing, leases, holder, metrics) =
                (billing.clone(), leases.clone(), holder.clone(), metrics.clone());
            async move {
                if !lease(&leases, "reconcile", &holder, interval).await {
                    return;
                }
                let since =
                    Utc::now() - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(72));
                match reconcile::reconcile(&billing, since).await {
                    Ok(report) => {
                        metrics.reconcile(report.credited.len(), report.failed.len(), report.credits);
                    }
                    Err(err) => {
                        metrics.reconcile_failed();
                        tracing::warn!(error = %err, "periodic reconcile failed; next run retries");
                    }
                }
                // Hold the lease for the rest of the interval: one run per period across replicas.
            }
        }));
    }
    tasks
}

/// How long one top-up pass holds its lease, in worker intervals (at least 5 s): a replica
/// that dies mid-pass delays the others this long. Nothing relies on the lease for money (each
/// attempt's key and state do that), so a longer pass overlapping another replica's is harmless.
fn top_up_lease(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(5))
}

/// The auto top-up worker: a pass whenever this replica's writer started attempts, and every
/// `TOP_UP_INTERVAL_MS` for other replicas' and for retries that fell due.
fn top_ups(
    billing: Billing,
    mut started: tokio::sync::watch::Receiver<u64>,
    leases: Leases,
    holder: String,
    settings: TopUpSettings,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if lease(&leases, "top_ups", &holder, top_up_lease(settings.interval)).await {
                let stopped = tokio::select! {
                    () = stop.cancelled() => true,
                    ran = billing.run_top_ups(&settings) => {
                        if let Err(err) = ran {
                            tracing::warn!(error = %err, "top-up pass failed; the next one retries");
                        }
                        false
                    }
                };
                // Stopping mid-pass leaves attempts where they are: the next holder resumes them
                // with the same keys, at once.
                if let Err(err) = leases.release("top_ups", &holder).await {
                    tracing::warn!(error = %err, "could not release the top-up lease");
                }
                if stopped {
                    return;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = started.changed() => {}
                () = tokio::time::sleep(settings.interval) => {}
            }
        }
    })
}

async fn lease(leases: &Leases, job: &str, holder: &str, ttl: Duration) -> bool {
    match leases.take(job, holder, ttl).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::warn!(job, error = %err, "could not take the job lease");
            false
        }
    }
}

/// When a job first runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Now,
    AfterPeriod,
}

fn every<F, Fut>(
    period: Duration,
    start: Start,
    stop: CancellationToken,
    job: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        if start == Start::AfterPeriod {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = job() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    })
}
