//! Fulfilment: Stripe events into purchases and ledger postings, exactly once. It runs as the
//! ledger writer's `Extension`, inside the batch's transaction:
//!
//! 1. claim every event by its Stripe id (a redelivery, a concurrent copy or another replica's
//!    copy is a duplicate);
//! 2. lock each payment intent's row, then record purchases for sessions not seen before and
//!    lock every purchase the batch touches;
//! 3. lock the subscriptions the events name (opened on first sight) and their invoices;
//! 4. decide each event in order, in memory: complete a purchase (a credit posting), settle its
//!    refunds and disputes (`settlement::plan`, clawback or release postings), or mark it; keep
//!    a subscription's newest state, grant a paid invoice's allowance once;
//! 5. after the ledger applied the postings, write purchases, payments, refunds, disputes,
//!    subscriptions, invoices and each event's outcome, all set-wise.
//!
//! Crediting is guarded by the purchase's status, so a session is credited once whatever events
//! describe it. No Stripe call happens here: line items are fetched before the job is queued.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use tokio::sync::oneshot;

mod decide;
mod resolve;
mod subscriptions;

use resolve::resolve_new;
use subscriptions::SubscriptionState;

use super::{
    settlement::PaymentFacts,
    store::{self, PaymentRow, Purchase},
    stripe_event::{EventAction, FulfilmentReport, StripeEvent},
};
use crate::{
    catalog,
    event_store::{self, Delivery, EventOutcome},
    ledger::{Extension, ExtensionJob, LedgerError, Posted, Posting},
};

/// A pack named by the session's line items, fetched from Stripe before the job was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineItemPack {
    pub pack_id: String,
    /// Pack credits × quantity, summed over the items whose price is a pack.
    pub credits: i64,
}

/// A session's line items, fetched before queueing: the pack they name, or why not.
pub(crate) type LineItems = Option<Result<Option<LineItemPack>, String>>;

/// A card kept for auto top-ups: the Customer and the payment method the Checkout used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedCard {
    pub customer_id: String,
    pub payment_method_id: String,
}

/// Where a job's answer goes: filled when its batch is decided and written, sent once the
/// batch is committed.
#[derive(Debug)]
pub(crate) struct Answer<T> {
    to: oneshot::Sender<Result<T, LedgerError>>,
    ready: Option<T>,
}

impl<T: Send + 'static> Answer<T> {
    /// An answer slot and the receiver its caller waits on.
    pub(crate) fn new() -> (Self, oneshot::Receiver<Result<T, LedgerError>>) {
        let (to, from) = oneshot::channel();
        (Self { to, ready: None }, from)
    }

    fn set(&mut self, answer: T) {
        self.ready = Some(answer);
    }

    fn send(self) {
        let answer = self.ready.ok_or_else(|| {
            LedgerError::Unexpected(anyhow::anyhow!("a billing job was committed without an answer"))
        });
        // A caller that gave up no longer listens; its job is done.
        let _ = self.to.send(answer);
    }

    fn fail(self, err: LedgerError) {
        let _ = self.to.send(Err(err));
    }
}

/// What an event job was decided to do.
#[derive(Debug)]
pub(crate) struct Decided {
    report: FulfilmentReport,
    /// The event to finish in the event store; None for a duplicate (another delivery owns
    /// the event) or a reconciliation.
    finish: Option<String>,
}

/// What an imported purchase came to: the purchase recorded for the session, and whether this
/// job recorded it (false when one already was).
#[derive(Debug, Clone)]
pub(crate) struct ImportedPurchase {
    pub recorded: Purchase,
    pub inserted: bool,
}

/// What billing asks the writer to do; each job carries where its answer goes.
#[derive(Debug)]
pub(crate) enum Job {
    /// A Stripe event, from the webhook, an operator's replay or reconciliation.
    Event {
        event: StripeEvent,
        delivery: Delivery,
        /// Only for sessions neither the metadata nor a purchase names a pack for: the line
        /// items' pack, or why it could not be had.
        line_items: LineItems,
        /// The card a completed Checkout asked to keep, read from Stripe before queueing.
        card: Option<SavedCard>,
        decided: Option<Decided>,
        answer: Answer<FulfilmentReport>,
    },
    /// PurchaseCredits opened a Checkout Session: record its pending purchase. The answer is
    /// the purchase recorded for the session (an earlier one when a repeat won the race).
    Open {
        purchase: Purchase,
        answer: Answer<Purchase>,
    },
    /// A purchase completed before the move (`credits import purchases`): recorded as it was,
    /// crediting nothing, since its credits came with the account's imported balance. Refunds
    /// Stripe reported for its payment before it was recorded are settled now.
    Import {
        purchase: Purchase,
        inserted: bool,
        answer: Answer<ImportedPurchase>,
    },
    /// An event that could not be parsed or failed before the writer: stored as `failed` with
    /// the error, for operators to list and replay.
    Failed {
        event: StripeEvent,
        error: String,
        decided: Option<Decided>,
        answer: Answer<()>,
    },
}

