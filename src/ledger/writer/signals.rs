//! What committed batches tell the rest of the service without a query: that account events
//! were written (event streams wake) and top-up attempts started (the top-up worker wakes).
//! Other replicas learn the same by polling; this only saves the wait.

use std::sync::Arc;

use tokio::sync::watch;

use super::BatchStats;

/// Counters bumped after a commit; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Signals {
    events: Arc<watch::Sender<u64>>,
    top_ups: Arc<watch::Sender<u64>>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            events: Arc::new(watch::Sender::new(0)),
            top_ups: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Signals {
    pub(super) fn committed(&self, stats: &BatchStats) {
        if stats.events > 0 {
            self.events.send_modify(|n| *n = n.wrapping_add(1));
        }
        if stats.top_ups > 0 {
            self.top_ups.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes each time a batch with account events commits.
    pub(crate) fn events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Changes each time a batch that started top-up attempts commits.
    pub(crate) fn top_ups(&self) -> watch::Receiver<u64> {
        self.top_ups.subscribe()
    }
}
