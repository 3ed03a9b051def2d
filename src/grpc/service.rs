//! Thin RPC handlers: parse → call the ledger → convert; and the list of their names.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use tracing::Span;

use super::{
    convert, pb,
    status::{billing_status, ledger_status},
    subscriptions as subs,
};
use crate::{
    billing::Billing,
    ledger::{
        AccountId, AccountRef, Email, Extension, Ledger, Listing,
        commands::{EnsureAccount, Release},
    },
};

/// The RPCs of `credits.v1.CreditsService`, the only method names metrics, logs and spans
/// carry: tonic exposes no such list, and a name taken from the request path would let any
/// caller mint label values. A unit test keeps it equal to the proto.
pub(crate) const RPC_METHODS: [&str; 21] = [
    "ListCreditPacks",
    "PurchaseCredits",
    "GetBalance",
    "ListPurchases",
    "EnsureAccount",
    "GrantCredits",
    "ConsumeCredits",
    "ConsumeCreditsBatch",
    "ReserveCredits",
    "CaptureHold",
    "ReleaseHold",
    "ListLedgerEntries",
    "ListCreditLots",
    "ListAccountEvents",
    "WatchAccountEvents",
    "GetAccountSettings",
    "UpdateAccountSettings",
    "Subscribe",
    "GetSubscription",
    "ListSubscriptions",
    "CancelSubscription",
];

/// What any other path under the service (or a path of another service) is called.
pub(crate) const UNKNOWN_METHOD: &str = "unknown";

/// The method a request path names when it is one of `RPC_METHODS`; `unknown` otherwise.
pub(crate) fn rpc_method(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(pb::credits_service_server::SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|name| RPC_METHODS.into_iter().find(|known| *known == name))
        .unwrap_or(UNKNOWN_METHOD)
}

/// `credits.v1.CreditsService` over the ledger and billing.
pub(crate) struct CreditsApi<X: Extension> {
    ledger: Ledger<X>,
    billing: Billing,
    publishable_key: String,
    /// `LOW_BALANCE_THRESHOLD`, shown for accounts that set none.
    default_threshold: i64,
    /// Batch debits at the writer, over every ConsumeCreditsBatch call: bounds their memory.
    batch_debits: Arc<Semaphore>,
}

impl<X: Extension> CreditsApi<X> {
    pub(crate) fn new(
        ledger: Ledger<X>,
        billing: Billing,
        publishable_key: String,
        default_threshold: i64,
    ) -> Self {
        Self {
            ledger,
            billing,
            publishable_key,
            default_threshold,
            batch_debits: Arc::new(Semaphore::new(convert::BATCH_DEBITS_IN_FLIGHT)),
        }
    }
}

impl<X: Extension> Clone for CreditsApi<X> {
    fn clone(&self) -> Self {
        Self {
            ledger: self.ledger.clone(),
            billing: self.billing.clone(),
            publishable_key: self.publishable_key.clone(),
            default_threshold: self.default_threshold,
            batch_debits: self.batch_debits.clone(),
        }
    }
}

/// The stream WatchAccountEvents answers with.
type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::AccountEvent, Status>> + Send>>;

fn record_account(by: &AccountRef) {
    if let AccountRef::Id(id) = by {
        Span::current().record("account_id", id.as_str());
    }
}

#[tonic::async_trait]
impl<X: Extension> pb::credits_service_server::CreditsService for CreditsApi<X> {
    async fn list_credit_packs(
        &self,
        _request: Request<pb::ListCreditPacksRequest>,
    ) -> Result<Response<pb::ListCreditPacksResponse>, Status> {
        let packs = self.billing.list_packs().await.map_err(billing_status)?;
        Ok(Response::new(pb::ListCreditPacksResponse {
            packs: packs.into_iter().map(convert::pack).collect(),
            stripe_publishable_key: self.publishable_key.clone(),
        }))
    }

