//! A slow fake Stripe on loopback for `faults sigterm`: every Checkout Session is answered after
//! a delay, so PurchaseCredits calls are in flight (waiting on Stripe) when the signal comes.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, http::header, response::IntoResponse, routing::post};
use serde_json::Value;

/// The shape Stripe answers a new session with (the tests' fixture).
const SESSION: &str = include_str!("../../../tests/fixtures/api_checkout_session_retrieved_expanded.json");

/// How long each answer waits.
pub(super) const DELAY: Duration = Duration::from_millis(500);

/// Serves until the runtime ends; its address, for `STRIPE_API_BASE`.
pub(super) async fn start() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/v1/checkout/sessions", post(open_session));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("fake Stripe stopped: {err}");
        }
    });
    Ok(addr)
}

async fn open_session() -> impl IntoResponse {
    tokio::time::sleep(DELAY).await;
    let id = format!("cs_test_faults_{}", uuid::Uuid::new_v4().simple());
    let mut session: Value = serde_json::from_str(SESSION).unwrap_or_default();
    session["id"] = Value::from(id.as_str());
    session["url"] = Value::from(format!("https://checkout.stripe.com/c/pay/{id}"));
    session["status"] = Value::from("open");
    session["payment_status"] = Value::from("unpaid");
    ([(header::CONTENT_TYPE, "application/json")], session.to_string())
}
