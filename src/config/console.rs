//! The operator console's settings: who may sign in (password hashes, or a trusted header set
//! by an authenticating proxy), the key that signs its cookies, how long a session lasts.
//! The console is off unless `CONSOLE_USERS` or `CONSOLE_TRUSTED_HEADER` is set.

use std::{fmt, time::Duration};

use secrecy::SecretString;

use super::{AppEnv, ConfigError, parse_bool, parse_duration};

/// The shortest `CONSOLE_SESSION_SECRET` accepted: 32 bytes, as for any HMAC-SHA256 key.
const MIN_SECRET_LEN: usize = 32;

/// What a console user may do: look, or look and act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRole {
    Viewer,
    Operator,
}

impl ConsoleRole {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

impl fmt::Display for ConsoleRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `CONSOLE_USERS` entry: `name:role:$argon2id$...`.
#[derive(Clone)]
pub(crate) struct ConsoleUser {
    pub name: String,
    pub role: ConsoleRole,
    /// An argon2 PHC string, as `credits console hash-password` prints it.
    pub password_hash: SecretString,
}

/// The console, when it is on.
#[derive(Clone)]
pub(crate) struct ConsoleSettings {
    pub users: Vec<ConsoleUser>,
    /// `CONSOLE_TRUSTED_HEADER`: the header an authenticating proxy puts the user name in.
    pub trusted_header: Option<String>,
    /// `CONSOLE_TRUSTED_USERS`: the names that header may carry, with their roles.
    pub trusted_users: Vec<(String, ConsoleRole)>,
    /// `CONSOLE_SESSION_SECRET`: signs session cookies and CSRF tokens.
    pub session_secret: SecretString,
    /// `CONSOLE_SESSION_TTL` (default 8h).
    pub session_ttl: Duration,
    /// `CONSOLE_SECURE_COOKIES` (default: on in production): cookies only over HTTPS.
    pub secure_cookies: bool,
}

/// A name a console user may have: what a proxy usually sends (a login or an email).
pub(crate) fn is_user_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
}

/// The console's settings; `None` when neither users nor a trusted header are configured.
pub(super) fn from_lookup(
    var: &impl Fn(&str) -> Option<String>,
    app_env: AppEnv,
) -> Result<Option<ConsoleSettings>, ConfigError> {
    let users = match var("CONSOLE_USERS") {
        None => Vec::new(),
        Some(raw) => parse_users(&raw)?,
    };
    let trusted_header = var("CONSOLE_TRUSTED_HEADER").map(|h| h.trim().to_ascii_lowercase());
    if let Some(header) = &trusted_header
        && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        return Err(ConfigError::new(
            "CONSOLE_TRUSTED_HEADER",
            format!("{header:?} is not a header name"),
        ));
    }
    let trusted_users = match var("CONSOLE_TRUSTED_USERS") {
        None => Vec::new(),
        Some(raw) => parse_trusted(&raw)?,
    };
    if trusted_header.is_some() && trusted_users.is_empty() {
        return Err(ConfigError::new(
            "CONSOLE_TRUSTED_USERS",
            "required with CONSOLE_TRUSTED_HEADER: name:role,name:role",
        ));
    }
    if users.is_empty() && trusted_header.is_none() {
        return Ok(None);
    }
    let session_secret = var("CONSOLE_SESSION_SECRET").ok_or_else(|| {
        ConfigError::new(
            "CONSOLE_SESSION_SECRET",
            "required when the console is on (CONSOLE_USERS or CONSOLE_TRUSTED_HEADER)",
        )
    })?;
    if session_secret.trim().len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            "CONSOLE_SESSION_SECRET",
            format!("must be at least {MIN_SECRET_LEN} characters"),
        ));
    }
    let session_ttl = parse_duration(&var("CONSOLE_SESSION_TTL").unwrap_or_else(|| "8h".into()))
        .map_err(|reason| ConfigError::new("CONSOLE_SESSION_TTL", reason))?;
    Ok(Some(ConsoleSettings {
        users,
        trusted_header,
        trusted_users,
        session_secret: SecretString::from(session_secret.trim().to_owned()),
        session_ttl,
        secure_cookies: parse_bool(var, "CONSOLE_SECURE_COOKIES", app_env == AppEnv::Production)?,
    }))
}

