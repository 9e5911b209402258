//! The server's TLS identity, read from PEM files when the server starts.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::Error;

/// An acceptor for `tls`'s certificate chain and key, with rustls's safe
/// defaults (TLS 1.2 and 1.3, ring's cipher suites) and HTTP/1.1 over ALPN.
pub fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, Error> {
    let invalid = |field: &str, path: &str, why: String| Error::InvalidConfig(format!("tls.{field}: {path}: {why}"));
    let chain = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid("cert_path", &tls.cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(
            "cert_path",
            &tls.cert_path,
            "no certificate in the file".into(),
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(&tls.key_path).map_err(|e| invalid("key_path", &tls.key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| invalid("key_path", &tls.key_path, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
