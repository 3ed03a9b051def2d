//! The gRPC side: `credits.v1.CreditsService`, the standard health service and reflection.

pub mod auth;
pub mod convert;
pub mod grace;
pub mod guard;
pub mod service;
pub mod status;
pub mod tls;

/// Generated protobuf and tonic code for `credits.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("credits.v1");

    /// Served by gRPC reflection, so `grpcurl` needs no proto file.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("credits_descriptor");
}

pub use service::CreditsApi;
