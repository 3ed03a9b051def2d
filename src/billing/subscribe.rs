//! Subscriptions through Stripe Billing: Subscribe (a Checkout Session in `subscription` mode
//! for the account's Customer), GetSubscription, ListSubscriptions and CancelSubscription. The
//! state itself arrives by webhook and is kept by fulfilment; the payment intent of a paid
//! invoice is read from Stripe here, before its event is queued.

use super::{
    Billing, BillingError, EventAction, RedirectUrl, StripeEvent,
    subscriptions::{Subscription, SubscriptionStatus, SubscriptionView, store},
};
use crate::{
    catalog::{Plan, plan_store},
    ledger::{
        AccountId, AccountRef, IdempotencyKey, InvalidInput, LedgerError, commands::SaveCustomer,
        types::bounded_token,
    },
    stripe::{StripeError, subscriptions::SubscriptionCheckout},
};

/// A plan id as callers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanId(String);

impl PlanId {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("plan_id", raw, 64).map(Self)
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Stripe subscription id as callers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionId(String);

impl SubscriptionId {
    pub(crate) fn parse(raw: &str) -> Result<Self, InvalidInput> {
        bounded_token("subscription_id", raw, 255).map(Self)
    }
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Subscribe request whose fields have been parsed.
#[derive(Debug, Clone)]
pub(crate) struct SubscribeRequest {
    pub account_id: AccountId,
    pub plan_id: PlanId,
    pub success_url: Option<RedirectUrl>,
    pub cancel_url: Option<RedirectUrl>,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// Where to send the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartedSubscription {
    pub checkout_url: String,
    pub checkout_session_id: String,
}

impl Billing {
    /// Opens a Checkout Session in `subscription` mode for an active, synced plan. The account
    /// must exist; its Stripe Customer is created once (as for saved cards) and recorded
    /// before the session names it. With an idempotency key, a repeat gets the same session
    /// from Stripe.
    #[tracing::instrument(skip_all, fields(account_id = %req.account_id, plan_id = req.plan_id.as_str()), err)]
    pub(crate) async fn subscribe(&self, req: SubscribeRequest) -> Result<StartedSubscription, BillingError> {
        for (field, url) in [("success_url", &req.success_url), ("cancel_url", &req.cancel_url)] {
            if let Some(url) = url
                && let Some(reason) = self.redirects.refusal(url.origin())
            {
                return Err(BillingError::RedirectRefused { field, reason });
            }
        }
        let plan = plan_store::all_plans(&self.db)
            .await?
            .into_iter()
            .find(|p| p.id == req.plan_id.as_str() && p.active)
            .ok_or_else(|| BillingError::PlanNotFound(req.plan_id.as_str().to_owned()))?;
        let price_id = plan
            .stripe_price_id
            .clone()
            .ok_or_else(|| BillingError::PlanNotFound(plan.id.clone()))?;
        let by = AccountRef::Id(req.account_id.clone());
        let not_found = |err| match err {
            LedgerError::NotFound(_) => BillingError::AccountNotFound(by.clone()),
            other => other.into(),
        };
        let account = self.ledger.account(&by).await.map_err(not_found)?;
        let known = self
            .ledger
            .settings(&by)
            .await
            .map_err(not_found)?
            .settings
            .stripe_customer_id;
        let customer = match known {
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
        };
        let success_url = req.success_url.as_ref().map_or_else(
            || self.frontend_page("dashboard/credits?subscription=success&session_id={CHECKOUT_SESSION_ID}"),
            |u| u.as_str().to_owned(),
        );
        let cancel_url = req.cancel_url.as_ref().map_or_else(
            || self.frontend_page("dashboard/credits?subscription=cancelled"),
            |u| u.as_str().to_owned(),
        );
        let session = self
            .stripe
            .create_subscription_checkout(SubscriptionCheckout {
                price_id: &price_id,
                account_id: &account.account_id,
                plan_id: &plan.id,
                customer_id: &customer,
                success_url: &success_url,
                cancel_url: &cancel_url,
                idempotency_key: req.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            })
            .await?;
        tracing::info!(
            session_id = session.id,
            plan_id = plan.id,
            "subscription checkout session created"
        );
        Ok(StartedSubscription {
            checkout_url: session.url,
            checkout_session_id: session.id,
        })
    }

