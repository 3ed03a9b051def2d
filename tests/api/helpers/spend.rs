//! The spend side as tests drive it: accounts, grants, consumption and holds over gRPC,
//! purchases, refunds and disputes through signed webhooks, and the ledger's invariants checked
//! against what the database holds.

use chrono::{DateTime, Utc};
use credits::{
    entities::{account, credit_hold, credit_lot},
    grpc::pb,
};
use prost_types::Timestamp;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tonic::{Code, Status};

use super::{STANDARD_PRICE, TestApp, fixture};

/// What the standard pack costs in the webhook fixtures built here (1000 credits).
pub const STANDARD_AMOUNT: i64 = 1500;

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn time_of(at: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0)).expect("a valid time")
}

/// Asserts a refusal: its code, and that its message names `word` (a field, a number).
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, word: &str) {
    match result {
        Ok(answer) => panic!("expected {code:?} naming {word:?}, got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(word),
                "{word:?} not in {:?}",
                status.message()
            );
        }
    }
}

pub fn grant_request(account: &str, credits: i64, key: &str) -> pb::GrantCreditsRequest {
    pb::GrantCreditsRequest {
        account: Some(pb::grant_credits_request::Account::AccountId(account.into())),
        credits,
        idempotency_key: key.into(),
        reason: "support".into(),
        ..Default::default()
    }
}

pub fn consume_request(account: &str, credits: i64, key: &str) -> pb::ConsumeCreditsRequest {
    pb::ConsumeCreditsRequest {
        account: Some(pb::consume_credits_request::Account::AccountId(account.into())),
        credits,
        idempotency_key: key.into(),
        reason: "usage".into(),
        ..Default::default()
    }
}

pub fn reserve_request(account: &str, credits: i64, key: &str) -> pb::ReserveCreditsRequest {
    pb::ReserveCreditsRequest {
        account: Some(pb::reserve_credits_request::Account::AccountId(account.into())),
        credits,
        idempotency_key: key.into(),
        reason: "call".into(),
        ..Default::default()
    }
}

impl TestApp {
    /// EnsureAccount with the email `<id>@example.com`.
    pub async fn ensure(&self, id: &str) -> pb::EnsureAccountResponse {
        self.ensure_with(id, &format!("{id}@example.com"))
            .await
            .expect("EnsureAccount")
    }

