//! The scenarios, each against a running service: webhook events, duplicate deliveries,
//! GetBalance, ConsumeCredits and reserve-then-capture. Each checks what it did through gRPC
//! afterwards: balances equal what was acknowledged, and ledger sums equal balances.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use serde_json::{Value, json};
use tonic::{Request, transport::Channel};

use crate::{load, webhook::Events};

/// How to reach the service and how hard to push it.
#[derive(Clone)]
pub(crate) struct Target {
    pub grpc: Channel,
    pub http: reqwest::Client,
    pub webhook_url: String,
    pub secret: String,
    pub token: Option<String>,
    pub concurrency: usize,
    pub duration: Duration,
    pub accounts: usize,
    /// Keeps the ids of this run (and scenario) apart from others on the same database.
    pub run: String,
    /// The first error a call met, for the result line.
    pub first_error: Arc<std::sync::OnceLock<String>>,
    /// Create accounts with SQL in this database instead of EnsureAccount (for a service that
    /// has no EnsureAccount, to compare builds with the same command).
    pub seed_database: Option<String>,
}

/// One scenario's result line.
pub(crate) struct Outcome {
    pub scenario: &'static str,
    pub measured: load::Measured,
    pub exact: bool,
    pub notes: Value,
}

impl Target {
    /// The same target for one scenario: its own accounts and keys.
    pub(crate) fn for_scenario(&self, tag: &str) -> Self {
        Self {
            run: format!("{}{tag}", self.run),
            first_error: Arc::default(),
            ..self.clone()
        }
    }

    /// Keeps the first error's text.
    pub(crate) fn failed(&self, err: impl std::fmt::Display) -> bool {
        let _ = self.first_error.set(err.to_string());
        false
    }

    pub(crate) fn client(&self) -> CreditsServiceClient<Channel> {
        CreditsServiceClient::new(self.grpc.clone())
    }

    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub(crate) fn account(&self, n: usize) -> String {
        format!("bench-{}-{n}", self.run)
    }

    /// Creates the run's accounts.
    pub(crate) async fn ensure_accounts(&self) -> anyhow::Result<Vec<String>> {
        if let Some(url) = &self.seed_database {
            let ids: Vec<String> = (0..self.accounts).map(|n| self.account(n)).collect();
            let conn = sea_orm::Database::connect(url).await?;
            let now = chrono::Utc::now().to_rfc3339();
            let rows: Vec<String> = ids
                .iter()
                .map(|id| format!("('{id}', '{id}@bench.example', 0, true, '{now}', '{now}')"))
                .collect();
            sea_orm::ConnectionTrait::execute_unprepared(
                &conn,
                &format!(
                    "INSERT INTO accounts (id, email, credit_balance, is_trial_user, created_at, updated_at) \
                     VALUES {} ON CONFLICT DO NOTHING",
                    rows.join(", ")
                ),
            )
            .await?;
            return Ok(ids);
        }
        let mut client = self.client();
        let mut ids = Vec::with_capacity(self.accounts);
        for n in 0..self.accounts {
            let id = self.account(n);
            client
                .ensure_account(self.request(pb::EnsureAccountRequest {
                    account_id: id.clone(),
                    email: format!("{id}@bench.example"),
                }))
                .await?;
            ids.push(id);
        }
        Ok(ids)
    }

    async fn balance(&self, account: &str) -> anyhow::Result<i64> {
        Ok(self
            .client()
            .get_balance(self.request(pb::GetBalanceRequest {
                account: Some(pb::get_balance_request::Account::AccountId(account.to_owned())),
                as_of: None,
            }))
            .await?
            .into_inner()
            .credit_balance)
    }

