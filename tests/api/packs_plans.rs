//! `[[plan]]` in the packs file: `credits packs sync` creates each plan's Product and recurring
//! Price once (the exact requests, with their Idempotency-Key), `packs list` shows plans, plans
//! removed from the file are deactivated, and a bad plan exits 2 naming the plan and field.

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::{
    helpers::{TestApp, form_of},
    packs_sync::{fields, out, price_json, product_json, requests, sync},
};

const PLAN_PACKS: &str = r#"
[[pack]]
id = "alpha"
name = "Alpha"
credits = 100
unit_amount = 500
currency = "usd"
stripe_price_id = "price_alpha_pinned"

[[plan]]
id = "pro-monthly"
name = "Pro"
credits = 10000
interval = "month"
unit_amount = 2000
currency = "usd"
rollover_cap = 5000
"#;

const PLAN_KEY: &str = "credits_plan_pro-monthly_usd_2000_month";
const PLAN_PRICE: &str = "price_credits_plan_pro-monthly_usd_2000_month";

/// A Price for a lookup key; `credits_plan_…_<amount>_<interval>` keys make a recurring one.
fn priced(key: &str) -> Value {
    let mut parts = key.rsplit('_');
    let last = parts.next().unwrap_or_default();
    if key.starts_with("credits_plan_") {
        let amount = parts.next().and_then(|a| a.parse().ok()).unwrap_or(0);
        let mut price = price_json(&format!("price_{key}"), key, amount);
        price["type"] = Value::from("recurring");
        price["recurring"] = json!({"interval": last, "interval_count": 1, "meter": null,
            "trial_period_days": null, "usage_type": "licensed"});
        price
    } else {
        price_json(&format!("price_{key}"), key, last.parse().unwrap_or(0))
    }
}

/// `GET /v1/prices?lookup_keys[0]=…`: a Price for the keys in `known`, else none.
struct Prices(Vec<&'static str>);

impl Respond for Prices {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .url
            .query_pairs()
            .find(|(k, _)| k.starts_with("lookup_keys"))
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let data: Vec<Value> = if self.0.contains(&key.as_str()) {
            vec![priced(&key)]
        } else {
            vec![]
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "url": "/v1/prices", "has_more": false, "data": data}))
    }
}

/// `POST /v1/prices`: the Price named after the posted lookup key.
struct NewPrice;

impl Respond for NewPrice {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = form_of(request)
            .into_iter()
            .find(|(k, _)| k == "lookup_key")
            .map(|(_, v)| v)
            .unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(priced(&key))
    }
}

async fn mount(stripe: &MockServer, known_prices: Vec<&'static str>, products_exist: bool) {
    Mock::given(method("GET"))
        .and(path("/v1/prices"))
        .respond_with(Prices(known_prices))
        .mount(stripe)
        .await;
    let product = if products_exist {
        ResponseTemplate::new(200).set_body_json(product_json("credits_plan_pro-monthly"))
    } else {
        ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such product"}}))
    };
    Mock::given(method("GET"))
        .and(path_regex("^/v1/products/[a-z_-]+$"))
        .respond_with(product)
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(product_json("credits_plan_pro-monthly")))
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/prices"))
        .respond_with(NewPrice)
        .mount(stripe)
        .await;
}

/// The `Idempotency-Key` of each POST, in order.
async fn idempotency_keys(stripe: &MockServer) -> Vec<Option<String>> {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
}

async fn stored_plans(app: &TestApp) -> Vec<(String, Option<String>, bool)> {
    use sea_orm::EntityTrait;
    let db = app.db.connect().await;
    let mut plans: Vec<_> = credits::entities::plan::Entity::find()
        .all(&db)
        .await
        .expect("plans")
        .into_iter()
        .map(|p| (p.id, p.stripe_price_id, p.active))
        .collect();
    plans.sort();
    plans
}

