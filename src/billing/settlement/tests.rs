//! The settlement plan: the documented examples, and for any order of refunds and disputes,
//! never more than the purchase and the same result in every order.

use proptest::prelude::*;

use super::*;

const TERMS: Terms = Terms {
    credits: 2000,
    amount: 3000,
    amount_refunded: 0,
};

/// Applies a plan to the facts and terms, as the writer stores it.
fn apply(terms: &mut Terms, facts: &mut PaymentFacts, taken: &mut i64) {
    let plan = plan(*terms, facts);
    *taken -= plan.refund_delta + plan.dispute_delta;
    terms.amount_refunded = plan.amount_refunded;
    for (id, hold) in plan.holds {
        if let Some((_, stored)) = facts.disputes.get_mut(&id) {
            *stored = hold;
        }
    }
}

fn refund(id: &str, amount: i64, status: &str) -> RefundFact {
    RefundFact {
        refund_id: id.into(),
        amount,
        status: RefundStatus::parse(status),
    }
}

fn dispute(status: &str) -> DisputeFact {
    DisputeFact {
        dispute_id: "dp_1".into(),
        amount: 3000,
        status: DisputeStatus::parse(status),
    }
}

#[test]
fn every_hold_state_round_trips_through_its_stored_tag() {
    for state in DisputeHoldState::ALL {
        let hold = DisputeHold::parse(state.as_str(), 7).expect("a known tag");
        assert_eq!(hold.state(), *state);
    }
    assert_eq!(DisputeHold::parse("pending", 7), None);
}

#[test]
fn an_unknown_refund_status_does_not_count_and_an_unknown_dispute_status_holds() {
    let mut facts = PaymentFacts::default();
    facts.record_refund(refund("re_1", 1500, "reversed_by_bank"));
    facts.record_dispute(dispute("prevented"));
    let plan = plan(TERMS, &facts);
    assert_eq!(plan.refund_delta, 0);
    assert_eq!(plan.holds["dp_1"], DisputeHold::Held(2000));
}

#[test]
fn clawback_is_floored_and_cumulative_sums_match() {
    assert_eq!(proportional(2000, 3000, 3000), 2000);
    assert_eq!(proportional(2000, 1000, 3000), 666);
    assert_eq!(proportional(2000, 5000, 3000), 2000, "never more than granted");
    assert_eq!(proportional(10, 1, 0), 0);
    let steps: Vec<i64> = [1000, 2000, 3000]
        .iter()
        .map(|r| proportional(2000, *r, 3000))
        .collect();
    assert_eq!(steps, [666, 1333, 2000]);
}

#[test]
fn the_same_money_reported_both_ways_counts_once() {
    let mut facts = PaymentFacts::default();
    facts.record_refund(refund("re_1", 1000, "succeeded"));
    facts.record_charge_total(1000);
    let plan = plan(TERMS, &facts);
    assert_eq!((plan.amount_refunded, plan.refund_delta), (1000, -666));
    assert_eq!(plan.status, PurchaseStatus::Completed);
}

#[test]
fn a_failed_refund_gives_its_credits_back() {
    let mut facts = PaymentFacts::default();
    facts.record_refund(refund("re_1", 1500, "succeeded"));
    let first = plan(TERMS, &facts);
    facts.record_refund(refund("re_1", 1500, "failed"));
    let terms = Terms {
        amount_refunded: first.amount_refunded,
        ..TERMS
    };
    let second = plan(terms, &facts);
    assert_eq!((first.refund_delta, second.refund_delta), (-1000, 1000));
}

#[test]
fn a_dispute_holds_what_is_left_and_a_won_one_releases_it() {
    let mut facts = PaymentFacts::default();
    facts.record_dispute(dispute("needs_response"));
    let held = plan(TERMS, &facts);
    assert_eq!(
        (held.dispute_delta, held.holds["dp_1"]),
        (-2000, DisputeHold::Held(2000))
    );
    facts.disputes.insert(
        "dp_1".into(),
        (dispute("needs_response"), DisputeHold::Held(2000)),
    );
    facts.record_dispute(dispute("won"));
    let released = plan(TERMS, &facts);
    assert_eq!(
        (released.dispute_delta, released.holds["dp_1"]),
        (2000, DisputeHold::Released)
    );
    assert_eq!(released.status, PurchaseStatus::Completed);
}

