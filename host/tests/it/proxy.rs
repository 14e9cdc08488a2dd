//! Basic proxying: forwarding headers, request ids, trace context, path handling.

use crate::support::*;

#[tokio::test]
async fn proxies_and_sets_forwarding_headers() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "upstreams:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, upstream: u, strip_prefix: true }}\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    let r = get_with(
        &gw.url("/api/users/7?x=1"),
        &[("x-forwarded-for", "6.6.6.6"), ("x-request-id", "req-42")],
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["path"], "/users/7");
    assert_eq!(j["query"], "x=1");
    let h = &j["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "untrusted XFF replaced");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr().to_string());
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["host"], up.addr.to_string());
    assert!(h["traceparent"].as_str().is_some_and(|t| t.len() == 55));
    assert_eq!(r.header("x-request-id"), Some("req-42"));
}
