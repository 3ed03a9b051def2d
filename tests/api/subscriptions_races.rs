//! Subscription events racing: the same `invoice.paid` delivered 20 times at once, 20 distinct
//! events for one invoice (also across two more server processes on the same database), an
//! upgrade's proration racing its period's first invoice, and a refund racing the grant it takes
//! back. Several rounds each, on whichever database the
//! suite runs on; after every round the ledger's invariants hold.

use serde_json::Value;

use crate::helpers::{
    TestApp, WEBHOOK_SECRET, now, spawn_process, stripe_signature,
    subscriptions::{
        BASIC_AMOUNT, BASIC_PRICE, PRO_AMOUNT, PRO_CREDITS, PRO_PRICE, Period, event, invoice_json,
        invoice_refunded_event, subscription_json, with_payment,
    },
};

const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_deliveries_of_one_invoice_paid_at_once_grant_once() {
    let app = TestApp::spawn_subscriptions().await;
    let period = Period::started_days_ago(1);
    for round in 0..ROUNDS {
        let account = format!("acct_race_{round}");
        let sub = format!("sub_race_{round}");
        app.ensure(&account).await;
        let invoice = invoice_json(
            &format!("in_race_{round}"),
            &sub,
            &account,
            "subscription_create",
            PRO_AMOUNT,
            PRO_PRICE,
            period,
        );
        let body = event(
            &format!("evt_race_{round}"),
            "invoice.paid",
            period.start,
            invoice,
        );
        app.deliver_all(vec![body; 20]).await;
        assert_eq!(app.credit_balance(&account).await, PRO_CREDITS, "round {round}");
        assert_eq!(
            app.entries_of_kind(&account, "allowance").await.len(),
            1,
            "round {round}"
        );
        app.assert_spend_invariants().await;
    }
    let outcomes = app.outcomes().await;
    assert_eq!(outcomes.len(), ROUNDS, "one stored event per round: {outcomes:?}");
    assert!(outcomes.iter().all(|o| o == "credited"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_distinct_events_for_one_invoice_and_its_subscription_grant_once() {
    let app = TestApp::spawn_subscriptions().await;
    let period = Period::started_days_ago(1);
    for round in 0..ROUNDS {
        let account = format!("acct_many_{round}");
        let sub = format!("sub_many_{round}");
        app.ensure(&account).await;
        let invoice = invoice_json(
            &format!("in_many_{round}"),
            &sub,
            &account,
            "subscription_create",
            PRO_AMOUNT,
            PRO_PRICE,
            period,
        );
        let subscription = subscription_json(&sub, &account, PRO_PRICE, "active", period);
        let mut bodies = Vec::new();
        for i in 0..20 {
            let id = format!("evt_many_{round}_{i}");
            bodies.push(match i % 4 {
                0 => event(
                    &id,
                    "customer.subscription.created",
                    period.start,
                    subscription.clone(),
                ),
                1 => event(
                    &id,
                    "customer.subscription.updated",
                    period.start + i,
                    subscription.clone(),
                ),
                _ => event(&id, "invoice.paid", period.start + i, invoice.clone()),
            });
        }
        app.deliver_all(bodies).await;
        assert_eq!(app.credit_balance(&account).await, PRO_CREDITS, "round {round}");
        assert_eq!(
            app.entries_of_kind(&account, "allowance").await.len(),
            1,
            "round {round}"
        );
        let shown = app.get_subscription(&sub).await.expect("GetSubscription");
        assert_eq!(shown.period_allowance, PRO_CREDITS);
        app.assert_spend_invariants().await;
    }
    let outcomes = app.outcomes().await;
    assert_eq!(
        outcomes.iter().filter(|o| *o == "credited").count(),
        ROUNDS,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "already_credited").count(),
        ROUNDS * 9,
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_racing_its_periods_first_invoice_ends_with_the_new_plans_allowance() {
    let app = TestApp::spawn_subscriptions().await;
    let period = Period::started_days_ago(5);
    let rest = Period {
        start: period.start + 86_400,
        end: period.end,
    };
    for round in 0..ROUNDS {
        let account = format!("acct_up_{round}");
        let sub = format!("sub_up_{round}");
        app.ensure(&account).await;
        let first = invoice_json(
            &format!("in_first_{round}"),
            &sub,
            &account,
            "subscription_create",
            BASIC_AMOUNT,
            BASIC_PRICE,
            period,
        );
        let upgrade = invoice_json(
            &format!("in_upgrade_{round}"),
            &sub,
            &account,
            "subscription_update",
            900,
            PRO_PRICE,
            rest,
        );
        let mut bodies = Vec::new();
        for i in 0..10 {
            bodies.push(event(
                &format!("evt_first_{round}_{i}"),
                "invoice.paid",
                period.start,
                first.clone(),
            ));
            bodies.push(event(
                &format!("evt_up_{round}_{i}"),
                "invoice.paid",
                rest.start,
                upgrade.clone(),
            ));
        }
        app.deliver_all(bodies).await;
        assert_eq!(
            app.credit_balance(&account).await,
            PRO_CREDITS,
            "round {round}: whichever came first, the period got the pro allowance once"
        );
        app.assert_spend_invariants().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_racing_its_invoices_grant_takes_back_its_share_once() {
    let app = TestApp::spawn_subscriptions().await;
    let period = Period::started_days_ago(1);
    for round in 0..ROUNDS {
        let account = format!("acct_refund_{round}");
        let intent = format!("pi_sub_refund_{round}");
        app.ensure(&account).await;
        let invoice: Value = with_payment(
            invoice_json(
                &format!("in_refund_{round}"),
                &format!("sub_refund_{round}"),
                &account,
                "subscription_create",
                PRO_AMOUNT,
                PRO_PRICE,
                period,
            ),
            &intent,
        );
        let mut bodies = Vec::new();
        for i in 0..10 {
            bodies.push(event(
                &format!("evt_rp_{round}_{i}"),
                "invoice.paid",
                period.start,
                invoice.clone(),
            ));
            // A quarter refunded, then half (cumulative totals, in any order).
            let refunded = if i % 2 == 0 {
                PRO_AMOUNT / 4
            } else {
                PRO_AMOUNT / 2
            };
            bodies.push(invoice_refunded_event(
                &format!("evt_rr_{round}_{i}"),
                &intent,
                PRO_AMOUNT,
                refunded,
            ));
        }
        app.deliver_all(bodies).await;
        assert_eq!(
            app.credit_balance(&account).await,
            PRO_CREDITS / 2,
            "round {round}"
        );
        app.assert_spend_invariants().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_receiving_one_invoices_events_grant_once() {
    let app = TestApp::spawn_subscriptions().await;
    // Two more replicas: real processes of the binary, same database, packs and fake Stripe.
    let first = spawn_process(&app.settings).await;
    let second = spawn_process(&app.settings).await;
    let urls = [app.http_addr, first.http_addr, second.http_addr]
        .map(|a| format!("http://{a}/account/stripe-webhook/"));
    let period = Period::started_days_ago(1);
    for round in 0..ROUNDS {
        let account = format!("acct_replica_{round}");
        let sub = format!("sub_replica_{round}");
        app.ensure(&account).await;
        let invoice = invoice_json(
            &format!("in_replica_{round}"),
            &sub,
            &account,
            "subscription_create",
            PRO_AMOUNT,
            PRO_PRICE,
            period,
        );
        let subscription = subscription_json(&sub, &account, PRO_PRICE, "active", period);
        let mut deliveries = tokio::task::JoinSet::new();
        for i in 0..12 {
            let body = if i % 3 == 0 {
                event(
                    &format!("evt_rs_{round}_{i}"),
                    "customer.subscription.updated",
                    period.start + i,
                    subscription.clone(),
                )
            } else {
                event(
                    &format!("evt_ri_{round}_{i}"),
                    "invoice.paid",
                    period.start,
                    invoice.clone(),
                )
            };
            // Each event reaches every replica, as Stripe's retries may.
            for url in &urls {
                let (http, url, body) = (app.http.clone(), url.clone(), body.clone());
                deliveries.spawn(async move {
                    loop {
                        let status = http
                            .post(&url)
                            .header("Stripe-Signature", stripe_signature(&body, WEBHOOK_SECRET, now()))
                            .body(body.clone())
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        match status {
                            200 => return,
                            503 | 0 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                            other => panic!("webhook answered {other}"),
                        }
                    }
                });
            }
        }
        deliveries.join_all().await;
        assert_eq!(app.credit_balance(&account).await, PRO_CREDITS, "round {round}");
        assert_eq!(
            app.entries_of_kind(&account, "allowance").await.len(),
            1,
            "round {round}"
        );
        app.assert_spend_invariants().await;
    }
}
