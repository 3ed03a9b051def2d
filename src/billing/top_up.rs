//! The auto top-up worker: takes each due attempt one step further, outside the writer, and
//! reports every step through the writer (`SettleTopUp`), which moves the attempt only from the
//! state the worker saw. One replica runs it at a time (a lease), but nothing here relies on
//! that for money: an attempt's PaymentIntent is created with the attempt id as Stripe's
//! Idempotency-Key, so a repeat, a restart or a second replica gets the same PaymentIntent.
//!
//! - `pending`: checks that auto top-up still runs, that the balance is still below its
//!   threshold and the month's limit allows the pack; then `charging` (committed before Stripe
//!   is called, so a crash resumes with the same key).
//! - `charging`: creates the PaymentIntent (again, after a restart: Stripe answers the first).
//! - `unknown`: searches Stripe for the attempt's PaymentIntent; if none shows, asks again with
//!   the same key; only when Stripe still shows none, well after the charge, does a new
//!   attempt (new key) start.
//! - `awaiting_payment` whose webhook has not come: asks Stripe, and credits a succeeded one
//!   through the same guarded crediting as `payment_intent.succeeded`.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use futures_util::{StreamExt, stream};

use super::{Billing, BillingError};
use crate::{
    billing::{CheckoutFacts, EventAction, StripeEvent, stripe_event::TopUpFacts},
    catalog,
    config::TopUpSettings,
    event_store::Delivery,
    ledger::{
        AccountRef,
        book::{TopUpAttempt, TopUpStep},
        commands::SettleTopUp,
        kinds::TopUpState,
        types::AccountId,
    },
    stripe::{
        StripeError,
        payments::{ChargeAnswer, FoundIntent, IntentStatus, OffSessionCharge},
    },
};

/// Attempts looked at per pass.
const PASS: u64 = 100;

/// Attempts worked on at once (each is one account's).
const AT_ONCE: usize = 4;

/// How long a processing PaymentIntent waits before it is looked at again.
const PROCESSING_RECHECK_MINUTES: i64 = 10;

impl Billing {
    /// One pass over the due attempts; returns how many were looked at.
    pub(crate) async fn run_top_ups(&self, settings: &TopUpSettings) -> Result<usize, BillingError> {
        let due = self.ledger.due_top_ups(PASS).await?;
        let count = due.len();
        stream::iter(due)
            .for_each_concurrent(AT_ONCE, |attempt| async move {
                let id = attempt.id.clone();
                if let Err(err) = self.step_top_up(attempt, settings).await {
                    tracing::warn!(attempt_id = id, error = %crate::report::error_chain(&err), "top-up step failed; the next pass retries");
                }
            })
            .await;
        Ok(count)
    }

    async fn step_top_up(&self, attempt: TopUpAttempt, settings: &TopUpSettings) -> Result<(), BillingError> {
        match attempt.state {
            TopUpState::Pending => self.start_top_up(attempt, settings).await,
            TopUpState::Charging => self.charge_top_up(attempt, settings).await,
            TopUpState::Unknown => self.find_top_up(attempt, settings).await,
            TopUpState::AwaitingPayment => self.check_top_up(attempt, settings).await,
            _ => Ok(()),
        }
    }

    /// `pending`: still wanted, and allowed this month? Then `charging`, and the charge.
    async fn start_top_up(
        &self,
        attempt: TopUpAttempt,
        settings: &TopUpSettings,
    ) -> Result<(), BillingError> {
        let account = AccountRef::Id(AccountId::parse(&attempt.account_id)?);
        let read = self.ledger.settings(&account).await?;
        let auto = &read.settings.auto_top_up;
        let skip = if auto.running() != Some(attempt.pack_id.as_str()) {
            Some("auto top-up was turned off or changed")
        } else if read.settings.payment_method_id.is_none() {
            Some("no saved payment method")
        } else if read.available_balance >= auto.threshold {
            Some("the available credits are back at or above the threshold")
        } else {
            None
        };
        if let Some(reason) = skip {
            let reason = reason.to_owned();
            self.settle_top_up(&attempt, TopUpStep::Skipped { reason })
                .await?;
            return Ok(());
        }
        let Some(pack) = catalog::store::pack_by_id(&self.db, &attempt.pack_id)
            .await?
            .filter(|p| p.active)
        else {
            let error = format!("pack {} is no longer sold", attempt.pack_id);
            self.settle_top_up(&attempt, TopUpStep::Failed { error }).await?;
            return Ok(());
        };
        let now = Utc::now();
        let charged = self
            .ledger
            .top_ups_charged_since(&attempt.account_id, month_start(now))
            .await?;
        if charged.saturating_add(pack.unit_amount) > auto.monthly_limit {
            let step = TopUpStep::LimitReached {
                amount: pack.unit_amount,
                charged,
                limit: auto.monthly_limit,
            };
            self.settle_top_up(&attempt, step).await?;
            return Ok(());
        }
        let step = TopUpStep::Charging {
            amount: pack.unit_amount,
            currency: pack.currency.clone(),
            credits: pack.credits,
        };
        if self.settle_top_up(&attempt, step).await? {
            let charging = TopUpAttempt {
                state: TopUpState::Charging,
                amount: Some(pack.unit_amount),
                currency: Some(pack.currency),
                credits: Some(pack.credits),
                ..attempt
            };
            self.charge_top_up(charging, settings).await?;
        }
        Ok(())
    }

