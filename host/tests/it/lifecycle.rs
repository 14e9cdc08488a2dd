//! Instance lifecycle: live config reload, snapshots kept by in-flight requests, graceful
//! shutdown and drain timeout, the admin listener and the metrics it exports.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::{Semaphore, mpsc};

use crate::support::*;

/// How often test gateways poll their config file.
const WATCH: Duration = Duration::from_millis(100);
/// How long anything that should happen "soon" may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// Replace `path` atomically: write a sibling temp file, then rename it over the original.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// A config with these upstreams (name, single target) and routes (name, prefix, upstream).
fn config(upstreams: &[(&str, SocketAddr)], routes: &[(&str, &str, &str)], extra: &str) -> String {
    let mut s = String::from(extra);
    s.push_str("upstreams:\n");
    for (name, addr) in upstreams {
        s.push_str(&upstream_yaml(name, &[*addr], ""));
    }
    s.push_str("routes:\n");
    for (name, prefix, up) in routes {
        s.push_str(&format!(
            "  - {{ name: {name}, match: {{ path_prefix: {prefix} }}, upstream: {up} }}\n"
        ));
    }
    s
}

/// An upstream answering 200 with its own `name` as the body.
async fn named_upstream(name: &'static str) -> Upstream {
    upstream(move |_req: Request<Incoming>| async move { text_response(StatusCode::OK, name) })
        .await
}

/// An upstream that reports each request on the returned channel, then answers 200 `body`
/// once `release` has a permit (or after `hold`, whichever comes first).
async fn held_upstream(
    body: &'static str,
    hold: Duration,
    release: Arc<Semaphore>,
) -> (Upstream, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = upstream(move |_req: Request<Incoming>| {
        let tx = tx.clone();
        let release = release.clone();
        async move {
            let _ = tx.send(());
            let _ = tokio::time::timeout(hold, release.acquire()).await;
            text_response(StatusCode::OK, body)
        }
    })
    .await;
    (up, rx)
}

/// Wait until the upstream has reported `n` requests.
async fn received(rx: &mut mpsc::UnboundedReceiver<()>, n: usize) {
    for i in 0..n {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("upstream received only {i} of {n} requests"))
            .expect("upstream alive");
    }
}

/// `ferrox_config_reloads_total{result}` in a scrape (0 when absent).
fn reloads(text: &str, result: &str) -> f64 {
    metric_value(
        text,
        &format!("ferrox_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Poll `/metrics` until `ferrox_config_reloads_total{result}` reaches `at_least`.
async fn wait_reloads(gw: &Gw, result: &str, at_least: f64) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = gw.metrics().await;
        if reloads(&text, result) >= at_least {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "reloads{{result={result}}} stayed below {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `url` until it answers 200 with body `want`.
async fn wait_body(url: &str, want: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = get(url).await;
        if r.status == StatusCode::OK && r.body == want.as_bytes() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered {want:?}; last: {} {:?}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn valid_changes_apply_live_and_invalid_ones_keep_the_old_config() {
    let a = named_upstream("A").await;
    let b = named_upstream("B").await;
    let ups = [("a", a.addr), ("b", b.addr)];
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(&path, config(&ups, &[("r", "/a", "a")], "")).expect("write config");
    let gw = gateway_watching(path.clone(), WATCH).await;

    let r = get(&gw.url("/a")).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"A"[..]));

    write_atomic(&path, &config(&ups, &[("r", "/a", "b")], ""));
    wait_body(&gw.url("/a"), "B").await;
    let text = wait_reloads(&gw, "success", 1.0).await;
    let failures = reloads(&text, "failure");

    // A document that parses but does not validate: rejected, B keeps serving.
    write_atomic(&path, &config(&ups, &[("r", "/a", "nosuch")], ""));
    let text = wait_reloads(&gw, "failure", failures + 1.0).await;
    let failures = reloads(&text, "failure");
    for _ in 0..5 {
        let r = get(&gw.url("/a")).await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"B"[..]));
    }

    // Not YAML at all: rejected too.
    write_atomic(
        &path,
        "routes:\n  - name: r\n    match: { path_prefix: /a\n  upstream: [\n",
    );
    let text = wait_reloads(&gw, "failure", failures + 1.0).await;
    assert_eq!(
        reloads(&text, "success"),
        1.0,
        "no invalid file was applied"
    );
    for _ in 0..5 {
        let r = get(&gw.url("/a")).await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"B"[..]));
    }

    // A valid file after the rejected ones is applied again.
    write_atomic(&path, &config(&ups, &[("r", "/a", "a")], ""));
    wait_body(&gw.url("/a"), "A").await;
    wait_reloads(&gw, "success", 2.0).await;
}

