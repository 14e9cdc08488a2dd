//! Basic proxying: forwarding headers, request ids, trace context, path handling.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

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

/// A gateway whose routes (YAML list items) go to the named upstreams.
async fn gateway_with(upstreams: &[(&str, &Upstream)], extra_upstream: &str, routes: &str) -> Gw {
    let ups: String = upstreams
        .iter()
        .map(|(name, up)| upstream_yaml(name, &[up.addr], extra_upstream))
        .collect();
    gateway(&format!("upstreams:\n{ups}routes:\n{routes}")).await
}

/// An upstream that answers every request with `name`.
async fn named_upstream(name: &'static str) -> Upstream {
    upstream(move |_req: Request<Incoming>| async move { text_response(StatusCode::OK, name) })
        .await
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A W3C `traceparent` of version 00 with non-zero ids.
fn is_valid_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    t.len() == 55
        && parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts.iter().all(|p| is_lower_hex(p))
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

#[tokio::test]
async fn trusted_proxy_forwarding_headers_are_kept_and_appended() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "server: {{ trusted_proxies: [127.0.0.0/8] }}\nupstreams:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: / }}, upstream: u }}\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;

    let r = get_with(
        &gw.url("/a"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "appended");
    assert_eq!(h["x-real-ip"], "203.0.113.9", "client taken from XFF");
    assert_eq!(h["x-forwarded-proto"], "https", "kept from a trusted proxy");

    // The client is the rightmost address that is not itself a trusted proxy.
    let r = get_with(
        &gw.url("/a"),
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 127.0.0.5")],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"],
        "198.51.100.1, 203.0.113.9, 127.0.0.5, 127.0.0.1"
    );
    assert_eq!(h["x-real-ip"], "203.0.113.9");
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "no XFP sent: the gateway's own"
    );
}

#[tokio::test]
async fn untrusted_peer_x_real_ip_is_the_socket_peer() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "server: {{ trusted_proxies: [10.0.0.0/8] }}\nupstreams:\n{}routes:\n  - {{ name: api, match: {{ path_prefix: / }}, upstream: u }}\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    let r = get_with(
        &gw.url("/a"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
}

#[tokio::test]
async fn traceparent_is_kept_when_valid_and_replaced_when_invalid() {
    let up = echo_upstream().await;
    let gw = gateway_with(
        &[("u", &up)],
        "",
        "  - { name: api, match: { path_prefix: / }, upstream: u }\n",
    )
    .await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_with(
        &gw.url("/t"),
        &[("traceparent", valid), ("tracestate", "vendor=1")],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["traceparent"], valid, "passed through unchanged");
    assert_eq!(h["tracestate"], "vendor=1");

    for invalid in [
        "00-not-a-trace",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ] {
        let r = get_with(&gw.url("/t"), &[("traceparent", invalid)]).await;
        let t = r.json()["headers"]["traceparent"]
            .as_str()
            .expect("traceparent forwarded")
            .to_owned();
        assert_ne!(t, invalid);
        assert!(is_valid_traceparent(&t), "{invalid:?} replaced by {t:?}");
    }
    let r = get(&gw.url("/t")).await;
    let t = r.json()["headers"]["traceparent"]
        .as_str()
        .expect("traceparent started")
        .to_owned();
    assert!(is_valid_traceparent(&t), "{t:?}");
}

