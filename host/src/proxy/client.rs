//! The upstream client: HTTP/1.1 and HTTP/2, plain or TLS (rustls), keep-alive.
//!
//! Each target has its own [`Pool`]: LIFO lists of idle HTTP/1.1 connections and at most one
//! shared HTTP/2 connection. A body-less request to an `http://` target takes the lean path of
//! [`super::h1`]: a raw connection the request's task writes and reads itself. Other requests
//! use hyper's `http1::SendRequest` handles (their connection tasks spawned once per
//! connection). A request checks a ready connection out, sends on it, and
//! the response body puts the connection back when it ends: no dispatch task between the
//! handler and the connection, no pool-wide map or lock on the way. Idle connections expire
//! after `timeouts.idle` (a reaper per pool, started with its first idle connection).

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::time::Instant;
use tower::Service as _;

use super::h1;
use crate::body::ProxyBody;
use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::error::BoxError;

/// Most idle HTTP/1.1 connections kept per target.
const MAX_IDLE_PER_TARGET: usize = 256;

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

type Connector = HttpsConnector<HttpConnector>;

/// The client of one upstream: how to connect (TCP, TLS, ALPN) and which protocol to speak.
/// Connections live in the per-target [`Pool`]s it hands out.
pub struct UpstreamClient {
    connector: Connector,
    protocol: UpstreamProtocol,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    /// `timeouts.connect`: bounds the TCP connect and the TLS handshake together.
    connect_timeout: Duration,
    /// Pools for requests addressed by URI ([`UpstreamClient::request`]: health checks, key
    /// sets), by `scheme://authority`.
    by_origin: Mutex<HashMap<(Scheme, Authority), Arc<Pool>>>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("protocol", &self.protocol)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Build the client for an upstream (errors name the config field).
pub fn build_client(cfg: &UpstreamConfig) -> Result<UpstreamClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.timeouts.connect.0));
    http.set_keepalive(Some(Duration::from_secs(60)));

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
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new());
    Ok(UpstreamClient {
        connector,
        protocol: cfg.protocol,
        h1: http1::Builder::new(),
        h2,
        idle_timeout: cfg.timeouts.idle.0,
        connect_timeout: cfg.timeouts.connect.0,
        by_origin: Mutex::new(HashMap::new()),
    })
}

/// A body-less request for the lean path, borrowed from its caller.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// Path and query (origin form).
    pub target: &'a str,
    /// Headers to send, hop-by-hop ones already removed.
    pub headers: &'a http::HeaderMap,
    /// Sent as `Host` instead of the one in `headers` (the target's own name).
    pub host: Option<&'a http::HeaderValue>,
}

/// Why a request to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (TCP connect, its timeout, TLS handshake).
    #[error("cannot connect to the upstream")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or the response read.
    #[error("upstream connection failed")]
    Protocol(#[source] BoxError),
    /// The request addresses no upstream (no scheme or authority).
    #[error("request URI has no scheme and authority")]
    NoOrigin,
}

impl ClientError {
    /// Whether the request never reached the upstream because no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect(_))
    }
}

/// Connections to one target: idle HTTP/1.1 connections and the shared HTTP/2 one.
pub struct Pool {
    scheme: Scheme,
    authority: Authority,
    idle_timeout: Duration,
    idle: IdleList<http1::SendRequest<ProxyBody>>,
    /// Idle connections of the lean path (plain HTTP/1.1, body-less requests).
    raw: IdleList<h1::Conn>,
    h2: Mutex<Option<Shared>>,
    reaper: AtomicBool,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Idle connections of one kind, the most recently used last.
struct IdleList<C>(Mutex<Vec<Idle<C>>>);

struct Idle<C> {
    conn: C,
    since: Instant,
}

impl<C> IdleList<C> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle<C>>> {
        // A poisoned lock only means another thread panicked mid-push of plain data.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection that is fresh (idle at most `timeout`) and `usable`;
    /// the unusable ones met on the way are dropped.
    fn take(&self, timeout: Duration, usable: impl Fn(&C) -> bool) -> Option<C> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(c) = idle.pop() {
            if now.saturating_duration_since(c.since) > timeout {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if usable(&c.conn) {
                return Some(c.conn);
            }
        }
        None
    }

