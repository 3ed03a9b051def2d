//! Protobuf messages ↔ domain types. Parsing failures become INVALID_ARGUMENT naming the field.

use prost_types::Timestamp;
use tonic::Status;

use super::pb;
use crate::{
    entities::credit_pack,
    ledger::{
        AccountId, AccountRef, Email, IdempotencyKey, InvalidInput, PageRequest, PriceId, PurchaseRequest,
        PurchaseStatus, PurchaseView, RedirectUrl,
    },
};

fn invalid(err: InvalidInput) -> Status {
    Status::invalid_argument(err.to_string())
}

fn optional<T>(raw: &str, parse: impl FnOnce(&str) -> Result<T, InvalidInput>) -> Result<Option<T>, Status> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw).map(Some).map_err(invalid)
    }
}

pub fn purchase_request(req: pb::PurchaseCreditsRequest) -> Result<PurchaseRequest, Status> {
    Ok(PurchaseRequest {
        account_id: AccountId::parse(&req.account_id).map_err(invalid)?,
        email: Email::parse(&req.email).map_err(invalid)?,
        price_id: PriceId::parse(&req.price_id).map_err(invalid)?,
        success_url: optional(&req.success_url, |u| RedirectUrl::parse("success_url", u))?,
        cancel_url: optional(&req.cancel_url, |u| RedirectUrl::parse("cancel_url", u))?,
        idempotency_key: optional(&req.idempotency_key, IdempotencyKey::parse)?,
    })
}

pub fn balance_account(account: Option<pb::get_balance_request::Account>) -> Result<AccountRef, Status> {
    use pb::get_balance_request::Account;
    match account {
        Some(Account::AccountId(id)) => AccountId::parse(&id).map(AccountRef::Id).map_err(invalid),
        Some(Account::Email(email)) => Email::parse(&email).map(AccountRef::Email).map_err(invalid),
        None => Err(Status::invalid_argument(
            "invalid account: set account_id or email",
        )),
    }
}

pub fn purchases_account(account: Option<pb::list_purchases_request::Account>) -> Result<AccountRef, Status> {
    use pb::list_purchases_request::Account;
    match account {
        Some(Account::AccountId(id)) => AccountId::parse(&id).map(AccountRef::Id).map_err(invalid),
        Some(Account::Email(email)) => Email::parse(&email).map(AccountRef::Email).map_err(invalid),
        None => Err(Status::invalid_argument(
            "invalid account: set account_id or email",
        )),
    }
}

pub fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest, Status> {
    PageRequest::parse(page_size, page_token).map_err(invalid)
}

pub fn pack(model: credit_pack::Model) -> pb::CreditPack {
    pb::CreditPack {
        id: model.id,
        name: model.name,
        credits: model.credits,
        unit_amount: model.unit_amount,
        currency: model.currency,
        stripe_price_id: model.stripe_price_id.unwrap_or_default(),
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn status(raw: &str) -> pb::PurchaseStatus {
    match PurchaseStatus::parse(raw) {
        Some(PurchaseStatus::Pending) => pb::PurchaseStatus::Pending,
        Some(PurchaseStatus::Completed) => pb::PurchaseStatus::Completed,
        Some(PurchaseStatus::Expired) => pb::PurchaseStatus::Expired,
        Some(PurchaseStatus::Failed) => pb::PurchaseStatus::Failed,
        Some(PurchaseStatus::Refunded) => pb::PurchaseStatus::Refunded,
        None => pb::PurchaseStatus::Unspecified,
    }
}

pub fn purchase(view: PurchaseView) -> pb::CreditPurchase {
    let p = view.purchase;
    pb::CreditPurchase {
        id: p.id,
        account_id: p.account_id,
        credit_pack_id: p.credit_pack_id,
        credit_pack_name: view.pack_name,
        quantity: p.quantity,
        amount: p.amount,
        currency: p.currency,
        stripe_checkout_session_id: p.stripe_checkout_session_id,
        status: status(&p.status).into(),
        created_at: Some(timestamp(p.created_at)),
        completed_at: p.completed_at.map(timestamp),
        amount_refunded: p.amount_refunded,
    }
}