#[tokio::test]
async fn packs_sync_creates_a_plans_product_and_recurring_price_once() {
    let app = TestApp::builder().packs(PLAN_PACKS).spawn().await;
    assert_eq!(
        stored_plans(&app).await,
        [("pro-monthly".to_owned(), None, true)],
        "plans are loaded at start"
    );

    // Dry run: the plan is printed; reads only.
    mount(&app.stripe, vec![], false).await;
    let dry = sync(&app, &["--dry-run"]).await;
    assert!(dry.status.success(), "{}", out(&dry));
    let text = out(&dry);
    assert!(
        text.contains(&format!(
            "plan subscription pro-monthly: create product credits_plan_pro-monthly, create recurring (month) price {PLAN_KEY}"
        )),
        "{text}"
    );
    assert!(text.contains("; 1 plan(s), 0 already in sync"), "{text}");
    assert!(
        requests(&app.stripe)
            .await
            .iter()
            .all(|(line, _)| line.starts_with("GET "))
    );
    assert_eq!(stored_plans(&app).await, [("pro-monthly".to_owned(), None, true)]);

    // First run: one Product and one recurring Price, each under its own Idempotency-Key.
    app.stripe.reset().await;
    mount(&app.stripe, vec![], false).await;
    let first = sync(&app, &[]).await;
    assert!(first.status.success(), "{}", out(&first));
    let sent = requests(&app.stripe).await;
    let lines: Vec<&str> = sent.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            &format!("GET /v1/prices?active=true&limit=1&lookup_keys[0]={PLAN_KEY}") as &str,
            "GET /v1/products/credits_plan_pro-monthly",
            "POST /v1/products",
            "POST /v1/prices",
        ]
    );
    let metadata = [
        ("metadata[plan_id]", "pro-monthly"),
        ("metadata[credits]", "10000"),
        ("metadata[interval]", "month"),
        ("metadata[rollover_cap]", "5000"),
    ];
    assert_eq!(
        sent[2].1,
        fields(
            &[
                [("id", "credits_plan_pro-monthly"), ("name", "Pro")].as_slice(),
                &metadata
            ]
            .concat()
        )
    );
    assert_eq!(
        sent[3].1,
        fields(
            &[
                [
                    ("currency", "usd"),
                    ("product", "credits_plan_pro-monthly"),
                    ("unit_amount", "2000"),
                    ("recurring[interval]", "month"),
                    ("lookup_key", PLAN_KEY),
                    ("transfer_lookup_key", "true"),
                ]
                .as_slice(),
                &metadata
            ]
            .concat()
        )
    );
    assert_eq!(
        idempotency_keys(&app.stripe).await,
        [
            Some("credits-sync-credits_plan_pro-monthly".to_owned()),
            Some(format!("credits-sync-{PLAN_KEY}_10000")),
        ]
    );
    assert!(
        out(&first).contains(&format!("pro-monthly -> {PLAN_PRICE}")),
        "{}",
        out(&first)
    );
    let synced = [("pro-monthly".to_owned(), Some(PLAN_PRICE.to_owned()), true)];
    assert_eq!(stored_plans(&app).await, synced);

    // Second run: the Price is found by its lookup key; nothing is created.
    app.stripe.reset().await;
    mount(&app.stripe, vec![PLAN_KEY], true).await;
    let rerun = sync(&app, &[]).await;
    assert!(rerun.status.success(), "{}", out(&rerun));
    assert!(
        out(&rerun).contains("synced 1 pack(s), 1 already in sync; 1 plan(s), 1 already in sync"),
        "{}",
        out(&rerun)
    );
    assert!(
        requests(&app.stripe)
            .await
            .iter()
            .all(|(line, _)| line.starts_with("GET ")),
        "no new Prices on a second sync"
    );
    assert_eq!(stored_plans(&app).await, synced);

    // `packs list` shows the plan with its terms and price.
    let list = app.run_cli(&["packs", "list"]).await;
    assert!(list.status.success(), "{}", out(&list));
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.starts_with("pro-monthly "))
        .unwrap_or_else(|| panic!("no plan row in {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "pro-monthly",
            "Pro",
            "10000",
            "month",
            "2000",
            "usd",
            "5000",
            PLAN_PRICE,
            "true"
        ]
    );
}

