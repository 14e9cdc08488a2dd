//! The Redis state store (`state: redis://…`) against the Redis at 127.0.0.1:6379: counters
//! shared by several gateway instances, exact under concurrency, the counter script's keys and
//! arithmetic, the cache, and what happens when Redis is unreachable or comes and goes.
//!
//! Every test uses a random key prefix (`state_options.key_prefix`), so tests never see each
//! other's counters. Windows are aligned on Redis's clock, which is this machine's clock here:
//! tests that count within one window first make sure enough of it is left.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrox_host::state::{RedisOptions, RedisState, StateStore};
use http::StatusCode;
use redis::AsyncCommands;

use crate::support::*;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A fresh key prefix.
fn prefix() -> String {
    format!("ferrox-it:{:016x}:", fastrand::u64(..))
}

/// A direct connection, to look at what the gateway wrote.
async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(REDIS).expect("url");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("Redis answers within 5 s")
    .unwrap_or_else(|e| {
        panic!(
            "these tests need Redis at 127.0.0.1:6379 (`redis-cli ping`; .ci/run starts it): {e}"
        )
    })
}

/// Redis's clock, in ms since the Unix epoch.
async fn redis_time_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

/// A store with `prefix` and a timeout roomy enough for a loaded test machine.
fn store(prefix: &str) -> RedisState {
    RedisState::new(
        REDIS,
        RedisOptions {
            timeout: Duration::from_secs(2),
            key_prefix: prefix.to_owned(),
        },
    )
    .expect("valid URL")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Make sure at least `room_ms` is left in the current `window_ms` window.
async fn room_in_window(window_ms: u64, room_ms: u64) {
    let left = window_ms - now_ms() % window_ms;
    if left < room_ms {
        tokio::time::sleep(Duration::from_millis(left + 10)).await;
    }
}

/// A document with `state`, `state_options` and one route `r` on `/` to `up`, filtered by
/// `rate-limit` with `config`.
fn doc(up: SocketAddr, state: &str, options: &str, config: &str) -> String {
    doc_with(up, state, options, config, "\n        timeout: 2s")
}

/// [`doc`] with `extra` lines in the filter entry.
fn doc_with(up: SocketAddr, state: &str, options: &str, config: &str, extra: &str) -> String {
    format!(
        "state: {state}\nstate_options: {options}\nupstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: rate-limit{extra}\n        config: {config}\n",
        upstream_yaml("u", &[up], "")
    )
}

/// `r` of the `RateLimit` header (`"<name>";r=<r>;t=<t>`).
fn remaining(resp: &Resp) -> u64 {
    let value = resp
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit header on a {}", resp.status));
    value
        .split(';')
        .find_map(|p| p.strip_prefix("r="))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no r= in {value:?}"))
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn two_gateways_sharing_a_redis_and_prefix_allow_exactly_the_limit_together() {
    let up = echo_upstream().await;
    let p = prefix();
    let options = format!("{{ key_prefix: \"{p}\", timeout: 2s }}");
    let config = "{ limits: [{ requests: 5, window: 60s }], by: ip, policy: fail_closed }";
    let a = gateway(&doc(up.addr, REDIS, &options, config)).await;
    let b = gateway(&doc(up.addr, REDIS, &options, config)).await;
    room_in_window(60_000, 10_000).await;

    // Alternate between the instances: the budget is global, the remaining count too.
    let mut seen = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = get(&gw.url("/")).await;
        seen.push(r.status.as_u16());
        if r.status == StatusCode::OK {
            assert_eq!(Some(remaining(&r)), 4u64.checked_sub(i), "request {i}");
        } else {
            assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
            assert_eq!(remaining(&r), 0);
        }
    }
    assert_eq!(seen, [200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
    assert_eq!(up.hits(), 5, "five requests in all reached the upstream");

    // Another prefix is another budget, on the same Redis.
    let other = format!("{{ key_prefix: \"{}\" , timeout: 2s }}", prefix());
    let c = gateway(&doc(up.addr, REDIS, &other, config)).await;
    let r = get(&c.url("/")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(remaining(&r), 4);
}

#[tokio::test]
async fn a_reload_that_names_redis_moves_the_counters_there() {
    let up = echo_upstream().await;
    let mut conn = redis().await;
    let p = prefix();
    let config = "{ limits: [{ requests: 5, window: 60s }], policy: fail_closed }";
    let gw = gateway(&doc(up.addr, "local", "{}", config)).await;
    room_in_window(60_000, 10_000).await;
    assert_eq!(remaining(&get(&gw.url("/")).await), 4);

    let options = format!("{{ key_prefix: \"{p}\", timeout: 2s }}");
    let yaml = doc(up.addr, REDIS, &options, config);
    let cfg = ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid");
    gw.running.gateway.apply(cfg).await.expect("applied");
    // A new store: counting starts afresh, in Redis.
    assert_eq!(remaining(&get(&gw.url("/")).await), 4);
    let keys: Vec<String> = conn.keys(format!("{p}c:*")).await.expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let other = gateway(&yaml).await;
    assert_eq!(remaining(&get(&other.url("/")).await), 3, "shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_passes_among_200_concurrent_requests() {
    let up = echo_upstream().await;
    let options = format!("{{ key_prefix: \"{}\", timeout: 2s }}", prefix());
    let gw = gateway(&doc(
        up.addr,
        REDIS,
        &options,
        "{ limits: [{ requests: 100, window: 60s }], policy: fail_closed }",
    ))
    .await;
    room_in_window(60_000, 20_000).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let url = gw.url("/");
        tasks.spawn(async move { get(&url).await });
    }
    let mut remaining_seen = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task");
        match r.status.as_u16() {
            200 => remaining_seen.push(remaining(&r)),
            429 => refused += 1,
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    remaining_seen.sort_unstable();
    assert_eq!(
        remaining_seen,
        (0..100).collect::<Vec<u64>>(),
        "100 admitted, each saw its own count"
    );
    assert_eq!(refused, 100);
    assert_eq!(up.hits(), 100);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_quickly_by_default() {
    let up = echo_upstream().await;
    let url = format!("redis://127.0.0.1:{}", closed_port().await);
    // The gateway starts although Redis is down; the filter's default policy is fail_open.
    let gw = gateway(&doc(
        up.addr,
        &url,
        "{ timeout: 50ms }",
        "{ limits: [{ requests: 1, window: 60s }] }",
    ))
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        let r = get(&gw.url("/")).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.header("ratelimit"), None, "no counts to report");
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
    assert_eq!(up.hits(), 5, "over the limit of 1, as the store is down");
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            "ferrox_plugin_counter_total{name=\"store_errors\",plugin=\"rate-limit\"}"
        )
        .is_some_and(|v| v >= 5.0),
        "{m}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_closed_with_503_when_asked() {
    let up = echo_upstream().await;
    let url = format!("redis://127.0.0.1:{}", closed_port().await);
    let gw = gateway(&doc(
        up.addr,
        &url,
        "{ timeout: 50ms }",
        "{ limits: [{ requests: 100, window: 60s }], policy: fail_closed }",
    ))
    .await;
    for _ in 0..3 {
        let started = Instant::now();
        let r = get(&gw.url("/")).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.json()["error"], "rate_limit_unavailable");
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
    assert_eq!(up.hits(), 0);
}

/// A server that accepts connections and never answers (a Redis that hangs).
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = l.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_silent_redis_fails_the_store_call_before_the_filter_deadline() {
    let up = echo_upstream().await;
    let (port, server) = silent_server().await;
    let url = format!("redis://127.0.0.1:{port}");
    // The store's 5s timeout is cut to end before the filter's 200ms deadline, so the filter
    // sees a store error and applies its policy instead of timing out (a 503 `filter`).
    for (policy, status) in [("fail_open", 200), ("fail_closed", 503)] {
        let gw = gateway(&doc_with(
            up.addr,
            &url,
            "{ timeout: 5s }",
            &format!("{{ limits: [{{ requests: 1, window: 60s }}], policy: {policy} }}"),
            "\n        timeout: 200ms",
        ))
        .await;
        for _ in 0..3 {
            let started = Instant::now();
            let r = get(&gw.url("/")).await;
            let took = started.elapsed();
            assert_eq!(r.status.as_u16(), status, "{policy}: {:?}", r.body);
            if status == 503 {
                assert_eq!(r.json()["error"], "rate_limit_unavailable");
            }
            assert!(
                took < Duration::from_millis(1_000),
                "the store gave up within the filter's 200ms, not its own 5s: {took:?}"
            );
        }
        let m = gw.metrics().await;
        assert!(
            !m.lines()
                .any(|l| l.starts_with("ferrox_filter_failures_total{")),
            "the filter itself never failed: {m}"
        );
    }
    server.abort();
}

/// A `redis-server` child on `port`, stopped on drop.
pub(crate) struct RedisServer(std::process::Child);

impl RedisServer {
    pub(crate) fn start(port: u16) -> Self {
        Self::start_with(&["--port", &port.to_string(), "--bind", "127.0.0.1"])
    }

    fn start_with(listen: &[&str]) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(listen)
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test runs `redis-server` (Debian's redis-server): {e}")
            });
        Self(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `/` until it answers `status`, for up to 10 s; returns how long it took.
async fn until_status(gw: &Gw, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let r = get(&gw.url("/")).await;
        if r.status.as_u16() == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {} instead of {status} after 10 s: {:?}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_gateway_reconnects_when_redis_comes_back() {
    let up = echo_upstream().await;
    let port = closed_port().await;
    let gw = gateway(&doc(
        up.addr,
        &format!("redis://127.0.0.1:{port}"),
        "{ timeout: 200ms }",
        "{ limits: [{ requests: 1000, window: 60s }], policy: fail_closed }",
    ))
    .await;
    // Redis down at start: the gateway serves, the limiter fails closed.
    assert_eq!(get(&gw.url("/")).await.status, 503);

    let server = RedisServer::start(port);
    let back = until_status(&gw, 200).await;
    assert!(back < Duration::from_secs(5), "found Redis after {back:?}");

    // Redis goes away: errors again, at once; then it restarts and is found again.
    drop(server);
    until_status(&gw, 503).await;
    let started = Instant::now();
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 503);
    assert!(started.elapsed() < Duration::from_millis(500));
    let _server = RedisServer::start(port);
    let back = until_status(&gw, 200).await;
    assert!(
        back < Duration::from_secs(5),
        "found Redis again after {back:?}"
    );
}

#[tokio::test]
async fn a_unix_socket_redis_works_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("redis.sock");
    let socket_text = socket.to_str().expect("utf-8 path").to_owned();
    let _server = RedisServer::start_with(&["--port", "0", "--unixsocket", &socket_text]);
    let store = StateStore::from_config(
        &format!("redis+unix://{socket_text}?db=1"),
        &ferrox_host::config::StateOptionsConfig {
            timeout: ferrox_host::config::units::Dur::secs(2),
            key_prefix: prefix(),
        },
    )
    .expect("store");
    assert_eq!(store.describe(), format!("redis+unix://{socket_text}?db=1"));
    // The server may still be starting: retry for a while.
    let started = Instant::now();
    let v = loop {
        match store.incr("k", 2, 60_000, None).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(v.count, 2);
}

#[tokio::test]
async fn a_counter_lives_in_the_key_of_its_window_on_redis_time() {
    let mut conn = redis().await;
    let p = prefix();
    let s = store(&p);
    let window = 3_600_000;
    room_in_window(window, 10_000).await;
    let before = redis_time_ms(&mut conn).await;
    let v = s.incr_sliding("k", 3, window, None).await.expect("counter");
    let after = redis_time_ms(&mut conn).await;
    assert_eq!(before / window, after / window, "one window");
    let start = before - before % window;
    assert_eq!((v.current, v.previous), (3, 0));
    assert_eq!(v.elapsed_ms + v.reset_ms, window);
    assert!(
        (before..=after).contains(&(start + v.elapsed_ms)),
        "elapsed {} from {start} is within [{before}, {after}]",
        v.elapsed_ms
    );

    let key = format!("{p}c:k:{window}:{start}");
    assert_eq!(s.counter_key("k", window, start), key);
    let stored: i64 = conn.get(&key).await.expect("GET");
    assert_eq!(stored, 3);
    // The key expires two windows after its window started.
    let pttl: i64 = conn.pttl(&key).await.expect("PTTL");
    let expected = (start + 2 * window - after) as i64;
    assert!(
        (expected - 100..=expected + 100).contains(&pttl),
        "PTTL {pttl}, expected about {expected}"
    );

    // A sliding counter reads the previous window's key; a fixed one only counts.
    let _: () = conn
        .set(format!("{p}c:k:{window}:{}", start - window), 7)
        .await
        .expect("SET");
    let v = s.incr_sliding("k", 1, window, None).await.expect("counter");
    assert_eq!((v.current, v.previous), (4, 7));
    let fixed = s.incr("k", -1, window, None).await.expect("counter");
    assert_eq!(fixed.count, 3, "negative deltas take back");
    assert!(fixed.reset_ms <= window);
    // Windows of different lengths are different keys.
    assert_eq!(
        s.incr("k", 1, 60_000, None).await.expect("counter").count,
        1
    );
}

#[tokio::test]
async fn a_sliding_counter_carries_the_previous_window_over() {
    let s = store(&prefix());
    let window = 1_000;
    // Count twice in one window (another key if the two straddled a boundary).
    let mut attempt = 0;
    let (key, second) = loop {
        let key = format!("k{attempt}");
        s.incr_sliding(&key, 1, window, None)
            .await
            .expect("counter");
        let v = s
            .incr_sliding(&key, 1, window, None)
            .await
            .expect("counter");
        if v.current == 2 && v.reset_ms >= 200 {
            break (key, v);
        }
        attempt += 1;
        assert!(attempt < 10, "never fit two updates into one window");
        tokio::time::sleep(Duration::from_millis(v.reset_ms + 5)).await;
    };
    // Into the next window, by the store's own count of what is left.
    tokio::time::sleep(Duration::from_millis(second.reset_ms + 20)).await;
    let next = s
        .incr_sliding(&key, 1, window, None)
        .await
        .expect("counter");
    assert_eq!((next.current, next.previous), (1, 2));
    // Two windows later nothing carries over.
    tokio::time::sleep(Duration::from_millis(2 * window + 20)).await;
    let later = s
        .incr_sliding(&key, 1, window, None)
        .await
        .expect("counter");
    assert_eq!((later.current, later.previous), (1, 0));
}

#[tokio::test]
async fn cache_entries_are_shared_by_prefix_and_expire() {
    let mut conn = redis().await;
    let p = prefix();
    let a = store(&p);
    let b = store(&p);
    let other = store(&prefix());

    let value = vec![0u8, 255, 10, 13, b'x'];
    a.set("page", value.clone(), 60_000, None)
        .await
        .expect("set");
    assert_eq!(
        b.get("page", None).await.expect("get").as_deref(),
        Some(&value[..])
    );
    assert_eq!(other.get("page", None).await.expect("get"), None);
    let stored: Vec<u8> = conn.get(format!("{p}v:page")).await.expect("GET");
    assert_eq!(stored, value, "stored as bytes under <prefix>v:<key>");
    let pttl: i64 = conn.pttl(format!("{p}v:page")).await.expect("PTTL");
    assert!((59_000..=60_000).contains(&pttl), "{pttl}");

    // A TTL of 0 removes the entry.
    a.set("page", b"x".to_vec(), 0, None).await.expect("set");
    assert_eq!(b.get("page", None).await.expect("get"), None);

    // Short TTLs expire in Redis.
    a.set("short", b"v".to_vec(), 150, None).await.expect("set");
    assert_eq!(
        a.get("short", None).await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(a.get("short", None).await.expect("get"), None);

    // Large values travel whole.
    let big = vec![7u8; 2 * 1024 * 1024];
    a.set("big", big.clone(), 10_000, None).await.expect("set");
    assert_eq!(b.get("big", None).await.expect("get"), Some(big));
}

#[tokio::test]
async fn the_state_store_enum_reaches_redis_and_reports_errors_as_text() {
    let options = ferrox_host::config::StateOptionsConfig {
        timeout: ferrox_host::config::units::Dur::millis(50),
        key_prefix: prefix(),
    };
    let store = StateStore::from_config(REDIS, &options).expect("store");
    assert_eq!(store.describe(), "redis://127.0.0.1:6379/0");
    let v = store.incr("k", 2, 60_000, None).await.expect("counter");
    assert_eq!(v.count, 2);
    store
        .set("c", b"1".to_vec(), 1_000, None)
        .await
        .expect("set");
    assert_eq!(
        store.get("c", None).await.expect("get").as_deref(),
        Some(&b"1"[..])
    );

    // An overflowing increment is Redis's error, passed on as text.
    let err = store
        .incr("k", i64::MAX, 60_000, None)
        .await
        .expect_err("overflow");
    assert!(err.contains("overflow"), "{err}");
    // A deadline already passed fails without waiting.
    let err = store
        .incr("k", 1, 60_000, Some(Instant::now()))
        .await
        .expect_err("no time left");
    assert!(err.contains("deadline"), "{err}");

    let down = StateStore::from_config(
        &format!("redis://127.0.0.1:{}", closed_port().await),
        &options,
    )
    .expect("a store is made without connecting");
    let started = Instant::now();
    let err = down.incr("k", 1, 1_000, None).await.expect_err("down");
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// A TCP proxy to the real Redis that holds every answer for `delay` before passing it on.
async fn slow_redis(delay: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, task)
}

/// A filter's `timeout` bounds its own execution, not its waits on the state store: a call
/// that waits 300ms on Redis and then computes for 250ms fits a 500ms timeout, while one that
/// computes for 600ms after the same wait does not.
#[tokio::test]
async fn waiting_on_the_store_does_not_count_against_the_filter_deadline() {
    let up = echo_upstream().await;
    let (port, server) = slow_redis(Duration::from_millis(300)).await;
    let p = prefix();
    let plugins = guest_plugin_yaml("spin", &["counters", "clock"]);
    let route = |name: &str, work_ms: u64| {
        format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: u\n    filters:\n      - plugin: spin\n        timeout: 500ms\n        config: {{ incr: true, work_ms: {work_ms} }}\n"
        )
    };
    let yaml = format!(
        "state: redis://127.0.0.1:{port}\nstate_options: {{ timeout: 5s, key_prefix: \"{p}\" }}\nplugins:\n{plugins}upstreams:\n{}routes:\n{}{}",
        upstream_yaml("u", &[up.addr], ""),
        route("fits", 250),
        route("overruns", 600),
    );
    let gw = gateway(&yaml).await;
    for _ in 0..2 {
        let started = Instant::now();
        let r = get(&gw.url("/fits")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            started.elapsed() >= Duration::from_millis(550),
            "the store wait and the work both happened: {:?}",
            started.elapsed()
        );
    }
    let r = get(&gw.url("/overruns")).await;
    assert_eq!(r.status, 503, "600ms of work overruns a 500ms timeout");
    assert_eq!(r.header("ferrox-error"), Some("filter"));
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_filter_failures_total{kind=\"timeout\",plugin=\"spin\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // The counter updates went through the slow proxy to the real Redis.
    let mut conn = redis().await;
    let keys: Vec<String> = conn.keys(format!("{p}*")).await.expect("keys");
    assert!(!keys.is_empty(), "no counter under {p}");
    let _: () = conn.del(keys).await.expect("del");
    server.abort();
}
