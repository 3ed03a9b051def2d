//! Operational settings: telemetry export, gRPC auth and TLS, per-transport limits.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use url::Url;

use super::{AppEnv, ConfigError, parse, parse_optional_http_url, parse_seconds, secret_list};

/// OTLP export; `otlp_endpoint: None` means no exporter is built at all.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, the collector's gRPC endpoint.
    pub otlp_endpoint: Option<Url>,
    /// `OTEL_SERVICE_NAME`, default `credits`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value`.
    pub resource_attributes: Vec<(String, String)>,
}

/// Who may call `credits.v1.CreditsService`, and how the gRPC listener is secured.
#[derive(Clone)]
pub(crate) struct GrpcSettings {
    /// `GRPC_AUTH_TOKENS`: accepted bearer tokens; empty = no token check.
    pub auth_tokens: Vec<SecretString>,
    /// `GRPC_TLS_CERT` / `GRPC_TLS_KEY` / `GRPC_TLS_CLIENT_CA`.
    pub tls: Option<TlsSettings>,
    /// `GRPC_AUTH=none`: serving without tokens or mTLS is intended, even in production.
    pub auth_none: bool,
    /// `GRPC_REQUEST_TIMEOUT_MS`: an RPC running longer answers DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// `GRPC_CONCURRENCY_LIMIT`: RPCs in flight at once; more answer RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
}

/// PEM files for the gRPC listener.
#[derive(Clone, Debug)]
pub(crate) struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Limits of the HTTP listener and its webhook route.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpSettings {
    /// `HTTP_REQUEST_TIMEOUT_MS`: a webhook running longer answers 503 (Stripe retries).
    pub request_timeout: Duration,
    /// `HTTP_CONCURRENCY_LIMIT`: webhooks in flight at once; more answer 503.
    pub concurrency_limit: usize,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: a connection whose request head has not arrived whole by
    /// then (idle keep-alive ones included) is closed.
    pub header_read_timeout: Duration,
    /// `HTTP_BODY_READ_TIMEOUT_MS`: a request body not received whole this long after its
    /// headers answers 408.
    pub body_read_timeout: Duration,
}

/// How long shutdown keeps serving after flipping health, before draining.
pub(super) fn shutdown_delay(var: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    parse_seconds(var, "SHUTDOWN_DELAY", 0)
}

impl TelemetrySettings {
    /// Parses the `OTEL_*` variables from any source (`Settings` passes the environment).
    pub fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let otlp_endpoint = parse_optional_http_url(var, "OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let mut resource_attributes = Vec::new();
        for pair in var("OTEL_RESOURCE_ATTRIBUTES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(ConfigError::new(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("{pair:?} is not key=value"),
                ));
            };
            resource_attributes.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Self {
            otlp_endpoint,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "credits".into()),
            resource_attributes,
        })
    }
}

impl GrpcSettings {
    pub(super) fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let auth_tokens = secret_list(var, "GRPC_AUTH_TOKENS");
        let path = |name| var(name).map(|p| PathBuf::from(p.trim()));
        let tls = match (path("GRPC_TLS_CERT"), path("GRPC_TLS_KEY")) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert,
                key,
                client_ca: path("GRPC_TLS_CLIENT_CA"),
            }),
            (None, None) if var("GRPC_TLS_CLIENT_CA").is_some() => {
                return Err(ConfigError::new(
                    "GRPC_TLS_CLIENT_CA",
                    "needs GRPC_TLS_CERT and GRPC_TLS_KEY",
                ));
            }
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::new("GRPC_TLS_KEY", "needed with GRPC_TLS_CERT")),
            (None, Some(_)) => return Err(ConfigError::new("GRPC_TLS_CERT", "needed with GRPC_TLS_KEY")),
        };
        let auth_none = match var("GRPC_AUTH").as_deref().map(str::trim) {
            None => false,
            Some("none") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "GRPC_AUTH",
                    format!("{other:?}: the only accepted value is none"),
                ));
            }
        };
        let concurrency_limit: usize = parse(var, "GRPC_CONCURRENCY_LIMIT", 256)?;
        if concurrency_limit == 0 {
            return Err(ConfigError::new("GRPC_CONCURRENCY_LIMIT", "must be at least 1"));
        }
        Ok(Self {
            auth_tokens,
            auth_none,
            tls,
            request_timeout: Duration::from_millis(parse(var, "GRPC_REQUEST_TIMEOUT_MS", 30_000)?),
            concurrency_limit,
        })
    }
}