#[tokio::test]
async fn request_id_is_generated_when_absent_and_returned() {
    let up = echo_upstream().await;
    let gw = gateway_with(
        &[("u", &up)],
        "",
        "  - { name: api, match: { path_prefix: / }, upstream: u }\n",
    )
    .await;
    let r = get(&gw.url("/id")).await;
    assert_eq!(r.status, 200);
    let id = r
        .header("x-request-id")
        .expect("request id in response")
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(is_lower_hex(&id), "{id}");
    assert_eq!(
        r.json()["headers"]["x-request-id"],
        id.as_str(),
        "same id upstream"
    );
    let again = get(&gw.url("/id")).await;
    assert_ne!(
        again.header("x-request-id"),
        Some(id.as_str()),
        "ids are unique"
    );

    // Gateway-made responses carry it too.
    let r = get(&gw.url("/%2F")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn rewrite_replaces_the_matched_prefix() {
    let up = echo_upstream().await;
    let gw = gateway_with(
        &[("u", &up)],
        "",
        "  - { name: api, match: { path_prefix: /api }, upstream: u, rewrite: /v2 }\n  - { name: exact, match: { path: /old }, upstream: u, rewrite: /new/place }\n",
    )
    .await;
    let r = get(&gw.url("/api/users/7?x=1")).await;
    let j = r.json();
    assert_eq!(j["path"], "/v2/users/7");
    assert_eq!(j["query"], "x=1");
    assert_eq!(get(&gw.url("/api")).await.json()["path"], "/v2");
    assert_eq!(get(&gw.url("/old")).await.json()["path"], "/new/place");
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host() {
    let up = echo_upstream().await;
    let gw = gateway_with(
        &[("u", &up)],
        "    preserve_host: true\n",
        "  - { name: api, match: { path_prefix: / }, upstream: u }\n",
    )
    .await;
    let r = get_with(&gw.url("/h"), &[("host", "client.example:8443")]).await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["host"], "client.example:8443");
    assert_eq!(h["x-forwarded-host"], "client.example:8443");
}

#[tokio::test]
async fn routes_match_on_exact_and_wildcard_hosts() {
    let exact = named_upstream("exact").await;
    let wild = named_upstream("wild").await;
    // The wildcard comes first in the file: the exact host must still win.
    let gw = gateway_with(
        &[("wild", &wild), ("exact", &exact)],
        "",
        "  - { name: wild, match: { host: \"*.example.com\", path_prefix: / }, upstream: wild }\n  - { name: exact, match: { host: api.example.com, path_prefix: / }, upstream: exact }\n",
    )
    .await;
    for (host, expected) in [
        ("api.example.com", "exact"),
        ("API.Example.COM:8080", "exact"),
        ("www.example.com", "wild"),
        ("a.b.example.com", "wild"),
    ] {
        let r = get_with(&gw.url("/"), &[("host", host)]).await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(&r.body[..], expected.as_bytes(), "{host}");
    }
    for host in ["example.com", "api.example.org", "notexample.com"] {
        let r = get_with(&gw.url("/"), &[("host", host)]).await;
        assert_eq!(r.status, 404, "{host}");
        assert_eq!(r.header("ferrox-error"), Some("no-route"), "{host}");
    }
}

#[tokio::test]
async fn method_restricted_route_refuses_other_methods() {
    let up = echo_upstream().await;
    let gw = gateway_with(
        &[("u", &up)],
        "",
        "  - { name: ro, match: { path_prefix: /ro, methods: [GET] }, upstream: u }\n",
    )
    .await;
    assert_eq!(get(&gw.url("/ro/x")).await.status, 200);
    let r = send(
        Request::post(gw.url("/ro/x"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("ferrox-error"), Some("no-route"));
    assert_eq!(up.hits(), 1, "the POST never reached the upstream");
}

#[tokio::test]
async fn exact_path_beats_prefix_and_longer_prefix_wins() {
    let short = named_upstream("short").await;
    let long = named_upstream("long").await;
    let exact = named_upstream("exact").await;
    // Least specific first in the file: precedence must not depend on order.
    let gw = gateway_with(
        &[("short", &short), ("long", &long), ("exact", &exact)],
        "",
        "  - { name: short, match: { path_prefix: /api }, upstream: short }\n  - { name: long, match: { path_prefix: /api/users }, upstream: long }\n  - { name: exact, match: { path: /api/users }, upstream: exact }\n",
    )
    .await;
    for (path, expected) in [
        ("/api/users", "exact"),
        ("/api/users/7", "long"),
        ("/api/users/", "long"),
        ("/api/orders", "short"),
        ("/api/usersx", "short"),
        ("/api", "short"),
    ] {
        let r = get(&gw.url(path)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(&r.body[..], expected.as_bytes(), "{path}");
    }
    let r = get(&gw.url("/apiary")).await;
    assert_eq!(r.status, 404, "prefixes match on segment boundaries");
}
