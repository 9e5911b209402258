//! TLS identities and trust, read from PEM files when a server or client
//! starts: the server's certificate and key for `wss://`, and the extra
//! roots a client trusts beside the public web's.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
#[cfg(feature = "client")]
use rustls::{ClientConfig, RootCertStore};
#[cfg(feature = "client")]
use tokio_tungstenite::Connector;
#[cfg(feature = "server")]
use {crate::config::TlsConfig, rustls::ServerConfig, tokio_rustls::TlsAcceptor};

use crate::error::Error;

fn invalid(field: &str, path: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("{field}: {path}: {why}"))
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(field, path, e))?;
    if certs.is_empty() {
        return Err(invalid(field, path, "no certificate in the file"));
    }
    Ok(certs)
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(feature = "server")]
/// An acceptor for `tls`'s certificate chain and key, with rustls's safe
/// defaults (TLS 1.2 and 1.3, ring's cipher suites) and HTTP/1.1 over ALPN.
pub(crate) fn server_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, Error> {
    let chain = certificates("tls.cert_path", &tls.cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_path).map_err(|e| invalid("tls.key_path", &tls.key_path, e))?;
    let mut config = ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| {
            invalid(
                "tls.key_path",
                &tls.key_path,
                format_args!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(feature = "client")]
/// The public web roots plus the certificates in `ca_path`, for a client
/// whose server has a private CA or a self-signed certificate. `None` without
/// a `ca_path`: the WebSocket library's own public-roots default applies.
pub(crate) fn client_connector(ca_path: Option<&str>) -> Result<Option<Connector>, Error> {
    let Some(path) = ca_path else {
        return Ok(None);
    };
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in certificates("ca_path", path)? {
        roots.add(cert).map_err(|e| invalid("ca_path", path, e))?;
    }
    let config = ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ca_path", path, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Connector::Rustls(Arc::new(config))))
}