impl ExtensionJob for Job {
    fn deliver(self) {
        match self {
            Self::Event { answer, .. } => answer.send(),
            Self::Open { answer, .. } => answer.send(),
            Self::Import { answer, .. } => answer.send(),
            Self::Failed { answer, .. } => answer.send(),
        }
    }

    fn fail(self, err: LedgerError) {
        match self {
            Self::Event { answer, .. } => answer.fail(err),
            Self::Open { answer, .. } => answer.fail(err),
            Self::Import { answer, .. } => answer.fail(err),
            Self::Failed { answer, .. } => answer.fail(err),
        }
    }
}

/// Billing's side of the writer.
#[derive(Debug, Default)]
pub(crate) struct Fulfilment;

/// What `prepare` decided, for `finish` to write.
pub(crate) struct Decisions {
    purchases: HashMap<String, Purchase>,
    changed: BTreeSet<String>,
    payments: HashMap<String, Payment>,
    subscriptions: SubscriptionState,
}

struct Payment {
    row: PaymentRow,
    facts: PaymentFacts,
    changed: bool,
    refunds_changed: BTreeSet<String>,
    disputes_changed: BTreeSet<String>,
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
    type Decisions = Decisions;

    async fn prepare<'a, 'b: 'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        jobs: &'a mut [&'b mut Job],
        now: DateTime<Utc>,
    ) -> Result<(Decisions, Vec<Vec<Posting>>), LedgerError> {
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

        // Subscriptions, then their invoices, after purchases and before accounts.
        let subscriptions = SubscriptionState::load(txn, jobs, &claimed, now).await?;
        let mut decisions = Decisions {
            purchases: locked.into_iter().map(|p| (p.session_id.clone(), p)).collect(),
            changed: BTreeSet::new(),
            payments: payments(txn, rows).await?,
            subscriptions,
        };
        let mut postings = Vec::with_capacity(jobs.len());
        for (n, job) in jobs.iter_mut().enumerate() {
            let mut job_postings = Vec::new();
            decisions.decide_job(n, job, &claimed, &unmatched, &packs, now, &mut job_postings);
            postings.push(job_postings);
        }
        Ok((decisions, postings))
    }

    // Long on purpose: writes billing's rows in lock order, one statement per kind of row.
    async fn finish<'a, 'b: 'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        decisions: Decisions,
        jobs: &'a mut [&'b mut Job],
        posted: Vec<Vec<Posted>>,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let changed: Vec<Purchase> = decisions
            .changed
            .iter()
            .filter_map(|s| decisions.purchases.get(s).cloned())
            .collect();
        store::update(txn, &changed, now).await?;
        let mut rows = Vec::new();
        let mut refunds = Vec::new();
        let mut disputes = Vec::new();
        for (intent, payment) in &decisions.payments {
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
        decisions.subscriptions.save(txn, now).await?;

        let recorded = |session: &str| {
            decisions.purchases.get(session).cloned().ok_or_else(|| {
                LedgerError::Unexpected(anyhow::anyhow!(
                    "purchase for session {session} was neither inserted nor found"
                ))
            })
        };
        let mut finished = Vec::new();
        for (job, posted) in jobs.iter_mut().zip(posted) {
            match &mut **job {
                Job::Open { purchase, answer } => answer.set(recorded(&purchase.session_id)?),
                Job::Import {
                    purchase,
                    inserted,
                    answer,
                } => answer.set(ImportedPurchase {
                    recorded: recorded(&purchase.session_id)?,
                    inserted: *inserted,
                }),
                Job::Event { decided, answer, .. } => {
                    let report = finish_event(decided.take(), &posted, &mut finished)?;
                    answer.set(report);
                }
                Job::Failed { decided, answer, .. } => {
                    finish_event(decided.take(), &posted, &mut finished)?;
                    answer.set(());
                }
            }
        }
        event_store::store::finish(txn, &finished, now).await?;
        Ok(())
    }

    /// An event that failed on its own is stored as `failed` with its error (its claim was
    /// rolled back with it), so operators see it and Stripe's redelivery claims it again. A
    /// reconciliation's session has no stored event: its run reports it and the next one retries.
    async fn failed<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        job: &'a Job,
        error: &'a LedgerError,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let Job::Event { event, delivery, .. } = job else {
            return Ok(());
        };
        if *delivery == Delivery::Reconcile {
            return Ok(());
        }
        record_failed(txn, event, *delivery, &crate::report::error_chain(error), now).await
    }
}

