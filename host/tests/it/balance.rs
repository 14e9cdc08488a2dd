//! Upstream selection and protection: load balancing, circuit breaking, active health checks,
//! retries and upstream timeouts.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrox_host::body::ProxyBody;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::*;

/// Header with which test upstreams name themselves.
const SERVED_BY: &str = "x-served-by";

/// How long to wait for an asynchronous state change (health checks, in-flight requests).
const DEADLINE: Duration = Duration::from_secs(5);

/// A response naming the upstream that made it.
fn named_response(name: &'static str) -> Response<ProxyBody> {
    let mut r = text_response(StatusCode::OK, name);
    r.headers_mut()
        .insert(SERVED_BY, HeaderValue::from_static(name));
    r
}

/// An upstream naming itself in `x-served-by`; its `/health` answers 200 while `healthy` is
/// true and 500 otherwise.
async fn named(name: &'static str, healthy: Arc<AtomicBool>) -> Upstream {
    upstream(move |req: Request<Incoming>| {
        let healthy = healthy.clone();
        async move {
            if req.uri().path() == "/health" {
                let status = if healthy.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return text_response(status, "health");
            }
            named_response(name)
        }
    })
    .await
}

/// An upstream naming itself, always healthy.
async fn plain(name: &'static str) -> Upstream {
    named(name, Arc::new(AtomicBool::new(true))).await
}

/// An upstream answering every request with 503.
async fn failing() -> Upstream {
    upstream(|_req: Request<Incoming>| async move {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "down")
    })
    .await
}

/// A local address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A config with upstream `u` (these targets, `extra` settings indented by four spaces) and a
/// route `/api` to it.
fn config(targets: &[SocketAddr], extra: &str) -> String {
    format!(
        "upstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: /api }}, upstream: u }}\n",
        upstream_yaml("u", targets, extra)
    )
}

/// Which upstream answered.
fn served_by(r: &Resp) -> String {
    assert_eq!(
        r.status,
        200,
        "unexpected answer: {:?} {}",
        r.header("ferrox-error"),
        String::from_utf8_lossy(&r.body)
    );
    r.header(SERVED_BY)
        .unwrap_or_else(|| panic!("no {SERVED_BY} header"))
        .to_owned()
}

/// `n` sequential GETs, counted by the upstream that served each.
async fn spread(gw: &Gw, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get(&gw.url("/api/x")).await;
        *counts.entry(served_by(&r)).or_insert(0) += 1;
    }
    counts
}