#[tokio::test]
async fn in_flight_request_keeps_its_snapshot_when_its_route_is_removed() {
    let release = Arc::new(Semaphore::new(0));
    let (slow, mut rx) = held_upstream("slow", DEADLINE, release.clone()).await;
    let other = named_upstream("other").await;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(
        &path,
        config(
            &[("slow", slow.addr), ("other", other.addr)],
            &[("slow", "/slow", "slow"), ("other", "/other", "other")],
            "",
        ),
    )
    .expect("write config");
    let gw = gateway_watching(path.clone(), WATCH).await;

    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    received(&mut rx, 1).await;

    // Remove the route and its upstream while the request waits on that upstream.
    write_atomic(
        &path,
        &config(
            &[("other", other.addr)],
            &[("other", "/other", "other")],
            "",
        ),
    );
    wait_reloads(&gw, "success", 1.0).await;
    let r = get(&gw.url("/slow")).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "new requests see the new config"
    );
    assert_eq!(r.header("ferrox-error"), Some("no-route"));
    assert_eq!(slow.hits(), 1, "the removed upstream got no new request");

    release.add_permits(16);
    let r = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("in-flight request finishes")
        .expect("request task");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "in-flight request is not failed by the swap"
    );
    assert_eq!(&r.body[..], b"slow");
    let r = get(&gw.url("/other")).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"other"[..]));
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    const MIN_REQUESTS: usize = 300;
    const RELOADS: usize = 10;
    let a = named_upstream("A").await;
    let b = named_upstream("B").await;
    let versions = [
        config(&[("u", a.addr)], &[("r", "/r", "u")], ""),
        config(&[("u", b.addr)], &[("r", "/r", "u")], ""),
    ];
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(&path, &versions[0]).expect("write config");
    let gw = gateway_watching(path.clone(), WATCH).await;

    let done = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (done, total, failures) = (done.clone(), total.clone(), failures.clone());
        let url = gw.url("/r");
        workers.push(tokio::spawn(async move {
            // One pooled client per worker: keep-alive connections live across reloads.
            let c = client();
            while !(done.load(Ordering::SeqCst) && total.load(Ordering::SeqCst) >= MIN_REQUESTS) {
                let req = Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let outcome = match tokio::time::timeout(DEADLINE, c.request(req)).await {
                    Err(_) => Some("no answer within 10 s".to_owned()),
                    Ok(Err(e)) => Some(format!("client error: {e}")),
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        let body = body_bytes(resp.into_body()).await;
                        (status != StatusCode::OK || !(body == "A" || body == "B"))
                            .then(|| format!("{status} {body:?}"))
                    }
                };
                total.fetch_add(1, Ordering::SeqCst);
                if let Some(f) = outcome {
                    failures.lock().expect("lock").push(f);
                }
            }
        }));
    }

    for i in 1..=RELOADS {
        write_atomic(&path, &versions[i % 2]);
        wait_reloads(&gw, "success", i as f64).await;
    }
    done.store(true, Ordering::SeqCst);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("workers finish")
            .expect("worker task");
    }

    let failures = failures.lock().expect("lock").clone();
    let total = total.load(Ordering::SeqCst);
    assert!(total >= MIN_REQUESTS, "only {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(a.hits() > 0 && b.hits() > 0, "both versions served traffic");
    assert_eq!(a.hits() + b.hits(), total);
    let text = gw.metrics().await;
    assert_eq!(reloads(&text, "failure"), 0.0);
}

