//! The billing domain: packs, accounts, purchases and the credit ledger. No transport types
//! here; `grpc/` and `webhook/` convert into these calls and map `LedgerError` once each.

pub mod adjustments;
pub mod book;
pub mod error;
pub mod events;
pub mod fulfilment;
pub mod jobs;
pub mod kinds;
pub mod outcome;
pub mod pack_sync;
pub mod packs;
pub mod reconcile;
pub mod store;
pub mod types;

use chrono::Utc;
use sea_orm::DatabaseConnection;
use url::Url;

pub use error::LedgerError;
pub use types::*;

use crate::{
    entities::{account, credit_pack, credit_purchase},
    stripe::{CheckoutRequest, StripeGateway},
};

/// A purchase request whose fields have been parsed.
#[derive(Debug, Clone)]
pub struct PurchaseRequest {
    pub account_id: AccountId,
    pub email: Email,
    pub price_id: PriceId,
    pub success_url: Option<RedirectUrl>,
    pub cancel_url: Option<RedirectUrl>,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// What a caller needs to send the buyer to Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCheckout {
    pub checkout_url: String,
    pub checkout_session_id: String,
    pub purchase_id: String,
}

/// A purchase with its pack's display name.
#[derive(Debug, Clone)]
pub struct PurchaseView {
    pub purchase: credit_purchase::Model,
    pub pack_name: String,
}

/// One page of purchases and the token for the next (None on the last page).
#[derive(Debug, Clone)]
pub struct PurchasePage {
    pub purchases: Vec<PurchaseView>,
    pub next_page_token: Option<String>,
}

/// The domain service: cheap to clone, shared by every transport.
#[derive(Clone)]
pub struct Ledger {
    db: DatabaseConnection,
    stripe: StripeGateway,
    frontend_url: Url,
    redirects: RedirectPolicy,
}

impl Ledger {
    /// `redirects` decides which success/cancel URLs a caller may pass; the defaults on
    /// `frontend_url` are configuration, not input, and are not checked.
    pub fn new(
        db: DatabaseConnection,
        stripe: StripeGateway,
        frontend_url: Url,
        redirects: RedirectPolicy,
    ) -> Self {
        Self {
            db,
            stripe,
            frontend_url,
            redirects,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn stripe(&self) -> &StripeGateway {
        &self.stripe
    }

    /// Packs a buyer can choose from.
    pub async fn list_packs(&self) -> Result<Vec<credit_pack::Model>, LedgerError> {
        Ok(store::active_packs(&self.db).await?)
    }

    /// Opens a Checkout Session for one pack and records a pending purchase. With an
    /// idempotency key, a repeat returns the first session and records nothing new.
    #[tracing::instrument(skip_all, fields(account_id = %req.account_id, price_id = req.price_id.as_str()), err)]
    pub async fn purchase_credits(&self, req: PurchaseRequest) -> Result<StartedCheckout, LedgerError> {
        // Before anything is written or sent: Checkout would send the buyer there after paying.
        for (field, url) in [("success_url", &req.success_url), ("cancel_url", &req.cancel_url)] {
            if let Some(url) = url {
                self.redirects.check(field, url)?;
            }
        }
        let pack = store::pack_by_price(&self.db, req.price_id.as_str())
            .await?
            .filter(|pack| pack.active)
            .ok_or_else(|| {
                LedgerError::NotFound(format!("credit pack with price {}", req.price_id.as_str()))
            })?;

        let txn = store::begin_write(&self.db).await?;
        let account = store::ensure_account(&txn, &req.account_id, &req.email, Utc::now()).await?;
        txn.commit().await?;

        if let Some(key) = &req.idempotency_key
            && let Some(done) =
                store::purchase_by_idempotency_key(&self.db, &account.id, key.as_str()).await?
            && let Some(started) = started_checkout(&done)
        {
            return Ok(started);
        }

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
                account_id: &account.id,
                pack_id: &pack.id,
                success_url: &success_url,
                cancel_url: &cancel_url,
                idempotency_key: req.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            })
            .await?;

        let now = Utc::now();
        let purchase = credit_purchase::Model {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account.id.clone(),
            credit_pack_id: pack.id.clone(),
            quantity: pack.credits,
            amount: pack.unit_amount,
            currency: pack.currency.clone(),
            amount_refunded: 0,
            stripe_checkout_session_id: session.id.clone(),
            stripe_payment_intent_id: None,
            checkout_url: Some(session.url.clone()),
            idempotency_key: req.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            status: PurchaseStatus::Pending.as_str().to_owned(),
            created_at: now,
            completed_at: None,
            updated_at: now,
        };
        let purchase_id = purchase.id.clone();
        if store::insert_purchase_if_new(&self.db, purchase).await? {
            tracing::info!(
                purchase_id,
                session_id = session.id,
                pack_id = pack.id,
                "checkout session created"
            );
            return Ok(StartedCheckout {
                checkout_url: session.url,
                checkout_session_id: session.id,
                purchase_id,
            });
        }
        // A concurrent repeat of the same idempotent request recorded it first.
        let existing = store::purchase_by_session(&self.db, &session.id)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("purchase for session {} conflicted but is missing", session.id)
            })?;
        Ok(StartedCheckout {
            checkout_url: existing.checkout_url.unwrap_or(session.url),
            checkout_session_id: session.id,
            purchase_id: existing.id,
        })
    }

    pub async fn get_balance(&self, by: &AccountRef) -> Result<account::Model, LedgerError> {
        store::find_account(&self.db, by)
            .await?
            .ok_or_else(|| LedgerError::NotFound(by.to_string()))
    }

    /// An account's purchases, newest first.
    pub async fn list_purchases(
        &self,
        by: &AccountRef,
        page: &PageRequest,
    ) -> Result<PurchasePage, LedgerError> {
        let account = self.get_balance(by).await?;
        let mut rows =
            store::purchases_page(&self.db, &account.id, page.after.as_deref(), page.size + 1).await?;
        let next_page_token = if rows.len() as u64 > page.size {
            rows.truncate(page.size as usize);
            rows.last().map(|last| encode_page_token(&last.id))
        } else {
            None
        };
        let packs = store::all_packs(&self.db).await?;
        let purchases = rows
            .into_iter()
            .map(|purchase| {
                let pack_name = packs
                    .iter()
                    .find(|p| p.id == purchase.credit_pack_id)
                    .map_or_else(|| purchase.credit_pack_id.clone(), |p| p.name.clone());
                PurchaseView { purchase, pack_name }
            })
            .collect();
        Ok(PurchasePage {
            purchases,
            next_page_token,
        })
    }

    fn frontend_page(&self, path_and_query: &str) -> String {
        format!(
            "{}/{}",
            self.frontend_url.as_str().trim_end_matches('/'),
            path_and_query
        )
    }
}

fn started_checkout(purchase: &credit_purchase::Model) -> Option<StartedCheckout> {
    Some(StartedCheckout {
        checkout_url: purchase.checkout_url.clone()?,
        checkout_session_id: purchase.stripe_checkout_session_id.clone(),
        purchase_id: purchase.id.clone(),
    })
}
