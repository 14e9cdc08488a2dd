//! The built-in `rate-limit` filter through the running gateway (counters local to the gateway
//! instance).
//!
//! Windows are aligned to multiples of their length since the Unix epoch, on the clock this
//! process reads too; tests that count within one window first make sure enough of it is left
//! (a short sleep across the boundary at worst).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;

use crate::support::*;

/// A document with one route `r` on `/` to `up`, filtered by `rate-limit` with `config`.
fn doc(up: SocketAddr, timeout: &str, config: &str) -> String {
    format!(
        "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: rate-limit\n        timeout: {timeout}\n        config: {config}\n",
        upstream_yaml("u", &[up], "")
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// The index of the `window_ms` window holding the current instant.
fn window_index(window_ms: u64) -> u64 {
    now_ms() / window_ms
}

/// Make sure at least `room_ms` is left in the current `window_ms` window, sleeping into the
/// next one if not.
async fn room_in_window(window_ms: u64, room_ms: u64) {
    let left = window_ms - now_ms() % window_ms;
    if left < room_ms {
        tokio::time::sleep(Duration::from_millis(left + 10)).await;
    }
}

/// `(name, r, t)` of a `RateLimit` header value `"<name>";r=<r>;t=<t>`.
fn ratelimit(resp: &Resp) -> (String, u64, u64) {
    let value = resp
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit header on a {}", resp.status));
    let mut parts = value.split(';');
    let name = parts.next().expect("an item").trim_matches('"').to_owned();
    let mut param = |key: &str| -> u64 {
        parts
            .next()
            .and_then(|p| p.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {value:?}"))
    };
    let r = param("r=");
    let t = param("t=");
    (name, r, t)
}

#[tokio::test]
async fn the_fourth_request_in_a_window_is_refused_with_retry_after_and_ratelimit_headers() {
    let up = echo_upstream().await;
    // The design's example, with 3 instead of 100.
    let gw = gateway(&doc(
        up.addr,
        "200ms",
        "{ limits: [{ requests: 3, window: 60s }], by: ip }",
    ))
    .await;
    room_in_window(60_000, 5_000).await;

    for expected_remaining in [2, 1, 0] {
        let r = get(&gw.url("/a")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("ratelimit-policy"),
            Some(r#""3-per-60s";q=3;w=60"#)
        );
        let (name, remaining, t) = ratelimit(&r);
        assert_eq!(
            (name.as_str(), remaining),
            ("3-per-60s", expected_remaining)
        );
        assert!((1..=60).contains(&t), "t={t}");
    }

    let r = get(&gw.url("/a")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""3-per-60s";q=3;w=60"#)
    );
    assert_eq!(
        ratelimit(&r),
        ("3-per-60s".to_owned(), 0, retry_after),
        "t agrees with Retry-After"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["limit"], "3-per-60s");
    assert_eq!(body["retry_after"], retry_after);
    assert_eq!(
        body["request_id"].as_str(),
        r.header("x-request-id"),
        "the body names the request"
    );

    assert_eq!(get(&gw.url("/b")).await.status, 429, "still refused");
    assert_eq!(up.hits(), 3, "refused requests never reach the upstream");

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_plugin_counter_total{name=\"limited\",plugin=\"rate-limit\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "ferrox_rate_limited_total{route=\"r\"}"),
        Some(2.0),
        "the host counts 429s per route"
    );
}

#[tokio::test]
async fn clients_are_told_apart_by_a_header() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "200ms",
        "{ limits: [{ requests: 2, window: 60s }], by: header, header: x-user }",
    ))
    .await;
    room_in_window(60_000, 5_000).await;

    let alice = [("x-user", "alice")];
    let bob = [("x-user", "bob")];
    assert_eq!(get_with(&gw.url("/"), &alice).await.status, 200);
    let r = get_with(&gw.url("/"), &alice).await;
    assert_eq!(r.status, 200);
    assert_eq!(ratelimit(&r).1, 0);
    assert_eq!(
        r.json()["headers"]["x-user"],
        "alice",
        "the header goes upstream"
    );
    assert_eq!(get_with(&gw.url("/"), &alice).await.status, 429);

    let r = get_with(&gw.url("/"), &bob).await;
    assert_eq!(r.status, 200, "bob has his own budget");
    assert_eq!(ratelimit(&r).1, 1);
    // Without the header a client is counted by its address: a budget of its own too.
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(ratelimit(&r).1, 1);
    assert_eq!(get_with(&gw.url("/"), &alice).await.status, 429);
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn upstream_responses_carry_the_headers_of_every_limit() {
    // An upstream with a limiter of its own: the gateway's numbers replace its headers.
    let up = upstream(|_req: http::Request<hyper::body::Incoming>| async {
        let mut resp = json_response(StatusCode::OK, &serde_json::json!({ "ok": true }));
        resp.headers_mut()
            .insert("ratelimit", r#""upstream";r=9;t=9"#.parse().expect("value"));
        resp
    })
    .await;
    let gw = gateway(&doc(
        up.addr,
        "200ms",
        "{ limits: [{ requests: 5, window: 1m, name: per-minute }, { requests: 100, window: 1h }] }",
    ))
    .await;
    room_in_window(60_000, 5_000).await;

    for expected_remaining in [4, 3] {
        let r = get(&gw.url("/")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["ok"], true);
        assert_eq!(
            r.header("ratelimit-policy"),
            Some(r#""per-minute";q=5;w=60, "100-per-3600s";q=100;w=3600"#)
        );
        assert_eq!(r.headers.get_all("ratelimit").iter().count(), 1);
        let (name, remaining, t) = ratelimit(&r);
        assert_eq!(
            (name.as_str(), remaining),
            ("per-minute", expected_remaining),
            "the limit with the least left"
        );
        assert!((5..=60).contains(&t), "t={t}");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_one_second_window_resets() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "200ms",
        "{ limits: [{ requests: 2, window: 1s }] }",
    ))
    .await;

    // Fill one window; retry in the next if the three requests straddled a boundary.
    let mut attempts = 0;
    let (window, refused) = loop {
        room_in_window(1_000, 600).await;
        let window = window_index(1_000);
        let a = get(&gw.url("/")).await;
        let b = get(&gw.url("/")).await;
        let c = get(&gw.url("/")).await;
        if window_index(1_000) == window {
            assert_eq!(
                (a.status.as_u16(), b.status.as_u16(), c.status.as_u16()),
                (200, 200, 429)
            );
            break (window, c);
        }
        attempts += 1;
        assert!(attempts < 5, "never fit three requests into one second");
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(ratelimit(&refused), ("2-per-1s".to_owned(), 0, 1));

    // Poll until the next window admits again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let admitted = loop {
        let r = get(&gw.url("/")).await;
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(window_index(1_000) > window, "admitted in a later window");
    assert_eq!(
        ratelimit(&admitted).1,
        1,
        "a fresh window (refused polls were not counted)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_passes_among_100_concurrent_requests() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "1s",
        "{ limits: [{ requests: 50, window: 60s }] }",
    ))
    .await;
    room_in_window(60_000, 10_000).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let url = gw.url("/");
        tasks.spawn(async move { get(&url).await });
    }
    let mut remaining_seen = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task");
        match r.status.as_u16() {
            200 => remaining_seen.push(ratelimit(&r).1),
            429 => {
                assert_eq!(ratelimit(&r).1, 0);
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    remaining_seen.sort_unstable();
    assert_eq!(
        remaining_seen,
        (0..50).collect::<Vec<u64>>(),
        "50 admitted, each saw its own count"
    );
    assert_eq!(refused, 50);
    assert_eq!(up.hits(), 50);
}

#[tokio::test]
async fn a_sliding_window_refuses_over_its_estimate() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "200ms",
        "{ limits: [{ requests: 2, window: 60s }], algorithm: sliding, by: route }",
    ))
    .await;
    room_in_window(60_000, 5_000).await;
    assert_eq!(get(&gw.url("/")).await.status, 200);
    assert_eq!(get(&gw.url("/")).await.status, 200);
    let r = get(&gw.url("/")).await;
    assert_eq!(r.status, 429);
    let retry_after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    // The estimate drops as the window slides: at most two windows away.
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_bad_config_is_refused_with_its_path() {
    for (config, expected) in [
        (
            "{ limits: [{ requests: 3, window: 60s, per: ip }] }",
            "unknown field `limits[0].per`",
        ),
        ("{ by: ip }", "`limits` is required"),
        (
            "{ limits: [{ requests: 3, window: 60 }] }",
            "must be a duration string",
        ),
        (
            "{ limits: [{ requests: 3, window: 60s }], by: header }",
            "`header` is required",
        ),
    ] {
        let yaml = doc("127.0.0.1:9".parse().expect("addr"), "200ms", config);
        let cfg =
            ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid document");
        let err = ferrox_host::gateway::Gateway::new(cfg)
            .await
            .expect_err("the filter rejects its config");
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|t| t
                .starts_with("routes[0].filters[0].config: rejected by rate-limit:")
                && t.contains(expected)),
            "{config}: {text:?}"
        );
    }
}

