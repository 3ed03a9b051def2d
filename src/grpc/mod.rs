//! The gRPC side: `credits.v1.CreditsService`, the standard health service and reflection.

pub(crate) mod auth;
pub(crate) mod convert;
pub(crate) mod grace;
pub(crate) mod guard;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod subscriptions;
pub(crate) mod tls;

/// Generated protobuf and tonic code for `credits.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("credits.v1");

    /// Served by gRPC reflection, so `grpcurl` needs no proto file.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("credits_descriptor");
}

pub(crate) use service::CreditsApi;
