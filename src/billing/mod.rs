//! Billing: selling credit packs and subscriptions through Stripe Checkout and turning Stripe's
//! events into purchases, subscriptions and ledger postings.
//!
//! - `checkout`: PurchaseCredits.
//! - `error`: `BillingError`, into which Stripe's and the database's errors are sorted.
//! - `fulfilment`: the ledger writer's extension that applies Stripe events exactly once.
//! - `lookup`: which account a Stripe id (session, payment intent, customer) belongs to.
//! - `past_purchases`: purchases completed before the move, recorded without crediting.
//! - `settings`: UpdateAccountSettings's checks against the catalog.
//! - `settlement`: refunds and disputes as a pure plan.
//! - `stripe_event`: Stripe events as billing reads them; `payload`: how they are read from
//!   Stripe's JSON (the webhook's bodies, stored events replayed).
//! - `store`: purchases, payments, refunds and disputes.
//! - `subscribe`: Subscribe, Get/List/CancelSubscription; `subscriptions`: their statuses, event
//!   facts and tables; `subscription_payload`: how subscription and invoice events are read.
//! - `top_up`: the auto top-up worker (off-session charges of saved cards).
//! - `types`: prices, redirect URLs, purchase statuses and Stripe's refund and dispute statuses.

pub(crate) mod checkout;
pub(crate) mod error;
pub(crate) mod fulfilment;
mod lookup;
pub(crate) mod past_purchases;
pub mod payload;
pub(crate) mod settings;
pub(crate) mod settlement;
pub(crate) mod store;
pub(crate) mod stripe_event;
pub(crate) mod subscribe;
mod subscription_payload;
pub(crate) mod subscriptions;
pub(crate) mod top_up;
pub(crate) mod types;

use url::Url;

pub(crate) use checkout::PurchaseRequest;
pub(crate) use error::BillingError;
pub(crate) use fulfilment::Fulfilment;
use fulfilment::{Answer, Job, LineItemPack, SavedCard};
use sea_orm::DatabaseConnection;
pub(crate) use store::Purchase;
pub use stripe_event::{CheckoutFacts, EventAction, StripeEvent};
pub(crate) use stripe_event::{FulfilmentReport, RefundReport};
pub(crate) use types::{DisputeStatus, PriceId, PurchaseStatus, RedirectUrl, RefundStatus};

use crate::{
    catalog::{self, Pack},
    config::RedirectPolicy,
    event_store::{self, Delivery, EventOutcome},
    ledger::{AccountRef, Email, Ledger, LedgerError, Listing, PageRequest, encode_page_token},
    metrics::Metrics,
    stripe::StripeGateway,
};

/// The ledger with billing's extension: what the service runs.
pub(crate) type BillingLedger = Ledger<Fulfilment>;

/// A purchase with its pack's display name.
#[derive(Debug, Clone)]
pub(crate) struct PurchaseView {
    pub purchase: Purchase,
    pub pack_name: String,
}

/// One page of purchases and the token for the next (None on the last page).
#[derive(Debug, Clone)]
pub(crate) struct PurchasePage {
    pub purchases: Vec<PurchaseView>,
    pub next_page_token: Option<String>,
}

/// Billing as the transports use it: cheap to clone.
#[derive(Clone)]
pub(crate) struct Billing {
    ledger: BillingLedger,
    /// The read pool, for billing's own tables (purchases, packs, events).
    db: DatabaseConnection,
    stripe: StripeGateway,
    frontend_url: Url,
    redirects: RedirectPolicy,
    /// Where the top-up worker counts its steps.
    metrics: Metrics,
}

