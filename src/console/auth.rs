//! Who is asking: password sign-in (argon2 hashes from `CONSOLE_USERS`, failures rate limited
//! per name and per address and logged), the trusted proxy header, sign-out, and the checks
//! every POST passes (CSRF token, then role).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::{
    Form,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{
    ConsoleError, ConsoleState,
    pages::layout,
    session::{self, COOKIE, Session, Signer},
};
use crate::config::{ConsoleRole, ConsoleSettings};

/// How long failed sign-ins are counted.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures per user name within the window before its sign-ins are refused.
const PER_USER: u32 = 5;
/// Failures per client address within the window.
const PER_ADDRESS: u32 = 20;
/// Names and addresses tracked at most; past it, expired counts are dropped first.
const TRACKED: usize = 10_000;

/// Sign-in settings and the state behind them: failure counts and signed-out sessions.
pub(crate) struct Gate {
    settings: ConsoleSettings,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Signed-out session ids and when their cookie would have expired (unix seconds).
    revoked: Mutex<HashMap<String, i64>>,
}

impl Gate {
    pub(crate) fn new(settings: ConsoleSettings) -> Self {
        Self {
            settings,
            failures: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    fn blocked(&self, key: &str, limit: u32) -> bool {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures
            .get(key)
            .is_some_and(|(count, since)| *count >= limit && since.elapsed() < WINDOW)
    }

    fn failed(&self, key: String) {
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

    fn clear(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(key);
    }

    fn revoke(&self, session: &Session) {
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
    fn session(&self, headers: &HeaderMap, signer: &Signer) -> Option<Session> {
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

fn ttl_secs(settings: &ConsoleSettings) -> i64 {
    i64::try_from(settings.session_ttl.as_secs()).unwrap_or(i64::MAX / 2)
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let inner = &state.inner;
        inner
            .gate
            .session(&parts.headers, &inner.signer)
            .ok_or(ConsoleError::SignInRequired)
    }
}

/// What an action needs besides a session.
#[derive(Clone, Copy)]
pub(crate) enum Need {
    /// Any signed-in user (sign-out).
    Anyone,
    Operator,
}

impl ConsoleState {
    /// The CSRF token first (403 when missing or wrong), then the role (403 for a viewer).
    pub(crate) fn authorize(&self, session: &Session, csrf: &str, need: Need) -> Result<(), ConsoleError> {
        if !self.inner.signer.csrf_ok(session, csrf) {
            tracing::warn!(user = %session.user, "console form refused: bad CSRF token");
            return Err(ConsoleError::Forbidden(
                "the form's CSRF token is missing or wrong; reload the page",
            ));
        }
        match (need, session.role) {
            (Need::Anyone, _) | (Need::Operator, ConsoleRole::Operator) => Ok(()),
            (Need::Operator, ConsoleRole::Viewer) => {
                tracing::warn!(user = %session.user, "console action refused: viewer");
                Err(ConsoleError::Forbidden("viewers cannot act; ask an operator"))
            }
        }
    }

    /// The CSRF token forms of this session carry.
    pub(crate) fn csrf(&self, session: &Session) -> String {
        self.inner.signer.csrf_token(session)
    }
}

/// The client's address as the listener saw it (`unknown` when not recorded).
pub(crate) struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string()),
        ))
    }
}

pub(crate) async fn sign_in_page(State(state): State<ConsoleState>) -> Response {
    let passwords = !state.inner.gate.settings.users.is_empty();
    layout::sign_in(passwords, None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn sign_in(
    State(state): State<ConsoleState>,
    ClientAddr(client): ClientAddr,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let gate = &state.inner.gate;
    let user = form.user.trim().to_owned();
    let (user_key, addr_key) = (format!("user:{user}"), format!("addr:{client}"));
    if gate.blocked(&user_key, PER_USER) || gate.blocked(&addr_key, PER_ADDRESS) {
        tracing::warn!(user = %user, client = %client, "console sign-in refused: too many failures");
        return Err(ConsoleError::TooManyAttempts);
    }
    let found = gate.settings.users.iter().find(|u| u.name == user);
    let role = found.map(|u| u.role);
    let hash = found.map(|u| u.password_hash.expose_secret().to_owned());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || {
        let Some(hash) = hash else {
            return false;
        };
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(anyhow::Error::new)?;
    let Some(role) = role.filter(|_| verified) else {
        gate.failed(user_key);
        gate.failed(addr_key);
        tracing::warn!(user = %user, client = %client, "console sign-in failed");
        let page = layout::sign_in(true, Some("Wrong name or password."));
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    gate.clear(&user_key);
    let now = chrono::Utc::now().timestamp();
    let session = Session {
        user,
        role,
        expires: now + ttl_secs(&gate.settings),
        id: session::random_id(),
    };
    tracing::info!(user = %session.user, role = %session.role, client = %client, "console sign-in");
    let cookie = session::set_cookie(
        &state.inner.signer.seal(&session),
        ttl_secs(&gate.settings),
        gate.settings.secure_cookies,
    );
    Ok(see_other("/console/search", Some(cookie)))
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub(crate) async fn sign_out(
    State(state): State<ConsoleState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    state.authorize(&session, &form.csrf, Need::Anyone)?;
    state.inner.gate.revoke(&session);
    tracing::info!(user = %session.user, "console sign-out");
    let cleared = session::set_cookie("", 0, state.inner.gate.settings.secure_cookies);
    Ok(see_other("/console/sign-in", Some(cleared)))
}

/// A 303 to `to`, setting a cookie when given one.
pub(crate) fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    if let Some(value) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// An argon2id PHC string for `password` (`credits console hash-password`), with a random salt
/// and the crate's default cost.
pub(crate) fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    use password_hash::{SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}
