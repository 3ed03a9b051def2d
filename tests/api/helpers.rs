//! `spawn_app()`: the real service on random ports, a fresh database, a fake Stripe, and typed
//! clients; plus the signing, fixture and database helpers the feature tests share. `stripe`
//! holds the fake Stripe's answers, `spend` the spend side's calls and the ledger invariants.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Once},
};

use credits::{
    app::Application,
    config::{LogFormat, Settings},
    entities::{account, credit_ledger, credit_lot, credit_purchase, stripe_event},
    grpc::pb::{self, credits_service_client::CreditsServiceClient},
};
use hmac::{Hmac, KeyInit, Mac};
pub use process::{run_binary, spawn_process};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder,
};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wiremock::MockServer;

pub mod console;
pub mod events;
pub mod h2_raw;
pub mod payments;
mod process;
pub mod spend;
mod stripe;
pub mod subscriptions;
pub use stripe::{form_of, form_value, open_session_json};

pub const WEBHOOK_SECRET: &str = "whsec_test_secret";
pub const STANDARD_PRICE: &str = "price_1PgafmB7WZ01zgkW02Hf9z6c";
pub const STANDARD_CREDITS: i64 = 1000;
pub const STARTER_PRICE: &str = "price_starter_test";
pub const STARTER_CREDITS: i64 = 100;
/// The account, email and session the fixtures in `tests/fixtures/` describe.
pub const FIXTURE_ACCOUNT: &str = "acct_7d1f3c2a";
pub const FIXTURE_EMAIL: &str = "buyer@example.com";
pub const FIXTURE_SESSION: &str = "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY";
/// The delayed-payment (SEPA) session of the `*_unpaid` and `async_payment_*` fixtures.
pub const SEPA_SESSION: &str = "cs_test_a1SePaDeBiTsEsSiOnB7WZ01zgkWr5Tw8Yz1Bc3De5Fg7Hj9Kl1Mn3Op5Qr7";

/// Packs every test app sells: the fixtures' `standard` pack, a cheaper one, and one not yet
/// synced to Stripe.
pub const TEST_PACKS: &str = r#"
[[pack]]
id = "starter"
name = "Starter"
credits = 100
unit_amount = 500
currency = "usd"
stripe_price_id = "price_starter_test"

[[pack]]
id = "standard"
name = "Standard"
credits = 1000
unit_amount = 1500
currency = "usd"
stripe_price_id = "price_1PgafmB7WZ01zgkW02Hf9z6c"

[[pack]]
id = "pro"
name = "Pro"
credits = 5000
unit_amount = 5000
currency = "usd"
"#;

/// A Stripe payload fixture, byte for byte.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("fixture {path}: {err}"))
}

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let otel = credits::config::TelemetrySettings::from_lookup(&|_: &str| None)
                .expect("no telemetry settings are valid");
            let filter =
                std::env::var("RUST_LOG").unwrap_or_else(|_| credits::config::DEFAULT_LOG_FILTER.into());
            let _guard = credits::telemetry::init(LogFormat::Pretty, &filter, &otel);
        }
    });
}

