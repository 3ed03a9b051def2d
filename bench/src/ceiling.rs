//! Ceilings measured in the same run, so that figures are ratios on a shared, noisy machine:
//! - `writer`: the service's own ledger writer, in this process, fed parsed events: its
//!   statements in batches on its connection(s), with the service's pragmas, without HTTP,
//!   signatures or JSON.
//! - `pgbench`: PostgreSQL running one event's statements per transaction from `pgbench`, at the
//!   same concurrency.
//! - `echo`: a bare tonic unary RPC on this machine.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use credits::{
    app::Services,
    billing::{CheckoutFacts, EventAction, StripeEvent},
    catalog::{self, PackSpec},
    config::Settings,
    db,
    grpc::pb::{self, credits_service_client::CreditsServiceClient, credits_service_server as server},
};
use sea_orm::{ConnectionTrait, Database};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::load;

const PAYLOAD: &str = include_str!("../../tests/fixtures/checkout_session_completed.json");
const PRICE: &str = "price_bench_ceiling";

/// A scratch database: a SQLite file under the temp dir, or a new PostgreSQL database next to
/// `admin_url`'s, dropped afterwards.
pub(crate) struct Scratch {
    pub url: String,
    drop_with: Option<(String, String)>,
}

impl Scratch {
    pub(crate) async fn new(postgres_admin: Option<&str>) -> anyhow::Result<Self> {
        let name = format!("credits_bench_{}", uuid::Uuid::new_v4().simple());
        match postgres_admin {
            None => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    drop_with: None,
                })
            }
            Some(admin) => {
                let conn = Database::connect(admin).await?;
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                let mut url = url::Url::parse(admin)?;
                url.set_path(&name);
                Ok(Self {
                    url: url.to_string(),
                    drop_with: Some((admin.to_owned(), name)),
                })
            }
        }
    }

    pub(crate) async fn drop(self) {
        if let Some((admin, name)) = self.drop_with
            && let Ok(conn) = Database::connect(&admin).await
        {
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        } else if let Some(path) = self
            .url
            .strip_prefix("sqlite://")
            .and_then(|p| p.split('?').next())
        {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }

    /// Migrated, with one pack sold under `PRICE` and `accounts` accounts.
    async fn prepared(&self, accounts: usize) -> anyhow::Result<(Settings, Vec<String>)> {
        let url = self.url.clone();
        let settings = Settings::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))?;
        let conn = db::connect(&settings).await?;
        db::migrate(&conn).await?;
        catalog::store::store_pack_file(
            &conn,
            &[PackSpec {
                id: "bench".into(),
                name: "Bench".into(),
                credits: 100,
                unit_amount: 500,
                currency: "usd".into(),
                stripe_price_id: Some(PRICE.into()),
                expires_after_days: None,
            }],
            Utc::now(),
        )
        .await?;
        let ids: Vec<String> = (0..accounts).map(|n| format!("ceiling-{n}")).collect();
        let mut sql = String::from(
            "INSERT INTO accounts (id, email, credit_balance, debt, is_trial_user, created_at, updated_at) VALUES ",
        );
        let now = Utc::now().to_rfc3339();
        let rows: Vec<String> = ids
            .iter()
            .map(|id| format!("('{id}', '{id}@bench.example', 0, 0, true, '{now}', '{now}')"))
            .collect();
        sql.push_str(&rows.join(", "));
        conn.execute_unprepared(&sql).await?;
        Ok((settings, ids))
    }
}

/// The service's writer, in process: events per second it applies at `concurrency`.
pub(crate) async fn writer(
    postgres_admin: Option<&str>,
    concurrency: usize,
    duration: Duration,
    accounts: usize,
) -> anyhow::Result<load::Measured> {
    let scratch = Scratch::new(postgres_admin).await?;
    let (settings, ids) = scratch.prepared(accounts).await?;
    let reads = db::connect(&settings).await?;
    let services = Services::start(&settings, reads).await?;
    // EnsureAccount through the writer too, so the accounts are as the service has them.
    for id in &ids {
        services
            .ensure_account(id, &format!("{id}@bench.example"))
            .await?;
    }
    let services = Arc::new(services);
    let ids = Arc::new(ids);
    let payload = Arc::new(PAYLOAD.to_owned());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let load_services = services.clone();
    let measured = load::run(concurrency, duration, None, move |_, n| {
        let (services, ids, payload, run) =
            (load_services.clone(), ids.clone(), payload.clone(), run.clone());
        async move {
            let account = ids[(n as usize) % ids.len()].clone();
            let event = StripeEvent {
                id: format!("evt_ceiling_{run}_{n}"),
                event_type: "checkout.session.completed".into(),
                payload: (*payload).clone(),
                action: EventAction::Credit(CheckoutFacts {
                    session_id: format!("cs_ceiling_{run}_{n}"),
                    client_reference_id: Some(account.clone()),
                    metadata_account_id: Some(account),
                    email: None,
                    metadata_price_id: Some(PRICE.into()),
                    payment_intent_id: Some(format!("pi_ceiling_{run}_{n}")),
                    amount_total: Some(500),
                    currency: Some("usd".into()),
                    customer_id: None,
                    save_card: false,
                    top_up: None,
                }),
            };
            services.process_event(event).await.is_ok()
        }
    })
    .await;
    // Every load task has ended: this is the last holder.
    if let Ok(services) = Arc::try_unwrap(services) {
        services.stop(Duration::from_secs(10)).await;
    }
    scratch.drop().await;
    Ok(measured)
}

