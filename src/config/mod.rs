//! Settings: parsed once from the environment (and `.env`), validated, secrets redacted.
//! Nothing else in the crate reads `std::env`.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod console;
mod ledger;
mod money_loop;
mod ops;
mod redact;
mod redirects;
pub use console::ConsoleRole;
pub(crate) use console::{ConsoleSettings, is_user_name};
pub(crate) use ledger::LedgerSettings;
pub(crate) use money_loop::{EventSettings, TopUpSettings};
pub use ops::TelemetrySettings;
pub(crate) use ops::{GrpcSettings, HttpSettings, TlsSettings};
use redact::{UserName, redact_endpoint, redact_url, refuse_unread_secrets};
pub(crate) use redirects::{RedirectOriginError, RedirectPolicy, is_plain_http_off_loopback, parse_origin};

/// The log filter when `RUST_LOG` is unset: our lines at info, chatty dependencies at warn.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,h2=warn,hyper=warn";

/// Which safety rules apply: `production` refuses to serve without Stripe secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Everything the service needs to run, parsed and checked at start.
#[derive(Clone)]
pub struct Settings {
    pub(crate) app_env: AppEnv,
    pub(crate) database_url: SecretString,
    pub(crate) database_max_connections: u32,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) migrate_on_start: bool,
    pub(crate) credit_packs_file: PathBuf,
    pub(crate) stripe: StripeSettings,
    pub(crate) frontend_url: Url,
    /// `ALLOWED_REDIRECT_ORIGINS` (default: FRONTEND_URL's origin): where a caller's Checkout
    /// success/cancel URLs may lead.
    pub(crate) redirects: RedirectPolicy,
    pub log_format: LogFormat,
    /// `RUST_LOG`, checked at start (a bad directive stops start-up rather than falling back).
    pub log_filter: String,
    /// How often the database is probed for the health service.
    pub(crate) health_check_interval: Duration,
    /// How long in-flight requests get to finish after SIGTERM.
    pub(crate) shutdown_grace: Duration,
    /// How long the listeners keep accepting after health turns NOT_SERVING on SIGTERM.
    pub(crate) shutdown_delay: Duration,
    pub telemetry: TelemetrySettings,
    pub(crate) grpc: GrpcSettings,
    pub(crate) http: HttpSettings,
    /// When set, `serve` reconciles with Stripe this often (one replica at a time).
    pub(crate) reconcile_interval: Option<Duration>,
    /// How far back a periodic reconciliation looks.
    pub(crate) reconcile_lookback: Duration,
    /// Processed events older than this are pruned; unmatched and failed ones are kept.
    pub(crate) event_retention_days: u32,
    pub(crate) ledger: LedgerSettings,
    pub(crate) events: EventSettings,
    pub(crate) top_up: TopUpSettings,
    /// The operator console under `/console`; `None` when it is off.
    pub(crate) console: Option<ConsoleSettings>,
}

/// Stripe keys and endpoints.
#[derive(Clone)]
pub struct StripeSettings {
    pub secret_key: Option<SecretString>,
    pub publishable_key: String,
    /// Several during a secret rotation: any one verifies a webhook.
    pub webhook_secrets: Vec<SecretString>,
    pub webhook_tolerance: Duration,
    pub api_base: Url,
    pub timeout: Duration,
}

/// A variable that could not be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

