//! Saved cards and off-session charges: the account's Stripe Customer, the PaymentIntent an
//! auto top-up creates (its attempt id as the Idempotency-Key, so a retry or a restart can
//! never charge twice), and finding a PaymentIntent again (by id, or by the attempt id in its
//! metadata when the answer to its creation was lost).

use std::collections::HashMap;

use stripe::{IdempotencyKey, RequestStrategy, StripeError as ApiError, StripeRequest};
use stripe_core::customer::CreateCustomer;
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, RetrievePaymentIntent, SearchPaymentIntent,
};
use stripe_shared::{ApiErrorsCode, ApiErrorsType, PaymentIntent, PaymentIntentStatus};

use super::{StripeError, StripeGateway, stripe_idempotency_key};

/// The metadata key that names a top-up's attempt on its PaymentIntent.
pub(crate) const ATTEMPT_METADATA: &str = "top_up_attempt_id";

/// One auto top-up's charge of the saved card.
#[derive(Debug)]
pub(crate) struct OffSessionCharge<'a> {
    /// Also the Idempotency-Key: one attempt, one PaymentIntent.
    pub attempt_id: &'a str,
    pub account_id: &'a str,
    pub pack_id: &'a str,
    pub credits: i64,
    pub customer_id: &'a str,
    pub payment_method_id: &'a str,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: &'a str,
}

/// Where a PaymentIntent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntentStatus {
    /// Paid: `payment_intent.succeeded` credits it.
    Succeeded,
    /// On its way (`processing`).
    Processing,
    /// The bank wants the customer (3-D Secure).
    RequiresAction,
    /// The card was declined (`requires_payment_method` after a confirmation).
    Declined,
    /// Canceled, or a state an off-session confirmation never leaves it in.
    Other,
}

impl IntentStatus {
    fn of(status: &PaymentIntentStatus) -> Self {
        match status {
            PaymentIntentStatus::Succeeded => Self::Succeeded,
            PaymentIntentStatus::Processing => Self::Processing,
            PaymentIntentStatus::RequiresAction | PaymentIntentStatus::RequiresConfirmation => {
                Self::RequiresAction
            }
            PaymentIntentStatus::RequiresPaymentMethod => Self::Declined,
            _ => Self::Other,
        }
    }
}

/// A PaymentIntent as the top-up worker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundIntent {
    pub id: String,
    pub status: IntentStatus,
    pub payment_method_id: Option<String>,
    pub customer_id: Option<String>,
    pub amount_received: i64,
    pub currency: String,
    pub metadata: HashMap<String, String>,
    /// Why the last attempt to pay it failed, when it did.
    pub last_error: Option<String>,
}

impl FoundIntent {
    fn of(intent: PaymentIntent) -> Self {
        Self {
            status: IntentStatus::of(&intent.status),
            payment_method_id: intent.payment_method.map(|m| m.id().to_string()),
            customer_id: intent.customer.map(|c| c.id().to_string()),
            amount_received: intent.amount_received,
            currency: intent.currency.to_string(),
            last_error: intent.last_payment_error.and_then(|e| e.message),
            metadata: intent.metadata,
            id: intent.id.to_string(),
        }
    }
}

/// What Stripe answered to an off-session charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChargeAnswer {
    /// The PaymentIntent exists (in `status`).
    Created(FoundIntent),
    /// HTTP 402 `authentication_required`: the bank wants the customer; nothing charged.
    RequiresAction {
        payment_intent_id: Option<String>,
        message: String,
    },
    /// HTTP 402 `card_error`: declined; nothing charged.
    Declined {
        payment_intent_id: Option<String>,
        message: String,
    },
    /// Stripe refused the request itself (another 4xx): the saved card or the price is unusable.
    Refused { message: String },
    /// 5xx, a timeout, a lost connection, an answer that cannot be read, a concurrent request
    /// with the same key: whether a PaymentIntent exists is unknown.
    Unknown { message: String },
}

impl StripeGateway {
    /// The account's Stripe Customer, created once: the Idempotency-Key is derived from the
    /// account, so a retry (or a race) gets the same Customer back.
    #[tracing::instrument(skip(self, email), err)]
    pub(crate) async fn create_customer(&self, account_id: &str, email: &str) -> Result<String, StripeError> {
        let client = self.client()?;
        let key = idempotency_key(&stripe_idempotency_key(account_id, "customer"))?;
        let customer = CreateCustomer::new()
            .email(email)
            .metadata(HashMap::from([("account_id".to_owned(), account_id.to_owned())]))
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(client)
            .await?;
        Ok(customer.id.to_string())
    }