    pub async fn ensure_with(&self, id: &str, email: &str) -> Result<pb::EnsureAccountResponse, Status> {
        self.grpc
            .clone()
            .ensure_account(pb::EnsureAccountRequest {
                account_id: id.into(),
                email: email.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn send_grant(
        &self,
        request: pb::GrantCreditsRequest,
    ) -> Result<pb::GrantCreditsResponse, Status> {
        self.grpc
            .clone()
            .grant_credits(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A grant that never expires, reason `support`.
    pub async fn grant(&self, account: &str, credits: i64, key: &str) -> pb::GrantCreditsResponse {
        self.send_grant(grant_request(account, credits, key))
            .await
            .expect("GrantCredits")
    }

    /// A grant whose lot expires at `at`.
    pub async fn grant_expiring(
        &self,
        account: &str,
        credits: i64,
        key: &str,
        at: DateTime<Utc>,
    ) -> pb::GrantCreditsResponse {
        self.send_grant(pb::GrantCreditsRequest {
            expires_at: Some(timestamp(at)),
            ..grant_request(account, credits, key)
        })
        .await
        .expect("GrantCredits")
    }

    pub async fn send_consume(
        &self,
        request: pb::ConsumeCreditsRequest,
    ) -> Result<pb::ConsumeCreditsResponse, Status> {
        self.grpc
            .clone()
            .consume_credits(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// ConsumeCredits, reason `usage`.
    pub async fn consume(
        &self,
        account: &str,
        credits: i64,
        key: &str,
    ) -> Result<pb::ConsumeCreditsResponse, Status> {
        self.send_consume(consume_request(account, credits, key)).await
    }

    pub async fn send_reserve(
        &self,
        request: pb::ReserveCreditsRequest,
    ) -> Result<pb::ReserveCreditsResponse, Status> {
        self.grpc
            .clone()
            .reserve_credits(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// ReserveCredits, reason `call`, for `ttl_seconds` (0: the default).
    pub async fn reserve(
        &self,
        account: &str,
        credits: i64,
        key: &str,
        ttl_seconds: i32,
    ) -> Result<pb::ReserveCreditsResponse, Status> {
        self.send_reserve(pb::ReserveCreditsRequest {
            ttl_seconds,
            ..reserve_request(account, credits, key)
        })
        .await
    }

    pub async fn capture(&self, hold_id: &str, credits: i64) -> Result<pb::CaptureHoldResponse, Status> {
        self.grpc
            .clone()
            .capture_hold(pb::CaptureHoldRequest {
                hold_id: hold_id.into(),
                credits,
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn release(&self, hold_id: &str) -> Result<pb::ReleaseHoldResponse, Status> {
        self.grpc
            .clone()
            .release_hold(pb::ReleaseHoldRequest {
                hold_id: hold_id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every ledger entry of the account over gRPC, newest first, following the page tokens.
    pub async fn entries(&self, account: &str) -> Vec<pb::LedgerEntry> {
        let mut entries = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .grpc
                .clone()
                .list_ledger_entries(pb::ListLedgerEntriesRequest {
                    account: Some(pb::list_ledger_entries_request::Account::AccountId(
                        account.into(),
                    )),
                    page_size: 500,
                    page_token,
                })
                .await
                .expect("ListLedgerEntries")
                .into_inner();
            entries.extend(page.entries);
            if page.next_page_token.is_empty() {
                return entries;
            }
            page_token = page.next_page_token;
        }
    }

    /// The account's entries of one kind, oldest first, as `(delta, reason)`.
    pub async fn entries_of_kind(&self, account: &str, kind: &str) -> Vec<(i64, String)> {
        let mut entries: Vec<(i64, String)> = self
            .entries(account)
            .await
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.delta, e.reason))
            .collect();
        entries.reverse();
        entries
    }

    /// ListCreditLots: the account's lots in burn order.
    pub async fn lots(&self, account: &str, include_spent: bool) -> Vec<pb::CreditLot> {
        self.grpc
            .clone()
            .list_credit_lots(pb::ListCreditLotsRequest {
                account: Some(pb::list_credit_lots_request::Account::AccountId(account.into())),
                include_spent,
                as_of: None,
            })
            .await
            .expect("ListCreditLots")
            .into_inner()
            .lots
    }

    /// `(reference, remaining)` of every lot, in burn order, spent ones included.
    pub async fn lot_remaining(&self, account: &str) -> Vec<(String, i64)> {
        self.lots(account, true)
            .await
            .into_iter()
            .map(|l| (l.reference, l.remaining))
            .collect()
    }

    /// Every invariant of the ledger, for every account: the balance is the sum of its entries
    /// and the sum of its lots' remaining credits minus its debt; a lot holds no more than it
    /// has; lots hold exactly what active holds reserve; and GetBalance counts no credit past
    /// its lot's expiry and never shows a negative available balance.
    pub async fn assert_spend_invariants(&self) {
        self.assert_ledger_matches_balances().await;
        let db = self.db.connect().await;
        for account in account::Entity::find().all(&db).await.expect("read accounts") {
            let id = account.id.as_str();
            let lots = credit_lot::Entity::find()
                .filter(credit_lot::Column::AccountId.eq(id))
                .all(&db)
                .await
                .expect("read lots");
            let holds = credit_hold::Entity::find()
                .filter(credit_hold::Column::AccountId.eq(id))
                .filter(credit_hold::Column::Status.eq("active"))
                .all(&db)
                .await
                .expect("read holds");
            assert!(account.debt >= 0, "debt of {id}: {}", account.debt);
            let remaining: i64 = lots.iter().map(|l| l.remaining).sum();
            assert_eq!(
                account.credit_balance,
                remaining - account.debt,
                "balance of {id} vs its lots' remaining credits minus debt"
            );
            for lot in &lots {
                assert!(
                    0 <= lot.held && lot.held <= lot.remaining && lot.remaining <= lot.credits,
                    "lot {} of {id}: held {} remaining {} credits {}",
                    lot.id,
                    lot.held,
                    lot.remaining,
                    lot.credits
                );
            }
            let held_in_lots: i64 = lots.iter().map(|l| l.held).sum();
            let held_by_holds: i64 = holds.iter().map(|h| h.credits).sum();
            // A hold takes from lots first; what it reserves beyond them counts against the
            // overdraft limit and is held by no lot.
            let mut allocated = 0;
            for hold in &holds {
                let allocations: Vec<(String, i64)> =
                    serde_json::from_str(&hold.allocations).expect("allocations JSON");
                let from_lots: i64 = allocations.iter().map(|(_, credits)| credits).sum();
                assert!(
                    0 <= from_lots && from_lots <= hold.credits,
                    "hold {} of {id}: {from_lots} of {} from lots",
                    hold.id,
                    hold.credits
                );
                allocated += from_lots;
            }
            assert_eq!(held_in_lots, allocated, "held credits of {id} in lots");

            // What GetBalance must show now, unless a lot or hold runs out while we look.
            let now = Utc::now();
            let near = |at: DateTime<Utc>| (at - now).num_seconds().abs() < 3;
            if lots.iter().filter_map(|l| l.expires_at).any(near) || holds.iter().any(|h| h.expires_at <= now)
            {
                continue;
            }
            let counted: i64 = lots
                .iter()
                .map(|l| match l.expires_at {
                    Some(at) if at <= now => l.held,
                    _ => l.remaining,
                })
                .sum();
            let shown = self.balance(id).await.expect("GetBalance");
            assert_eq!(
                shown.credit_balance,
                counted - account.debt,
                "GetBalance of {id} counts unexpired lots (and held credits) minus debt"
            );
            assert_eq!(shown.held_credits, held_by_holds, "held credits of {id}");
            assert_eq!(
                shown.available_balance,
                (shown.credit_balance - held_by_holds).max(0),
                "available balance of {id}"
            );
        }
    }

    /// Posts a signed webhook until it is acknowledged (Stripe redelivers a 503).
    pub async fn deliver(&self, body: &str) {
        loop {
            let status = self.post_webhook(body).await.status().as_u16();
            match status {
                200 => return,
                503 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                other => panic!("webhook answered {other}"),
            }
        }
    }

    /// A standard pack (1000 credits for 1500) bought and paid: PurchaseCredits, then its
    /// `checkout.session.completed`. Needs `mock_checkout_sessions`. Returns what the refund
    /// and dispute events name.
    pub async fn buy_standard(&self, account: &str, tag: &str) -> Paid {
        let started = self
            .purchase(account, &format!("{account}@example.com"), STANDARD_PRICE)
            .await
            .expect("PurchaseCredits");
        let paid = Paid {
            session: started.checkout_session_id,
            intent: format!("pi_{tag}"),
        };
        self.deliver(&completed_event(&format!("evt_paid_{tag}"), &paid, account))
            .await;
        paid
    }
}

/// A paid purchase: its Checkout Session and payment intent.
#[derive(Debug, Clone)]
pub struct Paid {
    pub session: String,
    pub intent: String,
}

/// A paid `checkout.session.completed` of the standard pack for `account`.
pub fn completed_event(event_id: &str, paid: &Paid, account: &str) -> String {
    let mut event: Value =
        serde_json::from_str(&fixture("checkout_session_completed.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    let object = &mut event["data"]["object"];
    object["id"] = Value::from(paid.session.as_str());
    object["payment_intent"] = Value::from(paid.intent.as_str());
    object["client_reference_id"] = Value::from(account);
    object["metadata"]["account_id"] = Value::from(account);
    object["metadata"]["price_id"] = Value::from(STANDARD_PRICE);
    object["amount_total"] = Value::from(STANDARD_AMOUNT);
    object["amount_subtotal"] = Value::from(STANDARD_AMOUNT);
    event.to_string()
}

/// `charge.refunded` of a standard purchase with a cumulative `amount_refunded`.
pub fn refunded_event(event_id: &str, paid: &Paid, amount_refunded: i64) -> String {
    let mut event: Value = serde_json::from_str(&fixture("charge_refunded.json")).expect("fixture");
    event["id"] = Value::from(event_id);
    let object = &mut event["data"]["object"];
    object["payment_intent"] = Value::from(paid.intent.as_str());
    object["amount"] = Value::from(STANDARD_AMOUNT);
    object["amount_captured"] = Value::from(STANDARD_AMOUNT);
    object["amount_refunded"] = Value::from(amount_refunded);
    object["refunded"] = Value::from(amount_refunded >= STANDARD_AMOUNT);
    event.to_string()
}

/// A `charge.dispute.*` event over the whole of a standard purchase.
pub fn dispute_event(event_id: &str, paid: &Paid, kind: &str, status: &str) -> String {
    json!({
        "id": event_id, "object": "event", "type": kind, "api_version": "2026-09-30.endive",
        "data": { "object": {
            "id": format!("dp_{}", paid.intent), "object": "dispute", "amount": STANDARD_AMOUNT,
            "currency": "usd", "payment_intent": paid.intent, "status": status,
            "reason": "fraudulent"
        }}
    })
    .to_string()
}