/// Claims `event` (unless another delivery owns it) and stores it as failed with `error`.
pub(super) async fn record_failed(
    txn: &DatabaseTransaction,
    event: &StripeEvent,
    delivery: Delivery,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let new = [event_store::store::NewEvent {
        id: &event.id,
        event_type: &event.event_type,
        checkout_session_id: event.action.facts().map(|f| f.session_id.as_str()),
        payload: &event.payload,
    }];
    if event_store::store::claim(txn, delivery, &new, now)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let failed = [event_store::store::Finished {
        id: event.id.clone(),
        outcome: EventOutcome::Failed,
        error: Some(error.to_owned()),
    }];
    event_store::store::finish(txn, &failed, now).await?;
    Ok(())
}

/// An event job's report, with what its postings moved; queues the event's outcome.
fn finish_event(
    decided: Option<Decided>,
    posted: &[Posted],
    finished: &mut Vec<event_store::store::Finished>,
) -> Result<FulfilmentReport, LedgerError> {
    let Decided { mut report, finish } =
        decided.ok_or_else(|| LedgerError::Unexpected(anyhow::anyhow!("an event job was never decided")))?;
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
        finished.push(event_store::store::Finished {
            id,
            outcome: report.outcome,
            error: report.detail.clone(),
        });
    }
    Ok(report)
}

/// Claims the batch's events; returns the positions of the jobs that own theirs. The first of
/// two jobs with one id in a batch claims it; the second is a duplicate.
async fn claim(
    txn: &DatabaseTransaction,
    jobs: &[&mut Job],
    now: DateTime<Utc>,
) -> Result<HashSet<usize>, LedgerError> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut by_delivery: HashMap<Delivery, Vec<event_store::store::NewEvent<'_>>> = HashMap::new();
    for (n, job) in jobs.iter().enumerate() {
        let (event, delivery) = match &**job {
            Job::Event { event, delivery, .. } => (event, *delivery),
            Job::Failed { event, .. } => (event, Delivery::Webhook),
            Job::Open { .. } | Job::Import { .. } => continue,
        };
        if delivery == Delivery::Reconcile || first.contains_key(event.id.as_str()) {
            continue;
        }
        first.insert(&event.id, n);
        by_delivery
            .entry(delivery)
            .or_default()
            .push(event_store::store::NewEvent {
                id: &event.id,
                event_type: &event.event_type,
                checkout_session_id: event.action.facts().map(|f| f.session_id.as_str()),
                payload: &event.payload,
            });
    }
    let mut claimed = HashSet::new();
    for (delivery, new) in by_delivery {
        for id in event_store::store::claim(txn, delivery, &new, now).await? {
            claimed.extend(first.get(id.as_str()).copied());
        }
    }
    Ok(claimed)
}

/// The payment intents and Checkout Sessions a batch's jobs must lock.
fn lock_keys<'a>(jobs: &'a [&'a mut Job]) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut intents, mut sessions) = (Vec::new(), Vec::new());
    for job in jobs {
        match &**job {
            Job::Event { event, .. } => {
                match &event.action {
                    EventAction::Refund {
                        payment_intent_id, ..
                    }
                    | EventAction::Dispute {
                        payment_intent_id, ..
                    } => intents.push(payment_intent_id.as_str()),
                    EventAction::Credit(f) => intents.extend(f.payment_intent_id.as_deref()),
                    EventAction::InvoicePaid(f) => intents.extend(f.payment_intent_id.as_deref()),
                    _ => {}
                }
                sessions.extend(event.action.facts().map(|f| f.session_id.as_str()));
            }
            Job::Open { purchase, .. } => sessions.push(purchase.session_id.as_str()),
            Job::Import { purchase, .. } => {
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
