//! Operations that run beside the request paths: reconciliation with Stripe, job leases that
//! keep periodic work to one replica at a time, the scheduler of those jobs, and the import of
//! accounts and purchases from the Django app.

pub mod import;
pub mod jobs;
pub mod reconcile;
pub mod scheduler;

pub use reconcile::{ReconcileReport, reconcile};
