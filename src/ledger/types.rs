//! Newtypes that can only hold valid values: parse at the edge, trust inside.

use std::fmt;

use url::{Host, Origin, Url};

/// A request value that failed its newtype's rules; `field` is the caller-facing name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

fn bounded_token(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidInput> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(InvalidInput::new(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::new(field, "contains control characters"));
    }
    Ok(value.to_owned())
}

/// The caller's stable user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("account_id", raw, 255).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, lower-cased so that matching is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let value = bounded_token("email", raw, 254)?.to_lowercase();
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !value.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(InvalidInput::new("email", "not an email address"));
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a caller names an account: by id or by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    Id(AccountId),
    Email(Email),
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "account {id}"),
            Self::Email(email) => write!(f, "account with email {email}"),
        }
    }
}

/// A Stripe Price id naming a credit pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceId(String);

impl PriceId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("price_id", raw, 255).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller's key making a purchase request safe to repeat (Stripe allows 255 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("idempotency_key", raw, 255).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute http(s) URL that Checkout redirects to, and the origin it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUrl {
    raw: String,
    origin: Origin,
}

impl RedirectUrl {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
        let raw = raw.trim();
        // The URL parser drops tabs and newlines that Stripe or a browser may read differently,
        // so the origin checked would not be the one the buyer lands on.
        if raw.chars().any(char::is_control) {
            return Err(InvalidInput::new(field, "contains control characters"));
        }
        let url = Url::parse(raw).map_err(|err| InvalidInput::new(field, err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(InvalidInput::new(field, "must be an http or https URL"));
        }
        // Keep the caller's text: Stripe expands `{CHECKOUT_SESSION_ID}`, which Url would escape.
        Ok(Self {
            raw: raw.to_owned(),
            origin: url.origin(),
        })
    }
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Why a redirect origin cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectOriginError {
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
pub fn parse_origin(raw: &str) -> Result<Origin, RedirectOriginError> {
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
pub fn is_plain_http_off_loopback(origin: &Origin) -> bool {
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
pub struct RedirectPolicy {
    origins: Vec<Origin>,
    https_only: bool,
}

impl RedirectPolicy {
    pub fn new(origins: Vec<Origin>, https_only: bool) -> Result<Self, RedirectOriginError> {
        if origins.is_empty() {
            return Err(RedirectOriginError::Empty);
        }
        if https_only && let Some(plain) = origins.iter().find(|o| is_plain_http_off_loopback(o)) {
            return Err(RedirectOriginError::PlainHttp(plain.ascii_serialization()));
        }
        Ok(Self { origins, https_only })
    }

    /// Refuses a caller's `field` unless it leads to an allowed origin.
    pub fn check(&self, field: &'static str, url: &RedirectUrl) -> Result<(), InvalidInput> {
        if self.https_only && is_plain_http_off_loopback(url.origin()) {
            return Err(InvalidInput::new(
                field,
                "must use https when APP_ENV=production (plain http only on localhost)",
            ));
        }
        if !self.origins.contains(url.origin()) {
            return Err(InvalidInput::new(
                field,
                format!(
                    "origin {} is not in ALLOWED_REDIRECT_ORIGINS",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for RedirectPolicy {
    /// The origins as `ALLOWED_REDIRECT_ORIGINS` would list them, normalised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<String> = self.origins.iter().map(Origin::ascii_serialization).collect();
        f.write_str(&origins.join(","))
    }
}

/// Where a purchase is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    Pending,
    Completed,
    Expired,
    Failed,
    Refunded,
}

impl PurchaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    /// Reads the stored text; unknown text is a bug, reported by the caller.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "expired" => Self::Expired,
            "failed" => Self::Failed,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
}

/// Page size bounds for listings.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;

/// A validated page request: size within bounds, cursor decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u64,
    /// Purchases strictly older than this id.
    pub after: Option<String>,
}

const PAGE_TOKEN_PREFIX: &str = "purchases.v1:";

impl PageRequest {
    pub fn parse(size: i32, token: &str) -> Result<Self, InvalidInput> {
        let size = match size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(InvalidInput::new("page_size", "must not be negative")),
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let after = match token.trim() {
            "" => None,
            token => Some(
                decode_page_token(token)
                    .ok_or_else(|| InvalidInput::new("page_token", "not a token from ListPurchases"))?,
            ),
        };
        Ok(Self { size, after })
    }
}

/// An opaque token for the page after the purchase `last_id`.
pub fn encode_page_token(last_id: &str) -> String {
    hex::encode(format!("{PAGE_TOKEN_PREFIX}{last_id}"))
}

fn decode_page_token(token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(PAGE_TOKEN_PREFIX)?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Buyer@Example.COM ").map(|e| e.0),
            Ok("buyer@example.com".to_owned())
        );
        for bad in [
            "",
            "no-at",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn redirect_urls_must_be_http() {
        assert!(RedirectUrl::parse("success_url", "https://x.test/ok?id={CHECKOUT_SESSION_ID}").is_ok());
        assert!(RedirectUrl::parse("success_url", "javascript:alert(1)").is_err());
        assert!(RedirectUrl::parse("cancel_url", "not a url").is_err());
        assert!(RedirectUrl::parse("cancel_url", "https://x.te\tst/").is_err());
    }

    fn origin(raw: &str) -> Origin {
        parse_origin(raw).expect("an origin")
    }

    fn check(policy: &RedirectPolicy, raw: &str) -> Result<(), InvalidInput> {
        policy.check("success_url", &RedirectUrl::parse("success_url", raw)?)
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
            let err = check(&policy, bad).expect_err(bad);
            assert_eq!(err.field, "success_url");
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
        assert!(err.reason.contains("https"), "{err}");
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_fail() {
        let id = uuid::Uuid::now_v7().to_string();
        let page = PageRequest::parse(10, &encode_page_token(&id)).expect("own token");
        assert_eq!(page.after.as_deref(), Some(id.as_str()));
        assert!(PageRequest::parse(10, "abc").is_err());
        assert!(PageRequest::parse(10, &hex::encode("other:1")).is_err());
        assert_eq!(PageRequest::parse(0, "").map(|p| p.size), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(PageRequest::parse(10_000, "").map(|p| p.size), Ok(MAX_PAGE_SIZE));
        assert!(PageRequest::parse(-1, "").is_err());
    }
}
