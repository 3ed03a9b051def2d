//! `faults top-up-kill`: `kill -9` while auto top-ups' PaymentIntents are being created.
//!
//! Every account keeps a card (PurchaseCredits with `save_payment_method`, then the signed
//! `checkout.session.completed` naming the Customer) and turns auto top-up on just below its
//! balance. One driver per account debits it across the threshold whenever it is back at or
//! above it (and now and then by 1 below it), so attempts start all the time; the fake Stripe
//! (`stripe::Fake`) creates each PaymentIntent at once but answers only after a delay, and then
//! delivers `payment_intent.succeeded` until acknowledged (sometimes twice at once). `--runs`
//! times, the service is killed while creations are held back, then restarted.
//!
//! Afterwards every debit key is replayed, the service is left to finish every attempt, every
//! PaymentIntent's event is delivered again (and a copy under another event id), and then:
//! one PaymentIntent per Idempotency-Key and per attempt, with the attempt as the key; never a
//! new account's PaymentIntent created before the previous one's event was even sent (two in
//! flight); at most one attempt in flight per account whenever the database was sampled; every
//! PaymentIntent credited exactly once (the attempt as the ledger reference, `succeeded` with that
//! PaymentIntent); nothing left `pending`, `charging`, `unknown` or `awaiting_payment`; and each
//! balance equal to its ledger and to its start minus every debit plus a pack per PaymentIntent.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use credits::grpc::pb;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;

use super::{
    FaultArgs,
    check::{self, Tally},
    moments::Moments,
    rig::{Rig, SECRET, store},
    service::PRICE,
    stripe::{Fake, Timing},
};
use crate::webhook::{Events, sign};

/// How long Stripe holds back each PaymentIntent's answer: the window the kills aim at.
const INTENT_DELAY: Duration = Duration::from_millis(600);
/// How the fake Stripe answers: every fifth creation after 4 s, past the service's Stripe
/// timeout (`STRIPE_TIMEOUT`), so the outcome is unknown to it; a second later (the unknown
/// delay) search does not show it yet (it lags 3 s), so the worker asks again under the same
/// key while the first request is still being answered (409), and finds it by search the next
/// time, well before it would give up on it (two unknown delays). Every other event comes late,
/// after a restarted worker has taken its lease (5 s) and resumed the attempts left `charging`
/// under their keys.
const TIMING: Timing = Timing {
    answer: INTENT_DELAY,
    slow_answer: Duration::from_secs(4),
    slow_every: 5,
    delivery_lag: Duration::from_millis(100),
    late_lag: Duration::from_secs(8),
    search_lag: Duration::from_secs(3),
};
const STRIPE_TIMEOUT: &str = "1500";
/// Auto top-up starts this far below each account's balance after the card purchase.
const BELOW_START: i64 = 10;
/// The states of an attempt in flight.
const IN_FLIGHT: &str = "('pending', 'charging', 'unknown', 'awaiting_payment')";

/// One ConsumeCredits.
#[derive(Debug, Clone)]
struct Debit {
    account: usize,
    key: String,
    credits: i64,
    acked: bool,
}