    /// The sum of the account's ledger entries, every page (None when the service cannot list).
    async fn ledger_sum(&self, account: &str) -> anyhow::Result<Option<i64>> {
        let mut client = self.client();
        let (mut sum, mut token) = (0, String::new());
        loop {
            let request = self.request(pb::ListLedgerEntriesRequest {
                account: Some(pb::list_ledger_entries_request::Account::AccountId(
                    account.to_owned(),
                )),
                page_size: 500,
                page_token: token,
            });
            let page = match client.list_ledger_entries(request).await {
                Ok(page) => page.into_inner(),
                // An older build without ListLedgerEntries: only balances can be checked.
                Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
                Err(status) => return Err(status.into()),
            };
            sum += page.entries.iter().map(|e| e.delta).sum::<i64>();
            if page.next_page_token.is_empty() {
                return Ok(Some(sum));
            }
            token = page.next_page_token;
        }
    }

    /// Every account holds `expected` and its ledger sums to it.
    async fn check(&self, expected: &HashMap<String, i64>) -> anyhow::Result<(bool, Vec<String>)> {
        let mut wrong = Vec::new();
        for (account, want) in expected {
            let balance = self.balance(account).await?;
            let sum = self.ledger_sum(account).await?;
            if balance != *want || sum.is_some_and(|sum| sum != balance) {
                wrong.push(format!(
                    "{account}: balance {balance}, ledger {sum:?}, expected {want}"
                ));
            }
        }
        Ok((wrong.is_empty(), wrong))
    }

    /// A pack with a Stripe price: what the events buy.
    pub(crate) async fn sold_pack(&self) -> anyhow::Result<pb::CreditPack> {
        self.client()
            .list_credit_packs(self.request(pb::ListCreditPacksRequest {}))
            .await?
            .into_inner()
            .packs
            .into_iter()
            .find(|p| !p.stripe_price_id.is_empty())
            .ok_or_else(|| anyhow::anyhow!("no pack has a stripe_price_id: give one in packs.toml"))
    }
}

