//! Health: the gRPC health service (tonic-health) and the HTTP `/healthz` and `/readyz` probes.
//! SERVING means the ledger writer committed a transaction just now (so the database accepts
//! writes) and the process is not shutting down.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::ledger::{Extension, Ledger};

/// The service name health clients ask about, besides the whole server ("").
pub(crate) const SERVICE_NAME: &str = "credits.v1.CreditsService";

/// Shared view of whether this replica should receive traffic.
pub(crate) struct Health<X: Extension> {
    reporter: HealthReporter,
    ledger: Ledger<X>,
    probe_timeout: Duration,
    stopping: Arc<AtomicBool>,
    serving: Arc<AtomicBool>,
}

impl<X: Extension> Clone for Health<X> {
    fn clone(&self) -> Self {
        Self {
            reporter: self.reporter.clone(),
            ledger: self.ledger.clone(),
            probe_timeout: self.probe_timeout,
            stopping: self.stopping.clone(),
            serving: self.serving.clone(),
        }
    }
}

impl<X: Extension> Health<X> {
    pub(crate) fn new(reporter: HealthReporter, ledger: Ledger<X>, probe_timeout: Duration) -> Self {
        Self {
            reporter,
            ledger,
            probe_timeout,
            stopping: Arc::new(AtomicBool::new(false)),
            serving: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True when the writer commits within the probe timeout: the probe rides in the writer's
    /// next batch, so it never competes with it for the database's write lock.
    pub(crate) async fn database_ready(&self) -> bool {
        matches!(
            tokio::time::timeout(self.probe_timeout, self.ledger.ping()).await,
            Ok(Ok(()))
        )
    }

    async fn publish(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(SERVICE_NAME, status).await;
        if self.serving.swap(serving, Ordering::SeqCst) != serving {
            if serving {
                tracing::info!("health: SERVING");
            } else {
                tracing::warn!("health: NOT_SERVING");
            }
        }
    }

    /// Probes the database once and publishes the result (unless shutting down).
    pub(crate) async fn refresh(&self) {
        let ready = self.database_ready().await;
        if !self.stopping.load(Ordering::SeqCst) {
            self.publish(ready).await;
        }
    }

    /// Publishes a first status now, then re-probes every `interval` until `stop`.
    pub(crate) async fn start_watcher(
        &self,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.refresh().await;
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => health.refresh().await,
                }
            }
        })
    }

    /// First step of shutdown: stop taking traffic before draining.
    pub(crate) async fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.publish(false).await;
    }

    /// `/healthz` and `/readyz`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz::<X>))
            .with_state(self.clone())
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz<X: Extension>(State(health): State<Health<X>>) -> (StatusCode, Json<Value>) {
    if health.stopping.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    if health.database_ready().await {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "database_unavailable" })),
        )
    }
}