/// Runs the scenario: kills, and the tally.
pub(super) async fn run(args: &FaultArgs, moments: &mut Moments) -> anyhow::Result<(u32, Tally)> {
    let fake = Fake::start(TIMING).await?;
    let extra = vec![
        ("STRIPE_SECRET_KEY", "sk_test_faults".to_owned()),
        ("STRIPE_API_BASE", format!("http://{}", fake.addr)),
        ("STRIPE_TIMEOUT_MS", STRIPE_TIMEOUT.to_owned()),
        ("TOP_UP_INTERVAL_MS", "50".to_owned()),
        ("TOP_UP_UNKNOWN_DELAY", "1s".to_owned()),
        ("TOP_UP_RETRY_DELAY", "1s".to_owned()),
    ];
    let (rig, mut services) = Rig::new(args, 1, store(args.database), &extra).await?;
    let target = rig.traffic.targets[0].clone();
    fake.deliver_to(rig.http.clone(), target.webhook_url.clone(), SECRET);
    let accounts = rig.traffic.accounts.clone();
    let run = rig.traffic.run.clone();

    // A kept card and auto top-up for every account.
    let mut client = target.client();
    let mut start = Vec::with_capacity(accounts.len());
    let mut thresholds = Vec::with_capacity(accounts.len());
    let pack = target.sold_pack().await?;
    for (n, account) in accounts.iter().enumerate() {
        let session = client
            .purchase_credits(target.request(pb::PurchaseCreditsRequest {
                account_id: account.clone(),
                email: format!("{account}@faults.example"),
                price_id: PRICE.into(),
                idempotency_key: format!("topup-{run}-card{n}"),
                save_payment_method: true,
                ..Default::default()
            }))
            .await?
            .into_inner()
            .checkout_session_id;
        let customer = fake
            .customer_of(account)
            .ok_or_else(|| anyhow::anyhow!("no Stripe Customer was created for {account}"))?;
        let events = Events::new(SECRET, &pack.stripe_price_id, pack.unit_amount)?.keeping_card(&customer)?;
        let (body, _) = events.signed(&format!("{run}card"), n as u64, account);
        let body = body.replace(&format!("cs_bench_{run}card_{n}"), &session);
        let signature = sign(&body, SECRET, chrono::Utc::now().timestamp());
        let status = rig
            .http
            .post(&target.webhook_url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await?
            .status();
        anyhow::ensure!(
            status == 200,
            "keeping a card for {account}: the webhook answered {status}"
        );
        let snap = check::snapshot(&rig.traffic, 0, account).await?;
        let threshold = snap.balance - BELOW_START;
        client
            .update_account_settings(target.request(pb::UpdateAccountSettingsRequest {
                account: Some(pb::update_account_settings_request::Account::AccountId(
                    account.clone(),
                )),
                auto_top_up: Some(pb::AutoTopUp {
                    enabled: true,
                    threshold,
                    pack_id: pack.id.clone(),
                    monthly_limit: 1_000_000_000_000,
                    paused_reason: String::new(),
                }),
                ..Default::default()
            }))
            .await
            .map_err(|status| anyhow::anyhow!("auto top-up for {account}: {status}"))?;
        start.push(snap.balance);
        thresholds.push(threshold);
    }
    let started = Instant::now();

    let db = sea_orm::Database::connect(&rig.launches[0].database_url).await?;
    let stop = CancellationToken::new();
    let mut drivers = tokio::task::JoinSet::new();
    for (account, &threshold) in thresholds.iter().enumerate() {
        let (target, accounts, stop, run) = (target.clone(), accounts.clone(), stop.clone(), run.clone());
        let seed = moments
            .between(Duration::ZERO, Duration::from_secs(1_000_000))
            .as_millis() as u64;
        drivers.spawn(async move { drive(target, accounts, account, threshold, seed, run, stop).await });
    }
    let sampler = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move { sample(&db, stop).await })
    };

    let mut tally = Tally::default();
    let (mut kills_in_flight, mut held_at_kills) = (0_u32, 0_usize);
    for n in 0..args.runs {
        tokio::time::sleep(moments.between(Duration::from_millis(300), args.load())).await;
        // Aim at a creation being held back: Stripe has the PaymentIntent, the service not yet.
        let waiting = Instant::now();
        let mut held = 0;
        while held == 0 && waiting.elapsed() < Duration::from_secs(30) {
            while fake.in_flight() == 0 && waiting.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(moments.between(Duration::ZERO, INTENT_DELAY / 2)).await;
            held = fake.in_flight();
        }
        if held > 0 {
            kills_in_flight += 1;
            held_at_kills += held;
        } else {
            eprintln!("kill {n}: no PaymentIntent creation was in flight");
        }
        services.remove(0).kill().await?;
        services.insert(0, rig.launches[0].start(&rig.http).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut debits = Vec::new();
    while let Some(done) = drivers.join_next().await {
        debits.extend(done?);
    }
    let (samples, overlaps) = sampler.await?;
    for overlap in overlaps {
        tally.violation(overlap);
    }

    // Every debit key again: an unacknowledged debit is applied now, an acknowledged one is a
    // replay.
    for debit in &debits {
        tally.debits_acked += u64::from(debit.acked);
        let (ok, replayed) = consume(&target, &accounts[debit.account], &debit.key, debit.credits).await;
        if !ok {
            tally.violation(format!("replay of debit {} was refused", debit.key));
        } else if debit.acked && !replayed {
            tally.doubled += 1;
            tally.violation(format!("acknowledged debit {} was applied again", debit.key));
        }
    }

    // Every attempt finished and every PaymentIntent's event acknowledged.
    let quiet = Instant::now();
    let mut left = in_flight(&db).await?;
    while (!left.is_empty() || fake.undelivered() > 0 || fake.in_flight() > 0)
        && quiet.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = in_flight(&db).await?;
    }
    for (id, state) in &left {
        tally.violation(format!("attempt {id} left {state} for 2 minutes after the load"));
    }
    if fake.undelivered() > 0 {
        tally.violation(format!(
            "{} PaymentIntent events never acknowledged",
            fake.undelivered()
        ));
    }
    for refused in fake.redeliver_all().await {
        tally.violation(refused);
    }

    let intents = fake.intents();
    let counts = fake.counts();
    for mismatch in &counts.mismatches {
        tally.violation(mismatch.clone());
    }
    for (key, count) in &counts.creations {
        if *count != 1 {
            tally.doubled += u64::from(count.saturating_sub(1));
            tally.violation(format!("{count} PaymentIntents for key {key}"));
        }
    }
    let mut per_attempt: HashMap<&str, u32> = HashMap::new();
    for intent in &intents {
        *per_attempt.entry(intent.attempt.as_str()).or_insert(0) += 1;
        if intent.key != intent.attempt {
            tally.violation(format!(
                "{} created under key {}, for attempt {}",
                intent.id, intent.key, intent.attempt
            ));
        }
        tally.events_acked += u64::from(intent.acknowledged);
    }
    for (attempt, count) in &per_attempt {
        if *count > 1 {
            tally.doubled += u64::from(count - 1);
            tally.violation(format!("{count} PaymentIntents for attempt {attempt}"));
        }
    }
    // Two in flight: a PaymentIntent for an account before its previous one's event was sent.
    let mut by_account: BTreeMap<&str, Vec<&super::stripe::Created>> = BTreeMap::new();
    for intent in &intents {
        by_account
            .entry(intent.account.as_str())
            .or_default()
            .push(intent);
    }
    for (account, list) in &by_account {
        for pair in list.windows(2) {
            if pair[0].first_delivery.is_none_or(|sent| pair[1].created < sent) {
                tally.violation(format!(
                    "{account}: {} created while {} was still unpaid (two attempts in flight)",
                    pair[1].id, pair[0].id
                ));
            }
        }
    }

    // The service's side: each PaymentIntent's attempt succeeded with it, credited once.
    let attempts = attempt_rows(&db).await?;
    let mut states: BTreeMap<String, u32> = BTreeMap::new();
    for row in attempts.values() {
        *states.entry(row.state.clone()).or_insert(0) += 1;
    }
    let mut expected = start.clone();
    for debit in &debits {
        expected[debit.account] -= debit.credits;
    }
    let index: HashMap<&str, usize> = accounts
        .iter()
        .enumerate()
        .map(|(n, a)| (a.as_str(), n))
        .collect();
    let mut wanted: Vec<Vec<&str>> = vec![Vec::new(); accounts.len()];
    for intent in &intents {
        let Some(&n) = index.get(intent.account.as_str()) else {
            tally.violation(format!(
                "{} names an unknown account {}",
                intent.id, intent.account
            ));
            continue;
        };
        expected[n] += pack.credits;
        wanted[n].push(intent.attempt.as_str());
        match attempts.get(&intent.attempt) {
            Some(row) if row.state == "succeeded" && row.payment_intent.as_deref() == Some(&intent.id) => {}
            Some(row) => tally.violation(format!(
                "attempt {} is {} with {:?}, but Stripe charged {}",
                intent.attempt, row.state, row.payment_intent, intent.id
            )),
            None => tally.violation(format!(
                "{} charged for an unknown attempt {}",
                intent.id, intent.attempt
            )),
        }
    }
    for row in attempts.values() {
        if row.state == "succeeded" && !intents.iter().any(|i| i.attempt == row.id) {
            tally.violation(format!("attempt {} succeeded without a PaymentIntent", row.id));
        }
    }
    for (n, account) in accounts.iter().enumerate() {
        let snap = check::snapshot(&rig.traffic, 0, account).await?;
        if snap.balance != expected[n] || snap.ledger_sum != expected[n] || snap.held != 0 {
            tally.violation(format!(
                "{account}: balance {}, ledger {}, held {}; expected {}",
                snap.balance, snap.ledger_sum, snap.held, expected[n]
            ));
        }
        for attempt in &wanted[n] {
            match snap.references.get(*attempt).copied().unwrap_or(0) {
                1 => {}
                0 => {
                    tally.lost += 1;
                    tally.violation(format!("{account}: top-up {attempt} never credited"));
                }
                count => {
                    tally.doubled += u64::from(count - 1);
                    tally.violation(format!("{account}: top-up {attempt} credited {count} times"));
                }
            }
        }
    }
    db.close().await?;

    let resumed = counts.requests.values().filter(|r| **r > 1).count();
    let deliveries: u32 = intents.iter().map(|i| i.deliveries).sum();
    let states = states
        .iter()
        .map(|(s, c)| format!("{s}:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "top-up intents={} keys_asked_again={resumed} conflicts={} searches={} kills_with_creation_in_flight={kills_in_flight}/{} creations_held_at_kills={held_at_kills} attempts={} states={states} deliveries={deliveries} debits={} samples={samples} load_seconds={:.1}",
        intents.len(),
        counts.conflicts,
        counts.searches,
        args.runs,
        attempts.len(),
        debits.len(),
        started.elapsed().as_secs_f64(),
    );
    for service in services {
        service.terminate()?;
        if let Some(code) = service.wait(Duration::from_secs(30)).await?.filter(|c| *c != 0) {
            tally.violation(format!("exit code {code} at the end"));
        }
    }
    rig.finish(!tally.violations.is_empty()).await;
    Ok((args.runs, tally))
}

/// ConsumeCredits: whether it was acknowledged, whether it was a replay, and the available
/// credits after it.
async fn consume(target: &crate::scenarios::Target, account: &str, key: &str, credits: i64) -> (bool, bool) {
    let (ok, replayed, _) = consume_with_balance(target, account, key, credits).await;
    (ok, replayed)
}

async fn consume_with_balance(
    target: &crate::scenarios::Target,
    account: &str,
    key: &str,
    credits: i64,
) -> (bool, bool, Option<i64>) {
    let mut request = target.request(pb::ConsumeCreditsRequest {
        account: Some(pb::consume_credits_request::Account::AccountId(
            account.to_owned(),
        )),
        credits,
        idempotency_key: key.to_owned(),
        reason: "fault-top-up".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(20));
    match target.client().consume_credits(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            (true, reply.replayed, Some(reply.available_balance))
        }
        Err(_) => (false, false, None),
    }
}

/// One account's debits until `stop`: across the threshold whenever the account is at or above
/// it, and now and then 1 credit below it.
async fn drive(
    target: crate::scenarios::Target,
    accounts: Arc<Vec<String>>,
    account: usize,
    threshold: i64,
    seed: u64,
    run: String,
    stop: CancellationToken,
) -> Vec<Debit> {
    let mut random = Moments(seed.max(1));
    let mut debits = Vec::new();
    let id = &accounts[account];
    let mut k = 0_u64;
    while !stop.is_cancelled() {
        let mut request = target.request(pb::GetBalanceRequest {
            account: Some(pb::get_balance_request::Account::AccountId(id.clone())),
            as_of: None,
        });
        request.set_timeout(Duration::from_secs(5));
        let Ok(balance) = target.client().get_balance(request).await else {
            // Down: do not spin while it restarts.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let available = balance.into_inner().available_balance;
        let roll = random
            .between(Duration::ZERO, Duration::from_millis(100))
            .as_millis() as i64;
        let credits = if available >= threshold {
            available - threshold + 1 + roll % 30
        } else if roll < 25 {
            1
        } else {
            0
        };
        if credits > 0 {
            k += 1;
            let key = format!("topup-{run}-a{account}-{k}");
            let (acked, _, _) = consume_with_balance(&target, id, &key, credits).await;
            debits.push(Debit {
                account,
                key,
                credits,
                acked,
            });
        }
        tokio::time::sleep(Duration::from_millis(20 + (roll % 20) as u64)).await;
    }
    debits
}

/// Samples the attempts every 100 ms until `stop`: how many samples, and every moment an
/// account had more than one attempt in flight.
async fn sample(db: &DatabaseConnection, stop: CancellationToken) -> (u64, Vec<String>) {
    let (mut samples, mut overlaps) = (0, Vec::new());
    let sql = format!(
        "SELECT account_id, COUNT(*) AS n FROM top_up_attempts WHERE state IN {IN_FLIGHT} \
         GROUP BY account_id HAVING COUNT(*) > 1"
    );
    while !stop.is_cancelled() {
        if let Ok(rows) = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql.clone()))
            .await
        {
            samples += 1;
            for row in rows {
                let account: String = row.try_get("", "account_id").unwrap_or_default();
                overlaps.push(format!("{account} had more than one attempt in flight"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (samples, overlaps)
}

/// An attempt as stored.
struct AttemptRow {
    id: String,
    state: String,
    payment_intent: Option<String>,
}

async fn attempt_rows(db: &DatabaseConnection) -> anyhow::Result<HashMap<String, AttemptRow>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, state, payment_intent_id FROM top_up_attempts".to_owned(),
        ))
        .await?;
    let mut all = HashMap::new();
    for row in rows {
        let id: String = row.try_get("", "id")?;
        let attempt = AttemptRow {
            id: id.clone(),
            state: row.try_get("", "state")?,
            payment_intent: row.try_get("", "payment_intent_id")?,
        };
        all.insert(id, attempt);
    }
    Ok(all)
}

/// Attempts in flight now: (id, state).
async fn in_flight(db: &DatabaseConnection) -> anyhow::Result<Vec<(String, String)>> {
    Ok(attempt_rows(db)
        .await?
        .into_values()
        .filter(|row| {
            matches!(
                row.state.as_str(),
                "pending" | "charging" | "unknown" | "awaiting_payment"
            )
        })
        .map(|row| (row.id, row.state))
        .collect())
}
