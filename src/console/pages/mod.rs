//! The console's pages, one file per concern; `layout` holds the shell every page shares.

pub(crate) mod account;
pub(crate) mod actions;
pub(crate) mod audit;
pub(crate) mod events;
pub(crate) mod layout;
pub(crate) mod notifications;
pub(crate) mod search;
