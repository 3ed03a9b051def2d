//! Slow HTTP clients: one that stalls in its headers or trickles its body is cut off after the
//! read timeouts, and holds neither a connection nor a webhook slot past them.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedReadHalf},
};

use crate::helpers::{TestApp, WEBHOOK_SECRET, now, stripe_signature};

/// How long a test waits for the server to give up on a slow client; the configured timeouts
/// are a fraction of it, so only a missing timeout runs into it.
const PATIENCE: Duration = Duration::from_secs(8);

fn invoice_event(id: &str) -> String {
    format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_1"}}}}}}"#)
}

/// Everything the server sends until it closes the connection (a reset counts as closed), or
/// `None` if it is still open after `PATIENCE`.
async fn read_until_closed(reader: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

/// Sends the headers of a signed webhook announcing a 1000-byte body, and `first` body bytes.
async fn start_slow_webhook(addr: SocketAddr, first: usize) -> TcpStream {
    let body = "x".repeat(1000);
    let head = format!(
        "POST /account/stripe-webhook/ HTTP/1.1\r\nHost: credits\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {}\r\nContent-Length: 1000\r\n\r\n{}",
        stripe_signature(&body, WEBHOOK_SECRET, now()),
        &body[..first]
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send headers");
    stream
}

/// A 408 answer or a closed connection: either way the server stopped waiting.
fn cut_off(received: &[u8]) -> bool {
    received.is_empty() || received.starts_with(b"HTTP/1.1 408")
}

#[tokio::test]
async fn a_client_stalling_before_or_inside_its_headers_is_disconnected_after_the_header_timeout() {
    let app = TestApp::builder()
        .env("HTTP_HEADER_READ_TIMEOUT_MS", "300")
        .spawn()
        .await;
    for sent in [
        "",
        "P",
        "POST /account/stripe-we",
        "POST /account/stripe-webhook/ HTTP/1.1\r\nHost: credits\r\nContent-Ty",
    ] {
        let started = Instant::now();
        let stream = TcpStream::connect(app.http_addr).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(sent.as_bytes()).await.expect("send");
        let received = read_until_closed(&mut reader)
            .await
            .unwrap_or_else(|| panic!("{sent:?}: still open after {PATIENCE:?}"));
        assert!(
            received.is_empty(),
            "{sent:?}: {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{sent:?}: closed before the timeout"
        );
        drop(writer);
    }
    // A prompt client is unaffected.
    let response = app.post_webhook(&invoice_event("evt_prompt")).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_trickling_its_body_is_cut_off_after_the_body_timeout_while_others_are_served() {
    let app = TestApp::builder()
        .env("HTTP_BODY_READ_TIMEOUT_MS", "500")
        .spawn()
        .await;
    let (mut reader, mut writer) = start_slow_webhook(app.http_addr, 0).await.into_split();
    // One byte every 100 ms: 1000 bytes would take 100 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let response = app.post_webhook(&invoice_event("evt_meanwhile")).await;
    assert_eq!(response.status(), 200, "a normal webhook is served meanwhile");

    let received = read_until_closed(&mut reader)
        .await
        .unwrap_or_else(|| panic!("the trickling client was still served after {PATIENCE:?}"));
    assert!(cut_off(&received), "{:?}", String::from_utf8_lossy(&received));
    trickle.abort();
    assert_eq!(app.count_events().await, 1, "only the normal webhook is stored");
}

#[tokio::test]
async fn a_stalled_body_frees_the_only_webhook_slot_after_the_body_timeout() {
    let app = TestApp::builder()
        .env("HTTP_CONCURRENCY_LIMIT", "1")
        .env("HTTP_BODY_READ_TIMEOUT_MS", "2000")
        .spawn()
        .await;
    let started = Instant::now();
    let (mut reader, _writer) = start_slow_webhook(app.http_addr, 10).await.into_split();
    let body = invoice_event("evt_after_stall");
    // The stalled request holds the slot: a webhook now is shed.
    let mut shed = false;
    while !shed && started.elapsed() < Duration::from_millis(1500) {
        shed = app.post_webhook(&body).await.status() == 503;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(shed, "the stalled request never took the slot");

    let mut status = 503;
    while status == 503 && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app.post_webhook(&body).await.status().as_u16();
    }
    assert_eq!(
        status,
        200,
        "the slot was still held after {:?}",
        started.elapsed()
    );
    let received = read_until_closed(&mut reader).await.unwrap_or_default();
    assert!(cut_off(&received), "{:?}", String::from_utf8_lossy(&received));
    assert_eq!(app.count_events().await, 1);
}
