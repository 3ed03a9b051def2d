//! Connections under both servers: the gRPC listener's accept loop (TCP_NODELAY, TLS) and the
//! guard on every inbound HTTP/2 byte stream that keeps a graceful shutdown graceful.

pub mod h2_guard;
pub(crate) mod incoming;
pub(crate) mod io;

pub(crate) use incoming::Connections;
pub(crate) use io::{GuardedIo, LINGER, Lingering};
