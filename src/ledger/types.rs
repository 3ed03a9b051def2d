//! Newtypes that can only hold valid values: parse at the edge, trust inside.

use std::fmt;

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

pub(crate) fn bounded_token(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidInput> {
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
pub(crate) struct AccountId(String);

impl AccountId {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("account_id", raw, 255).map(Self)
    }
    pub(crate) fn as_str(&self) -> &str {
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
pub(crate) struct Email(String);

impl Email {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
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
    pub(crate) fn as_str(&self) -> &str {
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
pub(crate) enum AccountRef {
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

/// The caller's key making a purchase request safe to repeat (Stripe allows 255 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyKey(String);

impl IdempotencyKey {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("idempotency_key", raw, 255).map(Self)
    }
    /// A ConsumeCredits key: a consumption's entry is referenced by its key, and one beginning
    /// like a capture's reference (`hold:<id>`) would take that hold's entry.
    pub(crate) fn parse_consumption(raw: &str) -> Result<Self, InvalidInput> {
        let key = Self::parse(raw)?;
        let prefix = super::book::CAPTURE_PREFIX;
        if key.0.starts_with(prefix) {
            return Err(InvalidInput::new(
                "idempotency_key",
                format!("must not begin with {prefix:?}, which marks captures"),
            ));
        }
        Ok(key)
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Credits a caller moves in one call: 1 to 10^12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Credits(i64);

/// The most credits one call may move.
pub(crate) const MAX_CREDITS: i64 = 1_000_000_000_000;

impl Credits {
    pub(crate) fn parse(raw: i64) -> Result<Self, InvalidInput> {
        if (1..=MAX_CREDITS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidInput::new(
                "credits",
                format!("must be from 1 to {MAX_CREDITS}"),
            ))
        }
    }
    pub(crate) fn get(self) -> i64 {
        self.0
    }
}

/// A balance brought over from another system (`credits import accounts`): 0 to 10^12. A
/// negative balance is refused: the seed never let one go below zero, so one in an export is a
/// data error to fix at the source, not debt to carry over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ImportedBalance(i64);

impl ImportedBalance {
    pub(crate) fn parse(raw: i64) -> Result<Self, InvalidInput> {
        if (0..=MAX_CREDITS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidInput::new(
                "credit_balance",
                format!("must be from 0 to {MAX_CREDITS}"),
            ))
        }
    }
    pub(crate) fn get(self) -> i64 {
        self.0
    }
}

/// The caller's word for why credits move (`usage`, `support`, …): 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Reason(String);

impl Reason {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(InvalidInput::new("reason", "must not be empty"));
        }
        if value.chars().count() > 64 {
            return Err(InvalidInput::new("reason", "longer than 64 characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(InvalidInput::new("reason", "contains control characters"));
        }
        Ok(Self(value.to_owned()))
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most 20 keys of at most 40 characters, values of at most 500.
pub(crate) fn parse_metadata<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<super::book::Metadata, InvalidInput> {
    let mut metadata = super::book::Metadata::new();
    for (key, value) in pairs {
        if key.is_empty() || key.chars().count() > 40 || key.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "metadata",
                format!("key {key:?} must be 1 to 40 characters without control characters"),
            ));
        }
        // NUL is the one character PostgreSQL text cannot hold.
        if value.chars().count() > 500 || value.contains('\0') {
            return Err(InvalidInput::new(
                "metadata",
                format!("value of {key:?} must be at most 500 characters without NUL"),
            ));
        }
        metadata.insert(key.clone(), value.clone());
    }
    if metadata.len() > 20 {
        return Err(InvalidInput::new("metadata", "more than 20 keys"));
    }
    Ok(metadata)
}

/// A hold's id as callers send it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HoldId(String);

impl HoldId {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("hold_id", raw, 64).map(Self)
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a hold lives unless captured or released: 1 s to a day, 300 s by default.
pub(crate) fn hold_ttl(seconds: i32) -> Result<chrono::Duration, InvalidInput> {
    match seconds {
        0 => Ok(chrono::Duration::seconds(300)),
        1..=86_400 => Ok(chrono::Duration::seconds(i64::from(seconds))),
        _ => Err(InvalidInput::new(
            "ttl_seconds",
            "must be from 1 to 86400 (0 means 300)",
        )),
    }
}

/// Page size bounds for listings.
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
pub(crate) const MAX_PAGE_SIZE: u64 = 500;

/// A validated page request: size within bounds, cursor decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub size: u64,
    /// Rows strictly older than this cursor.
    pub after: Option<String>,
}

/// Which listing a page token belongs to; a token from one is refused by the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Purchases,
    LedgerEntries,
}

impl Listing {
    fn prefix(self) -> &'static str {
        match self {
            Self::Purchases => "purchases.v1:",
            Self::LedgerEntries => "ledger.v1:",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::Purchases => "ListPurchases",
            Self::LedgerEntries => "ListLedgerEntries",
        }
    }

    fn valid_cursor(self, cursor: &str) -> bool {
        match self {
            Self::Purchases => uuid::Uuid::parse_str(cursor).is_ok(),
            Self::LedgerEntries => cursor.parse::<i64>().is_ok_and(|id| id > 0),
        }
    }
}

impl PageRequest {
    pub(crate) fn parse(listing: Listing, size: i32, token: &str) -> Result<Self, InvalidInput> {
        let size = match size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(InvalidInput::new("page_size", "must not be negative")),
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let after = match token.trim() {
            "" => None,
            token => Some(decode_page_token(listing, token).ok_or_else(|| {
                InvalidInput::new("page_token", format!("not a token from {}", listing.rpc()))
            })?),
        };
        Ok(Self { size, after })
    }
}

/// An opaque token for the page after the row `last`.
pub(crate) fn encode_page_token(listing: Listing, last: &str) -> String {
    hex::encode(format!("{}{last}", listing.prefix()))
}

fn decode_page_token(listing: Listing, token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let cursor = text.strip_prefix(listing.prefix())?;
    listing.valid_cursor(cursor).then(|| cursor.to_owned())
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
    fn page_tokens_round_trip_and_foreign_ones_fail() {
        let id = uuid::Uuid::now_v7().to_string();
        let page = PageRequest::parse(
            Listing::Purchases,
            10,
            &encode_page_token(Listing::Purchases, &id),
        )
        .expect("own token");
        assert_eq!(page.after.as_deref(), Some(id.as_str()));
        let entries = encode_page_token(Listing::LedgerEntries, "42");
        assert_eq!(
            PageRequest::parse(Listing::LedgerEntries, 10, &entries).map(|p| p.after),
            Ok(Some("42".to_owned()))
        );
        assert!(
            PageRequest::parse(Listing::Purchases, 10, &entries).is_err(),
            "another listing's token"
        );
        assert!(PageRequest::parse(Listing::Purchases, 10, "abc").is_err());
        assert!(PageRequest::parse(Listing::Purchases, 10, &hex::encode("other:1")).is_err());
        assert_eq!(
            PageRequest::parse(Listing::Purchases, 0, "").map(|p| p.size),
            Ok(DEFAULT_PAGE_SIZE)
        );
        assert_eq!(
            PageRequest::parse(Listing::Purchases, 10_000, "").map(|p| p.size),
            Ok(MAX_PAGE_SIZE)
        );
        assert!(PageRequest::parse(Listing::Purchases, -1, "").is_err());
    }

    #[test]
    fn spend_inputs_are_bounded() {
        assert!(Credits::parse(0).is_err());
        assert!(Credits::parse(-5).is_err());
        assert_eq!(Credits::parse(MAX_CREDITS).map(Credits::get), Ok(MAX_CREDITS));
        assert!(Credits::parse(MAX_CREDITS + 1).is_err());
        assert_eq!(ImportedBalance::parse(0).map(ImportedBalance::get), Ok(0));
        assert!(ImportedBalance::parse(-1).is_err());
        assert!(ImportedBalance::parse(MAX_CREDITS + 1).is_err());
        assert!(Reason::parse("").is_err());
        assert!(Reason::parse(&"x".repeat(65)).is_err());
        assert!(Reason::parse(&"é".repeat(64)).is_ok(), "characters, not bytes");
        let many: std::collections::BTreeMap<String, String> =
            (0..21).map(|n| (format!("k{n}"), "v".to_owned())).collect();
        assert_eq!(parse_metadata(&many).map_err(|e| e.field), Err("metadata"));
        let long_key = [("k".repeat(41), "v".to_owned())];
        assert!(parse_metadata(long_key.iter().map(|(k, v)| (k, v))).is_err());
        let long_value = [("k".to_owned(), "v".repeat(501))];
        assert!(parse_metadata(long_value.iter().map(|(k, v)| (k, v))).is_err());
        assert!(IdempotencyKey::parse_consumption("hold:0190").is_err());
        assert!(IdempotencyKey::parse_consumption("call-hold:1").is_ok());
        assert!(IdempotencyKey::parse("hold:0190").is_ok(), "other operations may");
        assert_eq!(hold_ttl(0), Ok(chrono::Duration::seconds(300)));
        assert!(hold_ttl(86_401).is_err());
        assert!(hold_ttl(-1).is_err());
    }
}
