//! Faults, each from three sides: what the client sees (status, `ferrox-error`, JSON body), what
//! `/metrics` counts, and that the gateway recovers by itself once the fault is gone.
//!
//! Upstreams that refuse, reset mid-response, hang, truncate a chunked body or flap; a Redis
//! and a PostgreSQL that die and come back under load; a plugin that traps on every call; the
//! config file replaced with garbage under load; SIGTERM under load on the real binary. Hot
//! reloads under load are `lifecycle::reloads_under_load_fail_no_request`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrox_host::body::ProxyBody;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::support::*;

/// How long anything that should happen "soon" may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A series' value in a scrape, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    metric_value(text, series).unwrap_or(0.0)
}

/// `ferrox_upstream_errors_total{upstream="u",kind}`.
fn upstream_errors(text: &str, kind: &str) -> f64 {
    metric(
        text,
        &format!("ferrox_upstream_errors_total{{kind=\"{kind}\",upstream=\"u\"}}"),
    )
}

/// `ferrox_requests_total{route,method="GET",status}`.
fn answered(text: &str, route: &str, status: u16) -> f64 {
    metric(
        text,
        &format!("ferrox_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}}"),
    )
}

/// `ferrox_breaker_state` of `target` in upstream `u`.
fn breaker(text: &str, target: SocketAddr) -> Option<f64> {
    metric_value(
        text,
        &format!("ferrox_breaker_state{{target=\"{target}\",upstream=\"u\"}}"),
    )
}

/// `ferrox_target_healthy` of `target` in upstream `u`.
fn healthy(text: &str, target: SocketAddr) -> Option<f64> {
    metric_value(
        text,
        &format!("ferrox_target_healthy{{target=\"{target}\",upstream=\"u\"}}"),
    )
}

