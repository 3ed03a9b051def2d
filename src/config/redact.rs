//! Credentials in URL-shaped settings: masked for the start-up line, and secrets the database
//! driver would log instead of reading refused.

use url::Url;

use super::ConfigError;

/// Query parameters whose value is a credential: libpq's and sqlx's `password` and
/// `sslpassword` (`sslkey` is a path, not a secret), and the usual token names an endpoint URL
/// might carry. Matched on the decoded key, case-insensitively, as a superset of what sqlx reads.
const SECRET_QUERY_KEYS: [&str; 8] = [
    "password",
    "sslpassword",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "secret",
    "client_secret",
];

fn is_secret_key(key: &str) -> bool {
    SECRET_QUERY_KEYS.iter().any(|s| key.eq_ignore_ascii_case(s))
}

/// sqlx reads only `password` (exactly) of these from a PostgreSQL URL, and logs the key and
/// value of every parameter it does not know at WARN: a secret under any other name (libpq's
/// `sslpassword`, `PASSWORD`) would do nothing but reach the logs, so start-up refuses it.
pub(super) fn refuse_unread_secrets(raw: &str) -> Result<(), ConfigError> {
    // An unparseable URL is refused by sqlx itself, with a message that does not quote it.
    let Ok(url) = Url::parse(raw) else {
        return Ok(());
    };
    match url
        .query_pairs()
        .find(|(key, _)| key != "password" && is_secret_key(key))
    {
        Some((key, _)) => Err(ConfigError::new(
            "DATABASE_URL",
            format!(
                "query parameter {key:?} is not read by the PostgreSQL driver, which would log \
                 its value; remove it (the password goes in user-info or `password`)"
            ),
        )),
        None => Ok(()),
    }
}

/// Whose user name is shown: a database role is worth seeing, while an HTTP endpoint with a bare
/// user name (`https://TOKEN@host`) is usually carrying a token in it.
#[derive(Clone, Copy)]
pub(super) enum UserName {
    Shown,
    Masked,
}

/// `raw` for logs: the user-info password, secret query values and (for `UserName::Masked`) the
/// user name become `****`; everything else is kept as written, so the line still says where.
pub(super) fn redact_url(raw: &str, user: UserName) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        // What cannot be parsed cannot be masked precisely: show only the scheme.
        let scheme_end = raw.find("://").map_or(0, |i| i + 3);
        return format!("{}****", &raw[..scheme_end]);
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    if matches!(user, UserName::Masked) && !url.username().is_empty() {
        let _ = url.set_username("****");
    }
    if let Some(query) = url.query() {
        let mut changed = false;
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let raw_key = pair.split_once('=').map_or(pair, |(key, _)| key);
                let is_secret = url::form_urlencoded::parse(raw_key.as_bytes())
                    .next()
                    .is_some_and(|(key, _)| is_secret_key(&key));
                if is_secret {
                    changed = true;
                    format!("{raw_key}=****")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        if changed {
            url.set_query(Some(&pairs.join("&")));
        }
    }
    url.to_string()
}

/// An http(s) setting for logs, with any credentials in it masked.
pub(super) fn redact_endpoint(url: &Url) -> String {
    redact_url(url.as_str(), UserName::Masked)
}