/// The value of metric `name` on the line carrying all `labels`, in Prometheus text.
fn labelled(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `ferrox_breaker_state` of a target of upstream `u`.
async fn breaker_state(gw: &Gw, target: SocketAddr) -> Option<f64> {
    let text = gw.metrics().await;
    labelled(
        &text,
        "ferrox_breaker_state",
        &[("upstream", "u"), ("target", &target.to_string())],
    )
}

/// `ferrox_target_healthy` of a target of upstream `u`.
async fn target_healthy(gw: &Gw, target: SocketAddr) -> Option<f64> {
    let text = gw.metrics().await;
    labelled(
        &text,
        "ferrox_target_healthy",
        &[("upstream", "u"), ("target", &target.to_string())],
    )
}

/// `ferrox_retries_total` of upstream `u` (0 when not yet reported).
async fn retries(gw: &Gw) -> f64 {
    let text = gw.metrics().await;
    labelled(&text, "ferrox_retries_total", &[("upstream", "u")]).unwrap_or(0.0)
}

/// Poll `ferrox_target_healthy` of `target` until it reads `want`.
async fn wait_target_healthy(gw: &Gw, target: SocketAddr, want: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = target_healthy(gw, target).await;
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ferrox_target_healthy for {target} is {now:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll until `up` has received `n` requests.
async fn wait_hits(up: &Upstream, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while up.hits() < n {
        assert!(
            Instant::now() < deadline,
            "upstream got {} requests, expected {n}",
            up.hits()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn round_robin_gives_each_target_an_equal_share() {
    let (a, b, c) = (plain("a").await, plain("b").await, plain("c").await);
    let gw = gateway(&config(
        &[a.addr, b.addr, c.addr],
        "    balance: round_robin\n",
    ))
    .await;
    let counts = spread(&gw, 30).await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts.get(name), Some(&10), "{counts:?}");
    }
    assert_eq!((a.hits(), b.hits(), c.hits()), (10, 10, 10));
}

#[tokio::test]
async fn least_requests_prefers_the_idle_target() {
    let slow = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        named_response("slow")
    })
    .await;
    let fast = plain("fast").await;
    let gw = gateway(&config(
        &[slow.addr, fast.addr],
        "    balance: least_requests\n",
    ))
    .await;
    // Four clients share 40 requests: whoever is free takes the next one.
    let left = Arc::new(AtomicUsize::new(40));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let left = left.clone();
        let url = gw.url("/api/x");
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                seen.push(served_by(&get(&url).await));
            }
            seen
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in workers {
        for name in w.await.expect("worker") {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    let s = counts.get("slow").copied().unwrap_or(0);
    let f = counts.get("fast").copied().unwrap_or(0);
    assert_eq!(s + f, 40, "{counts:?}");
    assert!(
        f >= 2 * s,
        "the fast target should take clearly more: {counts:?}"
    );
}

#[tokio::test]
async fn hash_on_a_header_is_sticky_and_spreads_keys() {
    let (a, b, c) = (plain("a").await, plain("b").await, plain("c").await);
    let gw = gateway(&config(
        &[a.addr, b.addr, c.addr],
        "    balance: hash\n    hash_header: x-user\n",
    ))
    .await;
    let url = gw.url("/api/x");
    let mut used = HashSet::new();
    for i in 0..30 {
        let user = format!("user-{i}");
        let first = served_by(&get_with(&url, &[("x-user", &user)]).await);
        for _ in 0..3 {
            let again = served_by(&get_with(&url, &[("x-user", &user)]).await);
            assert_eq!(again, first, "{user} moved from {first} to {again}");
        }
        used.insert(first);
    }
    assert!(used.len() > 1, "30 keys all hashed to {used:?}");
    // Without the header requests are still served (spread round robin).
    let counts = spread(&gw, 6).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[tokio::test]
async fn circuit_opens_after_failures_and_one_probe_closes_it() {
    let healthy = Arc::new(AtomicBool::new(false));
    let (release, released) = watch::channel(false);
    let up = {
        let healthy = healthy.clone();
        upstream(move |_req: Request<Incoming>| {
            let healthy = healthy.load(Ordering::SeqCst);
            let mut released = released.clone();
            async move {
                if !healthy {
                    return text_response(StatusCode::SERVICE_UNAVAILABLE, "down");
                }
                // Held until the test releases it, so the probe stays in flight.
                let _ = released.wait_for(|r| *r).await;
                named_response("up")
            }
        })
        .await
    };
    let gw = gateway(&config(
        &[up.addr],
        "    circuit_breaker: { failures: 3, cooldown: 500ms }\n",
    ))
    .await;
    let url = gw.url("/api/x");

    for _ in 0..3 {
        let r = get(&url).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("ferrox-error"), None, "the upstream's own 503");
    }
    assert_eq!(up.hits(), 3);
    assert_eq!(breaker_state(&gw, up.addr).await, Some(1.0), "open");

    let r = get(&url).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("ferrox-error"), Some("circuit-open"));
    assert_eq!(up.hits(), 3, "nothing sent while the circuit is open");

    healthy.store(true, Ordering::SeqCst);
    // The cool-down itself is what is tested: there is no earlier signal to wait for.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let probe = tokio::spawn({
        let url = url.clone();
        async move { get(&url).await }
    });
    wait_hits(&up, 4).await;
    assert_eq!(breaker_state(&gw, up.addr).await, Some(2.0), "half-open");
    for _ in 0..3 {
        let r = get(&url).await;
        assert_eq!(r.status, 503);
        assert_eq!(
            r.header("ferrox-error"),
            Some("circuit-open"),
            "only one probe at a time"
        );
    }
    assert_eq!(up.hits(), 4, "exactly one probe sent");
    release.send(true).expect("upstream listens");
    let r = probe.await.expect("probe task");
    assert_eq!(served_by(&r), "up");
    assert_eq!(breaker_state(&gw, up.addr).await, Some(0.0), "closed");

    for _ in 0..3 {
        assert_eq!(served_by(&get(&url).await), "up");
    }
    assert_eq!(up.hits(), 7);
}

#[tokio::test]
async fn open_circuit_sends_all_traffic_to_the_healthy_target() {
    let bad = failing().await;
    let good = plain("good").await;
    let gw = gateway(&config(
        &[bad.addr, good.addr],
        "    circuit_breaker: { failures: 3, cooldown: 60s }\n",
    ))
    .await;
    let url = gw.url("/api/x");
    for _ in 0..20 {
        if bad.hits() >= 3 {
            break;
        }
        let r = get(&url).await;
        assert!(r.status == 200 || r.status == 503, "{}", r.status);
    }
    assert_eq!(bad.hits(), 3);
    assert_eq!(breaker_state(&gw, bad.addr).await, Some(1.0));
    assert_eq!(breaker_state(&gw, good.addr).await, Some(0.0));
    let counts = spread(&gw, 10).await;
    assert_eq!(counts.get("good"), Some(&10), "{counts:?}");
    assert_eq!(bad.hits(), 3, "nothing more sent to the open target");
}