/// `r` is a response the gateway made for error `kind`: the status, the `ferrox-error`
/// header, and the JSON body naming the same kind and status.
#[track_caller]
fn assert_gateway_error(r: &Resp, status: u16, kind: &str) {
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status.as_u16(), status, "{body}");
    assert_eq!(r.header("ferrox-error"), Some(kind), "{body}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["error"], kind, "{body}");
    assert_eq!(j["status"], status, "{body}");
    assert!(
        j["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(j["request_id"].is_string(), "{body}");
}

/// Poll `f` until it holds, every 20 ms, for at most [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll a condition until it holds, every 10 ms, for at most [`DEADLINE`].
async fn until_true(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Poll `/metrics` until `series` reads `want`; returns that scrape.
async fn until_metric(gw: &Gw, series: &str, want: f64) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = gw.metrics().await;
        if metric_value(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never read {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET that reports failures instead of panicking (for load generators).
async fn try_get(
    c: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let req = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = match tokio::time::timeout(DEADLINE, c.request(req)).await {
        Err(_) => return Err("no answer within the deadline".into()),
        Ok(Err(e)) => return Err(format!("client error: {e:?}")),
        Ok(Ok(resp)) => resp,
    };
    let (parts, body) = resp.into_parts();
    match tokio::time::timeout(DEADLINE, body.collect()).await {
        Ok(Ok(b)) => Ok((parts.status, parts.headers, b.to_bytes())),
        Ok(Err(e)) => Err(format!("{} then body error: {e:?}", parts.status)),
        Err(_) => Err(format!("{} then no body within the deadline", parts.status)),
    }
}

/// A local address nothing listens on (bound, read, released).
fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<ProxyBody>> + Send + Sync>;

/// An upstream that can be taken down completely, listener and every open connection (so its
/// port refuses connections), and brought back on the same port.
struct Switchable {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    handler: Handler,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Switchable {
    async fn new(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut s = Self {
            addr: listener.local_addr().expect("addr"),
            hits: Arc::new(AtomicUsize::new(0)),
            handler,
            task: None,
        };
        s.serve(listener);
        s
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&mut self, listener: TcpListener) {
        let handler = self.handler.clone();
        let hits = self.hits.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let (handler, hits) = (handler.clone(), hits.clone());
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                hits.fetch_add(1, Ordering::SeqCst);
                                let fut = handler(req);
                                async move { Ok::<_, std::convert::Infallible>(fut.await) }
                            });
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }));
    }

    /// Close the listener and every connection; returns once the port refuses.
    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listen on the same port again.
    async fn up(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A handler answering 200 `ok` (and `connection: close`, so the gateway pools nothing and
/// every request opens a connection: a closed port is seen at once).
fn ok_handler() -> Handler {
    Arc::new(
        |_req: Request<Incoming>| -> BoxFuture<'static, Response<ProxyBody>> {
            Box::pin(async move {
                let mut r = text_response(StatusCode::OK, "ok");
                r.headers_mut()
                    .insert("connection", "close".parse().expect("value"));
                r
            })
        },
    )
}

/// A document with upstream `u` (one target, `extra` settings indented by four spaces) and
/// route `r` on `/`.
fn one_route(target: SocketAddr, extra: &str) -> String {
    format!(
        "upstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
        upstream_yaml("u", &[target], extra)
    )
}

/// Read an HTTP/1.1 request head from `sock` (up to the blank line).
async fn read_head(sock: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

/// A raw upstream: connection `i` gets `answers(i)` written after its request head, then the
/// socket is closed (with a reset when `reset_after` is given, once it is notified).
async fn scripted_upstream(
    answers: fn(usize) -> &'static [u8],
    reset_after: Option<Arc<Notify>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let i = count.fetch_add(1, Ordering::SeqCst);
            let reset = reset_after.clone();
            tokio::spawn(async move {
                read_head(&mut sock).await;
                let _ = sock.write_all(answers(i)).await;
                let _ = sock.flush().await;
                match (i, reset) {
                    (0, Some(notify)) => {
                        notify.notified().await;
                        // RST instead of FIN: the connection is reset mid-body.
                        let _ = sock.set_zero_linger();
                        drop(sock);
                    }
                    _ => {
                        let _ = sock.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, served)
}

// ---------------------------------------------------------------------------------------------
// Upstream faults
// ---------------------------------------------------------------------------------------------

/// A target whose port refuses: 502 `upstream-connect` for each request, each counted as a
/// connect error; once something listens there again, the next request is served.
#[tokio::test]
async fn upstream_refusing_is_a_counted_502_until_it_listens_again() {
    let addr = closed_addr();
    let gw = gateway(&one_route(
        addr,
        "    retries: 0\n    circuit_breaker: { failures: 100, cooldown: 1s }\n",
    ))
    .await;
    for _ in 0..3 {
        let r = get(&gw.url("/x")).await;
        assert_gateway_error(&r, 502, "upstream-connect");
    }
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "connect"), 3.0, "{m}");
    assert_eq!(answered(&m, "r", 502), 3.0, "{m}");
    assert_eq!(
        breaker(&m, addr),
        Some(0.0),
        "below the breaker's threshold"
    );

    // The port opens: served again, with no intervention on the gateway.
    let up = upstream_on(
        TcpListener::bind(addr).await.expect("rebind the port"),
        |_req| async { text_response(StatusCode::OK, "back") },
    )
    .await;
    let r = get(&gw.url("/x")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"back"[..]));
    assert_eq!(up.hits(), 1);
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "connect"), 3.0, "no new error: {m}");
    assert_eq!(answered(&m, "r", 200), 1.0, "{m}");
}

/// The upstream sends its head and part of a declared body, then resets the connection: the
/// client has the 200 head and part of the body, and then an error, never a clean end; the
/// failure is counted as a protocol error; the next request is whole.
#[tokio::test]
async fn upstream_reset_mid_body_aborts_the_downstream_body_and_is_counted() {
    fn answers(i: usize) -> &'static [u8] {
        if i == 0 {
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst-part"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nwhole"
        }
    }
    let reset = Arc::new(Notify::new());
    let (addr, served) = scripted_upstream(answers, Some(reset.clone())).await;
    let gw = gateway(&one_route(addr, "    retries: 0\n")).await;

    let req = Request::get(gw.url("/x"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(DEADLINE, client().request(req))
        .await
        .expect("head in time")
        .expect("head");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-length").map(|v| v.as_bytes()),
        Some(&b"1000"[..])
    );
    let mut body = resp.into_body();
    let mut got = Vec::new();
    // The bytes sent before the reset arrive; then the upstream resets.
    while got.len() < 10 {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("first bytes in time")
            .expect("a frame before the reset")
            .expect("no error before the reset");
        if let Some(d) = frame.data_ref() {
            got.extend_from_slice(d);
        }
    }
    assert_eq!(got, b"first-part");
    reset.notify_one();
    let end = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("the body ends in time");
    assert!(end.is_err(), "the cut body ended cleanly: {end:?}");

    let m = until_metric(
        &gw,
        "ferrox_upstream_errors_total{kind=\"protocol\",upstream=\"u\"}",
        1.0,
    )
    .await;
    assert_eq!(upstream_errors(&m, "connect"), 0.0, "{m}");
    assert_eq!(answered(&m, "r", 200), 1.0, "the head was a 200: {m}");

    let r = get(&gw.url("/x")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"whole"[..]));
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "protocol"), 1.0, "{m}");
}