    /// One subscription with its plan and the allowance granted for its current period.
    pub(crate) async fn subscription(&self, id: &SubscriptionId) -> Result<SubscriptionView, BillingError> {
        let found = store::by_id(&self.db, id.as_str())
            .await?
            .ok_or_else(|| BillingError::SubscriptionNotFound(id.as_str().to_owned()))?;
        self.views(vec![found]).await?.into_iter().next().ok_or_else(|| {
            BillingError::Unexpected(anyhow::anyhow!("subscription {} has no view", id.as_str()))
        })
    }

    /// An account's subscriptions, newest first.
    pub(crate) async fn subscriptions(
        &self,
        account_id: &AccountId,
    ) -> Result<Vec<SubscriptionView>, BillingError> {
        let by = AccountRef::Id(account_id.clone());
        let id = self.ledger.account_id(&by).await.map_err(|err| match err {
            LedgerError::NotFound(_) => BillingError::AccountNotFound(by.clone()),
            other => other.into(),
        })?;
        let rows = store::of_account(&self.db, &id).await?;
        self.views(rows).await
    }

    /// Cancels a subscription through Stripe: at its period's end (the subscription stays
    /// active until then), or at once. Either way the allowance already granted stays until its
    /// period ends; the state follows by webhook. Answers the subscription as Stripe left it.
    #[tracing::instrument(skip(self, id), fields(subscription_id = id.as_str()), err)]
    pub(crate) async fn cancel_subscription(
        &self,
        id: &SubscriptionId,
        at_period_end: bool,
    ) -> Result<SubscriptionView, BillingError> {
        let mut view = self.subscription(id).await?;
        if view.subscription.status.is_terminal() {
            return Ok(view);
        }
        let answer = self
            .stripe
            .cancel_subscription(id.as_str(), at_period_end)
            .await?;
        view.subscription.status = SubscriptionStatus::parse(&answer.status);
        view.subscription.cancel_at_period_end = answer.cancel_at_period_end;
        tracing::info!(
            status = answer.status,
            at_period_end,
            "subscription cancellation sent to Stripe"
        );
        Ok(view)
    }

    /// Subscriptions with their plan's name and the allowance of their current period.
    async fn views(&self, rows: Vec<Subscription>) -> Result<Vec<SubscriptionView>, BillingError> {
        let plans: Vec<Plan> = plan_store::all_plans(&self.db).await?;
        let ids: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
        let invoices = store::invoices_of(&self.db, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|subscription| {
                let period_allowance = invoices
                    .iter()
                    .filter(|i| i.subscription_id == subscription.id && i.status.granted())
                    .filter(|i| Some(i.period_end) == subscription.current_period_end)
                    .map(|i| i.credits)
                    .fold(0, i64::saturating_add);
                let plan_name = plans
                    .iter()
                    .find(|p| p.id == subscription.plan_id)
                    .map_or_else(|| subscription.plan_id.clone(), |p| p.name.clone());
                SubscriptionView {
                    subscription,
                    plan_name,
                    period_allowance,
                }
            })
            .collect())
    }

    /// A paid invoice's PaymentIntent, read from Stripe before its event is queued when the
    /// event does not name it and the invoice is not granted yet: refunds and disputes name the
    /// payment intent only. Stripe not answering fails the delivery (Stripe redelivers);
    /// Stripe refusing only leaves the invoice without one.
    pub(super) async fn invoice_payment(&self, event: &mut StripeEvent) -> Result<(), BillingError> {
        let EventAction::InvoicePaid(facts) = &mut event.action else {
            return Ok(());
        };
        if facts.payment_intent_id.is_some() || facts.amount_paid == 0 {
            return Ok(());
        }
        if let Some(known) = store::invoice_by_id(&self.db, &facts.invoice_id).await?
            && known.status.granted()
        {
            return Ok(());
        }
        match self.stripe.invoice_payment_intent(&facts.invoice_id).await {
            Ok(intent) => facts.payment_intent_id = intent,
            Err(err @ StripeError::Unavailable(_)) => return Err(err.into()),
            Err(err) => {
                tracing::warn!(error = %err, invoice_id = facts.invoice_id, "the invoice's payment could not be read; its refunds will not be matched");
            }
        }
        Ok(())
    }
}
