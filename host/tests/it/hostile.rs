//! Hostile input against a running gateway, judged by what a *recording* upstream receives: a
//! raw TCP server that keeps every byte each connection carried. Smuggling and framing tricks,
//! pipelining after a refusal, path escapes into protected routes, header spoofing and
//! `Connection`-nominated removal, Host oddities, slow and big clients, HTTP/2 rapid reset and
//! stream floods, and authentication pitfalls end to end. `docs/hardening.md` lists each case.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::security::{
    Conn, RawResp, WAIT, assert_gateway_error, exchange, find, one_route_gateway,
};
use crate::support::*;

/// A request that must never reach the upstream when pipelined behind a refused one.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// The recording upstream

/// What one upstream connection received.
#[derive(Debug, Default)]
struct ConnRecord {
    bytes: Vec<u8>,
    /// Heads of the complete requests read (and answered) on it.
    heads: Vec<String>,
    closed: bool,
}

/// A raw upstream that records every byte, answers each complete request (Content-Length or
/// chunked framing) after `delay` with `200` and the request head as its body.
struct Recorder {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Self {
        Self::with_delay(Duration::ZERO).await
    }

    async fn with_delay(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let conns: Arc<Mutex<Vec<ConnRecord>>> = Arc::default();
        let c = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let index = {
                    let mut all = c.lock().expect("records");
                    all.push(ConnRecord::default());
                    all.len() - 1
                };
                tokio::spawn(record(s, c.clone(), index, delay));
            }
        });
        Self { addr, conns, task }
    }

    /// Every byte received, all connections in order of acceptance.
    fn raw(&self) -> Vec<u8> {
        let all = self.conns.lock().expect("records");
        all.iter().flat_map(|c| c.bytes.clone()).collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw()).into_owned()
    }
    /// Heads of the complete requests received.
    fn heads(&self) -> Vec<String> {
        let all = self.conns.lock().expect("records");
        all.iter().flat_map(|c| c.heads.clone()).collect()
    }
    fn requests(&self) -> usize {
        self.heads().len()
    }
    fn connections(&self) -> usize {
        self.conns.lock().expect("records").len()
    }
    fn all_closed(&self) -> bool {
        self.conns.lock().expect("records").iter().all(|c| c.closed)
    }
    /// Assert that not one byte arrived.
    fn assert_untouched(&self, what: &str) {
        let raw = self.raw();
        assert!(
            raw.is_empty(),
            "{what}: the upstream received {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

async fn record(
    mut s: TcpStream,
    conns: Arc<Mutex<Vec<ConnRecord>>>,
    index: usize,
    delay: Duration,
) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        conns.lock().expect("records")[index]
            .bytes
            .extend_from_slice(&chunk[..n]);
        pending.extend_from_slice(&chunk[..n]);
        while let Some((head, used)) = complete_request(&pending) {
            pending.drain(..used);
            conns.lock().expect("records")[index]
                .heads
                .push(head.clone());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{head}",
                head.len()
            );
            if s.write_all(answer.as_bytes()).await.is_err() {
                break;
            }
        }
    }
    conns.lock().expect("records")[index].closed = true;
}

/// A complete HTTP/1.1 request at the start of `buf`: its head and its length in bytes.
fn complete_request(buf: &[u8]) -> Option<(String, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut length = 0usize;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let (k, v) = line.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().ok()?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.trim().eq_ignore_ascii_case("chunked");
        }
    }
    let mut pos = end + 4;
    if chunked {
        loop {
            let line_end = pos + find(&buf[pos..], b"\r\n")?;
            let size_text = std::str::from_utf8(&buf[pos..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailer fields, then the blank line.
                loop {
                    let line_end = pos + find(&buf[pos..], b"\r\n")?;
                    let empty = line_end == pos;
                    pos = line_end + 2;
                    if empty {
                        return Some((head, pos));
                    }
                }
            }
            if buf.len() < pos + size + 2 {
                return None;
            }
            pos += size + 2;
        }
    }
    (buf.len() >= pos + length).then_some((head, pos + length))
}

