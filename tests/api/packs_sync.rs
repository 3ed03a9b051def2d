//! `credits packs sync`: the exact Stripe requests for a first run, a re-run, a price change,
//! a dry run and a Stripe failure.

use std::process::Output;

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::helpers::{TestApp, fixture, form_of};

const SYNC_PACKS: &str = r#"
[[pack]]
id = "alpha"
name = "Alpha"
credits = 100
unit_amount = 500
currency = "usd"

[[pack]]
id = "beta"
name = "Beta"
credits = 1000
unit_amount = 1500
currency = "usd"

[[pack]]
id = "pinned"
name = "Pinned"
credits = 10
unit_amount = 100
currency = "usd"
stripe_price_id = "price_pinned_by_file"
"#;

pub(crate) async fn sync(app: &TestApp, args: &[&str]) -> Output {
    app.run_cli(&[&["packs", "sync"], args].concat()).await
}

pub(crate) fn price_json(id: &str, lookup_key: &str, unit_amount: i64) -> Value {
    let items: Value =
        serde_json::from_str(&fixture("api_checkout_session_line_items.json")).expect("fixture");
    let mut price = items["data"][0]["price"].clone();
    price["id"] = Value::from(id);
    price["lookup_key"] = Value::from(lookup_key);
    price["unit_amount"] = Value::from(unit_amount);
    price["unit_amount_decimal"] = Value::from(unit_amount.to_string());
    price
}

pub(crate) fn product_json(id: &str) -> Value {
    json!({
        "id": id, "object": "product", "active": true, "created": 1792408000, "default_price": null,
        "description": null, "images": [], "livemode": false, "marketing_features": [], "metadata": {},
        "name": "Pack", "package_dimensions": null, "shippable": null, "statement_descriptor": null,
        "tax_code": null, "type": "service", "unit_label": null, "updated": 1792408000, "url": null
    })
}

/// `GET /v1/prices?lookup_keys[0]=…`: answers a Price for the keys in `known`, else nothing.
struct PricesByLookupKey(Vec<&'static str>);

impl Respond for PricesByLookupKey {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .url
            .query_pairs()
            .find(|(k, _)| k.starts_with("lookup_keys"))
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let data: Vec<Value> = if self.0.contains(&key.as_str()) {
            let amount = key.rsplit('_').next().and_then(|a| a.parse().ok()).unwrap_or(0);
            vec![price_json(&format!("price_{key}"), &key, amount)]
        } else {
            vec![]
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "url": "/v1/prices", "has_more": false, "data": data}))
    }
}

/// `POST /v1/prices`: a new Price named after its lookup key.
struct NewPrice;

impl Respond for NewPrice {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form = form_of(request);
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let key = get("lookup_key");
        let amount = get("unit_amount").parse().unwrap_or(0);
        ResponseTemplate::new(200).set_body_json(price_json(&format!("price_{key}"), &key, amount))
    }
}

async fn mount_catalog(stripe: &MockServer, known_prices: Vec<&'static str>, existing_products: bool) {
    Mock::given(method("GET"))
        .and(path("/v1/prices"))
        .respond_with(PricesByLookupKey(known_prices))
        .mount(stripe)
        .await;
    let product = if existing_products {
        ResponseTemplate::new(200).set_body_json(product_json("credits_pack_x"))
    } else {
        ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such product"}}))
    };
    Mock::given(method("GET"))
        .and(path_regex("^/v1/products/[a-z_]+$"))
        .respond_with(product)
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(product_json("credits_pack_x")))
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/prices"))
        .respond_with(NewPrice)
        .mount(stripe)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/prices/price_[a-z0-9_]+$"))
        .respond_with(NewPrice)
        .mount(stripe)
        .await;
}

/// `METHOD path?query` plus sorted form fields, for comparing whole request sequences.
pub(crate) async fn requests(stripe: &MockServer) -> Vec<(String, Vec<(String, String)>)> {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let line = match r.url.query().filter(|q| !q.is_empty()) {
                Some(q) => format!("{} {}?{}", r.method, r.url.path(), urlencoding_decode(q)),
                None => format!("{} {}", r.method, r.url.path()),
            };
            let mut form = form_of(r);
            form.sort();
            (line, form)
        })
        .collect()
}

fn urlencoding_decode(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.sort();
    out
}

async fn stored_prices(app: &TestApp) -> Vec<(String, Option<String>)> {
    use sea_orm::EntityTrait;
    let db = app.db.connect().await;
    let mut packs: Vec<(String, Option<String>)> = credits::entities::credit_pack::Entity::find()
        .all(&db)
        .await
        .expect("packs")
        .into_iter()
        .map(|p| (p.id, p.stripe_price_id))
        .collect();
    packs.sort();
    packs
}

