//! The random moments of the fault scenarios, reproducible with `--seed`.

use std::time::Duration;

/// xorshift64: the random moments, reproducible with `--seed`.
pub(super) struct Moments(pub u64);

impl Moments {
    pub(super) fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let span = high.saturating_sub(low).as_millis().max(1) as u64;
        low + Duration::from_millis(x % span)
    }
}