#[tokio::test]
async fn active_health_checks_take_targets_out_and_back() {
    let a_ok = Arc::new(AtomicBool::new(true));
    let b_ok = Arc::new(AtomicBool::new(true));
    let a = named("a", a_ok.clone()).await;
    let b = named("b", b_ok.clone()).await;
    let gw = gateway(&config(
        &[a.addr, b.addr],
        "    health_check: { path: /health, interval: 100ms, healthy: 2, unhealthy: 2, timeout: 200ms }\n",
    ))
    .await;
    let counts = spread(&gw, 4).await;
    assert_eq!(counts.len(), 2, "both serve at first: {counts:?}");

    a_ok.store(false, Ordering::SeqCst);
    wait_target_healthy(&gw, a.addr, 0.0).await;
    assert_eq!(target_healthy(&gw, b.addr).await, Some(1.0));
    let counts = spread(&gw, 10).await;
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");

    a_ok.store(true, Ordering::SeqCst);
    wait_target_healthy(&gw, a.addr, 1.0).await;
    let counts = spread(&gw, 10).await;
    assert!(
        counts.get("a").is_some_and(|&n| n > 0),
        "a is back: {counts:?}"
    );

    a_ok.store(false, Ordering::SeqCst);
    b_ok.store(false, Ordering::SeqCst);
    wait_target_healthy(&gw, a.addr, 0.0).await;
    wait_target_healthy(&gw, b.addr, 0.0).await;
    let r = get(&gw.url("/api/x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("ferrox-error"), Some("no-healthy-target"));
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_target() {
    let dead = dead_addr();
    let live = plain("live").await;
    let gw = gateway(&config(&[dead, live.addr], "    retries: 1\n")).await;
    assert_eq!(retries(&gw).await, 0.0);
    let counts = spread(&gw, 10).await;
    assert_eq!(counts.get("live"), Some(&10), "{counts:?}");
    assert_eq!(live.hits(), 10);
    let text = gw.metrics().await;
    let retried = labelled(&text, "ferrox_retries_total", &[("upstream", "u")]).unwrap_or(0.0);
    let connect_errors = labelled(
        &text,
        "ferrox_upstream_errors_total",
        &[("upstream", "u"), ("kind", "connect")],
    )
    .unwrap_or(0.0);
    assert!(retried >= 1.0, "dead target picked and retried: {retried}");
    assert_eq!(retried, connect_errors, "each connect failure retried once");
}

#[tokio::test]
async fn requests_with_a_body_are_not_retried() {
    let dead = dead_addr();
    let live = plain("live").await;
    let gw = gateway(&config(&[dead, live.addr], "    retries: 1\n")).await;
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..6 {
        let req = Request::post(gw.url("/api/x"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request");
        let r = send(req).await;
        match r.status.as_u16() {
            200 => ok += 1,
            502 => {
                assert_eq!(r.header("ferrox-error"), Some("upstream-connect"));
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1, "the live target served some");
    assert!(refused >= 1, "the dead target was picked and not retried");
    assert_eq!(live.hits(), ok);
    assert_eq!(retries(&gw).await, 0.0);
}

#[tokio::test]
async fn no_retries_when_disabled() {
    let dead = dead_addr();
    let live = plain("live").await;
    let gw = gateway(&config(&[dead, live.addr], "    retries: 0\n")).await;
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..4 {
        let r = get(&gw.url("/api/x")).await;
        match r.status.as_u16() {
            200 => ok += 1,
            502 => {
                assert_eq!(r.header("ferrox-error"), Some("upstream-connect"));
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert_eq!(retries(&gw).await, 0.0);
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let slow = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        named_response("slow")
    })
    .await;
    let gw = gateway(&config(&[slow.addr], "    timeouts: { request: 200ms }\n")).await;
    let started = Instant::now();
    let r = get(&gw.url("/api/x")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("ferrox-error"), Some("upstream-timeout"));
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    assert_eq!(slow.hits(), 1, "a timed-out request is not retried");
}

#[tokio::test]
async fn unreachable_upstream_answers_502() {
    let gw = gateway(&config(&[dead_addr()], "")).await;
    let r = get(&gw.url("/api/x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("ferrox-error"), Some("upstream-connect"));
}

#[tokio::test]
async fn stalled_response_body_ends_with_an_error() {
    let stalling = upstream(|_req: Request<Incoming>| async move {
        let first = futures_util::stream::once(async {
            Ok::<_, ferrox_host::error::BoxError>(Frame::data(Bytes::from_static(b"first")))
        });
        let stream = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    })
    .await;
    let gw = gateway(&config(&[stalling.addr], "    timeouts: { idle: 200ms }\n")).await;
    let req = Request::get(gw.url("/api/x"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(DEADLINE, client().request(req))
        .await
        .expect("head within 5 s")
        .expect("head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    loop {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("the stalled body ends within 5 s");
        match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    got.extend_from_slice(d);
                }
            }
            Some(Err(_)) => break,
            None => panic!("body ended cleanly after {got:?}; expected an error"),
        }
    }
    assert_eq!(got, b"first");
}