#[tokio::test]
async fn a_plan_removed_from_the_packs_file_is_deactivated_not_deleted() {
    let first = TestApp::builder().packs(PLAN_PACKS).spawn().await;
    let db = first.db.clone();
    first.stop().await;
    let without_plans = &PLAN_PACKS[..PLAN_PACKS.find("[[plan]]").expect("a plan")];
    let second = TestApp::builder().database(db).packs(without_plans).spawn().await;
    assert_eq!(
        stored_plans(&second).await,
        [("pro-monthly".to_owned(), None, false)]
    );
    let list = second.run_cli(&["packs", "list"]).await;
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("pro-monthly ") && l.ends_with("false")),
        "{text}"
    );
}

#[tokio::test]
async fn a_bad_plan_exits_2_naming_the_plan_and_field() {
    let app = TestApp::builder().packs(PLAN_PACKS).spawn().await;
    let file = app.settings.get("CREDIT_PACKS_FILE").expect("packs file");
    std::fs::write(
        file,
        PLAN_PACKS.replace("interval = \"month\"", "interval = \"fortnight\""),
    )
    .expect("write");
    let list = app.run_cli(&["packs", "list"]).await;
    assert_eq!(list.status.code(), Some(2), "{}", out(&list));
    let message = String::from_utf8_lossy(&list.stderr).into_owned();
    assert!(
        message.contains(":14: interval") && message.contains("\"pro-monthly\""),
        "{message}"
    );

    std::fs::write(
        file,
        PLAN_PACKS.replace("rollover_cap = 5000", "rollover_cap = -5"),
    )
    .expect("write");
    let synced = sync(&app, &["--dry-run"]).await;
    assert_eq!(synced.status.code(), Some(2), "{}", out(&synced));
    let message = String::from_utf8_lossy(&synced.stderr).into_owned();
    assert!(
        message.contains("rollover_cap") && message.contains("\"pro-monthly\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_plan_whose_interval_changes_gets_a_new_recurring_price_and_the_old_one_is_archived() {
    let app = TestApp::builder().packs(PLAN_PACKS).spawn().await;
    mount(&app.stripe, vec![], false).await;
    let first = sync(&app, &[]).await;
    assert!(first.status.success(), "{}", out(&first));

    let file = app.settings.get("CREDIT_PACKS_FILE").expect("packs file");
    std::fs::write(
        file,
        PLAN_PACKS.replace("interval = \"month\"", "interval = \"year\""),
    )
    .expect("write");
    app.stripe.reset().await;
    mount(&app.stripe, vec![PLAN_KEY], true).await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/prices/price_[a-z0-9_-]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(priced(PLAN_KEY)))
        .mount(&app.stripe)
        .await;
    let changed = sync(&app, &[]).await;
    assert!(changed.status.success(), "{}", out(&changed));
    let sent = requests(&app.stripe).await;
    let writes: Vec<_> = sent.iter().filter(|(l, _)| l.starts_with("POST")).collect();
    let yearly = "credits_plan_pro-monthly_usd_2000_year";
    assert_eq!(writes.len(), 2, "{sent:?}");
    assert_eq!(writes[0].0, "POST /v1/prices");
    assert!(
        writes[0]
            .1
            .contains(&("recurring[interval]".to_owned(), "year".to_owned()))
    );
    assert!(
        writes[0]
            .1
            .contains(&("lookup_key".to_owned(), yearly.to_owned()))
    );
    assert_eq!(writes[1].0, format!("POST /v1/prices/{PLAN_PRICE}"));
    assert_eq!(writes[1].1, fields(&[("active", "false")]));
    assert_eq!(
        idempotency_keys(&app.stripe).await[0],
        Some(format!("credits-sync-{yearly}_10000")),
        "new terms, new key"
    );
    assert_eq!(
        stored_plans(&app).await,
        [("pro-monthly".to_owned(), Some(format!("price_{yearly}")), true)]
    );
}
