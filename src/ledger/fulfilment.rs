//! Turning Stripe's Checkout events into purchases and credits, exactly once.
//!
//! Every event is claimed by its Stripe id in the same transaction that applies it, and
//! crediting is guarded by the purchase's status, so redeliveries, concurrent deliveries and
//! several replicas can only ever credit a Checkout Session once.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict},
};

pub use super::outcome::{Delivery, EventOutcome};
use super::{
    Ledger, LedgerError, PurchaseStatus,
    adjustments::{self, DisputeFact, RefundFact},
    store,
    types::{AccountId, AccountRef, Email},
};
use crate::{
    entities::{account, credit_ledger, credit_pack, credit_purchase, stripe_event},
    stripe::StripeError,
};

/// The facts of a Checkout Session that fulfilment reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutFacts {
    pub session_id: String,
    pub client_reference_id: Option<String>,
    pub metadata_account_id: Option<String>,
    /// `customer_details.email`, else `customer_email`.
    pub email: Option<String>,
    pub metadata_price_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

/// What an event asks of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// Paid (or nothing to pay): credit the account once.
    Credit(CheckoutFacts),
    /// Completed but the money has not arrived (delayed methods): record and wait.
    AwaitPayment(CheckoutFacts),
    /// The delayed payment failed.
    MarkFailed(CheckoutFacts),
    /// The buyer never paid.
    MarkExpired(CheckoutFacts),
    /// Money went back to the buyer (`charge.refunded`, `refund.*`).
    Refund {
        payment_intent_id: String,
        fact: RefundFact,
    },
    /// A dispute opened, changed or closed (`charge.dispute.*`).
    Dispute {
        payment_intent_id: String,
        fact: DisputeFact,
    },
    /// An event type this service does not act on.
    Ignore,
}

impl EventAction {
    fn facts(&self) -> Option<&CheckoutFacts> {
        match self {
            Self::Credit(f) | Self::AwaitPayment(f) | Self::MarkFailed(f) | Self::MarkExpired(f) => Some(f),
            Self::Refund { .. } | Self::Dispute { .. } | Self::Ignore => None,
        }
    }
}

/// A verified Stripe event, ready to apply.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    /// The exact body Stripe sent, kept for replay.
    pub payload: String,
    pub action: EventAction,
}

/// What happened to one event, for the caller's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfilmentReport {
    pub outcome: EventOutcome,
    pub session_id: Option<String>,
    pub account_id: Option<String>,
    pub credits: i64,
    /// Why an event could not be matched, for operators.
    pub detail: Option<String>,
}

/// What the session pays for, resolved before the transaction opens.
struct Grant {
    account_id: String,
    pack: credit_pack::Model,
    credits: i64,
    amount: i64,
    currency: String,
}

enum Resolution {
    Grant(Grant),
    Unmatched(EventOutcome, String),
}

impl Ledger {
    /// Applies one verified Stripe webhook event exactly once.
    pub async fn process_event(&self, event: &StripeEvent) -> Result<FulfilmentReport, LedgerError> {
        self.apply_event(event, Delivery::Webhook).await
    }

