//! The Stripe API as this service uses it, over async-stripe: base URL and timeout come from
//! config, errors are sorted into what a caller can act on.

pub(crate) mod catalog;
pub(crate) mod payments;
pub(crate) mod subscriptions;

use std::collections::HashMap;

use secrecy::ExposeSecret;
use stripe::{
    Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError as ApiError, StripeRequest,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionPaymentIntentData,
    CreateCheckoutSessionPaymentIntentDataSetupFutureUsage, ListCheckoutSession,
    ListLineItemsCheckoutSession,
};
use stripe_checkout::{CheckoutSessionMode, CheckoutSessionStatus};
use stripe_types::RangeQueryTs;

use crate::config::StripeSettings;

/// Why a Stripe call did not give an answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// `STRIPE_SECRET_KEY` is not set.
    #[error("Stripe is not configured (STRIPE_SECRET_KEY is unset)")]
    NotConfigured,
    /// Stripe refused the request (4xx): its own message says why.
    #[error("Stripe rejected the request: {message}")]
    Rejected { status: u16, message: String },
    /// Stripe could not be reached, timed out, or failed (5xx).
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
}

impl From<ApiError> for StripeError {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Stripe(api, status) if (400..500).contains(&status) => Self::Rejected {
                status,
                message: api.message.unwrap_or_else(|| format!("HTTP {status}")),
            },
            ApiError::Stripe(api, status) => {
                Self::Unavailable(format!("HTTP {status}: {}", api.message.unwrap_or_default()))
            }
            ApiError::Timeout => Self::Unavailable("timed out".into()),
            // Unparsable bodies come from proxies and outages far more often than from Stripe.
            ApiError::JSONDeserialize(msg) | ApiError::ClientError(msg) | ApiError::ConfigError(msg) => {
                Self::Unavailable(msg)
            }
        }
    }
}

/// What a new Checkout Session is made of.
#[derive(Debug)]
pub struct CheckoutRequest<'a> {
    pub price_id: &'a str,
    pub customer_email: &'a str,
    pub account_id: &'a str,
    pub pack_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    /// The caller's key; Stripe gets `stripe_idempotency_key(account_id, key)`.
    pub idempotency_key: Option<&'a str>,
    /// Keep the card: the session is the Customer's (instead of naming `customer_email`) and
    /// sets the payment up for off-session use (auto top-ups).
    pub save_card_for: Option<&'a str>,
}

/// The parts of a created Checkout Session we keep.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// One line of a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub price_id: String,
    pub quantity: u64,
}

/// A completed Checkout Session as listed by Stripe, reduced to what fulfilment reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSession {
    pub id: String,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    pub client_reference_id: Option<String>,
    pub metadata: HashMap<String, String>,
    pub customer_details_email: Option<String>,
    pub customer_email: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub customer_id: Option<String>,
}

/// The `Idempotency-Key` sent to Stripe for a caller's key: scoped to the account (Stripe's
/// keys are global to our Stripe account), so two accounts using `order-1` never collide.
/// Hex SHA-256 of `"{account_id}\n{key}"`; account ids hold no control characters.
pub(crate) fn stripe_idempotency_key(account_id: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{account_id}\n{key}")))
}

/// Cheap to clone; `None` inside when no secret key is configured.
#[derive(Clone, Debug)]
pub struct StripeGateway {
    client: Option<Client>,
}

impl StripeGateway {
    pub fn new(settings: &StripeSettings) -> Result<Self, StripeError> {
        let Some(secret) = &settings.secret_key else {
            return Ok(Self { client: None });
        };
        let client = ClientBuilder::new(secret.expose_secret())
            .url(settings.api_base.as_str())
            .timeout(settings.timeout)
            .app_info("credits", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|err| StripeError::Unavailable(err.to_string()))?;
        Ok(Self { client: Some(client) })
    }

    fn client(&self) -> Result<&Client, StripeError> {
        self.client.as_ref().ok_or(StripeError::NotConfigured)
    }