/// An upstream that accepts and never answers: 504 `upstream-timeout` after the request
/// timeout, each counted as a timeout and never retried; it answers again and so does the
/// gateway.
#[tokio::test]
async fn upstream_hanging_is_a_counted_504_after_the_timeout() {
    let hang = Arc::new(AtomicBool::new(true));
    let up = {
        let hang = hang.clone();
        upstream(move |_req: Request<Incoming>| {
            let hang = hang.load(Ordering::SeqCst);
            async move {
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                text_response(StatusCode::OK, "answered")
            }
        })
        .await
    };
    let gw = gateway(&one_route(
        up.addr,
        "    timeouts: { request: 300ms }\n    circuit_breaker: { failures: 100, cooldown: 1s }\n",
    ))
    .await;
    for i in 1..=3 {
        let started = Instant::now();
        let r = get(&gw.url("/x")).await;
        let took = started.elapsed();
        assert_gateway_error(&r, 504, "upstream-timeout");
        assert!(took >= Duration::from_millis(290), "early: {took:?}");
        assert!(took < Duration::from_secs(5), "late: {took:?}");
        assert_eq!(up.hits(), i, "a timed-out request is not retried");
    }
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "timeout"), 3.0, "{m}");
    assert_eq!(answered(&m, "r", 504), 3.0, "{m}");

    hang.store(false, Ordering::SeqCst);
    let r = get(&gw.url("/x")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"answered"[..]));
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "timeout"), 3.0, "{m}");
}

/// A chunked body cut short (chunks, then the connection closes without the last chunk):
/// downstream over HTTP/1.1 never gets a final `0\r\n\r\n`, the cache filter never stores it
/// (the next request is a MISS and is whole, the one after a HIT), and it is counted.
#[tokio::test]
async fn truncated_chunked_body_is_never_completed_nor_cached() {
    fn answers(i: usize) -> &'static [u8] {
        if i == 0 {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        }
    }
    let (addr, served) = scripted_upstream(answers, None).await;
    let gw = gateway(&format!(
        "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: cache, timeout: 2s, config: {{}} }}\n",
        upstream_yaml("u", &[addr], "    retries: 0\n")
    ))
    .await;

    let raw_answer = raw(
        gw.addr(),
        b"GET /t HTTP/1.1\r\nhost: faults\r\nconnection: close\r\n\r\n",
        DEADLINE,
    )
    .await;
    assert_eq!(raw_status(&raw_answer), 200, "{raw_answer:?}");
    let lower = raw_answer.to_ascii_lowercase();
    assert!(
        lower.contains("transfer-encoding: chunked"),
        "{raw_answer:?}"
    );
    assert!(lower.contains("x-cache-status: miss"), "{raw_answer:?}");
    let (_, body) = raw_answer.split_once("\r\n\r\n").expect("a head");
    assert!(body.contains("hello"), "the chunks sent arrive: {body:?}");
    assert!(
        !body.contains("0\r\n\r\n"),
        "the cut body was completed with a final chunk: {body:?}"
    );

    let m = until_metric(
        &gw,
        "ferrox_upstream_errors_total{kind=\"protocol\",upstream=\"u\"}",
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            &m,
            "ferrox_cache_lookups_total{result=\"miss\",route=\"r\"}"
        ),
        1.0,
        "{m}"
    );

    let next = get(&gw.url("/t")).await;
    assert_eq!(next.status, 200);
    assert_eq!(
        next.header("x-cache-status"),
        Some("MISS"),
        "nothing stored"
    );
    assert_eq!(&next.body[..], b"hello world");
    let hit = get(&gw.url("/t")).await;
    assert_eq!(
        hit.header("x-cache-status"),
        Some("HIT"),
        "the whole one is"
    );
    assert_eq!(&hit.body[..], b"hello world");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "ferrox_cache_lookups_total{result=\"miss\",route=\"r\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ferrox_cache_lookups_total{result=\"hit\",route=\"r\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(upstream_errors(&m, "protocol"), 1.0, "{m}");
}

