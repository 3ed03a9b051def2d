//! Who is asking: password sign-in (argon2 hashes from `CONSOLE_USERS`, failures rate limited
//! per name and per address and logged), the trusted proxy header, sign-out, and the checks
//! every POST passes (CSRF token, then role).

use std::net::SocketAddr;

use axum::{
    Form,
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{
    error::ConsoleError,
    gate::{PER_ADDRESS, PER_USER, ttl_secs},
    pages::layout,
    password,
    session::{self, SIGN_IN_COOKIE, Session},
    state::ConsoleState,
};
use crate::config::ConsoleRole;

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

/// How long a sign-in form stays good.
const SIGN_IN_FORM_SECS: i64 = 30 * 60;

/// The sign-in page, with a CSRF token bound to a fresh random cookie.
pub(crate) async fn sign_in_page(State(state): State<ConsoleState>) -> Response {
    let gate = &state.inner.gate;
    let passwords = !gate.settings.users.is_empty();
    let nonce = session::random_id();
    let token = state.inner.signer.sign_in_token(&nonce);
    let mut response = layout::sign_in(passwords, &token, None).into_response();
    let cookie = session::named_cookie(
        SIGN_IN_COOKIE,
        &nonce,
        SIGN_IN_FORM_SECS,
        gate.settings.secure_cookies,
    );
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn sign_in(
    State(state): State<ConsoleState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let gate = &state.inner.gate;
    let nonce = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie_value(v, SIGN_IN_COOKIE))
        .unwrap_or_default();
    if !state.inner.signer.sign_in_ok(nonce, &form.csrf) {
        tracing::warn!(client = %client, "console sign-in refused: bad CSRF token");
        return Err(ConsoleError::Forbidden(
            "the sign-in form's CSRF token is missing or wrong; reload the page",
        ));
    }
    let user = form.user.trim().to_owned();
    let (user_key, addr_key) = (format!("user:{user}"), format!("addr:{client}"));
    if gate.blocked(&user_key, PER_USER) || gate.blocked(&addr_key, PER_ADDRESS) {
        tracing::warn!(user = %user, client = %client, "console sign-in refused: too many failures");
        return Err(ConsoleError::TooManyAttempts);
    }
    let found = gate.settings.users.iter().find(|u| u.name == user);
    let role = found.map(|u| u.role);
    // An unknown name is checked against a made-up hash, so it takes as long as a known one.
    let hash = found.map_or_else(
        || gate.dummy_hash.clone(),
        |u| u.password_hash.expose_secret().to_owned(),
    );
    let given = form.password;
    let verified = tokio::task::spawn_blocking(move || password::verify(&hash, &given))
        .await
        .map_err(anyhow::Error::new)?;
    let Some(role) = role.filter(|_| verified) else {
        gate.failed(user_key);
        gate.failed(addr_key);
        tracing::warn!(user = %user, client = %client, "console sign-in failed");
        let page = layout::sign_in(true, &form.csrf, Some("Wrong name or password."));
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
