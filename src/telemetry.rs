//! Logging and tracing set-up: one call at start, returning a guard held until exit.
//!
//! Log lines go to stdout, as JSON objects (one per line, with `trace_id`/`span_id` when
//! traces are exported) or as compact human-readable text. When `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, spans are also exported over OTLP/gRPC and a caller's W3C `traceparent` is continued;
//! otherwise no OpenTelemetry layer is installed at all.

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use axum::http::HeaderMap;
use opentelemetry::{
    KeyValue,
    propagation::{Extractor, TextMapPropagator},
    trace::{TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde_json::{Map, Value};
use tracing::{Event, Span, Subscriber, field::Field};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::{LookupSpan, Registry},
};

use crate::config::{LogFormat, TelemetrySettings};

/// Whether spans are exported; remote parents are only extracted when they are.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Held by `main`; dropping it flushes buffered spans and shuts the exporter down.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("credits: flushing traces failed: {err}");
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Installs the global subscriber: the `RUST_LOG` filter (checked by the settings), JSON or pretty lines,
/// and the OTLP layer when an endpoint is configured. Must run inside the Tokio runtime (the
/// exporter's gRPC channel lives there). A second call (tests) keeps the first subscriber.
pub fn init(
    format: LogFormat,
    log_filter: &str,
    otel: &TelemetrySettings,
) -> Result<TelemetryGuard, TelemetryError> {
    // Settings checked the filter; should it still not parse, the default applies.
    let filter = EnvFilter::builder()
        .parse(log_filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG_FILTER));
    let provider = match &otel.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                .build()?;
            let resource = Resource::builder_empty()
                .with_service_name(otel.service_name.clone())
                .with_attributes(
                    otel.resource_attributes
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                )
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("credits")));
    let exporting = provider.is_some();
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().event_format(JsonLines { exporting }))
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    if installed.is_ok() {
        EXPORTING.store(exporting, Ordering::SeqCst);
    }
    Ok(TelemetryGuard { provider })
}

/// The span of one `CreditsService` RPC; the caller's `traceparent` becomes its parent.
/// `method` is a known RPC name or `unknown`, never the raw path. Handlers record
/// `account_id`; the gRPC guard records the code and latency.
pub(crate) fn rpc_span(service: &str, method: &str, headers: &HeaderMap) -> Span {
    let name = format!("{service}/{method}");
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        account_id = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    if !headers.contains_key("traceparent") {
        return span;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = parent.span().span_context().clone();
    if !remote.is_valid() {
        return span;
    }
    if EXPORTING.load(Ordering::Relaxed) {
        // Only fails when no OpenTelemetry layer is installed, which EXPORTING rules out.
        let _ = span.set_parent(parent);
    } else {
        // Not exported, but log lines can still name the caller's trace.
        span.with_subscriber(|(id, dispatch)| {
            if let Some(registry) = dispatch.downcast_ref::<Registry>()
                && let Some(data) = registry.span(id)
            {
                data.extensions_mut().insert(RemoteTraceId(remote.trace_id()));
            }
        });
    }
    span
}

/// The caller's W3C trace id, kept on an RPC span when spans are not exported.
#[derive(Clone, Copy)]
struct RemoteTraceId(TraceId);

/// Reads W3C trace context from HTTP/2 headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// One JSON object per line: timestamp, level, target, message, the event's fields, the
/// innermost span's name and its `trace_id` and `span_id`: OpenTelemetry's when traces are
/// exported; otherwise the caller's trace id (if it sent one) and the local span id.
struct JsonLines {
    exporting: bool,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut line));
        if let Some(span) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            line.insert("span".into(), span.name().into());
            if self.exporting {
                let ids = tracing::dispatcher::get_default(|dispatch| {
                    tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                });
                if let Some(cx) = ids {
                    let otel_span = cx.span();
                    let sc = otel_span.span_context();
                    if sc.is_valid() {
                        line.insert("trace_id".into(), sc.trace_id().to_string().into());
                        line.insert("span_id".into(), sc.span_id().to_string().into());
                    }
                }
            } else {
                let remote = span
                    .scope()
                    .find_map(|s| s.extensions().get::<RemoteTraceId>().copied());
                if let Some(RemoteTraceId(trace_id)) = remote {
                    line.insert("trace_id".into(), trace_id.to_string().into());
                }
                line.insert("span_id".into(), format!("{:016x}", span.id().into_u64()).into());
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
