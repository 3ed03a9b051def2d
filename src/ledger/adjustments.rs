//! Refunds and disputes: credits taken back in proportion to the money returned, held while a
//! dispute is open, released if it is won.
//!
//! Stripe's facts are recorded by payment intent as they arrive (cumulative refund totals,
//! individual refunds, disputes), then `settle` brings the purchase and ledger in line with them.
//! Because `settle` always works from totals and records what it already applied, events may
//! arrive in any order and any number of times without taking the same money twice.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict},
};

use super::{LedgerError, PurchaseStatus, fulfilment::credit_account};
use crate::entities::{credit_purchase, payment_refund_total, stripe_dispute, stripe_refund};

/// A refund-related fact from one Stripe event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundFact {
    /// `charge.refunded`: the cumulative amount refunded on the charge.
    ChargeTotal { amount_refunded: i64 },
    /// `refund.created` / `refund.updated`: one refund and its status.
    Refund {
        refund_id: String,
        amount: i64,
        status: String,
    },
}

/// A dispute fact from `charge.dispute.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFact {
    pub dispute_id: String,
    pub amount: i64,
    pub status: String,
}

/// What `settle` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settlement {
    /// False when no completed purchase has this payment intent yet; the facts wait for it.
    pub purchase_found: bool,
    /// Net credits added (negative when taken back).
    pub credits_delta: i64,
}

/// Refund statuses whose money has left (or is leaving) the account.
const COUNTED_REFUND_STATUSES: [&str; 3] = ["succeeded", "pending", "requires_action"];
/// Dispute statuses that end it.
const DISPUTE_WON: [&str; 2] = ["won", "warning_closed"];
const DISPUTE_LOST: [&str; 1] = ["lost"];