/// A target that goes away, comes back, goes away and comes back: after `failures` connect
/// errors the circuit opens (503 `circuit-open`, nothing sent), after the cool-down one probe
/// is let through (half-open, everyone else still refused), its success closes the circuit.
/// The breaker gauge follows each step; every refusal and failure is counted.
#[tokio::test]
async fn upstream_flapping_opens_probes_and_closes_the_circuit() {
    let (gate, gate_rx) = watch::channel(true);
    let handler: Handler = Arc::new(
        move |_req: Request<Incoming>| -> BoxFuture<'static, Response<ProxyBody>> {
            let mut gate = gate_rx.clone();
            Box::pin(async move {
                // Held while the gate is closed (to watch a probe in flight).
                let _ = tokio::time::timeout(DEADLINE, gate.wait_for(|open| *open)).await;
                let mut r = text_response(StatusCode::OK, "ok");
                r.headers_mut()
                    .insert("connection", "close".parse().expect("value"));
                r
            })
        },
    );
    let mut up = Switchable::new(handler).await;
    let addr = up.addr;
    let gw = gateway(&one_route(
        addr,
        "    retries: 0\n    circuit_breaker: { failures: 3, cooldown: 1s }\n",
    ))
    .await;
    let url = gw.url("/x");
    let mut refused_open = 0;
    let mut connect_failures = 0;

    for flap in 0..2 {
        // Up.
        for _ in 0..3 {
            assert_eq!(get(&url).await.status, 200, "flap {flap}");
        }
        assert_eq!(breaker(&gw.metrics().await, addr), Some(0.0), "closed");

        // Down: three connect failures open the circuit; then nothing is attempted.
        up.down().await;
        for _ in 0..3 {
            assert_gateway_error(&get(&url).await, 502, "upstream-connect");
            connect_failures += 1;
        }
        let m = gw.metrics().await;
        assert_eq!(breaker(&m, addr), Some(1.0), "open: {m}");
        for _ in 0..3 {
            assert_gateway_error(&get(&url).await, 503, "circuit-open");
            refused_open += 1;
        }
        let m = gw.metrics().await;
        assert_eq!(
            upstream_errors(&m, "connect"),
            connect_failures as f64,
            "an open circuit sends nothing: {m}"
        );

        // Up again. The first request after the cool-down is the probe; hold it upstream.
        let hits_before = up.hits();
        gate.send_replace(false);
        up.up().await;
        let probe = {
            let url = url.clone();
            tokio::spawn(async move {
                let mut refused = 0;
                loop {
                    let r = get(&url).await;
                    if r.header("ferrox-error") == Some("circuit-open") {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    return (r, refused);
                }
            })
        };
        until_true("the probe reaches the target", || up.hits() > hits_before).await;
        let m = gw.metrics().await;
        assert_eq!(breaker(&m, addr), Some(2.0), "half-open: {m}");
        for _ in 0..2 {
            assert_gateway_error(&get(&url).await, 503, "circuit-open");
            refused_open += 1;
        }
        assert_eq!(up.hits(), hits_before + 1, "exactly one probe");
        gate.send_replace(true);
        let (r, refused) = probe.await.expect("probe task");
        refused_open += refused;
        assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
        assert_eq!(
            breaker(&gw.metrics().await, addr),
            Some(0.0),
            "closed again"
        );
    }
    assert_eq!(get(&url).await.status, 200);
    let m = gw.metrics().await;
    assert_eq!(upstream_errors(&m, "connect"), 6.0, "{m}");
    assert_eq!(answered(&m, "r", 502), 6.0, "{m}");
    assert_eq!(answered(&m, "r", 503), refused_open as f64, "{m}");
    assert_eq!(answered(&m, "r", 200), 9.0, "{m}");
}

/// Active health checks follow a target that goes away and comes back: it is marked down
/// (gauge 0) and requests get 503 `no-healthy-target` without an attempt, then marked up again
/// and served, with nobody stepping in.
#[tokio::test]
async fn health_checks_take_a_flapping_target_out_and_back() {
    let mut up = Switchable::new(ok_handler()).await;
    let addr = up.addr;
    let gw = gateway(&one_route(
        addr,
        "    retries: 0\n    circuit_breaker: { failures: 100, cooldown: 1s }\n    health_check: { path: /health, interval: 100ms, healthy: 2, unhealthy: 2, timeout: 1s }\n",
    ))
    .await;
    for flap in 0..2 {
        until_metric(
            &gw,
            &format!("ferrox_target_healthy{{target=\"{addr}\",upstream=\"u\"}}"),
            1.0,
        )
        .await;
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 200, "flap {flap}");

        up.down().await;
        until_metric(
            &gw,
            &format!("ferrox_target_healthy{{target=\"{addr}\",upstream=\"u\"}}"),
            0.0,
        )
        .await;
        for _ in 0..3 {
            assert_gateway_error(&get(&gw.url("/x")).await, 503, "no-healthy-target");
        }
        let m = gw.metrics().await;
        assert_eq!(
            upstream_errors(&m, "connect"),
            0.0,
            "nothing sent to a target marked down: {m}"
        );
        up.up().await;
    }
    until_metric(
        &gw,
        &format!("ferrox_target_healthy{{target=\"{addr}\",upstream=\"u\"}}"),
        1.0,
    )
    .await;
    assert_eq!(get(&gw.url("/x")).await.status, 200);
    let m = gw.metrics().await;
    assert_eq!(answered(&m, "r", 503), 6.0, "{m}");
    assert_eq!(answered(&m, "r", 200), 3.0, "{m}");
    assert_eq!(healthy(&m, addr), Some(1.0));
}

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

