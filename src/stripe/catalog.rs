//! Stripe's product catalog as `packs sync` uses it: one Product per pack or plan, one one-time
//! Price per (pack, amount, currency) and one recurring Price per (plan, terms), found again by
//! lookup key.

use std::{collections::HashMap, str::FromStr};

use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_product::{
    price::{CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice, UpdatePrice},
    product::{CreateProduct, RetrieveProduct},
};
use stripe_types::Currency;

use super::{StripeError, StripeGateway};

/// A Price as far as sync cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPrice {
    pub id: String,
    pub unit_amount: Option<i64>,
    pub currency: String,
    pub active: bool,
    /// `month`, `year`, …; `None` for a one-time Price.
    pub recurring_interval: Option<String>,
}

/// Sent as `Idempotency-Key` when given, so a retried create makes nothing twice.
fn strategy(idempotency_key: Option<&str>) -> Result<RequestStrategy, StripeError> {
    match idempotency_key {
        None => Ok(RequestStrategy::Once),
        Some(key) => IdempotencyKey::new(key)
            .map(RequestStrategy::Idempotent)
            .map_err(|err| StripeError::Rejected {
                status: 400,
                message: err.to_string(),
            }),
    }
}

impl StripeGateway {
    /// The active Price holding `lookup_key`, if any.
    pub async fn price_by_lookup_key(&self, lookup_key: &str) -> Result<Option<CatalogPrice>, StripeError> {
        let client = self.client()?;
        let page = ListPrice::new()
            .lookup_keys(vec![lookup_key.to_owned()])
            .active(true)
            .limit(1)
            .send(client)
            .await?;
        Ok(page.data.into_iter().next().map(|price| CatalogPrice {
            id: price.id.to_string(),
            unit_amount: price.unit_amount,
            currency: price.currency.to_string(),
            active: price.active,
            recurring_interval: price.recurring.map(|r| r.interval.as_str().to_owned()),
        }))
    }

    /// Whether a Product with this id exists (Stripe answers 404 otherwise).
    pub async fn product_exists(&self, product_id: &str) -> Result<bool, StripeError> {
        let client = self.client()?;
        match RetrieveProduct::new(product_id)
            .send(client)
            .await
            .map_err(StripeError::from)
        {
            Ok(_) => Ok(true),
            Err(StripeError::Rejected { status: 404, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Creates a Product with our id; `idempotency_key` is sent as `Idempotency-Key`.
    pub async fn create_product(
        &self,
        product_id: &str,
        name: &str,
        metadata: HashMap<String, String>,
        idempotency_key: Option<&str>,
    ) -> Result<(), StripeError> {
        let client = self.client()?;
        let strategy = strategy(idempotency_key)?;
        CreateProduct::new(name)
            .id(product_id)
            .metadata(metadata)
            .customize()
            .request_strategy(strategy)
            .send(client)
            .await?;
        Ok(())
    }

    /// Creates a Price, one-time or recurring every `recurring` (`month` or `year`); the lookup
    /// key moves to it from any older Price. `idempotency_key` is sent as `Idempotency-Key`.
    #[allow(clippy::too_many_arguments)] // One argument per field of the Price.
    pub async fn create_price(
        &self,
        product_id: &str,
        unit_amount: i64,
        currency: &str,
        recurring: Option<&str>,
        lookup_key: &str,
        metadata: HashMap<String, String>,
        idempotency_key: Option<&str>,
    ) -> Result<String, StripeError> {
        let client = self.client()?;
        let currency = Currency::from_str(currency).map_err(|_| StripeError::Rejected {
            status: 400,
            message: format!("unknown currency {currency:?}"),
        })?;
        let mut create = CreatePrice::new(currency)
            .product(product_id)
            .unit_amount(unit_amount)
            .lookup_key(lookup_key)
            .transfer_lookup_key(true)
            .metadata(metadata);
        if let Some(interval) = recurring {
            let interval = match interval {
                "month" => CreatePriceRecurringInterval::Month,
                "year" => CreatePriceRecurringInterval::Year,
                other => {
                    return Err(StripeError::Rejected {
                        status: 400,
                        message: format!("unsupported interval {other:?}"),
                    });
                }
            };
            create = create.recurring(CreatePriceRecurring::new(interval));
        }
        let price = create
            .customize()
            .request_strategy(strategy(idempotency_key)?)
            .send(client)
            .await?;
        Ok(price.id.to_string())
    }

    /// Archives a Price (`active=false`): no new Checkout Session can use it, old ones keep it.
    pub async fn archive_price(&self, price_id: &str) -> Result<(), StripeError> {
        let client = self.client()?;
        UpdatePrice::new(price_id).active(false).send(client).await?;
        Ok(())
    }
}
