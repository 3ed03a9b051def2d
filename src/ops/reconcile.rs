//! Reconciliation: webhooks get lost, so Stripe's own list of completed sessions is walked and
//! every paid one not yet credited goes through the same exactly-once path as the webhook.

use chrono::{DateTime, Utc};

use crate::{
    billing::{Billing, BillingError, CheckoutFacts, EventAction, StripeEvent},
    event_store::{Delivery, EventOutcome},
    report::error_chain,
    stripe::CompletedSession,
};

/// What one reconciliation run found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReconcileReport {
    /// Completed sessions Stripe listed.
    pub examined: usize,
    /// Sessions credited by this run (their webhook never arrived or failed).
    pub credited: Vec<String>,
    pub already_credited: usize,
    /// Completed but not paid yet (delayed methods).
    pub unpaid: usize,
    /// Sessions that match no account or pack: `(session id, why)`.
    pub unmatched: Vec<(String, String)>,
    /// Sessions that could not be applied (Stripe or the database failed): `(session id,
    /// error)`. The run goes on; the next one tries them again.
    pub failed: Vec<(String, String)>,
    /// Credits granted by this run.
    pub credits: i64,
}

fn facts_of(session: CompletedSession) -> CheckoutFacts {
    let meta = |key: &str| {
        session
            .metadata
            .get(key)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    };
    CheckoutFacts {
        metadata_account_id: meta("account_id"),
        metadata_price_id: meta("price_id"),
        email: session
            .customer_details_email
            .clone()
            .or_else(|| session.customer_email.clone()),
        client_reference_id: session.client_reference_id.clone(),
        payment_intent_id: session.payment_intent_id.clone(),
        amount_total: session.amount_total,
        currency: session.currency.clone(),
        customer_id: session.customer_id.clone(),
        save_card: meta("save_payment_method").as_deref() == Some("true"),
        top_up: None,
        session_id: session.id,
    }
}

/// Credits every paid session completed since `since` that is not credited yet.
#[tracing::instrument(skip(billing), err)]
pub(crate) async fn reconcile(
    billing: &Billing,
    since: DateTime<Utc>,
) -> Result<ReconcileReport, BillingError> {
    let sessions = billing.completed_sessions(since).await?;
    let mut report = ReconcileReport {
        examined: sessions.len(),
        ..ReconcileReport::default()
    };
    for session in sessions {
        if !matches!(session.payment_status.as_str(), "paid" | "no_payment_required") {
            report.unpaid += 1;
            continue;
        }
        let session_id = session.id.clone();
        let event = StripeEvent {
            id: format!("reconcile:{session_id}"),
            event_type: "reconcile.checkout_session".to_owned(),
            payload: String::new(),
            action: EventAction::Credit(facts_of(session)),
        };
        let result = match billing.apply_event(event, Delivery::Reconcile).await {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(session_id, error = %error_chain(&err), "reconcile could not apply a session");
                report.failed.push((session_id, error_chain(&err)));
                continue;
            }
        };
        match result.outcome {
            EventOutcome::Credited => {
                tracing::warn!(
                    session_id,
                    credits = result.credits,
                    "reconcile credited a session whose webhook never arrived"
                );
                report.credited.push(session_id);
                report.credits += result.credits;
            }
            EventOutcome::UnmatchedAccount | EventOutcome::UnmatchedPack => {
                report
                    .unmatched
                    .push((session_id, result.detail.unwrap_or_default()));
            }
            _ => report.already_credited += 1,
        }
    }
    tracing::info!(
        examined = report.examined,
        fixed = report.credited.len(),
        already_credited = report.already_credited,
        unpaid = report.unpaid,
        unmatched = report.unmatched.len(),
        failed = report.failed.len(),
        "reconcile finished"
    );
    Ok(report)
}