impl Billing {
    pub(crate) fn new(
        ledger: BillingLedger,
        db: DatabaseConnection,
        stripe: StripeGateway,
        frontend_url: Url,
        redirects: RedirectPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            ledger,
            db,
            stripe,
            frontend_url,
            redirects,
            metrics,
        }
    }

    /// Runs one of billing's jobs through the ledger's writer; its answer once committed.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce(Answer<T>) -> Job) -> Result<T, LedgerError> {
        let (answer, reply) = Answer::new();
        self.ledger.submit(job(answer)).await?;
        reply.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Checkout Sessions completed since `since`, as Stripe lists them (for reconciliation).
    pub(crate) async fn completed_sessions(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::stripe::CompletedSession>, BillingError> {
        Ok(self.stripe.completed_sessions(since.timestamp()).await?)
    }

    /// Packs a buyer can choose from, cheapest first.
    pub(crate) async fn list_packs(&self) -> Result<Vec<Pack>, BillingError> {
        Ok(catalog::store::active_packs(&self.db).await?)
    }

    /// An account's purchases, newest first.
    pub(crate) async fn list_purchases(
        &self,
        by: &AccountRef,
        page: &PageRequest,
    ) -> Result<PurchasePage, BillingError> {
        let db = &self.db;
        let account_id = self.ledger.account_id(by).await.map_err(|err| match err {
            LedgerError::NotFound(_) => BillingError::AccountNotFound(by.clone()),
            other => other.into(),
        })?;
        let mut rows = store::page(db, &account_id, page.after.as_deref(), page.size + 1).await?;
        let next_page_token = if rows.len() as u64 > page.size {
            rows.truncate(page.size as usize);
            rows.last()
                .map(|last| encode_page_token(Listing::Purchases, &last.id))
        } else {
            None
        };
        let packs = catalog::store::all_packs(db).await?;
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

    /// An account's latest purchases, newest first (`credits accounts show`).
    pub(crate) async fn latest_purchases(
        &self,
        account_id: &str,
        limit: u64,
    ) -> Result<Vec<Purchase>, BillingError> {
        Ok(store::page(&self.db, account_id, None, limit).await?)
    }

    /// Applies one verified Stripe webhook event exactly once.
    pub(crate) async fn process_event(&self, event: StripeEvent) -> Result<FulfilmentReport, BillingError> {
        self.apply_event(event, Delivery::Webhook).await
    }

    /// Applies an event delivered by `delivery`; every path ends in the same guarded writes.
    /// An event that fails for good is stored as `failed` with its error (unless it is a
    /// reconciliation's, which has no stored event): by the writer when the failure is the
    /// job's own, else here.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.event_type, ?delivery), err)]
    pub(crate) async fn apply_event(
        &self,
        mut event: StripeEvent,
        delivery: Delivery,
    ) -> Result<FulfilmentReport, BillingError> {
        let line_items = match self.line_items(&event, delivery).await {
            Ok(LineItemsFor::Job(line_items)) => line_items,
            Ok(LineItemsFor::Duplicate) => {
                return Ok(FulfilmentReport {
                    outcome: EventOutcome::Duplicate,
                    session_id: event.action.facts().map(|f| f.session_id.clone()),
                    account_id: None,
                    credits: 0,
                    detail: None,
                });
            }
            Err(err) => {
                if !err.is_transient() && delivery != Delivery::Reconcile {
                    let error = crate::report::error_chain(&err);
                    if let Err(record_err) = self.record_failed_event(event, error).await {
                        tracing::error!(error = %record_err, "could not record the failed event");
                    }
                }
                return Err(err);
            }
        };
        let card = self.saved_card(&event).await?;
        self.invoice_payment(&mut event).await?;
        let report = self
            .run(|answer| Job::Event {
                event,
                delivery,
                line_items,
                card,
                decided: None,
                answer,
            })
            .await?;
        Ok(report)
    }

    /// The card a completed Checkout asked to keep: its PaymentIntent's payment method, read
    /// from Stripe before the job is queued. Stripe not answering fails the delivery (Stripe
    /// redelivers); Stripe refusing only loses the card, never the credit.
    async fn saved_card(&self, event: &StripeEvent) -> Result<Option<SavedCard>, BillingError> {
        let EventAction::Credit(facts) = &event.action else {
            return Ok(None);
        };
        let (true, Some(customer_id), Some(intent)) = (
            facts.save_card,
            facts.customer_id.as_deref(),
            facts.payment_intent_id.as_deref(),
        ) else {
            return Ok(None);
        };
        if store::by_session(&self.db, &facts.session_id)
            .await?
            .is_some_and(|p| p.status != PurchaseStatus::Pending)
        {
            return Ok(None);
        }
        match self.stripe.payment_intent(intent).await {
            Ok(found) => Ok(found.payment_method_id.map(|payment_method_id| SavedCard {
                customer_id: customer_id.to_owned(),
                payment_method_id,
            })),
            Err(err @ crate::stripe::StripeError::Unavailable(_)) => Err(err.into()),
            Err(err) => {
                tracing::warn!(error = %err, session_id = facts.session_id, "the card to keep could not be read; not saved");
                Ok(None)
            }
        }
    }

    /// The line items a job needs (fetched from Stripe only when nothing else names the pack),
    /// or that the event is a duplicate.
    async fn line_items(
        &self,
        event: &StripeEvent,
        delivery: Delivery,
    ) -> Result<LineItemsFor, BillingError> {
        Ok(match self.needs_line_items(event, delivery).await? {
            Needs::Nothing => LineItemsFor::Job(None),
            Needs::Duplicate => LineItemsFor::Duplicate,
            Needs::LineItems(session) => {
                LineItemsFor::Job(Some(match self.pack_from_line_items(&session).await {
                    Ok(found) => Ok(found),
                    // Stripe's refusal becomes the event's `unmatched_pack` detail; anything else
                    // (Stripe or the database not answering) fails the delivery: Stripe redelivers.
                    Err(err @ (BillingError::StripeNotConfigured | BillingError::StripeRejected(_))) => {
                        Err(err.to_string())
                    }
                    Err(err) => return Err(err),
                }))
            }
        })
    }

    /// Stores a signed body that could not be parsed as a `failed` event with the parse error,
    /// so operators see it and can replay it once a build reads it; a failure to store it is
    /// logged (Stripe redelivers the body anyway).
    pub(crate) async fn record_unparsable(&self, body: &[u8], err: &payload::EventParseError) {
        let unreadable = payload::unparsable_event(body);
        let (id, error) = (unreadable.id.clone(), crate::report::error_chain(err));
        tracing::error!(event_id = %id, error, "signed stripe event could not be parsed; stored as failed");
        if let Err(record_err) = self.record_failed_event(unreadable, error).await {
            tracing::error!(event_id = %id, error = %crate::report::error_chain(&record_err), "could not record the unparsable event");
        }
    }

    /// Applies a stored event's payload again (`credits events replay`), as its webhook was.
    pub(crate) async fn replay(&self, payload: &str) -> Result<FulfilmentReport, BillingError> {
        let event = payload::parse_event(payload.as_bytes()).map_err(anyhow::Error::new)?;
        self.apply_event(event, Delivery::Replay).await
    }

    /// Stores an event whose processing failed for good (or that could not be parsed) as
    /// `failed` with the error; Stripe's redelivery claims it again.
    pub(crate) async fn record_failed_event(
        &self,
        event: StripeEvent,
        error: String,
    ) -> Result<(), BillingError> {
        self.run(|answer| Job::Failed {
            event,
            error,
            decided: None,
            answer,
        })
        .await?;
        Ok(())
    }

    /// Whether only Stripe can say what the session pays for: no purchase recorded for it, and
    /// no `metadata.price_id`, or one whose total is not one pack's price. Cheap reads first, so a redelivery costs no Stripe call.
    async fn needs_line_items(&self, event: &StripeEvent, delivery: Delivery) -> Result<Needs, BillingError> {
        let (EventAction::Credit(facts) | EventAction::AwaitPayment(facts)) = &event.action else {
            return Ok(Needs::Nothing);
        };
        // A top-up's PaymentIntent names its pack and credits in its metadata.
        if facts.top_up.is_some() {
            return Ok(Needs::Nothing);
        }
        let db = &self.db;
        // `metadata.price_id` names the pack; the quantity it shows only when the total is the
        // pack's price × 1. Any other total (an adjustable quantity, a discount) asks Stripe.
        if let Some(price) = facts.metadata_price_id.as_deref() {
            let packs = catalog::store::packs_by_prices(db, &[price]).await?;
            let single = packs
                .iter()
                .any(|p| facts.amount_total.is_none_or(|total| total == p.unit_amount));
            if packs.is_empty() || single {
                return Ok(Needs::Nothing);
            }
        }
        if store::by_session(db, &facts.session_id).await?.is_some() {
            return Ok(Needs::Nothing);
        }
        // An account nobody has is reported as such by the writer, without asking Stripe.
        let ids: Vec<&str> = [&facts.client_reference_id, &facts.metadata_account_id]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let email = facts.email.as_deref().and_then(|e| Email::parse(e).ok());
        let emails: Vec<&str> = email.iter().map(Email::as_str).collect();
        if !self.ledger.any_account(&ids, &emails).await? {
            return Ok(Needs::Nothing);
        }
        if delivery != Delivery::Reconcile
            && let Some(stored) = event_store::store::outcomes(db, &[event.id.as_str()])
                .await?
                .get(&event.id)
            && !delivery.may_reclaim(stored.as_str())
        {
            return Ok(Needs::Duplicate);
        }
        Ok(Needs::LineItems(facts.session_id.clone()))
    }

    /// Credits from the session's line items: the sum over items whose price is a pack.
    async fn pack_from_line_items(&self, session_id: &str) -> Result<Option<LineItemPack>, BillingError> {
        let items = self.stripe.session_line_items(session_id).await?;
        let prices: Vec<&str> = items.iter().map(|i| i.price_id.as_str()).collect();
        let packs = catalog::store::packs_by_prices(&self.db, &prices).await?;
        let mut found: Option<LineItemPack> = None;
        for item in &items {
            let Some(pack) = packs
                .iter()
                .find(|p| p.stripe_price_id.as_deref() == Some(item.price_id.as_str()))
            else {
                continue;
            };
            let credits = pack
                .credits
                .saturating_mul(i64::try_from(item.quantity).unwrap_or(i64::MAX));
            found = Some(match found {
                Some(first) => LineItemPack {
                    credits: first.credits.saturating_add(credits),
                    ..first
                },
                None => LineItemPack {
                    pack_id: pack.id.clone(),
                    credits,
                },
            });
        }
        Ok(found)
    }

    fn frontend_page(&self, path_and_query: &str) -> String {
        format!(
            "{}/{}",
            self.frontend_url.as_str().trim_end_matches('/'),
            path_and_query
        )
    }
}

enum Needs {
    Nothing,
    Duplicate,
    LineItems(String),
}

enum LineItemsFor {
    Job(fulfilment::LineItems),
    Duplicate,
}