    /// Keep `conn` unless the list is full; whether it was kept.
    fn put(&self, conn: C) -> bool {
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE_PER_TARGET {
            return false;
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        true
    }

    /// Drop the connections idle longer than `timeout` or no longer `usable` (closed, outside
    /// the lock).
    fn prune(&self, now: Instant, timeout: Duration, usable: impl Fn(&C) -> bool) {
        let stale: Vec<Idle<C>> = {
            let mut idle = self.lock();
            let (keep, stale) = std::mem::take(&mut *idle).into_iter().partition(|c| {
                usable(&c.conn) && now.saturating_duration_since(c.since) <= timeout
            });
            *idle = keep;
            stale
        };
        drop(stale);
    }
}

struct Shared {
    tx: http2::SendRequest<ProxyBody>,
    used: Instant,
}

/// A new connection, by the protocol it speaks.
enum Fresh {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Pool {
    fn lock_h2(&self) -> std::sync::MutexGuard<'_, Option<Shared>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle HTTP/1.1 connections now (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().len() + self.raw.lock().len()
    }

    /// The most recently used idle raw connection that is still open and fresh.
    fn checkout_raw(&self) -> Option<h1::Conn> {
        self.raw.take(self.idle_timeout, h1::Conn::idle_and_open)
    }

    /// Keep a raw connection whose last response ended cleanly.
    pub(crate) fn checkin_raw(self: &Arc<Self>, conn: h1::Conn) {
        if self.raw.put(conn) {
            self.start_reaper();
        }
    }

    /// The most recently used idle connection that is still open and fresh.
    fn checkout(&self) -> Option<http1::SendRequest<ProxyBody>> {
        self.idle
            .take(self.idle_timeout, http1::SendRequest::is_ready)
    }

    /// Put a connection back once it can take the next request.
    fn checkin(self: &Arc<Self>, mut tx: http1::SendRequest<ProxyBody>) {
        if tx.is_ready() {
            self.insert(tx);
            return;
        }
        if tx.is_closed() {
            return;
        }
        // Not wanting a request yet (a request body still streaming, or its task has not run
        // since the response ended): wait for it off the request's path.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::downgrade(self);
        rt.spawn(async move {
            if tx.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.insert(tx);
            }
        });
    }

    fn insert(self: &Arc<Self>, tx: http1::SendRequest<ProxyBody>) {
        if self.idle.put(tx) {
            self.start_reaper();
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<ProxyBody>> {
        let mut h2 = self.lock_h2();
        let shared = h2.as_mut()?;
        if shared.tx.is_closed() {
            *h2 = None;
            return None;
        }
        shared.used = Instant::now();
        Some(shared.tx.clone())
    }

    fn set_h2(&self, tx: &http2::SendRequest<ProxyBody>) {
        *self.lock_h2() = Some(Shared {
            tx: tx.clone(),
            used: Instant::now(),
        });
    }

    /// Drop idle connections older than the idle timeout and closed ones.
    fn prune(&self) {
        let now = Instant::now();
        self.idle
            .prune(now, self.idle_timeout, |tx| !tx.is_closed());
        self.raw
            .prune(now, self.idle_timeout, h1::Conn::idle_and_open);
        let expired = |since: Instant| now.saturating_duration_since(since) > self.idle_timeout;
        let mut h2 = self.lock_h2();
        if h2
            .as_ref()
            .is_some_and(|s| s.tx.is_closed() || expired(s.used))
        {
            *h2 = None;
        }
    }

    /// One task per pool, for as long as the pool exists.
    fn start_reaper(self: &Arc<Self>) {
        // Called on every check-in: a plain load first, the swap only the first time.
        if self.reaper.load(Ordering::Relaxed) || self.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.reaper.store(false, Ordering::Relaxed);
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(50));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.prune();
            }
        });
    }
}

impl UpstreamClient {
    /// A pool for the target at `scheme://authority`.
    pub fn pool(&self, scheme: &Scheme, authority: &Authority) -> Arc<Pool> {
        Arc::new(Pool {
            scheme: scheme.clone(),
            authority: authority.clone(),
            idle_timeout: self.idle_timeout,
            idle: IdleList::new(),
            raw: IdleList::new(),
            h2: Mutex::new(None),
            reaper: AtomicBool::new(false),
        })
    }

