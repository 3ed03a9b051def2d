//! Subscriptions in the writer's batch: the subscription rows a batch's events name (opened on
//! first sight, whichever event comes first) and their invoices, locked after purchases and
//! before accounts; what each subscription or invoice event does to them; and the allowance a
//! paid invoice grants, once per invoice, guarded by the invoice's status under its
//! subscription's lock. Refunds and disputes of an invoice's payment settle against its
//! allowance like a purchase's (`settlement::plan`).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Months, Utc};
use sea_orm::DatabaseTransaction;

use super::{Decisions, Job, decide::settlement_postings};
use crate::{
    billing::{
        settlement::{self, Terms},
        stripe_event::{EventAction, FulfilmentReport},
        subscriptions::{
            InvoiceFacts, InvoiceStatus, Subscription, SubscriptionFacts, SubscriptionInvoice,
            SubscriptionStatus, store,
        },
        types::PurchaseStatus,
    },
    catalog::{Interval, Plan, plan_store},
    event_store::EventOutcome,
    ledger::{
        LedgerError, Posting,
        book::{Credit, LotTerms, LotValue, Metadata, RolloverTerms},
        kinds::{EntryKind, LotSource},
    },
};

/// The subscriptions and subscription invoices a batch touches, locked, with what changed.
#[derive(Debug, Default)]
pub(super) struct SubscriptionState {
    rows: HashMap<String, Subscription>,
    changed: BTreeSet<String>,
    invoices: HashMap<String, SubscriptionInvoice>,
    changed_invoices: BTreeSet<String>,
    plans: Vec<Plan>,
    /// The accounts the events name that exist.
    accounts: HashSet<String>,
}

/// What an event says about a subscription it names, for opening its row.
struct Named<'a> {
    id: &'a str,
    account_id: Option<&'a str>,
    plan_id: Option<&'a str>,
    price_id: Option<&'a str>,
    opened: Subscription,
}

fn named<'a>(action: &'a EventAction, now: DateTime<Utc>) -> Option<Named<'a>> {
    let opened =
        |id: &str, status: SubscriptionStatus, period: Option<(DateTime<Utc>, DateTime<Utc>)>| Subscription {
            id: id.to_owned(),
            account_id: String::new(),
            plan_id: String::new(),
            customer_id: None,
            status,
            current_period_start: period.map(|p| p.0),
            current_period_end: period.map(|p| p.1),
            cancel_at_period_end: false,
            canceled_at: None,
            // Known from an invoice only until a subscription event says more.
            state_version: 0,
            created_at: now,
        };
    match action {
        EventAction::Subscription(f) => Some(Named {
            id: &f.subscription_id,
            account_id: f.account_id.as_deref(),
            plan_id: f.plan_id.as_deref(),
            price_id: f.price_id.as_deref(),
            opened: Subscription {
                customer_id: f.customer_id.clone(),
                ..opened(&f.subscription_id, f.status.clone(), f.current_period)
            },
        }),
        EventAction::InvoicePaid(f) | EventAction::InvoiceFailed(f) => {
            let status = if matches!(action, EventAction::InvoicePaid(_)) {
                SubscriptionStatus::Active
            } else {
                SubscriptionStatus::PastDue
            };
            Some(Named {
                id: &f.subscription_id,
                account_id: f.account_id.as_deref(),
                plan_id: f.plan_id.as_deref(),
                price_id: f.price_id.as_deref(),
                // As new as the invoice event: an older subscription event changes nothing.
                opened: Subscription {
                    state_version: f.version,
                    ..opened(&f.subscription_id, status, Some((f.period_start, f.period_end)))
                },
            })
        }
        _ => None,
    }
}

/// The plan a price names (it follows upgrades), else the one the metadata names.
fn plan_for<'p>(plans: &'p [Plan], price_id: Option<&str>, plan_id: Option<&str>) -> Option<&'p Plan> {
    price_id
        .and_then(|price| plans.iter().find(|p| p.stripe_price_id.as_deref() == Some(price)))
        .or_else(|| plan_id.and_then(|id| plans.iter().find(|p| p.id == id)))
}

