//! `credits import accounts|purchases`: both file formats, repeats, differing accounts and
//! `--adopt`, `--dry-run`, bad rows by line, and refunds of imported purchases; checked through
//! GetBalance, ListLedgerEntries, ListCreditLots and ListPurchases.

use std::process::Output;

use credits::grpc::pb;

use crate::helpers::{FIXTURE_ACCOUNT, FIXTURE_EMAIL, FIXTURE_SESSION, TestApp, fixture, spawn_app};

const INTENT: &str = "pi_1PgafyB7WZ01zgkWSjxsAJo3";

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` beside the app's database as `name`; its path.
fn file(app: &TestApp, name: &str, text: &str) -> String {
    let path = app.db.dir.path().join(name);
    std::fs::write(&path, text).expect("write import file");
    path.display().to_string()
}

async fn import(app: &TestApp, args: &[&str]) -> Output {
    let output = app.run_cli(&[&["import"], args].concat()).await;
    eprintln!("{}{}", stdout(&output), stderr(&output));
    output
}

fn by_id(id: &str) -> Option<pb::list_ledger_entries_request::Account> {
    Some(pb::list_ledger_entries_request::Account::AccountId(id.into()))
}

async fn entries(app: &TestApp, id: &str) -> Vec<pb::LedgerEntry> {
    app.grpc
        .clone()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            account: by_id(id),
            page_size: 500,
            ..Default::default()
        })
        .await
        .expect("ListLedgerEntries")
        .into_inner()
        .entries
}

async fn lots(app: &TestApp, id: &str) -> Vec<pb::CreditLot> {
    app.grpc
        .clone()
        .list_credit_lots(pb::ListCreditLotsRequest {
            account: Some(pb::list_credit_lots_request::Account::AccountId(id.into())),
            include_spent: false,
            as_of: None,
        })
        .await
        .expect("ListCreditLots")
        .into_inner()
        .lots
}

/// balance == ledger sum (every account), and for these debt-free accounts == their lots.
async fn assert_invariants(app: &TestApp, ids: &[&str]) {
    app.assert_ledger_matches_balances().await;
    for id in ids {
        let balance = app.credit_balance(id).await;
        let in_lots: i64 = lots(app, id).await.iter().map(|l| l.remaining).sum();
        assert_eq!(balance, in_lots, "balance of {id} vs its lots");
        let in_entries: i64 = entries(app, id).await.iter().map(|e| e.delta).sum();
        assert_eq!(balance, in_entries, "balance of {id} vs its entries");
    }
}

const ACCOUNTS_JSONL: &str = concat!(
    r#"{"account_id": "user-1", "email": "One@Example.com", "credit_balance": 500, "is_trial_user": false}"#,
    "\n",
    r#"{"account_id": "user-2", "email": "two@example.com", "credit_balance": 0, "is_trial_user": true, "expires_at": null}"#,
    "\n",
    r#"{"account_id": "user-3", "email": "three@example.com", "credit_balance": 250, "is_trial_user": false, "expires_at": "2099-01-01T00:00:00Z"}"#,
    "\n",
);

const ACCOUNTS_CSV: &str = "account_id,email,credit_balance,is_trial_user,expires_at\n\
    user-4,four@example.com,40,f,\n\
    user-5,\"five@example.com\",5,t,2099-06-30T12:00:00+02:00\n";

#[tokio::test]
async fn accounts_import_from_json_lines_and_csv_with_an_import_entry_and_lot_each_and_twice_changes_nothing()
{
    let app = TestApp::builder().env("TRIAL_CREDITS", "100").spawn().await;
    let jsonl = file(&app, "accounts.jsonl", ACCOUNTS_JSONL);
    let csv = file(&app, "accounts.csv", ACCOUNTS_CSV);
    for path in [&jsonl, &csv] {
        let output = import(&app, &["accounts", path]).await;
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let printed = stdout(&import(&app, &["accounts", &jsonl]).await);
    assert!(printed.contains("accounts: 3 row(s): 3 unchanged"), "{printed}");

    for (id, email, balance, trial) in [
        ("user-1", "one@example.com", 500, false),
        ("user-2", "two@example.com", 0, true),
        ("user-3", "three@example.com", 250, false),
        ("user-4", "four@example.com", 40, false),
        ("user-5", "five@example.com", 5, true),
    ] {
        let got = app.balance(id).await.expect("GetBalance");
        assert_eq!(
            (got.email.as_str(), got.credit_balance, got.is_trial_user),
            (email, balance, trial),
            "{id}: imported as in the file, without trial credits"
        );
        let entries = entries(&app, id).await;
        assert_eq!(entries.len(), 1, "{id}: one opening entry");
        assert_eq!(
            (
                entries[0].kind.as_str(),
                entries[0].delta,
                entries[0].reference.as_str()
            ),
            ("import", balance, "opening-balance")
        );
        let lots = lots(&app, id).await;
        assert_eq!(lots.len(), usize::from(balance > 0), "{id}: a lot for a balance");
        if let Some(lot) = lots.first() {
            assert_eq!((lot.source.as_str(), lot.credits), ("import", balance));
        }
    }
    for (id, expires) in [
        ("user-1", None),
        ("user-3", Some(4_070_908_800)),
        ("user-5", Some(4_086_496_800)),
    ] {
        let lot = lots(&app, id).await.remove(0);
        assert_eq!(lot.expires_at.map(|t| t.seconds), expires, "{id}");
    }

    // The second run of each file changed nothing.
    let output = import(&app, &["accounts", &csv]).await;
    assert!(output.status.success());
    assert!(stdout(&output).contains("2 unchanged"));
    assert_eq!(entries(&app, "user-4").await.len(), 1);
    assert_invariants(&app, &["user-1", "user-2", "user-3", "user-4", "user-5"]).await;
}

#[tokio::test]
async fn an_existing_account_that_differs_is_reported_and_adopt_records_the_difference() {
    let app = spawn_app().await;
    let first = file(&app, "first.jsonl", ACCOUNTS_JSONL);
    assert!(import(&app, &["accounts", &first]).await.status.success());
    // Also an account PurchaseCredits made before the move.
    app.fixture_account().await;

    let later = file(
        &app,
        "later.csv",
        &format!(
            "account_id,email,credit_balance,is_trial_user\n\
             user-1,one@example.com,800,false\n\
             user-3,three@example.com,100,true\n\
             user-2,two@example.com,0,true\n\
             {FIXTURE_ACCOUNT},{FIXTURE_EMAIL},70,false\n"
        ),
    );
    let output = import(&app, &["accounts", &later]).await;
    assert_eq!(output.status.code(), Some(1), "differences are not imported");
    let printed = stdout(&output);
    assert!(
        printed.contains("line 2: user-1: differs: balance 500 stored, 800 in the file"),
        "{printed}"
    );
    assert!(printed.contains("line 3: user-3: differs: balance 250 stored, 100 in the file; is_trial_user false stored, true in the file"), "{printed}");
    assert!(
        printed.contains(&format!(
            "line 5: {FIXTURE_ACCOUNT}: differs: balance 0 stored, 70"
        )),
        "{printed}"
    );
    assert!(printed.contains("3 differ"), "{printed}");
    assert_eq!(app.credit_balance("user-1").await, 500, "not overwritten");

    let output = import(&app, &["accounts", &later, "--adopt"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("line 2: user-1: adopted (+300 credits)"),
        "{printed}"
    );
    assert!(
        printed.contains("line 3: user-3: adopted (-150 credits)"),
        "{printed}"
    );
    for (id, balance, trial) in [
        ("user-1", 800, false),
        ("user-3", 100, true),
        (FIXTURE_ACCOUNT, 70, false),
    ] {
        let got = app.balance(id).await.expect("GetBalance");
        assert_eq!((got.credit_balance, got.is_trial_user), (balance, trial), "{id}");
    }
    let adopted = entries(&app, "user-1").await;
    assert_eq!(adopted.len(), 2);
    let newest = &adopted[0];
    assert_eq!((newest.kind.as_str(), newest.delta), ("import", 300));
    assert!(newest.reference.starts_with("adopt:"), "{}", newest.reference);
    assert_eq!(
        newest.metadata.get("stored_balance").map(String::as_str),
        Some("500")
    );
    let down = entries(&app, "user-3").await;
    assert_eq!((down[0].delta, down[0].balance_after), (-150, 100));

    // Adopted: the same file again changes nothing.
    let output = import(&app, &["accounts", &later, "--adopt"]).await;
    assert!(stdout(&output).contains("4 unchanged"), "{}", stdout(&output));
    assert_eq!(entries(&app, "user-1").await.len(), 2);
    assert_invariants(&app, &["user-1", "user-2", "user-3", FIXTURE_ACCOUNT]).await;
}

#[tokio::test]
async fn a_dry_run_prints_what_would_change_and_writes_nothing() {
    let app = spawn_app().await;
    let accounts = file(&app, "accounts.jsonl", ACCOUNTS_JSONL);
    let output = import(&app, &["accounts", &accounts, "--dry-run"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("line 1: user-1: would be created with 500 credits"),
        "{printed}"
    );
    assert!(printed.contains("(dry run: nothing was written)"), "{printed}");
    let missing = app.balance("user-1").await.expect_err("not created");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    assert!(import(&app, &["accounts", &accounts]).await.status.success());
    let changed = file(
        &app,
        "changed.jsonl",
        r#"{"account_id": "user-1", "email": "one@example.com", "credit_balance": 900, "is_trial_user": false}"#,
    );
    let output = import(&app, &["accounts", &changed, "--adopt", "--dry-run"]).await;
    assert!(
        stdout(&output).contains("user-1: would be adopted (+400 credits)"),
        "{}",
        stdout(&output)
    );
    assert_eq!(app.credit_balance("user-1").await, 500);
    assert_eq!(entries(&app, "user-1").await.len(), 1);

    let purchases = file(
        &app,
        "purchases.jsonl",
        &purchase_row("user-1", "cs_dry", "pi_dry"),
    );
    let output = import(&app, &["purchases", &purchases, "--dry-run"]).await;
    assert!(
        stdout(&output).contains("line 1: cs_dry: would be recorded"),
        "{}",
        stdout(&output)
    );
    assert!(app.listed_purchases("user-1").await.is_empty());
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_rest_still_import_with_exit_code_1() {
    let app = spawn_app().await;
    let taken = file(
        &app,
        "taken.jsonl",
        r#"{"account_id": "holder", "email": "taken@example.com", "credit_balance": 1, "is_trial_user": true}"#,
    );
    assert!(import(&app, &["accounts", &taken]).await.status.success());
    let jsonl = file(
        &app,
        "bad.jsonl",
        concat!(
            r#"{"account_id": "ok-1", "email": "ok1@example.com", "credit_balance": 10, "is_trial_user": false}"#,
            "\n{not json\n",
            r#"{"account_id": "neg", "email": "neg@example.com", "credit_balance": -5, "is_trial_user": false}"#,
            "\n",
            r#"{"account_id": "big", "email": "big@example.com", "credit_balance": 1000000000001, "is_trial_user": false}"#,
            "\n",
            r#"{"account_id": "mail", "email": "not-an-email", "credit_balance": 1, "is_trial_user": false}"#,
            "\n",
            r#"{"account_id": "ok-1", "email": "again@example.com", "credit_balance": 10, "is_trial_user": false}"#,
            "\n",
            r#"{"account_id": "old", "email": "old@example.com", "credit_balance": 1, "is_trial_user": false, "expires_at": "2001-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"account_id": "other", "email": "taken@example.com", "credit_balance": 1, "is_trial_user": false}"#,
            "\n",
            r#"{"email": "noid@example.com", "credit_balance": 1, "is_trial_user": false}"#,
            "\n\n",
            r#"{"account_id": "ok-2", "email": "ok2@example.com", "credit_balance": 20, "is_trial_user": true}"#,
            "\n",
        ),
    );
    let output = import(&app, &["accounts", &jsonl]).await;
    assert_eq!(output.status.code(), Some(1));
    let printed = stdout(&output);
    for expected in [
        "line 2: error: not JSON",
        "line 3: error: credit_balance: must be from 0 to 1000000000000",
        "line 4: error: credit_balance: must be from 0 to 1000000000000",
        "line 5: error: email: not an email address",
        "line 6: error: account_id: ok-1 is on line 1 already",
        "line 7: error: expires_at: in the past",
        "line 8: other: error: email taken@example.com belongs to another account",
        "line 9: error: account_id: missing",
        "accounts: 10 row(s): 2 created, 8 failed",
    ] {
        assert!(printed.contains(expected), "{expected:?} in {printed}");
    }
    assert!(stderr(&output).contains("8 row(s) failed"), "{}", stderr(&output));
    assert_eq!(app.credit_balance("ok-1").await, 10);
    assert_eq!(app.credit_balance("ok-2").await, 20);
    for id in ["neg", "other", "old"] {
        assert_eq!(
            app.balance(id).await.map_err(|s| s.code()),
            Err(tonic::Code::NotFound),
            "{id}"
        );
    }

    let csv = file(
        &app,
        "bad.csv",
        "account_id,email,credit_balance,is_trial_user\nok-3,ok3@example.com,3,maybe\nok-4,ok4@example.com,x,t\nshort,short@example.com\nok-5,ok5@example.com,5,no\n",
    );
    let output = import(&app, &["accounts", &csv]).await;
    assert_eq!(output.status.code(), Some(1));
    let printed = stdout(&output);
    assert!(
        printed.contains("line 2: error: is_trial_user: \"maybe\" is not true or false"),
        "{printed}"
    );
    assert!(
        printed.contains("line 3: error: credit_balance: \"x\" is not a whole number"),
        "{printed}"
    );
    assert!(
        printed.contains("line 4: error: unreadable CSV record"),
        "{printed}"
    );
    assert_eq!(app.credit_balance("ok-5").await, 5);

    for (args, why) in [
        (vec!["accounts", "/nonexistent/accounts.jsonl"], "cannot read"),
        (vec!["accounts", "accounts.xlsx"], "unknown file type"),
    ] {
        let output = import(&app, &args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(why), "{}", stderr(&output));
    }
    let output = import(&app, &["accounts"]).await;
    assert_eq!(output.status.code(), Some(2), "no file: a usage error");
    assert_invariants(&app, &["ok-1", "ok-2", "ok-5", "holder"]).await;
}

fn purchase_row(account: &str, session: &str, intent: &str) -> String {
    format!(
        r#"{{"account_id": "{account}", "credit_pack_id": "standard", "credits": 2000, "amount": 3000, "currency": "USD", "stripe_checkout_session_id": "{session}", "stripe_payment_intent_id": "{intent}", "completed_at": "2025-03-01T10:00:00Z"}}"#
    ) + "\n"
}

#[tokio::test]
async fn imported_purchases_are_listed_without_crediting_and_a_later_refund_claws_back() {
    let app = spawn_app().await;
    let accounts = file(
        &app,
        "accounts.csv",
        &format!(
            "account_id,email,credit_balance,is_trial_user\n{FIXTURE_ACCOUNT},{FIXTURE_EMAIL},2500,false\n"
        ),
    );
    assert!(import(&app, &["accounts", &accounts]).await.status.success());
    let older = r#"{"account_id": "acct_7d1f3c2a", "credit_pack_id": "starter", "credits": 100, "amount": 500, "currency": "usd", "stripe_checkout_session_id": "cs_old", "stripe_payment_intent_id": "", "completed_at": "2024-12-24T08:00:00+01:00"}"#;
    let purchases = file(
        &app,
        "purchases.jsonl",
        &format!(
            "{}{older}\n{}{}",
            purchase_row(FIXTURE_ACCOUNT, FIXTURE_SESSION, INTENT),
            purchase_row("nobody", "cs_nobody", "pi_x"),
            purchase_row(FIXTURE_ACCOUNT, "cs_gone", "pi_y").replace("standard", "retired"),
        ),
    );
    let output = import(&app, &["purchases", &purchases]).await;
    assert_eq!(output.status.code(), Some(1));
    let printed = stdout(&output);
    assert!(
        printed.contains("line 3: cs_nobody: error: account_id: no account nobody"),
        "{printed}"
    );
    assert!(
        printed.contains("line 4: cs_gone: error: credit_pack_id: no pack retired"),
        "{printed}"
    );
    assert!(
        printed.contains("purchases: 4 row(s): 2 recorded, 2 failed"),
        "{printed}"
    );
    assert_eq!(
        app.credit_balance(FIXTURE_ACCOUNT).await,
        2500,
        "nothing credited again"
    );

    let listed = app.listed_purchases(FIXTURE_ACCOUNT).await;
    let sessions: Vec<&str> = listed
        .iter()
        .map(|p| p.stripe_checkout_session_id.as_str())
        .collect();
    assert_eq!(
        sessions,
        [FIXTURE_SESSION, "cs_old"],
        "newest first, by completion"
    );
    let imported = &listed[0];
    assert_eq!(imported.status(), pb::PurchaseStatus::Completed);
    assert_eq!(
        (
            imported.quantity,
            imported.amount,
            imported.currency.as_str(),
            imported.credit_pack_name.as_str()
        ),
        (2000, 3000, "usd", "Standard")
    );
    assert_eq!(imported.completed_at.map(|t| t.seconds), Some(1_740_823_200));

    // Idempotent by session.
    let again = import(&app, &["purchases", &purchases]).await;
    assert!(stdout(&again).contains("2 unchanged"), "{}", stdout(&again));
    assert_eq!(app.listed_purchases(FIXTURE_ACCOUNT).await.len(), 2);

    // A later full refund of the imported purchase takes its credits back, once.
    let refund = fixture("charge_refunded.json");
    assert_eq!(app.post_webhook(&refund).await.status(), 200);
    assert_eq!(app.post_webhook(&refund).await.status(), 200);
    assert_eq!(app.credit_balance(FIXTURE_ACCOUNT).await, 500);
    let refunded = &app.listed_purchases(FIXTURE_ACCOUNT).await[0];
    assert_eq!(
        (refunded.status(), refunded.amount_refunded),
        (pb::PurchaseStatus::Refunded, 3000)
    );
    let kinds: Vec<(String, i64)> = entries(&app, FIXTURE_ACCOUNT)
        .await
        .into_iter()
        .map(|e| (e.kind, e.delta))
        .collect();
    assert_eq!(kinds, [("refund".to_owned(), -2000), ("import".to_owned(), 2500)]);
    assert_invariants(&app, &[FIXTURE_ACCOUNT]).await;

    // The seed's shell check, on the command line.
    let shown = app.run_cli(&["accounts", "show", FIXTURE_EMAIL]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let printed = stdout(&shown);
    assert!(printed.contains("balance    500\n"), "{printed}");
    assert!(printed.contains("available  500\n"), "{printed}");
    assert!(printed.contains("trial      no"), "{printed}");
    assert!(
        printed.contains(&format!(
            "refunded   standard         2000 credits     3000 usd {FIXTURE_SESSION}"
        )),
        "{printed}"
    );
    let unknown = app.run_cli(&["accounts", "show", "nobody"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no account with id or email \"nobody\""),
        "{}",
        stderr(&unknown)
    );

    // Changed in the file since: reported, not overwritten.
    let changed = file(
        &app,
        "changed.jsonl",
        &purchase_row(FIXTURE_ACCOUNT, FIXTURE_SESSION, INTENT).replace("2000", "1000"),
    );
    let output = import(&app, &["purchases", &changed]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("differs: credits 2000 stored, 1000 imported"),
        "{}",
        stdout(&output)
    );
}
