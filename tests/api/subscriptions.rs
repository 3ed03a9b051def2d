//! Subscribe, GetSubscription, ListSubscriptions and CancelSubscription over gRPC, with the
//! exact requests the fake Stripe receives.

use sha2::{Digest, Sha256};
use tonic::Code;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{
    TestApp, form_of, form_value,
    payments::FakePayments,
    spend::assert_refused,
    subscriptions::{
        FIXTURE_SUBSCRIPTION, PRO_CREDITS, PRO_PLAN, PRO_PRICE, Period, event, invoice_json,
        subscription_json,
    },
};

const ACCOUNT: &str = "acct_7d1f3c2a";

fn subscribe_request(plan: &str, key: &str) -> credits::grpc::pb::SubscribeRequest {
    credits::grpc::pb::SubscribeRequest {
        account_id: ACCOUNT.into(),
        plan_id: plan.into(),
        success_url: "https://app.example.test/welcome?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "https://app.example.test/plans".into(),
        idempotency_key: key.into(),
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn subscribe_opens_a_subscription_checkout_for_the_accounts_customer() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let fake = FakePayments::mount(&app, &[]).await;
    app.mock_checkout_sessions().await;

    let started = app
        .subscribe(subscribe_request(PRO_PLAN, "sub-1"))
        .await
        .expect("Subscribe");
    assert!(
        started
            .checkout_url
            .starts_with("https://checkout.stripe.com/c/pay/cs_test_new_"),
        "{started:?}"
    );

    let requests = app.stripe_requests().await;
    let paths: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST".to_owned(), "/v1/customers".to_owned()),
            ("POST".to_owned(), "/v1/checkout/sessions".to_owned())
        ]
    );
    let customer = &requests[0];
    let form = form_of(customer);
    assert_eq!(form_value(&form, "email"), Some("buyer@example.com"));
    assert_eq!(form_value(&form, "metadata[account_id]"), Some(ACCOUNT));
    assert_eq!(
        customer
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(sha256_hex(&format!("{ACCOUNT}\ncustomer")).as_str()),
        "the Customer is created once per account"
    );

    let session = &requests[1];
    let mut form = form_of(session);
    form.sort();
    let expected: Vec<(String, String)> = [
        ("cancel_url", "https://app.example.test/plans"),
        ("client_reference_id", ACCOUNT),
        ("customer", "cus_fake0001"),
        ("line_items[0][price]", PRO_PRICE),
        ("line_items[0][quantity]", "1"),
        ("metadata[account_id]", ACCOUNT),
        ("metadata[plan_id]", PRO_PLAN),
        ("mode", "subscription"),
        ("subscription_data[metadata][account_id]", ACCOUNT),
        ("subscription_data[metadata][plan_id]", PRO_PLAN),
        (
            "success_url",
            "https://app.example.test/welcome?session={CHECKOUT_SESSION_ID}",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(form, expected);
    assert_eq!(
        session
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(sha256_hex(&format!("{ACCOUNT}\nsubscribe\nsub-1")).as_str()),
        "derived from the account and the caller's key, never PurchaseCredits' key"
    );

    // A second Subscribe names the recorded Customer and creates none.
    app.subscribe(subscribe_request(PRO_PLAN, "sub-2"))
        .await
        .expect("Subscribe again");
    assert_eq!(fake.customers_created(), 1);
    let requests = app.stripe_requests().await;
    assert_eq!(requests.len(), 3);
    assert_eq!(
        form_value(&form_of(&requests[2]), "customer"),
        Some("cus_fake0001")
    );
}

#[tokio::test]
async fn subscribe_refuses_unknown_plans_accounts_and_redirects() {
    let app = TestApp::spawn_subscriptions().await;
    app.mock_checkout_sessions().await;
    assert_refused(
        app.subscribe(subscribe_request(PRO_PLAN, "k")).await,
        Code::NotFound,
        ACCOUNT,
    );
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    for plan in ["nope", "unsynced", "standard"] {
        assert_refused(
            app.subscribe(subscribe_request(plan, "k")).await,
            Code::NotFound,
            "plan",
        );
    }
    let mut elsewhere = subscribe_request(PRO_PLAN, "k");
    elsewhere.success_url = "https://evil.example/steal".into();
    assert_refused(
        app.subscribe(elsewhere).await,
        Code::InvalidArgument,
        "success_url",
    );
    let mut not_a_url = subscribe_request(PRO_PLAN, "k");
    not_a_url.cancel_url = "javascript:alert(1)".into();
    assert_refused(
        app.subscribe(not_a_url).await,
        Code::InvalidArgument,
        "cancel_url",
    );
    assert_refused(
        app.subscribe(subscribe_request("", "k")).await,
        Code::InvalidArgument,
        "plan_id",
    );
    assert!(
        app.stripe_requests().await.is_empty(),
        "nothing refused reached Stripe"
    );
}

#[tokio::test]
async fn subscriptions_are_listed_with_their_plan_period_and_allowance() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let period = Period::started_days_ago(3);
    let sub = subscription_json(FIXTURE_SUBSCRIPTION, ACCOUNT, PRO_PRICE, "active", period);
    app.deliver(&event(
        "evt_sub_created",
        "customer.subscription.created",
        period.start,
        sub,
    ))
    .await;
    let invoice = invoice_json(
        "in_first",
        FIXTURE_SUBSCRIPTION,
        ACCOUNT,
        "subscription_create",
        2000,
        PRO_PRICE,
        period,
    );
    app.deliver(&event("evt_in_paid", "invoice.paid", period.start, invoice))
        .await;

    let shown = app
        .get_subscription(FIXTURE_SUBSCRIPTION)
        .await
        .expect("GetSubscription");
    assert_eq!(shown.account_id, ACCOUNT);
    assert_eq!(
        (shown.plan_id.as_str(), shown.plan_name.as_str()),
        (PRO_PLAN, "Pro")
    );
    assert_eq!(shown.status(), credits::grpc::pb::SubscriptionStatus::Active);
    assert_eq!(shown.current_period_start.map(|t| t.seconds), Some(period.start));
    assert_eq!(shown.current_period_end.map(|t| t.seconds), Some(period.end));
    assert!(!shown.cancel_at_period_end);
    assert_eq!(shown.period_allowance, PRO_CREDITS);
    assert_eq!(
        app.list_subscriptions(ACCOUNT).await.expect("ListSubscriptions"),
        [shown]
    );

    assert!(app.list_subscriptions("acct_other_1").await.is_err());
    app.ensure("acct_other_1").await;
    assert_eq!(app.list_subscriptions("acct_other_1").await.expect("empty"), []);
    assert_refused(app.get_subscription("sub_nope").await, Code::NotFound, "sub_nope");
}

