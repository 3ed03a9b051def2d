//! The binary's command line: configuration errors, migrate, packs list.

use std::process::Output;

use crate::helpers::{TestApp, TestDatabase, run_binary as run};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_variable_stops_start_up_with_exit_code_2_naming_it() {
    for (var, value) in [
        ("GRPC_ADDR", "not-an-address"),
        ("HTTP_ADDR", "localhost"),
        ("APP_ENV", "staging"),
        ("FRONTEND_URL", "ftp://example.com"),
        ("STRIPE_API_BASE", "nope"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let output = run(&["serve"], &[(var, value)]).await;
        assert_eq!(output.status.code(), Some(2), "{var}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(var), "{var} not named: {message}");
        assert_eq!(message.trim().lines().count(), 1, "one clear line: {message}");
    }
}

#[tokio::test]
async fn production_without_stripe_secrets_refuses_to_start() {
    let output = run(&["serve"], &[("APP_ENV", "production")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("STRIPE_SECRET_KEY"));
    let output = run(
        &["serve"],
        &[("APP_ENV", "production"), ("STRIPE_SECRET_KEY", "sk_live_x")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("STRIPE_WEBHOOK_SECRET"));
}

#[tokio::test]
async fn a_malformed_packs_file_exits_2_naming_file_line_and_field() {
    let db = TestDatabase::new().await;
    let packs = db.dir.path().join("bad-packs.toml");
    std::fs::write(
        &packs,
        "[[pack]]\nid = \"x\"\nname = \"X\"\ncredits = 0\nunit_amount = 1\ncurrency = \"usd\"\n",
    )
    .expect("write");
    let packs_path = packs.display().to_string();
    let output = run(
        &["serve"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("CREDIT_PACKS_FILE", packs_path.as_str()),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(&format!("{packs_path}:4: credits")), "{message}");
}

#[tokio::test]
async fn migrate_applies_and_reports_status_and_packs_list_shows_the_packs() {
    let (env, _db, _stripe) = TestApp::builder().prepare().await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let status = run(&["migrate", "--status"], &env).await;
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("pending m20261127_000001_create_billing_tables")
    );

    let listed = run(&["packs", "list"], &env).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(stdout.contains("database not migrated"), "{stdout}");
    assert!(stdout.contains("price_1PgafmB7WZ01zgkW02Hf9z6c"), "{stdout}");

    let migrate = run(&["migrate"], &env).await;
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        String::from_utf8_lossy(&migrate.stdout).contains("applied m20261127_000001_create_billing_tables")
    );
    let again = run(&["migrate"], &env).await;
    assert!(again.status.success(), "migrating twice is a no-op");

    let listed = run(&["packs", "list"], &env).await;
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(stdout.contains("standard"), "{stdout}");
    assert!(!stdout.contains("not migrated"), "{stdout}");
}

#[tokio::test]
async fn bad_redirect_origins_stop_start_up_with_exit_code_2_naming_the_variable() {
    let db = TestDatabase::new().await;
    let packs = format!("{}/packs.toml", env!("CARGO_MANIFEST_DIR"));
    let production = [
        ("APP_ENV", "production"),
        ("STRIPE_SECRET_KEY", "sk_test_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ("GRPC_AUTH", "none"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", "app.example.com")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", "*")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", "ftp://app.example.com")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", "https://app.example.com/billing")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![(
                "ALLOWED_REDIRECT_ORIGINS",
                "https://app.example.com,https://x.test?a=1",
            )],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", "https://user@app.example.com")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            vec![("ALLOWED_REDIRECT_ORIGINS", " , ")],
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            [
                production.as_slice(),
                &[("ALLOWED_REDIRECT_ORIGINS", "http://app.example.com")],
            ]
            .concat(),
            "ALLOWED_REDIRECT_ORIGINS",
        ),
        (
            [
                production.as_slice(),
                &[("FRONTEND_URL", "http://app.example.com")],
            ]
            .concat(),
            "FRONTEND_URL",
        ),
    ];
    for (vars, var) in cases {
        // Safe to start if the variable were ignored: loopback port 0, a throwaway database.
        let mut env = vec![
            ("DATABASE_URL", db.url.as_str()),
            ("CREDIT_PACKS_FILE", packs.as_str()),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("HTTP_ADDR", "127.0.0.1:0"),
        ];
        env.extend(vars.iter().copied());
        let started = tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
            .arg("serve")
            .env_clear()
            .envs(env)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(20), started)
            .await
            .unwrap_or_else(|_| panic!("{vars:?}: the service started instead of refusing"))
            .expect("run the credits binary");
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{vars:?}: {message}");
        assert!(message.contains(var), "{var} not named: {message}");
        assert_eq!(message.trim().lines().count(), 1, "one clear line: {message}");
    }
}
