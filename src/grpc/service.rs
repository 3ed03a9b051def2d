//! Thin RPC handlers: parse → call the ledger → convert; and the list of their names.

use tonic::{Request, Response, Status};
use tracing::Span;

use super::{convert, pb, status::to_status};
use crate::ledger::Ledger;

/// The RPCs of `credits.v1.CreditsService`, the only method names metrics, logs and spans
/// carry: tonic exposes no such list, and a name taken from the request path would let any
/// caller mint label values. A unit test keeps it equal to the proto.
pub const RPC_METHODS: [&str; 4] = [
    "ListCreditPacks",
    "PurchaseCredits",
    "GetBalance",
    "ListPurchases",
];

/// What any other path under the service (or a path of another service) is called.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The method a request path names when it is one of `RPC_METHODS`; `unknown` otherwise.
pub fn rpc_method(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(pb::credits_service_server::SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|name| RPC_METHODS.into_iter().find(|known| *known == name))
        .unwrap_or(UNKNOWN_METHOD)
}

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
