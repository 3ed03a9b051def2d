//! Fulfilment: Stripe events into purchases and ledger postings, exactly once. It runs as the
//! ledger writer's `Extension`, inside the batch's transaction:
//!
//! 1. claim every event by its Stripe id (a redelivery, a concurrent copy or another replica's
//!    copy is a duplicate);
//! 2. lock each payment intent's row, then record purchases for sessions not seen before and
//!    lock every purchase the batch touches;
//! 3. decide each event in order, in memory: complete a purchase (a credit posting), settle its
//!    refunds and disputes (`settlement::plan`, clawback or release postings), or mark it;
//! 4. after the ledger applied the postings, write purchases, payments, refunds, disputes and
//!    each event's outcome, all set-wise.
//!
//! Crediting is guarded by the purchase's status, so a session is credited once whatever events
//! describe it. No Stripe call happens here: line items are fetched before the job is queued.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

mod decide;
mod resolve;

use resolve::resolve_new;

use super::{
    event::{EventAction, FulfilmentReport, StripeEvent},
    settlement::PaymentFacts,
    store::{self, PaymentRow, Purchase},
};
use crate::{
    catalog,
    events::{self, Delivery, EventOutcome},
    ledger::{
        Extension, LedgerError,
        command::{Posted, Posting},
    },
};

/// A pack named by the session's line items, fetched from Stripe before the job was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItemPack {
    pub pack_id: String,
    /// Pack credits × quantity, summed over the items whose price is a pack.
    pub credits: i64,
}

/// A session's line items, fetched before queueing: the pack they name, or why not.
pub type LineItems = Option<Result<Option<LineItemPack>, String>>;

/// What billing asks the writer to do.
#[derive(Debug, Clone)]
pub enum Job {
    /// A Stripe event, from the webhook, an operator's replay or reconciliation.
    Event {
        event: StripeEvent,
        delivery: Delivery,
        /// Only for sessions neither the metadata nor a purchase names a pack for: the line
        /// items' pack, or why it could not be had.
        line_items: LineItems,
    },
    /// PurchaseCredits opened a Checkout Session: record its pending purchase.
    Open(Purchase),
    /// A purchase completed before the move (`credits import purchases`): recorded as it was,
    /// crediting nothing, since its credits came with the account's imported balance. Refunds
    /// Stripe reported for its payment before it was recorded are settled now.
    Import(Purchase),
    /// An event whose processing failed for good (or could not be parsed): stored as `failed`
    /// with the error, for operators to list and replay.
    Failed { event: StripeEvent, error: String },
}

/// What a job did.
#[derive(Debug, Clone)]
pub enum Done {
    Event(FulfilmentReport),
    /// The purchase recorded for the session (an earlier one when a repeat won the race).
    Opened(Purchase),
    /// The purchase recorded for the session; `inserted` is false when one already was.
    Imported {
        recorded: Purchase,
        inserted: bool,
    },
}

/// Billing's side of the writer.
#[derive(Debug, Default)]
pub struct Fulfilment;

/// What `prepare` decided, for `finish` to write.
pub struct Batch {
    purchases: HashMap<String, Purchase>,
    changed: BTreeSet<String>,
    payments: HashMap<String, Payment>,
    outcomes: Vec<Decided>,
}

struct Payment {
    row: PaymentRow,
    facts: PaymentFacts,
    changed: bool,
    refunds_changed: BTreeSet<String>,
    disputes_changed: BTreeSet<String>,
}

/// One job, decided.
enum Decided {
    Event {
        report: FulfilmentReport,
        /// None for a duplicate (another delivery owns the event) or a reconciliation.
        finish: Option<String>,
    },
    Opened(String),
    Imported {
        session: String,
        inserted: bool,
    },
}

fn report(event: &StripeEvent, outcome: EventOutcome) -> FulfilmentReport {
    FulfilmentReport {
        outcome,
        session_id: event.action.facts().map(|f| f.session_id.clone()),
        account_id: None,
        credits: 0,
        detail: None,
    }
}

impl Extension for Fulfilment {
    type Job = Job;
    type Done = Done;
    type Batch = Batch;

