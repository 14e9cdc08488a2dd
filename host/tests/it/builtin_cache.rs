//! The built-in `cache` filter through a running gateway: the filter decides, the gateway
//! stores and serves the bytes. Upstreams count the requests they get, so a hit is proven by
//! the upstream not being asked again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrox_host::body::full;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A gateway with one route `r` on `/` to `up`, filtered by `cache` with `config`, and the
/// `state` lines given.
async fn gw(up: SocketAddr, config: &str, state: &str) -> Gw {
    gateway(&format!(
        "{state}upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: cache\n        timeout: 2s\n        config: {config}\n",
        upstream_yaml("u", &[up], "")
    ))
    .await
}

/// An upstream whose answers depend on the path: `/no-store`, `/private`, `/max-age-1`,
/// `/status/<n>`, `/vary`, `/big/<n>` (n bytes, declared), `/stream/<n>` (n bytes, chunked);
/// anything else is a 200. Every body names the request number, so a hit shows an old one.
async fn counting_upstream() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    upstream(move |req: Request<Incoming>| {
        let n = n.clone();
        async move {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            let path = req.uri().path().to_owned();
            let mut resp = Response::new(full(format!("answer {i} for {path}")));
            let headers = resp.headers_mut();
            headers.insert("content-type", "text/plain".parse().expect("value"));
            match path.as_str() {
                "/no-store" => {
                    headers.insert("cache-control", "no-store".parse().expect("value"));
                }
                "/private" => {
                    headers.insert(
                        "cache-control",
                        "private, max-age=60".parse().expect("value"),
                    );
                }
                "/max-age-1" => {
                    headers.insert("cache-control", "max-age=1".parse().expect("value"));
                }
                "/vary" => {
                    headers.insert("vary", "accept".parse().expect("value"));
                }
                p if p.starts_with("/status/") => {
                    *resp.status_mut() = p[8..].parse().expect("a status");
                }
                p if p.starts_with("/big/") => {
                    let len: usize = p[5..].parse().expect("a length");
                    *resp.body_mut() = full(vec![b'x'; len]);
                }
                p if p.starts_with("/stream/") => {
                    let len: usize = p[8..].parse().expect("a length");
                    let chunks = (0..len.div_ceil(100)).map(move |c| {
                        let size = 100.min(len - c * 100);
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![
                            b'y';
                            size
                        ])))
                    });
                    let body = StreamBody::new(futures_util::stream::iter(chunks));
                    *resp.body_mut() = body.map_err(|e| match e {}).boxed();
                }
                _ => {}
            }
            resp
        }
    })
    .await
}

fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