impl Settings {
    /// Reads the process environment, after loading `.env` when there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth knowing about.
        if let Err(err) = dotenvy::dotenv()
            && !err.not_found()
        {
            return Err(ConfigError::new(".env", err.to_string()));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses settings from any variable source; tests pass a map.
    // Long on purpose: one line per setting, in README order.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let app_env = match var("APP_ENV").as_deref().map(str::trim) {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "APP_ENV",
                    format!("{other:?} is not one of development, production"),
                ));
            }
        };

        let database_url = var("DATABASE_URL").unwrap_or_else(|| "sqlite://credits.db?mode=rwc".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if database_url.starts_with("postgres") {
            refuse_unread_secrets(&database_url)?;
        }

        let secret_key = var("STRIPE_SECRET_KEY").map(SecretString::from);
        let webhook_secrets = secret_list(&var, "STRIPE_WEBHOOK_SECRET");
        let log_filter = var("RUST_LOG").unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned());
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&log_filter) {
            return Err(ConfigError::new("RUST_LOG", format!("{log_filter:?}: {err}")));
        }

        let log_format = match var("LOG_FORMAT").as_deref() {
            None if app_env == AppEnv::Production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("{other:?} is not one of json, pretty"),
                ));
            }
        };

        // Production sends buyers over https only; loopback stays open for local runs.
        let https_only = app_env == AppEnv::Production;
        let frontend_url = parse_http_url(&var, "FRONTEND_URL", "http://localhost:3000")?;
        if https_only && is_plain_http_off_loopback(&frontend_url.origin()) {
            let plain = RedirectOriginError::PlainHttp(frontend_url.origin().ascii_serialization());
            return Err(ConfigError::new("FRONTEND_URL", plain.to_string()));
        }
        let redirects = redirect_policy(&var, &frontend_url, https_only)?;

        Ok(Self {
            app_env,
            database_url: SecretString::from(database_url),
            database_max_connections: parse(&var, "DATABASE_MAX_CONNECTIONS", 10)?,
            grpc_addr: parse(&var, "GRPC_ADDR", SocketAddr::from(([0, 0, 0, 0], 50051)))?,
            http_addr: parse(&var, "HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            migrate_on_start: parse_bool(&var, "MIGRATE_ON_START", true)?,
            credit_packs_file: var("CREDIT_PACKS_FILE")
                .unwrap_or_else(|| "packs.toml".into())
                .into(),
            stripe: StripeSettings {
                secret_key,
                publishable_key: var("STRIPE_PUBLISHABLE_KEY").unwrap_or_default(),
                webhook_secrets,
                webhook_tolerance: Duration::from_secs(parse(&var, "STRIPE_WEBHOOK_TOLERANCE_SECS", 300)?),
                api_base: parse_http_url(&var, "STRIPE_API_BASE", "https://api.stripe.com")?,
                timeout: Duration::from_millis(parse(&var, "STRIPE_TIMEOUT_MS", 10_000)?),
            },
            frontend_url,
            redirects,
            log_format,
            log_filter,
            health_check_interval: Duration::from_millis(parse(&var, "HEALTH_CHECK_INTERVAL_MS", 5_000)?),
            shutdown_grace: parse_seconds(&var, "SHUTDOWN_GRACE", 10)?,
            shutdown_delay: ops::shutdown_delay(&var)?,
            telemetry: TelemetrySettings::from_lookup(&var)?,
            grpc: GrpcSettings::from_lookup(&var)?,
            http: HttpSettings::from_lookup(&var)?,
            reconcile_interval: var("RECONCILE_INTERVAL")
                .map(|raw| {
                    parse_duration(&raw).map_err(|reason| ConfigError::new("RECONCILE_INTERVAL", reason))
                })
                .transpose()?,
            reconcile_lookback: parse_duration(&var("RECONCILE_LOOKBACK").unwrap_or_else(|| "72h".into()))
                .map_err(|reason| ConfigError::new("RECONCILE_LOOKBACK", reason))?,
            event_retention_days: parse(&var, "EVENT_RETENTION_DAYS", 90)?,
            ledger: LedgerSettings::from_lookup(&var)?,
            events: EventSettings::from_lookup(&var)?,
            top_up: TopUpSettings::from_lookup(&var)?,
            console: console::from_lookup(&var, app_env)?,
        })
    }

    /// `serve` in production needs both Stripe secrets; other subcommands do not (`migrate`,
    /// `packs list` and `events list` never call Stripe or verify a webhook).
    pub fn check_stripe_for_serving(&self) -> Result<(), ConfigError> {
        self.check_stripe_key()?;
        if self.app_env == AppEnv::Production && self.stripe.webhook_secrets.is_empty() {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_SECRET",
                "required to serve when APP_ENV=production",
            ));
        }
        Ok(())
    }

    /// Subcommands that call Stripe in production need its secret key.
    pub fn check_stripe_key(&self) -> Result<(), ConfigError> {
        if self.app_env == AppEnv::Production && self.stripe.secret_key.is_none() {
            return Err(ConfigError::new(
                "STRIPE_SECRET_KEY",
                "required when APP_ENV=production",
            ));
        }
        Ok(())
    }

    /// The database URL with any password masked (user-info or query), for logs.
    pub fn database_url_redacted(&self) -> String {
        redact_url(self.database_url.expose_secret(), UserName::Shown)
    }
}

fn parse<T: FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|err| ConfigError::new(name, format!("{raw:?}: {err}"))),
    }
}

