//! Subscription webhooks: `invoice.paid` grants a period's allowance once per invoice,
//! `customer.subscription.*` keep the newest state whatever order they come in,
//! `invoice.payment_failed` marks the subscription past due, and an upgrade's proration tops
//! the period up to the new plan.

use chrono::Months;
use credits::grpc::pb::SubscriptionStatus;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp,
    subscriptions::{
        BASIC_AMOUNT, BASIC_CREDITS, BASIC_PRICE, FIXTURE_SUBSCRIPTION, PRO_AMOUNT, PRO_CREDITS, PRO_PLAN,
        PRO_PRICE, PRO_ROLLOVER_CAP, Period, event, invoice_json, subscription_json,
    },
};

const ACCOUNT: &str = "acct_7d1f3c2a";
const SUB: &str = FIXTURE_SUBSCRIPTION;

async fn app_with_account() -> TestApp {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    app
}

fn paid(id: &str, reason: &str, period: Period) -> Value {
    invoice_json(id, SUB, ACCOUNT, reason, PRO_AMOUNT, PRO_PRICE, period)
}

fn sub_event(id: &str, kind: &str, created: i64, status: &str, period: Period) -> String {
    event(
        id,
        &format!("customer.subscription.{kind}"),
        created,
        subscription_json(SUB, ACCOUNT, PRO_PRICE, status, period),
    )
}

async fn status_of(app: &TestApp) -> SubscriptionStatus {
    app.get_subscription(SUB).await.expect("GetSubscription").status()
}

