//! A closed-loop load: `concurrency` workers each repeat one call for a while; what came back
//! and how long each call took.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Microseconds per successful call, sorted.
    latencies: Vec<u64>,
}

impl Measured {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of call latency, in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)] as f64 / 1000.0
    }
}

/// Runs `call(worker, n)` from `concurrency` workers until `duration` has passed (or `limit`
/// calls were made in all). A call answers whether it succeeded.
pub(crate) async fn run<F, Fut>(
    concurrency: usize,
    duration: Duration,
    limit: Option<u64>,
    call: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let (call, issued) = (call.clone(), issued.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0;
            while Instant::now() < deadline {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|limit| n >= limit) {
                    break;
                }
                let begun = Instant::now();
                if call(worker, n).await {
                    latencies.push(begun.elapsed().as_micros() as u64);
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(Ok((mine, my_failed))) = workers.join_next().await {
        latencies.extend(mine);
        failed += my_failed;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Measured {
        ok: latencies.len() as u64,
        failed,
        elapsed,
        latencies,
    }
}