    async fn purchase_credits(
        &self,
        request: Request<pb::PurchaseCreditsRequest>,
    ) -> Result<Response<pb::PurchaseCreditsResponse>, Status> {
        let req = convert::purchase_request(request.into_inner())?;
        Span::current().record("account_id", req.account_id.as_str());
        let started = self.billing.purchase_credits(req).await.map_err(billing_status)?;
        Ok(Response::new(pb::PurchaseCreditsResponse {
            checkout_url: started.checkout_url,
            checkout_session_id: started.checkout_session_id,
            purchase_id: started.purchase_id,
        }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let req = request.into_inner();
        let as_of = convert::as_of(req.as_of.as_ref())?;
        let by = convert::account::get_balance_request(req.account)?;
        let balance = match as_of {
            Some(at) => self.ledger.balance_as_of(&by, at).await,
            None => self.ledger.balance(&by).await,
        }
        .map_err(ledger_status)?;
        Span::current().record("account_id", balance.account.id.as_str());
        Ok(Response::new(convert::balance(balance)))
    }

    async fn list_purchases(
        &self,
        request: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        let req = request.into_inner();
        let by = convert::account::list_purchases_request(req.account)?;
        record_account(&by);
        let page = convert::page_request(Listing::Purchases, req.page_size, &req.page_token)?;
        let result = self
            .billing
            .list_purchases(&by, &page)
            .await
            .map_err(billing_status)?;
        Ok(Response::new(pb::ListPurchasesResponse {
            purchases: result.purchases.into_iter().map(convert::purchase).collect(),
            next_page_token: result.next_page_token.unwrap_or_default(),
        }))
    }

    async fn ensure_account(
        &self,
        request: Request<pb::EnsureAccountRequest>,
    ) -> Result<Response<pb::EnsureAccountResponse>, Status> {
        let req = request.into_inner();
        let account_id =
            AccountId::parse(&req.account_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let email = Email::parse(&req.email).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Span::current().record("account_id", account_id.as_str());
        let ensured = self
            .ledger
            .send(EnsureAccount {
                account_id,
                email,
                follow_email: false,
            })
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(pb::EnsureAccountResponse {
            account: Some(convert::account_view(ensured.account)),
            created: ensured.created,
        }))
    }

    async fn grant_credits(
        &self,
        request: Request<pb::GrantCreditsRequest>,
    ) -> Result<Response<pb::GrantCreditsResponse>, Status> {
        let grant = convert::grant(request.into_inner())?;
        record_account(&grant.account);
        let granted = self.ledger.send(grant).await.map_err(ledger_status)?;
        Ok(Response::new(pb::GrantCreditsResponse {
            credit_balance: granted.credit_balance,
            ledger_entry_id: granted.ledger_entry_id,
            lot_id: granted.lot_id,
            replayed: granted.replayed,
        }))
    }

    async fn consume_credits(
        &self,
        request: Request<pb::ConsumeCreditsRequest>,
    ) -> Result<Response<pb::ConsumeCreditsResponse>, Status> {
        let consume = convert::consume(request.into_inner())?;
        record_account(&consume.account);
        let consumed = self.ledger.send(consume).await.map_err(ledger_status)?;
        Ok(Response::new(convert::consumed(consumed)))
    }

    async fn consume_credits_batch(
        &self,
        request: Request<pb::ConsumeCreditsBatchRequest>,
    ) -> Result<Response<pb::ConsumeCreditsBatchResponse>, Status> {
        let debits = request.into_inner().debits;
        convert::batch_size(debits.len())?;
        let mut results: Vec<Option<Result<_, Status>>> = Vec::with_capacity(debits.len());
        let mut valid = Vec::with_capacity(debits.len());
        for debit in debits {
            match convert::consume(debit) {
                Ok(consume) => {
                    valid.push(consume);
                    results.push(None);
                }
                Err(status) => results.push(Some(Err(status))),
            }
        }
        // The call's debits go to the writer as one group, into one batch and one commit; the
        // service holds at most `BATCH_DEBITS_IN_FLIGHT` such debits at the writer at once.
        let _permits = self
            .batch_debits
            .acquire_many(u32::try_from(valid.len()).unwrap_or(u32::MAX))
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        let mut answers = self.ledger.send_all(valid).await.into_iter();
        for slot in results.iter_mut().filter(|slot| slot.is_none()) {
            *slot = answers.next().map(|answer| answer.map_err(ledger_status));
        }
        Ok(Response::new(pb::ConsumeCreditsBatchResponse {
            results: results
                .into_iter()
                .map(|result| {
                    convert::debit_result(result.unwrap_or_else(|| Err(Status::internal("no answer"))))
                })
                .collect(),
        }))
    }

    async fn reserve_credits(
        &self,
        request: Request<pb::ReserveCreditsRequest>,
    ) -> Result<Response<pb::ReserveCreditsResponse>, Status> {
        let reserve = convert::reserve(request.into_inner())?;
        record_account(&reserve.account);
        let reserved = self.ledger.send(reserve).await.map_err(ledger_status)?;
        Ok(Response::new(pb::ReserveCreditsResponse {
            hold_id: reserved.hold_id,
            available_balance: reserved.available_balance,
            expires_at: Some(convert::timestamp(reserved.expires_at)),
            replayed: reserved.replayed,
        }))
    }

    async fn capture_hold(
        &self,
        request: Request<pb::CaptureHoldRequest>,
    ) -> Result<Response<pb::CaptureHoldResponse>, Status> {
        let capture = convert::capture(request.into_inner())?;
        let captured = self.ledger.send(capture).await.map_err(ledger_status)?;
        Ok(Response::new(pb::CaptureHoldResponse {
            credit_balance: captured.credit_balance,
            available_balance: captured.available_balance,
            ledger_entry_id: captured.ledger_entry_id,
            released_credits: captured.released_credits,
            replayed: captured.replayed,
        }))
    }

    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::ReleaseHoldResponse>, Status> {
        let hold_id = convert::hold_id(&request.into_inner().hold_id)?;
        let released = self
            .ledger
            .send(Release { hold_id })
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(pb::ReleaseHoldResponse {
            available_balance: released.available_balance,
            replayed: released.replayed,
        }))
    }

    async fn list_ledger_entries(
        &self,
        request: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        let req = request.into_inner();
        let by = convert::account::list_ledger_entries_request(req.account)?;
        record_account(&by);
        let page = convert::page_request(Listing::LedgerEntries, req.page_size, &req.page_token)?;
        let result = self.ledger.entries(&by, &page).await.map_err(ledger_status)?;
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries: result.entries.into_iter().map(convert::entry).collect(),
            next_page_token: result.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_credit_lots(
        &self,
        request: Request<pb::ListCreditLotsRequest>,
    ) -> Result<Response<pb::ListCreditLotsResponse>, Status> {
        let req = request.into_inner();
        let by = convert::account::list_credit_lots_request(req.account)?;
        record_account(&by);
        let lots = match convert::as_of(req.as_of.as_ref())? {
            Some(at) => self.ledger.lots_as_of(&by, req.include_spent, at).await,
            None => self.ledger.lots(&by, req.include_spent).await,
        }
        .map_err(ledger_status)?;
        Ok(Response::new(pb::ListCreditLotsResponse {
            lots: lots.into_iter().map(convert::lot).collect(),
        }))
    }

    async fn list_account_events(
        &self,
        request: Request<pb::ListAccountEventsRequest>,
    ) -> Result<Response<pb::ListAccountEventsResponse>, Status> {
        let req = request.into_inner();
        let account = convert::event_account(&req.account_id)?;
        if let Some(id) = &account {
            Span::current().record("account_id", id.as_str());
        }
        let after = convert::after_sequence(req.after_sequence)?;
        let size = convert::event_page_size(req.page_size)?;
        let page = self
            .ledger
            .account_events(account.as_deref(), after, size)
            .await
            .map_err(ledger_status)?;
        Ok(Response::new(pb::ListAccountEventsResponse {
            events: page.events.into_iter().map(convert::account_event).collect(),
            next_after_sequence: page.next_after,
        }))
    }

    type WatchAccountEventsStream = EventStream;

    async fn watch_account_events(
        &self,
        request: Request<pb::WatchAccountEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        use futures_util::StreamExt;

        let req = request.into_inner();
        let account = convert::event_account(&req.account_id)?;
        if let Some(id) = &account {
            Span::current().record("account_id", id.as_str());
        }
        let after = convert::after_sequence(req.after_sequence)?;
        let events = self
            .ledger
            .watch_events(account, after)
            .map(|event| event.map(convert::account_event).map_err(ledger_status));
        Ok(Response::new(Box::pin(events)))
    }

    async fn get_account_settings(
        &self,
        request: Request<pb::GetAccountSettingsRequest>,
    ) -> Result<Response<pb::AccountSettings>, Status> {
        let by = convert::account::get_account_settings_request(request.into_inner().account)?;
        record_account(&by);
        let read = self.ledger.settings(&by).await.map_err(ledger_status)?;
        Ok(Response::new(convert::settings(read, self.default_threshold)))
    }

    async fn update_account_settings(
        &self,
        request: Request<pb::UpdateAccountSettingsRequest>,
    ) -> Result<Response<pb::AccountSettings>, Status> {
        let req = request.into_inner();
        let change = convert::settings_change(&req);
        let by = convert::account::update_account_settings_request(req.account)?;
        record_account(&by);
        self.billing
            .update_settings(by.clone(), change)
            .await
            .map_err(billing_status)?;
        let read = self.ledger.settings(&by).await.map_err(ledger_status)?;
        Ok(Response::new(convert::settings(read, self.default_threshold)))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::SubscribeResponse>, Status> {
        let req = subs::subscribe_request(request.into_inner())?;
        Span::current().record("account_id", req.account_id.as_str());
        let started = self.billing.subscribe(req).await.map_err(billing_status)?;
        Ok(Response::new(pb::SubscribeResponse {
            checkout_url: started.checkout_url,
            checkout_session_id: started.checkout_session_id,
        }))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let id = subs::subscription_id(&request.into_inner().subscription_id)?;
        let view = self.billing.subscription(&id).await.map_err(billing_status)?;
        Span::current().record("account_id", view.subscription.account_id.as_str());
        Ok(Response::new(subs::subscription(view)))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let account = subs::account_id(&request.into_inner().account_id)?;
        Span::current().record("account_id", account.as_str());
        let views = self
            .billing
            .subscriptions(&account)
            .await
            .map_err(billing_status)?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: views.into_iter().map(subs::subscription).collect(),
        }))
    }

    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let req = request.into_inner();
        let id = subs::subscription_id(&req.subscription_id)?;
        let view = self
            .billing
            .cancel_subscription(&id, req.at_period_end)
            .await
            .map_err(billing_status)?;
        Span::current().record("account_id", view.subscription.account_id.as_str());
        Ok(Response::new(subs::subscription(view)))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    #[test]
    fn rpc_methods_are_the_methods_of_the_proto_service() {
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("the build's descriptor set");
        let service = set
            .file
            .iter()
            .filter(|file| file.package() == "credits.v1")
            .flat_map(|file| &file.service)
            .find(|service| {
                format!("credits.v1.{}", service.name()) == pb::credits_service_server::SERVICE_NAME
            })
            .expect("CreditsService in the descriptor set");
        let mut in_proto: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut listed = RPC_METHODS.to_vec();
        in_proto.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, in_proto);
    }

    #[test]
    fn only_known_paths_of_this_service_keep_their_method_name() {
        assert_eq!(rpc_method("/credits.v1.CreditsService/GetBalance"), "GetBalance");
        for path in [
            "/credits.v1.CreditsService/getbalance",
            "/credits.v1.CreditsService/GetBalance/extra",
            "/credits.v1.CreditsService/MadeUp",
            "/credits.v1.CreditsService/",
            "/credits.v1.CreditsServiceX/GetBalance",
            "/other.v1.Other/GetBalance",
            "credits.v1.CreditsService/GetBalance",
            "",
        ] {
            assert_eq!(rpc_method(path), UNKNOWN_METHOD, "{path}");
        }
    }
}
