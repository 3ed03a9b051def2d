//! `credits accounts show|grant` against the running service's database: what an operator
//! sees, grants through the ledger writer (once per key), and exit codes 0, 1 and 2 with a
//! one-line error.

use std::process::Output;

use chrono::Utc;

use crate::helpers::{TestApp, spawn_app, spend::time_of};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value printed after `label` at the start of a line of `accounts show`.
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(' '))
        .map(|v| v.trim().to_owned())
}

/// Asserts an exit code and a one-line error naming `word`.
fn assert_fails(output: &Output, code: i32, word: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{message}");
    assert!(message.contains(word), "{word:?} not in {message}");
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
}

#[tokio::test]
async fn accounts_show_prints_balances_trial_lots_and_the_last_twenty_entries() {
    let app = spawn_app().await;
    app.ensure_with("shown", "Shown@Example.com")
        .await
        .expect("ensure");
    app.grant("shown", 500, "fund").await;
    app.grant_expiring("shown", 50, "expiring", Utc::now() + chrono::Duration::days(3))
        .await;
    for n in 0..24 {
        app.consume("shown", 1, &format!("call-{n}"))
            .await
            .expect("consume");
    }
    app.reserve("shown", 10, "hold", 600).await.expect("reserve");

    for named in ["shown", "SHOWN@example.com"] {
        let output = app.run_cli(&["accounts", "show", named]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        assert_eq!(field(&text, "account").as_deref(), Some("shown"), "{text}");
        assert_eq!(field(&text, "email").as_deref(), Some("shown@example.com"));
        assert_eq!(field(&text, "balance").as_deref(), Some("526"));
        assert_eq!(field(&text, "available").as_deref(), Some("516"));
        assert_eq!(field(&text, "held").as_deref(), Some("10"));
        assert_eq!(field(&text, "trial").as_deref(), Some("yes"));
        assert!(
            field(&text, "expiring").is_some_and(|v| v.starts_with("16 on ")),
            "{text}"
        );
        assert!(text.contains("LOTS (2, in burn order)"), "{text}");
        let lots: Vec<&str> = text.lines().filter(|l| l.contains(" grant ")).collect();
        assert_eq!(lots.len(), 2, "{text}");
        assert!(
            lots[0].contains("expiring") && lots[1].contains("fund"),
            "burn order: {lots:?}"
        );
        assert!(text.contains("ENTRIES (last 20, newest first)"), "{text}");
        let entries: Vec<&str> = text.lines().filter(|l| l.contains(" consumption ")).collect();
        assert_eq!(entries.len(), 20, "{text}");
        assert!(entries[0].ends_with("call-23"), "newest first: {}", entries[0]);
        assert!(entries[19].ends_with("call-4"), "{}", entries[19]);
    }
}

#[tokio::test]
async fn accounts_grant_goes_through_the_ledger_writer_and_a_repeated_key_grants_once() {
    let app = spawn_app().await;
    app.ensure("supported").await;
    let before = Utc::now();
    let args = [
        "accounts",
        "grant",
        "supported@example.com",
        "300",
        "--reason",
        "support",
        "--expires-in",
        "30d",
        "--key",
        "ticket-881",
    ];
    let output = app.run_cli(&args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("granted 300 credits to supported"), "{text}");
    assert!(text.contains("balance 300"), "{text}");

    // The service sees it at once, as a grant of its own lot; the trial goes on.
    let balance = app.balance("supported").await.expect("GetBalance");
    assert_eq!((balance.credit_balance, balance.is_trial_user), (300, true));
    let entries = app.entries("supported").await;
    assert_eq!(
        (
            entries[0].kind.as_str(),
            entries[0].reason.as_str(),
            entries[0].reference.as_str(),
            entries[0].delta
        ),
        ("grant", "support", "ticket-881", 300)
    );
    let lot = &app.lots("supported", false).await[0];
    let expires = time_of(lot.expires_at.as_ref().expect("an expiry"));
    let days = (expires - before).num_hours();
    assert!((30 * 24 - 1..=30 * 24).contains(&days), "{days} h");

    let again = app.run_cli(&args).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already granted with key ticket-881"),
        "{}",
        stdout(&again)
    );
    assert_eq!(app.credit_balance("supported").await, 300);

    // The same key for other credits is refused, like GrantCredits refuses it.
    let other = app
        .run_cli(&[
            "accounts",
            "grant",
            "supported",
            "301",
            "--reason",
            "support",
            "--expires-in",
            "30d",
            "--key",
            "ticket-881",
        ])
        .await;
    assert_fails(&other, 2, "idempotency_key");
    let never = app
        .run_cli(&[
            "accounts",
            "grant",
            "supported",
            "300",
            "--reason",
            "support",
            "--key",
            "ticket-881",
        ])
        .await;
    assert_fails(&never, 2, "idempotency_key");
    assert_eq!(app.credit_balance("supported").await, 300);
    app.assert_spend_invariants().await;
}

