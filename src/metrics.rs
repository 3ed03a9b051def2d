//! Prometheus metrics: one registry per running service, served as text on `GET /metrics`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use sea_orm::{DatabaseConnection, DbBackend};

/// The scrape path on `HTTP_ADDR`.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// `&'static str`: RPC labels come from fixed lists (method names, gRPC codes), never from a
/// request, so a caller cannot add series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    event_type: &'static str,
    outcome: String,
}

/// Both from fixed lists: an HTTP status the route answers and an [`AnswerOutcome`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    status: u16,
    outcome: &'static str,
}

/// What a webhook answer meant, set on the response by whoever answered (the handler, the load
/// shedder, the body deadline), for `credits_webhook_responses_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnswerOutcome(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HoldLabels {
    outcome: &'static str,
}

struct Inner {
    registry: Registry,
    writer_batch_size: Histogram,
    writer_queue_depth: Gauge,
    writer_queue_capacity: Gauge,
    ledger_credits: Family<KindLabels, Counter>,
    holds: Family<HoldLabels, Counter>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily<MethodLabels>,
    webhook_events: Family<WebhookLabels, Counter>,
    webhook_responses: Family<AnswerLabels, Counter>,
    webhook_duration: Histogram,
    credits_granted: Counter,
    reconcile_runs: Counter,
    reconcile_fixed: Counter,
    reconcile_failed_runs: Counter,
    reconcile_failed_sessions: Counter,
    db_pool: Family<PoolLabels, Gauge>,
    db_pool_max: Gauge,
    account_events: Counter,
    top_up_steps: Family<StateLabels, Counter>,
    notifications_delivered: Counter,
    notifications_failures: Counter,
    notifications_given_up: Counter,
    notification_backlog: Gauge,
    notification_oldest_pending: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    // Long on purpose: one registration per metric.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("credits");
        let webhook_responses = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "webhook_responses",
            "Every answer of the webhook route, by HTTP status and outcome",
            webhook_responses.clone(),
        );
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "CreditsService RPCs by method and gRPC status code",
            rpc_requests.clone(),
        );
        let rpc_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "grpc_request_duration_seconds",
            "CreditsService RPC latency by method",
            rpc_duration.clone(),
        );
        let webhook_events = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_events",
            "Stripe webhook deliveries by event type and outcome",
            webhook_events.clone(),
        );
        let webhook_duration = latency_histogram();
        registry.register(
            "webhook_duration_seconds",
            "Stripe webhook handling latency",
            webhook_duration.clone(),
        );
        let credits_granted = Counter::default();
        registry.register(
            "credits_granted",
            "Credits added to accounts by fulfilled purchases",
            credits_granted.clone(),
        );
        let reconcile_runs = Counter::default();
        registry.register(
            "reconcile_runs",
            "Reconciliation runs completed by this replica",
            reconcile_runs.clone(),
        );
        let reconcile_fixed = Counter::default();
        registry.register(
            "reconcile_fixed",
            "Paid sessions credited by reconciliation because their webhook never arrived",
            reconcile_fixed.clone(),
        );
        let reconcile_failed_runs = Counter::default();
        registry.register(
            "reconcile_failed_runs",
            "Reconciliation runs that failed as a whole (Stripe could not list the sessions)",
            reconcile_failed_runs.clone(),
        );
        let reconcile_failed_sessions = Counter::default();
        registry.register(
            "reconcile_failed_sessions",
            "Paid sessions a completed reconciliation run could not apply (the next run tries them again)",
            reconcile_failed_sessions.clone(),
        );
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (idle, in_use)",
            db_pool.clone(),
        );
        let db_pool_max = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "Configured database pool size",
            db_pool_max.clone(),
        );
        let writer_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "writer_batch_size",
            "Jobs applied per ledger writer transaction",
            writer_batch_size.clone(),
        );
        let writer_queue_depth = Gauge::default();
        registry.register(
            "writer_queue_depth",
            "Jobs waiting for the ledger writer when it took its last batch",
            writer_queue_depth.clone(),
        );
        let writer_queue_capacity = Gauge::default();
        registry.register(
            "writer_queue_capacity",
            "Jobs the ledger writer's queue holds; a caller waits when it is full",
            writer_queue_capacity.clone(),
        );
        let ledger_credits = Family::<KindLabels, Counter>::default();
        registry.register(
            "ledger_credits",
            "Credits moved by committed ledger entries, by kind (purchase, grant, trial, consumption, refund, dispute, expiry, import)",
            ledger_credits.clone(),
        );
        let holds = Family::<HoldLabels, Counter>::default();
        registry.register(
            "holds",
            "Holds by outcome (reserved, captured, released, expired)",
            holds.clone(),
        );
        let account_events = Counter::default();
        registry.register(
            "account_events",
            "Account events written by committed ledger batches",
            account_events.clone(),
        );
        let top_up_steps = Family::<StateLabels, Counter>::default();
        registry.register(
            "top_up_steps",
            "Auto top-up steps the worker recorded, by the state the attempt reached (charging, awaiting_payment, unknown, declined, requires_action, limit_reached, failed, abandoned)",
            top_up_steps.clone(),
        );
        // The series the chart's CreditsTopUpFailures alert watches, there from the start so
        // that its first count is an increase.
        let _ = top_up_steps.get_or_create(&StateLabels { state: "failed" });
        let notifications_delivered = Counter::default();
        registry.register(
            "notifications_delivered",
            "Account events a webhook receiver accepted (2xx)",
            notifications_delivered.clone(),
        );
        let notifications_failures = Counter::default();
        registry.register(
            "notifications_failures",
            "Account event deliveries that failed (non-2xx, timeout, connection error)",
            notifications_failures.clone(),
        );
        let notifications_given_up = Counter::default();
        registry.register(
            "notifications_given_up",
            "Account events whose delivery was given up after NOTIFY_GIVE_UP_AFTER",
            notifications_given_up.clone(),
        );
        let notification_backlog = Gauge::default();
        registry.register(
            "notification_backlog",
            "Account events neither delivered nor given up",
            notification_backlog.clone(),
        );
        let notification_oldest_pending = Gauge::default();
        registry.register(
            "notification_oldest_pending_seconds",
            "Age of the oldest account event neither delivered nor given up (0: none)",
            notification_oldest_pending.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            writer_batch_size,
            writer_queue_depth,
            writer_queue_capacity,
            ledger_credits,
            holds,
            rpc_requests,
            rpc_duration,
            webhook_events,
            webhook_responses,
            webhook_duration,
            credits_granted,
            reconcile_runs,
            reconcile_fixed,
            reconcile_failed_runs,
            reconcile_failed_sessions,
            db_pool,
            db_pool_max,
            account_events,
            top_up_steps,
            notifications_delivered,
            notifications_failures,
            notifications_given_up,
            notification_backlog,
            notification_oldest_pending,
        }))
    }

    /// One finished RPC: `method` is a known RPC name or `unknown` (`grpc::service::rpc_method`).
    pub(crate) fn rpc(&self, method: &'static str, code: &'static str, elapsed: Duration) {
        self.0
            .rpc_requests
            .get_or_create(&RpcLabels { method, code })
            .inc();
        self.0
            .rpc_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// One webhook delivery; `credits` are counted when the outcome granted them.
    pub(crate) fn webhook(&self, event_type: &'static str, outcome: &str, credits: i64, started: Instant) {
        self.0
            .webhook_events
            .get_or_create(&WebhookLabels {
                event_type,
                outcome: outcome.to_owned(),
            })
            .inc();
        self.0.webhook_duration.observe(started.elapsed().as_secs_f64());
        if outcome == "credited"
            && let Ok(credits) = u64::try_from(credits)
        {
            self.0.credits_granted.inc_by(credits);
        }
    }

    /// One answer of the webhook route, whoever gave it.
    pub(crate) fn webhook_response(&self, status: u16, outcome: &'static str) {
        self.0
            .webhook_responses
            .get_or_create(&AnswerLabels { status, outcome })
            .inc();
    }

    /// A batch the ledger writer took, and the jobs still waiting then.
    pub(crate) fn writer_batch(&self, size: usize, waiting: usize) {
        self.0.writer_batch_size.observe(size as f64);
        self.0
            .writer_queue_depth
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The size of the writer's queue, set once when the writer starts.
    pub(crate) fn writer_queue_capacity(&self, capacity: usize) {
        self.0
            .writer_queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }

    /// Credits a committed batch moved, per entry kind.
    pub(crate) fn ledger_credits(&self, kind: &'static str, credits: u64) {
        self.0
            .ledger_credits
            .get_or_create(&KindLabels { kind })
            .inc_by(credits);
    }

    /// Holds a committed batch reserved or ended.
    pub(crate) fn holds(&self, outcome: &'static str, count: u64) {
        self.0.holds.get_or_create(&HoldLabels { outcome }).inc_by(count);
    }

    /// Account events a committed batch wrote.
    pub(crate) fn account_events(&self, count: u64) {
        self.0.account_events.inc_by(count);
    }

    /// One auto top-up step that moved its attempt to `state`.
    pub(crate) fn top_up_step(&self, state: &'static str) {
        self.0.top_up_steps.get_or_create(&StateLabels { state }).inc();
    }

    /// One account event a webhook receiver accepted.
    pub(crate) fn notification_delivered(&self) {
        self.0.notifications_delivered.inc();
    }

    /// One failed delivery attempt.
    pub(crate) fn notification_failed(&self) {
        self.0.notifications_failures.inc();
    }

    /// One account event given up.
    pub(crate) fn notification_given_up(&self) {
        self.0.notifications_given_up.inc();
    }

    /// The events still to deliver, and the age of the oldest in seconds.
    pub(crate) fn notification_backlog(&self, count: u64, oldest_age_secs: i64) {
        self.0
            .notification_backlog
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        self.0.notification_oldest_pending.set(oldest_age_secs);
    }

    /// One finished reconciliation run, the sessions it credited and those it could not apply.
    pub(crate) fn reconcile(&self, fixed: usize, failed: usize, credits: i64) {
        self.0.reconcile_runs.inc();
        self.0.reconcile_fixed.inc_by(fixed as u64);
        self.0.reconcile_failed_sessions.inc_by(failed as u64);
        if let Ok(credits) = u64::try_from(credits) {
            self.0.credits_granted.inc_by(credits);
        }
    }

    /// One reconciliation run that failed as a whole.
    pub(crate) fn reconcile_failed(&self) {
        self.0.reconcile_failed_runs.inc();
    }

    /// The registry in Prometheus/OpenMetrics text, with pool gauges read now.
    pub(crate) fn render(
        &self,
        db: &DatabaseConnection,
        max_connections: u32,
    ) -> Result<String, std::fmt::Error> {
        let (size, idle) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let in_use = i64::from(size).saturating_sub(idle);
        self.0
            .db_pool
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.0
            .db_pool
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(in_use);
        self.0.db_pool_max.set(i64::from(max_connections));
        let mut text = String::new();
        encode(&mut text, &self.0.registry)?;
        Ok(text)
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: Metrics,
    db: DatabaseConnection,
    max_connections: u32,
}

/// `GET /metrics`; merged into the HTTP router by `app`.
pub(crate) fn router(metrics: Metrics, db: DatabaseConnection, max_connections: u32) -> Router {
    Router::new()
        .route(METRICS_PATH, get(scrape))
        .with_state(MetricsState {
            metrics,
            db,
            max_connections,
        })
}

async fn scrape(State(state): State<MetricsState>) -> impl IntoResponse {
    match state.metrics.render(&state.db, state.max_connections) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.rpc("GetBalance", "OK", Duration::from_millis(3));
        metrics.webhook("checkout.session.completed", "credited", 500, Instant::now());
        let mut text = String::new();
        encode(&mut text, &metrics.0.registry).expect("encodes");
        assert!(
            text.contains(r#"credits_grpc_requests_total{method="GetBalance",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"credits_webhook_events_total{event_type="checkout.session.completed",outcome="credited"} 1"#),
            "{text}"
        );
        assert!(text.contains("credits_credits_granted_total 500"), "{text}");
    }
}
