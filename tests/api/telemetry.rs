//! Traces: the real binary exports its spans over OTLP/gRPC to a receiver run by the test,
//! continues the caller's W3C `traceparent`, and puts the trace ids in its JSON log lines.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::{Span, span::SpanKind},
};
use serde_json::Value;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::helpers::{
    FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, STANDARD_PRICE, WEBHOOK_SECRET, fixture, grpc_channel,
    now, spawn_app, spawn_process, stripe_signature,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A span with the attributes of the resource that sent it.
type ResourceSpan = (Vec<KeyValue>, Span);

/// What the receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ResourceSpan>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push((resource.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Received {
    fn named(&self, name: &str) -> Option<ResourceSpan> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, span)| span.name == name)
            .cloned()
    }
}

async fn start_receiver() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (addr, received)
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attr(attributes, key)? {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        Any::IntValue(i) => Some(*i),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_collector_and_continue_the_callers_trace() {
    let (receiver, received) = start_receiver().await;
    let app = spawn_app().await;
    app.mock_checkout_sessions().await;
    app.mock_line_items(FIXTURE_SESSION).await;
    let mut env = app.settings.clone();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://{receiver}"));
    env.insert("OTEL_SERVICE_NAME".into(), "credits-under-test".into());
    env.insert(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        "deployment.environment=test,service.version=9.9.9".into(),
    );
    let mut server = spawn_process(&env).await;

    let mut client = CreditsServiceClient::new(grpc_channel(server.grpc_addr).await);
    let mut request = tonic::Request::new(pb::PurchaseCreditsRequest {
        account_id: FIXTURE_ACCOUNT.into(),
        email: FIXTURE_EMAIL.into(),
        price_id: STANDARD_PRICE.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("ascii"),
    );
    client.purchase_credits(request).await.expect("purchase");

    let body = fixture("checkout_session_completed.json");
    let response = app
        .http
        .post(format!("http://{}/account/stripe-webhook/", server.http_addr))
        .header("Stripe-Signature", stripe_signature(&body, WEBHOOK_SECRET, now()))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status(), 200);

    // Shutting down flushes the batch exporter.
    server.terminate();
    assert_eq!(server.wait(Duration::from_secs(20)).await, Some(0));
    let mut rpc = None;
    for _ in 0..50 {
        rpc = received.named("credits.v1.CreditsService/PurchaseCredits");
        if rpc.is_some() && received.named("stripe.webhook").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (resource, rpc) = rpc.expect("the RPC span arrived");
    assert_eq!(
        string(&resource, "service.name").as_deref(),
        Some("credits-under-test")
    );
    assert_eq!(
        string(&resource, "deployment.environment").as_deref(),
        Some("test")
    );

    assert_eq!(
        hex::encode(&rpc.trace_id),
        TRACE_ID,
        "the caller's trace continues"
    );
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        PARENT_SPAN_ID,
        "parented to the caller's span"
    );
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(string(&rpc.attributes, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        string(&rpc.attributes, "rpc.service").as_deref(),
        Some("credits.v1.CreditsService")
    );
    assert_eq!(
        string(&rpc.attributes, "rpc.method").as_deref(),
        Some("PurchaseCredits")
    );
    assert_eq!(
        string(&rpc.attributes, "account_id").as_deref(),
        Some(FIXTURE_ACCOUNT)
    );
    assert_eq!(int(&rpc.attributes, "rpc.grpc.status_code"), Some(0));
    assert!(
        int(&rpc.attributes, "latency_ms").is_some(),
        "{:?}",
        rpc.attributes
    );

    let (_, webhook) = received
        .named("stripe.webhook")
        .expect("the webhook span arrived");
    assert_eq!(
        string(&webhook.attributes, "event_type").as_deref(),
        Some("checkout.session.completed")
    );
    assert!(
        string(&webhook.attributes, "event_id").is_some_and(|id| id.starts_with("evt_")),
        "{:?}",
        webhook.attributes
    );
    assert_eq!(
        string(&webhook.attributes, "outcome").as_deref(),
        Some("credited")
    );
    assert_eq!(
        string(&webhook.attributes, "account_id").as_deref(),
        Some(FIXTURE_ACCOUNT)
    );
    assert!(int(&webhook.attributes, "latency_ms").is_some());

    // The RPC's log line carries the same trace id.
    let output = server.output();
    let rpc_line = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|log| log["message"] == "rpc" && log["method"] == "PurchaseCredits")
        .unwrap_or_else(|| panic!("an rpc log line in {output:#?}"));
    assert_eq!(rpc_line["trace_id"], TRACE_ID, "{rpc_line}");
    assert_eq!(rpc_line["span_id"], hex::encode(&rpc.span_id), "{rpc_line}");
}
