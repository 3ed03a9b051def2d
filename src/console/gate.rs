//! The sign-in gate's state: failed sign-ins counted per user name and per client address (in
//! memory, per replica), signed-out sessions, and which session a request carries (its cookie,
//! or the trusted proxy header).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header};

use super::{
    password,
    session::{self, COOKIE, Session, Signer},
};
use crate::config::ConsoleSettings;

/// How long failed sign-ins are counted.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures per user name within the window before its sign-ins are refused.
pub(crate) const PER_USER: u32 = 5;
/// Failures per client address within the window.
pub(crate) const PER_ADDRESS: u32 = 20;
/// Names and addresses tracked at most; past it, expired counts are dropped first.
const TRACKED: usize = 10_000;

/// Sign-in settings and the state behind them: failure counts and signed-out sessions.
pub(crate) struct Gate {
    pub settings: ConsoleSettings,
    /// Checked for names nobody has, so a wrong name costs what a wrong password does.
    pub dummy_hash: String,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Signed-out session ids and when their cookie would have expired (unix seconds).
    revoked: Mutex<HashMap<String, i64>>,
}

impl Gate {
    pub(crate) fn new(settings: ConsoleSettings) -> Self {
        let dummy_hash = password::hash_password(&session::random_id()).unwrap_or_default();
        Self {
            settings,
            dummy_hash,
            failures: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn blocked(&self, key: &str, limit: u32) -> bool {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures
            .get(key)
            .is_some_and(|(count, since)| *count >= limit && since.elapsed() < WINDOW)
    }

    pub(crate) fn failed(&self, key: String) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= TRACKED {
            failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = failures.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub(crate) fn clear(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(key);
    }

    pub(crate) fn revoke(&self, session: &Session) {
        let mut revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = chrono::Utc::now().timestamp();
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(session.id.clone(), session.expires);
    }

    fn is_revoked(&self, id: &str) -> bool {
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        revoked.contains_key(id)
    }

    /// The session a request carries: its cookie, or the trusted proxy header.
    pub(crate) fn session(&self, headers: &HeaderMap, signer: &Signer) -> Option<Session> {
        let now = chrono::Utc::now().timestamp();
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| session::cookie_value(v, COOKIE))
            .and_then(|value| signer.open(value, now))
            .filter(|s| !self.is_revoked(&s.id));
        if cookie.is_some() {
            return cookie;
        }
        let name = headers
            .get(self.settings.trusted_header.as_deref()?)?
            .to_str()
            .ok()?
            .trim();
        let role = self
            .settings
            .trusted_users
            .iter()
            .find(|(user, _)| user == name)
            .map(|(_, role)| *role)?;
        Some(Session {
            user: name.to_owned(),
            role,
            expires: now + ttl_secs(&self.settings),
            id: signer.trusted_id(name),
        })
    }
}

pub(crate) fn ttl_secs(settings: &ConsoleSettings) -> i64 {
    i64::try_from(settings.session_ttl.as_secs()).unwrap_or(i64::MAX / 2)
}
