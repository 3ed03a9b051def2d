//! The finance reports, run as the `credits` binary over a ledger written by the real service:
//! `report liability` gives the exact figures of a known history and its identity holds after
//! a random one (its closing liability is what the lots still hold); `accounts statement`
//! opens and closes on the balances of the entries around its period; CSV output parses.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;

use crate::helpers::{
    TestApp,
    spend::{STANDARD_AMOUNT, refunded_event},
};
use credits::entities::credit_lot;

async fn buyer_app() -> TestApp {
    let app = TestApp::builder().env("EXPIRY_INTERVAL", "1s").spawn().await;
    app.mock_checkout_sessions().await;
    app
}

/// A moment strictly between what was written before and what is written after.
async fn boundary() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    at
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `report liability` as JSON; asserts it succeeded.
async fn liability(app: &TestApp, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let output = app
        .run_cli(&[
            "report",
            "liability",
            "--from",
            &stamp(from),
            "--to",
            &stamp(to),
            "--format",
            "json",
        ])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the JSON report")
}

/// One currency's lines (`None`: the free credits).
fn currency<'a>(report: &'a Value, name: Option<&str>) -> &'a Value {
    report["currencies"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["currency"].as_str() == name))
        .unwrap_or_else(|| panic!("no {name:?} in {report}"))
}

fn figure(lines: &Value, line: &str) -> (i64, i64) {
    (
        lines[line]["credits"].as_i64().unwrap_or(i64::MIN),
        lines[line]["value"].as_i64().unwrap_or(i64::MIN),
    )
}

/// Moves a lot's expiry to `at` (the packs' credits never expire, and tests cannot wait a day).
async fn expire_lot(app: &TestApp, reference: &str, at: DateTime<Utc>) {
    let db = app.db.connect().await;
    credit_lot::Entity::update_many()
        .col_expr(credit_lot::Column::ExpiresAt, Expr::value(Some(at)))
        .filter(credit_lot::Column::Reference.eq(reference))
        .exec(&db)
        .await
        .expect("move the lot's expiry");
}

