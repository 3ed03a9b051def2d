//! Background jobs of `serve`: event retention, and reconciliation when `RECONCILE_INTERVAL` is
//! set. Each run takes its job's lease first, so N replicas run each job once per period.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::{config::Settings, ledger::Ledger, ledger::jobs, metrics::Metrics};

const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// Starts the jobs; they stop when `stop` fires.
pub fn spawn(
    ledger: Ledger,
    metrics: Metrics,
    settings: &Settings,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let holder = uuid::Uuid::now_v7().to_string();
    let mut tasks = Vec::new();

    let retention_days = settings.event_retention_days;
    tasks.push(every(RETENTION_PERIOD, stop.clone(), {
        let (ledger, holder) = (ledger.clone(), holder.clone());
        move || {
            let (ledger, holder) = (ledger.clone(), holder.clone());
            async move {
                if !lease(&ledger, "event_retention", &holder, RETENTION_PERIOD).await {
                    return;
                }
                match jobs::prune_events(ledger.db(), retention_days).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, retention_days, "old stripe events pruned"),
                    Err(err) => tracing::warn!(error = %err, "event retention failed"),
                }
            }
        }
    }));

    if let Some(interval) = settings.reconcile_interval {
        let lookback = settings.reconcile_lookback;
        tasks.push(every(interval, stop, move || {
            let (ledger, holder, metrics) = (ledger.clone(), holder.clone(), metrics.clone());
            async move {
                if !lease(&ledger, "reconcile", &holder, interval).await {
                    return;
                }
                let since =
                    Utc::now() - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(72));
                match ledger.reconcile(since).await {
                    Ok(report) => metrics.reconcile(report.credited.len(), report.credits),
                    Err(err) => tracing::warn!(error = %err, "periodic reconcile failed; next run retries"),
                }
                // Hold the lease for the rest of the interval: one run per period across replicas.
            }
        }));
    }
    tasks
}

async fn lease(ledger: &Ledger, job: &str, holder: &str, ttl: Duration) -> bool {
    match jobs::try_lock(ledger.db(), job, holder, ttl).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::warn!(job, error = %err, "could not take the job lease");
            false
        }
    }
}

fn every<F, Fut>(period: Duration, stop: CancellationToken, job: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
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
