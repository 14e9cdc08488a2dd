//! The pooled upstream client: HTTP/1.1 and HTTP/2, plain or TLS (rustls), keep-alive.

use std::sync::{Arc, OnceLock};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::body::ProxyBody;
use crate::config::{UpstreamConfig, UpstreamProtocol};

/// A pooled client for one upstream's targets.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// The process's rustls crypto provider (ring), installed once.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// System trust roots, loaded once and only when an `https://` target exists.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "while loading system CA certificates");
        }
        let (added, _) = store.add_parsable_certificates(found.certs);
        tracing::debug!(added, "system CA certificates loaded");
        store
    })
}

fn tls_config(cfg: &UpstreamConfig) -> Result<rustls::ClientConfig, String> {
    let needs_tls = cfg.targets.iter().any(|t| t.starts_with("https://"));
    let mut roots = if needs_tls {
        system_roots().clone()
    } else {
        RootCertStore::empty()
    };
    if let Some(ca) = cfg.tls.as_ref().and_then(|t| t.ca.as_ref()) {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("tls.ca: cannot read {ca}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.ca: invalid PEM in {ca}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("tls.ca: no certificate in {ca}"));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("tls.ca: unusable certificate in {ca}: {e}"))?;
        }
    }
    // ALPN is set by the connector builder from the enabled protocols.
    Ok(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Build the client for an upstream (errors name the config field).
pub fn build_client(cfg: &UpstreamConfig) -> Result<UpstreamClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.timeouts.connect.0));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));

    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(cfg)?)
        .https_or_http();
    let builder = match cfg.tls.as_ref().and_then(|t| t.server_name.clone()) {
        Some(name) => {
            let server_name = ServerName::try_from(name.clone())
                .map_err(|_| format!("tls.server_name: {name:?} is not a valid server name"))?;
            builder
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
        }
        None => builder,
    };
    let connector = match cfg.protocol {
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::Auto => builder.enable_http1().enable_http2().wrap_connector(http),
        UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(http),
    };

    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.timeouts.idle.0)
        .pool_max_idle_per_host(256)
        .set_host(false)
        .http2_only(cfg.protocol == UpstreamProtocol::Http2);
    Ok(client.build(connector))
}
