//! Logging set-up: one call at start, returning a guard held until exit.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Held by `main`; dropping it flushes what telemetry buffers.
pub struct TelemetryGuard;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), JSON or pretty lines.
/// A second call (tests) keeps the first subscriber.
pub fn init(format: LogFormat) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,h2=warn,hyper=warn")
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    TelemetryGuard
}
