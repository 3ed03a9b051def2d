//! Account events as callers read them: a page after a cursor, and a stream that replays what
//! is stored after a cursor and then follows new events as they commit.
//!
//! Events are read by `sequence > cursor`. Every batch that writes events holds one lock from
//! its insert to its commit (see `store::outbox::insert_events`), so sequences become visible
//! in order: a reader that has seen `n` never misses a smaller one committing later. A stream
//! wakes when this replica's writer commits events and polls for other replicas' commits.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    api::Ledger,
    error::LedgerError,
    store::{self, outbox::StoredEvent},
    writer::Extension,
};

/// Events a stream reads per query while it catches up.
const REPLAY_PAGE: u64 = 500;

/// How often a stream looks for events other replicas committed.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// One page of events, and the cursor of the next.
#[derive(Debug, Clone)]
pub(crate) struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_after: i64,
}

impl<X: Extension> Ledger<X> {
    /// Up to `limit` events after `after`, oldest first, for one account or all.
    pub(crate) async fn account_events(
        &self,
        account_id: Option<&str>,
        after: i64,
        limit: u64,
    ) -> Result<EventPage, LedgerError> {
        let events = store::outbox::events_after(&self.reads, account_id, after, limit).await?;
        let next_after = events.last().map_or(after, |e| e.sequence);
        Ok(EventPage { events, next_after })
    }

    /// The events after `after`, then each new one as it commits, with no gap and no repeat;
    /// ends when the receiver is dropped or a read fails (the error is the last item).
    pub(crate) fn watch_events(
        &self,
        account_id: Option<String>,
        after: i64,
    ) -> ReceiverStream<Result<StoredEvent, LedgerError>> {
        let (tx, rx) = mpsc::channel(64);
        let reads = self.reads.clone();
        let mut committed = self.signals.events();
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                // Marked seen before the read: a commit after it wakes the next wait.
                committed.borrow_and_update();
                let page =
                    match store::outbox::events_after(&reads, account_id.as_deref(), cursor, REPLAY_PAGE)
                        .await
                    {
                        Ok(page) => page,
                        Err(err) => {
                            let _ = tx.send(Err(err.into())).await;
                            return;
                        }
                    };
                let full = page.len() as u64 == REPLAY_PAGE;
                for event in page {
                    cursor = event.sequence;
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    _ = committed.changed() => {}
                    () = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        });
        ReceiverStream::new(rx)
    }
}