impl SubscriptionState {
    /// Locks the subscriptions the batch's own events name (opening a row for one not seen
    /// before, when its account exists and its plan is known), then their invoices, the ones
    /// the events name and the ones paid by the payments the events name, all in id order. A
    /// batch of purchases alone reads nothing here.
    pub(super) async fn load(
        txn: &DatabaseTransaction,
        jobs: &[&mut Job],
        claimed: &HashSet<usize>,
        now: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        let mut events = Vec::new();
        let mut invoice_ids = Vec::new();
        // The payments whose refunds and disputes may be an invoice's to settle.
        let mut intents = Vec::new();
        for (n, job) in jobs.iter().enumerate() {
            // Reconciliation carries Checkout Sessions only: an owned event is a claimed one.
            let Job::Event { event, .. } = &**job else {
                continue;
            };
            if !claimed.contains(&n) {
                continue;
            }
            match &event.action {
                EventAction::InvoicePaid(f) | EventAction::InvoiceFailed(f) => {
                    invoice_ids.push(f.invoice_id.as_str());
                    intents.extend(f.payment_intent_id.as_deref());
                }
                EventAction::Refund {
                    payment_intent_id, ..
                }
                | EventAction::Dispute {
                    payment_intent_id, ..
                } => intents.push(payment_intent_id.as_str()),
                _ => {}
            }
            events.extend(named(&event.action, now));
        }
        if events.is_empty() {
            // Refunds and disputes only: the invoices their payments paid, if any.
            let invoices = store::lock_invoices(txn, &[], &intents, &[]).await?;
            return Ok(Self {
                invoices: invoices.into_iter().map(|i| (i.id.clone(), i)).collect(),
                ..Self::default()
            });
        }
        let mut ids: Vec<&str> = events.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored = store::by_ids(txn, &ids).await?;
        let account_ids: Vec<&str> = events.iter().filter_map(|e| e.account_id).collect();
        let accounts: HashSet<String> = crate::ledger::accounts_named(txn, &account_ids, &[])
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        let plans = plan_store::all_plans(txn).await?;
        let mut open: Vec<Subscription> = stored.clone();
        for id in ids {
            if stored.iter().any(|s| s.id == id) {
                continue;
            }
            // The first event that names an existing account and a known plan opens it.
            let first = events.iter().filter(|e| e.id == id).find_map(|e| {
                let account = e.account_id.filter(|a| accounts.contains(*a))?;
                let plan = plan_for(&plans, e.price_id, e.plan_id)?;
                Some(Subscription {
                    account_id: account.to_owned(),
                    plan_id: plan.id.clone(),
                    ..e.opened.clone()
                })
            });
            open.extend(first);
        }
        let rows = store::lock_or_open(txn, &open, now).await?;
        let subscription_ids: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
        let invoices = store::lock_invoices(txn, &invoice_ids, &intents, &subscription_ids).await?;
        Ok(Self {
            rows: rows.into_iter().map(|s| (s.id.clone(), s)).collect(),
            changed: BTreeSet::new(),
            invoices: invoices.into_iter().map(|i| (i.id.clone(), i)).collect(),
            changed_invoices: BTreeSet::new(),
            plans,
            accounts,
        })
    }

    /// Writes the subscriptions and invoices the batch changed.
    pub(super) async fn save(
        &self,
        txn: &DatabaseTransaction,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let rows: Vec<Subscription> = self
            .changed
            .iter()
            .filter_map(|id| self.rows.get(id).cloned())
            .collect();
        store::save(txn, &rows, now).await?;
        let invoices: Vec<SubscriptionInvoice> = self
            .changed_invoices
            .iter()
            .filter_map(|id| self.invoices.get(id).cloned())
            .collect();
        store::save_invoices(txn, &invoices, now).await?;
        Ok(())
    }

    /// Why an event's subscription has no row: its account or its plan is unknown.
    fn unmatched(&self, id: &str, account_id: Option<&str>, report: &mut FulfilmentReport) -> EventOutcome {
        if account_id.is_some_and(|a| self.accounts.contains(a)) {
            report.detail = Some(format!("no plan for subscription {id}"));
            EventOutcome::UnmatchedPack
        } else {
            report.detail = Some(format!(
                "no account for subscription {id} (metadata.account_id {account_id:?})"
            ));
            EventOutcome::UnmatchedAccount
        }
    }
}