/// The value of header `name` in a recorded request head (first occurrence), and how many
/// times the field appears.
fn head_field<'a>(head: &'a str, name: &str) -> (Option<&'a str>, usize) {
    let mut values = head.split("\r\n").skip(1).filter_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    });
    let first = values.next();
    (first, first.map_or(0, |_| 1 + values.count()))
}

/// A gateway with one catch-all route to `rec` (no retries) and `server` settings.
async fn gateway_to(rec: &Recorder, server: &str) -> Gw {
    one_route_gateway(rec.addr, server, "").await
}

/// Send `bytes` on a fresh connection: the one response, then assert that the gateway closed
/// the connection and sent nothing more (a pipelined request behind it was not served).
async fn answered_then_closed(addr: SocketAddr, bytes: &[u8], what: &str) -> RawResp {
    let mut c = Conn::open(addr).await;
    c.send(bytes).await;
    let r = c.response().await;
    let (rest, closed) = c.rest().await;
    assert!(closed, "{what}: connection closed after the answer");
    assert!(
        rest.is_empty(),
        "{what}: nothing after the first answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
    r
}

/// Poll `cond` every 20 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Framing and smuggling

#[tokio::test]
async fn cl_and_te_together_forward_one_rechunked_request_and_close() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    for head in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
    ] {
        let before = rec.requests();
        let req = format!(
            "POST /api HTTP/1.1\r\nHost: gw\r\n{head}\r\n5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
        );
        let r = answered_then_closed(gw.addr(), req.as_bytes(), head).await;
        assert_eq!(r.status, 200, "{head:?}: {}", r.text());
        assert_eq!(rec.requests(), before + 1, "{head:?}: exactly one request");
        let heads = rec.heads();
        let forwarded = heads.last().expect("a head");
        assert!(forwarded.starts_with("POST /api HTTP/1.1"), "{forwarded}");
        assert_eq!(
            head_field(forwarded, "content-length").1,
            0,
            "{head:?}: the client's Content-Length is not forwarded: {forwarded}"
        );
    }
    let raw = rec.text();
    assert!(!raw.contains("smuggled"), "{raw}");
    assert_eq!(raw.matches("hello").count(), 2, "each body once: {raw}");
}

#[tokio::test]
async fn pipelined_requests_behind_a_refused_one_are_never_served() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    // (what, refused request) — each followed on the same connection by a valid request.
    let cases: [(&str, &str); 9] = [
        (
            "duplicate Content-Length",
            "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "Content-Length list",
            "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        (
            "TE chunked on HTTP/1.0",
            "POST /a HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE chunked, chunked",
            "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE gzip, chunked",
            "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE identity",
            "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "TE chunked twice as fields",
            "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n folded\r\n\r\n",
        ),
        (
            "underscore alias",
            "GET /a HTTP/1.1\r\nHost: gw\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
        ),
    ];
    for (what, bad) in cases {
        let r = answered_then_closed(gw.addr(), format!("{bad}{SMUGGLED}").as_bytes(), what).await;
        assert!(
            r.status == 400 || r.status == 501,
            "{what}: refused, got {} {}",
            r.status,
            r.text()
        );
    }
    rec.assert_untouched("refused requests and what followed them");
    // The control: two valid pipelined requests are both served.
    let mut c = Conn::open(gw.addr()).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: gw\r\n\r\nGET /two HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200);
    assert_eq!(c.response().await.status, 200);
    assert_eq!(rec.requests(), 2);
}

