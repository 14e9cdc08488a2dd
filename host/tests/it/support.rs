//! Test harness: gateways and upstreams started in-process on port 0, clients, raw sockets.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrox_host::app::{Options, Running, start};
use ferrox_host::body::{ProxyBody, full};
use ferrox_host::config::{Overrides, load_str};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Admin token used by every test gateway.
pub const TOKEN: &str = "test-token";

/// A gateway running in this process.
pub struct Gw {
    pub running: Running,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:ADMINPORT`
    pub admin: String,
}

impl Gw {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    /// The proxy's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.running.proxy_addr
    }
    /// Scrape `/metrics` with the admin token.
    pub async fn metrics(&self) -> String {
        let req = Request::get(format!("{}/metrics", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = client().request(req).await.expect("metrics answer");
        assert_eq!(resp.status(), StatusCode::OK);
        String::from_utf8(body_bytes(resp.into_body()).await.to_vec()).expect("utf-8")
    }
}

fn overrides() -> Overrides {
    Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        admin_token: Some(TOKEN.into()),
    }
}

/// Start a gateway from a YAML document (listen addresses and token are set by the harness).
pub async fn gateway(yaml: &str) -> Gw {
    gateway_opts(yaml, None, None).await
}

/// Start a gateway that watches `path` (which must hold `yaml`) every `interval`.
pub async fn gateway_watching(path: PathBuf, interval: Duration) -> Gw {
    let yaml = std::fs::read_to_string(&path).expect("config file");
    gateway_opts(&yaml, Some(path), Some(interval)).await
}

async fn gateway_opts(yaml: &str, path: Option<PathBuf>, interval: Option<Duration>) -> Gw {
    let o = overrides();
    let config = load_str(yaml, &o).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let running = start(Options {
        config,
        config_path: path,
        overrides: o,
        watch_interval: interval,
        store: None,
    })
    .await
    .expect("gateway starts");
    Gw {
        base: format!("http://{}", running.proxy_addr),
        admin: format!("http://{}", running.admin_addr),
        running,
    }
}

/// An upstream server running in this process.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests it received.
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    /// Stop accepting and close (existing connections end with the task).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start an upstream (HTTP/1.1 and h2c) answering with `f`, on an ephemeral port.
pub async fn upstream<F, Fut>(f: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    upstream_on(listener, f).await
}

/// Like [`upstream`] on a given listener (to restart an upstream on the same port).
pub async fn upstream_on<F, Fut>(listener: TcpListener, f: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let f = f.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let fut = f(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, hits, task }
}

/// An upstream answering with JSON describing the request: method, path, query, headers, and
/// the body length it read.
pub async fn echo_upstream() -> Upstream {
    upstream(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // Repeated headers are joined with ", " (RFC 9110 §5.3).
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .keys()
            .map(|k| {
                let joined: Vec<String> = parts
                    .headers
                    .get_all(k)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (k.to_string(), joined.join(", ").into())
            })
            .collect();
        let json = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body.len(),
        });
        json_response(StatusCode::OK, &json)
    })
    .await
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("value"));
    r
}

/// A plain-text response.
pub fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r
}

/// An HTTP/1.1 client (pooled) for plain URLs.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Collect a body.
pub async fn body_bytes<B>(b: B) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    b.collect().await.expect("body").to_bytes()
}

/// A response, read whole.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Send a request and read the whole response.
pub async fn send(req: Request<Full<Bytes>>) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("answer within 10 s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body_bytes(body).await,
    }
}

/// GET a URL.
pub async fn get(url: &str) -> Resp {
    send(
        Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// GET with extra headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

/// Write raw bytes to `addr` and read until the peer closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// An upstream config block with these targets.
pub fn upstream_yaml(name: &str, targets: &[SocketAddr], extra: &str) -> String {
    let t: Vec<String> = targets.iter().map(ToString::to_string).collect();
    format!("  - name: {name}\n    targets: [{}]\n{extra}", t.join(", "))
}

/// A value of a metric line `name{labels} value` in Prometheus text, if present.
pub fn metric_value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Path of test guest `name` (`plugins/tests/<name>`) compiled to a component. The guests are
/// built once per test run, for `wasm32-wasip2`, into their own target directory.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("wasm-plugins");
        // The workspace members under plugins/tests/ are the test guests.
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root manifest");
        let guests: Vec<String> = manifest
            .lines()
            .filter_map(|l| {
                l.trim()
                    .trim_matches(|c| c == '"' || c == ',')
                    .strip_prefix("plugins/tests/")
            })
            .map(|name| format!("ferrox-guest-{}", name.trim_matches('"')))
            .collect();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for g in &guests {
            cmd.args(["-p", g]);
        }
        let status = cmd.status().expect("run cargo for the test guests");
        assert!(status.success(), "building the test guests failed");
        target.join("wasm32-wasip2/release")
    });
    let path = dir.join(format!("ferrox_guest_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no test guest at {}", path.display());
    path
}

/// A `plugins:` entry for test guest `name` with `grants`.
pub fn guest_plugin_yaml(name: &str, grants: &[&str]) -> String {
    format!(
        "  - name: {name}\n    path: {}\n    grants: [{}]\n",
        guest(name).display(),
        grants.join(", ")
    )
}