/// The allowance lot of an invoice: its reference is the invoice, it expires at the end of the
/// period paid for, worth `value` minor units; `rollover` carries unspent credits on.
fn allowance_lot(invoice: &SubscriptionInvoice, value: i64, rollover: Option<RolloverTerms>) -> LotTerms {
    LotTerms {
        id: uuid::Uuid::now_v7().to_string(),
        source: LotSource::Allowance,
        reference: invoice.id.clone(),
        expires_at: Some(invoice.period_end),
        value: LotValue::paid(value, &invoice.currency),
        rollover,
    }
}

/// A plan's rollover terms for a period ending at `end`: up to its cap, until one more
/// interval has passed. `None` when the plan carries nothing over (or the time does not fit).
fn rollover_terms(plan: &Plan, end: DateTime<Utc>) -> Option<RolloverTerms> {
    let months = match plan.interval {
        Interval::Month => 1,
        Interval::Year => 12,
    };
    let until = end.checked_add_months(Months::new(months))?;
    (plan.rollover_cap > 0).then_some(RolloverTerms {
        cap: plan.rollover_cap,
        until,
    })
}

impl Decisions {
    /// `customer.subscription.*`: the newest state wins (by the event's `created`, a later
    /// kind winning within one second), and an ended subscription stays ended; ending stops
    /// the rollover of its allowance.
    pub(super) fn subscription_event(
        &mut self,
        facts: &SubscriptionFacts,
        postings: &mut Vec<Posting>,
        report: &mut FulfilmentReport,
    ) -> EventOutcome {
        let state = &mut self.subscriptions;
        let Some(row) = state.rows.get_mut(&facts.subscription_id) else {
            return state.unmatched(&facts.subscription_id, facts.account_id.as_deref(), report);
        };
        report.account_id = Some(row.account_id.clone());
        let ends = facts.deleted || facts.status.is_terminal();
        if row.status.is_terminal() || (!ends && facts.version < row.state_version) {
            return EventOutcome::NoChange;
        }
        row.status = if facts.deleted && !facts.status.is_terminal() {
            SubscriptionStatus::Canceled
        } else {
            facts.status.clone()
        };
        if let Some((start, end)) = facts.current_period {
            row.current_period_start = Some(start);
            row.current_period_end = Some(end);
        }
        row.cancel_at_period_end = facts.cancel_at_period_end;
        row.canceled_at = facts.canceled_at.or(row.canceled_at);
        if facts.customer_id.is_some() {
            row.customer_id.clone_from(&facts.customer_id);
        }
        if let Some(plan) = plan_for(&state.plans, facts.price_id.as_deref(), facts.plan_id.as_deref()) {
            row.plan_id.clone_from(&plan.id);
        }
        row.state_version = row.state_version.max(facts.version);
        if row.status.is_terminal() {
            // No next period to carry unspent allowance into; what was paid for stays until
            // its period ends.
            let granted = state
                .invoices
                .values()
                .filter(|i| i.subscription_id == facts.subscription_id && i.lot_id.is_some());
            for invoice in granted {
                postings.push(Posting::StopRollover {
                    account_id: invoice.account_id.clone(),
                    lot_reference: invoice.id.clone(),
                });
            }
        }
        state.changed.insert(facts.subscription_id.clone());
        EventOutcome::Updated
    }

