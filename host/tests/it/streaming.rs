//! Streaming (no buffering, both directions, large volumes), TLS and HTTP/2 downstream, h2c,
//! TLS upstreams with ALPN, and WebSocket tunnelling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrox_host::body::ProxyBody;
use ferrox_host::error::BoxError;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Bound on every wait for a streaming signal: a buffering gateway fails instead of hanging.
const SIGNAL_WAIT: Duration = Duration::from_secs(10);

/// A body fed chunk by chunk through the returned sender; it ends when the sender is dropped.
fn channel_body() -> (mpsc::Sender<Bytes>, ProxyBody) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|b| Ok::<_, BoxError>(Frame::data(b)));
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

/// A body of `chunks` copies of `chunk` (the buffer is shared, never copied).
fn repeated_body(chunk: Bytes, chunks: usize) -> ProxyBody {
    let stream = futures_util::stream::iter(
        std::iter::repeat_n(chunk, chunks).map(|b| Ok::<_, BoxError>(Frame::data(b))),
    );
    BodyExt::boxed(StreamBody::new(stream))
}

/// An HTTP/1.1 client whose request bodies stream.
fn streaming_client() -> Client<HttpConnector, ProxyBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Gateway with one catch-all route to one upstream (`route_extra` and `upstream_extra` are
/// YAML lines added to the route and upstream).
async fn simple_gateway(up: std::net::SocketAddr, upstream_extra: &str, route_extra: &str) -> Gw {
    gateway(&format!(
        "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n{route_extra}",
        upstream_yaml("u", &[up], upstream_extra)
    ))
    .await
}

/// The next data chunk of a response body, within [`SIGNAL_WAIT`].
async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(SIGNAL_WAIT, body.frame())
            .await
            .expect("a chunk arrives within 10 s (is the gateway buffering?)")?
            .expect("body frame");
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return Some(data);
        }
    }
}

#[tokio::test]
async fn request_body_streams_to_upstream_without_buffering() {
    // The upstream reports every chunk it reads, as a running total.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<usize>();
    let up = upstream(move |req: Request<Incoming>| {
        let seen = seen_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("request body frame").into_data() {
                    total += data.len();
                    let _ = seen.send(total);
                }
            }
            json_response(StatusCode::OK, &serde_json::json!({ "received": total }))
        }
    })
    .await;
    let gw = simple_gateway(up.addr, "", "").await;

    let (tx, body) = channel_body();
    let req = Request::post(gw.url("/upload"))
        .body(body)
        .expect("request");
    let pending = tokio::spawn(streaming_client().request(req));

    let first = Bytes::from_static(b"first chunk of the upload;");
    let second = Bytes::from_static(b"second chunk, sent only after the first arrived");
    tx.send(first.clone()).await.expect("send chunk 1");
    // The second chunk is withheld until the upstream has the whole first one.
    let deadline = tokio::time::Instant::now() + SIGNAL_WAIT;
    loop {
        let total = tokio::time::timeout_at(deadline, seen_rx.recv())
            .await
            .expect("upstream received chunk 1 before chunk 2 was sent (no request buffering)")
            .expect("upstream alive");
        if total >= first.len() {
            assert_eq!(total, first.len(), "nothing but chunk 1 was sent yet");
            break;
        }
    }
    tx.send(second.clone()).await.expect("send chunk 2");
    drop(tx);

    let resp = tokio::time::timeout(SIGNAL_WAIT, pending)
        .await
        .expect("response within 10 s")
        .expect("client task")
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let j: serde_json::Value =
        serde_json::from_slice(&body_bytes(resp.into_body()).await).expect("json");
    assert_eq!(j["received"], first.len() + second.len());
}

