//! Account events as consumers read them: ListAccountEvents followed page by page,
//! WatchAccountEvents, UpdateAccountSettings, and waiting for events the sweep writes.

use std::time::Duration;

use credits::grpc::pb;
use serde_json::Value;
use tonic::Status;

use super::TestApp;

pub fn list_request(account: &str, after_sequence: i64, page_size: i32) -> pb::ListAccountEventsRequest {
    pb::ListAccountEventsRequest {
        account_id: account.into(),
        after_sequence,
        page_size,
    }
}

/// The event's JSON payload.
pub fn payload(event: &pb::AccountEvent) -> Value {
    serde_json::from_str(&event.payload).expect("the payload is JSON")
}

/// How many of `events` are of type `kind`.
pub fn count(events: &[pb::AccountEvent], kind: &str) -> usize {
    events.iter().filter(|e| e.r#type == kind).count()
}

pub fn types(events: &[pb::AccountEvent]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

impl TestApp {
    pub async fn list_events(
        &self,
        request: pb::ListAccountEventsRequest,
    ) -> Result<pb::ListAccountEventsResponse, Status> {
        self.grpc
            .clone()
            .list_account_events(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every stored event of `account` (empty: of every account) after `after`, oldest first,
    /// following the cursor page by page.
    pub async fn events_after(&self, account: &str, after: i64) -> Vec<pb::AccountEvent> {
        let mut all = Vec::new();
        let mut cursor = after;
        loop {
            let page = self
                .list_events(list_request(account, cursor, 1000))
                .await
                .expect("ListAccountEvents");
            if page.events.is_empty() {
                assert_eq!(page.next_after_sequence, cursor, "an empty page keeps the cursor");
                return all;
            }
            cursor = page.next_after_sequence;
            all.extend(page.events);
        }
    }

    /// Every stored event of `account`, oldest first.
    pub async fn account_events(&self, account: &str) -> Vec<pb::AccountEvent> {
        self.events_after(account, 0).await
    }

    /// Waits (up to 20 s) until `account` has an event of each of `kinds`; returns its events.
    pub async fn until_events(&self, account: &str, kinds: &[&str]) -> Vec<pb::AccountEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.account_events(account).await;
            if kinds.iter().all(|k| count(&events, k) > 0) {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{account} never got {kinds:?}: {:?}",
                types(&events)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn update_settings(
        &self,
        request: pb::UpdateAccountSettingsRequest,
    ) -> Result<pb::AccountSettings, Status> {
        self.grpc
            .clone()
            .update_account_settings(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Sets the account's balance alert threshold.
    pub async fn set_threshold(&self, account: &str, threshold: i64) -> pb::AccountSettings {
        self.update_settings(pb::UpdateAccountSettingsRequest {
            account: Some(pb::update_account_settings_request::Account::AccountId(
                account.into(),
            )),
            low_balance_threshold: Some(threshold),
            ..Default::default()
        })
        .await
        .expect("UpdateAccountSettings")
    }

    /// Sets the account's overdraft limit.
    pub async fn set_overdraft(&self, account: &str, limit: i64) -> pb::AccountSettings {
        self.update_settings(pb::UpdateAccountSettingsRequest {
            account: Some(pb::update_account_settings_request::Account::AccountId(
                account.into(),
            )),
            overdraft_limit: Some(limit),
            ..Default::default()
        })
        .await
        .expect("UpdateAccountSettings")
    }
}