    /// `invoice.payment_failed`: the subscription is past due (unless it ended, a newer state
    /// is known or the invoice was paid since); the invoice is kept, granting nothing.
    pub(super) fn invoice_failed(
        &mut self,
        facts: &InvoiceFacts,
        now: DateTime<Utc>,
        report: &mut FulfilmentReport,
    ) -> EventOutcome {
        let state = &mut self.subscriptions;
        let Some(row) = state.rows.get_mut(&facts.subscription_id) else {
            return state.unmatched(&facts.subscription_id, facts.account_id.as_deref(), report);
        };
        report.account_id = Some(row.account_id.clone());
        // A failure reported after the same invoice was paid is old news.
        let paid = state
            .invoices
            .get(&facts.invoice_id)
            .is_some_and(|i| i.status.granted());
        if !paid && !row.status.is_terminal() && facts.version >= row.state_version {
            row.status = SubscriptionStatus::PastDue;
            row.state_version = facts.version;
            state.changed.insert(facts.subscription_id.clone());
        }
        if !state.invoices.contains_key(&facts.invoice_id) {
            let plan_id = plan_for(&state.plans, facts.price_id.as_deref(), facts.plan_id.as_deref())
                .map_or_else(|| row.plan_id.clone(), |p| p.id.clone());
            let invoice = new_invoice(facts, row, plan_id, InvoiceStatus::PaymentFailed, now);
            state.invoices.insert(facts.invoice_id.clone(), invoice);
            state.changed_invoices.insert(facts.invoice_id.clone());
        }
        EventOutcome::PaymentFailed
    }

    /// `invoice.paid`: grants the period's allowance unless this invoice already did: its
    /// plan's allowance less what the subscription's other invoices already granted for the
    /// same period (an upgrade's proration tops up to the new plan; never less than nothing).
    /// A paid invoice makes an incomplete or past-due subscription active unless a newer state
    /// is known. Refunds or disputes that arrived first settle in the same step.
    pub(super) fn invoice_paid(
        &mut self,
        facts: &InvoiceFacts,
        reference: &str,
        now: DateTime<Utc>,
        postings: &mut Vec<Posting>,
        report: &mut FulfilmentReport,
    ) -> EventOutcome {
        let state = &mut self.subscriptions;
        let Some(row) = state.rows.get_mut(&facts.subscription_id) else {
            return state.unmatched(&facts.subscription_id, facts.account_id.as_deref(), report);
        };
        report.account_id = Some(row.account_id.clone());
        let unpaid = matches!(
            row.status,
            SubscriptionStatus::Incomplete | SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid
        );
        if unpaid && facts.version >= row.state_version {
            row.status = SubscriptionStatus::Active;
            row.state_version = facts.version;
            state.changed.insert(facts.subscription_id.clone());
        }
        let row = &*row;
        if state
            .invoices
            .get(&facts.invoice_id)
            .is_some_and(|i| i.status.granted())
        {
            return EventOutcome::AlreadyCredited;
        }
        let Some(plan) = plan_for(&state.plans, facts.price_id.as_deref(), facts.plan_id.as_deref())
            .or_else(|| state.plans.iter().find(|p| p.id == row.plan_id))
        else {
            report.detail = Some(format!(
                "no plan for invoice {} (price {:?}, metadata.plan_id {:?})",
                facts.invoice_id, facts.price_id, facts.plan_id
            ));
            return EventOutcome::UnmatchedPack;
        };
        // A period's allowance is granted once, whatever order its invoices come in: an
        // upgrade's proration grants the new plan's allowance less what the period already got.
        let already: i64 = state
            .invoices
            .values()
            .filter(|i| i.subscription_id == facts.subscription_id && i.id != facts.invoice_id)
            .filter(|i| i.status.granted() && i.period_end == facts.period_end)
            .map(|i| i.credits)
            .fold(0, i64::saturating_add);
        let credits = plan.credits.saturating_sub(already).max(0);
        let mut invoice = new_invoice(facts, row, plan.id.clone(), InvoiceStatus::Paid, now);
        if let Some(known) = state.invoices.get(&facts.invoice_id) {
            invoice.created_at = known.created_at;
            invoice.amount_refunded = known.amount_refunded;
            if invoice.payment_intent_id.is_none() {
                invoice.payment_intent_id.clone_from(&known.payment_intent_id);
            }
        }
        invoice.credits = credits;
        if credits > 0 {
            // An ended subscription has no next period to carry credits into.
            let rollover = (!row.status.is_terminal())
                .then(|| rollover_terms(plan, facts.period_end))
                .flatten();
            let lot = allowance_lot(&invoice, facts.amount_paid, rollover);
            invoice.lot_id = Some(lot.id.clone());
            let metadata = Metadata::from([
                ("subscription".to_owned(), facts.subscription_id.clone()),
                ("plan".to_owned(), plan.id.clone()),
                ("period_start".to_owned(), facts.period_start.to_rfc3339()),
                ("period_end".to_owned(), facts.period_end.to_rfc3339()),
            ]);
            postings.push(Posting::Credit {
                account_id: invoice.account_id.clone(),
                credit: Credit {
                    credits,
                    kind: EntryKind::Allowance,
                    reason: EntryKind::Allowance.as_str().to_owned(),
                    reference: facts.invoice_id.clone(),
                    metadata,
                    lot,
                    // A paying subscriber's trial is over, as a purchase's is.
                    ends_trial: true,
                },
            });
        }
        let intent = invoice.payment_intent_id.clone();
        state.invoices.insert(facts.invoice_id.clone(), invoice);
        state.changed_invoices.insert(facts.invoice_id.clone());
        if let Some(intent) = intent
            && self.payments.get(&intent).is_some_and(|p| p.row.facts > 0)
        {
            self.settle_invoice(&intent, reference, postings, report);
        }
        if credits > 0 {
            EventOutcome::Credited
        } else {
            EventOutcome::NoChange
        }
    }

