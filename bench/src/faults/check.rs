//! The invariants, checked through gRPC after a fault: every account's balance equals its
//! ledger's sum; everything acknowledged is there once (nothing lost, nothing doubled); then,
//! after every event is redelivered and every key replayed, each account holds exactly its
//! start plus the credits of every event minus every debit, each applied once.

use std::collections::{HashMap, HashSet};

use credits::grpc::pb;

use super::traffic::{Answer, CAPTURE_CREDITS, CONSUME_CREDITS, Op, Record, Traffic};

/// What a run acknowledged and what went wrong.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub events_acked: u64,
    pub debits_acked: u64,
    pub lost: u64,
    pub doubled: u64,
    pub violations: Vec<String>,
}

impl Tally {
    pub(super) fn violation(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(what);
        } else if self.violations.len() == 50 {
            self.violations.push("… (more)".into());
        }
    }

    pub(super) fn add(&mut self, other: Tally) {
        self.events_acked += other.events_acked;
        self.debits_acked += other.debits_acked;
        self.lost += other.lost;
        self.doubled += other.doubled;
        for v in other.violations {
            self.violation(v);
        }
    }
}

/// An account as the service shows it.
pub(super) struct Snapshot {
    pub balance: i64,
    pub held: i64,
    pub ledger_sum: i64,
    /// How often each ledger reference occurs.
    pub references: HashMap<String, u32>,
}

/// The account's balance and every ledger entry, every page.
pub(super) async fn snapshot(traffic: &Traffic, replica: usize, account: &str) -> anyhow::Result<Snapshot> {
    let target = &traffic.targets[replica];
    let mut client = target.client();
    let balance = client
        .get_balance(target.request(pb::GetBalanceRequest {
            account: Some(pb::get_balance_request::Account::AccountId(account.to_owned())),
            as_of: None,
        }))
        .await?
        .into_inner();
    let (mut ledger_sum, mut references, mut token) = (0, HashMap::new(), String::new());
    loop {
        let page = client
            .list_ledger_entries(target.request(pb::ListLedgerEntriesRequest {
                account: Some(pb::list_ledger_entries_request::Account::AccountId(
                    account.to_owned(),
                )),
                page_size: 500,
                page_token: token,
            }))
            .await?
            .into_inner();
        for entry in &page.entries {
            ledger_sum += entry.delta;
            *references.entry(entry.reference.clone()).or_insert(0) += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(Snapshot {
        balance: balance.credit_balance,
        held: balance.held_credits,
        ledger_sum,
        references,
    })
}

/// Every account's snapshot.
pub(super) async fn snapshots(traffic: &Traffic, replica: usize) -> anyhow::Result<Vec<Snapshot>> {
    let mut all = Vec::with_capacity(traffic.accounts.len());
    for account in traffic.accounts.iter() {
        all.push(snapshot(traffic, replica, account).await?);
    }
    Ok(all)
}

/// The ledger reference each record's debit or credit is booked under.
fn reference(traffic: &Traffic, op: &Op) -> Option<String> {
    match op {
        Op::Event { n } => Some(format!("cs_bench_{}_{n}", traffic.run)),
        Op::Consume { n } => Some(traffic.consume_key(*n)),
        Op::Hold { hold_id, .. } => hold_id.as_ref().map(|id| format!("hold:{id}")),
        Op::Purchase { .. } => None,
    }
}

/// After the fault, before any redelivery: balances equal ledger sums, and every acknowledged
/// call is booked once.
pub(super) fn acknowledged_are_there(
    traffic: &Traffic,
    records: &[Record],
    accounts: &[Snapshot],
    tally: &mut Tally,
) {
    for (n, snap) in accounts.iter().enumerate() {
        if snap.balance != snap.ledger_sum {
            tally.violation(format!(
                "{}: balance {} but ledger sums to {} (half-written)",
                traffic.accounts[n], snap.balance, snap.ledger_sum
            ));
        }
        for (reference, count) in &snap.references {
            // Counted as doubled by `exact`, which sees it again.
            if *count > 1 {
                tally.violation(format!(
                    "{}: {reference} booked {count} times",
                    traffic.accounts[n]
                ));
            }
        }
    }
    for record in records {
        let acked = match &record.op {
            Op::Event { .. } => {
                let acked = record.answer.acknowledged();
                tally.events_acked += u64::from(acked);
                acked
            }
            Op::Consume { .. } => {
                let acked = record.answer.acknowledged();
                tally.debits_acked += u64::from(acked);
                acked
            }
            Op::Hold { capture, .. } => {
                let acked = capture.as_ref().is_some_and(Answer::acknowledged);
                tally.debits_acked += u64::from(acked);
                acked
            }
            Op::Purchase { .. } => false,
        };
        if let Some(reference) = reference(traffic, &record.op).filter(|_| acked)
            && !accounts[record.account].references.contains_key(&reference)
        {
            tally.lost += 1;
            tally.violation(format!("acknowledged {:?} missing from the ledger", record.op));
        }
    }
}

/// Redelivers every event and replays every key through `replica`, `concurrency` at a time;
/// an acknowledged call must replay as a replay.
pub(super) async fn redeliver(
    traffic: &Traffic,
    records: &[Record],
    replica: usize,
    concurrency: usize,
) -> Tally {
    let mut tally = Tally::default();
    for chunk in records.chunks(concurrency.max(1)) {
        let mut calls = tokio::task::JoinSet::new();
        for record in chunk {
            let (traffic, record) = (traffic.clone(), record.clone());
            calls.spawn(async move { replay_one(&traffic, replica, &record).await });
        }
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok(Some(problem)) => tally.violation(problem),
                Ok(None) => {}
                Err(err) => tally.violation(format!("replay task failed: {err}")),
            }
        }
    }
    tally
}

