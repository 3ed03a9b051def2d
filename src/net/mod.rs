//! Connections under both servers: the gRPC listener's accept loop (TCP_NODELAY, TLS) and the
//! guard on every inbound HTTP/2 byte stream that keeps a graceful shutdown graceful.

pub mod h2_guard;
pub mod incoming;
pub mod io;

pub use incoming::Connections;
pub use io::{GuardedIo, LINGER, Lingering};