    /// `charging` (or `unknown` with no PaymentIntent found): asks Stripe for the attempt's
    /// one PaymentIntent, under its key.
    async fn charge_top_up(
        &self,
        attempt: TopUpAttempt,
        settings: &TopUpSettings,
    ) -> Result<(), BillingError> {
        let step = match self.charge(&attempt).await? {
            Charged::Step(step) => step,
            Charged::Unknown(error) => self.still_unknown(&attempt, error, settings),
        };
        self.settle_top_up(&attempt, step_with_retry(step, &attempt, settings))
            .await?;
        Ok(())
    }

    async fn charge(&self, attempt: &TopUpAttempt) -> Result<Charged, BillingError> {
        let account = AccountRef::Id(AccountId::parse(&attempt.account_id)?);
        let read = self.ledger.settings(&account).await?;
        let (Some(customer), Some(method)) = (
            read.settings.stripe_customer_id.as_deref(),
            read.settings.payment_method_id.as_deref(),
        ) else {
            return Ok(Charged::Step(TopUpStep::Failed {
                error: "no saved payment method".to_owned(),
            }));
        };
        let (Some(amount), Some(currency), Some(credits)) =
            (attempt.amount, attempt.currency.as_deref(), attempt.credits)
        else {
            return Err(BillingError::Unexpected(anyhow::anyhow!(
                "top-up {} is charging without an amount",
                attempt.id
            )));
        };
        let answer = self
            .stripe
            .charge_off_session(OffSessionCharge {
                attempt_id: &attempt.id,
                account_id: &attempt.account_id,
                pack_id: &attempt.pack_id,
                credits,
                customer_id: customer,
                payment_method_id: method,
                amount,
                currency,
            })
            .await?;
        Ok(match answer {
            ChargeAnswer::Created(intent) => Charged::Step(step_for(&intent)),
            ChargeAnswer::RequiresAction {
                payment_intent_id,
                message,
            } => Charged::Step(TopUpStep::RequiresAction {
                payment_intent_id,
                error: message,
            }),
            ChargeAnswer::Declined {
                payment_intent_id,
                message,
            } => Charged::Step(TopUpStep::Declined {
                payment_intent_id,
                error: message,
                retry_at: Utc::now(),
            }),
            ChargeAnswer::Refused { message } => Charged::Step(TopUpStep::Failed { error: message }),
            ChargeAnswer::Unknown { message } => Charged::Unknown(message),
        })
    }