    /// Send a request with an absolute URI (`scheme://authority/path`), on a connection to
    /// that origin. For health checks and other requests outside the datapath.
    pub async fn request(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        let (Some(scheme), Some(authority)) = (req.uri().scheme(), req.uri().authority()) else {
            return Err(ClientError::NoOrigin);
        };
        let pool = {
            let mut pools = self.by_origin.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .entry((scheme.clone(), authority.clone()))
                .or_insert_with(|| self.pool(scheme, authority))
                .clone()
        };
        self.send(&pool, req).await
    }

    /// Send a request to `pool`'s target. The URI may be in origin form (`/path?query`): the
    /// target's scheme and authority are added where the protocol needs them (HTTP/2).
    pub async fn send(
        &self,
        pool: &Arc<Pool>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        if self.takes_lean_path(pool, req.body().is_end_stream(), req.headers()) {
            let (parts, _empty) = req.into_parts();
            let out = Outgoing {
                method: &parts.method,
                target: parts.uri.path_and_query().map_or("/", PathAndQuery::as_str),
                headers: &parts.headers,
                host: None,
            };
            return self.send_lean(pool, &out).await;
        }
        loop {
            // An HTTP/2 connection, when the target speaks it, carries everything.
            if let Some(mut tx) = pool.shared_h2() {
                absolute_form(&mut req, pool);
                match tx.try_send_request(req).await {
                    Ok(resp) => return Ok(resp.map(UpstreamBody::plain)),
                    Err(mut e) => match e.take_message() {
                        // Closed before the request went out: forget it and go on.
                        Some(back) => {
                            pool.prune();
                            req = back;
                            continue;
                        }
                        None => return Err(ClientError::Protocol(e.into_error().into())),
                    },
                }
            }
            if self.protocol != UpstreamProtocol::Http2
                && let Some(mut tx) = pool.checkout()
            {
                origin_form(&mut req);
                match tx.try_send_request(req).await {
                    Ok(resp) => return Ok(pooled_response(resp, pool, tx)),
                    Err(mut e) => match e.take_message() {
                        // The connection closed while idle: the request never left, try the
                        // next one (or a new connection).
                        Some(back) => {
                            req = back;
                            continue;
                        }
                        None => return Err(ClientError::Protocol(e.into_error().into())),
                    },
                }
            }
            // Boxed: the connect path (TCP, TLS, handshakes) is a large future that every
            // request's future would otherwise carry, and copy, for the rare new connection.
            return match Box::pin(self.connect(pool)).await? {
                Fresh::H1(mut tx) => {
                    origin_form(&mut req);
                    match tx.try_send_request(req).await {
                        Ok(resp) => Ok(pooled_response(resp, pool, tx)),
                        Err(e) => Err(ClientError::Protocol(e.into_error().into())),
                    }
                }
                Fresh::H2(mut tx) => {
                    pool.set_h2(&tx);
                    absolute_form(&mut req, pool);
                    match tx.try_send_request(req).await {
                        Ok(resp) => Ok(resp.map(UpstreamBody::plain)),
                        Err(e) => Err(ClientError::Protocol(e.into_error().into())),
                    }
                }
            };
        }
    }

    /// Whether a request goes on the lean path ([`UpstreamClient::send_lean`]): a body-less
    /// request without `Upgrade` to a plain-HTTP target that may speak HTTP/1.1.
    pub fn takes_lean_path(&self, pool: &Pool, body_done: bool, headers: &http::HeaderMap) -> bool {
        body_done
            && pool.scheme == Scheme::HTTP
            && self.protocol != UpstreamProtocol::Http2
            && !headers.contains_key(http::header::UPGRADE)
    }

