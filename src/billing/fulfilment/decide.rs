//! Deciding one claimed event in memory: complete its purchase (a credit posting), settle its
//! payment's refunds and disputes (clawback or release postings), or mark it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Decided, Decisions, Delivery, Job, SavedCard, report};
use crate::{
    billing::{
        settlement::{self, Terms},
        store::Purchase,
        stripe_event::{CheckoutFacts, EventAction, FulfilmentReport, RefundReport, StripeEvent},
        types::PurchaseStatus,
    },
    catalog::Pack,
    event_store::EventOutcome,
    ledger::{
        Posting,
        book::{Clawback, Credit, LotTerms, LotValue, Metadata},
        kinds::{EntryKind, LotSource},
    },
};

impl Decisions {
    /// Decides job `n` of the batch, and keeps the decision in the job: an open purchase, a
    /// failed event, or an event to apply unless another delivery owns it or it matched no
    /// account or pack.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_job(
        &mut self,
        n: usize,
        job: &mut Job,
        claimed: &HashSet<usize>,
        unmatched: &HashMap<usize, (EventOutcome, String)>,
        packs: &[Pack],
        now: DateTime<Utc>,
        postings: &mut Vec<Posting>,
    ) {
        match job {
            Job::Open { .. } => {}
            Job::Import {
                purchase, inserted, ..
            } => *inserted = self.import(purchase, postings),
            Job::Failed {
                event,
                error,
                decided,
                ..
            } => {
                let outcome = if claimed.contains(&n) {
                    EventOutcome::Failed
                } else {
                    EventOutcome::Duplicate
                };
                let report = FulfilmentReport {
                    detail: Some(error.clone()),
                    ..report(event, outcome)
                };
                let finish = claimed.contains(&n).then(|| event.id.clone());
                *decided = Some(Decided { report, finish });
            }
            Job::Event {
                event,
                delivery,
                card,
                decided,
                ..
            } => {
                let finish = (*delivery != Delivery::Reconcile).then(|| event.id.clone());
                let report = if *delivery != Delivery::Reconcile && !claimed.contains(&n) {
                    report(event, EventOutcome::Duplicate)
                } else if let Some((outcome, detail)) = unmatched.get(&n) {
                    FulfilmentReport {
                        detail: Some(detail.clone()),
                        ..report(event, *outcome)
                    }
                } else {
                    self.decide(event, card.as_ref(), packs, now, postings)
                };
                let finish = finish.filter(|_| report.outcome != EventOutcome::Duplicate);
                *decided = Some(Decided { report, finish });
            }
        }
    }

    /// Decides one claimed event in memory; its postings go to `postings`.
    // Long on purpose: one arm per event action.
    pub(super) fn decide(
        &mut self,
        event: &StripeEvent,
        card: Option<&SavedCard>,
        packs: &[Pack],
        now: DateTime<Utc>,
        postings: &mut Vec<Posting>,
    ) -> FulfilmentReport {
        let mut report = report(event, EventOutcome::Ignored);
        report.outcome = match &event.action {
            EventAction::Ignore => EventOutcome::Ignored,
            EventAction::Credit(facts) => {
                self.complete(event, facts, card, packs, now, postings, &mut report)
            }
            EventAction::AwaitPayment(facts) => match self.purchases.get_mut(&facts.session_id) {
                Some(purchase) if purchase.status == PurchaseStatus::Pending => {
                    report.account_id = Some(purchase.account_id.clone());
                    if purchase.payment_intent_id.is_none() && facts.payment_intent_id.is_some() {
                        purchase.payment_intent_id.clone_from(&facts.payment_intent_id);
                        self.changed.insert(facts.session_id.clone());
                    }
                    EventOutcome::AwaitingPayment
                }
                _ => EventOutcome::NoChange,
            },
            EventAction::MarkFailed(facts) => {
                self.mark(facts, PurchaseStatus::Failed, EventOutcome::PaymentFailed)
            }
            EventAction::MarkExpired(facts) => {
                self.mark(facts, PurchaseStatus::Expired, EventOutcome::Expired)
            }
            EventAction::Refund {
                payment_intent_id,
                report: refund,
            } => {
                if let Some(payment) = self.payments.get_mut(payment_intent_id) {
                    match refund {
                        RefundReport::ChargeTotal { amount_refunded } => {
                            payment.facts.record_charge_total(*amount_refunded);
                            payment.row.charge_refunded = payment.facts.charge_refunded;
                        }
                        RefundReport::Refund(fact) => {
                            payment.refunds_changed.insert(fact.refund_id.clone());
                            payment.facts.record_refund(fact.clone());
                        }
                    }
                    payment.row.facts += 1;
                    payment.changed = true;
                }
                self.settle(payment_intent_id, &event.id, postings, &mut report)
            }
            EventAction::Dispute {
                payment_intent_id,
                fact,
            } => {
                if let Some(payment) = self.payments.get_mut(payment_intent_id) {
                    payment.disputes_changed.insert(fact.dispute_id.clone());
                    payment.facts.record_dispute(fact.clone());
                    payment.row.facts += 1;
                    payment.changed = true;
                }
                self.settle(payment_intent_id, &event.id, postings, &mut report)
            }
            EventAction::Subscription(facts) => self.subscription_event(facts, postings, &mut report),
            EventAction::InvoicePaid(facts) => {
                self.invoice_paid(facts, &event.id, now, postings, &mut report)
            }
            EventAction::InvoiceFailed(facts) => self.invoice_failed(facts, now, &mut report),
        };
        report
    }

    /// Completes the session's purchase unless it already is: the guard that makes crediting
    /// happen once. Refunds or disputes that arrived first settle in the same step.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        event: &StripeEvent,
        facts: &CheckoutFacts,
        card: Option<&SavedCard>,
        packs: &[Pack],
        now: DateTime<Utc>,
        postings: &mut Vec<Posting>,
        report: &mut FulfilmentReport,
    ) -> EventOutcome {
        let Some(purchase) = self.purchases.get_mut(&facts.session_id) else {
            return EventOutcome::NoChange;
        };
        report.account_id = Some(purchase.account_id.clone());
        if matches!(
            purchase.status,
            PurchaseStatus::Completed | PurchaseStatus::Refunded
        ) {
            return EventOutcome::AlreadyCredited;
        }
        let expire_days = packs
            .iter()
            .find(|p| p.id == purchase.credit_pack_id)
            .and_then(|p| p.expires_after_days);
        purchase.status = PurchaseStatus::Completed;
        purchase.completed_at = Some(now);
        purchase.credits_expire_at = expire_days.map(|days| now + chrono::Duration::days(i64::from(days)));
        if facts.payment_intent_id.is_some() {
            purchase.payment_intent_id.clone_from(&facts.payment_intent_id);
        }
        // What the buyer paid (after any discount) is what a full refund returns.
        if let Some(amount) = facts.amount_total.filter(|a| *a > 0) {
            purchase.amount = amount;
        }
        postings.push(Posting::Credit {
            account_id: purchase.account_id.clone(),
            credit: Credit {
                credits: purchase.credits,
                kind: EntryKind::Purchase,
                reason: EntryKind::Purchase.as_str().to_owned(),
                reference: purchase.session_id.clone(),
                metadata: Metadata::new(),
                lot: LotTerms {
                    id: uuid::Uuid::now_v7().to_string(),
                    source: if facts.top_up.is_some() {
                        LotSource::TopUp
                    } else {
                        LotSource::Purchase
                    },
                    reference: purchase.session_id.clone(),
                    expires_at: purchase.credits_expire_at,
                    value: LotValue::paid(purchase.amount, &purchase.currency),
                    rollover: None,
                },
                ends_trial: true,
            },
        });
        if let (Some(_), Some(intent)) = (&facts.top_up, &purchase.payment_intent_id) {
            postings.push(Posting::TopUpPaid {
                account_id: purchase.account_id.clone(),
                attempt_id: purchase.session_id.clone(),
                payment_intent_id: intent.clone(),
                credits: purchase.credits,
            });
        }
        if let Some(card) = card {
            postings.push(Posting::SaveCard {
                account_id: purchase.account_id.clone(),
                customer_id: card.customer_id.clone(),
                payment_method_id: card.payment_method_id.clone(),
            });
        }
        let intent = purchase.payment_intent_id.clone();
        self.changed.insert(facts.session_id.clone());
        if let Some(intent) = intent {
            self.settle(&intent, &event.id, postings, report);
        }
        EventOutcome::Credited
    }

    /// Records an imported purchase; one inserted now settles the refunds and disputes Stripe
    /// reported for its payment while it was not yet recorded.
    /// Whether this job recorded the session's purchase (settling refunds reported before).
    fn import(&mut self, purchase: &Purchase, postings: &mut Vec<Posting>) -> bool {
        let session = purchase.session_id.clone();
        let inserted = self.purchases.get(&session).is_some_and(|p| p.id == purchase.id);
        if inserted
            && let Some(intent) = purchase.payment_intent_id.as_deref()
            && self.payments.get(intent).is_some_and(|p| p.row.facts > 0)
        {
            let mut report = FulfilmentReport {
                outcome: EventOutcome::NoChange,
                session_id: Some(session.clone()),
                account_id: Some(purchase.account_id.clone()),
                credits: 0,
                detail: None,
            };
            self.settle(intent, &format!("import:{session}"), postings, &mut report);
        }
        inserted
    }

    /// Moves a pending purchase to failed or expired; anything further along is left alone.
    fn mark(&mut self, facts: &CheckoutFacts, status: PurchaseStatus, outcome: EventOutcome) -> EventOutcome {
        match self.purchases.get_mut(&facts.session_id) {
            Some(purchase) if purchase.status == PurchaseStatus::Pending => {
                purchase.status = status;
                self.changed.insert(facts.session_id.clone());
                outcome
            }
            _ => EventOutcome::NoChange,
        }
    }

    /// Brings the completed purchase paid by `intent` in line with its payment's facts; the
    /// postings take the difference from what was already taken.
    // Long on purpose: the settlement plan's inputs gathered and its postings laid out in one place.
    fn settle(
        &mut self,
        intent: &str,
        reference: &str,
        postings: &mut Vec<Posting>,
        report: &mut FulfilmentReport,
    ) -> EventOutcome {
        let Some(purchase) = self.purchases.values_mut().find(|p| {
            p.payment_intent_id.as_deref() == Some(intent)
                && matches!(p.status, PurchaseStatus::Completed | PurchaseStatus::Refunded)
        }) else {
            // A subscription invoice's payment settles against its allowance instead.
            return self
                .settle_invoice(intent, reference, postings, report)
                .unwrap_or(EventOutcome::AwaitingPurchase);
        };
        let Some(payment) = self.payments.get_mut(intent) else {
            return EventOutcome::AwaitingPurchase;
        };
        report.session_id = Some(purchase.session_id.clone());
        report.account_id = Some(purchase.account_id.clone());
        let plan = settlement::plan(
            Terms {
                credits: purchase.credits,
                amount: purchase.amount,
                amount_refunded: purchase.amount_refunded,
            },
            &payment.facts,
        );
        let metadata = Metadata::from([("payment_intent".to_owned(), intent.to_owned())]);
        postings.extend(settlement_postings(
            &plan,
            &purchase.account_id,
            reference,
            &purchase.session_id,
            &metadata,
            |credits| LotTerms {
                id: uuid::Uuid::now_v7().to_string(),
                source: LotSource::Purchase,
                reference: purchase.session_id.clone(),
                expires_at: purchase.credits_expire_at,
                // Restored credits are worth what they were bought for.
                value: LotValue::paid(
                    settlement::proportional(purchase.amount, credits, purchase.credits),
                    &purchase.currency,
                ),
                rollover: None,
            },
        ));
        let changed = plan.amount_refunded != purchase.amount_refunded || plan.status != purchase.status;
        purchase.amount_refunded = plan.amount_refunded;
        purchase.status = plan.status;
        if changed {
            self.changed.insert(purchase.session_id.clone());
        }
        for (id, hold) in plan.holds {
            if let Some((_, stored)) = payment.facts.disputes.get_mut(&id)
                && *stored != hold
            {
                *stored = hold;
                payment.disputes_changed.insert(id);
            }
        }
        if plan.refund_delta != 0 || plan.dispute_delta != 0 {
            EventOutcome::Adjusted
        } else {
            EventOutcome::NoChange
        }
    }
}