/// What one load request saw.
struct Seen {
    /// The phase when the request started.
    phase: usize,
    status: u16,
    /// `r` of the `RateLimit` header, when present.
    remaining: Option<u64>,
    failure: Option<String>,
}

/// `r` of a `RateLimit` header value (`"<name>";r=<r>;t=<t>`).
fn remaining_of(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("ratelimit")?
        .to_str()
        .ok()?
        .split(';')
        .find_map(|p| p.strip_prefix("r="))?
        .parse()
        .ok()
}

/// Redis dies under load and comes back on the same port: with `fail_open`, requests keep
/// flowing while it is gone (200 without `RateLimit`, each counted as a `store_errors`), and
/// once it is back exact counting resumes on its own (the counts the clients saw are exactly
/// 1..=N of the new Redis's counter). No 5xx at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_and_coming_back_under_load_fails_open_then_counts_exactly() {
    use crate::redis_state::RedisServer;
    const LIMIT: u64 = 1_000_000;
    let port = closed_addr().port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let ready_url = redis_url.clone();
    let redis_ready = move || {
        let url = ready_url.clone();
        async move {
            let Ok(c) = redis::Client::open(url.as_str()) else {
                return false;
            };
            match tokio::time::timeout(Duration::from_secs(1), c.get_multiplexed_async_connection())
                .await
            {
                Ok(Ok(mut conn)) => redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok(),
                _ => false,
            }
        }
    };
    let mut server = Some(RedisServer::start(port));
    until("the private Redis answers", redis_ready).await;

    let up = echo_upstream().await;
    let prefix = format!("ferrox-it:{:016x}:", fastrand::u64(..));
    let gw = gateway(&format!(
        "state: {redis_url}\nstate_options: {{ key_prefix: \"{prefix}\", timeout: 2s }}\nupstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: rate-limit\n        timeout: 3s\n        config: {{ limits: [{{ requests: {LIMIT}, window: 1d }}], policy: fail_open }}\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (phase, stop, seen) = (phase.clone(), stop.clone(), seen.clone());
        let url = gw.url("/load");
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                let p = phase.load(Ordering::SeqCst);
                let s = match try_get(&c, &url).await {
                    Ok((status, headers, _)) => Seen {
                        phase: p,
                        status: status.as_u16(),
                        remaining: remaining_of(&headers),
                        failure: None,
                    },
                    Err(e) => Seen {
                        phase: p,
                        status: 0,
                        remaining: None,
                        failure: Some(e),
                    },
                };
                seen.lock().expect("lock").push(s);
            }
        }));
    }
    let count =
        |f: &dyn Fn(&Seen) -> bool| seen.lock().expect("lock").iter().filter(|s| f(s)).count();

    // Counting normally.
    until_true("counted answers before the outage", || {
        count(&|s| s.phase == 0 && s.remaining.is_some()) >= 50
    })
    .await;
    // Redis dies (killed and reaped before the phase moves on: requests started from now on
    // can never reach it): the limiter fails open.
    drop(server.take());
    phase.store(1, Ordering::SeqCst);
    until_true("answers let through while Redis is gone", || {
        count(&|s| s.phase == 1 && s.status == 200 && s.remaining.is_none()) >= 50
    })
    .await;
    // Redis is back, empty, on the same port: found again and counting from zero.
    phase.store(2, Ordering::SeqCst);
    server = Some(RedisServer::start(port));
    until_true("counted answers after Redis is back", || {
        count(&|s| s.phase == 2 && s.remaining.is_some()) >= 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(DEADLINE, w)
            .await
            .expect("workers stop")
            .expect("worker");
    }

    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let unexpected: Vec<String> = seen
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| {
            s.failure
                .clone()
                .unwrap_or_else(|| format!("{} in phase {}", s.status, s.phase))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {} requests failed: {:?}",
        unexpected.len(),
        seen.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    // Every request let through without a count is one store error, exactly.
    let uncounted = seen.iter().filter(|s| s.remaining.is_none()).count();
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "ferrox_plugin_counter_total{name=\"store_errors\",plugin=\"rate-limit\"}"
        ),
        uncounted as f64,
        "{m}"
    );
    assert_eq!(
        up.hits(),
        seen.len(),
        "fail_open: every request reached the upstream"
    );
    // Requests started once Redis was gone can only have been counted by the new one: their
    // counts are exactly 1..=N, and the new Redis holds N.
    let mut after: Vec<u64> = seen
        .iter()
        .filter(|s| s.phase >= 1)
        .filter_map(|s| s.remaining)
        .map(|r| LIMIT - r)
        .collect();
    after.sort_unstable();
    let n = after.len() as u64;
    assert!(n >= 50);
    assert_eq!(
        after,
        (1..=n).collect::<Vec<u64>>(),
        "exact, gap-free counts"
    );
    let client = redis::Client::open(redis_url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the new Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}c:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored: u64 = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(
        stored, n,
        "the new Redis counted exactly the counted answers"
    );
    drop(server);
}

