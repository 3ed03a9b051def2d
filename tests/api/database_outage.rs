//! A PostgreSQL server that is gone (connections refused, as when it is stopped): the write
//! path answers UNAVAILABLE / 503 promptly instead of holding every caller for the connection
//! pool's whole acquire timeout, and recovers by itself when the server is back. The server is
//! "stopped" by cutting a loopback proxy in front of it, so the shared cluster keeps running.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use credits::grpc::pb;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::helpers::{FIXTURE_ACCOUNT, FIXTURE_EMAIL, TestApp, TestDatabase};

/// Forwards loopback connections on `listen` to `upstream` until aborted (which also drops
/// every forwarded connection).
fn proxy(listener: TcpListener, upstream: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

async fn consume(app: &TestApp, key: &str) -> Result<(), tonic::Status> {
    app.grpc
        .clone()
        .consume_credits(pb::ConsumeCreditsRequest {
            account: Some(pb::consume_credits_request::Account::AccountId(
                FIXTURE_ACCOUNT.into(),
            )),
            credits: 1,
            idempotency_key: key.into(),
            reason: "usage".into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn writes_answer_unavailable_promptly_while_postgres_is_gone_and_recover_after() {
    let db = TestDatabase::new().await;
    if !db.url.starts_with("postgres") {
        return; // A stopped server is PostgreSQL's outage; SQLite's is the busy lock (health.rs).
    }
    let mut url = url::Url::parse(&db.url).expect("database URL");
    let upstream: SocketAddr = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432))
        .parse()
        .expect("a loopback address");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
    let proxy_addr = listener.local_addr().expect("proxy address");
    let mut running = proxy(listener, upstream);
    url.set_port(Some(proxy_addr.port())).expect("set port");
    let app = TestApp::builder()
        .database(db)
        .env("DATABASE_URL", url.as_str())
        .spawn()
        .await;
    app.grpc
        .clone()
        .ensure_account(pb::EnsureAccountRequest {
            account_id: FIXTURE_ACCOUNT.into(),
            email: FIXTURE_EMAIL.into(),
        })
        .await
        .expect("account");
    app.grpc
        .clone()
        .grant_credits(pb::GrantCreditsRequest {
            account: Some(pb::grant_credits_request::Account::AccountId(
                FIXTURE_ACCOUNT.into(),
            )),
            credits: 100,
            idempotency_key: "funds".into(),
            reason: "promo".into(),
            ..Default::default()
        })
        .await
        .expect("grant");

    // The server goes away: new connections are refused, open ones are cut.
    running.abort();
    let _ = running.await;
    for n in 0..4 {
        let started = Instant::now();
        let status = consume(&app, &format!("during-{n}"))
            .await
            .expect_err("no write without the database");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "call {n} was held {:?} before UNAVAILABLE",
            started.elapsed()
        );
    }

    // Back on the same address: the service recovers without a restart.
    let listener = TcpListener::bind(proxy_addr).await.expect("proxy port again");
    running = proxy(listener, upstream);
    let back = Instant::now();
    loop {
        match consume(&app, "after").await {
            Ok(()) => break,
            Err(status) if back.elapsed() < Duration::from_secs(15) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("no recovery within 15 s: {status:?}"),
        }
    }
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 99);
    running.abort();
}