/// A duration written as a number and a unit: `90s`, `15m`, `72h`, `7d` (bare numbers are seconds).
pub(crate) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 90s, 15m, 72h or 7d"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return Err(format!("{raw:?} is not a duration like 90s, 15m, 72h or 7d")),
    };
    if seconds == 0 {
        return Err(format!("{raw:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Whole seconds, written `30` or `30s`.
fn parse_seconds(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(Duration::from_secs(default)),
        Some(raw) => raw
            .trim()
            .trim_end_matches('s')
            .parse()
            .map(Duration::from_secs)
            .map_err(|err| ConfigError::new(name, format!("{raw:?}: {err}"))),
    }
}

fn parse_bool(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(name, format!("{other:?} is not true or false"))),
    }
}

fn parse_http_url(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<Url, ConfigError> {
    let with_default = |n: &str| var(n).or_else(|| Some(default.to_owned()));
    parse_optional_http_url(&with_default, name)?.ok_or_else(|| ConfigError::new(name, "missing"))
}

/// An absolute http(s) URL, or `None` when the variable is unset.
fn parse_optional_http_url(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Url>, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(None);
    };
    // Quoted masked: an error line is printed like the start-up line.
    let shown = redact_url(raw.trim(), UserName::Masked);
    let url = Url::parse(raw.trim()).map_err(|err| ConfigError::new(name, format!("{shown:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(name, format!("{shown:?} is not an http(s) URL")));
    }
    Ok(Some(url))
}

/// `ALLOWED_REDIRECT_ORIGINS`, comma-separated; unset means FRONTEND_URL's origin alone.
fn redirect_policy(
    var: &impl Fn(&str) -> Option<String>,
    frontend_url: &Url,
    https_only: bool,
) -> Result<RedirectPolicy, ConfigError> {
    const VAR: &str = "ALLOWED_REDIRECT_ORIGINS";
    let origins = match var(VAR) {
        None => vec![frontend_url.origin()],
        Some(raw) => raw
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|entry| {
                parse_origin(entry).map_err(|err| {
                    ConfigError::new(VAR, format!("{}: {err}", redact_url(entry, UserName::Masked)))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    RedirectPolicy::new(origins, https_only).map_err(|err| ConfigError::new(VAR, err.to_string()))
}

/// Comma-separated secrets (several during a rotation), blanks dropped.
fn secret_list(var: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<SecretString> {
    var(name)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
                .collect()
        })
        .unwrap_or_default()
}

fn mask(secret: &Option<SecretString>) -> &'static str {
    if secret.is_some() { "set" } else { "unset" }
}

impl fmt::Display for Settings {
    /// One line per start for the log: every setting, secrets only saying whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |n: usize, what: &str| match n {
            0 => "unset".to_owned(),
            n => format!("{n} {what}(s)"),
        };
        let or_unset = |v: Option<String>| v.unwrap_or_else(|| "unset".to_owned());
        let path = |p: &std::path::Path| p.display().to_string();
        let tls = self.grpc.tls.as_ref();
        let settings: [(&str, String); 38] = [
            ("APP_ENV", format!("{:?}", self.app_env).to_lowercase()),
            ("DATABASE_URL", self.database_url_redacted()),
            (
                "DATABASE_MAX_CONNECTIONS",
                self.database_max_connections.to_string(),
            ),
            (
                "DATABASE_WRITER_CONNECTIONS",
                self.ledger.writer_connections.to_string(),
            ),
            ("GRPC_ADDR", self.grpc_addr.to_string()),
            ("HTTP_ADDR", self.http_addr.to_string()),
            ("MIGRATE_ON_START", self.migrate_on_start.to_string()),
            ("CREDIT_PACKS_FILE", path(&self.credit_packs_file)),
            ("STRIPE_SECRET_KEY", mask(&self.stripe.secret_key).to_owned()),
            (
                "STRIPE_PUBLISHABLE_KEY",
                or_unset(Some(self.stripe.publishable_key.clone()).filter(|k| !k.is_empty())),
            ),
            (
                "STRIPE_WEBHOOK_SECRET",
                count(self.stripe.webhook_secrets.len(), "secret"),
            ),
            (
                "STRIPE_WEBHOOK_TOLERANCE_SECS",
                self.stripe.webhook_tolerance.as_secs().to_string(),
            ),
            ("STRIPE_API_BASE", redact_endpoint(&self.stripe.api_base)),
            ("STRIPE_TIMEOUT_MS", self.stripe.timeout.as_millis().to_string()),
            ("FRONTEND_URL", redact_endpoint(&self.frontend_url)),
            ("ALLOWED_REDIRECT_ORIGINS", self.redirects.to_string()),
            (
                "HEALTH_CHECK_INTERVAL_MS",
                self.health_check_interval.as_millis().to_string(),
            ),
            ("SHUTDOWN_GRACE", self.shutdown_grace.as_secs().to_string()),
            ("SHUTDOWN_DELAY", self.shutdown_delay.as_secs().to_string()),
            (
                "RECONCILE_INTERVAL",
                or_unset(self.reconcile_interval.map(|d| format!("{}s", d.as_secs()))),
            ),
            (
                "RECONCILE_LOOKBACK",
                format!("{}s", self.reconcile_lookback.as_secs()),
            ),
            ("EVENT_RETENTION_DAYS", self.event_retention_days.to_string()),
            ("TRIAL_CREDITS", self.ledger.trial_credits.to_string()),
            (
                "TRIAL_CREDITS_EXPIRE_DAYS",
                or_unset(self.ledger.trial_expire_days.map(|d| d.to_string())),
            ),
            (
                "EXPIRY_INTERVAL",
                format!("{}s", self.ledger.expiry_interval.as_secs()),
            ),
            ("LOG_FORMAT", format!("{:?}", self.log_format).to_lowercase()),
            ("RUST_LOG", self.log_filter.clone()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                or_unset(self.telemetry.otlp_endpoint.as_ref().map(redact_endpoint)),
            ),
            ("OTEL_SERVICE_NAME", self.telemetry.service_name.clone()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                count(self.telemetry.resource_attributes.len(), "attribute"),
            ),
            ("GRPC_AUTH_TOKENS", count(self.grpc.auth_tokens.len(), "token")),
            (
                "GRPC_AUTH",
                if self.grpc.auth_none { "none" } else { "unset" }.to_owned(),
            ),
            ("GRPC_TLS_CERT", or_unset(tls.map(|t| path(&t.cert)))),
            ("GRPC_TLS_KEY", or_unset(tls.map(|t| path(&t.key)))),
            (
                "GRPC_TLS_CLIENT_CA",
                or_unset(tls.and_then(|t| t.client_ca.as_deref()).map(path)),
            ),
            (
                "GRPC_REQUEST_TIMEOUT_MS",
                self.grpc.request_timeout.as_millis().to_string(),
            ),
            ("GRPC_CONCURRENCY_LIMIT", self.grpc.concurrency_limit.to_string()),
            (
                "HTTP_REQUEST_TIMEOUT_MS",
                self.http.request_timeout.as_millis().to_string(),
            ),
        ];
        let http = [
            ("HTTP_CONCURRENCY_LIMIT", self.http.concurrency_limit.to_string()),
            (
                "HTTP_HEADER_READ_TIMEOUT_MS",
                self.http.header_read_timeout.as_millis().to_string(),
            ),
            (
                "HTTP_BODY_READ_TIMEOUT_MS",
                self.http.body_read_timeout.as_millis().to_string(),
            ),
        ];
        let events = &self.events;
        let money_loop = [
            ("LOW_BALANCE_THRESHOLD", events.low_balance_threshold.to_string()),
            ("ACCOUNT_EVENTS_CONSUMED", events.consumed_events.to_string()),
            ("ACCOUNT_EVENTS_RETENTION_DAYS", events.retention_days.to_string()),
            (
                "NOTIFY_WEBHOOK_URL",
                or_unset(events.webhook_url.as_ref().map(redact_endpoint)),
            ),
            ("NOTIFY_WEBHOOK_SECRET", mask(&events.webhook_secret).to_owned()),
            (
                "NOTIFY_WEBHOOK_TIMEOUT_MS",
                events.webhook_timeout.as_millis().to_string(),
            ),
            ("NOTIFY_RETRY_BASE_MS", events.retry_base.as_millis().to_string()),
            (
                "NOTIFY_GIVE_UP_AFTER",
                format!("{}s", events.give_up_after.as_secs()),
            ),
            ("TOP_UP_INTERVAL_MS", self.top_up.interval.as_millis().to_string()),
            (
                "TOP_UP_RETRY_DELAY",
                format!("{}s", self.top_up.retry_delay.as_secs()),
            ),
            (
                "TOP_UP_UNKNOWN_DELAY",
                format!("{}s", self.top_up.unknown_delay.as_secs()),
            ),
        ];
        let console = ConsoleSettings::shown(self.console.as_ref());
        for (n, (name, value)) in settings
            .iter()
            .chain(http.iter())
            .chain(money_loop.iter())
            .chain(console.iter())
            .enumerate()
        {
            if n > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