#[tokio::test]
async fn response_body_streams_to_client_without_buffering() {
    // The upstream's body is fed by the test: chunk 1 now, chunk 2 only once the client has
    // received chunk 1.
    let (tx, body) = channel_body();
    let body = Arc::new(Mutex::new(Some(body)));
    let up = upstream(move |_req: Request<Incoming>| {
        let body = body.clone();
        async move {
            let b = body
                .lock()
                .expect("lock")
                .take()
                .unwrap_or_else(ferrox_host::body::empty);
            Response::new(b)
        }
    })
    .await;
    let gw = simple_gateway(up.addr, "", "").await;

    let first = Bytes::from_static(b"chunk one;");
    let second = Bytes::from_static(b"chunk two");
    tx.send(first.clone()).await.expect("send chunk 1");
    let resp = tokio::time::timeout(
        SIGNAL_WAIT,
        client().get(gw.url("/download").parse().expect("uri")),
    )
    .await
    .expect("response head within 10 s")
    .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();

    let mut got = Vec::new();
    while got.len() < first.len() {
        let chunk = next_data(&mut body)
            .await
            .expect("chunk 1 reaches the client while the upstream still holds chunk 2");
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, first);
    tx.send(second.clone()).await.expect("send chunk 2");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = next_data(&mut body).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, second);
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[tokio::test]
async fn one_gib_each_way_streams_in_bounded_memory() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: u64 = 1 << 30;
    const CHUNKS: usize = (TOTAL / CHUNK as u64) as usize;
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);

    // Uploads are counted; downloads are generated from the one shared chunk.
    let gen_chunk = chunk.clone();
    let up = upstream(move |req: Request<Incoming>| {
        let gen_chunk = gen_chunk.clone();
        async move {
            if req.uri().path() == "/download" {
                let mut r = Response::new(repeated_body(gen_chunk, CHUNKS));
                r.headers_mut()
                    .insert("content-length", TOTAL.to_string().parse().expect("value"));
                return r;
            }
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("request body frame").into_data() {
                    total += data.len() as u64;
                }
            }
            json_response(StatusCode::OK, &serde_json::json!({ "received": total }))
        }
    })
    .await;
    // The upstream answers only once it has read the whole upload, and the request timeout
    // runs until the response head: give a slow machine room.
    let gw = simple_gateway(
        up.addr,
        "    timeouts: { request: 10m }\n",
        "    max_body: 2GiB\n",
    )
    .await;

    let before = rss_bytes();
    let started = Instant::now();
    let req = Request::post(gw.url("/upload"))
        .header("content-length", TOTAL.to_string())
        .body(repeated_body(chunk.clone(), CHUNKS))
        .expect("request");
    let resp = streaming_client()
        .request(req)
        .await
        .expect("upload response");
    assert_eq!(resp.status(), StatusCode::OK);
    let j: serde_json::Value =
        serde_json::from_slice(&body_bytes(resp.into_body()).await).expect("json");
    assert_eq!(j["received"], TOTAL, "upstream counted every uploaded byte");
    let upload_took = started.elapsed();

    let started = Instant::now();
    let resp = client()
        .get(gw.url("/download").parse().expect("uri"))
        .await
        .expect("download response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("response body frame").into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, TOTAL, "client received every downloaded byte");
    let download_took = started.elapsed();

    let after = rss_bytes();
    let grew = after.saturating_sub(before);
    eprintln!(
        "1 GiB upload {upload_took:?}, 1 GiB download {download_took:?}, RSS {} MiB -> {} MiB",
        before >> 20,
        after >> 20
    );
    assert!(
        grew < 200 << 20,
        "RSS grew by {} MiB while streaming 2 GiB",
        grew >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// TLS and HTTP/2
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate and its key, as PEM files in a temporary directory and as DER.
struct TestCert {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn test_cert(name: &str) -> TestCert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");
    TestCert {
        _dir: dir,
        cert: cert_path,
        key: key_path,
        der: cert.der().clone(),
        key_der: signing_key.serialize_der(),
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client trusting only `trust`, offering exactly `alpn`.
fn tls_connector(trust: &CertificateDer<'static>, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).expect("trust anchor");
    let mut cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// Connect to `addr` over TLS as `localhost`, offering `alpn`; checks the server agreed to it.
async fn tls_connect(
    addr: std::net::SocketAddr,
    trust: &CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = tokio::time::timeout(
        SIGNAL_WAIT,
        tls_connector(trust, alpn).connect(ServerName::try_from("localhost").expect("name"), tcp),
    )
    .await
    .expect("TLS handshake within 10 s")
    .expect("TLS handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "ALPN negotiated"
    );
    tls
}

fn tls_gateway_yaml(cert: &TestCert, up: std::net::SocketAddr) -> String {
    format!(
        "tls: {{ cert: \"{}\", key: \"{}\" }}\nupstreams:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, upstream: u }}\n",
        cert.cert.display(),
        cert.key.display(),
        upstream_yaml("u", &[up], "")
    )
}

/// Send one request on an HTTP/2 connection and read the whole response.
async fn h2_request<I>(io: I, uri: &str) -> (Response<()>, Bytes)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let req = Request::get(uri)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(SIGNAL_WAIT, sender.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("HTTP/2 response");
    let (parts, body) = resp.into_parts();
    (Response::from_parts(parts, ()), body_bytes(body).await)
}

#[tokio::test]
async fn https_listener_serves_http2_via_alpn() {
    let cert = test_cert("localhost");
    let up = echo_upstream().await;
    let gw = gateway(&tls_gateway_yaml(&cert, up.addr)).await;

    let tls = tls_connect(gw.addr(), &cert.der, b"h2").await;
    let uri = format!("https://localhost:{}/api/items?x=1", gw.addr().port());
    let (resp, body) = h2_request(tls, &uri).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2, "downstream speaks HTTP/2");
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["path"], "/api/items");
    assert_eq!(j["query"], "x=1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");
    // HTTP/2 has no Host header: the gateway uses the `:authority`.
    assert_eq!(
        j["headers"]["x-forwarded-host"],
        format!("localhost:{}", gw.addr().port())
    );
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn https_listener_serves_http1_via_alpn() {
    let cert = test_cert("localhost");
    let up = echo_upstream().await;
    let gw = gateway(&tls_gateway_yaml(&cert, up.addr)).await;

    let tls = tls_connect(gw.addr(), &cert.der, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let req = Request::get("/api/one")
        .header("host", format!("localhost:{}", gw.addr().port()))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(SIGNAL_WAIT, sender.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("HTTP/1.1 response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_11);
    let j: serde_json::Value =
        serde_json::from_slice(&body_bytes(resp.into_body()).await).expect("json");
    assert_eq!(j["path"], "/api/one");
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        j["headers"]["x-forwarded-host"],
        format!("localhost:{}", gw.addr().port())
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "upstreams:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, upstream: u }}\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    let uri = format!("http://{}/api/h2c", gw.addr());
    let (resp, body) = h2_request(tcp, &uri).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["path"], "/api/h2c");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
}

/// An upstream served over TLS (ALPN h2 and http/1.1) answering with the request's version
/// and the protocol ALPN selected.
struct TlsUpstream {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_upstream(cert: &TestCert) -> TlsUpstream {
    let mut server = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
        )
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let svc = service_fn(move |req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let json = serde_json::json!({
                        "version": format!("{:?}", req.version()),
                        "alpn": alpn,
                        "path": req.uri().path(),
                    });
                    async move {
                        Ok::<_, std::convert::Infallible>(json_response(StatusCode::OK, &json))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsUpstream { addr, hits, task }
}

fn tls_upstream_gateway_yaml(port: u16, ca: &std::path::Path, extra: &str) -> String {
    format!(
        "upstreams:\n  - name: u\n    targets: [\"https://localhost:{port}\"]\n    tls: {{ ca: \"{}\" }}\n{extra}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
        ca.display()
    )
}

#[tokio::test]
async fn tls_upstream_negotiates_http2_by_alpn() {
    let cert = test_cert("localhost");
    let up = tls_upstream(&cert).await;
    let gw = gateway(&tls_upstream_gateway_yaml(up.addr.port(), &cert.cert, "")).await;
    let r = get(&gw.url("/secure/path")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["path"], "/secure/path");
    assert_eq!(j["alpn"], "h2");
    assert_eq!(j["version"], "HTTP/2.0", "upstream saw HTTP/2");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tls_upstream_with_protocol_http1_uses_http11() {
    let cert = test_cert("localhost");
    let up = tls_upstream(&cert).await;
    let gw = gateway(&tls_upstream_gateway_yaml(
        up.addr.port(),
        &cert.cert,
        "    protocol: http1\n",
    ))
    .await;
    let r = get(&gw.url("/v1")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    // An HTTP/1.1-only client may offer no ALPN at all; it must not end up on h2.
    assert_ne!(j["alpn"], "h2");
    assert_eq!(j["version"], "HTTP/1.1", "upstream saw HTTP/1.1");
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_a_502() {
    let served = test_cert("localhost");
    let other = test_cert("localhost");
    let up = tls_upstream(&served).await;
    // The gateway trusts a different certificate (and the system roots) only.
    let gw = gateway(&tls_upstream_gateway_yaml(up.addr.port(), &other.cert, "")).await;
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("ferrox-error"), Some("upstream-connect"));
    assert_eq!(up.hits.load(Ordering::SeqCst), 0, "no request got through");
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_cut_by_the_connect_timeout() {
    // A target that accepts TCP connections and never answers the TLS ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let cert = test_cert("localhost");
    let gw = gateway(&tls_upstream_gateway_yaml(
        port,
        &cert.cert,
        "    timeouts: { connect: 300ms, request: 20s }\n",
    ))
    .await;
    let started = Instant::now();
    let r = get(&gw.url("/x")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert_eq!(r.header("ferrox-error"), Some("upstream-connect"));
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the TCP connect happened"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "answered after {took:?}: the connect timeout, not the request timeout"
    );
    silent.abort();
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// A WebSocket server echoing text and binary messages.
async fn ws_echo_upstream() -> (std::net::SocketAddr, AbortOnDrop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, AbortOnDrop(task))
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn ws_gateway_yaml(up: std::net::SocketAddr, websocket: bool) -> String {
    format!(
        "upstreams:\n{}routes:\n  - {{ name: ws, match: {{ path_prefix: /ws }}, upstream: u, websocket: {websocket} }}\n",
        upstream_yaml("u", &[up], "")
    )
}

/// Headers of a WebSocket handshake request (RFC 6455 sample key).
const WS_HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// The HTTP status of a failed WebSocket handshake through `url`.
async fn ws_refused_status(url: &str) -> u16 {
    match tokio::time::timeout(SIGNAL_WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake answered within 10 s")
    {
        Ok(_) => panic!("the WebSocket handshake must fail"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP answer, got {e}"),
    }
}

#[tokio::test]
async fn websocket_messages_are_tunnelled_both_ways() {
    let (up, _guard) = ws_echo_upstream().await;
    let gw = gateway(&ws_gateway_yaml(up, true)).await;
    let (mut ws, resp) = tokio::time::timeout(
        SIGNAL_WAIT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr())),
    )
    .await
    .expect("handshake within 10 s")
    .expect("WebSocket handshake through the gateway");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

    let text = Message::text("hello through the gateway");
    let binary = Message::binary(vec![0u8, 1, 2, 254, 255]);
    for msg in [text, binary] {
        ws.send(msg.clone()).await.expect("send");
        let echoed = tokio::time::timeout(SIGNAL_WAIT, ws.next())
            .await
            .expect("echo within 10 s")
            .expect("stream open")
            .expect("message");
        assert_eq!(echoed, msg);
    }
    ws.close(None).await.expect("close");
    let tunnels = metric_value(&gw.metrics().await, "ferrox_websocket_tunnels_total");
    assert_eq!(tunnels, Some(1.0));
}

#[tokio::test]
async fn websocket_refused_by_upstream_is_answered_without_tunnel() {
    let up = upstream(|_req: Request<Incoming>| async {
        text_response(StatusCode::FORBIDDEN, "upgrade refused by upstream")
    })
    .await;
    let gw = gateway(&ws_gateway_yaml(up.addr, true)).await;
    assert_eq!(
        ws_refused_status(&format!("ws://{}/ws", gw.addr())).await,
        403
    );

    let r = get_with(&gw.url("/ws"), &WS_HANDSHAKE).await;
    assert_eq!(r.status, 403);
    assert_eq!(&r.body[..], b"upgrade refused by upstream");
    assert!(r.header("upgrade").is_none());
    let tunnels = metric_value(&gw.metrics().await, "ferrox_websocket_tunnels_total");
    assert_eq!(tunnels.unwrap_or(0.0), 0.0, "no tunnel was opened");
}

#[tokio::test]
async fn upgrade_headers_are_stripped_on_routes_without_websocket() {
    let up = echo_upstream().await;
    let gw = gateway(&ws_gateway_yaml(up.addr, false)).await;
    let r = get_with(&gw.url("/ws/chat"), &WS_HANDSHAKE).await;
    assert_eq!(r.status, 200, "a plain response, not a 101");
    let j = r.json();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["path"], "/ws/chat");
    assert!(j["headers"].get("upgrade").is_none(), "{j}");
    let connection = j["headers"]["connection"].as_str().unwrap_or("");
    assert!(
        !connection.to_ascii_lowercase().contains("upgrade"),
        "connection: {connection}"
    );
}

#[tokio::test]
async fn websocket_101_with_wrong_accept_key_is_a_502() {
    let up = upstream(|_req: Request<Incoming>| async {
        let mut r = Response::new(ferrox_host::body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert("upgrade", "websocket".parse().expect("value"));
        h.insert("connection", "upgrade".parse().expect("value"));
        h.insert(
            "sec-websocket-accept",
            "bm90IHRoZSByaWdodCBrZXk=".parse().expect("value"),
        );
        r
    })
    .await;
    let gw = gateway(&ws_gateway_yaml(up.addr, true)).await;
    assert_eq!(
        ws_refused_status(&format!("ws://{}/ws", gw.addr())).await,
        502
    );
    let r = get_with(&gw.url("/ws"), &WS_HANDSHAKE).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("ferrox-error"), Some("upstream-protocol"));
}
