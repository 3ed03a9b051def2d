//! Thin RPC handlers: parse → call the ledger → convert.

use tonic::{Request, Response, Status};
use tracing::Span;

use super::{convert, pb, status::to_status};
use crate::ledger::Ledger;

/// `credits.v1.CreditsService` over the ledger.
#[derive(Clone)]
pub struct CreditsApi {
    ledger: Ledger,
    publishable_key: String,
}

impl CreditsApi {
    pub fn new(ledger: Ledger, publishable_key: String) -> Self {
        Self {
            ledger,
            publishable_key,
        }
    }
}

#[tonic::async_trait]
impl pb::credits_service_server::CreditsService for CreditsApi {
    async fn list_credit_packs(
        &self,
        _request: Request<pb::ListCreditPacksRequest>,
    ) -> Result<Response<pb::ListCreditPacksResponse>, Status> {
        let packs = self.ledger.list_packs().await.map_err(to_status)?;
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
        let started = self.ledger.purchase_credits(req).await.map_err(to_status)?;
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
        let by = convert::balance_account(request.into_inner().account)?;
        let account = self.ledger.get_balance(&by).await.map_err(to_status)?;
        Span::current().record("account_id", account.id.as_str());
        Ok(Response::new(pb::GetBalanceResponse {
            account_id: account.id,
            email: account.email,
            credit_balance: account.credit_balance,
            is_trial_user: account.is_trial_user,
        }))
    }

    async fn list_purchases(
        &self,
        request: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        let req = request.into_inner();
        let by = convert::purchases_account(req.account)?;
        if let crate::ledger::AccountRef::Id(id) = &by {
            Span::current().record("account_id", id.as_str());
        }
        let page = convert::page_request(req.page_size, &req.page_token)?;
        let result = self.ledger.list_purchases(&by, &page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListPurchasesResponse {
            purchases: result.purchases.into_iter().map(convert::purchase).collect(),
            next_page_token: result.next_page_token.unwrap_or_default(),
        }))
    }
}