    /// Charges the saved card for one top-up, off session and confirmed at once. Only a
    /// missing key is an error: every answer of Stripe's is one of `ChargeAnswer`.
    #[tracing::instrument(skip_all, fields(attempt_id = req.attempt_id, account_id = req.account_id), err)]
    pub(crate) async fn charge_off_session(
        &self,
        req: OffSessionCharge<'_>,
    ) -> Result<ChargeAnswer, StripeError> {
        let client = self.client()?;
        let currency = req
            .currency
            .parse::<stripe_types::Currency>()
            .map_err(|_| StripeError::Rejected {
                status: 400,
                message: format!("unknown currency {:?}", req.currency),
            })?;
        let metadata = HashMap::from([
            ("account_id".to_owned(), req.account_id.to_owned()),
            ("pack_id".to_owned(), req.pack_id.to_owned()),
            ("credits".to_owned(), req.credits.to_string()),
            (ATTEMPT_METADATA.to_owned(), req.attempt_id.to_owned()),
        ]);
        let sent = CreatePaymentIntent::new(req.amount, currency)
            .customer(req.customer_id)
            .payment_method(req.payment_method_id)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .confirm(true)
            .metadata(metadata)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(idempotency_key(req.attempt_id)?))
            .send(client)
            .await;
        Ok(match sent {
            Ok(intent) => ChargeAnswer::Created(FoundIntent::of(intent)),
            Err(ApiError::Stripe(api, 402)) if api.type_ == ApiErrorsType::CardError => {
                let payment_intent_id = api.payment_intent.as_ref().map(|p| p.id.to_string());
                let message = api.message.unwrap_or_else(|| "card error".to_owned());
                let needs_customer = api.code == Some(ApiErrorsCode::AuthenticationRequired)
                    || api
                        .payment_intent
                        .as_ref()
                        .is_some_and(|p| IntentStatus::of(&p.status) == IntentStatus::RequiresAction);
                if needs_customer {
                    ChargeAnswer::RequiresAction {
                        payment_intent_id,
                        message,
                    }
                } else {
                    ChargeAnswer::Declined {
                        payment_intent_id,
                        message,
                    }
                }
            }
            // A concurrent request with the same key: the other one's answer decides.
            Err(ApiError::Stripe(api, 409)) => ChargeAnswer::Unknown {
                message: api.message.unwrap_or_else(|| "idempotency conflict".to_owned()),
            },
            Err(ApiError::Stripe(api, status)) if (400..500).contains(&status) => ChargeAnswer::Refused {
                message: format!(
                    "HTTP {status}: {}",
                    api.message.unwrap_or_else(|| "refused".to_owned())
                ),
            },
            Err(other) => ChargeAnswer::Unknown {
                message: StripeError::from(other).to_string(),
            },
        })
    }

    /// The PaymentIntent of a top-up attempt, by the attempt id in its metadata; `None` when
    /// Stripe's search shows none. Search lags writes by up to a minute: callers wait that long
    /// after the charge before trusting a `None`.
    #[tracing::instrument(skip(self), err)]
    pub(crate) async fn find_top_up_intent(
        &self,
        attempt_id: &str,
    ) -> Result<Option<FoundIntent>, StripeError> {
        let client = self.client()?;
        // Attempt ids are ours (`topup_` and hex): nothing in them needs quoting.
        let query = format!("metadata['{ATTEMPT_METADATA}']:'{attempt_id}'");
        let found = SearchPaymentIntent::new(query).limit(10).send(client).await?;
        Ok(found
            .data
            .into_iter()
            .find(|intent| intent.metadata.get(ATTEMPT_METADATA).map(String::as_str) == Some(attempt_id))
            .map(FoundIntent::of))
    }

    /// One PaymentIntent.
    #[tracing::instrument(skip(self), err)]
    pub(crate) async fn payment_intent(&self, id: &str) -> Result<FoundIntent, StripeError> {
        let client = self.client()?;
        let intent = RetrievePaymentIntent::new(id).send(client).await?;
        Ok(FoundIntent::of(intent))
    }
}

fn idempotency_key(key: &str) -> Result<IdempotencyKey, StripeError> {
    IdempotencyKey::new(key).map_err(|err| StripeError::Rejected {
        status: 400,
        message: err.to_string(),
    })
}