    /// Applies an event delivered by `delivery`; every path ends in the same guarded writes.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.event_type, ?delivery), err)]
    pub async fn apply_event(
        &self,
        event: &StripeEvent,
        delivery: Delivery,
    ) -> Result<FulfilmentReport, LedgerError> {
        let facts = event.action.facts();
        let mut report = FulfilmentReport {
            outcome: EventOutcome::Ignored,
            session_id: facts.map(|f| f.session_id.clone()),
            account_id: None,
            credits: 0,
            detail: None,
        };

        // Cheap reads first: a redelivery must not cost a Stripe call.
        if delivery != Delivery::Reconcile
            && let Some(stored) = stripe_event::Entity::find_by_id(event.id.as_str())
                .one(self.db())
                .await?
            && !delivery.may_reclaim(&stored.outcome)
        {
            report.outcome = EventOutcome::Duplicate;
            return Ok(report);
        }
        let existing = match facts {
            Some(f) => store::purchase_by_session(self.db(), &f.session_id).await?,
            None => None,
        };
        let resolution = match (&event.action, &existing) {
            (EventAction::Credit(_) | EventAction::AwaitPayment(_), Some(p)) if is_settled(p) => None,
            (EventAction::Credit(f) | EventAction::AwaitPayment(f), _) => {
                Some(self.resolve(f, existing.as_ref()).await?)
            }
            _ => None,
        };

        let txn = store::begin_write(self.db()).await?;
        if delivery != Delivery::Reconcile && !claim_event(&txn, event, delivery).await? {
            txn.rollback().await?;
            report.outcome = EventOutcome::Duplicate;
            return Ok(report);
        }
        let outcome = match (&event.action, resolution) {
            (EventAction::Ignore, _) => EventOutcome::Ignored,
            (_, Some(Resolution::Unmatched(outcome, detail))) => {
                report.detail = Some(detail);
                outcome
            }
            (EventAction::Credit(f), Some(Resolution::Grant(grant))) => {
                report.account_id = Some(grant.account_id.clone());
                // Before the purchase is read: a refund racing this completion either sees it
                // completed or is seen by it.
                if let Some(intent) = &f.payment_intent_id {
                    adjustments::lock_payment(&txn, intent).await?;
                }
                ensure_purchase(&txn, f, &grant).await?;
                if complete_purchase(&txn, f).await? {
                    credit_account(&txn, &grant.account_id, grant.credits, "purchase", &f.session_id).await?;
                    report.credits = grant.credits;
                    // Refunds or disputes that arrived before the payment completed apply now.
                    if let Some(intent) = &f.payment_intent_id {
                        report.credits += adjustments::settle(&txn, intent, &event.id).await?.credits_delta;
                    }
                    EventOutcome::Credited
                } else {
                    EventOutcome::AlreadyCredited
                }
            }
            (EventAction::Credit(_), None) => EventOutcome::AlreadyCredited,
            (EventAction::AwaitPayment(f), Some(Resolution::Grant(grant))) => {
                report.account_id = Some(grant.account_id.clone());
                ensure_purchase(&txn, f, &grant).await?;
                EventOutcome::AwaitingPayment
            }
            (EventAction::AwaitPayment(_), None) => EventOutcome::NoChange,
            (EventAction::MarkFailed(f), _) => {
                mark_unpaid(&txn, f, PurchaseStatus::Failed, EventOutcome::PaymentFailed).await?
            }
            (EventAction::MarkExpired(f), _) => {
                mark_unpaid(&txn, f, PurchaseStatus::Expired, EventOutcome::Expired).await?
            }
            (
                EventAction::Refund {
                    payment_intent_id,
                    fact,
                },
                _,
            ) => {
                adjustments::lock_payment(&txn, payment_intent_id).await?;
                adjustments::record_refund(&txn, payment_intent_id, fact).await?;
                self.settle_outcome(&txn, payment_intent_id, &event.id, &mut report)
                    .await?
            }
            (
                EventAction::Dispute {
                    payment_intent_id,
                    fact,
                },
                _,
            ) => {
                adjustments::lock_payment(&txn, payment_intent_id).await?;
                adjustments::record_dispute(&txn, payment_intent_id, fact).await?;
                self.settle_outcome(&txn, payment_intent_id, &event.id, &mut report)
                    .await?
            }
        };
        if delivery != Delivery::Reconcile {
            finish_event(&txn, &event.id, outcome, report.detail.as_deref()).await?;
        }
        txn.commit().await?;
        report.outcome = outcome;
        Ok(report)
    }

    async fn settle_outcome(
        &self,
        txn: &DatabaseTransaction,
        payment_intent: &str,
        reference: &str,
        report: &mut FulfilmentReport,
    ) -> Result<EventOutcome, LedgerError> {
        let settlement = adjustments::settle(txn, payment_intent, reference).await?;
        report.credits = settlement.credits_delta;
        if let Some(purchase) = credit_purchase::Entity::find()
            .filter(credit_purchase::Column::StripePaymentIntentId.eq(payment_intent))
            .one(txn)
            .await?
        {
            report.session_id = Some(purchase.stripe_checkout_session_id);
            report.account_id = Some(purchase.account_id);
        }
        Ok(match settlement {
            s if !s.purchase_found => EventOutcome::AwaitingPurchase,
            s if s.credits_delta != 0 => EventOutcome::Adjusted,
            _ => EventOutcome::NoChange,
        })
    }

