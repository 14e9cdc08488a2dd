//! DESIGN §9 security defaults, end to end over real sockets: request framing, control bytes,
//! path normalisation, encoded slashes, header and body limits, the header read timeout,
//! CONNECT and h2c, underscore aliases, upstream response framing, hop-by-hop headers, and the
//! JSON body of gateway-made errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::*;

/// Bound on every wait for an answer or a close.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 on a socket

/// One HTTP/1.1 response read off a raw socket (header names lower-cased).
#[derive(Debug)]
pub(crate) struct RawResp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} in {self:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse one complete response at the start of `buf`; `None` while more bytes are needed.
pub(crate) fn parse_response(buf: &[u8], eof: bool) -> Option<(RawResp, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut pos = end + 4;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("numeric content-length"));
    let mut body = Vec::new();
    if status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if chunked {
        loop {
            let line_end = pos + find(&buf[pos..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            pos = line_end + 2;
            if size == 0 {
                let trailers_end = pos + find(&buf[pos..], b"\r\n")?;
                if trailers_end != pos {
                    // trailer fields: skip to the blank line
                    pos += find(&buf[pos..], b"\r\n\r\n")? + 4;
                } else {
                    pos += 2;
                }
                break;
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else if let Some(n) = length {
        if buf.len() < pos + n {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + n]);
        pos += n;
    } else {
        if !eof {
            return None;
        }
        body.extend_from_slice(&buf[pos..]);
        pos = buf.len();
    }
    Some((
        RawResp {
            status,
            headers,
            body,
        },
        pos,
    ))
}

/// A raw client connection to the gateway.
pub(crate) struct Conn {
    pub(crate) s: TcpStream,
    pub(crate) buf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.expect("connect to gateway");
        Self { s, buf: Vec::new() }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write request bytes");
    }

    /// The next complete response, within [`WAIT`].
    pub(crate) async fn response(&mut self) -> RawResp {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, false) {
                self.buf.drain(..used);
                return resp;
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => panic!(
                    "no complete response within {WAIT:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(Ok(n)) => n,
                // A reset after the answer: parse what arrived.
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                if let Some((resp, used)) = parse_response(&self.buf, true) {
                    self.buf.drain(..used);
                    return resp;
                }
                panic!(
                    "connection closed before a complete response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whatever arrives after the responses read so far, until the peer closes (`true`) or
    /// [`WAIT`] passes (`false`).
    pub(crate) async fn rest(&mut self) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + WAIT;
        let mut out = std::mem::take(&mut self.buf);
        loop {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Err(_) => return (out, false),
                Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
                Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Send `bytes` on a fresh connection and read one response.
pub(crate) async fn exchange(addr: SocketAddr, bytes: &[u8]) -> RawResp {
    let mut c = Conn::open(addr).await;
    c.send(bytes).await;
    c.response().await
}

// ---------------------------------------------------------------------------------------------
// Gateway-made errors

/// Access to a response read either by the hyper client or off a raw socket.
pub(crate) trait Answer {
    fn status_u16(&self) -> u16;
    fn header_str(&self, name: &str) -> Option<&str>;
    fn body_slice(&self) -> &[u8];
}

impl Answer for Resp {
    fn status_u16(&self) -> u16 {
        self.status.as_u16()
    }
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
    }
    fn body_slice(&self) -> &[u8] {
        &self.body
    }
}

impl Answer for RawResp {
    fn status_u16(&self) -> u16 {
        self.status
    }
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
    }
    fn body_slice(&self) -> &[u8] {
        &self.body
    }
}

/// Assert a gateway-made error: status, `ferrox-error`, and a JSON body with `error`,
/// `message`, `status` and the `request_id` also sent in `x-request-id`.
pub(crate) fn assert_gateway_error(r: &impl Answer, status: u16, kind: &str) -> serde_json::Value {
    let shown = String::from_utf8_lossy(r.body_slice()).into_owned();
    assert_eq!(r.status_u16(), status, "status; body {shown:?}");
    assert_eq!(
        r.header_str("ferrox-error"),
        Some(kind),
        "ferrox-error header"
    );
    assert_eq!(r.header_str("content-type"), Some("application/json"));
    let j: serde_json::Value = serde_json::from_slice(r.body_slice())
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {shown:?}"));
    assert_eq!(j["error"], kind, "{j}");
    assert_eq!(j["status"], status, "{j}");
    assert!(
        j["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {j}"
    );
    let rid = j["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("request_id in {j}"));
    assert!(!rid.is_empty());
    assert_eq!(r.header_str("x-request-id"), Some(rid), "request id header");
    j
}

// ---------------------------------------------------------------------------------------------
// Upstreams and config

/// An upstream answering with JSON describing the request, including the body as text.
pub(crate) async fn body_echo(name: &'static str) -> Upstream {
    upstream(move |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "upstream": name,
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
                "body_len": body.len(),
            }),
        )
    })
    .await
}

/// A TCP upstream that reads a request head and answers with fixed bytes, then closes.
struct RawUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_upstream(response: &'static [u8]) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw upstream");
    let addr = listener.local_addr().expect("raw upstream addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    RawUpstream { addr, hits, task }
}

/// A config document: `server` (a flow map or empty), upstream blocks, route flow maps.
pub(crate) fn config(server: &str, upstreams: &[String], routes: &[&str]) -> String {
    let mut s = String::new();
    if !server.is_empty() {
        s.push_str(&format!("server: {server}\n"));
    }
    s.push_str("upstreams:\n");
    for u in upstreams {
        s.push_str(u);
    }
    s.push_str("routes:\n");
    for r in routes {
        s.push_str(&format!("  - {r}\n"));
    }
    s
}

/// One upstream `u` (no retries) and one catch-all route `r` with `route_extra` keys.
pub(crate) async fn one_route_gateway(up: SocketAddr, server: &str, route_extra: &str) -> Gw {
    gateway(&config(
        server,
        &[upstream_yaml("u", &[up], "    retries: 0\n")],
        &[&format!(
            "{{ name: r, match: {{ path_prefix: / }}, upstream: u{route_extra} }}"
        )],
    ))
    .await
}

// ---------------------------------------------------------------------------------------------
// Framing

#[tokio::test]
async fn content_length_with_chunked_te_wins_and_closes_the_connection() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    // Both header orders; the CL (4) disagrees with the chunked body (5 bytes). A request
    // pipelined behind it must never be served on this connection.
    for head in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    ] {
        let before = up.hits();
        let mut c = Conn::open(gw.addr()).await;
        c.send(
            format!(
                "POST /api HTTP/1.1\r\nHost: gw\r\n{head}\r\n5\r\nhello\r\n0\r\n\r\n\
                 GET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{head:?}: {}", r.text());
        let j = r.json();
        assert_eq!(j["body"], "hello", "{head:?}: chunked framing wins");
        assert_eq!(j["path"], "/api");
        assert!(
            j["headers"].get("content-length").is_none(),
            "{head:?}: no Content-Length forwarded: {j}"
        );
        let connection = r.header("connection").unwrap_or_default();
        assert!(
            connection.eq_ignore_ascii_case("close"),
            "{head:?}: connection header {connection:?}"
        );
        let (rest, closed) = c.rest().await;
        assert!(closed, "{head:?}: connection closed after the response");
        assert!(
            rest.is_empty(),
            "{head:?}: nothing after the response: {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert_eq!(
            up.hits(),
            before + 1,
            "{head:?}: the pipelined request was not served"
        );
    }
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    for cl in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
    ] {
        let r = exchange(
            gw.addr(),
            format!("POST /api HTTP/1.1\r\nHost: gw\r\n{cl}\r\nhello!").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{cl:?}");
    }
    assert_eq!(up.hits(), 0, "nothing forwarded");
}

#[tokio::test]
async fn transfer_encodings_other_than_chunked_are_refused() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    for (version, te) in [
        ("HTTP/1.1", "Transfer-Encoding: gzip\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, gzip\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, chunked\r\n"),
        (
            "HTTP/1.1",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("HTTP/1.0", "Transfer-Encoding: chunked\r\n"),
    ] {
        let r = exchange(
            gw.addr(),
            format!("POST /api {version}\r\nHost: gw\r\n{te}\r\n5\r\nhello\r\n0\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{version} {te:?}: {}", r.text());
    }
    assert_eq!(up.hits(), 0, "nothing forwarded");
}

#[tokio::test]
async fn control_bytes_in_headers_are_refused() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    let cases: [&[u8]; 5] = [
        b"X-A: a\0b\r\n",
        b"X-A: a\rb\r\n",
        b"X\0A: 1\r\n",
        b"X A: 1\r\n",
        b"X-A: a\r\n folded\r\n",
    ];
    for bad in cases {
        let mut req = b"GET /api HTTP/1.1\r\nHost: gw\r\n".to_vec();
        req.extend_from_slice(bad);
        req.extend_from_slice(b"\r\n");
        let r = exchange(gw.addr(), &req).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(up.hits(), 0, "nothing forwarded");
    let ok = exchange(
        gw.addr(),
        b"GET /api HTTP/1.1\r\nHost: gw\r\nX-A: a b\r\n\r\n",
    )
    .await;
    assert_eq!(ok.status, 200, "a clean request still passes");
}

// ---------------------------------------------------------------------------------------------
// Paths

#[tokio::test]
async fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let admin = body_echo("admin").await;
    let public = body_echo("public").await;
    let gw = gateway(&config(
        "",
        &[
            upstream_yaml("a", &[admin.addr], ""),
            upstream_yaml("b", &[public.addr], ""),
        ],
        &[
            "{ name: admin, match: { path_prefix: /admin }, upstream: a }",
            "{ name: public, match: { path_prefix: /public }, upstream: b }",
        ],
    ))
    .await;
    for (target, upstream, path, query) in [
        ("/public/../admin", "admin", "/admin", None),
        ("/public/%2e%2e/admin", "admin", "/admin", None),
        ("/public/%2E%2e/admin/x", "admin", "/admin/x", None),
        ("/public/.%2E/admin?q=1", "admin", "/admin", Some("q=1")),
        ("//admin", "admin", "/admin", None),
        ("/public//./x/../y/", "public", "/public/y/", None),
        ("/admin/../public/x", "public", "/public/x", None),
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let j = r.json();
        assert_eq!(
            j["upstream"], upstream,
            "{target} routed on the normalised path"
        );
        assert_eq!(j["path"], path, "{target} forwarded normalised");
        assert_eq!(j["query"].as_str(), query, "{target} query kept");
    }
    let admin_hits = admin.hits();
    let public_hits = public.hits();
    for target in ["/../x", "/public/../../admin", "/%2e%2e/admin"] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 400, "bad-request");
    }
    assert_eq!(
        admin.hits(),
        admin_hits,
        "climbing above the root never reaches A"
    );
    assert_eq!(public.hits(), public_hits);
}

#[tokio::test]
async fn encoded_slashes_are_refused_unless_the_route_allows_them() {
    let files = body_echo("files").await;
    let public = body_echo("public").await;
    let gw = gateway(&config(
        "",
        &[
            upstream_yaml("f", &[files.addr], ""),
            upstream_yaml("b", &[public.addr], ""),
        ],
        &[
            "{ name: files, match: { path_prefix: /files }, upstream: f, allow_encoded_slashes: true }",
            "{ name: public, match: { path_prefix: /public }, upstream: b }",
        ],
    ))
    .await;
    for target in [
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%5cb",
        "/public/..%2F..%2Fadmin",
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 400, "bad-request");
    }
    assert_eq!(public.hits(), 0, "nothing forwarded");
    for target in ["/files/a%2Fb", "/files/a%5Cb"] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.json()["path"], target, "escape forwarded as sent");
    }
    assert_eq!(files.hits(), 2);
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn header_count_and_size_limits_answer_431() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "{ max_headers: 20, max_header_bytes: 4KiB }", "").await;
    let with_headers = |n: usize| {
        let mut s = String::from("GET /api HTTP/1.1\r\nHost: gw\r\n");
        for i in 0..n {
            s.push_str(&format!("x-h-{i}: {i}\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    // Host + 19 = 20 fields: at the limit.
    let r = exchange(gw.addr(), with_headers(19).as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.hits(), 1);
    // Host + 20 = 21 fields.
    let r = exchange(gw.addr(), with_headers(20).as_bytes()).await;
    assert_gateway_error(&r, 431, "headers-too-large");
    let r = exchange(gw.addr(), with_headers(30).as_bytes()).await;
    assert_gateway_error(&r, 431, "headers-too-large");

    let big = |n: usize| {
        format!(
            "GET /api HTTP/1.1\r\nHost: gw\r\nx-big: {}\r\n\r\n",
            "a".repeat(n)
        )
    };
    let r = exchange(gw.addr(), big(3000).as_bytes()).await;
    assert_eq!(r.status, 200, "3000 bytes fit in 4KiB");
    let r = exchange(gw.addr(), big(5000).as_bytes()).await;
    assert_gateway_error(&r, 431, "headers-too-large");
    assert_eq!(up.hits(), 2, "refused requests never forwarded");
}

#[tokio::test]
async fn declared_body_over_the_limit_is_refused_before_forwarding() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", ", max_body: 1KiB").await;
    let body = vec![b'x'; 2000];
    let mut req = b"POST /api HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let r = exchange(gw.addr(), &req).await;
    assert_gateway_error(&r, 413, "body-too-large");
    assert_eq!(up.hits(), 0, "nothing forwarded");

    // Exactly at the limit passes.
    let mut req = b"POST /api HTTP/1.1\r\nHost: gw\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend_from_slice(&body[..1024]);
    let r = exchange(gw.addr(), &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 1024);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused_while_streaming() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", ", max_body: 1KiB").await;
    let chunked = |chunks: usize, size: usize| {
        let mut req =
            b"POST /api HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..chunks {
            req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            req.extend_from_slice(&vec![b'y'; size]);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req
    };
    let r = exchange(gw.addr(), &chunked(2, 400)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_len"], 800);

    let r = exchange(gw.addr(), &chunked(3, 600)).await;
    assert_gateway_error(&r, 413, "body-too-large");
    let r = exchange(gw.addr(), &chunked(1, 1025)).await;
    assert_gateway_error(&r, 413, "body-too-large");
}

#[tokio::test]
async fn huge_content_lengths_are_refused_without_panic() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", ", max_body: 1KiB").await;
    let post = |cl: &str| format!("POST /api HTTP/1.1\r\nHost: gw\r\nContent-Length: {cl}\r\n\r\n");
    // The largest length the HTTP parser accepts (u64::MAX - 2) reaches the route limit: 413.
    let r = exchange(gw.addr(), post("18446744073709551613").as_bytes()).await;
    assert_gateway_error(&r, 413, "body-too-large");
    // u64::MAX itself is refused by the HTTP parser before any route is consulted (431).
    let r = exchange(gw.addr(), post("18446744073709551615").as_bytes()).await;
    assert_eq!(r.status, 431, "{}", r.text());
    // Beyond 64 bits: not a valid length.
    let r = exchange(gw.addr(), post("99999999999999999999999").as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.hits(), 0, "nothing forwarded");
    // The gateway is still serving.
    let r = get(&gw.url("/api")).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Header read timeout

#[tokio::test]
async fn partial_request_head_gets_408_and_a_close() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "{ header_read_timeout: 300ms }", "").await;
    let mut c = Conn::open(gw.addr()).await;
    c.send(b"GET /api HTTP/1.1\r\nHost: gw\r\nX-Half: ").await;
    let (bytes, closed) = c.rest().await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "408 expected, got {text:?}"
    );
    assert!(closed, "connection closed after the 408");
    let (r, _) = parse_response(&bytes, true).expect("a complete 408 response");
    assert_eq!(r.header("ferrox-error"), Some("request-timeout"));
    assert_eq!(r.json()["error"], "request-timeout");
    assert_eq!(r.json()["status"], 408);
    assert_eq!(up.hits(), 0);

    // A complete request is unaffected.
    let r = exchange(gw.addr(), b"GET /api HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn silent_connection_is_closed_without_bytes() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "{ header_read_timeout: 300ms }", "").await;
    let mut c = Conn::open(gw.addr()).await;
    let (bytes, closed) = c.rest().await;
    assert!(closed, "silent connection closed within {WAIT:?}");
    assert!(
        bytes.is_empty(),
        "closed without a response: {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT and h2c

#[tokio::test]
async fn connect_is_refused_with_405() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    for target in ["example.com:443", &up.addr.to_string()] {
        let r = exchange(
            gw.addr(),
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 405, "method-not-allowed");
        assert!(r.header("allow").is_some_and(|a| !a.contains("CONNECT")));
    }
    assert_eq!(up.hits(), 0, "never tunnelled");
}

#[tokio::test]
async fn h2c_upgrade_is_stripped_and_proxied_as_plain_http1() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    let mut c = Conn::open(gw.addr()).await;
    c.send(
        b"GET /api HTTP/1.1\r\nHost: gw\r\nUpgrade: h2c\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "answered, not switched: {}", r.text());
    assert!(r.header("upgrade").is_none());
    let j = r.json();
    let h = &j["headers"];
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(h.get(name).is_none(), "{name} not forwarded: {h}");
    }
    // The connection still speaks HTTP/1.1.
    c.send(b"GET /api/again HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/api/again");
}

// ---------------------------------------------------------------------------------------------
// Underscore aliases

#[tokio::test]
async fn underscore_aliases_of_managed_headers_are_refused() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    for header in [
        "X_Forwarded_For: 1.2.3.4",
        "X-Forwarded_For: 1.2.3.4",
        "X_Real_IP: 1.2.3.4",
        "X_Request_Id: spoofed",
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET /api HTTP/1.1\r\nHost: gw\r\n{header}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 400, "bad-request");
    }
    assert_eq!(up.hits(), 0, "nothing forwarded");
    let r = get_with(&gw.url("/api"), &[("x_custom", "yes")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x_custom"], "yes");
}

// ---------------------------------------------------------------------------------------------
// Upstream response framing

#[tokio::test]
async fn upstream_responses_with_bad_framing_are_502() {
    let cases: [(&str, &'static [u8]); 4] = [
        (
            "/dup",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        ),
        (
            "/nul",
            b"HTTP/1.1 200 OK\r\nX-Bad: a\0b\r\nContent-Length: 5\r\n\r\nhello",
        ),
        // Content-Length disagreeing with a chunked body.
        (
            "/clte",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        // A transfer coding other than chunked: the body would be passed on still coded.
        (
            "/gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        ),
    ];
    let mut ups = Vec::new();
    let mut upstream_blocks = Vec::new();
    let mut routes = Vec::new();
    for (i, (path, response)) in cases.iter().enumerate() {
        let up = raw_upstream(response).await;
        upstream_blocks.push(upstream_yaml(&format!("u{i}"), &[up.addr], ""));
        routes.push(format!(
            "{{ name: r{i}, match: {{ path_prefix: {path} }}, upstream: u{i} }}"
        ));
        ups.push(up);
    }
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let gw = gateway(&config("", &upstream_blocks, &routes)).await;
    for ((path, _), up) in cases.iter().zip(&ups) {
        let r = exchange(
            gw.addr(),
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 502, "upstream-protocol");
        assert!(up.hits() >= 1, "{path}: the upstream was asked");
        assert!(!r.text().contains("hel"), "{path}: no upstream bytes leak");
    }
}

// ---------------------------------------------------------------------------------------------
// Hop-by-hop headers

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let up = body_echo("u").await;
    let gw = one_route_gateway(up.addr, "", "").await;
    let r = exchange(
        gw.addr(),
        b"GET /api HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, x-secret\r\nx-secret: 1\r\n\
          keep-alive: 5\r\nte: trailers\r\nproxy-connection: keep-alive\r\nx-kept: 1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let h = &j["headers"];
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
    ] {
        assert!(h.get(name).is_none(), "{name} not forwarded: {h}");
    }
    assert_eq!(h["x-kept"], "1");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_returned() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nConnection: x-up-secret\r\nx-up-secret: 1\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\nx-up-kept: 1\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let gw = one_route_gateway(up.addr, "", "").await;
    let r = exchange(gw.addr(), b"GET /api HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    assert_eq!(r.header("x-up-kept"), Some("1"));
    for name in [
        "x-up-secret",
        "keep-alive",
        "proxy-connection",
        "connection",
    ] {
        assert!(r.header(name).is_none(), "{name} not returned: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error bodies

#[tokio::test]
async fn gateway_errors_carry_a_json_body_and_ferrox_error() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = gateway(&config(
        "",
        &[upstream_yaml("dead", &[closed], "    retries: 0\n")],
        &["{ name: dead, match: { path_prefix: /dead }, upstream: dead }"],
    ))
    .await;
    let r = get_with(&gw.url("/nowhere"), &[("x-request-id", "rid-404")]).await;
    let j = assert_gateway_error(&r, 404, "no-route");
    assert_eq!(
        j["request_id"], "rid-404",
        "the client's request id is echoed"
    );

    let r = get(&gw.url("/dead")).await;
    let j = assert_gateway_error(&r, 502, "upstream-connect");
    assert!(
        !j["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&closed.port().to_string()),
        "no internals in the message: {j}"
    );
}
