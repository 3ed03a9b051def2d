//! Protobuf messages ↔ domain types. Parsing failures become INVALID_ARGUMENT naming the field.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use prost_types::Timestamp;
use tonic::Status;

use super::pb;
use crate::{
    billing::{PriceId, PurchaseRequest, PurchaseStatus, PurchaseView, RedirectUrl},
    catalog::Pack,
    ledger::{
        AccountId, AccountRef, Balance, Credits, Email, EntryView, HoldId, IdempotencyKey, InvalidInput,
        Listing, PageRequest, Reason, SettingsRead,
        book::{Lot, Metadata, TopUpAttempt},
        commands::{self as command, AccountView},
        hold_ttl, parse_metadata,
        store::outbox::StoredEvent,
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

fn account_ref(by_id: Option<String>, by_email: Option<String>) -> Result<AccountRef, Status> {
    match (by_id, by_email) {
        (Some(id), _) => AccountId::parse(&id).map(AccountRef::Id).map_err(invalid),
        (None, Some(email)) => Email::parse(&email).map(AccountRef::Email).map_err(invalid),
        (None, None) => Err(Status::invalid_argument(
            "invalid account: set account_id or email",
        )),
    }
}

/// The `oneof account { account_id; email }` of a request, as the domain names accounts.
macro_rules! account_of {
    ($module:ident) => {
        pub(crate) fn $module(account: Option<pb::$module::Account>) -> Result<AccountRef, Status> {
            match account {
                Some(pb::$module::Account::AccountId(id)) => account_ref(Some(id), None),
                Some(pb::$module::Account::Email(email)) => account_ref(None, Some(email)),
                None => account_ref(None, None),
            }
        }
    };
}

/// Each request's account, parsed.
pub(crate) mod account {
    use super::*;

    account_of!(get_balance_request);
    account_of!(list_purchases_request);
    account_of!(grant_credits_request);
    account_of!(consume_credits_request);
    account_of!(reserve_credits_request);
    account_of!(list_ledger_entries_request);
    account_of!(list_credit_lots_request);
    account_of!(get_account_settings_request);
    account_of!(update_account_settings_request);
}

pub(crate) fn purchase_request(req: pb::PurchaseCreditsRequest) -> Result<PurchaseRequest, Status> {
    Ok(PurchaseRequest {
        account_id: AccountId::parse(&req.account_id).map_err(invalid)?,
        email: Email::parse(&req.email).map_err(invalid)?,
        price_id: PriceId::parse(&req.price_id).map_err(invalid)?,
        success_url: optional(&req.success_url, |u| RedirectUrl::parse("success_url", u))?,
        cancel_url: optional(&req.cancel_url, |u| RedirectUrl::parse("cancel_url", u))?,
        idempotency_key: optional(&req.idempotency_key, IdempotencyKey::parse)?,
        save_payment_method: req.save_payment_method,
    })
}

/// The account an event listing or stream is filtered on (empty: all).
pub(crate) fn event_account(raw: &str) -> Result<Option<String>, Status> {
    Ok(optional(raw, AccountId::parse)?.map(|id| id.as_str().to_owned()))
}

pub(crate) fn after_sequence(raw: i64) -> Result<i64, Status> {
    if raw < 0 {
        return Err(Status::invalid_argument(
            "invalid after_sequence: must not be negative",
        ));
    }
    Ok(raw)
}

/// Events per page: default 100, at most 1000.
pub(crate) fn event_page_size(raw: i32) -> Result<u64, Status> {
    match raw {
        0 => Ok(100),
        1..=1000 => Ok(raw as u64),
        _ => Err(Status::invalid_argument(
            "invalid page_size: must be from 1 to 1000",
        )),
    }
}

pub(crate) fn settings_change(req: &pb::UpdateAccountSettingsRequest) -> command::SettingsChange {
    command::SettingsChange {
        low_balance_threshold: req.low_balance_threshold,
        overdraft_limit: req.overdraft_limit,
        auto_top_up: req.auto_top_up.as_ref().map(|t| command::AutoTopUpChange {
            enabled: t.enabled,
            threshold: t.threshold,
            pack_id: t.pack_id.trim().to_owned(),
            monthly_limit: t.monthly_limit,
        }),
    }
}

pub(crate) fn account_event(event: StoredEvent) -> pb::AccountEvent {
    pb::AccountEvent {
        sequence: event.sequence,
        id: event.id,
        account_id: event.account_id,
        r#type: event.kind.as_str().to_owned(),
        balance_after: event.balance_after,
        available_after: event.available_after,
        entry_id: event.entry_id.unwrap_or_default(),
        payload: event.payload,
        created_at: Some(timestamp(event.created_at)),
    }
}

/// Settings as GetAccountSettings shows them; `default_threshold` is LOW_BALANCE_THRESHOLD.
pub(crate) fn settings(read: SettingsRead, default_threshold: i64) -> pb::AccountSettings {
    let s = read.settings;
    pb::AccountSettings {
        account_id: read.account_id,
        low_balance_threshold: s.low_balance_threshold.unwrap_or(default_threshold),
        low_balance_threshold_is_default: s.low_balance_threshold.is_none(),
        overdraft_limit: s.overdraft_limit,
        auto_top_up: Some(pb::AutoTopUp {
            enabled: s.auto_top_up.enabled,
            threshold: s.auto_top_up.threshold,
            pack_id: s.auto_top_up.pack_id.unwrap_or_default(),
            monthly_limit: s.auto_top_up.monthly_limit,
            paused_reason: s.auto_top_up.paused.unwrap_or_default(),
        }),
        has_payment_method: s.payment_method_id.is_some(),
        recent_top_ups: read.recent_top_ups.into_iter().map(top_up).collect(),
    }
}

fn top_up(attempt: TopUpAttempt) -> pb::TopUpAttempt {
    pb::TopUpAttempt {
        id: attempt.id,
        pack_id: attempt.pack_id,
        attempt: attempt.number,
        state: attempt.state.as_str().to_owned(),
        payment_intent_id: attempt.payment_intent_id.unwrap_or_default(),
        amount: attempt.amount.unwrap_or_default(),
        currency: attempt.currency.unwrap_or_default(),
        credits: attempt.credits.unwrap_or_default(),
        error: attempt.error.unwrap_or_default(),
        created_at: Some(timestamp(attempt.created_at)),
        updated_at: Some(timestamp(attempt.updated_at)),
    }
}

pub(crate) fn page_request(
    listing: Listing,
    page_size: i32,
    page_token: &str,
) -> Result<PageRequest, Status> {
    PageRequest::parse(listing, page_size, page_token).map_err(invalid)
}

fn metadata(raw: &HashMap<String, String>) -> Result<Metadata, Status> {
    parse_metadata(raw).map_err(invalid)
}

fn key(raw: &str) -> Result<IdempotencyKey, Status> {
    IdempotencyKey::parse(raw).map_err(invalid)
}

fn credits(raw: i64) -> Result<Credits, Status> {
    Credits::parse(raw).map_err(invalid)
}

fn reason(raw: &str) -> Result<Reason, Status> {
    Reason::parse(raw).map_err(invalid)
}

fn time(field: &'static str, at: &Timestamp) -> Result<DateTime<Utc>, Status> {
    u32::try_from(at.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
        // Microseconds, as PostgreSQL stores them.
        .map(|at| at.trunc_subsecs(6))
        .ok_or_else(|| invalid(InvalidInput::new(field, "not a valid time")))
}

pub(crate) fn grant(req: pb::GrantCreditsRequest) -> Result<command::Grant, Status> {
    let expires_at = req
        .expires_at
        .as_ref()
        .map(|at| time("expires_at", at))
        .transpose()?;
    // A past expiry is refused by the writer after the key is looked up, so a retry of a grant
    // whose expiry has passed since still replays.
    Ok(command::Grant {
        credits: credits(req.credits)?,
        key: key(&req.idempotency_key)?,
        reason: reason(&req.reason)?,
        expires_at,
        metadata: metadata(&req.metadata)?,
        account: account::grant_credits_request(req.account)?,
    })
}

pub(crate) fn consume(req: pb::ConsumeCreditsRequest) -> Result<command::Consume, Status> {
    Ok(command::Consume {
        credits: credits(req.credits)?,
        key: IdempotencyKey::parse_consumption(&req.idempotency_key).map_err(invalid)?,
        reason: reason(&req.reason)?,
        metadata: metadata(&req.metadata)?,
        account: account::consume_credits_request(req.account)?,
    })
}

/// The most debits one ConsumeCreditsBatch takes.
pub(crate) const MAX_BATCH_DEBITS: usize = 1000;

/// How many ConsumeCreditsBatch debits wait on the writer at once, over all calls: four full
/// calls, enough to keep the writer's batches full; the calls beyond wait their turn.
pub(crate) const BATCH_DEBITS_IN_FLIGHT: usize = 4 * MAX_BATCH_DEBITS;

pub(crate) fn batch_size(debits: usize) -> Result<(), Status> {
    if debits == 0 || debits > MAX_BATCH_DEBITS {
        return Err(invalid(InvalidInput::new("debits", "must hold 1 to 1000 debits")));
    }
    Ok(())
}

pub(crate) fn consumed(consumed: command::Consumed) -> pb::ConsumeCreditsResponse {
    pb::ConsumeCreditsResponse {
        credit_balance: consumed.credit_balance,
        available_balance: consumed.available_balance,
        ledger_entry_id: consumed.ledger_entry_id,
        replayed: consumed.replayed,
    }
}

/// One debit's answer in a batch: what ConsumeCredits would have answered.
pub(crate) fn debit_result(result: Result<command::Consumed, Status>) -> pb::ConsumeCreditsResult {
    let result = match result {
        Ok(answer) => pb::consume_credits_result::Result::Consumed(consumed(answer)),
        Err(status) => pb::consume_credits_result::Result::Refused(pb::DebitRefusal {
            code: status.code() as i32,
            message: status.message().to_owned(),
        }),
    };
    pb::ConsumeCreditsResult { result: Some(result) }
}

pub(crate) fn reserve(req: pb::ReserveCreditsRequest) -> Result<command::Reserve, Status> {
    Ok(command::Reserve {
        credits: credits(req.credits)?,
        key: key(&req.idempotency_key)?,
        ttl: hold_ttl(req.ttl_seconds).map_err(invalid)?,
        reason: reason(&req.reason)?,
        metadata: metadata(&req.metadata)?,
        account: account::reserve_credits_request(req.account)?,
    })
}

pub(crate) fn capture(req: pb::CaptureHoldRequest) -> Result<command::Capture, Status> {
    Ok(command::Capture {
        hold_id: hold_id(&req.hold_id)?,
        credits: credits(req.credits)?,
        metadata: metadata(&req.metadata)?,
    })
}

pub(crate) fn hold_id(raw: &str) -> Result<HoldId, Status> {
    HoldId::parse(raw).map_err(invalid)
}

pub(crate) fn pack(pack: Pack) -> pb::CreditPack {
    pb::CreditPack {
        id: pack.id,
        name: pack.name,
        credits: pack.credits,
        unit_amount: pack.unit_amount,
        currency: pack.currency,
        stripe_price_id: pack.stripe_price_id.unwrap_or_default(),
    }
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn status(status: PurchaseStatus) -> pb::PurchaseStatus {
    match status {
        PurchaseStatus::Pending => pb::PurchaseStatus::Pending,
        PurchaseStatus::Completed => pb::PurchaseStatus::Completed,
        PurchaseStatus::Expired => pb::PurchaseStatus::Expired,
        PurchaseStatus::Failed => pb::PurchaseStatus::Failed,
        PurchaseStatus::Refunded => pb::PurchaseStatus::Refunded,
    }
}

pub(crate) fn purchase(view: PurchaseView) -> pb::CreditPurchase {
    let p = view.purchase;
    pb::CreditPurchase {
        id: p.id,
        account_id: p.account_id,
        credit_pack_id: p.credit_pack_id,
        credit_pack_name: view.pack_name,
        quantity: p.credits,
        amount: p.amount,
        currency: p.currency,
        stripe_checkout_session_id: p.session_id,
        status: status(p.status).into(),
        created_at: Some(timestamp(p.created_at)),
        completed_at: p.completed_at.map(timestamp),
        amount_refunded: p.amount_refunded,
    }
}

pub(crate) fn balance(balance: Balance) -> pb::GetBalanceResponse {
    pb::GetBalanceResponse {
        account_id: balance.account.id,
        email: balance.account.email,
        credit_balance: balance.credit_balance,
        is_trial_user: balance.account.is_trial_user,
        available_balance: balance.available_balance,
        held_credits: balance.held_credits,
        next_expiry_at: balance.next_expiry_at.map(timestamp),
        expiring_credits: balance.expiring_credits,
    }
}

pub(crate) fn account_view(account: AccountView) -> pb::Account {
    pb::Account {
        account_id: account.account_id,
        email: account.email,
        credit_balance: account.credit_balance,
        available_balance: account.available_balance,
        held_credits: account.held_credits,
        is_trial_user: account.is_trial_user,
        created_at: Some(timestamp(account.created_at)),
    }
}

pub(crate) fn entry(entry: EntryView) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: entry.id.to_string(),
        account_id: entry.account_id,
        delta: entry.delta,
        balance_after: entry.balance_after,
        kind: entry.kind.as_str().to_owned(),
        reason: entry.reason,
        reference: entry.reference,
        metadata: entry.metadata.into_iter().collect(),
        created_at: Some(timestamp(entry.created_at)),
        allocations: entry
            .moves
            .into_iter()
            .map(|m| pb::Allocation {
                lot_id: m.lot_id.unwrap_or_default(),
                credits: m.credits,
                value: m.value,
                source: m.source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                currency: m.currency.unwrap_or_default(),
            })
            .collect(),
    }
}

/// A request's `as_of`: unset means now.
pub(crate) fn as_of(at: Option<&Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    at.map(|at| time("as_of", at)).transpose()
}

/// Money per credit as a decimal of minor units, up to six places ("1.5", "0").
fn unit_value(value: i64, credits: i64) -> String {
    if credits <= 0 || value <= 0 {
        return "0".to_owned();
    }
    let micros = i128::from(value) * 1_000_000 / i128::from(credits);
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

pub(crate) fn lot(lot: Lot) -> pb::CreditLot {
    pb::CreditLot {
        id: lot.id,
        source: lot.source.as_str().to_owned(),
        reference: lot.reference,
        credits: lot.credits,
        remaining: lot.remaining,
        expires_at: lot.expires_at.map(timestamp),
        created_at: Some(timestamp(lot.created_at)),
        unit_value: unit_value(lot.value.minor, lot.credits),
        value: lot.value.minor,
        currency: lot.value.currency.unwrap_or_default(),
        value_remaining: lot.value_remaining,
        rollover_cap: lot.rollover.map_or(0, |r| r.cap),
    }
}

#[cfg(test)]
mod tests {
    use super::unit_value;

    #[test]
    fn a_unit_value_is_a_short_exact_decimal() {
        assert_eq!(unit_value(1500, 1000), "1.5");
        assert_eq!(unit_value(3000, 1000), "3");
        assert_eq!(unit_value(1000, 3), "333.333333");
        assert_eq!(unit_value(0, 100), "0");
        assert_eq!(unit_value(5, 1000), "0.005");
    }
}