    /// Creates a one-pack Checkout Session in `payment` mode.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, pack_id = req.pack_id), err)]
    pub async fn create_checkout_session(
        &self,
        req: CheckoutRequest<'_>,
    ) -> Result<CheckoutSession, StripeError> {
        let client = self.client()?;
        let mut line = CreateCheckoutSessionLineItems::new();
        line.price = Some(req.price_id.to_owned());
        line.quantity = Some(1);
        let metadata = HashMap::from([
            ("account_id".to_owned(), req.account_id.to_owned()),
            ("pack_id".to_owned(), req.pack_id.to_owned()),
            ("price_id".to_owned(), req.price_id.to_owned()),
        ]);
        let mut metadata = metadata;
        let create = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![line])
            .client_reference_id(req.account_id)
            .success_url(req.success_url)
            .cancel_url(req.cancel_url);
        // Stripe takes either a Customer or an email, not both.
        let create = match req.save_card_for {
            Some(customer) => {
                metadata.insert("save_payment_method".to_owned(), "true".to_owned());
                let mut intent = CreateCheckoutSessionPaymentIntentData::new();
                intent.setup_future_usage =
                    Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
                create.customer(customer).payment_intent_data(intent)
            }
            None => create.customer_email(req.customer_email),
        }
        .metadata(metadata);
        let strategy = match req.idempotency_key {
            Some(key) => RequestStrategy::Idempotent(
                IdempotencyKey::new(stripe_idempotency_key(req.account_id, key)).map_err(|err| {
                    StripeError::Rejected {
                        status: 400,
                        message: err.to_string(),
                    }
                })?,
            ),
            None => RequestStrategy::Once,
        };
        let session = create.customize().request_strategy(strategy).send(client).await?;
        let url = session
            .url
            .ok_or_else(|| StripeError::Unavailable("Stripe returned a session without a url".into()))?;
        Ok(CheckoutSession {
            id: session.id.to_string(),
            url,
        })
    }

    /// Every `complete` Checkout Session created at or after `since_unix`, all pages.
    #[tracing::instrument(skip(self), err)]
    pub async fn completed_sessions(&self, since_unix: i64) -> Result<Vec<CompletedSession>, StripeError> {
        let client = self.client()?;
        let list = || {
            ListCheckoutSession::new()
                .status(CheckoutSessionStatus::Complete)
                .created(RangeQueryTs::gte(since_unix))
                .limit(100)
        };
        let mut sessions = Vec::new();
        let mut request = list();
        loop {
            let page = request.send(client).await?;
            let last = page.data.last().map(|s| s.id.to_string());
            for session in page.data {
                sessions.push(CompletedSession {
                    id: session.id.to_string(),
                    payment_status: session.payment_status.as_str().to_owned(),
                    client_reference_id: session.client_reference_id,
                    metadata: session.metadata.unwrap_or_default(),
                    customer_details_email: session.customer_details.and_then(|d| d.email),
                    customer_email: session.customer_email,
                    payment_intent_id: session.payment_intent.map(|p| p.id().to_string()),
                    amount_total: session.amount_total,
                    currency: session.currency.map(|c| c.to_string()),
                    customer_id: session.customer.map(|c| c.id().to_string()),
                });
            }
            match last {
                Some(last) if page.has_more => request = list().starting_after(last),
                _ => return Ok(sessions),
            }
        }
    }

    /// All line items of a session (Stripe pages them 100 at a time).
    #[tracing::instrument(skip(self), err)]
    pub async fn session_line_items(&self, session_id: &str) -> Result<Vec<LineItem>, StripeError> {
        let client = self.client()?;
        let mut items = Vec::new();
        let mut request = ListLineItemsCheckoutSession::new(session_id).limit(100);
        loop {
            let page = request.send(client).await?;
            for item in &page.data {
                if let Some(price) = &item.price {
                    items.push(LineItem {
                        price_id: price.id.to_string(),
                        quantity: item.quantity.unwrap_or(1),
                    });
                }
            }
            match page.data.last() {
                Some(last) if page.has_more => {
                    request = ListLineItemsCheckoutSession::new(session_id)
                        .limit(100)
                        .starting_after(last.id.to_string());
                }
                _ => return Ok(items),
            }
        }
    }
}
