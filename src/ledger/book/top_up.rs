//! An automatic top-up's life in the book: each step the top-up worker or Stripe's webhook
//! reports moves the attempt from the state it was seen in, with the event and the settings
//! change that step causes. A step reported from another state than the stored one changes
//! nothing (another replica, or the webhook, got there first).
//!
//! - `pending → charging`: the charge starts (amount fixed); no event.
//! - `pending → limit_reached`: the month's top-ups would pass the limit; `top_up.limit_reached`.
//! - `pending → abandoned`: auto top-up was turned off, or the balance is back above its
//!   threshold; nothing charged, no event.
//! - `charging | unknown → awaiting_payment`: Stripe created the PaymentIntent; if its webhook
//!   has not come within minutes, the worker asks Stripe (`awaiting_payment` again while it is
//!   processing, then as below, or `succeeded` through the same crediting as the webhook).
//! - `charging | unknown → unknown`: Stripe failed or timed out; it is searched before anything
//!   else happens.
//! - `unknown → abandoned`: Stripe shows no PaymentIntent; a new attempt (new key) starts.
//! - `→ requires_action`: the bank wants the customer; auto top-up pauses until a purchase or
//!   re-enabling; `top_up.requires_action`.
//! - `→ declined`: `top_up.declined`; attempts 1 and 2 are followed by another (own key, after
//!   a delay); the third turns auto top-up off with `top_up.failed`.
//! - `→ failed`: Stripe refused for another reason; auto top-up off, `top_up.failed`.
//! - `→ succeeded`: `payment_intent.succeeded` arrived (the credit is posted beside it).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Book, TopUpAttempt};
use crate::ledger::kinds::{EventType, TopUpState};

/// How many attempts a crossing gets: the first and two more after declines.
pub(crate) const MAX_TOP_UP_ATTEMPTS: i32 = 3;

/// The attempts a book holds.
impl Book {
    /// Adds the stored top-up attempts the batch names.
    pub(crate) fn add_top_ups(&mut self, attempts: impl IntoIterator<Item = TopUpAttempt>) {
        self.top_ups
            .extend(attempts.into_iter().map(|a| (a.id.clone(), a)));
    }

    pub(crate) fn top_up(&self, id: &str) -> Option<&TopUpAttempt> {
        self.top_ups.get(id)
    }

    /// Changes a stored attempt (its state, its PaymentIntent, its error).
    pub(crate) fn change_top_up(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut TopUpAttempt),
    ) {
        if let Some(attempt) = self.top_ups.get_mut(id) {
            change(attempt);
            attempt.updated_at = now;
            self.changed_top_ups.insert(id.to_owned());
        }
    }

    /// Starts another attempt; the database refuses it if one is still in flight.
    pub(crate) fn start_top_up(&mut self, attempt: TopUpAttempt) {
        self.new_top_ups.push(attempt);
    }
}

/// How long a created PaymentIntent waits for `payment_intent.succeeded` before the worker
/// asks Stripe about it.
pub(crate) const AWAIT_WEBHOOK_MINUTES: i64 = 10;

/// What `paused` says when the bank asked for the customer.
pub(crate) const PAUSED_FOR_ACTION: &str = "requires_action";

/// A step of an attempt, as the top-up worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopUpStep {
    Charging {
        amount: i64,
        currency: String,
        credits: i64,
    },
    LimitReached {
        amount: i64,
        charged: i64,
        limit: i64,
    },
    Skipped {
        reason: String,
    },
    Created {
        payment_intent_id: String,
    },
    Unknown {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Stripe shows no PaymentIntent: a new attempt starts at `retry_at`.
    NotCharged {
        retry_at: DateTime<Utc>,
    },
    RequiresAction {
        payment_intent_id: Option<String>,
        error: String,
    },
    /// The next attempt (if any is left) starts at `retry_at`.
    Declined {
        payment_intent_id: Option<String>,
        error: String,
        retry_at: DateTime<Utc>,
    },
    Failed {
        error: String,
    },
    /// The PaymentIntent is still processing: look again at `retry_at`.
    StillPaying {
        retry_at: DateTime<Utc>,
    },
    /// An operator's retry: the attempt's next step is due now, not at its backoff's end. The
    /// worker takes it with the attempt's own key, so nothing is charged twice.
    RunNow,
}

