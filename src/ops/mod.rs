//! Operations that run beside the request paths: reconciliation with Stripe, job leases that
//! keep periodic work to one replica at a time, the scheduler of those jobs, and the import of
//! account and purchase files from the Django app (`import_files`).

pub(crate) mod import_files;
pub mod jobs;
pub(crate) mod reconcile;
pub(crate) mod scheduler;

pub(crate) use reconcile::reconcile;