async fn post(target: &Target, body: String, signature: String) -> u16 {
    target
        .http
        .post(&target.webhook_url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Distinct signed checkout events for the accounts, as fast as the workers can post them.
pub(crate) async fn webhook(target: &Target) -> anyhow::Result<Outcome> {
    let pack = target.sold_pack().await?;
    let accounts = Arc::new(target.ensure_accounts().await?);
    let events = Arc::new(Events::new(
        &target.secret,
        &pack.stripe_price_id,
        pack.unit_amount,
    )?);
    let credited: Arc<Vec<AtomicU64>> = Arc::new((0..accounts.len()).map(|_| AtomicU64::new(0)).collect());
    let measured = {
        let (target, accounts, credited) = (target.clone(), accounts.clone(), credited.clone());
        let run = format!("{}w", target.run);
        load::run(target.concurrency, target.duration, None, move |_, n| {
            let (target, accounts, credited, events, run) = (
                target.clone(),
                accounts.clone(),
                credited.clone(),
                events.clone(),
                run.clone(),
            );
            async move {
                let which = (n as usize) % accounts.len();
                let (body, signature) = events.signed(&run, n, &accounts[which]);
                let ok = post(&target, body, signature).await == 200;
                if ok {
                    credited[which].fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await
    };
    let expected = accounts
        .iter()
        .zip(credited.iter())
        .map(|(a, n)| (a.clone(), n.load(Ordering::Relaxed) as i64 * pack.credits))
        .collect();
    let (exact, wrong) = target.check(&expected).await?;
    Ok(Outcome {
        scenario: "webhook",
        measured,
        exact,
        notes: json!({ "accounts": accounts.len(), "wrong": wrong }),
    })
}

/// One event delivered `copies` times at once: every copy answered 200, credited once.
pub(crate) async fn duplicates(target: &Target, copies: usize) -> anyhow::Result<Outcome> {
    let pack = target.sold_pack().await?;
    let account = target.account(0);
    target.ensure_accounts().await?;
    let before = target.balance(&account).await?;
    let events = Events::new(&target.secret, &pack.stripe_price_id, pack.unit_amount)?;
    let (body, signature) = events.signed(&format!("{}d", target.run), 0, &account);
    let target_ = target.clone();
    let measured = load::run(
        copies,
        Duration::from_secs(60),
        Some(copies as u64),
        move |_, _| {
            let (target, body, signature) = (target_.clone(), body.clone(), signature.clone());
            async move { post(&target, body, signature).await == 200 }
        },
    )
    .await;
    let after = target.balance(&account).await?;
    Ok(Outcome {
        scenario: "duplicates",
        exact: measured.ok == copies as u64 && after - before == pack.credits,
        notes: json!({ "copies": copies, "credited": after - before, "pack_credits": pack.credits }),
        measured,
    })
}

/// GetBalance of the run's accounts at the target concurrency.
pub(crate) async fn grpc_balance(target: &Target) -> anyhow::Result<Outcome> {
    let accounts = Arc::new(target.ensure_accounts().await?);
    let target_ = target.clone();
    let measured = load::run(target.concurrency, target.duration, None, move |_, n| {
        let (target, accounts) = (target_.clone(), accounts.clone());
        async move {
            let account = accounts[(n as usize) % accounts.len()].clone();
            target
                .client()
                .get_balance(target.request(pb::GetBalanceRequest {
                    account: Some(pb::get_balance_request::Account::AccountId(account)),
                    as_of: None,
                }))
                .await
                .is_ok()
        }
    })
    .await;
    Ok(Outcome {
        scenario: "grpc-balance",
        exact: measured.failed == 0,
        notes: json!({ "accounts": target.accounts }),
        measured,
    })
}

/// Grants every account enough credits for the run; returns what each holds.
async fn funded_accounts(target: &Target, credits: i64) -> anyhow::Result<Vec<String>> {
    let accounts = target.ensure_accounts().await?;
    let mut client = target.client();
    for account in &accounts {
        client
            .grant_credits(target.request(pb::GrantCreditsRequest {
                account: Some(pb::grant_credits_request::Account::AccountId(account.clone())),
                credits,
                idempotency_key: format!("bench-fund-{}", target.run),
                reason: "benchmark".into(),
                ..Default::default()
            }))
            .await?;
    }
    Ok(accounts)
}

const FUNDS: i64 = 1_000_000_000;

/// ConsumeCredits of 1 credit with distinct keys.
pub(crate) async fn consume(target: &Target) -> anyhow::Result<Outcome> {
    let accounts = funded_accounts(target, FUNDS).await?;
    let start = vec![FUNDS; accounts.len()];
    consume_from(target, "consume", accounts, start, json!({})).await
}

/// ConsumeCredits of 1 credit with distinct keys, every caller on the same account. The end
/// balance must be exactly what it started with minus the debits answered OK.
pub(crate) async fn hot_account(target: &Target) -> anyhow::Result<Outcome> {
    let mut accounts = funded_accounts(target, FUNDS).await?;
    accounts.truncate(1);
    anyhow::ensure!(!accounts.is_empty(), "no account to spend from");
    consume_from(
        target,
        "hot-account",
        accounts,
        vec![FUNDS],
        json!({ "hot": true }),
    )
    .await
}

/// Debits per ConsumeCreditsBatch call in `consume-batch`.
const BATCH_DEBITS: usize = 1000;

/// ConsumeCreditsBatch of 1,000 debits of 1 credit (distinct keys) spread over the accounts:
/// one call of the load is one batch. The end balances must be exact.
pub(crate) async fn consume_batch(target: &Target) -> anyhow::Result<Outcome> {
    let accounts = Arc::new(funded_accounts(target, FUNDS).await?);
    let debited: Arc<Vec<AtomicU64>> = Arc::new((0..accounts.len()).map(|_| AtomicU64::new(0)).collect());
    let measured = {
        let (target, accounts, debited) = (target.clone(), accounts.clone(), debited.clone());
        load::run(target.concurrency, target.duration, None, move |_, n| {
            let (target, accounts, debited) = (target.clone(), accounts.clone(), debited.clone());
            async move {
                let which = |i: usize| (n as usize * BATCH_DEBITS + i) % accounts.len();
                let debits = (0..BATCH_DEBITS)
                    .map(|i| pb::ConsumeCreditsRequest {
                        account: Some(pb::consume_credits_request::Account::AccountId(
                            accounts[which(i)].clone(),
                        )),
                        credits: 1,
                        idempotency_key: format!("bench-{}-{n}-{i}", target.run),
                        reason: "usage".into(),
                        ..Default::default()
                    })
                    .collect();
                match target
                    .client()
                    .consume_credits_batch(target.request(pb::ConsumeCreditsBatchRequest { debits }))
                    .await
                {
                    Ok(answer) => {
                        let mut all = true;
                        for (i, result) in answer.into_inner().results.iter().enumerate() {
                            match &result.result {
                                Some(pb::consume_credits_result::Result::Consumed(_)) => {
                                    debited[which(i)].fetch_add(1, Ordering::Relaxed);
                                }
                                other => all = target.failed(format!("{other:?}")) && all,
                            }
                        }
                        all
                    }
                    Err(status) => target.failed(status),
                }
            }
        })
        .await
    };
    let total: u64 = debited.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    let expected = accounts
        .iter()
        .zip(debited.iter())
        .map(|(a, n)| (a.clone(), FUNDS - n.load(Ordering::Relaxed) as i64))
        .collect();
    let (exact, wrong) = target.check(&expected).await?;
    let seconds = measured.elapsed.as_secs_f64().max(f64::EPSILON);
    let notes = json!({
        "accounts": accounts.len(),
        "wrong": wrong,
        "debits_per_call": BATCH_DEBITS,
        "debits_per_second": (total as f64 / seconds).round(),
    });
    Ok(Outcome {
        scenario: "consume-batch",
        measured,
        exact,
        notes,
    })
}

/// `consume` on accounts with the money loop on: a balance alert threshold and auto top-up,
/// with a card kept by a signed Checkout, set just below what each account starts with, so every
/// account crosses both early in the run (one `balance.low`, one top-up attempt charged through
/// the service's Stripe) and every later debit is checked against them. The service needs a
/// Stripe that answers PaymentIntents (`.ci/fake_stripe.py`; see BENCHMARKS.md).
pub(crate) async fn consume_loop(target: &Target) -> anyhow::Result<Outcome> {
    let accounts = funded_accounts(target, FUNDS).await?;
    let pack = target.sold_pack().await?;
    let events =
        Events::new(&target.secret, &pack.stripe_price_id, pack.unit_amount)?.keeping_card("cus_bench")?;
    for (n, account) in accounts.iter().enumerate() {
        let (body, signature) = events.signed(&format!("{}card", target.run), n as u64, account);
        let status = post(target, body, signature).await;
        anyhow::ensure!(
            status == 200,
            "keeping a card for {account}: webhook answered {status}"
        );
    }
    let start = FUNDS + pack.credits;
    let mut client = target.client();
    for account in &accounts {
        let threshold = start - 20;
        client
            .update_account_settings(target.request(pb::UpdateAccountSettingsRequest {
                account: Some(pb::update_account_settings_request::Account::AccountId(
                    account.clone(),
                )),
                low_balance_threshold: Some(threshold),
                auto_top_up: Some(pb::AutoTopUp {
                    enabled: true,
                    threshold,
                    pack_id: pack.id.clone(),
                    monthly_limit: 1_000_000_000,
                    paused_reason: String::new(),
                }),
                ..Default::default()
            }))
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "auto top-up for {account}: {status} (does the service's Stripe answer PaymentIntents?)"
                )
            })?;
    }
    let starts = vec![start; accounts.len()];
    consume_from(
        target,
        "consume-loop",
        accounts,
        starts,
        json!({ "threshold": "start - 20" }),
    )
    .await
}

/// The ConsumeCredits load over `accounts`, checked against what each started with.
async fn consume_from(
    target: &Target,
    scenario: &'static str,
    accounts: Vec<String>,
    start: Vec<i64>,
    mut notes: Value,
) -> anyhow::Result<Outcome> {
    let accounts = Arc::new(accounts);
    let debited: Arc<Vec<AtomicU64>> = Arc::new((0..accounts.len()).map(|_| AtomicU64::new(0)).collect());
    let measured = {
        let (target, accounts, debited) = (target.clone(), accounts.clone(), debited.clone());
        load::run(target.concurrency, target.duration, None, move |_, n| {
            let (target, accounts, debited) = (target.clone(), accounts.clone(), debited.clone());
            async move {
                let which = (n as usize) % accounts.len();
                let ok = target
                    .client()
                    .consume_credits(target.request(pb::ConsumeCreditsRequest {
                        account: Some(pb::consume_credits_request::Account::AccountId(
                            accounts[which].clone(),
                        )),
                        credits: 1,
                        idempotency_key: format!("bench-{}-{n}", target.run),
                        reason: "usage".into(),
                        ..Default::default()
                    }))
                    .await
                    .is_ok();
                if ok {
                    debited[which].fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await
    };
    let expected = accounts
        .iter()
        .zip(debited.iter())
        .zip(&start)
        .map(|((a, n), start)| (a.clone(), start - n.load(Ordering::Relaxed) as i64))
        .collect();
    let (exact, wrong) = target.check(&expected).await?;
    notes["accounts"] = json!(accounts.len());
    notes["wrong"] = json!(wrong);
    Ok(Outcome {
        scenario,
        measured,
        exact,
        notes,
    })
}

/// ReserveCredits of 2 then CaptureHold of 1: one call of the load is the pair.
pub(crate) async fn reserve_capture(target: &Target) -> anyhow::Result<Outcome> {
    let accounts = Arc::new(funded_accounts(target, FUNDS).await?);
    let captured: Arc<Vec<AtomicU64>> = Arc::new((0..accounts.len()).map(|_| AtomicU64::new(0)).collect());
    let measured = {
        let (target, accounts, captured) = (target.clone(), accounts.clone(), captured.clone());
        load::run(target.concurrency, target.duration, None, move |_, n| {
            let (target, accounts, captured) = (target.clone(), accounts.clone(), captured.clone());
            async move {
                let which = (n as usize) % accounts.len();
                let mut client = target.client();
                let hold = match client
                    .reserve_credits(target.request(pb::ReserveCreditsRequest {
                        account: Some(pb::reserve_credits_request::Account::AccountId(
                            accounts[which].clone(),
                        )),
                        credits: 2,
                        idempotency_key: format!("bench-{}-{n}", target.run),
                        ttl_seconds: 60,
                        reason: "call".into(),
                        ..Default::default()
                    }))
                    .await
                {
                    Ok(hold) => hold,
                    Err(status) => return target.failed(status),
                };
                let ok = match client
                    .capture_hold(target.request(pb::CaptureHoldRequest {
                        hold_id: hold.into_inner().hold_id,
                        credits: 1,
                        ..Default::default()
                    }))
                    .await
                {
                    Ok(_) => true,
                    Err(status) => target.failed(status),
                };
                if ok {
                    captured[which].fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
        })
        .await
    };
    let expected = accounts
        .iter()
        .zip(captured.iter())
        .map(|(a, n)| (a.clone(), FUNDS - n.load(Ordering::Relaxed) as i64))
        .collect();
    let (exact, wrong) = target.check(&expected).await?;
    Ok(Outcome {
        scenario: "reserve-capture",
        measured,
        exact,
        notes: json!({ "accounts": accounts.len(), "wrong": wrong }),
    })
}
