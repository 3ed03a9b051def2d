//! Billing's newtypes and statuses: the price a buyer picks, where Checkout may send them back,
//! where a purchase is in its life, and Stripe's refund and dispute statuses.

use url::{Origin, Url};

use crate::{
    ledger::types::{InvalidInput, bounded_token},
    vocab::text_enum,
};

/// A Stripe Price id naming a credit pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PriceId(String);

impl PriceId {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("price_id", raw, 255).map(Self)
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute http(s) URL that Checkout redirects to, and the origin it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectUrl {
    raw: String,
    origin: Origin,
}

impl RedirectUrl {
    pub(crate) fn parse(field: &'static str, raw: &str) -> Result<Self, InvalidInput> {
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
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }
    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }
}

text_enum!(
    /// Where a purchase is in its life (`credit_purchases.status`).
    pub(crate) PurchaseStatus {
        Pending => "pending",
        Completed => "completed",
        Expired => "expired",
        Failed => "failed",
        Refunded => "refunded",
    }
);

text_enum!(
    /// A refund's status as Stripe reports it (`stripe_refunds.status`).
    pub open RefundStatus {
        Pending => "pending",
        RequiresAction => "requires_action",
        Succeeded => "succeeded",
        Failed => "failed",
        Canceled => "canceled",
    }
);

text_enum!(
    /// A dispute's status as Stripe reports it (`stripe_disputes.status`).
    pub open DisputeStatus {
        WarningNeedsResponse => "warning_needs_response",
        WarningUnderReview => "warning_under_review",
        WarningClosed => "warning_closed",
        NeedsResponse => "needs_response",
        UnderReview => "under_review",
        Won => "won",
        Lost => "lost",
    }
);

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

    #[test]
    fn every_status_round_trips_through_its_text() {
        for status in PurchaseStatus::ALL {
            assert_eq!(PurchaseStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(PurchaseStatus::parse("processing"), None);
        for status in RefundStatus::ALL {
            assert_eq!(&RefundStatus::parse(status.as_str()), status);
        }
        for status in DisputeStatus::ALL {
            assert_eq!(&DisputeStatus::parse(status.as_str()), status);
        }
    }

    #[test]
    fn an_unknown_stripe_status_round_trips_through_other() {
        let refund = RefundStatus::parse("reversed_by_bank");
        assert_eq!(refund, RefundStatus::Other("reversed_by_bank".into()));
        assert_eq!(refund.as_str(), "reversed_by_bank");
        let dispute = DisputeStatus::parse("prevented");
        assert_eq!(dispute, DisputeStatus::Other("prevented".into()));
        assert_eq!(DisputeStatus::parse(dispute.as_str()), dispute);
        assert_eq!(dispute.to_string(), "prevented");
    }
}