#[tokio::test]
async fn invalid_chunk_sizes_never_complete_a_request_upstream() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    for (what, body) in [
        ("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("negative", "-1\r\nhello\r\n0\r\n\r\n"),
        (
            "overflowing hex",
            "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("plus sign", "+5\r\nhello\r\n0\r\n\r\n"),
        ("empty size", "\r\nhello\r\n0\r\n\r\n"),
        ("size with a space inside", "5 5\r\nhello\r\n0\r\n\r\n"),
        ("data longer than the size", "3\r\nhello\r\n0\r\n\r\n"),
        ("bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        (
            "chunk extension with a bare CR",
            "5;a=\rb\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        let before = rec.requests();
        let mut c = Conn::open(gw.addr()).await;
        c.send(
            format!(
                "POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"
            )
            .as_bytes(),
        )
        .await;
        // An answer (the gateway's 400) or a close; never a success.
        let (bytes, closed) = c.rest().await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(closed, "{what}: connection closed");
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{what}: {text:?}"
        );
        assert_eq!(
            rec.requests(),
            before,
            "{what}: no complete request upstream; received {:?}",
            rec.text()
        );
    }
    assert!(!rec.text().contains("smuggled"), "{}", rec.text());
    assert!(
        eventually(WAIT, || rec.all_closed()).await,
        "the upstream connections of broken bodies are closed"
    );
    // Refused bodies are the client's fault: the upstream's breaker saw no failure.
    let r = exchange(gw.addr(), b"GET /ok HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let metrics = gw.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("ferrox_upstream_errors_total") && !l.ends_with(" 0")),
        "no upstream error counted: {metrics}"
    );
}

#[tokio::test]
async fn a_client_body_that_breaks_is_a_400_not_an_upstream_failure() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    let r = exchange(
        gw.addr(),
        b"POST /a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_gateway_error(&r, 400, "bad-request");
    assert_eq!(rec.requests(), 0, "{:?}", rec.text());
}

#[tokio::test]
async fn bare_lf_heads_are_reframed_and_bare_cr_is_refused() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    // Bare LF line endings (accepted by the parser, RFC 9112 §2.2): one request, re-framed.
    let r = exchange(gw.addr(), b"GET /lf HTTP/1.1\nHost: gw\nX-A: 1\n\n").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rec.requests(), 1);
    let raw = rec.raw();
    let head_end = find(&raw, b"\r\n\r\n").expect("a CRLF-framed head");
    assert!(
        raw[..head_end]
            .windows(2)
            .all(|w| w[1] != b'\n' || w[0] == b'\r'),
        "only CRLF line endings upstream: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // Bare CR anywhere in the head: refused.
    let before = rec.raw().len();
    for (what, bad) in [
        ("request line", "GET /cr HTTP/1.1\rHost: gw\r\n\r\n"),
        (
            "between fields",
            "GET /cr HTTP/1.1\r\nHost: gw\rX-A: 1\r\n\r\n",
        ),
        (
            "in a value",
            "GET /cr HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n",
        ),
    ] {
        let r = answered_then_closed(gw.addr(), format!("{bad}{SMUGGLED}").as_bytes(), what).await;
        assert_eq!(r.status, 400, "{what}");
    }
    assert_eq!(rec.raw().len(), before, "nothing more forwarded");
}

// ---------------------------------------------------------------------------------------------
// Paths

#[tokio::test]
async fn nul_and_control_bytes_in_paths_are_refused() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    for target in [
        "/a%00b",
        "/a/%00",
        "/a%0d%0aX-Injected:%201",
        "/a%0Ab",
        "/a%09b",
        "/a%7fb",
        "/a%1Fb",
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 400, "bad-request");
    }
    // Raw control bytes and spaces in the request target: the parser refuses them.
    for raw_target in [&b"/a\0b"[..], b"/a\x01b", b"/a\x7fb", b"/a\tb", b"/a b"] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(raw_target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: gw\r\n\r\n");
        let r = exchange(gw.addr(), &req).await;
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw_target));
    }
    rec.assert_untouched("paths with control bytes");
    // The control: other escapes pass, as sent.
    let r = exchange(gw.addr(), b"GET /a%20b%41 HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert!(rec.heads()[0].starts_with("GET /a%20b%41 HTTP/1.1"));
}