/// Poll until a TCP connection to `addr` is refused.
async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let up = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        text_response(StatusCode::OK, "done")
    })
    .await;
    let gw = gateway(&config(&[("u", up.addr)], &[("r", "/", "u")], "")).await;
    let addr = gw.addr();
    let mut requests = Vec::new();
    for _ in 0..5 {
        let url = gw.url("/work");
        requests.push(tokio::spawn(async move { get(&url).await }));
    }
    let deadline = Instant::now() + DEADLINE;
    while up.hits() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {} requests arrived",
            up.hits()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let Gw { running, .. } = gw;
    running.begin_shutdown();
    let stopped = tokio::spawn(running.wait());
    for r in requests {
        let r = r.await.expect("request task");
        assert_eq!(r.status, StatusCode::OK, "in-flight request drained");
        assert_eq!(&r.body[..], b"done");
    }
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("shutdown completes once drained")
        .expect("shutdown task");
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "proxy port still accepts connections after shutdown: {refused:?}"
    );
}

#[tokio::test]
async fn new_connections_are_refused_while_draining() {
    let release = Arc::new(Semaphore::new(0));
    let (up, mut rx) = held_upstream("done", DEADLINE, release.clone()).await;
    let gw = gateway(&config(&[("u", up.addr)], &[("r", "/", "u")], "")).await;
    let addr = gw.addr();
    let url = gw.url("/work");
    let in_flight = tokio::spawn(async move { get(&url).await });
    received(&mut rx, 1).await;

    let Gw { running, .. } = gw;
    running.begin_shutdown();
    let stopped = tokio::spawn(running.wait());
    // The request is still held upstream: the listener is already closed.
    wait_refused(addr).await;
    assert!(
        !stopped.is_finished(),
        "shutdown waits for the in-flight request"
    );
    release.add_permits(16);
    let r = in_flight.await.expect("request task");
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"done"[..]));
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("shutdown completes once drained")
        .expect("shutdown task");
}

#[tokio::test]
async fn drain_timeout_cuts_long_requests_short() {
    let release = Arc::new(Semaphore::new(0));
    // Never answers within the test unless released.
    let (up, mut rx) = held_upstream("late", Duration::from_secs(60), release.clone()).await;
    let gw = gateway(&config(
        &[("u", up.addr)],
        &[("r", "/", "u")],
        "server: { drain_timeout: 300ms }\n",
    ))
    .await;
    let url = gw.url("/long");
    let in_flight = tokio::spawn(async move {
        let req = Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        client().request(req).await.map(|r| r.status())
    });
    received(&mut rx, 1).await;

    let Gw { running, .. } = gw;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), running.shutdown())
        .await
        .expect("shutdown returns soon after the 300ms drain timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "drained too early: {took:?}"
    );

    // The connection is closed: the client sees an error instead of waiting for the upstream.
    let outcome = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("the cut request ends instead of hanging")
        .expect("request task");
    assert!(
        outcome.is_err(),
        "request past the drain timeout was not cut: {outcome:?}"
    );
    release.add_permits(16);
}

#[tokio::test]
async fn admin_health_is_open_and_metrics_need_the_token() {
    let up = echo_upstream().await;
    let gw = gateway(&config(&[("u", up.addr)], &[("r", "/", "u")], "")).await;

    let r = get(&format!("{}/health", gw.admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["routes"], 1);
    assert_eq!(j["upstreams"], 1);

    let metrics = format!("{}/metrics", gw.admin);
    let denied = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(TOKEN.to_owned()),
        Some(format!("Basic {TOKEN}")),
    ];
    for auth in &denied {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|v| ("authorization", v.as_str())).collect();
        let r = get_with(&metrics, &headers).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ferrox-admin\""),
            "{headers:?}"
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{headers:?}"
        );
        let j = r.json();
        assert_eq!(j["error"], "unauthorized");
        assert_eq!(j["status"], 401);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("ferrox_"),
            "no metrics leak in the refusal"
        );
    }

    let auth = format!("Bearer {TOKEN}");
    let r = get_with(&metrics, &[("authorization", auth.as_str())]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    assert!(String::from_utf8_lossy(&r.body).contains("# TYPE ferrox_"));
}

