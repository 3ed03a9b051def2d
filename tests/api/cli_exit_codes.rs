//! The exit-code rule: a bad setting or flag stops the binary with exit 2 and one line naming
//! it; subcommands that never call Stripe run in production without its secrets.

use std::process::Output;

use crate::helpers::{TestApp, run_binary as run};

fn one_line_naming(output: &Output, name: &str) {
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}: {message}");
    assert!(message.contains(name), "{name} not named: {message}");
    assert_eq!(message.trim().lines().count(), 1, "one clear line: {message}");
}

#[tokio::test]
async fn an_invalid_rust_log_stops_start_up_instead_of_falling_back() {
    let output = run(&["serve"], &[("RUST_LOG", "info,credits=loud")]).await;
    one_line_naming(&output, "RUST_LOG");
}

#[tokio::test]
async fn an_unreadable_tls_file_exits_2_naming_its_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("tls.db").display());
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8 path");
    let output = run(
        &["serve"],
        &[
            ("DATABASE_URL", &db),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            (
                "CREDIT_PACKS_FILE",
                concat!(env!("CARGO_MANIFEST_DIR"), "/packs.toml"),
            ),
            ("GRPC_TLS_CERT", missing),
            ("GRPC_TLS_KEY", missing),
        ],
    )
    .await;
    one_line_naming(&output, "GRPC_TLS_CERT");
}

#[tokio::test]
async fn an_unknown_outcome_flag_exits_2_naming_the_flag() {
    let app = TestApp::builder().spawn().await;
    let output = app.run_cli(&["events", "list", "--outcome", "bogus"]).await;
    one_line_naming(&output, "--outcome");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("unmatched_account"),
        "lists the accepted words: {message}"
    );
}

#[tokio::test]
async fn production_runs_migrate_and_listings_without_stripe_secrets() {
    let app = TestApp::builder().spawn().await;
    let db = app.db.url.clone();
    let env = [
        ("APP_ENV", "production"),
        ("DATABASE_URL", db.as_str()),
        (
            "CREDIT_PACKS_FILE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/packs.toml"),
        ),
    ];
    for args in [
        &["migrate"][..],
        &["migrate", "--status"],
        &["packs", "list"],
        &["events", "list"],
    ] {
        let output = run(args, &env).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // What calls Stripe still needs its key, and serving needs both secrets.
    one_line_naming(&run(&["reconcile"], &env).await, "STRIPE_SECRET_KEY");
    one_line_naming(&run(&["serve"], &env).await, "STRIPE_SECRET_KEY");
}
