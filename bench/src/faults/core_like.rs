//! Callers that write HTTP/2 the way grpc-core does (Python, C++, Ruby and PHP gRPC clients),
//! for `faults sigterm`: tonic's own client cannot show how a draining server treats them. The
//! frames are the integration tests' (`tests/api/helpers/h2_raw.rs`), included as they are.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use credits::grpc::pb;
use prost::Message;
use tokio_util::sync::CancellationToken;

#[allow(dead_code, clippy::all)]
#[path = "../../../tests/api/helpers/h2_raw.rs"]
mod h2_raw;

pub(super) use h2_raw::{RawCall, StreamEnd};

/// One busy grpc-core-like connection per replica until `stop`, opened again after each
/// restart: PurchaseCredits (waiting on the slow Stripe) and GetBalance, four at a time.
pub(super) async fn run(replicas: Vec<SocketAddr>, account: String, stop: CancellationToken) -> Vec<RawCall> {
    let purchase = pb::PurchaseCreditsRequest {
        email: format!("{account}@faults.example"),
        account_id: account.clone(),
        price_id: super::service::PRICE.into(),
        ..Default::default()
    };
    let balance = pb::GetBalanceRequest {
        account: Some(pb::get_balance_request::Account::AccountId(account)),
        as_of: None,
    };
    let turns = Arc::new(vec![
        ("PurchaseCredits", purchase.encode_to_vec()),
        ("GetBalance", balance.encode_to_vec()),
    ]);
    let mut callers = tokio::task::JoinSet::new();
    for addr in replicas {
        let (turns, stop) = (turns.clone(), stop.clone());
        callers.spawn(async move {
            let mut calls = Vec::new();
            while !stop.is_cancelled() {
                match h2_raw::core_like_caller(addr, turns.to_vec(), 4, stop.clone()).await {
                    Ok(mine) => calls.extend(mine),
                    // Restarting: try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            calls
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = callers.join_next().await {
        all.extend(joined.unwrap_or_default());
    }
    all
}