#[tokio::test]
async fn over_long_request_targets_are_refused() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "{ max_header_bytes: 4KiB }").await;
    let long = |n: usize| format!("GET /{} HTTP/1.1\r\nHost: gw\r\n\r\n", "a".repeat(n));
    let r = exchange(gw.addr(), long(3000).as_bytes()).await;
    assert_eq!(r.status, 200, "a 3000-byte target fits");
    // Over max_header_bytes: the gateway's 414 with its JSON body.
    let r = exchange(gw.addr(), long(5000).as_bytes()).await;
    assert_gateway_error(&r, 414, "uri-too-long");
    // Over the parser's buffer (twice max_header_bytes, at least 16 KiB): its own empty 431.
    let r = exchange(gw.addr(), long(40_000).as_bytes()).await;
    assert_eq!(r.status, 431, "{}", r.text());
    assert_eq!(rec.requests(), 1, "only the request that fit was forwarded");

    // Default limits: beyond what `http::Uri` holds (64 KiB) the parser answers 414 itself.
    let rec2 = Recorder::start().await;
    let gw2 = gateway_to(&rec2, "").await;
    let r = exchange(gw2.addr(), long(70_000).as_bytes()).await;
    assert!(r.status == 414 || r.status == 431, "{}", r.status);
    rec2.assert_untouched("a 70 kB request target");
}

/// Routes: `/admin` behind key-auth, `/public` open, `/` open (catch-all).
async fn protected_and_open(admin: &Recorder, open: &Recorder) -> Gw {
    gateway(&format!(
        "upstreams:\n{}{}consumers:\n  - {{ name: alice, keys: [alice-secret-key] }}\nroutes:\n  \
         - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: a, filters: [{{ plugin: key-auth, timeout: 2s, config: {{}} }}] }}\n  \
         - {{ name: public, match: {{ path_prefix: /public }}, upstream: o }}\n  \
         - {{ name: rest, match: {{ path_prefix: / }}, upstream: o }}\n",
        upstream_yaml("a", &[admin.addr], "    retries: 0\n"),
        upstream_yaml("o", &[open.addr], "    retries: 0\n"),
    ))
    .await
}

#[tokio::test]
async fn prefix_routes_cannot_be_escaped_into_a_protected_route() {
    let admin = Recorder::start().await;
    let open = Recorder::start().await;
    let gw = protected_and_open(&admin, &open).await;
    let escapes = [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/users",
        "/public/.%2e/admin",
        "/public/./../admin",
        "//admin",
        "/./admin",
        "/admin/",
        "/public/x/../../admin/users",
        "/admin?apikey=alice-secret-key",
    ];
    for target in escapes {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 401, "{target} judged as /admin: {}", r.text());
    }
    for target in [
        "/public/..%2fadmin",
        "/public/%2e%2e%2fadmin",
        "/public/..%5cadmin",
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_gateway_error(&r, 400, "bad-request");
    }
    admin.assert_untouched("escapes without a key");
    open.assert_untouched("escapes into /admin");
    // With the key, the same escape is served by /admin's upstream, on the normalised path.
    let r = exchange(
        gw.addr(),
        b"GET /public/%2e%2e/admin/users HTTP/1.1\r\nHost: gw\r\napikey: alice-secret-key\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let heads = admin.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("GET /admin/users HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert_eq!(head_field(&heads[0], "x-consumer-name"), (Some("alice"), 1));
    assert_eq!(head_field(&heads[0], "apikey").1, 0, "key not forwarded");
    open.assert_untouched("the authorised escape");
}

// ---------------------------------------------------------------------------------------------
// Headers