    async fn prepare<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        jobs: &'a [&'a Job],
        now: DateTime<Utc>,
    ) -> Result<(Batch, Vec<Vec<Posting>>), LedgerError> {
        let claimed = claim(txn, jobs, now).await?;
        let (intents, sessions) = lock_keys(jobs);
        // Payment rows before purchases before accounts: the one lock order of every writer.
        let rows = store::lock_payments(txn, &intents, now).await?;
        let mut locked = store::lock(txn, &sessions, &intents).await?;
        let packs = catalog::store::all_packs(txn).await?;
        let (new, unmatched) = {
            let known: HashSet<&str> = locked.iter().map(|p| p.session_id.as_str()).collect();
            resolve_new(txn, jobs, &claimed, &known, &packs, now).await?
        };
        // A row this transaction inserts is locked by it; one another writer inserted since
        // the lock above is locked now.
        let inserted = store::insert(txn, &new, now).await?;
        let raced: Vec<&str> = new
            .iter()
            .map(|p| p.session_id.as_str())
            .filter(|s| !inserted.contains(*s))
            .collect();
        if !raced.is_empty() {
            locked.extend(store::lock(txn, &raced, &[]).await?);
        }
        // Of several purchases for one session (repeats of one idempotent PurchaseCredits), the
        // first is the one inserted.
        let mut first = HashSet::new();
        locked.extend(
            new.into_iter()
                .filter(|p| inserted.contains(&p.session_id) && first.insert(p.session_id.clone())),
        );

        let mut batch = Batch {
            purchases: locked.into_iter().map(|p| (p.session_id.clone(), p)).collect(),
            changed: BTreeSet::new(),
            payments: payments(txn, rows).await?,
            outcomes: Vec::with_capacity(jobs.len()),
        };
        let mut postings = Vec::with_capacity(jobs.len());
        for (n, job) in jobs.iter().enumerate() {
            let mut job_postings = Vec::new();
            let decided = batch.decide_job(n, job, &claimed, &unmatched, &packs, now, &mut job_postings);
            batch.outcomes.push(decided);
            postings.push(job_postings);
        }
        Ok((batch, postings))
    }

    // Long on purpose: writes billing's rows in lock order, one statement per kind of row.
    async fn finish<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        batch: Batch,
        posted: Vec<Vec<Posted>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Done>, LedgerError> {
        let changed: Vec<Purchase> = batch
            .changed
            .iter()
            .filter_map(|s| batch.purchases.get(s).cloned())
            .collect();
        store::update(txn, &changed, now).await?;
        let mut rows = Vec::new();
        let mut refunds = Vec::new();
        let mut disputes = Vec::new();
        for (intent, payment) in &batch.payments {
            if payment.changed {
                rows.push(payment.row.clone());
            }
            for id in &payment.refunds_changed {
                if let Some(refund) = payment.facts.refunds.get(id) {
                    refunds.push((intent.clone(), refund.clone()));
                }
            }
            for id in &payment.disputes_changed {
                if let Some((fact, hold)) = payment.facts.disputes.get(id) {
                    disputes.push((intent.clone(), fact.clone(), *hold));
                }
            }
        }
        rows.sort_by(|a, b| a.payment_intent_id.cmp(&b.payment_intent_id));
        store::update_payments(txn, &rows, now).await?;
        store::upsert_refunds(txn, &refunds, now).await?;
        store::upsert_disputes(txn, &disputes, now).await?;

        let mut finished = Vec::new();
        let mut done = Vec::with_capacity(batch.outcomes.len());
        for (decided, posted) in batch.outcomes.into_iter().zip(posted) {
            match decided {
                Decided::Opened(session) => match batch.purchases.get(&session) {
                    Some(purchase) => done.push(Done::Opened(purchase.clone())),
                    None => {
                        return Err(LedgerError::Unexpected(anyhow::anyhow!(
                            "purchase for session {session} was neither inserted nor found"
                        )));
                    }
                },
                Decided::Imported { session, inserted } => match batch.purchases.get(&session) {
                    Some(purchase) => done.push(Done::Imported {
                        recorded: purchase.clone(),
                        inserted,
                    }),
                    None => {
                        return Err(LedgerError::Unexpected(anyhow::anyhow!(
                            "imported purchase for session {session} was neither inserted nor found"
                        )));
                    }
                },
                Decided::Event { mut report, finish } => {
                    for p in posted.iter().filter(|p| p.delta < 0 && p.balance < 0) {
                        // The credits were spent already: the account now owes them.
                        tracing::warn!(
                            account_id = %p.account_id,
                            clawback = -p.delta,
                            balance = p.balance,
                            "clawback took the balance below zero"
                        );
                    }
                    report.credits = posted.iter().map(|p| p.delta).sum();
                    if report.account_id.is_none() {
                        report.account_id = posted.first().map(|p| p.account_id.clone());
                    }
                    if let Some(id) = finish {
                        finished.push(events::store::Finished {
                            id,
                            outcome: report.outcome,
                            error: report.detail.clone(),
                        });
                    }
                    done.push(Done::Event(report));
                }
            }
        }
        events::store::finish(txn, &finished, now).await?;
        Ok(done)
    }
}