/// Waits (up to 30 s) until the account has `count` expiry entries.
async fn expiries(app: &TestApp, account: &str, count: usize) {
    for _ in 0..300 {
        if app.entries_of_kind(account, "expiry").await.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{account} never got {count} expiry entries");
}

#[tokio::test]
async fn the_liability_report_of_a_known_history_has_the_exact_figures_and_its_identity_holds() {
    let app = buyer_app().await;
    app.ensure("finance").await;
    let t0 = boundary().await;
    // Before the period: 1000 credits bought for 1500, 300 spent (worth 450).
    let first = app.buy_standard("finance", "first").await;
    app.consume("finance", 300, "before").await.expect("consume");
    let t1 = boundary().await;
    // In it: 100 free credits, a second pack, a fifth of the first refunded (200 credits from
    // its own lot), 300 more spent from the first lot, its last 200 expired, 50 spent from
    // the grant (the oldest of the lots that never expire).
    app.grant("finance", 100, "gift").await;
    app.buy_standard("finance", "second").await;
    app.deliver(&refunded_event("evt_refund_fifth", &first, STANDARD_AMOUNT / 5))
        .await;
    app.consume("finance", 300, "during").await.expect("consume");
    expire_lot(
        &app,
        &first.session,
        Utc::now() + chrono::Duration::milliseconds(300),
    )
    .await;
    expiries(&app, "finance", 1).await;
    app.consume("finance", 50, "gift-spent").await.expect("consume");
    let t2 = boundary().await;
    // After it: not in the period.
    app.consume("finance", 10, "after").await.expect("consume");

    let report = liability(&app, t1, t2).await;
    assert_eq!(report["identity_holds"], Value::Bool(true), "{report}");
    assert_eq!(report["entries_in_period"], 6, "{report}");
    let usd = currency(&report, Some("usd"));
    assert_eq!(figure(usd, "opening"), (700, 1050), "{usd}");
    assert_eq!(figure(usd, "sold"), (1000, 1500));
    assert_eq!(figure(usd, "consumed"), (300, 450));
    assert_eq!(figure(usd, "expired"), (200, 300));
    assert_eq!(figure(&usd["expired_by_source"], "purchase"), (200, 300));
    assert_eq!(figure(usd, "clawed_back"), (200, 300));
    assert_eq!(figure(usd, "closing"), (1000, 1500));
    let free = currency(&report, None);
    assert_eq!(
        (
            figure(free, "opening").0,
            figure(free, "sold").0,
            figure(free, "consumed").0,
            figure(free, "closing").0
        ),
        (0, 100, 50, 50)
    );

    // From the beginning: nothing owed before, everything of the first period in.
    let whole = liability(&app, t0, t2).await;
    let usd = currency(&whole, Some("usd"));
    assert_eq!(figure(usd, "opening"), (0, 0));
    assert_eq!(figure(usd, "sold"), (2000, 3000));
    assert_eq!(figure(usd, "consumed"), (600, 900));
    assert_eq!(figure(usd, "closing"), (1000, 1500));

    // The table says the identity holds, with its numbers.
    let table = app
        .run_cli(&["report", "liability", "--from", &stamp(t1), "--to", &stamp(t2)])
        .await;
    assert!(table.status.success(), "{}", text(&table.stderr));
    let printed = text(&table.stdout);
    assert!(
        printed.contains("identity: 1050 + 1500 - 450 - 300 - 300 = 1500  holds"),
        "{printed}"
    );

    // The CSV parses, one figure a row.
    let csv = app
        .run_cli(&[
            "report",
            "liability",
            "--from",
            &stamp(t1),
            "--to",
            &stamp(t2),
            "--format",
            "csv",
        ])
        .await;
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let mut rows = BTreeMap::new();
    for record in csv::Reader::from_reader(csv.stdout.as_slice()).records() {
        let record = record.expect("a CSV record");
        assert_eq!(record.len(), 5, "{record:?}");
        rows.insert(
            (record[0].to_owned(), record[1].to_owned(), record[2].to_owned()),
            (record[3].to_owned(), record[4].to_owned()),
        );
    }
    let row = |line: &str, source: &str| {
        rows.get(&("usd".to_owned(), line.to_owned(), source.to_owned()))
            .cloned()
    };
    assert_eq!(row("closing", ""), Some(("1000".into(), "1500".into())));
    assert_eq!(row("expired", "purchase"), Some(("200".into(), "300".into())));
    assert_eq!(row("identity_gap", ""), Some(("0".into(), "0".into())));
}

#[tokio::test]
async fn a_statement_opens_and_closes_on_the_balances_around_its_period_and_its_csv_parses() {
    let app = buyer_app().await;
    app.ensure("stated").await;
    app.grant("stated", 500, "start").await;
    app.consume("stated", 120, "before").await.expect("consume");
    let from = boundary().await;
    app.buy_standard("stated", "stated").await;
    app.consume("stated", 700, "spans-two-lots")
        .await
        .expect("consume");
    let to = boundary().await;
    app.consume("stated", 1, "after").await.expect("consume");
    let entries = app.ledger_of("stated").await;
    let before: Vec<_> = entries.iter().filter(|e| e.created_at < from).collect();
    let during: Vec<_> = entries
        .iter()
        .filter(|e| e.created_at >= from && e.created_at < to)
        .collect();
    let opening = before.last().map_or(0, |e| e.balance_after);
    let closing = during.last().map_or(opening, |e| e.balance_after);
    assert_eq!((opening, closing, during.len()), (380, 680, 2));

    let args = [
        "accounts",
        "statement",
        "stated",
        "--from",
        &stamp(from),
        "--to",
        &stamp(to),
    ];
    let table = app.run_cli(&args).await;
    assert!(table.status.success(), "{}", text(&table.stderr));
    let printed = text(&table.stdout);
    assert!(printed.contains("opening balance 380"), "{printed}");
    assert!(printed.contains("closing balance 680 (2 entries)"), "{printed}");

    let csv = app.run_cli(&[&args[..], &["--format", "csv"]].concat()).await;
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV record")).collect();
    let kinds: Vec<&str> = records.iter().map(|r| &r[2]).collect();
    // The purchase opens one lot; the spend takes the rest of the grant, then the purchase.
    assert_eq!(
        kinds,
        [
            "opening_balance",
            "purchase",
            "consumption",
            "consumption",
            "closing_balance"
        ]
    );
    assert_eq!((&records[0][6], &records[4][6]), ("380", "680"));
    let spent: Vec<(&str, &str, &str)> = records[2..4].iter().map(|r| (&r[8], &r[9], &r[10])).collect();
    assert_eq!(spent, [("-380", "0", "grant"), ("-320", "-480", "purchase")]);
    // A period without entries: the balance before it, both ends.
    let quiet = app
        .run_cli(&[
            "accounts",
            "statement",
            "stated@example.com",
            "--from",
            "2020-01-01",
            "--to",
            "2020-02-01",
        ])
        .await;
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(text(&quiet.stdout).contains("closing balance 0 (0 entries)"));
}

#[tokio::test]
async fn reports_refuse_an_empty_period_and_an_unknown_account() {
    let app = buyer_app().await;
    let empty = app
        .run_cli(&[
            "report",
            "liability",
            "--from",
            "2026-12-02",
            "--to",
            "2026-12-01",
        ])
        .await;
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
    assert!(text(&empty.stderr).contains("--from"));
    let unknown = app
        .run_cli(&[
            "accounts",
            "statement",
            "nobody",
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-02",
        ])
        .await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
    // One line, like every CLI error.
    assert_eq!(
        text(&unknown.stderr).trim().lines().count(),
        1,
        "{}",
        text(&unknown.stderr)
    );
    assert!(text(&unknown.stderr).contains("nobody"));
}

/// A small deterministic generator, seeded from the clock (the seed is printed on failure).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the lots hold now, per currency (`None`: free): remaining credits and value.
async fn held_by_lots(app: &TestApp) -> BTreeMap<Option<String>, (i64, i64)> {
    let db = app.db.connect().await;
    let mut held = BTreeMap::new();
    for lot in credit_lot::Entity::find().all(&db).await.expect("read lots") {
        let entry: &mut (i64, i64) = held.entry(lot.currency).or_default();
        entry.0 += lot.remaining;
        entry.1 += lot.value_remaining;
    }
    held
}

#[tokio::test]
async fn the_liability_identity_holds_after_a_random_history_and_the_closing_is_what_the_lots_hold() {
    let app = buyer_app().await;
    let seed = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(1) | 1;
    let mut dice = Dice(seed);
    let accounts = ["r0", "r1", "r2"];
    for account in accounts {
        app.ensure(account).await;
    }
    let start = boundary().await;
    let mut paid = Vec::new();
    let mut middle = None;
    for step in 0..60 {
        if step == 30 {
            middle = Some(boundary().await);
        }
        let account = accounts[dice.roll(3) as usize];
        let key = format!("k{step}");
        match dice.roll(7) {
            0 => {
                let purchase = app.buy_standard(account, &format!("{seed}_{step}")).await;
                paid.push((purchase, 0));
            }
            1 => {
                app.grant(account, 1 + dice.roll(300) as i64, &key).await;
            }
            2 => {
                let at = Utc::now() + chrono::Duration::milliseconds(200 + dice.roll(800) as i64);
                app.grant_expiring(account, 1 + dice.roll(200) as i64, &key, at)
                    .await;
            }
            3 | 4 => {
                let _ = app.consume(account, 1 + dice.roll(400) as i64, &key).await;
            }
            5 => {
                if let Ok(hold) = app.reserve(account, 1 + dice.roll(200) as i64, &key, 60).await {
                    if dice.roll(2) == 0 {
                        let _ = app.capture(&hold.hold_id, 1).await;
                    } else {
                        let _ = app.release(&hold.hold_id).await;
                    }
                }
            }
            _ => {
                if !paid.is_empty() {
                    let which = dice.roll(paid.len() as u64) as usize;
                    let (purchase, refunded) = &mut paid[which];
                    *refunded = (*refunded + 1 + dice.roll(700) as i64).min(STANDARD_AMOUNT);
                    let event = refunded_event(&format!("evt_r_{seed}_{step}"), purchase, *refunded);
                    app.deliver(&event).await;
                }
            }
        }
    }
    // Every expiring grant has run out and been written off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for account in accounts {
        let _ = app.consume(account, 1, &format!("settle-{account}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let end = Utc::now() + chrono::Duration::hours(1);
    let middle = middle.unwrap_or(start);

    let whole = liability(&app, start, end).await;
    let first = liability(&app, start, middle).await;
    let second = liability(&app, middle, end).await;
    for report in [&whole, &first, &second] {
        assert_eq!(
            report["identity_holds"],
            Value::Bool(true),
            "seed {seed}: {report}"
        );
    }
    let held = held_by_lots(&app).await;
    for (currency, (credits, value)) in &held {
        let name = currency.as_deref();
        assert_eq!(
            figure(currency_of(&first, name), "closing"),
            figure(currency_of(&second, name), "opening"),
            "seed {seed}: one period's closing is the next one's opening ({name:?})"
        );
        assert_eq!(
            figure(currency_of(&whole, name), "closing"),
            (*credits, *value),
            "seed {seed}: the closing liability is what the lots hold ({name:?})"
        );
    }
}

/// One currency's lines, or zeros when the report has none.
fn currency_of<'a>(report: &'a Value, name: Option<&str>) -> &'a Value {
    static ZERO: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
        || serde_json::json!({"opening": {"credits": 0, "value": 0}, "closing": {"credits": 0, "value": 0}}),
    );
    report["currencies"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["currency"].as_str() == name))
        .unwrap_or(&ZERO)
}