/// The postings of a settlement plan for one payment: a clawback (the paid-for lots of
/// `paid_reference` first) for each negative delta, a credit of the lot `restored` makes for each
/// positive one.
pub(super) fn settlement_postings(
    plan: &settlement::Plan,
    account_id: &str,
    reference: &str,
    paid_reference: &str,
    metadata: &Metadata,
    restored: impl Fn(i64) -> LotTerms,
) -> Vec<Posting> {
    let mut postings = Vec::new();
    for (kind, delta) in [
        (EntryKind::Refund, plan.refund_delta),
        (EntryKind::Dispute, plan.dispute_delta),
    ] {
        if delta < 0 {
            postings.push(Posting::Clawback {
                account_id: account_id.to_owned(),
                clawback: Clawback {
                    credits: -delta,
                    kind,
                    reference: reference.to_owned(),
                    metadata: metadata.clone(),
                    purchase_reference: paid_reference.to_owned(),
                },
            });
        } else if delta > 0 {
            postings.push(Posting::Credit {
                account_id: account_id.to_owned(),
                credit: Credit {
                    credits: delta,
                    kind,
                    reason: kind.as_str().to_owned(),
                    reference: reference.to_owned(),
                    metadata: metadata.clone(),
                    lot: restored(delta),
                    ends_trial: false,
                },
            });
        }
    }
    postings
}
