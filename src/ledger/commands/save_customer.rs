//! SaveCustomer: records the account's Stripe Customer, once. PurchaseCredits with
//! `save_payment_method` creates the Customer (its Idempotency-Key derived from the account)
//! and records it here before the Checkout Session names it; a Customer recorded first wins,
//! so every later session names the same one.

use super::{Command, Context, EntryIds, LockSet, Reply, Step};
use crate::ledger::{error::LedgerError, types::AccountId};

#[derive(Debug, Clone)]
pub(crate) struct SaveCustomer {
    pub account_id: AccountId,
    pub customer_id: String,
}

/// The account's Customer after the command: the one recorded first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CustomerSaved {
    pub customer_id: String,
}

impl Reply for CustomerSaved {}

impl Command for SaveCustomer {
    type Reply = CustomerSaved;
    type Draft = CustomerSaved;
    const NAME: &'static str = "save_customer";

    fn lock(&self, set: &mut LockSet) {
        set.ids.push(self.account_id.as_str().to_owned());
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<CustomerSaved>, LedgerError> {
        let book = cx.book(self.account_id.as_str())?;
        if book.account.settings.stripe_customer_id.is_none() {
            let customer = self.customer_id.clone();
            book.change_settings(|s| s.stripe_customer_id = Some(customer));
        }
        Ok(Step::Draft(CustomerSaved {
            customer_id: book
                .account
                .settings
                .stripe_customer_id
                .clone()
                .unwrap_or_else(|| self.customer_id.clone()),
        }))
    }

    fn answer(draft: CustomerSaved, _: &EntryIds) -> Result<CustomerSaved, LedgerError> {
        Ok(draft)
    }
}
