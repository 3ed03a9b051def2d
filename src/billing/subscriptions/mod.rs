//! Subscriptions as billing keeps them: Stripe's subscription statuses, what subscription and
//! invoice events say, and the `subscriptions` and `subscription_invoices` tables. Subscribe and
//! the other RPCs are in `subscribe`; the webhook's events are applied by fulfilment.
//!
//! - `types`: statuses, event facts, the rows as domain types.
//! - `store`: `subscriptions` and `subscription_invoices`.

pub(crate) mod store;
mod types;

pub(crate) use types::{
    InvoiceFacts, InvoiceStatus, Subscription, SubscriptionEventKind, SubscriptionFacts, SubscriptionInvoice,
    SubscriptionStatus, SubscriptionView,
};
