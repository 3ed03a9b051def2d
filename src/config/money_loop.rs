//! Settings of the money loop: account events (alerts, what is written, how long it is kept),
//! their outbound webhook, and automatic top-ups.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, parse, parse_bool, parse_duration, parse_optional_http_url};

/// Account events and their delivery.
#[derive(Clone, Debug)]
pub(crate) struct EventSettings {
    /// `LOW_BALANCE_THRESHOLD`: the threshold of accounts that set none; 0 (default): no
    /// balance alerts unless an account sets one.
    pub low_balance_threshold: i64,
    /// `ACCOUNT_EVENTS_CONSUMED`: also write one `credits.consumed` per debit (default off).
    pub consumed_events: bool,
    /// `ACCOUNT_EVENTS_RETENTION_DAYS`: events older than this are pruned (default 30); ones
    /// still waiting for their webhook delivery are kept.
    pub retention_days: u32,
    /// `NOTIFY_WEBHOOK_URL`: where each event is POSTed; unset: no outbound webhook.
    pub webhook_url: Option<Url>,
    /// `NOTIFY_WEBHOOK_SECRET`: the HMAC key of `Credits-Signature`.
    pub webhook_secret: Option<SecretString>,
    /// `NOTIFY_WEBHOOK_TIMEOUT_MS`: one delivery's deadline (default 10 s).
    pub webhook_timeout: Duration,
    /// `NOTIFY_RETRY_BASE_MS`: the first retry's delay, doubled each time (default 10 s).
    pub retry_base: Duration,
    /// `NOTIFY_GIVE_UP_AFTER`: retries stop this long after the event (default 3d).
    pub give_up_after: Duration,
}

/// Automatic top-ups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopUpSettings {
    /// `TOP_UP_RETRY_DELAY`: after a decline, the next attempt waits this, doubled for the
    /// third (default 1h).
    pub retry_delay: Duration,
    /// `TOP_UP_UNKNOWN_DELAY`: how long after an attempt whose outcome is unknown Stripe is
    /// searched for its PaymentIntent, and between searches (default 1m: Stripe's search index
    /// lags writes by up to a minute).
    pub unknown_delay: Duration,
    /// `TOP_UP_INTERVAL_MS`: how often the worker looks for due attempts besides being woken
    /// (default 1 s).
    pub interval: Duration,
}

impl EventSettings {
    pub(super) fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let low_balance_threshold: i64 = parse(var, "LOW_BALANCE_THRESHOLD", 0)?;
        if !(0..=1_000_000_000_000).contains(&low_balance_threshold) {
            return Err(ConfigError::new(
                "LOW_BALANCE_THRESHOLD",
                "must be from 0 to 10^12",
            ));
        }
        let retention_days: u32 = parse(var, "ACCOUNT_EVENTS_RETENTION_DAYS", 30)?;
        if retention_days == 0 {
            return Err(ConfigError::new(
                "ACCOUNT_EVENTS_RETENTION_DAYS",
                "must be at least 1",
            ));
        }
        let webhook_url = parse_optional_http_url(var, "NOTIFY_WEBHOOK_URL")?;
        let webhook_secret = var("NOTIFY_WEBHOOK_SECRET").map(SecretString::from);
        if webhook_url.is_some() && webhook_secret.is_none() {
            return Err(ConfigError::new(
                "NOTIFY_WEBHOOK_SECRET",
                "must be set with NOTIFY_WEBHOOK_URL (receivers verify the signature)",
            ));
        }
        let millis = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            let ms: u64 = parse(var, name, default)?;
            if ms == 0 {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
            Ok(Duration::from_millis(ms))
        };
        Ok(Self {
            low_balance_threshold,
            consumed_events: parse_bool(var, "ACCOUNT_EVENTS_CONSUMED", false)?,
            retention_days,
            webhook_url,
            webhook_secret,
            webhook_timeout: millis("NOTIFY_WEBHOOK_TIMEOUT_MS", 10_000)?,
            retry_base: millis("NOTIFY_RETRY_BASE_MS", 10_000)?,
            give_up_after: duration(var, "NOTIFY_GIVE_UP_AFTER", "3d")?,
        })
    }
}

impl TopUpSettings {
    pub(super) fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let interval_ms: u64 = parse(var, "TOP_UP_INTERVAL_MS", 1_000)?;
        if interval_ms == 0 {
            return Err(ConfigError::new("TOP_UP_INTERVAL_MS", "must be at least 1"));
        }
        Ok(Self {
            retry_delay: duration(var, "TOP_UP_RETRY_DELAY", "1h")?,
            unknown_delay: duration(var, "TOP_UP_UNKNOWN_DELAY", "1m")?,
            interval: Duration::from_millis(interval_ms),
        })
    }
}

fn duration(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    parse_duration(&var(name).unwrap_or_else(|| default.to_owned()))
        .map_err(|reason| ConfigError::new(name, reason))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |k: &str| map.get(k).map(|v| (*v).to_owned())
    }

    #[test]
    fn defaults_write_no_alerts_and_no_webhook() {
        let events = EventSettings::from_lookup(&lookup(&[])).expect("defaults");
        assert_eq!(events.low_balance_threshold, 0);
        assert!(!events.consumed_events);
        assert_eq!(events.retention_days, 30);
        assert!(events.webhook_url.is_none());
        assert_eq!(events.give_up_after, Duration::from_secs(3 * 86_400));
        let top_up = TopUpSettings::from_lookup(&lookup(&[])).expect("defaults");
        assert_eq!(top_up.retry_delay, Duration::from_secs(3600));
    }

    #[test]
    fn a_webhook_without_its_secret_is_refused() {
        let err = EventSettings::from_lookup(&lookup(&[(
            "NOTIFY_WEBHOOK_URL",
            "https://hooks.example.com/credits",
        )]))
        .expect_err("no secret");
        assert_eq!(err.var, "NOTIFY_WEBHOOK_SECRET");
        let ok = EventSettings::from_lookup(&lookup(&[
            ("NOTIFY_WEBHOOK_URL", "https://hooks.example.com/credits"),
            ("NOTIFY_WEBHOOK_SECRET", "whsec_x"),
            ("LOW_BALANCE_THRESHOLD", "100"),
            ("ACCOUNT_EVENTS_CONSUMED", "true"),
        ]))
        .expect("set");
        assert_eq!((ok.low_balance_threshold, ok.consumed_events), (100, true));
    }

    #[test]
    fn a_negative_threshold_is_refused() {
        let err =
            EventSettings::from_lookup(&lookup(&[("LOW_BALANCE_THRESHOLD", "-1")])).expect_err("negative");
        assert_eq!(err.var, "LOW_BALANCE_THRESHOLD");
    }
}