/// `name:role:$argon2id$...;name:role:$argon2id$...` (PHC strings hold no `;` or `:`).
fn parse_users(raw: &str) -> Result<Vec<ConsoleUser>, ConfigError> {
    const VAR: &str = "CONSOLE_USERS";
    let mut users: Vec<ConsoleUser> = Vec::new();
    for (n, entry) in raw
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let mut parts = entry.splitn(3, ':');
        let (name, role, hash) = (parts.next(), parts.next(), parts.next());
        let (Some(name), Some(role), Some(hash)) = (name, role, hash) else {
            return Err(ConfigError::new(
                VAR,
                format!("entry {} is not name:role:hash", n + 1),
            ));
        };
        let name = name.trim();
        if !is_user_name(name) {
            return Err(ConfigError::new(VAR, format!("entry {}: bad user name", n + 1)));
        }
        let role = ConsoleRole::parse(role)
            .ok_or_else(|| ConfigError::new(VAR, format!("{name}: role must be viewer or operator")))?;
        // Never quoted: a hash is not a password, but it is not for logs either.
        argon2::PasswordHash::new(hash.trim()).map_err(|_| {
            ConfigError::new(
                VAR,
                format!("{name}: not an argon2 hash (make one with `credits console hash-password`)"),
            )
        })?;
        if users.iter().any(|u| u.name == name) {
            return Err(ConfigError::new(VAR, format!("{name} is listed twice")));
        }
        users.push(ConsoleUser {
            name: name.to_owned(),
            role,
            password_hash: SecretString::from(hash.trim().to_owned()),
        });
    }
    Ok(users)
}

/// `name:role,name:role` (`;` works too).
fn parse_trusted(raw: &str) -> Result<Vec<(String, ConsoleRole)>, ConfigError> {
    const VAR: &str = "CONSOLE_TRUSTED_USERS";
    raw.split([',', ';'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (name, role) = entry
                .rsplit_once(':')
                .ok_or_else(|| ConfigError::new(VAR, format!("{entry:?} is not name:role")))?;
            let role = ConsoleRole::parse(role)
                .ok_or_else(|| ConfigError::new(VAR, format!("{name}: role must be viewer or operator")))?;
            if !is_user_name(name.trim()) {
                return Err(ConfigError::new(VAR, format!("{name:?} is not a user name")));
            }
            Ok((name.trim().to_owned(), role))
        })
        .collect()
}

impl ConsoleSettings {
    /// For the start-up line: counts and names, never secrets.
    pub(super) fn shown(console: Option<&Self>) -> [(&'static str, String); 6] {
        let names = [
            "CONSOLE_USERS",
            "CONSOLE_TRUSTED_HEADER",
            "CONSOLE_TRUSTED_USERS",
            "CONSOLE_SESSION_SECRET",
            "CONSOLE_SESSION_TTL",
            "CONSOLE_SECURE_COOKIES",
        ];
        let values = match console {
            None => std::array::from_fn(|_| "unset".to_owned()),
            Some(c) => [
                format!("{} user(s)", c.users.len()),
                c.trusted_header.clone().unwrap_or_else(|| "unset".to_owned()),
                format!("{} user(s)", c.trusted_users.len()),
                "set".to_owned(),
                format!("{}s", c.session_ttl.as_secs()),
                c.secure_cookies.to_string(),
            ],
        };
        let mut values = values.into_iter();
        names.map(|name| (name, values.next().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2tO3Hhx0Sx1hMlqgV7b7mUPDw1ePR0a3fwZ2C5cFfSg";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_console_is_off_unless_users_or_a_trusted_header_are_set() {
        let off = from_lookup(&lookup(&[]), AppEnv::Development).expect("valid");
        assert!(off.is_none());
    }

    #[test]
    fn users_need_a_session_secret_and_parse_with_their_roles() {
        let users = format!("alice:operator:{HASH}; bob:viewer:{HASH}");
        let err = from_lookup(&lookup(&[("CONSOLE_USERS", &users)]), AppEnv::Development)
            .err()
            .expect("no secret");
        assert_eq!(err.var, "CONSOLE_SESSION_SECRET");
        let secret = "0123456789abcdef0123456789abcdef";
        let on = from_lookup(
            &lookup(&[("CONSOLE_USERS", &users), ("CONSOLE_SESSION_SECRET", secret)]),
            AppEnv::Production,
        )
        .expect("valid")
        .expect("on");
        assert_eq!(on.users.len(), 2);
        assert_eq!(on.users[1].role, ConsoleRole::Viewer);
        assert!(on.secure_cookies);
    }

    #[test]
    fn a_bad_hash_or_role_is_refused_without_quoting_it() {
        let secret = ("CONSOLE_SESSION_SECRET", "0123456789abcdef0123456789abcdef");
        for users in ["alice:operator:hunter2", "alice:admin:$argon2id$x", "alice"] {
            let err = from_lookup(&lookup(&[("CONSOLE_USERS", users), secret]), AppEnv::Development)
                .err()
                .expect("refused");
            assert_eq!(err.var, "CONSOLE_USERS");
            assert!(!err.reason.contains("hunter2"), "{}", err.reason);
        }
    }
}
