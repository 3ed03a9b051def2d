//! TLS and mTLS for the gRPC listener, from PEM files (rustls with ring, through tonic).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsSettings;

/// A PEM file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {var} file {path}: {source}")]
pub struct TlsError {
    pub var: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        var,
        path: path.to_owned(),
        source,
    })
}

/// The server identity, plus the client CA when callers must present certificates (mTLS).
pub fn server_config(settings: &TlsSettings) -> Result<ServerTlsConfig, TlsError> {
    let cert = read("GRPC_TLS_CERT", &settings.cert)?;
    let key = read("GRPC_TLS_KEY", &settings.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &settings.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("GRPC_TLS_CLIENT_CA", ca)?));
    }
    Ok(config)
}
