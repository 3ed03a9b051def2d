//! `credits notifications list|retry`: the outbound webhook's deliveries as operators look at
//! them, and sending given-up events again.

use super::{CliError, NotificationsCommand, print::when};
use crate::{
    config::Settings,
    db,
    notify::{DeliveryState, ListFilter, Notifications},
};

pub(super) async fn run(settings: Settings, command: NotificationsCommand) -> Result<(), CliError> {
    let notifications = Notifications::new(db::connect(&settings).await?);
    let configured = settings.events.webhook_url.is_some();
    match command {
        NotificationsCommand::List {
            pending: _,
            failed,
            all,
            account,
            limit,
        } => {
            let filter = if all {
                ListFilter::All
            } else if failed {
                ListFilter::Failed
            } else {
                ListFilter::Pending
            };
            list(&notifications, filter, account.as_deref(), limit).await?;
        }
        NotificationsCommand::Retry {
            event_ids,
            all_given_up,
        } => {
            if all_given_up {
                let queued = notifications.retry_given_up().await.map_err(anyhow::Error::new)?;
                println!("{queued} given-up event(s) queued for delivery");
            } else {
                let report = notifications
                    .retry(&event_ids)
                    .await
                    .map_err(anyhow::Error::new)?;
                for id in &report.queued {
                    println!("{id}: queued for delivery");
                }
                for id in &report.delivered {
                    println!("{id}: already delivered; nothing to do");
                }
                for id in &report.missing {
                    println!("{id}: not found");
                }
                if !report.missing.is_empty() {
                    return Err(anyhow::anyhow!("{} event(s) not found", report.missing.len()).into());
                }
            }
            if !configured {
                println!("NOTIFY_WEBHOOK_URL is unset here: they go out once `serve` runs with one");
            }
        }
    }
    Ok(())
}

async fn list(
    notifications: &Notifications,
    filter: ListFilter,
    account: Option<&str>,
    limit: u64,
) -> Result<(), CliError> {
    let listed = notifications
        .list(filter, account, limit)
        .await
        .map_err(anyhow::Error::new)?;
    println!(
        "{:>10} {:<40} {:<24} {:<22} {:>8} {:<25} {:<10} LAST ERROR",
        "SEQUENCE", "ID", "ACCOUNT", "TYPE", "ATTEMPTS", "NEXT ATTEMPT", "STATE"
    );
    for n in &listed {
        let state = n.state();
        let next = match state {
            DeliveryState::Pending | DeliveryState::Retrying => when(n.delivery.next_at),
            DeliveryState::Delivered | DeliveryState::GivenUp => "-".to_owned(),
        };
        println!(
            "{:>10} {:<40} {:<24} {:<22} {:>8} {:<25} {:<10} {}",
            n.sequence,
            n.id,
            n.account_id,
            n.kind.as_str(),
            n.delivery.attempts,
            next,
            state.as_str(),
            n.delivery.last_error.as_deref().unwrap_or("")
        );
    }
    println!("{} event(s)", listed.len());
    Ok(())
}
