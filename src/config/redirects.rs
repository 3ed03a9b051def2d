//! Where Checkout may send a buyer back to (`ALLOWED_REDIRECT_ORIGINS`): origins parsed at start
//! and compared as origins, never as text.

use std::fmt;

use url::{Host, Origin, Url};

/// Why a redirect origin cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedirectOriginError {
    /// The entry is left to the caller to quote: it may hold user-info.
    #[error("not an origin like https://app.example.com (scheme, host and optional port only)")]
    NotAnOrigin,
    #[error("{0} must use https when APP_ENV=production (plain http only on localhost)")]
    PlainHttp(String),
    #[error("no origins given")]
    Empty,
}

/// Parses one configured origin: `http(s)://host[:port]`, nothing else, so that what an operator
/// writes is exactly what is compared (a path would look like a restriction and not be one).
pub(crate) fn parse_origin(raw: &str) -> Result<Origin, RedirectOriginError> {
    let url = Url::parse(raw).map_err(|_| RedirectOriginError::NotAnOrigin)?;
    let only_origin = url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !only_origin {
        return Err(RedirectOriginError::NotAnOrigin);
    }
    Ok(url.origin())
}

/// Plain http to anywhere but this machine, which production refuses.
pub(crate) fn is_plain_http_off_loopback(origin: &Origin) -> bool {
    match origin {
        Origin::Tuple(scheme, host, _) => {
            scheme == "http"
                && !match host {
                    Host::Domain(domain) => domain == "localhost",
                    Host::Ipv4(ip) => ip.is_loopback(),
                    Host::Ipv6(ip) => ip.is_loopback(),
                }
        }
        Origin::Opaque(_) => true,
    }
}

/// Where Checkout may send a buyer back to: a fixed set of origins (`ALLOWED_REDIRECT_ORIGINS`),
/// compared as (scheme, host, port) with default ports filled in and hosts lower-cased by the
/// URL parser, never as text. In production plain http is refused, except on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectPolicy {
    origins: Vec<Origin>,
    https_only: bool,
}

impl RedirectPolicy {
    pub(crate) fn new(origins: Vec<Origin>, https_only: bool) -> Result<Self, RedirectOriginError> {
        if origins.is_empty() {
            return Err(RedirectOriginError::Empty);
        }
        if https_only && let Some(plain) = origins.iter().find(|o| is_plain_http_off_loopback(o)) {
            return Err(RedirectOriginError::PlainHttp(plain.ascii_serialization()));
        }
        Ok(Self { origins, https_only })
    }

    /// Why a URL leading to `origin` may not be a redirect, if it may not.
    pub(crate) fn refusal(&self, origin: &Origin) -> Option<String> {
        if self.https_only && is_plain_http_off_loopback(origin) {
            return Some("must use https when APP_ENV=production (plain http only on localhost)".to_owned());
        }
        if !self.origins.contains(origin) {
            return Some(format!(
                "origin {} is not in ALLOWED_REDIRECT_ORIGINS",
                origin.ascii_serialization()
            ));
        }
        None
    }
}

impl fmt::Display for RedirectPolicy {
    /// The origins as `ALLOWED_REDIRECT_ORIGINS` would list them, normalised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<String> = self.origins.iter().map(Origin::ascii_serialization).collect();
        f.write_str(&origins.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(raw: &str) -> Origin {
        parse_origin(raw).expect("an origin")
    }

    fn check(policy: &RedirectPolicy, raw: &str) -> Result<(), String> {
        let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
        policy.refusal(&url.origin()).map_or(Ok(()), Err)
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port_not_by_text() {
        let policy = RedirectPolicy::new(vec![origin("https://App.Example.com")], false).expect("valid");
        for ok in [
            "https://app.example.com/ok",
            "https://APP.example.com:443/ok?session={CHECKOUT_SESSION_ID}",
            "https://app.example.com",
        ] {
            assert_eq!(check(&policy, ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://app.example.com.evil.test/",
            "https://app.example.com@evil.test/",
            "https://evil.test\\@app.example.com/",
            "https://evil.test/https://app.example.com",
            "http://app.example.com/",
            "https://app.example.com:8443/",
        ] {
            check(&policy, bad).expect_err(bad);
        }
    }

    #[test]
    fn configured_origins_are_origins_only() {
        assert_eq!(
            origin("https://app.example.com:443/"),
            origin("https://app.example.com")
        );
        for bad in [
            "app.example.com",
            "*",
            "ftp://app.example.com",
            "https://app.example.com/billing",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
        ] {
            assert_eq!(parse_origin(bad), Err(RedirectOriginError::NotAnOrigin), "{bad}");
        }
        assert_eq!(
            RedirectPolicy::new(vec![], false),
            Err(RedirectOriginError::Empty)
        );
    }

    #[test]
    fn production_allows_plain_http_only_on_loopback() {
        assert!(RedirectPolicy::new(vec![origin("http://app.example.com")], true).is_err());
        let loopback = [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
        ];
        let policy = RedirectPolicy::new(loopback.iter().map(|o| origin(o)).collect(), true).expect("valid");
        for url in loopback {
            assert_eq!(check(&policy, &format!("{url}/ok")), Ok(()), "{url}");
        }
        let err = check(&policy, "http://app.example.com/").expect_err("plain http");
        assert!(err.contains("https"), "{err}");
    }
}