#[tokio::test]
async fn connection_cannot_nominate_gateway_set_headers_away() {
    let admin = Recorder::start().await;
    let open = Recorder::start().await;
    let gw = protected_and_open(&admin, &open).await;
    let nominated = "X-Forwarded-For, X-Request-Id, X-Consumer-Name, X-Real-IP, Forwarded, \
                     X-Forwarded-Proto, X-Forwarded-Host, traceparent";
    let r = exchange(
        gw.addr(),
        format!(
            "GET /admin HTTP/1.1\r\nHost: gw\r\napikey: alice-secret-key\r\nx-request-id: rid-conn-1\r\n\
             Connection: {nominated}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let heads = admin.heads();
    let head = &heads[0];
    assert_eq!(head_field(head, "x-forwarded-for"), (Some("127.0.0.1"), 1));
    assert_eq!(head_field(head, "x-real-ip"), (Some("127.0.0.1"), 1));
    assert_eq!(head_field(head, "x-request-id"), (Some("rid-conn-1"), 1));
    assert_eq!(head_field(head, "x-consumer-name"), (Some("alice"), 1));
    assert_eq!(head_field(head, "x-forwarded-proto"), (Some("http"), 1));
    assert_eq!(head_field(head, "x-forwarded-host"), (Some("gw"), 1));
    assert_eq!(head_field(head, "forwarded").1, 1, "{head}");
    assert_eq!(head_field(head, "traceparent").1, 1, "{head}");
    assert_eq!(head_field(head, "connection").1, 0, "{head}");
}

#[tokio::test]
async fn spoofed_forwarding_and_consumer_headers_never_reach_the_upstream() {
    let admin = Recorder::start().await;
    let open = Recorder::start().await;
    let gw = protected_and_open(&admin, &open).await;
    let spoof = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\n\
                 Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: evil.example\r\nX-Consumer-Name: admin\r\nx-consumer-name: root\r\n";
    for (path, key) in [
        ("/public/x", ""),
        ("/admin/x", "apikey: alice-secret-key\r\n"),
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{key}{spoof}\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    for (rec, consumer) in [(&open, None), (&admin, Some("alice"))] {
        let heads = rec.heads();
        assert_eq!(heads.len(), 1);
        let head = &heads[0];
        assert_eq!(head_field(head, "x-forwarded-for"), (Some("127.0.0.1"), 1));
        assert_eq!(head_field(head, "x-real-ip"), (Some("127.0.0.1"), 1));
        assert_eq!(head_field(head, "x-forwarded-proto"), (Some("http"), 1));
        assert_eq!(head_field(head, "x-forwarded-host"), (Some("gw"), 1));
        assert_eq!(
            head_field(head, "forwarded"),
            (Some("for=127.0.0.1;proto=http;host=gw"), 1)
        );
        assert_eq!(
            head_field(head, "x-consumer-name"),
            (consumer, usize::from(consumer.is_some())),
            "{head}"
        );
        for spoofed in ["6.6.6.6", "7.7.7.7", "evil.example", "https", "root"] {
            assert!(!head.contains(spoofed), "{spoofed} forwarded: {head}");
        }
    }
}

#[tokio::test]
async fn underscore_aliases_of_framing_and_identity_headers_are_refused() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    for header in [
        "X_Consumer_Name: admin",
        "Content_Length: 5",
        "Transfer_Encoding: chunked",
        "X_Forwarded_Host: evil.example",
        "X-Forwarded_Proto: https",
        "Trace_Parent: x",
        "traceparent_: x",
    ] {
        let r = exchange(
            gw.addr(),
            format!("GET /a HTTP/1.1\r\nHost: gw\r\n{header}\r\n\r\n").as_bytes(),
        )
        .await;
        if header.starts_with("Trace_Parent") || header.starts_with("traceparent_") {
            // Not an alias of a managed name (`trace-parent`, `traceparent-`): passed on.
            assert_eq!(r.status, 200, "{header}");
        } else {
            assert_gateway_error(&r, 400, "bad-request");
        }
    }
    assert_eq!(rec.requests(), 2, "only the two non-aliases were forwarded");
}

#[tokio::test]
async fn host_oddities_are_refused_or_routed_unambiguously() {
    let admin = Recorder::start().await;
    let public = Recorder::start().await;
    let gw = gateway(&format!(
        "upstreams:\n{}{}routes:\n  \
         - {{ name: admin, match: {{ host: admin.example, path_prefix: / }}, upstream: a }}\n  \
         - {{ name: public, match: {{ host: public.example, path_prefix: / }}, upstream: p }}\n",
        upstream_yaml("a", &[admin.addr], "    retries: 0\n"),
        upstream_yaml("p", &[public.addr], "    retries: 0\n"),
    ))
    .await;
    let refused = [
        ("no Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n"),
        (
            "two Host fields",
            "GET / HTTP/1.1\r\nHost: public.example\r\nHost: admin.example\r\n\r\n",
        ),
        (
            "userinfo in Host",
            "GET / HTTP/1.1\r\nHost: public.example@admin.example\r\n\r\n",
        ),
        (
            "two ports in Host",
            "GET / HTTP/1.1\r\nHost: admin.example:80:80\r\n\r\n",
        ),
        (
            "absolute form naming another host than Host",
            "GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
        ),
        (
            "userinfo in the absolute form",
            "GET http://u@public.example/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
        ),
        (
            "absolute form without Host",
            "GET http://admin.example/x HTTP/1.1\r\n\r\n",
        ),
    ];
    for (what, req) in refused {
        let r = exchange(gw.addr(), req.as_bytes()).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
    }
    admin.assert_untouched("Host oddities");
    public.assert_untouched("Host oddities");
    // Accepted: case-insensitive host with a port, a matching absolute form.
    for req in [
        "GET /p HTTP/1.1\r\nHost: PUBLIC.Example:8080\r\n\r\n",
        "GET http://public.example/q HTTP/1.1\r\nHost: public.example\r\n\r\n",
    ] {
        let r = exchange(gw.addr(), req.as_bytes()).await;
        assert_eq!(r.status, 200, "{req:?}: {}", r.text());
    }
    let heads = public.heads();
    assert_eq!(heads.len(), 2);
    assert!(
        heads[1].starts_with("GET /q HTTP/1.1"),
        "origin form upstream"
    );
    admin.assert_untouched("accepted requests");
    // HTTP/1.0 needs no Host: routed without one (no host-less route here).
    let r = exchange(gw.addr(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert_gateway_error(&r, 404, "no-route");
}

// ---------------------------------------------------------------------------------------------
// Slow and big

#[tokio::test]
async fn slowloris_trickle_gets_408_at_the_header_deadline() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "{ header_read_timeout: 500ms }").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let head = b"GET /slow HTTP/1.1\r\nHost: gw\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut answer = Vec::new();
    // One byte every 50 ms: always something new, never a whole head within the deadline.
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("request-timeout"), "{text:?}");
    assert!(
        elapsed < Duration::from_secs(4),
        "408 at the deadline of the first byte, not per byte: {elapsed:?}"
    );
    rec.assert_untouched("a trickled head");
}

#[tokio::test]
async fn slow_body_is_cut_by_the_body_idle_timeout() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "{ body_idle_timeout: 300ms }").await;
    let mut c = Conn::open(gw.addr()).await;
    c.send(b"POST /slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    let r = c.response().await;
    assert_gateway_error(&r, 408, "request-timeout");
    // The upstream saw the head and the first bytes stream through, never a complete request,
    // and its connection was closed.
    assert!(
        eventually(WAIT, || rec.connections() == 1 && rec.all_closed()).await,
        "upstream connection closed: {:?}",
        rec.text()
    );
    assert_eq!(rec.requests(), 0, "{:?}", rec.text());
    assert!(rec.text().starts_with("POST /slow HTTP/1.1\r\n"));
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed_after_the_idle_timeout() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "{ keepalive_timeout: 500ms }").await;
    let mut c = Conn::open(gw.addr()).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
    let idle_from = Instant::now();
    let (rest, closed) = c.rest().await;
    assert!(closed, "idle connection closed within {WAIT:?}");
    assert!(rest.is_empty(), "closed quietly: {rest:?}");
    assert!(
        idle_from.elapsed() >= Duration::from_millis(400),
        "not before the idle timeout: {:?}",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn declared_oversized_bodies_get_413_before_a_byte_is_sent() {
    let rec = Recorder::start().await;
    let gw = one_route_gateway(rec.addr, "", ", max_body: 1KiB").await;
    // Only the head: the 413 must come without the gateway waiting for the body.
    let r = answered_then_closed(
        gw.addr(),
        b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000000\r\n\r\n",
        "1 GB declared",
    )
    .await;
    assert_gateway_error(&r, 413, "body-too-large");
    rec.assert_untouched("an oversized declared body");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 floods (h2c prior knowledge, frames written by hand)

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /` on `http://gw` in HPACK: static-table entries and a literal `:authority`.
const GET_BLOCK: [u8; 7] = [0x82, 0x86, 0x84, 0x01, 0x02, b'g', b'w'];

/// What a raw HTTP/2 client saw from the server.
#[derive(Debug, Default)]
struct H2Seen {
    /// Streams answered with a `:status 200` head.
    ok: Vec<u32>,
    /// Streams reset by the server, with the error code.
    resets: Vec<(u32, u32)>,
    /// GOAWAY error code.
    goaway: Option<u32>,
    closed: bool,
}

/// Read frames until the connection closes, `done` holds, or `within` passes; SETTINGS are
/// acknowledged.
async fn read_h2(s: &mut TcpStream, within: Duration, done: impl Fn(&H2Seen) -> bool) -> H2Seen {
    let deadline = Instant::now() + within;
    let mut seen = H2Seen::default();
    let mut buf = Vec::new();
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                SETTINGS if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                }
                HEADERS if payload.first() == Some(&0x88) => seen.ok.push(stream),
                RST_STREAM if payload.len() == 4 => {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    seen.resets.push((stream, code));
                }
                GOAWAY if payload.len() >= 8 => {
                    seen.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                _ => {}
            }
        }
        if done(&seen) {
            return seen;
        }
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return seen,
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn http2_rapid_reset_gets_goaway_and_other_clients_are_served() {
    let rec = Recorder::start().await;
    let gw = gateway_to(&rec, "").await;
    const STREAMS: u32 = 5000;
    let mut flood = PREFACE.to_vec();
    flood.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..STREAMS {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &GET_BLOCK));
        flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let started = Instant::now();
    // The server may hang up before the whole flood is written.
    let _ = s.write_all(&flood).await;
    let seen = read_h2(&mut s, Duration::from_secs(15), |seen| {
        seen.goaway.is_some()
    })
    .await;
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "GOAWAY(ENHANCE_YOUR_CALM) after {:?}: {seen:?}",
        started.elapsed()
    );
    // Another client is served while and after the flood connection winds down.
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        exchange(gw.addr(), b"GET /other HTTP/1.1\r\nHost: gw\r\n\r\n").await
    })
    .await
    .expect("another client answered within 5 s");
    assert_eq!(r.status, 200);
    // Only a bounded share of the reset streams went upstream.
    let forwarded = rec.requests();
    assert!(
        forwarded < STREAMS as usize / 2,
        "{forwarded} of {STREAMS} reset streams were forwarded"
    );
}

