//! WatchAccountEvents under concurrent writes, the way a consumer uses it: start from a cursor,
//! disconnect mid-way, resume from the last sequence handled. Whatever the timing, the events
//! received are exactly the stored ones after the first cursor (ListAccountEvents): no gap, no
//! repeat at a seam, in strictly increasing sequence. On one replica (both databases), and with
//! writes on one replica and the watch on another on one PostgreSQL.

use std::{sync::Arc, time::Duration};

use credits::grpc::pb;
use tokio::task::JoinSet;
use tonic::{Code, Status};

use crate::helpers::{TestApp, TestDatabase};

/// Concurrent writers: grants and debits over two accounts, every one writing an event.
const WRITERS: usize = 4;
const WRITES_EACH: usize = 60;
const ACCOUNTS: [&str; 2] = ["watched", "neighbour"];

async fn retrying<T, F, Fut>(call: F) -> Result<T, Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    loop {
        match call().await {
            Err(status) if matches!(status.code(), Code::Unavailable | Code::Aborted) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Starts the writers, spread over `apps`: each alternates grants and consumptions over both accounts,
/// with a little pause now and then so the stream also follows rather than only replays.
fn start_writers(apps: &[Arc<TestApp>]) -> JoinSet<()> {
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let app = apps[w % apps.len()].clone();
        writers.spawn(async move {
            for n in 0..WRITES_EACH {
                let account = ACCOUNTS[(w + n) % 2];
                let key = format!("w{w}-{n}");
                if n % 2 == 0 {
                    retrying(|| app.send_grant(crate::helpers::spend::grant_request(account, 3, &key)))
                        .await
                        .expect("grant");
                } else {
                    retrying(|| app.consume(account, 1, &key)).await.expect("consume");
                }
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        });
    }
    writers
}

/// Reads up to `take` events (or until one with sequence `until`) from a new stream after
/// `after`, then drops the stream (the disconnect).
async fn watch_segment(
    app: &TestApp,
    account: &str,
    after: i64,
    take: usize,
    until: Option<i64>,
) -> Vec<pb::AccountEvent> {
    let mut stream = app
        .grpc
        .clone()
        .watch_account_events(pb::WatchAccountEventsRequest {
            account_id: account.into(),
            after_sequence: after,
        })
        .await
        .expect("WatchAccountEvents")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < take {
        // While writers run a quiet second ends the segment (a disconnect like any other); the
        // final catch-up must reach `until`.
        let wait = if until.is_some() {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(1)
        };
        let Ok(next) = tokio::time::timeout(wait, stream.message()).await else {
            assert!(
                until.is_none(),
                "no event within 20 s after {:?}, waiting for {until:?}",
                got.last().map(|e: &pb::AccountEvent| e.sequence)
            );
            break;
        };
        let next = next.expect("the stream").expect("the stream stays open");
        let sequence = next.sequence;
        got.push(next);
        if until.is_some_and(|last| sequence >= last) {
            break;
        }
    }
    got
}

/// Watches `account` (empty: every account) on `reader` from a cursor in the middle of what is
/// stored while `writer` keeps writing; disconnects after every few events and resumes from the
/// last sequence seen; checks the union against ListAccountEvents.
async fn resume_while_writing(writers_on: &[Arc<TestApp>], reader: Arc<TestApp>, account: &str) {
    let writer = writers_on[0].clone();
    for a in ACCOUNTS {
        writer.ensure(a).await;
        for n in 0..5 {
            writer.grant(a, 10, &format!("seed-{n}")).await;
        }
    }
    let seeded = writer.events_after(account, 0).await;
    let start = seeded[seeded.len() / 2].sequence;

    let mut writers = start_writers(writers_on);
    let mut received: Vec<pb::AccountEvent> = Vec::new();
    let mut cursor = start;
    let mut seams = 0;
    // Segments of varying length while the writers run.
    for take in [3, 17, 1, 40, 9, 25].into_iter().cycle() {
        if writers.is_empty() {
            break;
        }
        let segment = watch_segment(&reader, account, cursor, take, None).await;
        if let Some(last) = segment.last() {
            cursor = last.sequence;
        }
        received.extend(segment);
        seams += 1;
        while let Some(done) = writers.try_join_next() {
            done.expect("writer");
        }
        if seams > 200 {
            while let Some(done) = writers.join_next().await {
                done.expect("writer");
            }
        }
    }
    let during = received.len();
    // The writers are done: read what is left up to the last stored event.
    let stored = writer.events_after(account, start).await;
    let last = stored.last().expect("events were written").sequence;
    if cursor < last {
        received.extend(watch_segment(&reader, account, cursor, usize::MAX, Some(last)).await);
        seams += 1;
    }
    eprintln!(
        "{account:?}: {} events in {seams} segments, {during} while the writers ran",
        received.len()
    );
    assert!(seams >= 3, "the stream was resumed: {seams} segments");
    assert!(during > 0, "the stream followed events as they were written");
    assert!(
        received.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "strictly increasing, no repeat at a seam"
    );
    let want = if account.is_empty() { 2 } else { 1 } * WRITERS * WRITES_EACH / 2;
    assert!(stored.len() >= want, "{} stored, {want} written", stored.len());
    assert_eq!(received.len(), stored.len(), "no gap and no repeat");
    assert_eq!(received, stored, "exactly the stored events after the cursor");
    if !account.is_empty() {
        assert!(received.iter().all(|e| e.account_id == account));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_watch_of_one_account_gets_every_event_once_while_writes_continue() {
    let app = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            .spawn()
            .await,
    );
    resume_while_writing(std::slice::from_ref(&app), app.clone(), "watched").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_watch_of_every_account_gets_every_event_once_while_writes_continue() {
    let app = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            .spawn()
            .await,
    );
    resume_while_writing(std::slice::from_ref(&app), app.clone(), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_one_replica_resumes_without_gap_while_both_write() {
    if !TestDatabase::is_postgres() {
        // SQLite is one file per process: replicas sharing a database are a PostgreSQL setup.
        eprintln!("skipped: two replicas need PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let writer = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            // Four writer connections: batches commit concurrently, so sequences could only
            // become visible out of order if the events lock did not serialise them.
            .env("DATABASE_WRITER_CONNECTIONS", "4")
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .spawn()
            .await,
    );
    let reader = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            .database(writer.db.clone())
            .spawn()
            .await,
    );
    // Writers on both replicas: the reader's replica is woken by its own commits while the
    // other's are still in flight, and still sees sequences in order.
    resume_while_writing(&[writer, reader.clone()], reader, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_of_one_account_on_another_replica_resumes_without_gap_while_the_first_writes() {
    if !TestDatabase::is_postgres() {
        eprintln!("skipped: two replicas need PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let writer = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            // Four writer connections: batches commit concurrently, so sequences could only
            // become visible out of order if the events lock did not serialise them.
            .env("DATABASE_WRITER_CONNECTIONS", "4")
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .spawn()
            .await,
    );
    let reader = Arc::new(
        TestApp::builder()
            .env("ACCOUNT_EVENTS_CONSUMED", "true")
            .database(writer.db.clone())
            .spawn()
            .await,
    );
    // Writes on the first replica only: the reader's replica finds them by polling.
    resume_while_writing(&[writer], reader, "watched").await;
}
