//! Start-up failures as the operator reads them: `credits serve` exits 1 with one line on
//! stderr that names the cause exactly once, however many layers (ours, sea-orm's, sqlx's)
//! carry it.

use std::net::TcpListener;

use crate::helpers::{TestDatabase, run_binary};

const PACKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packs.toml");

/// Runs `credits serve` on `database_url` with gRPC on `grpc_addr`; it must fail with one line
/// naming `cause` once. Returns that line.
async fn serve_fails_naming_once(database_url: &str, grpc_addr: &str, cause: &str) -> String {
    let output = run_binary(
        &["serve"],
        &[
            ("DATABASE_URL", database_url),
            ("CREDIT_PACKS_FILE", PACKS),
            ("GRPC_ADDR", grpc_addr),
            ("HTTP_ADDR", "127.0.0.1:0"),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert_eq!(stderr.matches(cause).count(), 1, "{cause:?} once: {stderr}");
    stderr
}

/// A migrated SQLite file the service may not write, opened with `mode=ro`. The tests may run
/// as root, whom neither `chmod 444` nor a read-only directory stops, and `chattr +i` or a
/// read-only bind mount need privileges and a file system that has them. `mode=ro` is the same
/// path, not a stand-in: SQLite opens a file it cannot write with `SQLITE_OPEN_READONLY`, the
/// flag `mode=ro` sets, so the first write fails alike (`(code: 8) attempt to write a readonly
/// database`, through the same sqlx and sea-orm errors). Run by hand, a `chmod 444` file as an
/// unprivileged user printed the same line, byte for byte.
#[tokio::test]
async fn a_read_only_sqlite_database_stops_start_up_naming_the_cause_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("credits.db");
    let writable = format!("sqlite://{}?mode=rwc", path.display());
    let migrated = run_binary(
        &["migrate"],
        &[("DATABASE_URL", &writable), ("CREDIT_PACKS_FILE", PACKS)],
    )
    .await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let read_only = format!("sqlite://{}?mode=ro", path.display());
    serve_fails_naming_once(&read_only, "127.0.0.1:0", "attempt to write a readonly database").await;
}

#[tokio::test]
async fn a_port_in_use_stops_start_up_naming_the_address_and_the_cause_once() {
    let db = TestDatabase::new().await;
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let line = serve_fails_naming_once(&db.url, &addr, "Address already in use").await;
    assert!(line.contains(&addr), "names the address: {line}");
}

#[tokio::test]
async fn an_unreachable_postgres_stops_start_up_naming_the_cause_once() {
    // Nothing listens on port 1: the pool gives up after its acquire timeout (5 s).
    serve_fails_naming_once(
        "postgres://postgres@127.0.0.1:1/credits",
        "127.0.0.1:0",
        "pool timed out while waiting for an open connection",
    )
    .await;
}