fn cache_status(r: &Resp) -> Option<&str> {
    r.header("x-cache-status")
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test]
async fn a_miss_is_stored_and_the_next_request_is_a_hit() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", "").await;
    let first = get(&g.url("/a?x=1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(cache_status(&first), Some("MISS"));
    assert_eq!(text(&first), "answer 1 for /a");
    let second = get(&g.url("/a?x=1")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(cache_status(&second), Some("HIT"));
    assert_eq!(text(&second), "answer 1 for /a", "served from the cache");
    assert_eq!(second.header("age"), Some("0"));
    assert_eq!(second.header("content-type"), Some("text/plain"));
    assert!(second.header("x-request-id").is_some());
    assert_eq!(up.hits(), 1, "the upstream was asked once");
    // Another query is another entry.
    assert_eq!(cache_status(&get(&g.url("/a?x=2")).await), Some("MISS"));
    assert_eq!(up.hits(), 2);

    let m = g.metrics().await;
    let value = |result: &str| {
        metric_value(
            &m,
            &format!("ferrox_cache_lookups_total{{result=\"{result}\",route=\"r\"}}"),
        )
    };
    assert_eq!(value("hit"), Some(1.0));
    assert_eq!(value("miss"), Some(2.0));
}

#[tokio::test]
async fn head_requests_are_cached_apart_from_get() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", "").await;
    let head = || request(Method::HEAD, &g.url("/h"), &[]);
    let first = send(head()).await;
    assert_eq!(cache_status(&first), Some("MISS"));
    let declared = first.header("content-length").map(str::to_owned);
    assert_eq!(
        declared.as_deref(),
        Some("15"),
        "the upstream's length of the GET body"
    );
    let second = send(head()).await;
    assert_eq!(cache_status(&second), Some("HIT"));
    assert!(second.body.is_empty());
    assert_eq!(second.header("content-length"), declared.as_deref());
    assert_eq!(up.hits(), 1);
    // A GET is not answered from the HEAD entry (it has no body).
    let get_resp = get(&g.url("/h")).await;
    assert_eq!(cache_status(&get_resp), Some("MISS"));
    assert_eq!(text(&get_resp), "answer 2 for /h");
}

#[tokio::test]
async fn other_methods_bypass_the_cache() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", "").await;
    for _ in 0..2 {
        let r = send(request(Method::POST, &g.url("/p"), &[])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(cache_status(&r), Some("BYPASS"));
    }
    assert_eq!(up.hits(), 2);
    // A GET to the same path is its own entry, not the POST's answer.
    assert_eq!(cache_status(&get(&g.url("/p")).await), Some("MISS"));
    let m = g.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_cache_lookups_total{result=\"bypass\",route=\"r\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn upstream_cache_control_is_honoured() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", "").await;
    for path in ["/no-store", "/private"] {
        assert_eq!(cache_status(&get(&g.url(path)).await), Some("MISS"));
        let again = get(&g.url(path)).await;
        assert_eq!(cache_status(&again), Some("MISS"), "{path} was not stored");
    }
    assert_eq!(up.hits(), 4);
    // max-age=1 beats the route's 60 s default.
    assert_eq!(cache_status(&get(&g.url("/max-age-1")).await), Some("MISS"));
    assert_eq!(cache_status(&get(&g.url("/max-age-1")).await), Some("HIT"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let expired = get(&g.url("/max-age-1")).await;
    assert_eq!(cache_status(&expired), Some("MISS"));
    assert_eq!(up.hits(), 6);
}

#[tokio::test]
async fn the_route_ttl_expires_entries() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{ ttl: 1s }", "").await;
    assert_eq!(cache_status(&get(&g.url("/t")).await), Some("MISS"));
    assert_eq!(cache_status(&get(&g.url("/t")).await), Some("HIT"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = get(&g.url("/t")).await;
    assert_eq!(cache_status(&r), Some("MISS"));
    assert_eq!(text(&r), "answer 2 for /t");
}

#[tokio::test]
async fn vary_headers_make_distinct_entries() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{ vary: [accept] }", "").await;
    let url = g.url("/vary");
    let with = |accept: &'static str| {
        let url = url.clone();
        async move { get_with(&url, &[("accept", accept)]).await }
    };
    assert_eq!(cache_status(&with("application/json").await), Some("MISS"));
    assert_eq!(cache_status(&with("text/html").await), Some("MISS"));
    let json = with("application/json").await;
    assert_eq!(cache_status(&json), Some("HIT"));
    assert_eq!(text(&json), "answer 1 for /vary");
    let html = with("text/html").await;
    assert_eq!(text(&html), "answer 2 for /vary");
    assert_eq!(up.hits(), 2);

    // Without `accept` in `vary`, a response that varies on it is never stored.
    let g = gw(up.addr, "{}", "").await;
    assert_eq!(cache_status(&get(&g.url("/vary")).await), Some("MISS"));
    assert_eq!(cache_status(&get(&g.url("/vary")).await), Some("MISS"));
}

#[tokio::test]
async fn non_2xx_answers_are_not_stored_unless_configured() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", "").await;
    for path in ["/status/404", "/status/500", "/status/201"] {
        get(&g.url(path)).await;
        let again = get(&g.url(path)).await;
        assert_eq!(cache_status(&again), Some("MISS"), "{path}");
    }
    assert_eq!(up.hits(), 6);
    let g = gw(up.addr, "{ statuses: [200, 404] }", "").await;
    get(&g.url("/status/404")).await;
    let again = get(&g.url("/status/404")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(cache_status(&again), Some("HIT"));
}

#[tokio::test]
async fn oversize_bodies_are_not_stored() {
    let up = counting_upstream().await;
    let g = gw(up.addr, "{ max_body_bytes: 1000 }", "").await;
    for path in ["/big/5000", "/stream/5000"] {
        let r = get(&g.url(path)).await;
        assert_eq!(r.body.len(), 5000, "the client gets the whole body");
        assert_eq!(
            cache_status(&get(&g.url(path)).await),
            Some("MISS"),
            "{path}"
        );
    }
    // Within the bound, both kinds are stored.
    for path in ["/big/1000", "/stream/1000"] {
        get(&g.url(path)).await;
        let hit = get(&g.url(path)).await;
        assert_eq!(cache_status(&hit), Some("HIT"), "{path}");
        assert_eq!(hit.body.len(), 1000);
    }
}

/// An upstream that, on its first connection, declares 100 bytes, sends 10 and closes; later
/// connections get a complete answer.
async fn truncating_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let i = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let _ = sock.read(&mut buf).await;
                let answer: &[u8] = if i == 0 {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\ncomplete"
                };
                let _ = sock.write_all(answer).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, served)
}

