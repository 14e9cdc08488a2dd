//! TLS for the proxy listener (rustls, ALPN `h2` and `http/1.1`).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

use super::client::crypto_provider;
use crate::config::{ConfigIssue, TlsConfig};

/// Load the certificate chain and key and build an acceptor; errors name the config field.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, ConfigIssue> {
    let issue = |field: &str, message: String| ConfigIssue {
        path: format!("tls.{field}"),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| issue("cert", format!("cannot read {}: {e}", cfg.cert)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| issue("cert", format!("invalid PEM in {}: {e}", cfg.cert)))?;
    if certs.is_empty() {
        return Err(issue("cert", format!("no certificate in {}", cfg.cert)));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        issue(
            "key",
            format!("cannot read a private key from {}: {e}", cfg.key),
        )
    })?;
    let mut server = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| issue("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| issue("key", format!("does not match the certificate: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