impl GrpcSettings {
    /// Serving gRPC in production needs tokens, mTLS or an explicit `GRPC_AUTH=none`. Checked
    /// by `serve` only, so `migrate` and `packs` run without the serving secrets.
    pub(crate) fn check_serving(&self, app_env: AppEnv) -> Result<(), ConfigError> {
        let mtls = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if app_env == AppEnv::Production && self.auth_tokens.is_empty() && !mtls && !self.auth_none {
            return Err(ConfigError::new(
                "GRPC_AUTH_TOKENS",
                "required to serve gRPC when APP_ENV=production (or mTLS with \
                 GRPC_TLS_CLIENT_CA; GRPC_AUTH=none serves without auth)",
            ));
        }
        Ok(())
    }
}

impl HttpSettings {
    pub(super) fn from_lookup(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let concurrency_limit: usize = parse(var, "HTTP_CONCURRENCY_LIMIT", 256)?;
        if concurrency_limit == 0 {
            return Err(ConfigError::new("HTTP_CONCURRENCY_LIMIT", "must be at least 1"));
        }
        Ok(Self {
            request_timeout: Duration::from_millis(parse(var, "HTTP_REQUEST_TIMEOUT_MS", 30_000)?),
            concurrency_limit,
            header_read_timeout: positive_millis(var, "HTTP_HEADER_READ_TIMEOUT_MS", 5_000)?,
            body_read_timeout: positive_millis(var, "HTTP_BODY_READ_TIMEOUT_MS", 10_000)?,
        })
    }
}

/// Milliseconds, at least 1: a zero read timeout would cut every client off at once.
fn positive_millis(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match parse(var, name, default)? {
        0 => Err(ConfigError::new(name, "must be at least 1")),
        millis => Ok(Duration::from_millis(millis)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn grpc(vars: &[(&str, &str)], env: AppEnv) -> Result<GrpcSettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let settings = GrpcSettings::from_lookup(&|k: &str| map.get(k).map(|v| (*v).to_owned()))?;
        settings.check_serving(env)?;
        Ok(settings)
    }

    #[test]
    fn production_needs_tokens_or_mtls_or_an_explicit_none() {
        let err = grpc(&[], AppEnv::Production).err().map(|e| e.var);
        assert_eq!(err, Some("GRPC_AUTH_TOKENS"));
        assert!(grpc(&[("GRPC_AUTH_TOKENS", "a,b")], AppEnv::Production).is_ok());
        assert!(grpc(&[("GRPC_AUTH", "none")], AppEnv::Production).is_ok());
        let mtls = [
            ("GRPC_TLS_CERT", "c.pem"),
            ("GRPC_TLS_KEY", "k.pem"),
            ("GRPC_TLS_CLIENT_CA", "ca.pem"),
        ];
        assert!(grpc(&mtls, AppEnv::Production).is_ok());
        assert!(grpc(&[], AppEnv::Development).is_ok());
    }

    #[test]
    fn tls_needs_both_files() {
        let err = grpc(&[("GRPC_TLS_CERT", "c.pem")], AppEnv::Development)
            .err()
            .map(|e| e.var);
        assert_eq!(err, Some("GRPC_TLS_KEY"));
    }

    #[test]
    fn http_read_timeouts_default_and_refuse_zero() {
        let http = |vars: &[(&str, &str)]| {
            let map: HashMap<&str, &str> = vars.iter().copied().collect();
            HttpSettings::from_lookup(&|k: &str| map.get(k).map(|v| (*v).to_owned()))
        };
        let defaults = http(&[]).expect("defaults are valid");
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(5));
        assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
        let set = http(&[
            ("HTTP_HEADER_READ_TIMEOUT_MS", "1"),
            ("HTTP_BODY_READ_TIMEOUT_MS", "250"),
        ])
        .expect("valid");
        assert_eq!(set.header_read_timeout, Duration::from_millis(1));
        assert_eq!(set.body_read_timeout, Duration::from_millis(250));
        for name in ["HTTP_HEADER_READ_TIMEOUT_MS", "HTTP_BODY_READ_TIMEOUT_MS"] {
            assert_eq!(http(&[(name, "0")]).err().map(|e| e.var), Some(name));
            assert_eq!(http(&[(name, "soon")]).err().map(|e| e.var), Some(name));
        }
    }

    #[test]
    fn resource_attributes_are_key_value_pairs() {
        let map: HashMap<&str, &str> = [(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, k8s.pod.name=p-1",
        )]
        .into();
        let t =
            TelemetrySettings::from_lookup(&|k: &str| map.get(k).map(|v| (*v).to_owned())).expect("valid");
        assert_eq!(t.resource_attributes.len(), 2);
        assert_eq!(t.resource_attributes[1], ("k8s.pod.name".into(), "p-1".into()));
        assert_eq!(t.service_name, "credits");
        assert!(t.otlp_endpoint.is_none());
    }
}