    /// `unknown`: the PaymentIntent Stripe shows for the attempt decides; if none shows, the
    /// same key is tried again (it cannot charge twice); a new attempt starts only once
    /// Stripe has shown none for a while.
    async fn find_top_up(&self, attempt: TopUpAttempt, settings: &TopUpSettings) -> Result<(), BillingError> {
        let found = match self.stripe.find_top_up_intent(&attempt.id).await {
            Ok(found) => found,
            Err(err @ StripeError::Unavailable(_)) => {
                let step = self.still_unknown(&attempt, err.to_string(), settings);
                self.settle_top_up(&attempt, step).await?;
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if let Some(intent) = found {
            let step = step_with_retry(step_for(&intent), &attempt, settings);
            self.settle_top_up(&attempt, step).await?;
            return Ok(());
        }
        let step = match self.charge(&attempt).await? {
            Charged::Step(step) => step_with_retry(step, &attempt, settings),
            Charged::Unknown(error) => {
                let unknown_for = Utc::now() - attempt.unknown_since.unwrap_or_else(Utc::now);
                let waited =
                    chrono::Duration::from_std(settings.unknown_delay * 2).unwrap_or(chrono::Duration::MAX);
                if unknown_for >= waited {
                    tracing::warn!(
                        attempt_id = attempt.id,
                        error,
                        "Stripe shows no PaymentIntent for the top-up; starting a new attempt"
                    );
                    TopUpStep::NotCharged { retry_at: Utc::now() }
                } else {
                    self.still_unknown(&attempt, error, settings)
                }
            }
        };
        self.settle_top_up(&attempt, step).await?;
        Ok(())
    }

    /// `awaiting_payment` past its wait: Stripe's own word on the PaymentIntent.
    async fn check_top_up(
        &self,
        attempt: TopUpAttempt,
        settings: &TopUpSettings,
    ) -> Result<(), BillingError> {
        let Some(intent_id) = attempt.payment_intent_id.as_deref() else {
            return Ok(());
        };
        let intent = self.stripe.payment_intent(intent_id).await?;
        match intent.status {
            IntentStatus::Succeeded => {
                let facts = top_up_facts(&attempt, &intent);
                let event = StripeEvent {
                    id: format!("reconcile:{intent_id}"),
                    event_type: "reconcile.payment_intent".to_owned(),
                    payload: String::new(),
                    action: EventAction::Credit(facts),
                };
                let report = self.apply_event(event, Delivery::Reconcile).await?;
                tracing::warn!(attempt_id = attempt.id, credits = report.credits, outcome = ?report.outcome, "top-up credited without its webhook");
            }
            IntentStatus::Processing => {
                let retry_at = Utc::now() + chrono::Duration::minutes(PROCESSING_RECHECK_MINUTES);
                self.settle_top_up(&attempt, TopUpStep::StillPaying { retry_at })
                    .await?;
            }
            _ => {
                let step = step_with_retry(step_for(&intent), &attempt, settings);
                self.settle_top_up(&attempt, step).await?;
            }
        }
        Ok(())
    }

    fn still_unknown(&self, attempt: &TopUpAttempt, error: String, settings: &TopUpSettings) -> TopUpStep {
        tracing::warn!(
            attempt_id = attempt.id,
            error,
            "top-up outcome unknown; Stripe is asked again before anything else"
        );
        TopUpStep::Unknown {
            error,
            retry_at: Utc::now()
                + chrono::Duration::from_std(settings.unknown_delay).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Reports a step; whether it applied (false: the attempt had moved on).
    async fn settle_top_up(&self, attempt: &TopUpAttempt, step: TopUpStep) -> Result<bool, BillingError> {
        let settled = self
            .ledger
            .send(SettleTopUp {
                account_id: attempt.account_id.clone(),
                attempt_id: attempt.id.clone(),
                step,
            })
            .await?;
        tracing::info!(attempt_id = attempt.id, state = %settled.state, applied = settled.applied, "top-up step");
        if settled.applied {
            self.metrics.top_up_step(settled.state.as_str());
        }
        Ok(settled.applied)
    }
}

/// What asking Stripe to charge came to.
enum Charged {
    Step(TopUpStep),
    Unknown(String),
}

/// The step a PaymentIntent's status means.
fn step_for(intent: &FoundIntent) -> TopUpStep {
    let error = intent
        .last_error
        .clone()
        .unwrap_or_else(|| format!("PaymentIntent {} is not payable", intent.id));
    match intent.status {
        IntentStatus::Succeeded | IntentStatus::Processing => TopUpStep::Created {
            payment_intent_id: intent.id.clone(),
        },
        IntentStatus::RequiresAction => TopUpStep::RequiresAction {
            payment_intent_id: Some(intent.id.clone()),
            error,
        },
        IntentStatus::Declined => TopUpStep::Declined {
            payment_intent_id: Some(intent.id.clone()),
            error,
            retry_at: Utc::now(),
        },
        IntentStatus::Other => TopUpStep::Failed { error },
    }
}

/// A decline's next attempt waits `TOP_UP_RETRY_DELAY`, doubled for the third.
fn step_with_retry(step: TopUpStep, attempt: &TopUpAttempt, settings: &TopUpSettings) -> TopUpStep {
    match step {
        TopUpStep::Declined {
            payment_intent_id,
            error,
            ..
        } => {
            let factor = 1_u32 << attempt.number.clamp(1, 8).saturating_sub(1);
            let delay =
                chrono::Duration::from_std(settings.retry_delay * factor).unwrap_or(chrono::Duration::MAX);
            TopUpStep::Declined {
                payment_intent_id,
                error,
                retry_at: Utc::now() + delay,
            }
        }
        other => other,
    }
}

/// A succeeded top-up's PaymentIntent as `payment_intent.succeeded` would be read.
fn top_up_facts(attempt: &TopUpAttempt, intent: &FoundIntent) -> CheckoutFacts {
    CheckoutFacts {
        session_id: attempt.id.clone(),
        metadata_account_id: Some(attempt.account_id.clone()),
        payment_intent_id: Some(intent.id.clone()),
        amount_total: Some(intent.amount_received),
        currency: Some(intent.currency.clone()),
        customer_id: intent.customer_id.clone(),
        top_up: Some(TopUpFacts {
            pack_id: attempt.pack_id.clone(),
            credits: attempt.credits.unwrap_or_default(),
        }),
        ..CheckoutFacts::default()
    }
}

/// The first instant of `now`'s calendar month (UTC).
fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}