    /// Brings the granted invoice paid by `intent` in line with its payment's facts, as
    /// `settle` does a purchase: clawbacks take from the invoice's own lot first. `None` when
    /// no granted invoice was paid by it.
    pub(super) fn settle_invoice(
        &mut self,
        intent: &str,
        reference: &str,
        postings: &mut Vec<Posting>,
        report: &mut FulfilmentReport,
    ) -> Option<EventOutcome> {
        let state = &mut self.subscriptions;
        let invoice = state
            .invoices
            .values_mut()
            .find(|i| i.payment_intent_id.as_deref() == Some(intent) && i.status.granted())?;
        let payment = self.payments.get_mut(intent)?;
        report.account_id = Some(invoice.account_id.clone());
        let plan = settlement::plan(
            Terms {
                credits: invoice.credits,
                amount: invoice.amount_paid,
                amount_refunded: invoice.amount_refunded,
            },
            &payment.facts,
        );
        let metadata = Metadata::from([
            ("payment_intent".to_owned(), intent.to_owned()),
            ("invoice".to_owned(), invoice.id.clone()),
        ]);
        postings.extend(settlement_postings(
            &plan,
            &invoice.account_id,
            reference,
            &invoice.id,
            &metadata,
            |credits| {
                allowance_lot(
                    invoice,
                    settlement::proportional(invoice.amount_paid, credits, invoice.credits),
                    None,
                )
            },
        ));
        let status = match plan.status {
            PurchaseStatus::Refunded => InvoiceStatus::Refunded,
            _ => InvoiceStatus::Paid,
        };
        if plan.amount_refunded != invoice.amount_refunded || status != invoice.status {
            invoice.amount_refunded = plan.amount_refunded;
            invoice.status = status;
            state.changed_invoices.insert(invoice.id.clone());
        }
        for (id, hold) in plan.holds {
            if let Some((_, stored)) = payment.facts.disputes.get_mut(&id)
                && *stored != hold
            {
                *stored = hold;
                payment.disputes_changed.insert(id);
            }
        }
        Some(if plan.refund_delta != 0 || plan.dispute_delta != 0 {
            EventOutcome::Adjusted
        } else {
            EventOutcome::NoChange
        })
    }
}

/// An invoice row as its event describes it, for the subscription `row`.
fn new_invoice(
    facts: &InvoiceFacts,
    row: &Subscription,
    plan_id: String,
    status: InvoiceStatus,
    now: DateTime<Utc>,
) -> SubscriptionInvoice {
    SubscriptionInvoice {
        id: facts.invoice_id.clone(),
        subscription_id: facts.subscription_id.clone(),
        account_id: row.account_id.clone(),
        plan_id,
        billing_reason: facts.billing_reason.clone(),
        period_start: facts.period_start,
        period_end: facts.period_end,
        amount_paid: facts.amount_paid,
        currency: facts.currency.clone(),
        amount_refunded: 0,
        credits: 0,
        payment_intent_id: facts.payment_intent_id.clone(),
        lot_id: None,
        status,
        created_at: now,
    }
}
