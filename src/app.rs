//! Wiring: `Application::build` opens the database, loads packs, starts the ledger writer and
//! binds both listeners (port 0 works and the real addresses are exposed); `run_until_stopped`
//! serves until the token fires.

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::Router;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use sea_orm::DatabaseConnection;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::{
    billing::{Billing, Fulfilment, StripeEvent},
    catalog::{self, Catalog},
    config::{AppEnv, HttpSettings, Settings},
    console::{self, ConsoleServices},
    db,
    event_store::EventLog,
    grpc::{CreditsApi, auth::BearerTokens, grace::GraceLayer, guard::Guarded, pb, tls},
    health::Health,
    ledger::{
        AccountId, Email, Ledger, OutboxPolicy, Policies, Signals, TrialPolicy, WriterSettings,
        commands::EnsureAccount, writer,
    },
    limits,
    metrics::{self, Metrics},
    net::{self, Connections, GuardedIo, Lingering},
    notify::{Notifications, Notifier},
    ops::{self, jobs::Leases},
    stripe::StripeGateway,
    webhook::{self, WebhookState},
};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Packs(#[from] catalog::PackFileError),
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("Stripe client")]
    Stripe(#[from] crate::stripe::StripeError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("outbound webhook client")]
    Notify(#[from] crate::notify::client::ClientError),
}

/// The ledger with billing's part of its writer: what the service runs.
pub(crate) type AppLedger = Ledger<Fulfilment>;

/// The domain services, built once, as `serve` and the command line run them: each transport,
/// job and command takes what it needs from here.
pub struct Services {
    pub(crate) ledger: AppLedger,
    pub(crate) billing: Billing,
    pub(crate) events: EventLog,
    pub(crate) leases: Leases,
    pub(crate) metrics: Metrics,
    pub(crate) notifications: Notifications,
    /// The read pool, whose use `/metrics` reports.
    reads: DatabaseConnection,
    writer: Vec<tokio::task::JoinHandle<()>>,
    stop_writer: CancellationToken,
}

impl Services {
    /// Starts the writer on its own connections; reads use `reads`.
    pub async fn start(settings: &Settings, reads: DatabaseConnection) -> Result<Self, StartupError> {
        let writer_db = db::connect_writer(settings).await?;
        let metrics = Metrics::new();
        let stop_writer = CancellationToken::new();
        let signals = Signals::default();
        let (handle, writer) = writer::spawn(
            writer_db,
            Arc::new(Fulfilment),
            Policies {
                trial: TrialPolicy {
                    credits: settings.ledger.trial_credits,
                    expire_days: settings.ledger.trial_expire_days,
                },
                outbox: OutboxPolicy {
                    low_balance_threshold: settings.events.low_balance_threshold,
                    consumed_events: settings.events.consumed_events,
                },
            },
            WriterSettings {
                connections: db::writer_tasks(settings),
                ..WriterSettings::default()
            },
            metrics.clone(),
            signals.clone(),
            stop_writer.clone(),
        );
        let checkpointer = db::checkpoint_sqlite(reads.clone(), stop_writer.clone());
        let stripe = StripeGateway::new(&settings.stripe)?;
        let ledger = Ledger::new(handle, reads.clone(), signals);
        let billing = Billing::new(
            ledger.clone(),
            reads.clone(),
            stripe,
            settings.frontend_url.clone(),
            settings.redirects.clone(),
            metrics.clone(),
        );
        Ok(Self {
            ledger,
            billing,
            events: EventLog::new(reads.clone()),
            leases: Leases::new(reads.clone()),
            notifications: Notifications::new(reads.clone()),
            metrics,
            reads,
            writer: writer.into_iter().chain(checkpointer).collect(),
            stop_writer,
        })
    }

    /// Creates the account on first sight (with the trial credits), or finds it: EnsureAccount,
    /// for the bench's in-process writer ceiling.
    pub async fn ensure_account(&self, account_id: &str, email: &str) -> anyhow::Result<()> {
        let command = EnsureAccount {
            account_id: AccountId::parse(account_id)?,
            email: Email::parse(email)?,
            follow_email: false,
        };
        self.ledger.send(command).await?;
        Ok(())
    }

    /// Applies one verified Stripe event exactly once, as the webhook does: for the bench's
    /// in-process writer ceiling.
    pub async fn process_event(&self, event: StripeEvent) -> anyhow::Result<()> {
        self.billing.process_event(event).await?;
        Ok(())
    }

    /// Lets the writer finish what is queued, then waits for it (at most `grace`).
    pub async fn stop(self, grace: Duration) {
        self.stop_writer.cancel();
        drop((self.ledger, self.billing));
        let finished = tokio::time::timeout(grace, async {
            for task in self.writer {
                let _ = task.await;
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(?grace, "the ledger writer did not finish in time");
        }
    }
}

/// How long, after the grace, the last answers and GOAWAYs get to reach callers.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// A built, bound, not yet serving instance of the service.
pub struct Application {
    settings: Settings,
    services: Services,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_tls: Option<Arc<rustls::ServerConfig>>,
    /// The outbound webhook worker, when `NOTIFY_WEBHOOK_URL` is set.
    notifier: Option<Notifier>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let catalog_file = catalog::load_catalog_file(&settings.credit_packs_file)?;
        let grpc_tls = settings.grpc.tls.as_ref().map(tls::server_config).transpose()?;
        let db = db::connect(&settings).await?;
        if settings.migrate_on_start {
            db::migrate(&db).await?;
        }
        Catalog::new(db.clone()).store_catalog_file(&catalog_file).await?;
        let services = Services::start(&settings, db).await?;
        let notifier = Notifier::new(&settings.events, services.reads.clone(), services.metrics.clone())?;

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind { addr, source })
        };
        let grpc_listener = bind(settings.grpc_addr).await?;
        let http_listener = bind(settings.http_addr).await?;
        Ok(Self {
            settings,
            services,
            grpc_listener,
            http_listener,
            grpc_tls,
            notifier,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().unwrap_or(self.settings.grpc_addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener.local_addr().unwrap_or(self.settings.http_addr)
    }

    /// Serves gRPC and HTTP until `shutdown` fires, then: health NOT_SERVING → drain both
    /// servers (bounded) → return.
    // Long on purpose: the start-up and shut-down order of both servers, read top to bottom.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let services = &self.services;
        let health = Health::new(reporter, services.ledger.clone(), Duration::from_secs(2));
        let drain = CancellationToken::new();
        let watcher = health
            .start_watcher(self.settings.health_check_interval, drain.clone())
            .await;

        // v1 for current clients, v1alpha for older grpcurl and grpc_cli.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let metrics = services.metrics.clone();
        let api = Guarded::new(
            pb::credits_service_server::CreditsServiceServer::new(CreditsApi::new(
                services.ledger.clone(),
                services.billing.clone(),
                self.settings.stripe.publishable_key.clone(),
                self.settings.events.low_balance_threshold,
            )),
            BearerTokens::new(&self.settings.grpc.auth_tokens),
            self.settings.grpc.concurrency_limit,
            self.settings.grpc.request_timeout,
            metrics.clone(),
        );
        let grpc_addr = self.grpc_addr();
        let http_addr = self.http_addr();
        // Fires when the shutdown grace runs out: calls and streams still open end with a status.
        let ended = CancellationToken::new();
        let lingering = Lingering::default();
        let grpc_drain = drain.clone();
        let grpc = tonic::transport::Server::builder()
            .layer(GraceLayer::new(ended.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(api)
            .serve_with_incoming_shutdown(
                Connections::new(self.grpc_listener, self.grpc_tls, lingering.clone()),
                async move {
                    grpc_drain.cancelled().await;
                },
            );

        if self.settings.stripe.webhook_secrets.is_empty() && self.settings.app_env == AppEnv::Development {
            tracing::warn!(
                "STRIPE_WEBHOOK_SECRET is unset: unsigned webhooks are accepted (development only)"
            );
        }
        let webhook = webhook::router(WebhookState {
            billing: services.billing.clone(),
            secrets: self.settings.stripe.webhook_secrets.clone(),
            tolerance: self.settings.stripe.webhook_tolerance,
            metrics: metrics.clone(),
        });
        let router = health
            .router()
            .merge(limits::limit_http(webhook, self.settings.http))
            .merge(metrics::router(
                metrics.clone(),
                services.reads.clone(),
                self.settings.database_max_connections,
            ));
        // The operator console, when configured: its own pages and limits, same port.
        let router = match &self.settings.console {
            Some(settings) => router.merge(console::router(
                settings.clone(),
                ConsoleServices {
                    ledger: services.ledger.clone(),
                    billing: services.billing.clone(),
                    events: services.events.clone(),
                    notifications: services.notifications.clone(),
                    db: services.reads.clone(),
                },
            )),
            None => router,
        };
        let router = limits::limit_body_read(router, self.settings.http.body_read_timeout);
        let router = limits::end_at_grace(router, ended.clone());
        let router = webhook::count_answers(router, metrics.clone());
        let http = serve_http(
            self.http_listener,
            router,
            self.settings.http,
            drain.clone(),
            lingering.clone(),
        );

        tracing::info!(%grpc_addr, %http_addr, "credits listening");
        let mut grpc_task = tokio::spawn(grpc);
        let mut http_task = tokio::spawn(http);

        let jobs = ops::scheduler::spawn(
            ops::scheduler::Jobs {
                ledger: services.ledger.clone(),
                billing: services.billing.clone(),
                events: services.events.clone(),
                leases: services.leases.clone(),
                metrics,
                notifications: services.notifications.clone(),
                notifier: self.notifier.clone(),
            },
            &self.settings,
            drain.clone(),
        );

        shutdown.cancelled().await;
        health.begin_shutdown().await;
        // Keep accepting while load balancers see NOT_SERVING / 503 and stop routing here.
        tokio::time::sleep(self.settings.shutdown_delay).await;
        // Stop accepting; every open connection gets a graceful GOAWAY (HTTP/2) or closes once
        // idle (HTTP/1.1), and what it has accepted runs to its answer.
        drain.cancel();
        let grace = self.settings.shutdown_grace;
        let stragglers = [grpc_task.abort_handle(), http_task.abort_handle()];
        let mut servers = pin!(async {
            let grpc = (&mut grpc_task).await;
            let http = (&mut http_task).await;
            (grpc, http)
        });
        let mut drained = tokio::time::timeout(grace, &mut servers).await;
        if drained.is_err() {
            // Long-lived streams (health watches) do not end by themselves; a call still running
            // gets UNAVAILABLE. Their answers and the last GOAWAY need a moment to go out.
            tracing::warn!(
                ?grace,
                "shutdown grace elapsed; ending the calls and streams still open"
            );
            ended.cancel();
            drained = tokio::time::timeout(LAST_WORDS, &mut servers).await;
        }
        watcher.abort();
        for job in jobs {
            job.abort();
        }
        let result = match drained {
            Ok((grpc, http)) => (|| -> anyhow::Result<()> {
                grpc??;
                http?;
                Ok(())
            })(),
            Err(_) => {
                stragglers.iter().for_each(tokio::task::AbortHandle::abort);
                tracing::warn!("connections still open after the grace were closed");
                Ok(())
            }
        };
        // Closed connections read what their callers still send, so the last answers arrive.
        if tokio::time::timeout(net::LINGER, lingering.wait()).await.is_err() {
            tracing::debug!("lingering closes cut short");
        }
        // Every request has been answered; what the writer still holds is committed first.
        drop(health);
        self.services.stop(grace).await;
        tracing::info!("credits stopped");
        result
    }
}

/// Serves `router` on `listener` until `drain` fires, then stops accepting and lets open
/// connections finish their requests. Dropping the future closes every connection left.
///
/// HTTP/1 and HTTP/2 (prior knowledge), as `axum::serve` did, but with read timeouts: hyper's
/// header timeout covers each HTTP/1 request head, and the first request of any connection must
/// arrive within the same time, because the protocol sniff before it reads without a timer.
// Long on purpose: one accept loop; its timeouts are explained where they are set.
async fn serve_http(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    drain: CancellationToken,
    lingering: Lingering,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.cancelled() => break,
        };
        // Reap closed connections, so the set only holds open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                accept_failed(err).await;
                continue;
            }
        };
        // Told by the service when a request has arrived: from then on hyper's timer governs.
        let first_request = Arc::new(Notify::new());
        let service = {
            let (router, first_request) = (router.clone(), first_request.clone());
            service_fn(move |mut request: hyper::Request<Incoming>| {
                first_request.notify_one();
                // The console rate-limits failed sign-ins per client address.
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                router.clone().call(request)
            })
        };
        let connection = builder
            .serve_connection(TokioIo::new(GuardedIo::new(stream, lingering.clone())), service)
            .into_owned();
        let (header_timeout, drain) = (settings.header_read_timeout, drain.clone());
        connections.spawn(async move {
            let mut connection = pin!(connection);
            let mut first_request_due = pin!(tokio::time::sleep(header_timeout));
            let (mut waiting, mut draining) = (true, false);
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(err) = served {
                            tracing::debug!(error = %err, "HTTP connection ended with an error");
                        }
                        break;
                    }
                    () = first_request.notified(), if waiting => waiting = false,
                    () = &mut first_request_due, if waiting => {
                        tracing::debug!(timeout = ?header_timeout, "no HTTP request in time; closing");
                        break;
                    }
                    () = drain.cancelled(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Refused or reset connections are the client's business; anything else (out of file
/// descriptors) would repeat at once, so wait a little before accepting again.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "HTTP accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