#[tokio::test]
async fn http2_streams_over_the_concurrency_limit_are_refused() {
    let rec = Recorder::with_delay(Duration::from_millis(1500)).await;
    let gw = gateway_to(&rec, "{ max_concurrent_streams: 4 }").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..10u32 {
        out.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &GET_BLOCK,
        ));
    }
    s.write_all(&out).await.expect("write streams");
    // Meanwhile another client is served (the upstream is slow: within its delay and more).
    let other = tokio::spawn({
        let addr = gw.addr();
        async move { exchange(addr, b"GET /other HTTP/1.1\r\nHost: gw\r\n\r\n").await }
    });
    let seen = read_h2(&mut s, Duration::from_secs(15), |seen| {
        seen.ok.len() + seen.resets.len() >= 10
    })
    .await;
    let refused: Vec<u32> = seen
        .resets
        .iter()
        .filter(|(_, code)| *code == REFUSED_STREAM)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(seen.ok.len(), 4, "{seen:?}");
    assert_eq!(refused.len(), 6, "{seen:?}");
    assert_eq!(seen.goaway, None, "{seen:?}");
    let r = other.await.expect("other client task");
    assert_eq!(r.status, 200);
    assert_eq!(rec.requests(), 5, "4 streams and the other client");
}

// ---------------------------------------------------------------------------------------------
// Authentication pitfalls, end to end