#[tokio::test]
async fn cancel_calls_stripe_and_the_paid_allowance_stays_until_its_period_ends() {
    let app = TestApp::spawn_subscriptions().await;
    app.ensure_with(ACCOUNT, "buyer@example.com")
        .await
        .expect("EnsureAccount");
    let period = Period::started_days_ago(3);
    let active = subscription_json(FIXTURE_SUBSCRIPTION, ACCOUNT, PRO_PRICE, "active", period);
    app.deliver(&event(
        "evt_created",
        "customer.subscription.created",
        period.start,
        active.clone(),
    ))
    .await;
    let invoice = invoice_json(
        "in_cancel",
        FIXTURE_SUBSCRIPTION,
        ACCOUNT,
        "subscription_create",
        2000,
        PRO_PRICE,
        period,
    );
    app.deliver(&event("evt_paid", "invoice.paid", period.start, invoice))
        .await;
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);

    let mut at_end = active.clone();
    at_end["cancel_at_period_end"] = true.into();
    Mock::given(method("POST"))
        .and(path(format!("/v1/subscriptions/{FIXTURE_SUBSCRIPTION}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(&at_end))
        .mount(&app.stripe)
        .await;
    let mut canceled = active.clone();
    canceled["status"] = "canceled".into();
    canceled["canceled_at"] = (period.start + 100).into();
    canceled["ended_at"] = (period.start + 100).into();
    Mock::given(method("DELETE"))
        .and(path(format!("/v1/subscriptions/{FIXTURE_SUBSCRIPTION}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(&canceled))
        .mount(&app.stripe)
        .await;

    let answered = app
        .cancel_subscription(FIXTURE_SUBSCRIPTION, true)
        .await
        .expect("CancelSubscription at period end");
    assert!(answered.cancel_at_period_end);
    assert_eq!(answered.status(), credits::grpc::pb::SubscriptionStatus::Active);
    let sent = app.stripe_requests().await;
    let last = sent.last().expect("a request");
    assert_eq!(
        (last.method.as_str(), last.url.path()),
        (
            "POST",
            format!("/v1/subscriptions/{FIXTURE_SUBSCRIPTION}").as_str()
        )
    );
    assert_eq!(
        form_of(last),
        [("cancel_at_period_end".to_owned(), "true".to_owned())]
    );

    let answered = app
        .cancel_subscription(FIXTURE_SUBSCRIPTION, false)
        .await
        .expect("CancelSubscription now");
    assert_eq!(answered.status(), credits::grpc::pb::SubscriptionStatus::Canceled);
    let sent = app.stripe_requests().await;
    let last = sent.last().expect("a request");
    assert_eq!(
        (last.method.as_str(), last.url.path()),
        (
            "DELETE",
            format!("/v1/subscriptions/{FIXTURE_SUBSCRIPTION}").as_str()
        )
    );
    assert!(last.body.is_empty());

    // Stripe's webhook ends it here: the paid period's credits stay, no longer rolling over.
    app.deliver(&event(
        "evt_deleted",
        "customer.subscription.deleted",
        period.start + 100,
        canceled,
    ))
    .await;
    let shown = app
        .get_subscription(FIXTURE_SUBSCRIPTION)
        .await
        .expect("GetSubscription");
    assert_eq!(shown.status(), credits::grpc::pb::SubscriptionStatus::Canceled);
    assert_eq!(shown.canceled_at.map(|t| t.seconds), Some(period.start + 100));
    assert_eq!(app.credit_balance(ACCOUNT).await, PRO_CREDITS);
    let lots = app.stored_lots(ACCOUNT).await;
    let allowance = lots
        .iter()
        .find(|l| l.reference == "in_cancel")
        .expect("the allowance lot");
    assert_eq!(allowance.remaining, PRO_CREDITS);
    assert_eq!(allowance.expires_at.map(|t| t.timestamp()), Some(period.end));
    assert_eq!(
        allowance.rollover_cap, None,
        "no rollover once the subscription ended"
    );

    // Cancelling what already ended asks Stripe nothing more.
    let before = app.stripe_requests().await.len();
    app.cancel_subscription(FIXTURE_SUBSCRIPTION, false)
        .await
        .expect("already canceled");
    assert_eq!(app.stripe_requests().await.len(), before);
    assert_refused(
        app.cancel_subscription("sub_unknown", true).await,
        Code::NotFound,
        "sub_unknown",
    );
    app.assert_spend_invariants().await;
}
