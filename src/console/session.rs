//! Console sessions in a signed cookie, and the CSRF tokens bound to them. Pure: the cookie is
//! `user.role.expires.id.mac`, where `mac` is HMAC-SHA256 over the rest under
//! `CONSOLE_SESSION_SECRET`, so the expiry cannot be changed without the key.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ConsoleRole, is_user_name};

/// The cookie's name.
pub(crate) const COOKIE: &str = "credits_console";
/// The cookie the sign-in form's CSRF token is bound to (before there is a session).
pub(crate) const SIGN_IN_COOKIE: &str = "credits_console_sign_in";

/// Who is signed in, until when, under which session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub user: String,
    pub role: ConsoleRole,
    /// Unix seconds.
    pub expires: i64,
    /// Random per sign-in: what CSRF tokens and sign-out are bound to.
    pub id: String,
}

/// Signs and checks cookies and CSRF tokens.
#[derive(Clone)]
pub(crate) struct Signer {
    key: SecretString,
}

impl Signer {
    pub(crate) fn new(key: SecretString) -> Self {
        Self { key }
    }

    fn mac(&self, purpose: &str, data: &str) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The cookie value for `session`.
    pub(crate) fn seal(&self, session: &Session) -> String {
        let body = format!(
            "{}.{}.{}.{}",
            hex::encode(session.user.as_bytes()),
            session.role.as_str(),
            session.expires,
            session.id
        );
        let mac = self.mac("session", &body);
        format!("{body}.{mac}")
    }

    /// The session a cookie value carries, when its signature holds and it has not expired.
    pub(crate) fn open(&self, value: &str, now: i64) -> Option<Session> {
        let (body, mac) = value.rsplit_once('.')?;
        if !equal(&self.mac("session", body), mac) {
            return None;
        }
        let mut parts = body.split('.');
        let user = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
        let role = ConsoleRole::parse(parts.next()?)?;
        let expires = parts.next()?.parse::<i64>().ok()?;
        let id = parts.next()?.to_owned();
        if parts.next().is_some() || !is_user_name(&user) || id.is_empty() || expires <= now {
            return None;
        }
        Some(Session {
            user,
            role,
            expires,
            id,
        })
    }

    /// The CSRF token every form of `session` carries.
    pub(crate) fn csrf_token(&self, session: &Session) -> String {
        self.mac("csrf", &session.id)
    }

    /// Whether `token` is `session`'s CSRF token (compared in constant time).
    pub(crate) fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        equal(&self.csrf_token(session), token)
    }

    /// The sign-in form's CSRF token, bound to the random value of `SIGN_IN_COOKIE`.
    pub(crate) fn sign_in_token(&self, nonce: &str) -> String {
        self.mac("sign-in", nonce)
    }

    /// Whether `token` is the sign-in token of `nonce`.
    pub(crate) fn sign_in_ok(&self, nonce: &str, token: &str) -> bool {
        !nonce.is_empty() && equal(&self.sign_in_token(nonce), token)
    }

    /// A stable session id for a user a trusted proxy names (no cookie is set for them).
    pub(crate) fn trusted_id(&self, user: &str) -> String {
        self.mac("trusted", user)[..32].to_owned()
    }
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 16 random bytes, hex: session ids and forms' one-time keys.
pub(crate) fn random_id() -> String {
    use password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, Path=/console, Max-Age.
pub(crate) fn set_cookie(value: &str, max_age: i64, secure: bool) -> String {
    named_cookie(COOKIE, value, max_age, secure)
}

/// `Set-Cookie` for cookie `name`, with the session cookie's attributes.
pub(crate) fn named_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(SecretString::from("0123456789abcdef0123456789abcdef"))
    }

    fn session() -> Session {
        Session {
            user: "alice@example.com".into(),
            role: ConsoleRole::Operator,
            expires: 2_000,
            id: random_id(),
        }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let session = session();
        let sealed = signer().seal(&session);
        assert_eq!(signer().open(&sealed, 1_000), Some(session));
        assert!(signer().open(&sealed, 1_999).is_some());
        assert!(signer().open(&sealed, 2_000).is_none());
    }

    #[test]
    fn a_changed_role_expiry_or_key_does_not_open() {
        let sealed = signer().seal(&session());
        let promoted = sealed.replacen(".operator.", ".viewer.", 1);
        assert!(signer().open(&promoted, 1_000).is_none());
        let later = sealed.replacen(".2000.", ".9000.", 1);
        assert!(signer().open(&later, 1_000).is_none());
        let other = Signer::new(SecretString::from("another key of thirty-two chars!!"));
        assert!(other.open(&sealed, 1_000).is_none());
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let (a, b) = (session(), session());
        let token = signer().csrf_token(&a);
        assert!(signer().csrf_ok(&a, &token));
        assert!(!signer().csrf_ok(&b, &token));
        assert!(!signer().csrf_ok(&a, ""));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "other=1; credits_console=abc.def; x=y";
        assert_eq!(cookie_value(header, COOKIE), Some("abc.def"));
        assert_eq!(cookie_value("other=1", COOKIE), None);
    }
}