/// Claims the batch's events; returns the positions of the jobs that own theirs. The first of
/// two jobs with one id in a batch claims it; the second is a duplicate.
async fn claim(
    txn: &DatabaseTransaction,
    jobs: &[&Job],
    now: DateTime<Utc>,
) -> Result<HashSet<usize>, LedgerError> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut by_delivery: HashMap<Delivery, Vec<events::store::NewEvent<'_>>> = HashMap::new();
    for (n, job) in jobs.iter().enumerate() {
        let (event, delivery) = match job {
            Job::Event { event, delivery, .. } => (event, *delivery),
            Job::Failed { event, .. } => (event, Delivery::Webhook),
            Job::Open(_) | Job::Import(_) => continue,
        };
        if delivery == Delivery::Reconcile || first.contains_key(event.id.as_str()) {
            continue;
        }
        first.insert(&event.id, n);
        by_delivery
            .entry(delivery)
            .or_default()
            .push(events::store::NewEvent {
                id: &event.id,
                event_type: &event.event_type,
                checkout_session_id: event.action.facts().map(|f| f.session_id.as_str()),
                payload: &event.payload,
            });
    }
    let mut claimed = HashSet::new();
    for (delivery, new) in by_delivery {
        for id in events::store::claim(txn, delivery, &new, now).await? {
            claimed.extend(first.get(id.as_str()).copied());
        }
    }
    Ok(claimed)
}

/// The payment intents and Checkout Sessions a batch's jobs must lock.
fn lock_keys<'a>(jobs: &[&'a Job]) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut intents, mut sessions) = (Vec::new(), Vec::new());
    for job in jobs {
        match job {
            Job::Event { event, .. } => {
                match &event.action {
                    EventAction::Refund {
                        payment_intent_id, ..
                    }
                    | EventAction::Dispute {
                        payment_intent_id, ..
                    } => intents.push(payment_intent_id.as_str()),
                    EventAction::Credit(f) => intents.extend(f.payment_intent_id.as_deref()),
                    _ => {}
                }
                sessions.extend(event.action.facts().map(|f| f.session_id.as_str()));
            }
            Job::Open(purchase) => sessions.push(purchase.session_id.as_str()),
            Job::Import(purchase) => {
                sessions.push(purchase.session_id.as_str());
                intents.extend(purchase.payment_intent_id.as_deref());
            }
            Job::Failed { .. } => {}
        }
    }
    (intents, sessions)
}

/// The locked payment rows with their refunds and disputes.
async fn payments(
    txn: &DatabaseTransaction,
    rows: Vec<store::PaymentRow>,
) -> Result<HashMap<String, Payment>, LedgerError> {
    let with_facts: Vec<String> = rows
        .iter()
        .filter(|r| r.facts > 0)
        .map(|r| r.payment_intent_id.clone())
        .collect();
    let with_facts: Vec<&str> = with_facts.iter().map(String::as_str).collect();
    let mut payments: HashMap<String, Payment> = rows
        .into_iter()
        .map(|row| {
            let facts = PaymentFacts {
                charge_refunded: row.charge_refunded,
                ..PaymentFacts::default()
            };
            (
                row.payment_intent_id.clone(),
                Payment {
                    row,
                    facts,
                    changed: false,
                    refunds_changed: BTreeSet::new(),
                    disputes_changed: BTreeSet::new(),
                },
            )
        })
        .collect();
    for (intent, refund) in store::refunds(txn, &with_facts).await? {
        if let Some(payment) = payments.get_mut(&intent) {
            payment.facts.refunds.insert(refund.refund_id.clone(), refund);
        }
    }
    for (intent, dispute, hold) in store::disputes(txn, &with_facts).await? {
        if let Some(payment) = payments.get_mut(&intent) {
            payment
                .facts
                .disputes
                .insert(dispute.dispute_id.clone(), (dispute, hold));
        }
    }
    Ok(payments)
}
