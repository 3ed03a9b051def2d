//! The delivery worker: one pass POSTs the due events, several accounts at once, each account's
//! events one after another and only after the one before was delivered or given up. Every
//! attempt is recorded on its row (no transaction spans a POST), so a crash, a restart or
//! another replica taking over resumes from the rows: at least once, never out of order within
//! an account. `ops::scheduler` runs the passes under a lease.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{StreamExt, stream};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use super::{
    Backlog, Notification, NotifyError, backoff, body,
    client::{ClientError, WebhookClient},
    signature,
    store::{self, Failure},
};
use crate::{config::EventSettings, metrics::Metrics};

/// Accounts whose events are delivered at once.
const AT_ONCE: usize = 8;

/// Accounts one pass starts with.
const HEADS_PER_PASS: u64 = 200;

/// Events of one account read per query once its first was delivered.
const CHAIN_PAGE: u64 = 50;

/// `last_delivery_error` is cut to this many characters.
const MAX_ERROR_CHARS: usize = 500;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PassReport {
    pub delivered: u64,
    pub failed: u64,
}

/// Delivers account events to `NOTIFY_WEBHOOK_URL`.
#[derive(Clone)]
pub(crate) struct Notifier {
    db: DatabaseConnection,
    client: WebhookClient,
    secret: SecretString,
    retry_base: Duration,
    give_up_after: Duration,
    timeout: Duration,
    metrics: Metrics,
}

impl Notifier {
    /// `None` when no webhook is configured.
    pub(crate) fn new(
        settings: &EventSettings,
        db: DatabaseConnection,
        metrics: Metrics,
    ) -> Result<Option<Self>, ClientError> {
        let (Some(url), Some(secret)) = (&settings.webhook_url, &settings.webhook_secret) else {
            return Ok(None);
        };
        Ok(Some(Self {
            db,
            client: WebhookClient::new(url, settings.webhook_timeout)?,
            secret: secret.clone(),
            retry_base: settings.retry_base,
            give_up_after: settings.give_up_after,
            timeout: settings.webhook_timeout,
            metrics,
        }))
    }

    /// One delivery's deadline.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Delivers what is due; starts no delivery after `budget`, so the pass ends by `budget`
    /// plus one timeout.
    pub(crate) async fn run_pass(&self, budget: Duration) -> Result<PassReport, NotifyError> {
        let stop_starting = Instant::now() + budget;
        let heads = store::due_heads(&self.db, Utc::now(), HEADS_PER_PASS).await?;
        let reports: Vec<PassReport> = stream::iter(heads)
            .map(|head| self.deliver_account(head, stop_starting))
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        Ok(reports
            .into_iter()
            .fold(PassReport::default(), |sum, r| PassReport {
                delivered: sum.delivered + r.delivered,
                failed: sum.failed + r.failed,
            }))
    }

    /// When the next attempt falls due (None: nothing pending).
    pub(crate) async fn next_due(&self) -> Result<Option<chrono::DateTime<Utc>>, NotifyError> {
        Ok(store::next_due(&self.db).await?)
    }

    /// Sets the backlog gauges from the table.
    pub(crate) async fn refresh_backlog(&self) -> Result<Backlog, NotifyError> {
        let backlog = store::backlog(&self.db).await?;
        let age = backlog.oldest.map_or(0, |oldest| {
            Utc::now().signed_duration_since(oldest).num_seconds().max(0)
        });
        self.metrics.notification_backlog(backlog.count, age);
        Ok(backlog)
    }

    /// The account's first pending event, then its next ones while they are delivered.
    async fn deliver_account(&self, head: Notification, stop_starting: Instant) -> PassReport {
        let mut report = PassReport::default();
        let account_id = head.account_id.clone();
        let mut cursor = head.sequence;
        if !self.deliver(head, &mut report).await {
            return report;
        }
        while Instant::now() < stop_starting {
            let next = match store::pending_after(&self.db, &account_id, cursor, CHAIN_PAGE).await {
                Ok(next) => next,
                Err(err) => {
                    tracing::warn!(account_id, error = %err, "could not read the account's next events; the next pass goes on");
                    return report;
                }
            };
            let full = next.len() as u64 == CHAIN_PAGE;
            for event in next {
                if Instant::now() >= stop_starting {
                    return report;
                }
                cursor = event.sequence;
                // An event made due later (requeued by an operator while others waited) is
                // still next in line: order per account comes first.
                if !self.deliver(event, &mut report).await {
                    return report;
                }
            }
            if !full {
                break;
            }
        }
        report
    }

    /// One attempt, recorded; true when the event no longer holds its account's queue.
    #[tracing::instrument(skip_all, fields(event_id = %event.id, account_id = %event.account_id, sequence = event.sequence))]
    async fn deliver(&self, event: Notification, report: &mut PassReport) -> bool {
        let payload = body::render(&event);
        let signed = signature::sign(&self.secret, Utc::now().timestamp(), &payload);
        let sent = self.client.post(&event.id, &signed, payload).await;
        let now = Utc::now();
        let recorded = match sent {
            Ok(()) => {
                report.delivered += 1;
                self.metrics.notification_delivered();
                store::mark_delivered(&self.db, event.sequence, now)
                    .await
                    .map(|_| true)
            }
            Err(err) => {
                report.failed += 1;
                self.metrics.notification_failed();
                let attempts = event.delivery.attempts.saturating_add(1);
                let error: String = err.to_string().chars().take(MAX_ERROR_CHARS).collect();
                let given_up = backoff::gives_up(event.created_at, now, self.give_up_after);
                let delay = backoff::retry_delay(
                    self.retry_base,
                    attempts,
                    backoff::jitter(event.sequence, attempts),
                );
                let failure = Failure {
                    error,
                    next_at: now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
                    given_up_at: given_up.then_some(now),
                };
                if given_up {
                    self.metrics.notification_given_up();
                    tracing::warn!(attempts, error = %failure.error, "account event delivery given up; `credits notifications retry` sends it again");
                } else {
                    tracing::info!(attempts, error = %failure.error, retry_in = ?delay, "account event delivery failed; retrying");
                }
                store::mark_failed(&self.db, event.sequence, &failure)
                    .await
                    .map(|_| given_up)
            }
        };
        recorded.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not record the delivery attempt; the event will be sent again");
            false
        })
    }
}