#[tokio::test]
async fn a_paid_invoice_grants_its_period_allowance_once_as_a_lot_of_its_own() {
    let app = app_with_account().await;
    let period = Period::started_days_ago(2);
    app.deliver(&sub_event("evt_c", "created", period.start, "active", period))
        .await;
    let body = event(
        "evt_paid",
        "invoice.paid",
        period.start,
        paid("in_1", "subscription_create", period),
    );
    app.deliver(&body).await;
    app.deliver(&body).await;
    let other_delivery = event(
        "evt_paid_again",
        "invoice.paid",
        period.start + 5,
        paid("in_1", "subscription_create", period),
    );
    app.deliver(&other_delivery).await;

    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    assert_eq!(
        app.entries_of_kind(ACCOUNT, "allowance").await,
        [(PRO_CREDITS, "allowance".to_owned())]
    );
    let lots = app.stored_lots(ACCOUNT).await;
    assert_eq!(lots.len(), 1, "{lots:?}");
    let lot = &lots[0];
    assert_eq!(
        (lot.source.as_str(), lot.reference.as_str()),
        ("allowance", "in_1")
    );
    assert_eq!((lot.credits, lot.remaining), (PRO_CREDITS, PRO_CREDITS));
    assert_eq!((lot.value, lot.currency.as_deref()), (PRO_AMOUNT, Some("usd")));
    assert_eq!(lot.expires_at.map(|t| t.timestamp()), Some(period.end));
    let until = period
        .end_time()
        .checked_add_months(Months::new(1))
        .expect("a time");
    assert_eq!(lot.rollover_cap, Some(PRO_ROLLOVER_CAP));
    assert_eq!(lot.rollover_until, Some(until));
    let outcomes = app.outcomes().await;
    assert_eq!(
        outcomes,
        ["updated", "credited", "already_credited"],
        "{outcomes:?}"
    );
    let shown = app.get_subscription(SUB).await.expect("GetSubscription");
    assert_eq!(shown.period_allowance, PRO_CREDITS);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn events_in_any_order_keep_the_newest_subscription_state_and_still_grant() {
    let app = app_with_account().await;
    let period = Period::started_days_ago(1);
    let t = period.start;
    // updated (newest) before invoice.paid, and created (oldest) last.
    app.deliver(&sub_event("evt_u", "updated", t + 20, "active", period))
        .await;
    app.deliver(&event(
        "evt_p",
        "invoice.paid",
        t + 10,
        paid("in_o", "subscription_create", period),
    ))
    .await;
    app.deliver(&sub_event("evt_c", "created", t, "incomplete", period))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::Active);
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    assert_eq!(app.outcomes().await, ["updated", "credited", "no_change"]);

    // Within one second a later kind is newer: updated over created, deleted over both.
    app.deliver(&sub_event("evt_u2", "updated", t + 30, "past_due", period))
        .await;
    app.deliver(&sub_event("evt_c2", "created", t + 30, "active", period))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::PastDue);
    app.deliver(&sub_event("evt_d", "deleted", t + 31, "canceled", period))
        .await;
    // Ended is ended: a newer update does not revive it.
    app.deliver(&sub_event("evt_u3", "updated", t + 40, "active", period))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::Canceled);
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn an_invoice_paid_before_the_subscription_is_known_opens_it_and_grants() {
    let app = app_with_account().await;
    let period = Period::started_days_ago(1);
    let mut invoice = paid("in_first", "subscription_create", period);
    // Only the price names the plan.
    invoice["parent"]["subscription_details"]["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("plan_id");
    app.deliver(&event("evt_p", "invoice.paid", period.start + 5, invoice))
        .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    let listed = app.list_subscriptions(ACCOUNT).await.expect("ListSubscriptions");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].plan_id.as_str()),
        (SUB, PRO_PLAN)
    );
    assert_eq!(listed[0].status(), SubscriptionStatus::Active);
    assert_eq!(listed[0].current_period_end.map(|t| t.seconds), Some(period.end));
    assert_eq!(listed[0].period_allowance, PRO_CREDITS);

    // The older created changes nothing; a newer update does.
    app.deliver(&sub_event("evt_c", "created", period.start, "incomplete", period))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::Active);
    let mut at_end = subscription_json(SUB, ACCOUNT, PRO_PRICE, "active", period);
    at_end["cancel_at_period_end"] = true.into();
    app.deliver(&event(
        "evt_u",
        "customer.subscription.updated",
        period.start + 60,
        at_end,
    ))
    .await;
    assert!(
        app.get_subscription(SUB)
            .await
            .expect("GetSubscription")
            .cancel_at_period_end
    );

    // An invoice naming no known account is kept as unmatched, granting nothing.
    let stranger = invoice_json(
        "in_x",
        "sub_stranger",
        "acct_nobody",
        "subscription_create",
        2000,
        PRO_PRICE,
        period,
    );
    app.deliver(&event("evt_x", "invoice.paid", period.start, stranger))
        .await;
    assert_eq!(
        app.outcomes().await.last().map(String::as_str),
        Some("unmatched_account")
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_cycle_invoice_paid_before_the_previous_period_ended_grants_its_own_period() {
    let app = app_with_account().await;
    let first = Period::started_days_ago(25);
    let second = first.next();
    app.deliver(&sub_event("evt_c", "created", first.start, "active", first))
        .await;
    app.deliver(&event(
        "evt_p1",
        "invoice.paid",
        first.start,
        paid("in_p1", "subscription_create", first),
    ))
    .await;
    // Stripe bills the renewal a little before the period turns; the update comes later.
    app.deliver(&event(
        "evt_p2",
        "invoice.paid",
        second.start - 3600,
        paid("in_p2", "subscription_cycle", second),
    ))
    .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, 2 * PRO_CREDITS);
    let ends: Vec<(String, Option<i64>)> = app
        .stored_lots(ACCOUNT)
        .await
        .into_iter()
        .map(|l| (l.reference, l.expires_at.map(|t| t.timestamp())))
        .collect();
    assert_eq!(
        ends,
        [
            ("in_p1".to_owned(), Some(first.end)),
            ("in_p2".to_owned(), Some(second.end))
        ]
    );
    assert_eq!(
        app.get_subscription(SUB)
            .await
            .expect("GetSubscription")
            .period_allowance,
        PRO_CREDITS,
        "the current period is still the first"
    );
    app.deliver(&sub_event("evt_u", "updated", second.start, "active", second))
        .await;
    let shown = app.get_subscription(SUB).await.expect("GetSubscription");
    assert_eq!(shown.current_period_start.map(|t| t.seconds), Some(second.start));
    assert_eq!(shown.period_allowance, PRO_CREDITS);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_failed_payment_marks_the_subscription_past_due_until_a_newer_state_or_payment() {
    let app = app_with_account().await;
    let first = Period::started_days_ago(31);
    let second = first.next();
    let t = second.start;
    app.deliver(&sub_event("evt_c", "created", first.start, "active", first))
        .await;
    let renewal = paid("in_renew", "subscription_cycle", second);
    let mut failed = renewal.clone();
    failed["status"] = "open".into();
    failed["amount_paid"] = 0.into();
    failed["amount_remaining"] = PRO_AMOUNT.into();
    app.deliver(&event("evt_f", "invoice.payment_failed", t + 10, failed))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::PastDue);
    assert_eq!(app.credit_balance(ACCOUNT).await, 0);
    assert_eq!(
        app.outcomes().await.last().map(String::as_str),
        Some("payment_failed")
    );
    // An update sent before the failure arrives late: still past due.
    app.deliver(&sub_event("evt_u_old", "updated", t + 5, "active", second))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::PastDue);

    // The retry succeeds: the invoice grants now, and the subscription is active again.
    app.deliver(&event("evt_p", "invoice.paid", t + 3600, renewal))
        .await;
    assert_eq!(
        app.outcomes().await,
        ["updated", "payment_failed", "no_change", "credited"]
    );
    assert_eq!(status_of(&app).await, SubscriptionStatus::Active);
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    app.assert_spend_invariants().await;
}