    /// The lean path: a body-less request on a raw connection, written and read by this task
    /// from the caller's borrowed request (nothing is copied for a retry).
    pub async fn send_lean(
        &self,
        pool: &Arc<Pool>,
        out: &Outgoing<'_>,
    ) -> Result<Response<UpstreamBody>, ClientError> {
        // A reused connection the upstream closed as the request went out received nothing:
        // an idempotent request goes again on the next (or a new) connection.
        let may_resend = matches!(
            *out.method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::OPTIONS
                | http::Method::PUT
                | http::Method::DELETE
                | http::Method::TRACE
        );
        loop {
            let (conn, reused) = match pool.checkout_raw() {
                Some(conn) => (conn, true),
                None => {
                    let conn = Box::pin(h1::Conn::connect(&pool.authority, self.connect_timeout))
                        .await
                        .map_err(|e| ClientError::Connect(e.into()))?;
                    (conn, false)
                }
            };
            match conn.request(out, &pool.authority).await {
                Ok((head, body)) => {
                    let body = UpstreamBody {
                        inner: Inner::Raw(body.attach(pool)),
                    };
                    return Ok(head.map(|()| body));
                }
                Err(e) if reused && may_resend && e.nothing_received() => continue,
                Err(e) => return Err(ClientError::Protocol(e.into())),
            }
        }
    }

