//! Settings of the ledger: trial credits, the writer's connections and the expiry sweep.

use std::time::Duration;

use super::{ConfigError, parse, parse_duration};

/// How the ledger runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LedgerSettings {
    /// `TRIAL_CREDITS`: credits a new account starts with (a `trial` entry), default 0.
    pub trial_credits: i64,
    /// `TRIAL_CREDITS_EXPIRE_DAYS`: when trial credits expire; unset: never.
    pub trial_expire_days: Option<u32>,
    /// `DATABASE_WRITER_CONNECTIONS`: writer tasks on PostgreSQL (SQLite always has one).
    pub writer_connections: usize,
    /// `EXPIRY_INTERVAL`: how often expired lots are written off (one replica at a time).
    pub expiry_interval: Duration,
}

impl LedgerSettings {
    pub(super) fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let trial_credits: i64 = parse(var, "TRIAL_CREDITS", 0)?;
        if !(0..=1_000_000_000_000).contains(&trial_credits) {
            return Err(ConfigError::new("TRIAL_CREDITS", "must be from 0 to 10^12"));
        }
        let trial_expire_days = match var("TRIAL_CREDITS_EXPIRE_DAYS") {
            None => None,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(days @ 1..=36_500) => Some(days),
                _ => {
                    return Err(ConfigError::new(
                        "TRIAL_CREDITS_EXPIRE_DAYS",
                        format!("{raw:?} is not a number of days from 1 to 36500"),
                    ));
                }
            },
        };
        let writer_connections: usize = parse(var, "DATABASE_WRITER_CONNECTIONS", 2)?;
        if !(1..=32).contains(&writer_connections) {
            return Err(ConfigError::new(
                "DATABASE_WRITER_CONNECTIONS",
                "must be from 1 to 32",
            ));
        }
        let expiry_interval = parse_duration(&var("EXPIRY_INTERVAL").unwrap_or_else(|| "1m".into()))
            .map_err(|reason| ConfigError::new("EXPIRY_INTERVAL", reason))?;
        Ok(Self {
            trial_credits,
            trial_expire_days,
            writer_connections,
            expiry_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ledger(vars: &[(&str, &str)]) -> Result<LedgerSettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        LedgerSettings::from_lookup(&|k: &str| map.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn defaults_and_bounds() {
        let defaults = ledger(&[]).expect("defaults");
        assert_eq!(defaults.trial_credits, 0);
        assert_eq!(defaults.trial_expire_days, None);
        assert_eq!(defaults.writer_connections, 2);
        assert_eq!(defaults.expiry_interval, Duration::from_secs(60));
        let set = ledger(&[("TRIAL_CREDITS", "50"), ("TRIAL_CREDITS_EXPIRE_DAYS", "14")]).expect("valid");
        assert_eq!((set.trial_credits, set.trial_expire_days), (50, Some(14)));
        for (var, value) in [
            ("TRIAL_CREDITS", "-1"),
            ("TRIAL_CREDITS_EXPIRE_DAYS", "0"),
            ("DATABASE_WRITER_CONNECTIONS", "0"),
            ("EXPIRY_INTERVAL", "soon"),
        ] {
            assert_eq!(
                ledger(&[(var, value)]).err().map(|e| e.var),
                Some(var),
                "{var}={value}"
            );
        }
    }
}
