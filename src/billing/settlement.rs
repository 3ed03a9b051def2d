//! Refunds and disputes as a pure plan: from everything Stripe has said about one payment, what
//! the purchase should have taken back, and so what to change now.
//!
//! The plan is a function of the facts alone (not of their order): refunded money is the larger
//! of the charge's cumulative total and the sum of the live refunds; credits taken back for it
//! are `floor(credits × refunded / amount)`; an open or lost dispute holds whatever the refunds
//! left. Each settlement moves the purchase from what it already took to that target, so events
//! may arrive in any order, any number of times, and never take more than the purchase granted.

use std::collections::BTreeMap;

use super::types::PurchaseStatus;

/// `refund.created` / `refund.updated`: one refund and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFact {
    pub refund_id: String,
    pub amount: i64,
    pub status: String,
}

/// `charge.dispute.*`: one dispute and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFact {
    pub dispute_id: String,
    pub amount: i64,
    pub status: String,
}

/// What a dispute does to the purchase's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeHold {
    /// Nothing taken (not yet applied, or nothing left to hold).
    None,
    /// Credits held while the dispute is open.
    Held(i64),
    /// Won: whatever was held went back.
    Released,
    /// Lost: the credits stay taken.
    Lost(i64),
}

impl DisputeHold {
    pub fn state(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Held(_) => "held",
            Self::Released => "released",
            Self::Lost(_) => "lost",
        }
    }

    /// Credits this dispute keeps taken.
    pub fn credits(self) -> i64 {
        match self {
            Self::Held(n) | Self::Lost(n) => n,
            Self::None | Self::Released => 0,
        }
    }

    pub fn parse(state: &str, credits: i64) -> Option<Self> {
        Some(match state {
            "none" => Self::None,
            "held" => Self::Held(credits),
            "released" => Self::Released,
            "lost" => Self::Lost(credits),
            _ => return None,
        })
    }
}

/// Refund statuses whose money has left (or is leaving) the account.
const COUNTED_REFUND_STATUSES: [&str; 3] = ["succeeded", "pending", "requires_action"];
/// Dispute statuses that end it.
const DISPUTE_WON: [&str; 2] = ["won", "warning_closed"];
const DISPUTE_LOST: [&str; 1] = ["lost"];

fn is_closed(status: &str) -> bool {
    DISPUTE_WON.contains(&status) || DISPUTE_LOST.contains(&status)
}

/// Everything recorded about one payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFacts {
    /// The largest cumulative `charge.amount_refunded` seen.
    pub charge_refunded: i64,
    pub refunds: BTreeMap<String, RefundFact>,
    /// Each dispute with what it holds now.
    pub disputes: BTreeMap<String, (DisputeFact, DisputeHold)>,
}

impl PaymentFacts {
    /// Cumulative totals only grow: an older event arriving late changes nothing.
    pub fn record_charge_total(&mut self, amount_refunded: i64) {
        self.charge_refunded = self.charge_refunded.max(amount_refunded);
    }

    /// A refund as last reported.
    pub fn record_refund(&mut self, fact: RefundFact) {
        self.refunds.insert(fact.refund_id.clone(), fact);
    }

    /// A dispute as last reported; a closed dispute stays closed whatever older updates say.
    pub fn record_dispute(&mut self, fact: DisputeFact) {
        match self.disputes.get_mut(&fact.dispute_id) {
            Some((known, _)) if is_closed(&known.status) => {}
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
pub struct Terms {
    pub credits: i64,
    /// What the session charged.
    pub amount: i64,
    /// Refunded money already applied.
    pub amount_refunded: i64,
}

/// What one settlement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
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
pub fn proportional(credits: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let value = i128::from(credits) * i128::from(part.clamp(0, whole)) / i128::from(whole);
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Brings a completed purchase in line with every fact recorded for its payment.
pub fn plan(terms: Terms, facts: &PaymentFacts) -> Plan {
    let live_refunds: i64 = facts
        .refunds
        .values()
        .filter(|r| COUNTED_REFUND_STATUSES.contains(&r.status.as_str()))
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
        let status = fact.status.as_str();
        let next = if DISPUTE_WON.contains(&status) {
            DisputeHold::Released
        } else if DISPUTE_LOST.contains(&status) {
            lost = true;
            DisputeHold::Lost(if holding { left } else { 0 })
        } else if holding && left > 0 {
            DisputeHold::Held(left)
        } else {
            DisputeHold::None
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