#[tokio::test]
async fn accounts_grant_without_a_key_makes_one_up_and_prints_it() {
    let app = spawn_app().await;
    app.ensure("keyless").await;
    let output = app
        .run_cli(&["accounts", "grant", "keyless", "25", "--reason", "promotion"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key ")?.split_whitespace().next())
        .expect("the key it made up")
        .to_owned();
    assert!(key.starts_with("cli-"), "{key}");
    let entries = app.entries("keyless").await;
    assert_eq!(
        (entries[0].reference.as_str(), entries[0].delta),
        (key.as_str(), 25)
    );
    assert_eq!(
        app.lots("keyless", false).await[0].expires_at,
        None,
        "never expires"
    );
    // Repeating it with the printed key grants nothing more.
    let again = app
        .run_cli(&[
            "accounts",
            "grant",
            "keyless",
            "25",
            "--reason",
            "promotion",
            "--key",
            &key,
        ])
        .await;
    assert!(stdout(&again).contains("already granted"), "{}", stdout(&again));
    assert_eq!(app.credit_balance("keyless").await, 25);
}

#[tokio::test]
async fn bad_arguments_exit_2_with_one_line_naming_them() {
    let app = spawn_app().await;
    app.ensure("careful").await;
    let grant = |credits: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["accounts", "grant", "careful", credits];
        args.extend_from_slice(extra);
        args
    };
    for (args, word) in [
        (grant("0", &["--reason", "support"]), "credits"),
        (grant("1000000000001", &["--reason", "support"]), "credits"),
        (grant("lots", &["--reason", "support"]), "credits"),
        (grant("5", &["--reason", ""]), "reason"),
        (
            grant("5", &["--reason", "support", "--expires-in", "soon"]),
            "--expires-in",
        ),
        (
            grant("5", &["--reason", "support", "--key", ""]),
            "idempotency_key",
        ),
        (grant("5", &[]), "--reason"),
        (vec!["accounts", "show"], "ACCOUNT"),
        (vec!["accounts", "show", ""], "account"),
        (vec!["accounts", "frobnicate"], "frobnicate"),
    ] {
        let output = app.run_cli(&args).await;
        assert_fails(&output, 2, word);
    }
    assert!(app.entries("careful").await.is_empty(), "nothing was granted");
}

#[tokio::test]
async fn an_unknown_account_or_an_unreachable_database_exits_1_with_one_line() {
    let app = spawn_app().await;
    let unknown = app.run_cli(&["accounts", "show", "ghost@example.com"]).await;
    assert_fails(&unknown, 1, "ghost@example.com");
    let unknown = app
        .run_cli(&["accounts", "grant", "ghost", "5", "--reason", "support"])
        .await;
    assert_fails(&unknown, 1, "ghost");

    let unreachable = unreachable_database(&app).await;
    assert_fails(&unreachable, 1, "database");
}

/// `accounts show` with the database somewhere it cannot be opened.
async fn unreachable_database(app: &TestApp) -> Output {
    let missing = app.db.dir.path().join("no-such-dir").join("credits.db");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .args(["accounts", "show", "anyone"])
        .env_clear()
        .envs(
            app.settings
                .iter()
                .filter(|(k, v)| !v.is_empty() && k.as_str() != "DATABASE_URL"),
        )
        .env("DATABASE_URL", format!("sqlite://{}?mode=ro", missing.display()))
        .output()
        .await
        .expect("run the credits binary")
}

#[tokio::test]
async fn accounts_show_prints_settings_and_accounts_events_pages_the_events() {
    let app = spawn_app().await;
    app.ensure("alerted").await;
    app.grant("alerted", 100, "fund").await;
    app.grpc
        .clone()
        .update_account_settings(credits::grpc::pb::UpdateAccountSettingsRequest {
            account: Some(
                credits::grpc::pb::update_account_settings_request::Account::AccountId("alerted".into()),
            ),
            low_balance_threshold: Some(50),
            overdraft_limit: Some(7),
            ..Default::default()
        })
        .await
        .expect("settings");
    app.consume("alerted", 60, "below").await.expect("consume");

    let shown = app.run_cli(&["accounts", "show", "alerted"]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert_eq!(
        field(&text, "low-balance threshold").as_deref(),
        Some("50"),
        "{text}"
    );
    assert_eq!(field(&text, "overdraft limit").as_deref(), Some("7"), "{text}");
    assert_eq!(field(&text, "auto top-up").as_deref(), Some("off"), "{text}");

    let all = stdout(&app.run_cli(&["accounts", "events", "alerted"]).await);
    let types: Vec<&str> = all
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(4))
        .collect();
    assert_eq!(
        types,
        ["credits.granted", "settings.changed", "balance.low"],
        "{all}"
    );
    let low = all
        .lines()
        .find(|l| l.contains("balance.low"))
        .expect("balance.low");
    let debit = app.entries("alerted").await[0].id.to_string();
    assert_eq!(
        low.split_whitespace().nth(7),
        Some(debit.as_str()),
        "the debit's entry: {low}"
    );
    let first = all
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a sequence");
    let rest = stdout(
        &app.run_cli(&["accounts", "events", "alerted", "--after", first])
            .await,
    );
    assert_eq!(
        rest.lines().count(),
        4,
        "header, settings.changed, balance.low, next: {rest}"
    );
    assert!(
        rest.contains("balance.low") && !rest.contains("credits.granted"),
        "{rest}"
    );

    assert_fails(
        &app.run_cli(&["accounts", "events", "alerted", "--limit", "0"])
            .await,
        2,
        "limit",
    );
    assert_fails(&app.run_cli(&["accounts", "events", "nobody"]).await, 1, "nobody");
}