const JWT_SECRET: &str = "hostile-jwt-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn hs(alg: Algorithm, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("signs")
}

#[tokio::test]
async fn auth_pitfalls_through_the_gateway_never_reach_the_upstream() {
    let protected = Recorder::start().await;
    let open = Recorder::start().await;
    let gw = gateway(&format!(
        "upstreams:\n{}{}consumers:\n  - name: alice\n    keys: [alice-secret-key]\n    \
         jwt: [{{ issuer: alice-app, algorithm: HS256, secret: {JWT_SECRET} }}]\nroutes:\n  \
         - {{ name: jwt, match: {{ path_prefix: /jwt }}, upstream: p, filters: [{{ plugin: jwt-auth, timeout: 2s, config: {{}} }}] }}\n  \
         - {{ name: key, match: {{ path_prefix: /key }}, upstream: p, filters: [{{ plugin: key-auth, timeout: 2s, config: {{}} }}] }}\n  \
         - {{ name: open, match: {{ path_prefix: / }}, upstream: o }}\n",
        upstream_yaml("p", &[protected.addr], "    retries: 0\n"),
        upstream_yaml("o", &[open.addr], "    retries: 0\n"),
    ))
    .await;
    let t = now();
    let good = hs(
        Algorithm::HS256,
        &json!({ "iss": "alice-app", "sub": "u1", "exp": t + 600 }),
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({ "iss": "alice-app", "exp": t + 600 }).to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "jwt: no token, reached through a dot segment",
            "GET /open/../jwt HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        ),
        (
            "jwt: alg none",
            format!("GET /jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {none}\r\n\r\n"),
        ),
        (
            "jwt: another HMAC algorithm than the pinned one",
            format!(
                "GET /jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n",
                hs(
                    Algorithm::HS512,
                    &json!({ "iss": "alice-app", "exp": t + 600 })
                )
            ),
        ),
        (
            "jwt: expired",
            format!(
                "GET /jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n",
                hs(
                    Algorithm::HS256,
                    &json!({ "iss": "alice-app", "exp": t - 3600 })
                )
            ),
        ),
        (
            "jwt: two tokens",
            format!(
                "GET /jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {good}\r\n\
                 Authorization: Bearer {none}\r\n\r\n"
            ),
        ),
        (
            "jwt: token in the query where not configured",
            format!("GET /jwt?jwt={good}&access_token={good} HTTP/1.1\r\nHost: gw\r\n\r\n"),
        ),
        (
            "jwt: Authorization nominated away by Connection",
            format!(
                "GET /jwt HTTP/1.1\r\nHost: gw\r\nConnection: authorization\r\n\
                 Authorization: Bearer {good}\r\n\r\n"
            ),
        ),
        (
            "key: key in the query where not configured",
            "GET /key?apikey=alice-secret-key&api_key=alice-secret-key HTTP/1.1\r\nHost: gw\r\n\r\n"
                .into(),
        ),
        (
            "key: two different keys",
            "GET /key HTTP/1.1\r\nHost: gw\r\napikey: alice-secret-key\r\napikey: wrong-key\r\n\r\n"
                .into(),
        ),
        (
            "key: reached through an encoded dot segment, no key",
            "GET /open/%2E%2E/key HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        ),
        (
            "key: a spoofed consumer instead of a key",
            "GET /key HTTP/1.1\r\nHost: gw\r\nX-Consumer-Name: alice\r\n\r\n".into(),
        ),
    ];
    for (what, req) in &cases {
        let r = exchange(gw.addr(), req.as_bytes()).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(!r.text().contains(&good), "{what}: no token echoed");
    }
    protected.assert_untouched("refused credentials");
    open.assert_untouched("requests for protected routes");
    // The controls: the good token and the key pass, and only they reach the upstream.
    let r = exchange(
        gw.addr(),
        format!("GET /jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {good}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = exchange(
        gw.addr(),
        b"GET /key HTTP/1.1\r\nHost: gw\r\napikey: alice-secret-key\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let heads = protected.heads();
    assert_eq!(heads.len(), 2);
    for head in &heads {
        assert_eq!(head_field(head, "x-consumer-name"), (Some("alice"), 1));
        assert!(!head.contains(&good) && !head.contains("alice-secret-key"));
    }
}
