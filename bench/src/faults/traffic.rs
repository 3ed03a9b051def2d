//! The load a fault scenario runs under, with a record of every call: signed webhook events,
//! ConsumeCredits of 1 credit with distinct keys and, when asked, ReserveCredits of 2 then
//! CaptureHold of 1, and PurchaseCredits (which waits on Stripe). Each record says what was sent, when, and how it was answered, so that
//! afterwards everything can be redelivered and replayed and the answers judged.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use credits::grpc::pb;
use tokio_util::sync::CancellationToken;

use crate::{scenarios::Target, webhook::Events};

/// How a call was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The service answered with this HTTP status.
    Http(u16),
    /// The service answered with this gRPC code.
    Grpc(tonic::Code),
    /// No answer from the service: refused, reset or timed out on the way.
    Transport,
}

impl Answer {
    pub(super) fn acknowledged(&self) -> bool {
        matches!(self, Self::Http(200) | Self::Grpc(tonic::Code::Ok))
    }

    fn of_status(status: &tonic::Status) -> Self {
        // A status tonic made on the client side carries the transport error as its source.
        if std::error::Error::source(status).is_some() {
            Self::Transport
        } else {
            Self::Grpc(status.code())
        }
    }
}

/// What one call was.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Webhook event `n` for an account.
    Event { n: u64 },
    /// ConsumeCredits of 1 with key `n`.
    Consume { n: u64 },
    /// ReserveCredits of 2 with key `n`, then CaptureHold of 1 of the hold (when reserved).
    Hold {
        n: u64,
        hold_id: Option<String>,
        capture: Option<Answer>,
    },
    /// PurchaseCredits `n`: a Checkout Session, no balance change.
    Purchase { n: u64 },
}

/// One call, to one replica.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub op: Op,
    pub account: usize,
    pub replica: usize,
    pub sent: Instant,
    pub answered: Instant,
    pub answer: Answer,
}

/// What the load sends and to whom.
#[derive(Clone)]
pub(super) struct Traffic {
    /// One target per replica; worker `w` talks to replica `w % targets.len()`.
    pub targets: Vec<Target>,
    pub events: Arc<Events>,
    pub accounts: Arc<Vec<String>>,
    pub holds: bool,
    pub purchases: bool,
    pub run: String,
}

pub(super) const CONSUME_CREDITS: i64 = 1;
pub(super) const RESERVE_CREDITS: i64 = 2;
pub(super) const CAPTURE_CREDITS: i64 = 1;

impl Traffic {
    pub(super) fn consume_key(&self, n: u64) -> String {
        format!("fault-{}-c{n}", self.run)
    }

    pub(super) fn hold_key(&self, n: u64) -> String {
        format!("fault-{}-h{n}", self.run)
    }

