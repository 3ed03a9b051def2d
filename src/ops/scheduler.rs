//! Background jobs of `serve`: the expiry sweep, event retention (Stripe events and account
//! events), the auto top-up worker, the account event webhook worker when `NOTIFY_WEBHOOK_URL`
//! is set, and reconciliation when `RECONCILE_INTERVAL` is set. Each run takes its job's lease first, so N replicas run each
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
    notify::{Notifications, Notifier},
};

const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// What the periodic jobs use.
pub(crate) struct Jobs<X: Extension> {
    pub ledger: Ledger<X>,
    pub billing: Billing,
    pub events: EventLog,
    pub leases: Leases,
    pub metrics: Metrics,
    pub notifications: Notifications,
    /// The webhook worker; `None` without `NOTIFY_WEBHOOK_URL`.
    pub notifier: Option<Notifier>,
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
        notifications,
        notifier,
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

    let account_retention_days = settings.events.retention_days;
    // Events still waiting for their webhook are kept while one is configured; without one
    // nothing would ever deliver them.
    let keep_pending = notifier.is_some();
    tasks.push(every(RETENTION_PERIOD, Start::AfterPeriod, stop.clone(), {
        let (leases, holder) = (leases.clone(), holder.clone());
        move || {
            let (notifications, leases, holder) = (notifications.clone(), leases.clone(), holder.clone());
            async move {
                if !lease(&leases, "account_event_retention", &holder, RETENTION_PERIOD).await {
                    return;
                }
                match notifications.prune(account_retention_days, keep_pending).await {
                    Ok(0) => {}
                    Ok(pruned) => {
                        tracing::info!(pruned, account_retention_days, "old account events pruned");
                    }
                    Err(err) => tracing::warn!(error = %err, "account event retention failed"),
                }
            }
        }
    }));

    if let Some(notifier) = notifier {
        tasks.push(notify(
            notifier,
            ledger.signals().events(),
            leases.clone(),
            holder.clone(),
            stop.clone(),
        ));
    }

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

/// How often the webhook worker looks for events other replicas wrote, besides being woken by
/// its own replica's commits and by the next retry falling due.
const NOTIFY_POLL: Duration = Duration::from_secs(1);

/// How often a replica refreshes the backlog gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// How long one webhook pass holds its lease: four delivery timeouts, at least 10 s. A pass
/// starts no delivery after the lease's length less two timeouts, so it ends while it holds it.
fn notify_lease(timeout: Duration) -> Duration {
    (timeout * 4).max(Duration::from_secs(10))
}

/// The webhook worker: a pass whenever this replica's writer commits events, when the next
/// retry falls due, and every second for other replicas' events. One replica at a time (the
/// `notify` lease), so receivers see each account's events in order.
// Long on purpose: the loop's lease, pass, wait and gauges in one place.
fn notify(
    notifier: Notifier,
    mut committed: tokio::sync::watch::Receiver<u64>,
    leases: Leases,
    holder: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ttl = notify_lease(notifier.timeout());
        let budget = ttl.saturating_sub(notifier.timeout() * 2);
        let mut gauges_at: Option<std::time::Instant> = None;
        loop {
            let mut wait = NOTIFY_POLL;
            if lease(&leases, "notify", &holder, ttl).await {
                // Marked seen before the pass: a commit during it wakes the wait below.
                committed.borrow_and_update();
                let passed = tokio::select! {
                    () = stop.cancelled() => None,
                    ran = notifier.run_pass(budget) => Some(ran),
                };
                let Some(ran) = passed else {
                    // Attempts cut short are sent again by the next holder: at least once.
                    let _ = leases.release("notify", &holder).await;
                    return;
                };
                match ran {
                    Ok(_) => match notifier.next_due().await {
                        Ok(Some(at)) => {
                            let until = (at - Utc::now()).to_std().unwrap_or_default();
                            wait = until.clamp(Duration::from_millis(5), NOTIFY_POLL);
                        }
                        Ok(None) => {}
                        Err(err) => tracing::warn!(error = %err, "could not read the next delivery time"),
                    },
                    Err(err) => tracing::warn!(error = %err, "webhook pass failed; the next one retries"),
                }
                if let Err(err) = leases.release("notify", &holder).await {
                    tracing::warn!(error = %err, "could not release the notify lease");
                }
            }
            // Every replica reports the backlog, whichever delivers.
            if gauges_at.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                gauges_at = Some(std::time::Instant::now());
                if let Err(err) = notifier.refresh_backlog().await {
                    tracing::warn!(error = %err, "could not read the webhook backlog");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = committed.changed() => {}
                () = tokio::time::sleep(wait) => {}
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