/// key-auth then rate-limit `by: consumer`: each authenticated consumer has its own budget, and
/// the pipeline carries the consumer from one built-in to the next.
#[tokio::test]
async fn limits_by_consumer_after_key_auth() {
    let up = echo_upstream().await;
    let yaml = format!(
        "upstreams:\n{}consumers:\n  - {{ name: alice, keys: [alice-key] }}\n  - {{ name: bob, keys: [bob-key] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: key-auth, timeout: 200ms }}\n      - plugin: rate-limit\n        timeout: 200ms\n        config: {{ limits: [{{ requests: 2, window: 60s }}], by: consumer }}\n",
        upstream_yaml("u", &[up.addr], "")
    );
    let gw = gateway(&yaml).await;
    room_in_window(60_000, 5_000).await;
    let status = |key: &'static str| {
        let url = gw.url("/x");
        async move { get_with(&url, &[("apikey", key)]).await.status }
    };
    assert_eq!(status("alice-key").await, StatusCode::OK);
    assert_eq!(status("alice-key").await, StatusCode::OK);
    assert_eq!(status("alice-key").await, StatusCode::TOO_MANY_REQUESTS);
    // Bob is a different consumer on the same client address: his own budget.
    assert_eq!(status("bob-key").await, StatusCode::OK);
    assert_eq!(status("bob-key").await, StatusCode::OK);
    assert_eq!(status("bob-key").await, StatusCode::TOO_MANY_REQUESTS);
    // Unauthenticated requests never reach the limiter's budget: 401 first.
    assert_eq!(status("nobody").await, StatusCode::UNAUTHORIZED);
    assert_eq!(up.hits(), 4);
}
