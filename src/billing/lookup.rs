//! Which account a Stripe id belongs to, for operators searching by what Stripe's dashboard
//! shows: a Checkout Session, a PaymentIntent, or a Customer (through its subscriptions; the
//! console asks the ledger first for a Customer kept with a saved card).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{Billing, BillingError};
use crate::entities::{credit_purchase, subscription};

impl Billing {
    /// The account a `cs_…`, `pi_…` or `cus_…` id belongs to, if billing has seen it.
    pub(crate) async fn account_of_stripe_id(&self, id: &str) -> Result<Option<String>, BillingError> {
        let id = id.trim();
        let purchase = |column: credit_purchase::Column| {
            credit_purchase::Entity::find()
                .select_only()
                .column(credit_purchase::Column::AccountId)
                .filter(column.eq(id))
                .into_tuple::<String>()
                .one(&self.db)
        };
        let found = if id.starts_with("cs_") {
            purchase(credit_purchase::Column::StripeCheckoutSessionId).await?
        } else if id.starts_with("pi_") {
            purchase(credit_purchase::Column::StripePaymentIntentId).await?
        } else if id.starts_with("cus_") {
            subscription::Entity::find()
                .select_only()
                .column(subscription::Column::AccountId)
                .filter(subscription::Column::StripeCustomerId.eq(id))
                .into_tuple::<String>()
                .one(&self.db)
                .await?
        } else {
            None
        };
        Ok(found)
    }
}