impl TopUpStep {
    /// The states this step may follow.
    fn from(&self) -> &'static [TopUpState] {
        use TopUpState::{AwaitingPayment, Charging, Pending, Unknown};
        match self {
            Self::Charging { .. } | Self::LimitReached { .. } | Self::Skipped { .. } => &[Pending],
            Self::NotCharged { .. } => &[Unknown],
            Self::Created { .. } | Self::Unknown { .. } => &[Charging, Unknown],
            Self::StillPaying { .. } => &[AwaitingPayment],
            Self::RunNow => &[Pending, Unknown, AwaitingPayment],
            Self::RequiresAction { .. } | Self::Declined { .. } => &[Charging, Unknown, AwaitingPayment],
            Self::Failed { .. } => &[Pending, Charging, Unknown, AwaitingPayment],
        }
    }
}

impl Book {
    /// Applies a worker's step to attempt `id` if it is still in a state the step follows;
    /// returns the attempt's state after and whether the step applied (not when it was
    /// stale), `None` when the batch did not load the attempt.
    pub(crate) fn step_top_up(
        &mut self,
        id: &str,
        step: TopUpStep,
        now: DateTime<Utc>,
    ) -> Option<(TopUpState, bool)> {
        let attempt = self.top_up(id)?.clone();
        if !step.from().contains(&attempt.state) {
            return Some((attempt.state, false));
        }
        let base = json!({ "attempt_id": attempt.id, "pack_id": attempt.pack_id, "attempt": attempt.number });
        let with = |extra: serde_json::Value| {
            let mut payload = base.clone();
            if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            payload
        };
        let state = match step {
            TopUpStep::Charging {
                amount,
                currency,
                credits,
            } => {
                self.change_top_up(id, now, |a| {
                    a.amount = Some(amount);
                    a.currency = Some(currency);
                    a.credits = Some(credits);
                    a.state = TopUpState::Charging;
                });
                TopUpState::Charging
            }
            TopUpStep::LimitReached {
                amount,
                charged,
                limit,
            } => {
                self.change_top_up(id, now, |a| a.state = TopUpState::LimitReached);
                let payload =
                    with(json!({ "amount": amount, "charged_this_month": charged, "monthly_limit": limit }));
                self.signal(EventType::TopUpLimitReached, payload, now);
                TopUpState::LimitReached
            }
            TopUpStep::Skipped { reason } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::Abandoned;
                    a.error = Some(reason);
                });
                TopUpState::Abandoned
            }
            TopUpStep::Created { payment_intent_id } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::AwaitingPayment;
                    a.payment_intent_id = Some(payment_intent_id);
                    a.error = None;
                    // If its webhook never comes, the worker asks Stripe then.
                    a.next_action_at = now + chrono::Duration::minutes(AWAIT_WEBHOOK_MINUTES);
                });
                TopUpState::AwaitingPayment
            }
            TopUpStep::StillPaying { retry_at } => {
                self.change_top_up(id, now, |a| a.next_action_at = retry_at);
                TopUpState::AwaitingPayment
            }
            TopUpStep::RunNow => {
                self.change_top_up(id, now, |a| a.next_action_at = a.next_action_at.min(now));
                attempt.state
            }
            TopUpStep::Unknown { error, retry_at } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::Unknown;
                    a.unknown_since = a.unknown_since.or(Some(now));
                    a.error = Some(error);
                    a.next_action_at = retry_at;
                });
                TopUpState::Unknown
            }
            TopUpStep::NotCharged { retry_at } => {
                self.change_top_up(id, now, |a| a.state = TopUpState::Abandoned);
                self.start_top_up(TopUpAttempt::new(
                    &attempt.account_id,
                    &attempt.pack_id,
                    attempt.number,
                    retry_at,
                    now,
                ));
                TopUpState::Abandoned
            }
            TopUpStep::RequiresAction {
                payment_intent_id,
                error,
            } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::RequiresAction;
                    a.payment_intent_id = payment_intent_id.clone().or(a.payment_intent_id.take());
                    a.error = Some(error.clone());
                });
                self.change_settings(|s| s.auto_top_up.paused = Some(PAUSED_FOR_ACTION.to_owned()));
                let payload = with(json!({ "payment_intent_id": payment_intent_id, "error": error }));
                self.signal(EventType::TopUpRequiresAction, payload, now);
                TopUpState::RequiresAction
            }
            TopUpStep::Declined {
                payment_intent_id,
                error,
                retry_at,
            } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::Declined;
                    a.payment_intent_id = payment_intent_id.clone().or(a.payment_intent_id.take());
                    a.error = Some(error.clone());
                });
                let last = attempt.number >= MAX_TOP_UP_ATTEMPTS;
                let payload = with(json!({
                    "payment_intent_id": payment_intent_id,
                    "error": error,
                    "retry_at": (!last).then_some(retry_at),
                }));
                self.signal(EventType::TopUpDeclined, payload, now);
                if last {
                    self.turn_off_top_up(&base, "declined", &error, now);
                } else {
                    let next = TopUpAttempt::new(
                        &attempt.account_id,
                        &attempt.pack_id,
                        attempt.number + 1,
                        retry_at,
                        now,
                    );
                    self.start_top_up(next);
                }
                TopUpState::Declined
            }
            TopUpStep::Failed { error } => {
                self.change_top_up(id, now, |a| {
                    a.state = TopUpState::Failed;
                    a.error = Some(error.clone());
                });
                self.turn_off_top_up(&base, "failed", &error, now);
                TopUpState::Failed
            }
        };
        Some((state, true))
    }

    /// `payment_intent.succeeded` for attempt `id`: it succeeded, whatever the worker thought
    /// (an unknown outcome resolved, or even one given up on). The credit is posted beside it.
    pub(crate) fn top_up_paid(
        &mut self,
        id: &str,
        payment_intent_id: &str,
        credits: i64,
        now: DateTime<Utc>,
    ) {
        let Some(attempt) = self.top_up(id).cloned() else {
            return;
        };
        if attempt.state == TopUpState::Succeeded {
            return;
        }
        self.change_top_up(id, now, |a| {
            a.state = TopUpState::Succeeded;
            a.payment_intent_id = Some(payment_intent_id.to_owned());
            a.error = None;
        });
        let payload = json!({
            "attempt_id": attempt.id,
            "pack_id": attempt.pack_id,
            "attempt": attempt.number,
            "payment_intent_id": payment_intent_id,
            "credits": credits,
            "amount": attempt.amount,
            "currency": attempt.currency,
        });
        self.signal(EventType::TopUpSucceeded, payload, now);
    }

    /// A completed purchase ends a pause for the bank's action: the customer was there.
    pub(crate) fn purchase_completed(&mut self) {
        if self.account.settings.auto_top_up.paused.as_deref() == Some(PAUSED_FOR_ACTION) {
            self.change_settings(|s| s.auto_top_up.paused = None);
        }
    }

    fn turn_off_top_up(&mut self, base: &serde_json::Value, reason: &str, error: &str, now: DateTime<Utc>) {
        self.change_settings(|s| {
            s.auto_top_up.enabled = false;
            s.auto_top_up.paused = None;
        });
        let mut payload = base.clone();
        if let Some(p) = payload.as_object_mut() {
            p.insert("reason".into(), json!(reason));
            p.insert("error".into(), json!(error));
        }
        self.signal(EventType::TopUpFailed, payload, now);
    }
}