/// Stripe's published scheme, computed here independently of the service's verifier.
pub fn stripe_signature(body: &str, secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length works");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

/// A database no other test uses: a SQLite file in a temp dir, or, with `TEST_DATABASE_URL`,
/// a uniquely named PostgreSQL database dropped afterwards.
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn new() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            None => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("credits.db").display());
                Arc::new(Self {
                    url,
                    postgres: None,
                    dir,
                })
            }
            Some(admin_url) => {
                let name = format!("credits_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                Arc::new(Self {
                    url: url.to_string(),
                    postgres: Some((admin_url, name)),
                    dir,
                })
            }
        }
    }

    /// Whether the tests run on PostgreSQL (`TEST_DATABASE_URL`), where several replicas can
    /// share one database.
    pub fn is_postgres() -> bool {
        std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
    }

    /// A separate connection for looking at (or breaking) what the service wrote.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Makes the database refuse the service until `Outage::end`: PostgreSQL stops accepting
    /// connections and drops the open ones; SQLite has its write lock taken by another holder.
    pub async fn outage(&self) -> Outage {
        match &self.postgres {
            Some((admin_url, name)) => {
                let admin = Database::connect(admin_url).await.expect("admin connection");
                admin
                    .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .await
                    .expect("disallow connections");
                admin
                    .execute_unprepared(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                    ))
                    .await
                    .expect("terminate backends");
                Outage::Postgres {
                    admin,
                    name: name.clone(),
                }
            }
            None => {
                let holder = self.connect().await;
                let txn = credits::db::begin_write(&holder)
                    .await
                    .expect("take the SQLite write lock");
                Outage::Sqlite(holder, txn)
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee, so clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A database made unavailable by `TestDatabase::outage`.
pub enum Outage {
    Sqlite(DatabaseConnection, DatabaseTransaction),
    Postgres { admin: DatabaseConnection, name: String },
}

impl Outage {
    pub async fn end(self) {
        match self {
            Self::Sqlite(holder, txn) => {
                txn.rollback().await.expect("release the SQLite write lock");
                let _ = holder.close().await;
            }
            Self::Postgres { admin, name } => {
                admin
                    .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .await
                    .expect("allow connections again");
                let _ = admin.close().await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------

/// A running service and everything a test talks to it with.
/// A stored move: `[lot_id|null, credits, value, source|null, currency|null]`.
type StoredMove = (Option<String>, i64, i64, Option<String>, Option<String>);

pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub grpc: CreditsServiceClient<Channel>,
    pub http: reqwest::Client,
    pub stripe: MockServer,
    pub db: Arc<TestDatabase>,
    pub settings: HashMap<String, String>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test app; `spawn_app()` takes the defaults.
pub struct TestAppBuilder {
    env: HashMap<String, String>,
    db: Option<Arc<TestDatabase>>,
    packs: String,
}

pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            env: HashMap::new(),
            db: None,
            packs: TEST_PACKS.to_owned(),
        }
    }
}

impl TestAppBuilder {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Leaves a variable unset (e.g. no Stripe key).
    pub fn without(self, key: &str) -> Self {
        self.env(key, "")
    }

    pub fn database(mut self, db: Arc<TestDatabase>) -> Self {
        self.db = Some(db);
        self
    }

    pub fn packs(mut self, toml: &str) -> Self {
        toml.clone_into(&mut self.packs);
        self
    }

    /// The environment the service is given, before it starts.
    pub async fn prepare(self) -> (HashMap<String, String>, Arc<TestDatabase>, MockServer) {
        init_tracing();
        let db = match self.db {
            Some(db) => db,
            None => TestDatabase::new().await,
        };
        let stripe = MockServer::start().await;
        let packs_file = db
            .dir
            .path()
            .join(format!("packs-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&packs_file, &self.packs).expect("write packs file");
        let mut env: HashMap<String, String> = [
            ("APP_ENV", "development".to_owned()),
            ("DATABASE_URL", db.url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "5".to_owned()),
            ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("STRIPE_SECRET_KEY", "sk_test_credits".to_owned()),
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_credits".to_owned()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("STRIPE_API_BASE", stripe.uri()),
            ("STRIPE_TIMEOUT_MS", "3000".to_owned()),
            ("FRONTEND_URL", "https://app.example.test".to_owned()),
            ("CREDIT_PACKS_FILE", packs_file.display().to_string()),
            ("HEALTH_CHECK_INTERVAL_MS", "100".to_owned()),
            ("SHUTDOWN_GRACE", "2".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.env);
        (env, db, stripe)
    }

    pub async fn spawn(self) -> TestApp {
        let (env, db, stripe) = self.prepare().await;
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings are valid");
        let app = Application::build(settings).await.expect("the app builds");
        let grpc_addr = app.grpc_addr();
        let http_addr = app.http_addr();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let grpc = connect_grpc(grpc_addr).await;
        TestApp {
            grpc_addr,
            http_addr,
            grpc,
            http: reqwest::Client::new(),
            stripe,
            db,
            settings: env,
            shutdown,
            server: Some(server),
        }
    }
}

/// A service serving on random ports, without a client (tests that connect their own way).
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    /// Held so the fake Stripe and the database outlive the server.
    _stripe: MockServer,
    _db: Arc<TestDatabase>,
    shutdown: CancellationToken,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestAppBuilder {
    /// Builds and runs the service like `spawn`, but connects nothing (e.g. for TLS).
    pub async fn spawn_server(self) -> RunningServer {
        let (env, db, stripe) = self.prepare().await;
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings are valid");
        let app = Application::build(settings).await.expect("the app builds");
        let grpc_addr = app.grpc_addr();
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        RunningServer {
            grpc_addr,
            _stripe: stripe,
            _db: db,
            shutdown,
        }
    }
}

pub async fn grpc_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("gRPC connects")
}

pub async fn connect_grpc(addr: SocketAddr) -> CreditsServiceClient<Channel> {
    CreditsServiceClient::new(grpc_channel(addr).await)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Stops the server the way SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("/metrics text")
    }

    // --- webhooks -----------------------------------------------------------------------------

    /// Posts `body` signed now with the test secret.
    pub async fn post_webhook(&self, body: &str) -> reqwest::Response {
        let header = stripe_signature(body, WEBHOOK_SECRET, now());
        self.post_webhook_with(body, Some(header)).await
    }

    pub async fn post_webhook_with(&self, body: &str, signature: Option<String>) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/account/stripe-webhook/"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        request.send().await.expect("webhook request")
    }

    /// Runs the `credits` binary with this app's environment (same database, fake Stripe).
    pub async fn run_cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
            .args(args)
            .env_clear()
            .envs(self.settings.iter().filter(|(_, v)| !v.is_empty()))
            .output()
            .await
            .expect("run the credits binary")
    }

    // --- gRPC shortcuts -----------------------------------------------------------------------

    pub async fn purchase(
        &self,
        account_id: &str,
        email: &str,
        price_id: &str,
    ) -> Result<pb::PurchaseCreditsResponse, tonic::Status> {
        self.grpc
            .clone()
            .purchase_credits(pb::PurchaseCreditsRequest {
                account_id: account_id.into(),
                email: email.into(),
                price_id: price_id.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn balance(&self, account_id: &str) -> Result<pb::GetBalanceResponse, tonic::Status> {
        self.grpc
            .clone()
            .get_balance(pb::GetBalanceRequest {
                account: Some(pb::get_balance_request::Account::AccountId(account_id.into())),
                as_of: None,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The account's balance, read over gRPC.
    pub async fn credit_balance(&self, account_id: &str) -> i64 {
        self.balance(account_id).await.expect("GetBalance").credit_balance
    }

    /// Every purchase of the account over gRPC (one page of up to 500).
    pub async fn listed_purchases(&self, account_id: &str) -> Vec<pb::CreditPurchase> {
        self.grpc
            .clone()
            .list_purchases(pb::ListPurchasesRequest {
                account: Some(pb::list_purchases_request::Account::AccountId(account_id.into())),
                page_size: 500,
                ..Default::default()
            })
            .await
            .expect("ListPurchases")
            .into_inner()
            .purchases
    }

    // --- database checks ----------------------------------------------------------------------

    /// Stored event outcomes, oldest first.
    pub async fn outcomes(&self) -> Vec<String> {
        self.events().await.into_iter().map(|e| e.outcome).collect()
    }

    pub async fn events(&self) -> Vec<stripe_event::Model> {
        let db = self.db.connect().await;
        stripe_event::Entity::find()
            .order_by_asc(stripe_event::Column::ReceivedAt)
            .all(&db)
            .await
            .expect("read events")
    }

    pub async fn purchases_of(&self, account_id: &str) -> Vec<credit_purchase::Model> {
        let db = self.db.connect().await;
        credit_purchase::Entity::find()
            .filter(credit_purchase::Column::AccountId.eq(account_id))
            .all(&db)
            .await
            .expect("read purchases")
    }

    pub async fn ledger_of(&self, account_id: &str) -> Vec<credit_ledger::Model> {
        let db = self.db.connect().await;
        credit_ledger::Entity::find()
            .filter(credit_ledger::Column::AccountId.eq(account_id))
            .order_by_asc(credit_ledger::Column::Id)
            .all(&db)
            .await
            .expect("read ledger")
    }

    /// Asserts the invariants, for every account: balance == Σ ledger deltas == Σ lots'
    /// remaining credits − debt; every entry's moves add up to its delta; every lot's moves add
    /// up to its remaining credits and value.
    pub async fn assert_ledger_matches_balances(&self) {
        let db = self.db.connect().await;
        for account in account::Entity::find().all(&db).await.expect("read accounts") {
            let entries = credit_ledger::Entity::find()
                .filter(credit_ledger::Column::AccountId.eq(account.id.as_str()))
                .all(&db)
                .await
                .expect("read ledger");
            let sum: i64 = entries.iter().map(|e| e.delta).sum();
            assert_eq!(
                sum, account.credit_balance,
                "ledger sum vs balance of {}",
                account.id
            );
            let lots = credit_lot::Entity::find()
                .filter(credit_lot::Column::AccountId.eq(account.id.as_str()))
                .all(&db)
                .await
                .expect("read lots");
            let remaining: i64 = lots.iter().map(|l| l.remaining).sum();
            assert_eq!(
                remaining - account.debt,
                account.credit_balance,
                "lots minus debt vs balance of {}",
                account.id
            );
            let mut moved: HashMap<String, (i64, i64)> = HashMap::new();
            for entry in &entries {
                let moves: Vec<StoredMove> =
                    serde_json::from_str(entry.allocations.as_deref().unwrap_or("[]")).expect("stored moves");
                let credits: i64 = moves.iter().map(|m| m.1).sum();
                assert_eq!(credits, entry.delta, "moves of entry {entry:?}");
                for (lot, credits, value, ..) in moves {
                    if let Some(lot) = lot {
                        let sum = moved.entry(lot).or_default();
                        sum.0 += credits;
                        sum.1 += value;
                    }
                }
            }
            for lot in &lots {
                let (credits, value) = moved.get(&lot.id).copied().unwrap_or_default();
                assert_eq!(
                    (credits, value),
                    (lot.remaining, lot.value_remaining),
                    "moves of lot {lot:?}"
                );
            }
            if let Some(last) = entries.iter().max_by_key(|e| e.id) {
                assert_eq!(
                    last.balance_after, account.credit_balance,
                    "last balance_after of {}",
                    account.id
                );
            }
        }
    }

    pub async fn count_events(&self) -> u64 {
        let db = self.db.connect().await;
        stripe_event::Entity::find()
            .count(&db)
            .await
            .expect("count events")
    }
}