#[test]
fn a_lost_dispute_closes_the_purchase_and_a_late_open_changes_nothing() {
    let mut facts = PaymentFacts::default();
    facts.record_dispute(dispute("lost"));
    facts.record_dispute(dispute("needs_response"));
    let plan = plan(TERMS, &facts);
    assert_eq!(plan.holds["dp_1"], DisputeHold::Lost(2000));
    assert_eq!(plan.status, PurchaseStatus::Refunded);
}

#[derive(Debug, Clone)]
enum Fact {
    ChargeTotal(i64),
    Refund(usize, i64, &'static str),
    Dispute(&'static str),
}

fn fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        (0..4000i64).prop_map(Fact::ChargeTotal),
        (
            0..3usize,
            0..2000i64,
            prop_oneof![
                Just("succeeded"),
                Just("pending"),
                Just("failed"),
                Just("canceled")
            ]
        )
            .prop_map(|(n, amount, status)| Fact::Refund(n, amount, status)),
        prop_oneof![
            Just("needs_response"),
            Just("under_review"),
            Just("won"),
            Just("lost")
        ]
        .prop_map(Fact::Dispute),
    ]
}

fn record(facts: &mut PaymentFacts, fact: &Fact) {
    match fact {
        Fact::ChargeTotal(total) => facts.record_charge_total(*total),
        Fact::Refund(n, amount, status) => facts.record_refund(refund(&format!("re_{n}"), *amount, status)),
        Fact::Dispute(status) => facts.record_dispute(dispute(status)),
    }
}

proptest! {
    /// Whatever order the events arrive in, settling after each never takes more than the
    /// purchase granted, nor less than nothing.
    #[test]
    fn no_order_takes_more_than_the_purchase(
        credits in 1..5000i64,
        amount in 1..5000i64,
        events in proptest::collection::vec(fact(), 1..12),
    ) {
        let mut terms = Terms { credits, amount, amount_refunded: 0 };
        let mut facts = PaymentFacts::default();
        let mut taken = 0;
        for event in &events {
            record(&mut facts, event);
            apply(&mut terms, &mut facts, &mut taken);
            prop_assert!((0..=credits).contains(&taken), "took {} of {}", taken, credits);
        }
    }

    /// Two arrival orders of the same events end in the same state. (A closed dispute ignores
    /// later updates, so orders are compared among events whose dispute statuses agree on the
    /// last closing one.)
    #[test]
    fn every_order_reaches_the_same_result(
        events in proptest::collection::vec(fact(), 1..10),
        seed in any::<u64>(),
    ) {
        let run = |order: &[Fact]| {
            let mut terms = TERMS;
            let mut facts = PaymentFacts::default();
            let mut taken = 0;
            for event in order {
                record(&mut facts, event);
                apply(&mut terms, &mut facts, &mut taken);
            }
            (taken, terms.amount_refunded, facts.disputes.values().map(|(_, h)| *h).collect::<Vec<_>>())
        };
        // Refunds are reported whole each time (their last report wins), and a dispute's close is
        // final: keep one report per refund and one closing status, as Stripe sends them.
        let mut canonical: Vec<Fact> = Vec::new();
        let mut seen_refunds = std::collections::BTreeSet::new();
        let mut closed = false;
        for event in &events {
            match event {
                Fact::Refund(n, ..) if !seen_refunds.insert(*n) => {}
                Fact::Dispute(status) if matches!(*status, "won" | "lost") => {
                    if !closed {
                        closed = true;
                        canonical.push(event.clone());
                    }
                }
                other => canonical.push(other.clone()),
            }
        }
        let mut shuffled = canonical.clone();
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(run(&canonical), run(&shuffled));
    }
}
