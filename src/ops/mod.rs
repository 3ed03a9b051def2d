//! Operations that run beside the request paths: reconciliation with Stripe, job leases that
//! keep periodic work to one replica at a time, and the scheduler of those jobs.

pub mod jobs;
pub mod reconcile;
pub mod scheduler;

pub use reconcile::{ReconcileReport, reconcile};
