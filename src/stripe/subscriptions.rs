//! Stripe Billing as Subscribe and the webhook use it: a Checkout Session in `subscription`
//! mode (its metadata and `subscription_data[metadata]` name account and plan, so the
//! subscription and every invoice carry them), cancelling a subscription, and the PaymentIntent
//! that paid an invoice (`expand[]=payments`), which refunds and disputes name.
//!
//! The Billing requests are built here over async-stripe's request builder: the generated
//! `stripe_billing` crate is large and only three of its calls are needed.

use std::collections::HashMap;

use serde::Serialize;
use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_client_core::{RequestBuilder, StripeMethod};
use stripe_shared::{Invoice, Subscription};

use super::{CheckoutSession, StripeError, StripeGateway, stripe_idempotency_key};

/// What a subscription Checkout Session is made of.
#[derive(Debug)]
pub(crate) struct SubscriptionCheckout<'a> {
    pub price_id: &'a str,
    pub account_id: &'a str,
    pub plan_id: &'a str,
    /// The account's Customer: the subscription and its invoices are the Customer's.
    pub customer_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    /// The caller's key; Stripe gets one derived from it and the account (never the one a
    /// PurchaseCredits with the same caller key sends).
    pub idempotency_key: Option<&'a str>,
}

/// A subscription as Stripe answered a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CanceledSubscription {
    pub status: String,
    pub cancel_at_period_end: bool,
}

/// `POST /v1/subscriptions/{id}` with `cancel_at_period_end=true`, or `DELETE` (at once).
struct Cancel<'a> {
    id: &'a str,
    at_period_end: bool,
}

#[derive(Serialize)]
struct CancelAtPeriodEnd {
    cancel_at_period_end: bool,
}

impl StripeRequest for Cancel<'_> {
    type Output = Subscription;

    fn build(&self) -> RequestBuilder {
        let path = format!("/subscriptions/{}", self.id);
        if self.at_period_end {
            RequestBuilder::new(StripeMethod::Post, path).form(&CancelAtPeriodEnd {
                cancel_at_period_end: true,
            })
        } else {
            RequestBuilder::new(StripeMethod::Delete, path)
        }
    }
}

/// `GET /v1/invoices/{id}?expand[]=payments`.
struct InvoiceWithPayments<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Expand {
    expand: [&'static str; 1],
}

impl StripeRequest for InvoiceWithPayments<'_> {
    type Output = Invoice;

    fn build(&self) -> RequestBuilder {
        RequestBuilder::new(StripeMethod::Get, format!("/invoices/{}", self.id))
            .query(&Expand { expand: ["payments"] })
    }
}

impl StripeGateway {
    /// Creates a one-plan Checkout Session in `subscription` mode for the account's Customer.
    #[tracing::instrument(skip_all, fields(account_id = req.account_id, plan_id = req.plan_id), err)]
    pub(crate) async fn create_subscription_checkout(
        &self,
        req: SubscriptionCheckout<'_>,
    ) -> Result<CheckoutSession, StripeError> {
        let client = self.client()?;
        let mut line = CreateCheckoutSessionLineItems::new();
        line.price = Some(req.price_id.to_owned());
        line.quantity = Some(1);
        let metadata = HashMap::from([
            ("account_id".to_owned(), req.account_id.to_owned()),
            ("plan_id".to_owned(), req.plan_id.to_owned()),
        ]);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        subscription.metadata = Some(metadata.clone());
        let strategy = match req.idempotency_key {
            Some(key) => RequestStrategy::Idempotent(
                IdempotencyKey::new(stripe_idempotency_key(
                    req.account_id,
                    &format!("subscribe\n{key}"),
                ))
                .map_err(|err| StripeError::Rejected {
                    status: 400,
                    message: err.to_string(),
                })?,
            ),
            None => RequestStrategy::Once,
        };
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .line_items(vec![line])
            .customer(req.customer_id)
            .client_reference_id(req.account_id)
            .success_url(req.success_url)
            .cancel_url(req.cancel_url)
            .metadata(metadata)
            .subscription_data(subscription)
            .customize()
            .request_strategy(strategy)
            .send(client)
            .await?;
        let url = session
            .url
            .ok_or_else(|| StripeError::Unavailable("Stripe returned a session without a url".into()))?;
        Ok(CheckoutSession {
            id: session.id.to_string(),
            url,
        })
    }

    /// Cancels a subscription at its period's end, or at once.
    #[tracing::instrument(skip(self), err)]
    pub(crate) async fn cancel_subscription(
        &self,
        subscription_id: &str,
        at_period_end: bool,
    ) -> Result<CanceledSubscription, StripeError> {
        let client = self.client()?;
        let subscription = Cancel {
            id: subscription_id,
            at_period_end,
        }
        .customize()
        .send(client)
        .await?;
        Ok(CanceledSubscription {
            status: subscription.status.as_str().to_owned(),
            cancel_at_period_end: subscription.cancel_at_period_end,
        })
    }

    /// The PaymentIntent that paid an invoice (of its payments, a paid one first); `None` when
    /// it was paid otherwise (credit balance, out of band) or is not paid.
    #[tracing::instrument(skip(self), err)]
    pub(crate) async fn invoice_payment_intent(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, StripeError> {
        let client = self.client()?;
        let invoice = InvoiceWithPayments { id: invoice_id }
            .customize()
            .send(client)
            .await?;
        let payments = invoice.payments.map(|p| p.data).unwrap_or_default();
        Ok(payments
            .iter()
            .filter(|p| p.status == "paid")
            .chain(payments.iter())
            .find_map(|p| p.payment.payment_intent.as_ref())
            .map(|intent| intent.id().to_string()))
    }
}
