//! Refunds and disputes as a pure plan: from everything Stripe has said about one payment, what
//! the purchase should have taken back, and so what to change now.
//!
//! The plan is a function of the facts alone (not of their order): refunded money is the larger
//! of the charge's cumulative total and the sum of the live refunds; credits taken back for it
//! are `floor(credits × refunded / amount)`; an open or lost dispute holds whatever the refunds
//! left. Each settlement moves the purchase from what it already took to that target, so events
//! may arrive in any order, any number of times, and never take more than the purchase granted.

use std::collections::BTreeMap;

use super::types::{DisputeStatus, PurchaseStatus, RefundStatus};
use crate::vocab::text_enum;

/// `refund.created` / `refund.updated`: one refund and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFact {
    pub refund_id: String,
    pub amount: i64,
    pub status: RefundStatus,
}

/// `charge.dispute.*`: one dispute and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFact {
    pub dispute_id: String,
    pub amount: i64,
    pub status: DisputeStatus,
}

/// What a dispute does to the purchase's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisputeHold {
    /// Nothing taken (not yet applied, or nothing left to hold).
    None,
    /// Credits held while the dispute is open.
    Held(i64),
    /// Won: whatever was held went back.
    Released,
    /// Lost: the credits stay taken.
    Lost(i64),
}

text_enum!(
    /// A dispute hold's stored tag (`stripe_disputes.hold_state`); its credits are stored beside it.
    pub(crate) DisputeHoldState {
        None => "none",
        Held => "held",
        Released => "released",
        Lost => "lost",
    }
);

impl DisputeHold {
    pub(crate) fn state(self) -> DisputeHoldState {
        match self {
            Self::None => DisputeHoldState::None,
            Self::Held(_) => DisputeHoldState::Held,
            Self::Released => DisputeHoldState::Released,
            Self::Lost(_) => DisputeHoldState::Lost,
        }
    }

    /// Credits this dispute keeps taken.
    pub(crate) fn credits(self) -> i64 {
        match self {
            Self::Held(n) | Self::Lost(n) => n,
            Self::None | Self::Released => 0,
        }
    }

    pub(crate) fn parse(state: &str, credits: i64) -> Option<Self> {
        Some(match DisputeHoldState::parse(state)? {
            DisputeHoldState::None => Self::None,
            DisputeHoldState::Held => Self::Held(credits),
            DisputeHoldState::Released => Self::Released,
            DisputeHoldState::Lost => Self::Lost(credits),
        })
    }
}

/// Whether a refund's money has left (or is leaving) the account. An unknown status does not
/// count, as `failed` does not.
fn counts(status: &RefundStatus) -> bool {
    match status {
        RefundStatus::Succeeded | RefundStatus::Pending | RefundStatus::RequiresAction => true,
        RefundStatus::Failed | RefundStatus::Canceled | RefundStatus::Other(_) => false,
    }
}

/// How a dispute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Won,
    Lost,
}

/// How the status ends the dispute, if it does. An unknown status keeps it open (held).
fn closed(status: &DisputeStatus) -> Option<Closed> {
    match status {
        DisputeStatus::Won | DisputeStatus::WarningClosed => Some(Closed::Won),
        DisputeStatus::Lost => Some(Closed::Lost),
        DisputeStatus::WarningNeedsResponse
        | DisputeStatus::WarningUnderReview
        | DisputeStatus::NeedsResponse
        | DisputeStatus::UnderReview
        | DisputeStatus::Other(_) => None,
    }
}

/// Everything recorded about one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PaymentFacts {
    /// The largest cumulative `charge.amount_refunded` seen.
    pub charge_refunded: i64,
    pub refunds: BTreeMap<String, RefundFact>,
    /// Each dispute with what it holds now.
    pub disputes: BTreeMap<String, (DisputeFact, DisputeHold)>,
}

impl PaymentFacts {
    /// Cumulative totals only grow: an older event arriving late changes nothing.
    pub(crate) fn record_charge_total(&mut self, amount_refunded: i64) {
        self.charge_refunded = self.charge_refunded.max(amount_refunded);
    }

    /// A refund as last reported.
    pub(crate) fn record_refund(&mut self, fact: RefundFact) {
        self.refunds.insert(fact.refund_id.clone(), fact);
    }

    /// A dispute as last reported; a closed dispute stays closed whatever older updates say.
    pub(crate) fn record_dispute(&mut self, fact: DisputeFact) {
        match self.disputes.get_mut(&fact.dispute_id) {
            Some((known, _)) if closed(&known.status).is_some() => {}
            Some((known, _)) => *known = fact,
            None => {
                self.disputes
                    .insert(fact.dispute_id.clone(), (fact, DisputeHold::None));
            }
        }
    }
}

/// What the purchase granted, and what it already took back for refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Terms {
    pub credits: i64,
    /// What the session charged.
    pub amount: i64,
    /// Refunded money already applied.
    pub amount_refunded: i64,
}

/// What one settlement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Refunded money, now applied.
    pub amount_refunded: i64,
    /// Credits to move for refunds: negative takes back, positive gives back (a refund failed).
    pub refund_delta: i64,
    /// Credits to move for disputes: negative holds, positive releases.
    pub dispute_delta: i64,
    /// Each dispute's hold after.
    pub holds: BTreeMap<String, DisputeHold>,
    pub status: PurchaseStatus,
}

/// `floor(credits × part / whole)` without overflow, `part` clamped to `0..=whole`.
pub(crate) fn proportional(credits: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let value = i128::from(credits) * i128::from(part.clamp(0, whole)) / i128::from(whole);
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Brings a completed purchase in line with every fact recorded for its payment.
pub(crate) fn plan(terms: Terms, facts: &PaymentFacts) -> Plan {
    let live_refunds: i64 = facts
        .refunds
        .values()
        .filter(|r| counts(&r.status))
        .map(|r| r.amount.max(0))
        .fold(0_i64, i64::saturating_add);
    let refunded = facts
        .charge_refunded
        .max(live_refunds)
        .clamp(0, terms.amount.max(0));
    let taken_before = proportional(terms.credits, terms.amount_refunded, terms.amount);
    let taken_now = proportional(terms.credits, refunded, terms.amount);
    let left = terms.credits - taken_now;

    // The first open or lost dispute (by id) holds what the refunds left; a charge has one
    // dispute in practice, and holding it twice would take more than was granted.
    let mut holding = true;
    let mut holds = BTreeMap::new();
    let mut held_before = 0;
    let mut held_now = 0;
    let mut lost = false;
    for (id, (fact, hold)) in &facts.disputes {
        held_before += hold.credits();
        let next = match closed(&fact.status) {
            Some(Closed::Won) => DisputeHold::Released,
            Some(Closed::Lost) => {
                lost = true;
                DisputeHold::Lost(if holding { left } else { 0 })
            }
            None if holding && left > 0 => DisputeHold::Held(left),
            None => DisputeHold::None,
        };
        if next.credits() > 0 {
            holding = false;
        }
        held_now += next.credits();
        holds.insert(id.clone(), next);
    }
    let status = if refunded >= terms.amount || lost {
        PurchaseStatus::Refunded
    } else {
        PurchaseStatus::Completed
    };
    Plan {
        amount_refunded: refunded,
        refund_delta: taken_before - taken_now,
        dispute_delta: held_before - held_now,
        holds,
        status,
    }
}

#[cfg(test)]
mod tests;