async fn replay_one(traffic: &Traffic, replica: usize, record: &Record) -> Option<String> {
    let account = record.account;
    match &record.op {
        Op::Event { n } => {
            let answer = traffic.deliver(replica, *n, account).await;
            (!answer.acknowledged()).then(|| format!("redelivery of event {n} answered {answer:?}"))
        }
        Op::Consume { n } => {
            let (answer, replayed) = traffic.consume(replica, *n, account).await;
            if !answer.acknowledged() {
                Some(format!("replay of consume {n} answered {answer:?}"))
            } else if record.answer.acknowledged() && !replayed {
                Some(format!("acknowledged consume {n} was applied again on replay"))
            } else {
                None
            }
        }
        Op::Hold { n, hold_id, capture } => {
            let (answer, again) = traffic.reserve(replica, *n, account).await;
            let Some(again) = again.filter(|_| answer.acknowledged()) else {
                return Some(format!("replay of reserve {n} answered {answer:?}"));
            };
            if hold_id.as_ref().is_some_and(|h| *h != again) {
                return Some(format!("reserve {n} replayed as another hold"));
            }
            let (answer, replayed) = traffic.capture(replica, &again).await;
            if !answer.acknowledged() {
                Some(format!("capture of hold {again} answered {answer:?}"))
            } else if capture.as_ref().is_some_and(Answer::acknowledged) && !replayed {
                Some(format!("acknowledged capture of {again} was applied again"))
            } else {
                None
            }
        }
        // A Checkout Session moves no credits; its key replays it.
        Op::Purchase { n } => {
            let answer = traffic.purchase(replica, *n, account).await;
            (!answer.acknowledged()).then(|| format!("replay of purchase {n} answered {answer:?}"))
        }
    }
}

/// After redelivery: each account holds its start plus every event's credits minus every
/// debit, its ledger sums to that, nothing stays held, and every reference is there once.
pub(super) async fn exact(
    traffic: &Traffic,
    records: &[Record],
    start: &[i64],
    pack_credits: i64,
    replica: usize,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut expected: Vec<i64> = start.to_vec();
    let mut wanted: Vec<HashSet<String>> = vec![HashSet::new(); traffic.accounts.len()];
    for record in records {
        expected[record.account] += match &record.op {
            Op::Event { .. } => pack_credits,
            Op::Consume { .. } => -CONSUME_CREDITS,
            Op::Hold { .. } => -CAPTURE_CREDITS,
            Op::Purchase { .. } => 0,
        };
        if let Some(reference) = reference(traffic, &record.op) {
            wanted[record.account].insert(reference);
        }
    }
    for (n, account) in traffic.accounts.iter().enumerate() {
        let snap = snapshot(traffic, replica, account).await?;
        if snap.balance != expected[n] || snap.ledger_sum != expected[n] || snap.held != 0 {
            tally.violation(format!(
                "{account}: balance {}, ledger {}, held {}; expected {}",
                snap.balance, snap.ledger_sum, snap.held, expected[n]
            ));
        }
        for reference in &wanted[n] {
            match snap.references.get(reference).copied().unwrap_or(0) {
                1 => {}
                0 => {
                    tally.lost += 1;
                    tally.violation(format!("{account}: {reference} missing after redelivery"));
                }
                count => {
                    tally.doubled += u64::from(count - 1);
                    tally.violation(format!("{account}: {reference} booked {count} times"));
                }
            }
        }
    }
    Ok(tally)
}