#[tokio::test]
async fn a_truncated_body_is_never_stored() {
    let (addr, served) = truncating_upstream().await;
    let g = gw(addr, "{}", "").await;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client().request(request(Method::GET, &g.url("/t"), &[])),
    )
    .await
    .expect("an answer")
    .expect("headers arrive");
    assert_eq!(
        resp.headers().get("x-cache-status").map(|v| v.as_bytes()),
        Some(&b"MISS"[..])
    );
    let body = resp.into_body().collect().await;
    assert!(body.is_err(), "the client sees the body cut short");
    let next = get(&g.url("/t")).await;
    assert_eq!(cache_status(&next), Some("MISS"), "nothing was stored");
    assert_eq!(text(&next), "complete");
    let hit = get(&g.url("/t")).await;
    assert_eq!(cache_status(&hit), Some("HIT"));
    assert_eq!(text(&hit), "complete");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

fn redis_state(prefix: &str) -> String {
    format!("state: {REDIS}\nstate_options: {{ key_prefix: \"{prefix}\", timeout: 2s }}\n")
}

#[tokio::test]
async fn entries_live_in_redis_when_configured() {
    let prefix = format!("ferrox-it:{:016x}:", fastrand::u64(..));
    let up = counting_upstream().await;
    let g = gw(up.addr, "{}", &redis_state(&prefix)).await;
    // The key holds the Host header: give both gateways the same one.
    let host = [("host", "api.example.com")];
    assert_eq!(
        cache_status(&get_with(&g.url("/r"), &host).await),
        Some("MISS")
    );
    // The entry is written to Redis once the body went out: wait until it is there.
    let client = redis::Client::open(REDIS).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at 127.0.0.1:6379");
    let pattern = format!("{prefix}r:*");
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..200 {
        keys = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(keys.len(), 1, "one entry under the test's prefix");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!((1..=60_000).contains(&ttl), "the route's 60 s TTL: {ttl}");
    let hit = get_with(&g.url("/r"), &host).await;
    assert_eq!(cache_status(&hit), Some("HIT"));
    assert_eq!(text(&hit), "answer 1 for /r");
    assert_eq!(up.hits(), 1);
    // A second gateway on the same Redis and prefix shares the entry.
    let other = gw(up.addr, "{}", &redis_state(&prefix)).await;
    let shared = get_with(&other.url("/r"), &host).await;
    assert_eq!(cache_status(&shared), Some("HIT"));
    assert_eq!(text(&shared), "answer 1 for /r");
    assert_eq!(up.hits(), 1);
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

#[tokio::test]
async fn redis_down_means_bypass_not_an_error() {
    // Nothing listens on port 1.
    let up = counting_upstream().await;
    let state = "state: redis://127.0.0.1:1\nstate_options: { timeout: 50ms }\n";
    let g = gw(up.addr, "{}", state).await;
    for i in 1..=3 {
        let r = get(&g.url("/d")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(cache_status(&r), Some("BYPASS"));
        assert_eq!(text(&r), format!("answer {i} for /d"));
    }
    let m = g.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_cache_lookups_total{result=\"error\",route=\"r\"}"
        ),
        Some(3.0)
    );
}
