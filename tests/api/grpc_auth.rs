//! Internal callers: bearer tokens on CreditsService (health and reflection stay open), TLS and
//! mTLS on the gRPC listener, and production refusing to serve gRPC without either.

use std::{path::Path, time::Duration};

use credits::grpc::pb::{self, credits_service_client::CreditsServiceClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};

use crate::helpers::{TestApp, grpc_channel};

fn list_packs(token: Option<&str>) -> Request<pb::ListCreditPacksRequest> {
    let mut request = Request::new(pb::ListCreditPacksRequest::default());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().expect("ascii header"));
    }
    request
}

#[tokio::test]
async fn credits_service_needs_one_of_the_configured_bearer_tokens() {
    let app = TestApp::builder()
        .env("GRPC_AUTH_TOKENS", "token-alpha, token-beta")
        .spawn()
        .await;
    let mut client = app.grpc.clone();

    for refused in [
        None,
        Some("Bearer wrong"),
        Some("token-alpha"),
        Some("Basic token-alpha"),
    ] {
        let status = client
            .list_credit_packs(list_packs(refused))
            .await
            .expect_err("refused without a valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{refused:?}: {status:?}");
        assert!(!status.message().contains("token-alpha"), "{status:?}");
    }
    for accepted in ["Bearer token-alpha", "Bearer token-beta"] {
        let packs = client
            .list_credit_packs(list_packs(Some(accepted)))
            .await
            .expect("a configured token is accepted")
            .into_inner();
        assert!(!packs.packs.is_empty());
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open_when_tokens_are_required() {
    let app = TestApp::builder()
        .env("GRPC_AUTH_TOKENS", "token-alpha")
        .spawn()
        .await;
    let mut health = HealthClient::new(grpc_channel(app.grpc_addr).await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    let mut reflection = ServerReflectionClient::new(grpc_channel(app.grpc_addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection needs no token")
        .into_inner();
    stream
        .message()
        .await
        .expect("reflection answers")
        .expect("one response");
}

/// A CA, a server certificate for `localhost` and a client certificate, all from the CA.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "credits test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("billing-client");
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path.display().to_string()
}

async fn tls_channel(
    port: u16,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestApp::builder()
        .env(
            "GRPC_TLS_CERT",
            &write(dir.path(), "server.pem", &pki.server_cert),
        )
        .env("GRPC_TLS_KEY", &write(dir.path(), "server.key", &pki.server_key))
        .spawn_server()
        .await;
    let port = server.grpc_addr.port();

    let channel = tls_channel(port, &pki, false).await.expect("TLS connects");
    let packs = CreditsServiceClient::new(channel)
        .list_credit_packs(pb::ListCreditPacksRequest::default())
        .await
        .expect("RPC over TLS");
    assert!(!packs.into_inner().packs.is_empty());

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await?;
        CreditsServiceClient::new(channel)
            .list_credit_packs(pb::ListCreditPacksRequest::default())
            .await
            .map_err(|status| -> Box<dyn std::error::Error> { Box::new(status) })?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let plaintext = tokio::time::timeout(Duration::from_secs(10), plaintext)
        .await
        .expect("plaintext attempt ends");
    assert!(plaintext.is_err(), "a plaintext client must not get an answer");
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestApp::builder()
        .env(
            "GRPC_TLS_CERT",
            &write(dir.path(), "server.pem", &pki.server_cert),
        )
        .env("GRPC_TLS_KEY", &write(dir.path(), "server.key", &pki.server_key))
        .env("GRPC_TLS_CLIENT_CA", &write(dir.path(), "ca.pem", &pki.ca))
        .spawn_server()
        .await;
    let port = server.grpc_addr.port();

    let channel = tls_channel(port, &pki, true).await.expect("mTLS connects");
    CreditsServiceClient::new(channel)
        .list_credit_packs(pb::ListCreditPacksRequest::default())
        .await
        .expect("RPC with a client certificate");

    let anonymous = async {
        let channel = tls_channel(port, &pki, false).await?;
        CreditsServiceClient::new(channel)
            .list_credit_packs(pb::ListCreditPacksRequest::default())
            .await
            .map_err(|status| -> Box<dyn std::error::Error> { Box::new(status) })?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let anonymous = tokio::time::timeout(Duration::from_secs(10), anonymous)
        .await
        .expect("anonymous attempt ends");
    assert!(anonymous.is_err(), "no client certificate, no answer");
}

#[tokio::test]
async fn production_without_grpc_auth_refuses_to_start_naming_the_variable() {
    let (env, _db, _stripe) = TestApp::builder().env("APP_ENV", "production").prepare().await;
    let run = |extra: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_credits"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().filter(|(_, v)| !v.is_empty()))
            .envs(extra.iter().copied())
            .env("SHUTDOWN_GRACE", "0")
            .output()
            .expect("run the binary")
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("GRPC_AUTH_TOKENS"), "{stderr}");
    assert!(refused.stdout.is_empty(), "nothing served");

    // Only serving needs it: the migration job of a production deploy runs without tokens.
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .arg("migrate")
        .env_clear()
        .envs(env.iter().filter(|(_, v)| !v.is_empty()))
        .output()
        .expect("run the binary");
    assert_eq!(
        migrate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
}