    /// Open a connection to the pool's target and spawn its task.
    async fn connect(&self, pool: &Pool) -> Result<Fresh, ClientError> {
        let dst = Uri::builder()
            .scheme(pool.scheme.clone())
            .authority(pool.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ClientError::Connect(e.into()))?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(ClientError::Connect)?;
        // The connector's own timeout covers the TCP connect only; this one also bounds a TLS
        // handshake that never finishes.
        let io = match tokio::time::timeout(self.connect_timeout, connector.call(dst)).await {
            Ok(io) => io.map_err(ClientError::Connect)?,
            Err(_) => {
                return Err(ClientError::Connect(
                    "connect timed out (TCP connect and TLS handshake)".into(),
                ));
            }
        };
        let h2 = self.protocol == UpstreamProtocol::Http2 || io.connected().is_negotiated_h2();
        if h2 {
            let (mut tx, conn) = self
                .h2
                .handshake(io)
                .await
                .map_err(|e| ClientError::Protocol(e.into()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            tx.ready()
                .await
                .map_err(|e| ClientError::Protocol(e.into()))?;
            Ok(Fresh::H2(tx))
        } else {
            let (tx, conn) = self
                .h1
                .handshake(io)
                .await
                .map_err(|e| ClientError::Protocol(e.into()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Ok(Fresh::H1(tx))
        }
    }
}

/// `/path?query` only, as HTTP/1.1 sends it to an origin server.
fn origin_form(req: &mut Request<ProxyBody>) {
    let uri = req.uri_mut();
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(pq);
}

/// `scheme://authority/path?query`, as HTTP/2 needs it (its `:scheme` and `:authority`).
fn absolute_form(req: &mut Request<ProxyBody>, pool: &Pool) {
    let uri = req.uri_mut();
    if uri.scheme().is_some() && uri.authority().is_some() {
        return;
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(pool.scheme.clone());
    parts.authority = Some(pool.authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Scheme, authority and path are all set: building cannot fail.
    if let Ok(u) = Uri::from_parts(parts) {
        *uri = u;
    }
}

fn pooled_response(
    resp: Response<Incoming>,
    pool: &Arc<Pool>,
    tx: http1::SendRequest<ProxyBody>,
) -> Response<UpstreamBody> {
    resp.map(|body| {
        let mut body = UpstreamBody {
            inner: Inner::Hyper {
                body,
                back: Some((pool.clone(), tx)),
            },
        };
        // A body-less response (HEAD, 204, 304, `Content-Length: 0`) frees the connection
        // at once.
        body.checkin_if_done();
        body
    })
}

/// An upstream response body. An HTTP/1.1 connection goes back to its pool as soon as the body
/// has been read to its end (the frame that ends it, or a body that had none); a body dropped
/// before its end closes the connection with it.
pub struct UpstreamBody {
    inner: Inner,
}

enum Inner {
    /// From hyper's client (HTTP/2, TLS, requests with bodies, upgrades).
    Hyper {
        body: Incoming,
        back: Option<(Arc<Pool>, http1::SendRequest<ProxyBody>)>,
    },
    /// From the lean path.
    Raw(h1::RawBody),
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}

impl UpstreamBody {
    fn plain(body: Incoming) -> Self {
        Self {
            inner: Inner::Hyper { body, back: None },
        }
    }

    /// The body as hyper gave it, without returning the connection to a pool (an upgraded
    /// connection is no longer HTTP). `None` for a response of the lean path, which never
    /// carries an upgrade.
    pub fn into_inner(self) -> Option<Incoming> {
        match self.inner {
            Inner::Hyper { body, .. } => Some(body),
            Inner::Raw(_) => None,
        }
    }

    fn checkin_if_done(&mut self) {
        if let Inner::Hyper { body, back } = &mut self.inner
            && body.is_end_stream()
            && let Some((pool, tx)) = back.take()
        {
            pool.checkin(tx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let (body, back) = match &mut this.inner {
            Inner::Raw(raw) => return Pin::new(raw).poll_frame(cx),
            Inner::Hyper { body, back } => (body, back),
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.checkin_if_done(),
            Poll::Ready(None) => {
                if let Some((pool, tx)) = back.take() {
                    pool.checkin(tx);
                }
            }
            Poll::Ready(Some(Err(_))) => *back = None,
            Poll::Pending => {}
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::Raw(raw) => raw.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::Raw(raw) => raw.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP/1.1 upstream on port 0 answering every request with `hello`; counts the
    /// connections it accepted and how many are open. `close_after` closes each connection
    /// right after its first response (without saying so).
    async fn upstream(
        close_after: bool,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, op) = (accepted.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                op.fetch_add(1, Ordering::SeqCst);
                let op = op.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            if s.write_all(head).await.is_err() {
                                break;
                            }
                        }
                        if close_after {
                            break;
                        }
                    }
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, accepted, open)
    }

    fn client(idle: &str) -> UpstreamClient {
        let cfg: UpstreamConfig = serde_json::from_value(serde_json::json!({
            "name": "u", "targets": ["127.0.0.1:1"], "timeouts": { "idle": idle }
        }))
        .expect("config");
        build_client(&cfg).expect("client")
    }

    async fn get(c: &UpstreamClient, pool: &Arc<Pool>) -> Bytes {
        let req = Request::get("/x")
            .header(http::header::HOST, "upstream")
            .body(crate::body::empty())
            .expect("request");
        let resp = c.send(pool, req).await.expect("response");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn one_connection_serves_sequential_requests() {
        let (addr, accepted, _) = upstream(false).await;
        let c = client("60s");
        let pool = c.pool(&Scheme::HTTP, &addr.to_string().parse().expect("authority"));
        for _ in 0..20 {
            assert_eq!(&get(&c, &pool).await[..], b"hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        eventually("the connection back in the pool", || pool.idle_count() == 1).await;
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced() {
        let (addr, accepted, _) = upstream(true).await;
        let c = client("60s");
        let pool = c.pool(&Scheme::HTTP, &addr.to_string().parse().expect("authority"));
        for _ in 0..5 {
            assert_eq!(&get(&c, &pool).await[..], b"hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, accepted, open) = upstream(false).await;
        let c = client("200ms");
        let pool = c.pool(&Scheme::HTTP, &addr.to_string().parse().expect("authority"));
        assert_eq!(&get(&c, &pool).await[..], b"hello");
        eventually("the connection back in the pool", || pool.idle_count() == 1).await;
        eventually("the idle connection closed", || {
            pool.idle_count() == 0 && open.load(Ordering::SeqCst) == 0
        })
        .await;
        assert_eq!(&get(&c, &pool).await[..], b"hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_addressed_by_uri_needs_an_origin() {
        let c = client("60s");
        let req = Request::get("/x")
            .body(crate::body::empty())
            .expect("request");
        assert!(matches!(c.request(req).await, Err(ClientError::NoOrigin)));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let c = client("60s");
        let pool = c.pool(&Scheme::HTTP, &addr.to_string().parse().expect("authority"));
        let req = Request::get("/")
            .body(crate::body::empty())
            .expect("request");
        let err = c.send(&pool, req).await.expect_err("refused");
        assert!(err.is_connect(), "{err:?}");
    }
}
