//! The ledger's tables (`accounts`, `credit_lots`, `credit_holds`, `credit_ledger`,
//! `idempotency_keys`): the only code that reads or writes them. `writes` locks, loads and writes
//! what one writer batch touches, set-wise; `reads` answers balance and listing queries. Rows
//! leave as the domain's types.

pub(crate) mod outbox;
pub(crate) mod reads;
pub(crate) mod writes;

use sea_orm::DbErr;

use super::{
    book::{
        AccountSettings, AccountState, Allocation, AutoTopUp, Hold, Lot, LotMove, LotValue, Metadata,
        RolloverTerms,
    },
    kinds::{HoldStatus, LotSource},
};
use crate::entities::{account, credit_hold, credit_lot};

fn bad(what: &str, raw: &str) -> DbErr {
    DbErr::Type(format!("{what}: unreadable stored value {raw:?}"))
}

fn account_state(model: account::Model) -> AccountState {
    AccountState {
        id: model.id,
        email: model.email,
        balance: model.credit_balance,
        debt: model.debt,
        is_trial_user: model.is_trial_user,
        created_at: model.created_at,
        last_available: model.available_balance,
        settings: AccountSettings {
            low_balance_threshold: model.low_balance_threshold,
            overdraft_limit: model.overdraft_limit,
            stripe_customer_id: model.stripe_customer_id,
            payment_method_id: model.payment_method_id,
            auto_top_up: AutoTopUp {
                enabled: model.auto_top_up_enabled,
                threshold: model.auto_top_up_threshold,
                pack_id: model.auto_top_up_pack_id,
                monthly_limit: model.auto_top_up_monthly_limit,
                paused: model.auto_top_up_paused,
            },
        },
    }
}

fn lot(model: credit_lot::Model) -> Result<Lot, DbErr> {
    Ok(Lot {
        source: LotSource::parse(&model.source).ok_or_else(|| bad("credit_lots.source", &model.source))?,
        id: model.id,
        account_id: model.account_id,
        reference: model.reference,
        credits: model.credits,
        remaining: model.remaining,
        held: model.held,
        expires_at: model.expires_at,
        created_at: model.created_at,
        value: LotValue {
            minor: model.value,
            currency: model.currency,
        },
        value_remaining: model.value_remaining,
        expired: model.expired,
        rollover: match (model.rollover_cap, model.rollover_until) {
            (Some(cap), Some(until)) => Some(RolloverTerms { cap, until }),
            _ => None,
        },
    })
}

fn hold(model: credit_hold::Model) -> Result<Hold, DbErr> {
    let allocations: Vec<(String, i64)> = serde_json::from_str(&model.allocations)
        .map_err(|_| bad("credit_holds.allocations", &model.allocations))?;
    Ok(Hold {
        status: HoldStatus::parse(&model.status).ok_or_else(|| bad("credit_holds.status", &model.status))?,
        metadata: metadata_from(&model.metadata)?,
        id: model.id,
        account_id: model.account_id,
        credits: model.credits,
        expires_at: model.expires_at,
        allocations: allocations
            .into_iter()
            .map(|(lot_id, credits)| Allocation { lot_id, credits })
            .collect(),
        reason: model.reason,
        captured_credits: model.captured_credits,
        created_at: model.created_at,
        closed_at: model.closed_at,
    })
}

fn metadata_from(raw: &str) -> Result<Metadata, DbErr> {
    serde_json::from_str(raw).map_err(|_| bad("metadata", raw))
}

/// Metadata as stored: a JSON object, or NULL when there is none (ledger entries).
fn metadata_text(metadata: &Metadata) -> Option<String> {
    (!metadata.is_empty()).then(|| serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned()))
}

fn allocations_text(hold: &Hold) -> String {
    let pairs: Vec<(&str, i64)> = hold
        .allocations
        .iter()
        .map(|a| (a.lot_id.as_str(), a.credits))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// One stored move: `[lot_id|null, credits, value, source|null, currency|null]`.
type StoredMove = (Option<String>, i64, i64, Option<String>, Option<String>);

/// An entry's moves as stored (NULL when it has none).
fn moves_text(moves: &[LotMove]) -> Option<String> {
    if moves.is_empty() {
        return None;
    }
    let rows: Vec<StoredMove> = moves
        .iter()
        .map(|m| {
            (
                m.lot_id.clone(),
                m.credits,
                m.value,
                m.source.map(|s| s.as_str().to_owned()),
                m.currency.clone(),
            )
        })
        .collect();
    serde_json::to_string(&rows).ok()
}

/// An entry's stored moves; entries from before moves were kept have none.
pub(crate) fn moves_from(raw: Option<&str>) -> Result<Vec<LotMove>, DbErr> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let rows: Vec<StoredMove> =
        serde_json::from_str(raw).map_err(|_| bad("credit_ledger.allocations", raw))?;
    rows.into_iter()
        .map(|(lot_id, credits, value, source, currency)| {
            let source = match source {
                Some(text) => Some(LotSource::parse(&text).ok_or_else(|| bad("allocation source", &text))?),
                None => None,
            };
            Ok(LotMove {
                lot_id,
                credits,
                value,
                source,
                currency,
            })
        })
        .collect()
}