/// Label names of every sample line of metric `name` (exact name, e.g. `foo_bucket`).
fn label_sets(text: &str, name: &str) -> Vec<BTreeSet<String>> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let labels = rest.split('}').next().expect("closing brace");
            labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split('=').next().expect("label name").to_owned())
                .collect()
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Every sample of `name` has exactly the label names `want`; there is at least one.
fn assert_labels(text: &str, name: &str, want: &[&str]) {
    let sets = label_sets(text, name);
    assert!(!sets.is_empty(), "no samples of {name}:\n{text}");
    for s in sets {
        assert_eq!(s, set(want), "labels of {name}");
    }
}

fn assert_type(text: &str, name: &str, kind: &str) {
    assert!(
        text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
        "{name} is not a {kind}:\n{text}"
    );
}

#[tokio::test]
async fn metrics_have_the_documented_names_types_and_bounded_labels() {
    let up = echo_upstream().await;
    let gw = gateway(&config(
        &[("users", up.addr)],
        &[("api", "/api", "users")],
        "",
    ))
    .await;
    for _ in 0..3 {
        let r = get(&gw.url("/api/some/raw/path?secret=query-value")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = get(&gw.url("/unrouted/raw/path")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let text = gw.metrics().await;

    assert_type(&text, "ferrox_requests_total", "counter");
    assert_labels(
        &text,
        "ferrox_requests_total",
        &["method", "route", "status"],
    );
    assert_eq!(
        metric_value(
            &text,
            "ferrox_requests_total{method=\"GET\",route=\"api\",status=\"200\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "ferrox_requests_total{method=\"GET\",route=\"\",status=\"404\"}"
        ),
        Some(1.0),
        "unrouted requests share one empty route label"
    );

    assert_type(&text, "ferrox_request_duration_seconds", "histogram");
    for suffix in ["_count", "_sum"] {
        assert_labels(
            &text,
            &format!("ferrox_request_duration_seconds{suffix}"),
            &["route"],
        );
    }
    assert_labels(
        &text,
        "ferrox_request_duration_seconds_bucket",
        &["route", "le"],
    );
    assert_eq!(
        metric_value(
            &text,
            "ferrox_request_duration_seconds_count{route=\"api\"}"
        ),
        Some(3.0)
    );

    assert_type(&text, "ferrox_upstream_duration_seconds", "histogram");
    assert_labels(
        &text,
        "ferrox_upstream_duration_seconds_count",
        &["upstream"],
    );
    assert_eq!(
        metric_value(
            &text,
            "ferrox_upstream_duration_seconds_count{upstream=\"users\"}"
        ),
        Some(3.0)
    );

    assert_type(&text, "ferrox_breaker_state", "gauge");
    assert_labels(&text, "ferrox_breaker_state", &["target", "upstream"]);
    assert_eq!(
        metric_value(
            &text,
            &format!(
                "ferrox_breaker_state{{target=\"{}\",upstream=\"users\"}}",
                up.addr
            )
        ),
        Some(0.0),
        "closed breaker"
    );

    assert_type(&text, "ferrox_config_reloads_total", "counter");
    assert_labels(&text, "ferrox_config_reloads_total", &["result"]);
    assert_eq!(reloads(&text, "success"), 0.0);
    assert_eq!(reloads(&text, "failure"), 0.0);

    assert_type(&text, "ferrox_connections_active", "gauge");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ferrox_connections_active ")),
        "{text}"
    );

    for raw in [
        "/api/some/raw/path",
        "some/raw",
        "/unrouted",
        "secret",
        "query-value",
    ] {
        assert!(!text.contains(raw), "raw request data {raw:?} in metrics");
    }
}