    /// Records an event whose processing failed unexpectedly, so operators can see it; Stripe's
    /// redelivery claims it again.
    pub async fn record_failed_event(&self, event: &StripeEvent, error: &str) -> Result<(), LedgerError> {
        let txn = store::begin_write(self.db()).await?;
        if claim_event(&txn, event, Delivery::Webhook).await? {
            finish_event(&txn, &event.id, EventOutcome::Failed, Some(error)).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Finds the account and pack a session pays for, in the documented order. A purchase
    /// already recorded for the session decides alone: it grants the credits and account it
    /// was opened with, whatever the packs file says now.
    async fn resolve(
        &self,
        facts: &CheckoutFacts,
        existing: Option<&credit_purchase::Model>,
    ) -> Result<Resolution, LedgerError> {
        if let Some(purchase) = existing
            && let Some(pack) = store::pack_by_id(self.db(), &purchase.credit_pack_id).await?
        {
            return Ok(Resolution::Grant(Grant {
                account_id: purchase.account_id.clone(),
                pack,
                credits: purchase.quantity,
                amount: facts.amount_total.unwrap_or(purchase.amount),
                currency: purchase.currency.clone(),
            }));
        }
        let Some(account_id) = self.resolve_account(facts).await? else {
            let detail = format!(
                "no account for session {} (client_reference_id {:?}, metadata.account_id {:?}, email {:?})",
                facts.session_id, facts.client_reference_id, facts.metadata_account_id, facts.email
            );
            return Ok(Resolution::Unmatched(EventOutcome::UnmatchedAccount, detail));
        };

        let by_metadata = match &facts.metadata_price_id {
            Some(price) => store::pack_by_price(self.db(), price).await?.map(|pack| {
                let credits = pack.credits;
                (pack, credits)
            }),
            None => None,
        };
        let found = match by_metadata {
            Some(found) => Some(found),
            None => match self.pack_from_line_items(&facts.session_id).await {
                Ok(found) => found,
                Err(err @ StripeError::Unavailable(_)) => return Err(err.into()),
                Err(err) => {
                    let detail = format!(
                        "no pack for session {}: line items unavailable: {err}",
                        facts.session_id
                    );
                    return Ok(Resolution::Unmatched(EventOutcome::UnmatchedPack, detail));
                }
            },
        };
        let Some((pack, credits)) = found else {
            let detail = format!(
                "no pack for session {} (metadata.price_id {:?})",
                facts.session_id, facts.metadata_price_id
            );
            return Ok(Resolution::Unmatched(EventOutcome::UnmatchedPack, detail));
        };
        let amount = facts
            .amount_total
            .unwrap_or(pack.unit_amount * (credits / std::cmp::max(pack.credits, 1)));
        let currency = facts
            .currency
            .clone()
            .unwrap_or_else(|| pack.currency.clone())
            .to_ascii_lowercase();
        Ok(Resolution::Grant(Grant {
            account_id,
            pack,
            credits,
            amount,
            currency,
        }))
    }

    async fn resolve_account(&self, facts: &CheckoutFacts) -> Result<Option<String>, LedgerError> {
        for candidate in [&facts.client_reference_id, &facts.metadata_account_id]
            .into_iter()
            .flatten()
        {
            if let Ok(id) = AccountId::parse(candidate)
                && let Some(account) = store::find_account(self.db(), &AccountRef::Id(id)).await?
            {
                return Ok(Some(account.id));
            }
        }
        if let Some(email) = facts.email.as_deref().and_then(|e| Email::parse(e).ok())
            && let Some(account) = store::find_account(self.db(), &AccountRef::Email(email)).await?
        {
            return Ok(Some(account.id));
        }
        Ok(None)
    }

    /// Credits from the session's line items: the sum over items whose price is a pack.
    async fn pack_from_line_items(
        &self,
        session_id: &str,
    ) -> Result<Option<(credit_pack::Model, i64)>, StripeError> {
        let items = self.stripe().session_line_items(session_id).await?;
        let mut found: Option<(credit_pack::Model, i64)> = None;
        for item in items {
            let pack = store::pack_by_price(self.db(), &item.price_id)
                .await
                .map_err(|err| StripeError::Unavailable(format!("database: {err}")))?;
            if let Some(pack) = pack {
                let credits = pack
                    .credits
                    .saturating_mul(i64::try_from(item.quantity).unwrap_or(i64::MAX));
                found = Some(match found {
                    Some((first, total)) => (first, total.saturating_add(credits)),
                    None => (pack, credits),
                });
            }
        }
        Ok(found)
    }
}

fn is_settled(purchase: &credit_purchase::Model) -> bool {
    matches!(
        PurchaseStatus::parse(&purchase.status),
        Some(PurchaseStatus::Completed | PurchaseStatus::Refunded)
    )
}

/// Inserts the event as `processing`, or takes back one whose last attempt failed. False when
/// another delivery owns it.
async fn claim_event(
    txn: &DatabaseTransaction,
    event: &StripeEvent,
    delivery: Delivery,
) -> Result<bool, LedgerError> {
    let model = stripe_event::ActiveModel {
        id: Set(event.id.clone()),
        event_type: Set(event.event_type.clone()),
        checkout_session_id: Set(event.action.facts().map(|f| f.session_id.clone())),
        payload: Set(event.payload.clone()),
        outcome: Set("processing".to_owned()),
        error: Set(None),
        received_at: Set(Utc::now()),
        processed_at: Set(None),
    };
    let retryable = delivery.reclaimable();
    let result = stripe_event::Entity::insert(model)
        .on_conflict(
            OnConflict::column(stripe_event::Column::Id)
                .update_columns([stripe_event::Column::Outcome, stripe_event::Column::Error])
                .action_and_where(
                    Expr::col((stripe_event::Entity, stripe_event::Column::Outcome)).is_in(retryable),
                )
                .to_owned(),
        )
        .try_insert()
        .exec_without_returning(txn)
        .await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

async fn finish_event(
    txn: &DatabaseTransaction,
    event_id: &str,
    outcome: EventOutcome,
    error: Option<&str>,
) -> Result<(), LedgerError> {
    stripe_event::Entity::update_many()
        .col_expr(stripe_event::Column::Outcome, Expr::value(outcome.as_str()))
        .col_expr(stripe_event::Column::Error, Expr::value(error.map(str::to_owned)))
        .col_expr(stripe_event::Column::ProcessedAt, Expr::value(Utc::now()))
        .filter(stripe_event::Column::Id.eq(event_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// Makes sure a purchase row exists for the session (a Payment Link session was not made by
/// us); an existing row is left as it is.
async fn ensure_purchase(
    txn: &DatabaseTransaction,
    facts: &CheckoutFacts,
    grant: &Grant,
) -> Result<(), LedgerError> {
    let now = Utc::now();
    let purchase = credit_purchase::Model {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: grant.account_id.clone(),
        credit_pack_id: grant.pack.id.clone(),
        quantity: grant.credits,
        amount: grant.amount,
        currency: grant.currency.clone(),
        amount_refunded: 0,
        stripe_checkout_session_id: facts.session_id.clone(),
        stripe_payment_intent_id: facts.payment_intent_id.clone(),
        checkout_url: None,
        idempotency_key: None,
        status: PurchaseStatus::Pending.as_str().to_owned(),
        created_at: now,
        completed_at: None,
        updated_at: now,
    };
    store::insert_purchase_if_new(txn, purchase).await?;
    // What the buyer paid (after any discount) is what a full refund returns.
    if grant.amount != 0 {
        credit_purchase::Entity::update_many()
            .col_expr(credit_purchase::Column::Amount, Expr::value(grant.amount))
            .filter(credit_purchase::Column::StripeCheckoutSessionId.eq(facts.session_id.as_str()))
            .filter(credit_purchase::Column::Status.eq(PurchaseStatus::Pending.as_str()))
            .exec(txn)
            .await?;
    }
    if let Some(intent) = &facts.payment_intent_id {
        credit_purchase::Entity::update_many()
            .col_expr(
                credit_purchase::Column::StripePaymentIntentId,
                Expr::value(intent.as_str()),
            )
            .filter(credit_purchase::Column::StripeCheckoutSessionId.eq(facts.session_id.as_str()))
            .filter(credit_purchase::Column::StripePaymentIntentId.is_null())
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Moves the purchase to `completed` unless it already is: the guard that makes crediting
/// happen once. True when this call completed it.
async fn complete_purchase(txn: &DatabaseTransaction, facts: &CheckoutFacts) -> Result<bool, LedgerError> {
    let now = Utc::now();
    let result = credit_purchase::Entity::update_many()
        .col_expr(
            credit_purchase::Column::Status,
            Expr::value(PurchaseStatus::Completed.as_str()),
        )
        .col_expr(credit_purchase::Column::CompletedAt, Expr::value(now))
        .col_expr(credit_purchase::Column::UpdatedAt, Expr::value(now))
        .filter(credit_purchase::Column::StripeCheckoutSessionId.eq(facts.session_id.as_str()))
        .filter(credit_purchase::Column::Status.is_in([
            PurchaseStatus::Pending.as_str(),
            PurchaseStatus::Expired.as_str(),
            PurchaseStatus::Failed.as_str(),
        ]))
        .exec(txn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Adds `delta` to the balance, ends the trial (the seed's `fill_credits`) and appends the
/// ledger entry, all relative to the stored balance.
pub(crate) async fn credit_account<C: ConnectionTrait>(
    txn: &C,
    account_id: &str,
    delta: i64,
    reason: &str,
    reference: &str,
) -> Result<i64, LedgerError> {
    let now = Utc::now();
    let mut update = account::Entity::update_many()
        .col_expr(
            account::Column::CreditBalance,
            Expr::col(account::Column::CreditBalance).add(delta),
        )
        .col_expr(account::Column::UpdatedAt, Expr::value(now));
    if delta > 0 {
        update = update.col_expr(account::Column::IsTrialUser, Expr::value(false));
    }
    let updated = update
        .filter(account::Column::Id.eq(account_id))
        .exec_with_returning(txn)
        .await?;
    let balance_after = updated
        .first()
        .map(|a| a.credit_balance)
        .ok_or_else(|| LedgerError::NotFound(format!("account {account_id}")))?;
    credit_ledger::Entity::insert(credit_ledger::ActiveModel {
        account_id: Set(account_id.to_owned()),
        delta: Set(delta),
        balance_after: Set(balance_after),
        reason: Set(reason.to_owned()),
        reference: Set(reference.to_owned()),
        created_at: Set(now),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    tracing::info!(
        account_id,
        delta,
        balance_after,
        reason,
        reference,
        "ledger entry appended"
    );
    Ok(balance_after)
}

/// Moves a pending purchase to failed or expired; anything further along is left alone.
async fn mark_unpaid(
    txn: &DatabaseTransaction,
    facts: &CheckoutFacts,
    status: PurchaseStatus,
    outcome: EventOutcome,
) -> Result<EventOutcome, LedgerError> {
    let result = credit_purchase::Entity::update_many()
        .col_expr(credit_purchase::Column::Status, Expr::value(status.as_str()))
        .col_expr(credit_purchase::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(credit_purchase::Column::StripeCheckoutSessionId.eq(facts.session_id.as_str()))
        .filter(credit_purchase::Column::Status.eq(PurchaseStatus::Pending.as_str()))
        .exec(txn)
        .await?;
    Ok(if result.rows_affected == 1 {
        outcome
    } else {
        EventOutcome::NoChange
    })
}
