//! PurchaseCredits: one Checkout Session for one pack, and its pending purchase. The account is
//! created (or follows the buyer's new email) through the ledger's writer first; Stripe is
//! called outside any transaction; the purchase is then recorded through the writer too.

use chrono::Utc;

use super::{
    Billing, BillingError,
    fulfilment::Job,
    store::{self, Purchase},
    types::{PriceId, PurchaseStatus, RedirectUrl},
};
use crate::{
    catalog,
    ledger::{
        AccountId, AccountRef, Email, IdempotencyKey,
        commands::{EnsureAccount, SaveCustomer},
    },
    stripe::CheckoutRequest,
};

/// A purchase request whose fields have been parsed.
#[derive(Debug, Clone)]
pub(crate) struct PurchaseRequest {
    pub account_id: AccountId,
    pub email: Email,
    pub price_id: PriceId,
    pub success_url: Option<RedirectUrl>,
    pub cancel_url: Option<RedirectUrl>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Keep the card for auto top-ups (a Stripe Customer, `setup_future_usage=off_session`).
    pub save_payment_method: bool,
}

/// What a caller needs to send the buyer to Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartedCheckout {
    pub checkout_url: String,
    pub checkout_session_id: String,
    pub purchase_id: String,
}

fn started(purchase: &Purchase) -> Option<StartedCheckout> {
    Some(StartedCheckout {
        checkout_url: purchase.checkout_url.clone()?,
        checkout_session_id: purchase.session_id.clone(),
        purchase_id: purchase.id.clone(),
    })
}

impl Billing {
    /// Opens a Checkout Session for one pack and records a pending purchase. With an
    /// idempotency key, a repeat returns the first session and records nothing new.
    // Long on purpose: the order of checks before Stripe is called is the contract; each step is short.
    #[tracing::instrument(skip_all, fields(account_id = %req.account_id, price_id = req.price_id.as_str()), err)]
    pub(crate) async fn purchase_credits(
        &self,
        req: PurchaseRequest,
    ) -> Result<StartedCheckout, BillingError> {
        // Before anything is written or sent: Checkout would send the buyer there after paying.
        for (field, url) in [("success_url", &req.success_url), ("cancel_url", &req.cancel_url)] {
            if let Some(url) = url
                && let Some(reason) = self.redirects.refusal(url.origin())
            {
                return Err(BillingError::RedirectRefused { field, reason });
            }
        }
        let pack = catalog::store::pack_by_price(&self.db, req.price_id.as_str())
            .await?
            .filter(|pack| pack.active)
            .ok_or_else(|| BillingError::PackNotFound(req.price_id.clone()))?;

        let ensured = self
            .ledger
            .send(EnsureAccount {
                account_id: req.account_id.clone(),
                email: req.email.clone(),
                follow_email: true,
            })
            .await?;
        let account = ensured.account;
        if ensured.created {
            tracing::info!(account_id = account.account_id, "account created");
        } else if ensured.email_changed {
            // The caller knows the buyer: their current email wins (receipts, matching events).
            tracing::info!(
                account_id = account.account_id,
                "account email changed to the one PurchaseCredits named"
            );
        }

        if let Some(key) = &req.idempotency_key
            && let Some(done) = store::by_idempotency_key(&self.db, &account.account_id, key.as_str()).await?
            && let Some(started) = started(&done)
        {
            return Ok(started);
        }

        // Keeping the card: the account's Customer, created once and recorded before any
        // session names it.
        let customer = if req.save_payment_method {
            let by = AccountRef::Id(req.account_id.clone());
            let known = self.ledger.settings(&by).await?.settings.stripe_customer_id;
            Some(match known {
                Some(customer) => customer,
                None => {
                    let created = self
                        .stripe
                        .create_customer(&account.account_id, &account.email)
                        .await?;
                    self.ledger
                        .send(SaveCustomer {
                            account_id: req.account_id.clone(),
                            customer_id: created,
                        })
                        .await?
                        .customer_id
                }
            })
        } else {
            None
        };

        let success_url = req.success_url.as_ref().map_or_else(
            || self.frontend_page("dashboard/credits?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
            |u| u.as_str().to_owned(),
        );
        let cancel_url = req.cancel_url.as_ref().map_or_else(
            || self.frontend_page("dashboard/credits?checkout=cancelled"),
            |u| u.as_str().to_owned(),
        );
        let session = self
            .stripe
            .create_checkout_session(CheckoutRequest {
                price_id: req.price_id.as_str(),
                customer_email: &account.email,
                account_id: &account.account_id,
                pack_id: &pack.id,
                success_url: &success_url,
                cancel_url: &cancel_url,
                idempotency_key: req.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                save_card_for: customer.as_deref(),
            })
            .await?;

        let now = Utc::now();
        let purchase = Purchase {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account.account_id.clone(),
            credit_pack_id: pack.id.clone(),
            credits: pack.credits,
            amount: pack.unit_amount,
            currency: pack.currency.clone(),
            amount_refunded: 0,
            session_id: session.id.clone(),
            payment_intent_id: None,
            checkout_url: Some(session.url.clone()),
            idempotency_key: req.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            status: PurchaseStatus::Pending,
            created_at: now,
            completed_at: None,
            credits_expire_at: None,
        };
        let recorded = self.run(|answer| Job::Open { purchase, answer }).await?;
        tracing::info!(
            purchase_id = recorded.id,
            session_id = session.id,
            pack_id = pack.id,
            "checkout session created"
        );
        Ok(StartedCheckout {
            // A concurrent repeat of the same idempotent request may have recorded it first.
            checkout_url: recorded.checkout_url.unwrap_or(session.url),
            checkout_session_id: session.id,
            purchase_id: recorded.id,
        })
    }
}
