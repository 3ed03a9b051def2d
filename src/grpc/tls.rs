//! TLS and mTLS for the gRPC listener, from PEM files: a rustls (ring) server configuration that
//! `net::Incoming` handshakes with, so the HTTP/2 guard sees the plaintext frames.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::config::TlsSettings;

/// A PEM file that could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {var} file {path}")]
    Read {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{var} file {path}: {reason}")]
    Invalid {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
}

struct PemFile<'a> {
    var: &'static str,
    path: &'a Path,
    bytes: Vec<u8>,
}

impl<'a> PemFile<'a> {
    fn read(var: &'static str, path: &'a Path) -> Result<Self, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            var,
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { var, path, bytes })
    }

    fn invalid(&self, reason: impl std::fmt::Display) -> TlsError {
        TlsError::Invalid {
            var: self.var,
            path: self.path.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.invalid(format!("not PEM certificates ({err})")))?;
        if certs.is_empty() {
            return Err(self.invalid("no certificate in it"));
        }
        Ok(certs)
    }
}

/// The server identity, plus the client CA when callers must present certificates (mTLS);
/// ALPN offers HTTP/2 only, as gRPC needs.
pub(crate) fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let cert = PemFile::read("GRPC_TLS_CERT", &settings.cert)?;
    let key = PemFile::read("GRPC_TLS_KEY", &settings.key)?;
    let chain = cert.certificates()?;
    let private_key = PrivateKeyDer::from_pem_slice(&key.bytes)
        .map_err(|err| key.invalid(format!("no private key ({err})")))?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| cert.invalid(err))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca = PemFile::read("GRPC_TLS_CLIENT_CA", path)?;
            let mut roots = RootCertStore::empty();
            for certificate in ca.certificates()? {
                roots.add(certificate).map_err(|err| ca.invalid(err))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| ca.invalid(err))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|err| key.invalid(format!("does not match {}: {err}", cert.path.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