/// Serialises everything that settles one payment intent. Its `payment_refund_totals` row
/// (created empty on first sight) is the lock: a refund, a dispute and the completion of the
/// purchase each take it `FOR UPDATE` before reading refund, dispute or purchase state, so
/// none of them decides on a view the other has not committed yet. Call it first in the
/// transaction. SQLite needs no row lock: its write transactions are already serial.
pub async fn lock_payment<C: ConnectionTrait>(db: &C, payment_intent: &str) -> Result<(), LedgerError> {
    payment_refund_total::Entity::insert(payment_refund_total::ActiveModel {
        payment_intent_id: Set(payment_intent.to_owned()),
        amount_refunded: Set(0),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(payment_refund_total::Column::PaymentIntentId)
            .do_nothing()
            .to_owned(),
    )
    .try_insert()
    .exec_without_returning(db)
    .await?;
    payment_refund_total::Entity::find_by_id(payment_intent)
        .lock_exclusive()
        .one(db)
        .await?;
    Ok(())
}

/// Records a refund fact; the caller holds `lock_payment` for the payment intent.
pub async fn record_refund<C: ConnectionTrait>(
    db: &C,
    payment_intent: &str,
    fact: &RefundFact,
) -> Result<(), LedgerError> {
    let now = Utc::now();
    match fact {
        RefundFact::ChargeTotal { amount_refunded } => {
            // Cumulative totals only grow; an older event arriving late changes nothing.
            payment_refund_total::Entity::update_many()
                .col_expr(
                    payment_refund_total::Column::AmountRefunded,
                    Expr::value(*amount_refunded),
                )
                .col_expr(payment_refund_total::Column::UpdatedAt, Expr::value(now))
                .filter(payment_refund_total::Column::PaymentIntentId.eq(payment_intent))
                .filter(payment_refund_total::Column::AmountRefunded.lt(*amount_refunded))
                .exec(db)
                .await?;
        }
        RefundFact::Refund {
            refund_id,
            amount,
            status,
        } => {
            stripe_refund::Entity::insert(stripe_refund::ActiveModel {
                id: Set(refund_id.clone()),
                payment_intent_id: Set(payment_intent.to_owned()),
                amount: Set(*amount),
                status: Set(status.clone()),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(stripe_refund::Column::Id)
                    .update_columns([
                        stripe_refund::Column::Amount,
                        stripe_refund::Column::Status,
                        stripe_refund::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        }
    }
    Ok(())
}

/// Records a dispute fact; the caller holds `lock_payment` for the payment intent.
pub async fn record_dispute<C: ConnectionTrait>(
    db: &C,
    payment_intent: &str,
    fact: &DisputeFact,
) -> Result<(), LedgerError> {
    let now = Utc::now();
    stripe_dispute::Entity::insert(stripe_dispute::ActiveModel {
        id: Set(fact.dispute_id.clone()),
        payment_intent_id: Set(payment_intent.to_owned()),
        amount: Set(fact.amount),
        status: Set(fact.status.clone()),
        hold_state: Set("none".to_owned()),
        held_credits: Set(0),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(stripe_dispute::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .try_insert()
    .exec_without_returning(db)
    .await?;
    // A closed dispute stays closed, whatever older updates arrive after.
    let closed: Vec<&str> = DISPUTE_WON.iter().chain(DISPUTE_LOST.iter()).copied().collect();
    stripe_dispute::Entity::update_many()
        .col_expr(stripe_dispute::Column::Status, Expr::value(fact.status.as_str()))
        .col_expr(stripe_dispute::Column::UpdatedAt, Expr::value(now))
        .filter(stripe_dispute::Column::Id.eq(fact.dispute_id.as_str()))
        .filter(stripe_dispute::Column::Status.is_not_in(closed))
        .exec(db)
        .await?;
    Ok(())
}

/// Brings the completed purchase paid by `payment_intent` in line with every refund and
/// dispute recorded for it. `reference` names the ledger entry for a refund change. The caller
/// holds `lock_payment`; the purchase's refunded total is still written compare-and-set, so a
/// settlement that raced anyway fails (and is retried) instead of taking credits twice.
pub async fn settle<C: ConnectionTrait>(
    db: &C,
    payment_intent: &str,
    reference: &str,
) -> Result<Settlement, LedgerError> {
    let Some(purchase) = credit_purchase::Entity::find()
        .filter(credit_purchase::Column::StripePaymentIntentId.eq(payment_intent))
        .filter(credit_purchase::Column::Status.is_in([
            PurchaseStatus::Completed.as_str(),
            PurchaseStatus::Refunded.as_str(),
        ]))
        .one(db)
        .await?
    else {
        return Ok(Settlement::default());
    };
    let mut settlement = Settlement {
        purchase_found: true,
        credits_delta: 0,
    };

    // Refunds: the larger of the charge's cumulative total and the sum of live refunds, so the
    // same money reported both ways counts once.
    let charge_total = payment_refund_total::Entity::find_by_id(payment_intent)
        .one(db)
        .await?
        .map_or(0, |t| t.amount_refunded);
    let refunds_total: i64 = stripe_refund::Entity::find()
        .filter(stripe_refund::Column::PaymentIntentId.eq(payment_intent))
        .filter(stripe_refund::Column::Status.is_in(COUNTED_REFUND_STATUSES))
        .all(db)
        .await?
        .iter()
        .map(|r| r.amount)
        .sum();
    let refunded = charge_total.max(refunds_total).clamp(0, purchase.amount);
    let mut lost_dispute = false;
    if refunded != purchase.amount_refunded {
        let taken_before = proportional(purchase.quantity, purchase.amount_refunded, purchase.amount);
        let taken_now = proportional(purchase.quantity, refunded, purchase.amount);
        let delta = taken_before - taken_now;
        if delta != 0 {
            let balance = credit_account(db, &purchase.account_id, delta, "refund", reference).await?;
            settlement.credits_delta += delta;
            if balance < 0 {
                tracing::warn!(
                    account_id = purchase.account_id,
                    balance,
                    "refund took the balance below zero"
                );
            }
        }
        let swapped = credit_purchase::Entity::update_many()
            .col_expr(credit_purchase::Column::AmountRefunded, Expr::value(refunded))
            .col_expr(credit_purchase::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(credit_purchase::Column::Id.eq(purchase.id.as_str()))
            .filter(credit_purchase::Column::AmountRefunded.eq(purchase.amount_refunded))
            .exec(db)
            .await?;
        if swapped.rows_affected != 1 {
            return Err(LedgerError::Contended(
                "purchase refund total changed while settling",
            ));
        }
    }
    let still_granted = purchase.quantity - proportional(purchase.quantity, refunded, purchase.amount);

    // Disputes: hold what is still granted while open, give it back if won, keep it if lost.
    let disputes = stripe_dispute::Entity::find()
        .filter(stripe_dispute::Column::PaymentIntentId.eq(payment_intent))
        .all(db)
        .await?;
    for dispute in disputes {
        let won = DISPUTE_WON.contains(&dispute.status.as_str());
        let lost = DISPUTE_LOST.contains(&dispute.status.as_str());
        let (delta, next_state, reason) = match (dispute.hold_state.as_str(), won, lost) {
            ("none", false, _) => (-still_granted, if lost { "lost" } else { "held" }, "dispute_hold"),
            ("held", true, _) => (dispute.held_credits, "released", "dispute_release"),
            ("held", _, true) => (0, "lost", ""),
            ("none", true, _) => (0, "released", ""),
            (state, _, _) => {
                lost_dispute |= state == "lost";
                continue;
            }
        };
        if delta != 0 {
            let balance = credit_account(db, &purchase.account_id, delta, reason, &dispute.id).await?;
            settlement.credits_delta += delta;
            if balance < 0 {
                tracing::warn!(
                    account_id = purchase.account_id,
                    balance,
                    "dispute hold took the balance below zero"
                );
            }
        }
        let held = if next_state == "held" || next_state == "lost" {
            dispute.held_credits - delta.min(0)
        } else {
            0
        };
        let swapped = stripe_dispute::Entity::update_many()
            .col_expr(stripe_dispute::Column::HoldState, Expr::value(next_state))
            .col_expr(stripe_dispute::Column::HeldCredits, Expr::value(held))
            .col_expr(stripe_dispute::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(stripe_dispute::Column::Id.eq(dispute.id.as_str()))
            .filter(stripe_dispute::Column::HoldState.eq(dispute.hold_state.as_str()))
            .exec(db)
            .await?;
        if swapped.rows_affected != 1 {
            return Err(LedgerError::Contended("dispute hold changed while settling"));
        }
        lost_dispute |= next_state == "lost";
    }

    let status = if refunded >= purchase.amount || lost_dispute {
        PurchaseStatus::Refunded
    } else {
        PurchaseStatus::Completed
    };
    if status.as_str() != purchase.status {
        credit_purchase::Entity::update_many()
            .col_expr(credit_purchase::Column::Status, Expr::value(status.as_str()))
            .col_expr(credit_purchase::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(credit_purchase::Column::Id.eq(purchase.id.as_str()))
            .exec(db)
            .await?;
    }
    Ok(settlement)
}

/// `floor(credits × part / whole)` without overflow.
fn proportional(credits: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let value = i128::from(credits) * i128::from(part.clamp(0, whole)) / i128::from(whole);
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::proportional;

    #[test]
    fn clawback_is_floored_and_cumulative_sums_match() {
        assert_eq!(proportional(2000, 3000, 3000), 2000);
        assert_eq!(proportional(2000, 1000, 3000), 666);
        assert_eq!(proportional(2000, 0, 3000), 0);
        assert_eq!(proportional(2000, 5000, 3000), 2000, "never more than granted");
        assert_eq!(proportional(10, 1, 0), 0);
        // Three partial refunds of 1000 take floor-consistent totals: 666, 1333, 2000.
        let steps: Vec<i64> = [1000, 2000, 3000]
            .iter()
            .map(|r| proportional(2000, *r, 3000))
            .collect();
        assert_eq!(steps, [666, 1333, 2000]);
    }
}
