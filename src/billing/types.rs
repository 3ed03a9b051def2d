//! Billing's newtypes and statuses: the price a buyer picks, where Checkout may send them back,
//! and where a purchase is in its life.

use url::{Origin, Url};

use crate::ledger::types::{InvalidInput, bounded_token};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_urls_must_be_http() {
        assert!(RedirectUrl::parse("success_url", "https://x.test/ok?id={CHECKOUT_SESSION_ID}").is_ok());
        assert!(RedirectUrl::parse("success_url", "javascript:alert(1)").is_err());
        assert!(RedirectUrl::parse("cancel_url", "not a url").is_err());
        assert!(RedirectUrl::parse("cancel_url", "https://x.te\tst/").is_err());
    }
}
