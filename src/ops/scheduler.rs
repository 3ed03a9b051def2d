//! Background jobs of `serve`: the expiry sweep, event retention, and reconciliation when
//! `RECONCILE_INTERVAL` is set. Each run takes its job's lease first, so N replicas run each
//! job once per period.

use std::{future::Future, time::Duration};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{jobs, reconcile};
use crate::{billing::Billing, config::Settings, events, metrics::Metrics};

const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// Starts the jobs; they stop when `stop` fires.
// Long on purpose: one block per periodic job.
pub fn spawn(
    billing: Billing,
    metrics: Metrics,
    settings: &Settings,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let holder = uuid::Uuid::now_v7().to_string();
    let mut tasks = Vec::new();

    let expiry = settings.ledger.expiry_interval;
    tasks.push(every(expiry, Start::Now, stop.clone(), {
        let (billing, holder) = (billing.clone(), holder.clone());
        move || {
            let (billing, holder) = (billing.clone(), holder.clone());
            async move {
                if !lease(&billing, "expiry", &holder, expiry).await {
                    return;
                }
                match billing.ledger().sweep().await {
                    Ok(0) => {}
                    Ok(entries) => tracing::info!(entries, "expired credits written off"),
                    Err(err) => tracing::warn!(error = %err, "expiry sweep failed; next run retries"),
                }
                // Free the lease at once: the next period may start on any replica.
                if let Err(err) = jobs::unlock(billing.ledger().db(), "expiry", &holder).await {
                    tracing::warn!(error = %err, "could not release the expiry lease");
                }
            }
        }
    }));

    let retention_days = settings.event_retention_days;
    // An hour after start, not at start: a restart loop must not turn into a pruning loop.
    tasks.push(every(RETENTION_PERIOD, Start::AfterPeriod, stop.clone(), {
        let (billing, holder) = (billing.clone(), holder.clone());
        move || {
            let (billing, holder) = (billing.clone(), holder.clone());
            async move {
                if !lease(&billing, "event_retention", &holder, RETENTION_PERIOD).await {
                    return;
                }
                match events::store::prune(billing.ledger().db(), retention_days).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, retention_days, "old stripe events pruned"),
                    Err(err) => tracing::warn!(error = %err, "event retention failed"),
                }
            }
        }
    }));

    if let Some(interval) = settings.reconcile_interval {
        let lookback = settings.reconcile_lookback;
        tasks.push(every(interval, Start::Now, stop, move || {
            let (billing, holder, metrics) = (billing.clone(), holder.clone(), metrics.clone());
            async move {
                if !lease(&billing, "reconcile", &holder, interval).await {
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

async fn lease(billing: &Billing, job: &str, holder: &str, ttl: Duration) -> bool {
    match jobs::try_lock(billing.ledger().db(), job, holder, ttl).await {
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
