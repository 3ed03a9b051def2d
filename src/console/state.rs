//! What every console handler shares: the sign-in gate, the signer, and the domain services
//! the pages read and act through.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use super::{audit::AuditLog, gate::Gate, session::Signer};
use crate::{
    billing::{Billing, Fulfilment},
    config::ConsoleSettings,
    event_store::EventLog,
    ledger::Ledger,
    notify::Notifications,
};

/// The ledger as the service runs it.
type AppLedger = Ledger<Fulfilment>;

/// The domain services the console reads and acts through.
pub(crate) struct ConsoleServices {
    pub ledger: AppLedger,
    pub billing: Billing,
    pub events: EventLog,
    pub notifications: Notifications,
    /// The read pool, for the audit log.
    pub db: DatabaseConnection,
}

/// What every console handler gets.
#[derive(Clone)]
pub(crate) struct ConsoleState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub gate: Gate,
    pub signer: Signer,
    pub ledger: AppLedger,
    pub billing: Billing,
    pub events: EventLog,
    pub notifications: Notifications,
    pub audit: AuditLog,
}

impl ConsoleState {
    pub(crate) fn new(settings: ConsoleSettings, services: ConsoleServices) -> Self {
        let signer = Signer::new(settings.session_secret.clone());
        Self {
            inner: Arc::new(Inner {
                gate: Gate::new(settings),
                signer,
                audit: AuditLog::new(services.db),
                ledger: services.ledger,
                billing: services.billing,
                events: services.events,
                notifications: services.notifications,
            }),
        }
    }
}