/// PostgreSQL alone: one event's statements per transaction, from `pgbench` at `concurrency`.
/// Returns transactions per second.
pub(crate) async fn pgbench(
    admin: &str,
    concurrency: usize,
    duration: Duration,
    accounts: usize,
) -> anyhow::Result<f64> {
    let scratch = Scratch::new(Some(admin)).await?;
    scratch.prepared(accounts).await?;
    let payload = PAYLOAD.replace('\'', "''");
    let script = format!(
        r"\set n random(1, 1000000000000)
\set a random(0, {last})
BEGIN;
INSERT INTO stripe_events (id, event_type, checkout_session_id, payload, outcome, received_at) VALUES ('evt_' || :client_id || '_' || :n, 'checkout.session.completed', 'cs_' || :client_id || '_' || :n, '{payload}', 'processing', now()) ON CONFLICT (id) DO NOTHING RETURNING id;
INSERT INTO payment_refund_totals (payment_intent_id, amount_refunded, facts, updated_at) VALUES ('pi_' || :client_id || '_' || :n, 0, 0, now()) ON CONFLICT (payment_intent_id) DO UPDATE SET updated_at = excluded.updated_at RETURNING facts;
SELECT id FROM credit_purchases WHERE stripe_checkout_session_id = 'cs_' || :client_id || '_' || :n;
SELECT id, email FROM accounts WHERE id = 'ceiling-' || :a;
SELECT * FROM credit_packs;
INSERT INTO credit_purchases (id, account_id, credit_pack_id, quantity, amount, currency, amount_refunded, stripe_checkout_session_id, stripe_payment_intent_id, status, created_at, updated_at) VALUES ('p_' || :client_id || '_' || :n, 'ceiling-' || :a, 'bench', 100, 500, 'usd', 0, 'cs_' || :client_id || '_' || :n, 'pi_' || :client_id || '_' || :n, 'pending', now(), now()) ON CONFLICT DO NOTHING;
SELECT * FROM credit_purchases WHERE stripe_checkout_session_id = 'cs_' || :client_id || '_' || :n FOR UPDATE;
SELECT * FROM accounts WHERE id = 'ceiling-' || :a FOR UPDATE;
SELECT * FROM credit_lots WHERE account_id = 'ceiling-' || :a AND remaining > 0;
UPDATE accounts SET credit_balance = credit_balance + 100, is_trial_user = false, updated_at = now() WHERE id = 'ceiling-' || :a;
INSERT INTO credit_lots (id, account_id, source, reference, credits, remaining, held, created_at) VALUES ('l_' || :client_id || '_' || :n, 'ceiling-' || :a, 'purchase', 'cs_' || :client_id || '_' || :n, 100, 100, 0, now());
INSERT INTO credit_ledger (account_id, delta, balance_after, kind, reason, reference, created_at) VALUES ('ceiling-' || :a, 100, 0, 'purchase', 'purchase', 'cs_' || :client_id || '_' || :n, now()) RETURNING id;
UPDATE credit_purchases SET status = 'completed', completed_at = now(), updated_at = now() WHERE stripe_checkout_session_id = 'cs_' || :client_id || '_' || :n;
UPDATE stripe_events SET outcome = 'credited', processed_at = now() WHERE id = 'evt_' || :client_id || '_' || :n;
COMMIT;
",
        last = accounts.saturating_sub(1),
    );
    let path = std::env::temp_dir().join(format!("credits-bench-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, script)?;
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &concurrency.to_string(),
            "-j",
            "2",
            "-T",
            &duration.as_secs().max(1).to_string(),
        ])
        .arg("-f")
        .arg(&path)
        .arg(&scratch.url)
        .output()
        .await;
    let _ = std::fs::remove_file(&path);
    scratch.drop().await;
    let output = output.map_err(|err| anyhow::anyhow!("pgbench: {err} (it ships with PostgreSQL)"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pgbench printed no tps: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// GetBalance answered from memory by a bare tonic server: the RPC stack alone.
#[derive(Clone, Copy)]
struct Echo;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("echo answers GetBalance only"))
}

#[tonic::async_trait]
impl server::CreditsService for Echo {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let account_id = match request.into_inner().account {
            Some(pb::get_balance_request::Account::AccountId(id)) => id,
            _ => String::new(),
        };
        Ok(Response::new(pb::GetBalanceResponse {
            account_id,
            email: "echo@bench.example".into(),
            credit_balance: 100,
            available_balance: 100,
            ..Default::default()
        }))
    }
    async fn list_credit_packs(
        &self,
        _: Request<pb::ListCreditPacksRequest>,
    ) -> Result<Response<pb::ListCreditPacksResponse>, Status> {
        unimplemented()
    }
    async fn purchase_credits(
        &self,
        _: Request<pb::PurchaseCreditsRequest>,
    ) -> Result<Response<pb::PurchaseCreditsResponse>, Status> {
        unimplemented()
    }
    async fn list_purchases(
        &self,
        _: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        unimplemented()
    }
    async fn ensure_account(
        &self,
        _: Request<pb::EnsureAccountRequest>,
    ) -> Result<Response<pb::EnsureAccountResponse>, Status> {
        unimplemented()
    }
    async fn grant_credits(
        &self,
        _: Request<pb::GrantCreditsRequest>,
    ) -> Result<Response<pb::GrantCreditsResponse>, Status> {
        unimplemented()
    }
    async fn consume_credits(
        &self,
        _: Request<pb::ConsumeCreditsRequest>,
    ) -> Result<Response<pb::ConsumeCreditsResponse>, Status> {
        unimplemented()
    }
    async fn consume_credits_batch(
        &self,
        _: Request<pb::ConsumeCreditsBatchRequest>,
    ) -> Result<Response<pb::ConsumeCreditsBatchResponse>, Status> {
        unimplemented()
    }
    async fn reserve_credits(
        &self,
        _: Request<pb::ReserveCreditsRequest>,
    ) -> Result<Response<pb::ReserveCreditsResponse>, Status> {
        unimplemented()
    }
    async fn capture_hold(
        &self,
        _: Request<pb::CaptureHoldRequest>,
    ) -> Result<Response<pb::CaptureHoldResponse>, Status> {
        unimplemented()
    }
    async fn release_hold(
        &self,
        _: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        unimplemented()
    }
    async fn list_ledger_entries(
        &self,
        _: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        unimplemented()
    }
    async fn list_credit_lots(
        &self,
        _: Request<pb::ListCreditLotsRequest>,
    ) -> Result<Response<pb::ListCreditLotsResponse>, Status> {
        unimplemented()
    }
    async fn list_account_events(
        &self,
        _: Request<pb::ListAccountEventsRequest>,
    ) -> Result<Response<pb::ListAccountEventsResponse>, Status> {
        unimplemented()
    }
    type WatchAccountEventsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AccountEvent, Status>> + Send>>;
    async fn watch_account_events(
        &self,
        _: Request<pb::WatchAccountEventsRequest>,
    ) -> Result<Response<Self::WatchAccountEventsStream>, Status> {
        unimplemented()
    }
    async fn get_account_settings(
        &self,
        _: Request<pb::GetAccountSettingsRequest>,
    ) -> Result<Response<pb::AccountSettings>, Status> {
        unimplemented()
    }
    async fn update_account_settings(
        &self,
        _: Request<pb::UpdateAccountSettingsRequest>,
    ) -> Result<Response<pb::AccountSettings>, Status> {
        unimplemented()
    }
    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::SubscribeResponse>, Status> {
        unimplemented()
    }
    async fn get_subscription(
        &self,
        _: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        unimplemented()
    }
    async fn list_subscriptions(
        &self,
        _: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        unimplemented()
    }
    async fn cancel_subscription(
        &self,
        _: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        unimplemented()
    }
}

/// Serves the echo on `listener` until the process ends (`credits-bench echo-server`).
pub(crate) async fn serve_echo(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(server::CreditsServiceServer::new(Echo))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// GetBalance against the echo server at `concurrency` over one HTTP/2 connection, as the
/// `grpc-balance` scenario does against the service. The echo runs in a process of its own, as
/// the service does, so client and server share the machine the same way.
pub(crate) async fn echo(concurrency: usize, duration: Duration) -> anyhow::Result<load::Measured> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["echo-server", "--secret", "-"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("echo server without stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("echo server printed no address"))?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let measured = load::run(concurrency, duration, None, move |_, n| {
        let mut client = CreditsServiceClient::new(channel.clone());
        async move {
            client
                .get_balance(pb::GetBalanceRequest {
                    account: Some(pb::get_balance_request::Account::AccountId(format!("echo-{n}"))),
                    as_of: None,
                })
                .await
                .is_ok()
        }
    })
    .await;
    let _ = child.kill().await;
    Ok(measured)
}
