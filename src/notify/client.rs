//! The outbound webhook's HTTP client: hyper's pooled client over hyper-rustls (ring, Mozilla's
//! roots), the stack the Stripe client already uses. Every POST ends by `NOTIFY_WEBHOOK_TIMEOUT_MS`
//! (connecting included), so a dead or slow receiver costs the worker at most that.

use std::time::Duration;

use http_body_util::Full;
use hyper::{Method, Request, Uri, body::Bytes, header};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::signature;

/// The header carrying the event's id (also in the body), for receivers that dedupe early.
pub(crate) const EVENT_ID_HEADER: &str = "Credits-Event-Id";

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("NOTIFY_WEBHOOK_URL is not a URI hyper accepts: {0}")]
    Url(String),
    #[error("TLS configuration")]
    Tls(#[from] rustls::Error),
}

/// Why one POST did not count as delivered; its text is `last_delivery_error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("request failed: {0}")]
    Request(String),
}

/// POSTs signed event bodies to one URL. Cheap to clone.
#[derive(Clone)]
pub(crate) struct WebhookClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl WebhookClient {
    pub(crate) fn new(url: &url::Url, timeout: Duration) -> Result<Self, ClientError> {
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|err: hyper::http::uri::InvalidUri| ClientError::Url(err.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            http,
            url: uri,
            timeout,
        })
    }

    /// One delivery: any 2xx within the timeout is success; the answer's body is not read.
    pub(crate) async fn post(&self, event_id: &str, signature: &str, body: Vec<u8>) -> Result<(), SendError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("credits/", env!("CARGO_PKG_VERSION")))
            .header(signature::HEADER, signature)
            .header(EVENT_ID_HEADER, event_id)
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| SendError::Request(err.to_string()))?;
        let answer = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| SendError::Timeout(self.timeout.as_millis()))?
            .map_err(|err| SendError::Request(crate::report::error_chain(&err)))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}