pub(crate) fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn sync_creates_products_and_prices_once_and_repoints_on_a_price_change() {
    let app = TestApp::builder().packs(SYNC_PACKS).spawn().await;
    let before = stored_prices(&app).await;

    // Dry run: reads only, nothing written anywhere.
    mount_catalog(&app.stripe, vec![], false).await;
    let dry = sync(&app, &["--dry-run"]).await;
    assert!(dry.status.success(), "{}", out(&dry));
    let text = out(&dry);
    assert!(
        text.contains("plan alpha: create product credits_pack_alpha, create price credits_alpha_usd_500"),
        "{text}"
    );
    assert!(
        text.contains("plan pinned: price pinned in the packs file; left alone"),
        "{text}"
    );
    assert!(
        requests(&app.stripe)
            .await
            .iter()
            .all(|(line, _)| line.starts_with("GET "))
    );
    assert_eq!(stored_prices(&app).await, before);

    // First run.
    app.stripe.reset().await;
    mount_catalog(&app.stripe, vec![], false).await;
    let first = sync(&app, &[]).await;
    assert!(first.status.success(), "{}", out(&first));
    let sent = requests(&app.stripe).await;
    let lines: Vec<&str> = sent.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /v1/prices?active=true&limit=1&lookup_keys[0]=credits_alpha_usd_500",
            "GET /v1/products/credits_pack_alpha",
            "GET /v1/prices?active=true&limit=1&lookup_keys[0]=credits_beta_usd_1500",
            "GET /v1/products/credits_pack_beta",
            "POST /v1/products",
            "POST /v1/prices",
            "POST /v1/products",
            "POST /v1/prices",
        ]
    );
    assert_eq!(
        sent[4].1,
        fields(&[
            ("id", "credits_pack_alpha"),
            ("name", "Alpha"),
            ("metadata[pack_id]", "alpha"),
            ("metadata[credits]", "100")
        ])
    );
    assert_eq!(
        sent[5].1,
        fields(&[
            ("currency", "usd"),
            ("product", "credits_pack_alpha"),
            ("unit_amount", "500"),
            ("lookup_key", "credits_alpha_usd_500"),
            ("transfer_lookup_key", "true"),
            ("metadata[pack_id]", "alpha"),
            ("metadata[credits]", "100"),
        ])
    );
    let want = vec![
        ("alpha".to_owned(), Some("price_credits_alpha_usd_500".to_owned())),
        ("beta".to_owned(), Some("price_credits_beta_usd_1500".to_owned())),
        ("pinned".to_owned(), Some("price_pinned_by_file".to_owned())),
    ];
    assert_eq!(stored_prices(&app).await, want);

    // Re-run: everything is found; nothing is created.
    app.stripe.reset().await;
    mount_catalog(
        &app.stripe,
        vec!["credits_alpha_usd_500", "credits_beta_usd_1500"],
        true,
    )
    .await;
    let rerun = sync(&app, &[]).await;
    assert!(rerun.status.success(), "{}", out(&rerun));
    assert!(
        out(&rerun).contains("synced 3 pack(s), 3 already in sync"),
        "{}",
        out(&rerun)
    );
    assert!(
        requests(&app.stripe)
            .await
            .iter()
            .all(|(line, _)| line.starts_with("GET ")),
        "no writes on a re-run"
    );
    assert_eq!(stored_prices(&app).await, want);

    // Beta's amount changes: a new Price, the old one archived, the pack repointed.
    let changed = SYNC_PACKS.replace("unit_amount = 1500", "unit_amount = 2000");
    std::fs::write(
        app.settings.get("CREDIT_PACKS_FILE").expect("packs file"),
        changed,
    )
    .expect("rewrite packs");
    app.stripe.reset().await;
    mount_catalog(
        &app.stripe,
        vec!["credits_alpha_usd_500", "credits_beta_usd_1500"],
        true,
    )
    .await;
    let change = sync(&app, &[]).await;
    assert!(change.status.success(), "{}", out(&change));
    let sent = requests(&app.stripe).await;
    let writes: Vec<&(String, Vec<(String, String)>)> =
        sent.iter().filter(|(l, _)| l.starts_with("POST")).collect();
    assert_eq!(writes.len(), 2, "{sent:?}");
    assert_eq!(writes[0].0, "POST /v1/prices");
    assert!(
        writes[0]
            .1
            .contains(&("unit_amount".to_owned(), "2000".to_owned()))
    );
    assert!(
        writes[0]
            .1
            .contains(&("lookup_key".to_owned(), "credits_beta_usd_2000".to_owned()))
    );
    assert_eq!(writes[1].0, "POST /v1/prices/price_credits_beta_usd_1500");
    assert_eq!(writes[1].1, fields(&[("active", "false")]));
    let after = stored_prices(&app).await;
    assert_eq!(
        after[1],
        ("beta".to_owned(), Some("price_credits_beta_usd_2000".to_owned()))
    );
}

#[tokio::test]
async fn a_stripe_error_exits_1_with_its_message_and_leaves_the_database_unchanged() {
    let app = TestApp::builder().packs(SYNC_PACKS).spawn().await;
    let before = stored_prices(&app).await;
    mount_catalog(&app.stripe, vec![], false).await;
    Mock::given(method("POST"))
        .and(path("/v1/prices"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"type": "invalid_request_error", "message": "Invalid currency: usd for this account"}})))
        .with_priority(1)
        .mount(&app.stripe)
        .await;
    let failed = sync(&app, &[]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", out(&failed));
    let text = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(text.contains("Invalid currency: usd for this account"), "{text}");
    assert!(text.contains("the database was not changed"), "{text}");
    assert_eq!(stored_prices(&app).await, before);

    let unconfigured = TestApp::builder()
        .packs(SYNC_PACKS)
        .without("STRIPE_SECRET_KEY")
        .spawn()
        .await;
    let failed = sync(&unconfigured, &[]).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("STRIPE_SECRET_KEY"));
}