/// An upgrade's proration invoice: the unused time of `from` credited, the rest of the period on
/// `to` charged.
fn proration(id: &str, period: Period, from: &str, to: &str, amount: i64) -> Value {
    let mut invoice = invoice_json(id, SUB, ACCOUNT, "subscription_update", amount, to, period);
    let lines = invoice["lines"]["data"].as_array_mut().expect("lines");
    let mut unused = lines[0].clone();
    unused["id"] = json!(format!("il_unused_{id}"));
    unused["amount"] = json!(-amount / 2);
    unused["pricing"]["price_details"]["price"] = json!(from);
    unused["parent"]["subscription_item_details"]["proration"] = json!(true);
    lines[0]["parent"]["subscription_item_details"]["proration"] = json!(true);
    lines.insert(0, unused);
    invoice
}

#[tokio::test]
async fn an_upgrade_tops_the_period_up_to_the_new_plan_and_a_downgrade_takes_nothing() {
    let app = app_with_account().await;
    let period = Period::started_days_ago(10);
    let basic = invoice_json(
        "in_basic",
        SUB,
        ACCOUNT,
        "subscription_create",
        BASIC_AMOUNT,
        BASIC_PRICE,
        period,
    );
    app.deliver(&event("evt_b", "invoice.paid", period.start, basic))
        .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, BASIC_CREDITS);

    let rest = Period {
        start: period.start + 10 * 86_400,
        end: period.end,
    };
    let upgrade = proration("in_up", rest, BASIC_PRICE, PRO_PRICE, 700);
    app.deliver(&event("evt_up", "invoice.paid", rest.start, upgrade.clone()))
        .await;
    app.deliver(&event("evt_up_again", "invoice.paid", rest.start + 1, upgrade))
        .await;
    assert_eq!(
        app.credit_balance(ACCOUNT).await,
        PRO_CREDITS,
        "topped up to the new plan"
    );
    let upgrade_lot = app
        .stored_lots(ACCOUNT)
        .await
        .into_iter()
        .find(|l| l.reference == "in_up")
        .expect("the upgrade's lot");
    assert_eq!(
        (upgrade_lot.credits, upgrade_lot.value),
        (PRO_CREDITS - BASIC_CREDITS, 700)
    );

    let moved = subscription_json(SUB, ACCOUNT, PRO_PRICE, "active", period);
    app.deliver(&event(
        "evt_u",
        "customer.subscription.updated",
        rest.start + 2,
        moved,
    ))
    .await;
    let shown = app.get_subscription(SUB).await.expect("GetSubscription");
    assert_eq!(shown.plan_id, PRO_PLAN);
    assert_eq!(shown.period_allowance, PRO_CREDITS);

    let downgrade = proration("in_down", rest, PRO_PRICE, BASIC_PRICE, 0);
    app.deliver(&event("evt_down", "invoice.paid", rest.start + 3, downgrade))
        .await;
    assert_eq!(
        app.credit_balance(ACCOUNT).await,
        PRO_CREDITS,
        "never less than nothing"
    );
    assert_eq!(
        app.outcomes().await,
        ["credited", "credited", "already_credited", "updated", "no_change"]
    );
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn a_failure_reported_after_its_invoice_was_paid_changes_nothing() {
    let app = app_with_account().await;
    let period = Period::started_days_ago(1);
    let t = period.start;
    app.deliver(&sub_event("evt_c", "created", t, "active", period))
        .await;
    let invoice = paid("in_retry", "subscription_create", period);
    app.deliver(&event("evt_p", "invoice.paid", t + 20, invoice.clone()))
        .await;
    // The first attempt's failure, delivered late.
    let mut failed = invoice;
    failed["amount_paid"] = 0.into();
    app.deliver(&event("evt_f", "invoice.payment_failed", t + 10, failed))
        .await;
    assert_eq!(status_of(&app).await, SubscriptionStatus::Active);
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    app.assert_spend_invariants().await;
}
