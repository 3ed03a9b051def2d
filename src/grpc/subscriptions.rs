//! Subscribe, GetSubscription, ListSubscriptions and CancelSubscription: their messages ↔
//! billing's types. Parsing failures become INVALID_ARGUMENT naming the field.

use tonic::Status;

use super::{convert::timestamp, pb};
use crate::{
    billing::{
        RedirectUrl,
        subscribe::{PlanId, SubscribeRequest, SubscriptionId},
        subscriptions::{SubscriptionStatus, SubscriptionView},
    },
    ledger::{AccountId, IdempotencyKey, InvalidInput},
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

pub(crate) fn subscribe_request(req: pb::SubscribeRequest) -> Result<SubscribeRequest, Status> {
    Ok(SubscribeRequest {
        account_id: AccountId::parse(&req.account_id).map_err(invalid)?,
        plan_id: PlanId::parse(&req.plan_id).map_err(invalid)?,
        success_url: optional(&req.success_url, |u| RedirectUrl::parse("success_url", u))?,
        cancel_url: optional(&req.cancel_url, |u| RedirectUrl::parse("cancel_url", u))?,
        idempotency_key: optional(&req.idempotency_key, IdempotencyKey::parse)?,
    })
}

pub(crate) fn subscription_id(raw: &str) -> Result<SubscriptionId, Status> {
    SubscriptionId::parse(raw).map_err(invalid)
}

pub(crate) fn account_id(raw: &str) -> Result<AccountId, Status> {
    AccountId::parse(raw).map_err(invalid)
}

fn status(status: &SubscriptionStatus) -> pb::SubscriptionStatus {
    match status {
        SubscriptionStatus::Incomplete => pb::SubscriptionStatus::Incomplete,
        SubscriptionStatus::IncompleteExpired => pb::SubscriptionStatus::IncompleteExpired,
        SubscriptionStatus::Trialing => pb::SubscriptionStatus::Trialing,
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::PastDue => pb::SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled => pb::SubscriptionStatus::Canceled,
        SubscriptionStatus::Unpaid => pb::SubscriptionStatus::Unpaid,
        SubscriptionStatus::Paused => pb::SubscriptionStatus::Paused,
        SubscriptionStatus::Other(_) => pb::SubscriptionStatus::Unspecified,
    }
}

pub(crate) fn subscription(view: SubscriptionView) -> pb::Subscription {
    let s = view.subscription;
    pb::Subscription {
        status: status(&s.status).into(),
        id: s.id,
        account_id: s.account_id,
        plan_id: s.plan_id,
        plan_name: view.plan_name,
        current_period_start: s.current_period_start.map(timestamp),
        current_period_end: s.current_period_end.map(timestamp),
        cancel_at_period_end: s.cancel_at_period_end,
        period_allowance: view.period_allowance,
        canceled_at: s.canceled_at.map(timestamp),
    }
}