    /// Posts event `n` (for `account`) to a replica, freshly signed.
    pub(super) async fn deliver(&self, replica: usize, n: u64, account: usize) -> Answer {
        let target = &self.targets[replica];
        let (body, signature) = self.events.signed(&self.run, n, &self.accounts[account]);
        match target
            .http
            .post(&target.webhook_url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .timeout(Duration::from_secs(20))
            .body(body)
            .send()
            .await
        {
            Ok(response) => Answer::Http(response.status().as_u16()),
            Err(_) => Answer::Transport,
        }
    }

    /// ConsumeCredits with key `n`: the answer and whether the service called it a replay.
    pub(super) async fn consume(&self, replica: usize, n: u64, account: usize) -> (Answer, bool) {
        let target = &self.targets[replica];
        let mut request = target.request(pb::ConsumeCreditsRequest {
            account: Some(pb::consume_credits_request::Account::AccountId(
                self.accounts[account].clone(),
            )),
            credits: CONSUME_CREDITS,
            idempotency_key: self.consume_key(n),
            reason: "fault-load".into(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(20));
        match target.client().consume_credits(request).await {
            Ok(reply) => (Answer::Grpc(tonic::Code::Ok), reply.into_inner().replayed),
            Err(status) => (Answer::of_status(&status), false),
        }
    }

    /// ReserveCredits with key `n`: the answer and the hold.
    pub(super) async fn reserve(&self, replica: usize, n: u64, account: usize) -> (Answer, Option<String>) {
        let target = &self.targets[replica];
        let mut request = target.request(pb::ReserveCreditsRequest {
            account: Some(pb::reserve_credits_request::Account::AccountId(
                self.accounts[account].clone(),
            )),
            credits: RESERVE_CREDITS,
            idempotency_key: self.hold_key(n),
            ttl_seconds: 3600,
            reason: "fault-load".into(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(20));
        match target.client().reserve_credits(request).await {
            Ok(reply) => (Answer::Grpc(tonic::Code::Ok), Some(reply.into_inner().hold_id)),
            Err(status) => (Answer::of_status(&status), None),
        }
    }

    /// CaptureHold of `CAPTURE_CREDITS`: the answer and whether it was a replay.
    pub(super) async fn capture(&self, replica: usize, hold_id: &str) -> (Answer, bool) {
        let target = &self.targets[replica];
        let mut request = target.request(pb::CaptureHoldRequest {
            hold_id: hold_id.to_owned(),
            credits: CAPTURE_CREDITS,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(20));
        match target.client().capture_hold(request).await {
            Ok(reply) => (Answer::Grpc(tonic::Code::Ok), reply.into_inner().replayed),
            Err(status) => (Answer::of_status(&status), false),
        }
    }

    /// PurchaseCredits `n` for `account`: a new Checkout Session, under key `n`.
    pub(super) async fn purchase(&self, replica: usize, n: u64, account: usize) -> Answer {
        let target = &self.targets[replica];
        let mut request = target.request(pb::PurchaseCreditsRequest {
            account_id: self.accounts[account].clone(),
            email: format!("{}@faults.example", self.accounts[account]),
            price_id: super::service::PRICE.into(),
            idempotency_key: format!("fault-{}-p{n}", self.run),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(20));
        match target.client().purchase_credits(request).await {
            Ok(_) => Answer::Grpc(tonic::Code::Ok),
            Err(status) => Answer::of_status(&status),
        }
    }

    async fn one(&self, replica: usize, n: u64) -> Record {
        let account = (n as usize / 3) % self.accounts.len();
        let sent = Instant::now();
        let kinds = 2 + u64::from(self.holds) + u64::from(self.purchases);
        let (op, answer) = match n % kinds {
            0 => (Op::Event { n }, self.deliver(replica, n, account).await),
            1 => (Op::Consume { n }, self.consume(replica, n, account).await.0),
            2 if self.purchases => (Op::Purchase { n }, self.purchase(replica, n, account).await),
            _ => {
                let (answer, hold_id) = self.reserve(replica, n, account).await;
                let capture = match &hold_id {
                    Some(id) => Some(self.capture(replica, id).await.0),
                    None => None,
                };
                (Op::Hold { n, hold_id, capture }, answer)
            }
        };
        Record {
            op,
            account,
            replica,
            sent,
            answered: Instant::now(),
            answer,
        }
    }

    /// Runs `concurrency` workers until `stop` fires or `limit` passes; every call's record.
    pub(super) async fn run(
        &self,
        concurrency: usize,
        stop: CancellationToken,
        limit: Duration,
    ) -> Vec<Record> {
        let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = Instant::now() + limit;
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..concurrency.max(1) {
            let (traffic, stop, issued) = (self.clone(), stop.clone(), issued.clone());
            workers.spawn(async move {
                let replica = worker % traffic.targets.len();
                let mut records = Vec::new();
                while !stop.is_cancelled() && Instant::now() < deadline {
                    let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let record = traffic.one(replica, n).await;
                    let down = record.answer == Answer::Transport;
                    records.push(record);
                    if down {
                        // The replica is down: do not spin while it restarts.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                records
            });
        }
        let mut records = Vec::new();
        while let Some(joined) = workers.join_next().await {
            if let Ok(mine) = joined {
                records.extend(mine);
            }
        }
        records.sort_by_key(|r| r.sent);
        records
    }
}