/// PostgreSQL (the config store) goes away under continuous proxy load and comes back: no
/// proxied request fails, `ferrox_store_up` goes to 0 and back to 1, admin writes answer 503
/// while it is gone and work again afterwards, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dying_and_coming_back_under_load_fails_no_request() {
    use crate::admin_api::call;
    use crate::pg_store::TestDb;

    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "database_url: {}\nupstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
        db.url,
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    assert_eq!(gw.running.control.store.kind(), "postgres");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
        let url = gw.url("/load");
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                let outcome = try_get(&c, &url).await;
                sent.fetch_add(1, Ordering::SeqCst);
                match outcome {
                    Ok((s, _, _)) if s == 200 => {}
                    Ok((s, _, b)) => failures
                        .lock()
                        .expect("lock")
                        .push(format!("{s} {}", String::from_utf8_lossy(&b))),
                    Err(e) => failures.lock().expect("lock").push(e),
                }
            }
        }));
    }
    until_true("load is running", || sent.load(Ordering::SeqCst) >= 20).await;

    db.cut().await;
    until_metric(&gw, "ferrox_store_up", 0.0).await;
    let during = sent.load(Ordering::SeqCst);
    let route =
        serde_json::json!({ "name": "new", "match": { "path_prefix": "/new" }, "upstream": "u" });
    let r = call(&gw, Method::POST, "/routes", Some(route.clone())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    until_true("requests served during the outage", || {
        sent.load(Ordering::SeqCst) >= during + 100
    })
    .await;

    db.restore().await;
    until_metric(&gw, "ferrox_store_up", 1.0).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = call(&gw, Method::POST, "/routes", Some(route.clone())).await;
        if r.status == StatusCode::CREATED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admin writes do not recover: {} {:?}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_url = gw.url("/new/x");
    until("the new route serves", || {
        let url = new_url.clone();
        async move { get(&url).await.status == 200 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(DEADLINE, w)
            .await
            .expect("workers stop")
            .expect("worker");
    }
    let failures = failures.lock().expect("lock").clone();
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {sent} proxied requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let m = gw.metrics().await;
    assert_eq!(answered(&m, "r", 200), sent as f64, "{m}");
}

// ---------------------------------------------------------------------------------------------
// Plugins and configuration
// ---------------------------------------------------------------------------------------------

/// A plugin that traps on every call, under load, with `on_error: closed`: every request on
/// its route is a 503 `filter`, each counted exactly once (as a trap, or as tripped once the
/// stage has tripped); requests on another route all succeed; the gateway stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_trapping_on_every_call_fails_only_its_route_and_is_counted_exactly() {
    const PER_WORKER: usize = 30;
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "upstreams:\n{}plugins:\n{}routes:\n  - name: trap\n    match: {{ path_prefix: /trap }}\n    upstream: u\n    filters:\n      - {{ plugin: trap, on_error: closed, timeout: 1s }}\n  - {{ name: ok, match: {{ path_prefix: /ok }}, upstream: u }}\n",
        upstream_yaml("u", &[up.addr], ""),
        guest_plugin_yaml("trap", &[])
    ))
    .await;
    let mut workers = Vec::new();
    for w in 0..6 {
        let route = if w < 4 { "trap" } else { "ok" };
        let url = gw.url(&format!("/{route}/x"));
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut wrong = Vec::new();
            for _ in 0..PER_WORKER {
                let req = Request::get(url.as_str())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let resp = c.request(req).await.expect("an answer");
                let (parts, body) = resp.into_parts();
                let r = Resp {
                    status: parts.status,
                    headers: parts.headers,
                    body: body_bytes(body).await,
                };
                if route == "trap" {
                    if r.status != 503 || r.header("ferrox-error") != Some("filter") {
                        wrong.push(format!("trap: {} {:?}", r.status, r.body));
                    } else {
                        assert_gateway_error(&r, 503, "filter");
                    }
                } else if r.status != 200 {
                    wrong.push(format!("ok: {} {:?}", r.status, r.body));
                }
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for w in workers {
        wrong.extend(w.await.expect("worker"));
    }
    assert!(wrong.is_empty(), "{wrong:?}");

    let m = gw.metrics().await;
    let trap = metric(
        &m,
        "ferrox_filter_failures_total{kind=\"trap\",plugin=\"trap\"}",
    );
    let tripped = metric(
        &m,
        "ferrox_filter_failures_total{kind=\"tripped\",plugin=\"trap\"}",
    );
    let on_trap = (4 * PER_WORKER) as f64;
    assert_eq!(trap + tripped, on_trap, "one failure per request: {m}");
    assert!(trap >= 5.0, "five traps trip the stage: {m}");
    assert!(tripped >= 1.0, "then it is skipped: {m}");
    assert_eq!(answered(&m, "trap", 503), on_trap, "{m}");
    assert_eq!(answered(&m, "ok", 200), (2 * PER_WORKER) as f64, "{m}");
    assert_eq!(
        up.hits(),
        2 * PER_WORKER,
        "no trapped request went upstream"
    );

    // Still up: health, the other route, and the same answer on the trapping one.
    assert_eq!(get(&format!("{}/health", gw.admin)).await.status, 200);
    assert_eq!(get(&gw.url("/ok/y")).await.status, 200);
    assert_gateway_error(&get(&gw.url("/trap/y")).await, 503, "filter");
}

/// Replace `path` atomically with `bytes`.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// The watched config file replaced, under load, by random bytes, then by a truncated copy of
/// a valid file, then emptied (a write caught half-way): each is rejected and counted as a
/// failed reload while the old config keeps serving every request; the next valid file
/// applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_config_files_under_load_are_rejected_and_counted_and_fail_no_request() {
    let a = upstream(|_req: Request<Incoming>| async { text_response(StatusCode::OK, "A") }).await;
    let b = upstream(|_req: Request<Incoming>| async { text_response(StatusCode::OK, "B") }).await;
    let valid = |target: SocketAddr| one_route(target, "");
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(&path, valid(a.addr)).expect("write config");
    let gw = gateway_watching(path.clone(), Duration::from_millis(50)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let bodies = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, bodies, failures) = (stop.clone(), bodies.clone(), failures.clone());
        let url = gw.url("/x");
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                match try_get(&c, &url).await {
                    Ok((s, _, body)) if s == 200 && (body == "A" || body == "B") => {
                        *bodies
                            .lock()
                            .expect("lock")
                            .entry(String::from_utf8_lossy(&body).into_owned())
                            .or_default() += 1;
                    }
                    Ok((s, _, body)) => failures
                        .lock()
                        .expect("lock")
                        .push(format!("{s} {}", String::from_utf8_lossy(&body))),
                    Err(e) => failures.lock().expect("lock").push(e),
                }
            }
        }));
    }
    let failed_reloads = |m: &str| metric(m, "ferrox_config_reloads_total{result=\"failure\"}");

    let mut rng = fastrand::Rng::with_seed(7);
    let garbage: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(4096).collect();
    let good = valid(b.addr);
    let cut = good.find("path_prefix").expect("a route") + 6;
    let truncated = &good.as_bytes()[..cut];
    assert!(
        ferrox_host::config::parse_yaml(&String::from_utf8_lossy(truncated)).is_err(),
        "the truncated copy does not parse"
    );
    let steps: [(&str, &[u8]); 3] = [
        ("random bytes", &garbage),
        ("truncated YAML", truncated),
        ("an empty file", b""),
    ];
    for (i, (what, bytes)) in steps.into_iter().enumerate() {
        let before = bodies.lock().expect("lock").values().sum::<usize>();
        replace(&path, bytes);
        until_metric(
            &gw,
            "ferrox_config_reloads_total{result=\"failure\"}",
            (i + 1) as f64,
        )
        .await;
        // Traffic goes on through and after each rejected file.
        until_true(what, || {
            bodies.lock().expect("lock").values().sum::<usize>() >= before + 50
        })
        .await;
    }
    replace(&path, good.as_bytes());
    let url = gw.url("/x");
    until("the next valid file applies", || {
        let url = url.clone();
        async move { get(&url).await.body == "B" }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(DEADLINE, w)
            .await
            .expect("workers stop")
            .expect("worker");
    }
    let failures = failures.lock().expect("lock").clone();
    let bodies = bodies.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?} (served: {bodies:?})",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(bodies.get("A").is_some_and(|&n| n >= 150), "{bodies:?}");
    let m = gw.metrics().await;
    assert_eq!(failed_reloads(&m), 3.0, "{m}");
    assert_eq!(
        metric(&m, "ferrox_config_reloads_total{result=\"success\"}"),
        1.0,
        "only the valid file applied: {m}"
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

/// One request on its own connection (`connection: close`), read to the end.
enum Outcome {
    /// The connection was refused: the listener had closed.
    Refused,
    /// A whole response with this status and body.
    Answer(u16, String),
    /// Anything else (reset, cut short, no answer).
    Broken(String),
}

async fn one_request(addr: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Broken(format!("connect: {e}")),
    };
    if let Err(e) = s
        .write_all(b"GET /work HTTP/1.1\r\nhost: faults\r\nconnection: close\r\n\r\n")
        .await
    {
        return Outcome::Broken(format!("write: {e}"));
    }
    let mut out = Vec::new();
    match tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await {
        Err(_) => return Outcome::Broken("no answer within the deadline".into()),
        Ok(Err(e)) => {
            return Outcome::Broken(format!(
                "read: {e} after {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        Ok(Ok(_)) => {}
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Broken(format!("no head: {text:?}"));
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let declared = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(usize::MAX))
        })
        .unwrap_or(usize::MAX);
    if declared != body.len() {
        return Outcome::Broken(format!("cut short: {text:?}"));
    }
    Outcome::Answer(status, body.to_owned())
}

/// SIGTERM to the real binary while 50 clients keep requests in flight against an upstream
/// taking 100-300 ms: every request the gateway accepted completes with a 200 (requests
/// started = 200s + connections refused after the signal, exactly; the upstream saw exactly
/// the 200s), requests were in flight at the signal, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_request() {
    use crate::cli::{ferrox, free_ports, spawn_server, wait_ready};
    const CLIENTS: usize = 50;

    let up = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=300))).await;
        text_response(StatusCode::OK, "done")
    })
    .await;
    let (proxy_port, admin_port) = free_ports();
    let proxy: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = dir.path().join("ferrox.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {proxy}\nadmin: {{ listen: {admin}, token: {TOKEN} }}\nserver: {{ drain_timeout: 30s }}\n{}",
            one_route(up.addr, "")
        ),
    )
    .expect("write config");
    let mut cmd = ferrox();
    cmd.args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("FERROX_LOG", "warn");
    let mut server = spawn_server(&mut cmd, &dir);
    wait_ready(&mut server, admin).await;

    let signalled = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (signalled, started) = (signalled.clone(), started.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut in_flight_at_signal) = (0usize, 0usize, 0usize);
            let mut broken = Vec::new();
            loop {
                let before = signalled.load(Ordering::SeqCst);
                started.fetch_add(1, Ordering::SeqCst);
                match one_request(proxy).await {
                    Outcome::Refused => {
                        if before || signalled.load(Ordering::SeqCst) {
                            refused += 1;
                            break;
                        }
                        broken.push("refused before the signal".to_owned());
                        break;
                    }
                    Outcome::Answer(200, body) if body == "done" => {
                        ok += 1;
                        if !before && signalled.load(Ordering::SeqCst) {
                            in_flight_at_signal += 1;
                        }
                    }
                    Outcome::Answer(status, body) => broken.push(format!("{status} {body:?}")),
                    Outcome::Broken(why) => broken.push(why),
                }
                if !broken.is_empty() {
                    break;
                }
            }
            (ok, refused, in_flight_at_signal, broken)
        }));
    }
    until_true("load is running", || up.hits() >= 100).await;
    signalled.store(true, Ordering::SeqCst);
    server.signal("TERM");

    let (mut ok, mut refused, mut in_flight, mut broken) = (0, 0, 0, Vec::new());
    for c in clients {
        let (o, r, f, b) = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("every client ends")
            .expect("client task");
        ok += o;
        refused += r;
        in_flight += f;
        broken.extend(b);
    }
    let code = server.exited(DEADLINE).await;
    assert!(
        broken.is_empty(),
        "{} requests broken: {:?}\n{}",
        broken.len(),
        &broken[..broken.len().min(5)],
        server.logs()
    );
    let started = started.load(Ordering::SeqCst);
    assert_eq!(started, ok + refused, "started = 200s + refused, exactly");
    assert_eq!(refused, CLIENTS, "each client ends on a refused connection");
    assert_eq!(up.hits(), ok, "every request forwarded was answered");
    assert!(
        in_flight >= 1,
        "requests were in flight at the signal ({ok} answered)"
    );
    assert_eq!(code, Some(0), "exit code:\n{}", server.logs());
    println!(
        "SIGTERM under load: {started} requests started, {ok} answered 200 ({in_flight} of them in flight at the signal), {refused} refused after it"
    );
}
