//! When a failed delivery is tried again, and when it is given up. Pure.
//!
//! The n-th failure waits `min(NOTIFY_RETRY_BASE_MS × 2^(n-1), 1 h)`, ±20 % jitter so that
//! accounts failing together do not retry together; once an event is older than
//! `NOTIFY_GIVE_UP_AFTER`, its next failure gives it up.

use std::{hash::BuildHasher, time::Duration};

use chrono::{DateTime, Utc};

/// The longest wait between two attempts, before jitter.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The wait after the `attempts`-th failed attempt (1 for the first), with `jitter` in
/// `[0, 1)` spreading it over ±20 %.
pub(crate) fn retry_delay(base: Duration, attempts: i32, jitter: f64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(31);
    let plain = base
        .checked_mul(1_u32 << doublings)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    plain.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// Whether a failure at `now` ends the retries of an event created at `created_at`.
pub(crate) fn gives_up(created_at: DateTime<Utc>, now: DateTime<Utc>, give_up_after: Duration) -> bool {
    let age = now.signed_duration_since(created_at).to_std().unwrap_or_default();
    age > give_up_after
}

/// A number in `[0, 1)`, different per call: the jitter of one retry. (No random crate: the
/// standard library's randomly seeded hasher is enough to spread retries.)
pub(crate) fn jitter(sequence: i64, attempts: i32) -> f64 {
    let hash = std::collections::hash_map::RandomState::new().hash_one((sequence, attempts));
    // The top 53 bits, as a fraction.
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(10);

    #[test]
    fn the_delay_doubles_from_the_base_without_jitter_in_the_middle() {
        let mid = 0.5;
        assert_eq!(retry_delay(BASE, 1, mid), Duration::from_secs(10));
        assert_eq!(retry_delay(BASE, 2, mid), Duration::from_secs(20));
        assert_eq!(retry_delay(BASE, 3, mid), Duration::from_secs(40));
        assert_eq!(retry_delay(BASE, 8, mid), Duration::from_secs(1280));
    }

    #[test]
    fn the_delay_stops_growing_at_an_hour() {
        assert_eq!(retry_delay(BASE, 10, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(BASE, 1_000, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(BASE, i32::MAX, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(Duration::from_secs(86_400), 1, 0.5), MAX_DELAY);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(retry_delay(BASE, 1, 0.0), Duration::from_secs(8));
        assert!(retry_delay(BASE, 1, 0.999_999) <= Duration::from_secs(12));
        assert!(retry_delay(BASE, 1, 0.999_999) > Duration::from_millis(11_999));
        for attempts in 1..40 {
            let j = jitter(42, attempts);
            assert!((0.0..1.0).contains(&j), "{j}");
            let delay = retry_delay(BASE, attempts, j);
            assert!(delay >= retry_delay(BASE, attempts, 0.0));
            assert!(delay <= retry_delay(BASE, attempts, 1.0));
        }
    }

    #[test]
    fn odd_attempt_counts_are_treated_as_the_first() {
        assert_eq!(retry_delay(BASE, 0, 0.5), BASE);
        assert_eq!(retry_delay(BASE, -3, 0.5), BASE);
    }

    #[test]
    fn an_event_is_given_up_only_once_older_than_the_limit() {
        let created = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let limit = Duration::from_secs(60);
        assert!(!gives_up(created, created, limit));
        assert!(!gives_up(created, created + chrono::Duration::seconds(60), limit));
        assert!(gives_up(created, created + chrono::Duration::seconds(61), limit));
        // A clock that went backwards never gives up.
        assert!(!gives_up(created, created - chrono::Duration::seconds(5), limit));
    }
}
