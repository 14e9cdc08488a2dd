//! The built-in `transform` filter through the running gateway: what reaches the upstream (the
//! echo upstream shows it), what reaches the client, templates, and config errors.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::support::*;

/// A document with upstream `u` at `up`, optional `plugins:` and these routes (YAML list items).
fn doc(up: SocketAddr, plugins: &str, routes: &str) -> String {
    let plugins = if plugins.is_empty() {
        String::new()
    } else {
        format!("plugins:\n{plugins}")
    };
    format!(
        "upstreams:\n{}{plugins}routes:\n{routes}",
        upstream_yaml("u", &[up], "")
    )
}

/// A route `name` on `prefix` to `u` with one transform filter configured by `config` (YAML
/// flow mapping).
fn transform_route(name: &str, prefix: &str, config: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{ path_prefix: {prefix} }}\n    upstream: u\n    filters:\n      - plugin: transform\n        timeout: 200ms\n        config: {config}\n"
    )
}

/// The values of `name` in a response, in order.
fn all<'a>(r: &'a Resp, name: &str) -> Vec<&'a str> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("text"))
        .collect()
}

#[tokio::test]
async fn the_designs_example_config_works_on_a_route() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "",
        &transform_route(
            "users-api",
            "/",
            "{ response: { set_headers: { x-gateway: ferrox } } }",
        ),
    ))
    .await;
    let r = get_with(&gw.url("/users?page=2"), &[("x-gateway", "client")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(all(&r, "x-gateway"), ["ferrox"]);
    let j = r.json();
    assert_eq!(j["path"], "/users");
    assert_eq!(j["query"], "page=2");
    assert_eq!(
        j["headers"]["x-gateway"], "client",
        "the request is left alone"
    );
}

#[tokio::test]
async fn request_edits_reach_the_upstream() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "",
        &transform_route(
            "api",
            "/",
            "{ request: { remove_headers: [x-debug, x-api-version], rename_headers: { x-old: x-new, x-missing: x-never }, set_headers: { x-set: fixed, x-api-version: '2' }, add_headers: { x-multi: added }, strip_prefix: /api, add_query: { source: gateway, note: 'a b&c=d/é' } } }",
        ),
    ))
    .await;
    let req = Request::get(gw.url("/api/users/7?page=2"))
        .header("x-debug", "1")
        .header("x-api-version", "1")
        .header("x-old", "first")
        .header("x-old", "second")
        .header("x-new", "stale")
        .header("x-set", "client")
        .header("x-multi", "client")
        .header("x-keep", "kept")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let r = send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    let h = &j["headers"];
    assert_eq!(j["path"], "/users/7");
    assert_eq!(
        j["query"], "page=2&note=a%20b%26c%3Dd%2F%C3%A9&source=gateway",
        "pairs appended in name order, percent-encoded"
    );
    assert!(h.get("x-debug").is_none(), "{h}");
    assert_eq!(h["x-api-version"], "2", "removed, then set");
    assert!(h.get("x-old").is_none(), "{h}");
    assert_eq!(h["x-new"], "first, second", "rename keeps every value");
    assert!(
        h.get("x-never").is_none(),
        "renaming a missing header does nothing"
    );
    assert_eq!(h["x-set"], "fixed");
    assert_eq!(h["x-multi"], "client, added");
    assert_eq!(h["x-keep"], "kept");

    // Only on a segment boundary; nothing left gives `/`; no query means a fresh one.
    let r = get(&gw.url("/api")).await;
    let j = r.json();
    assert_eq!(j["path"], "/");
    assert_eq!(j["query"], "note=a%20b%26c%3Dd%2F%C3%A9&source=gateway");
    let r = get(&gw.url("/apix/users")).await;
    assert_eq!(r.json()["path"], "/apix/users");
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn rewrite_path_replaces_the_path_and_keeps_the_query() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "",
        &transform_route(
            "items",
            "/",
            "{ request: { rewrite_path: /v2/items, add_query: { v: '2' } } }",
        ),
    ))
    .await;
    let r = get(&gw.url("/legacy/list?sort=name")).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["path"], "/v2/items");
    assert_eq!(j["query"], "sort=name&v=2");
}

#[tokio::test]
async fn response_edits_reach_the_client() {
    let up = upstream(|_req: Request<Incoming>| async move {
        let mut r = text_response(StatusCode::CREATED, "made");
        let h = r.headers_mut();
        h.insert("server", "upstream/1.0".parse().expect("value"));
        h.insert("x-upstream-id", "u-7".parse().expect("value"));
        h.insert("cache-control", "max-age=60".parse().expect("value"));
        h.insert("vary", "accept".parse().expect("value"));
        r
    })
    .await;
    let gw = gateway(&doc(
        up.addr,
        "",
        &transform_route(
            "r",
            "/",
            "{ response: { remove_headers: [server], rename_headers: { x-upstream-id: x-origin-id }, set_headers: { cache-control: no-store }, add_headers: { vary: x-api-version } } }",
        ),
    ))
    .await;
    let r = get(&gw.url("/thing")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body, "made");
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-upstream-id"), None);
    assert_eq!(r.header("x-origin-id"), Some("u-7"));
    assert_eq!(all(&r, "cache-control"), ["no-store"]);
    assert_eq!(all(&r, "vary"), ["accept", "x-api-version"]);
}

#[tokio::test]
async fn templates_carry_the_request_id_client_ip_route_and_consumer() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        "",
        &transform_route(
            "orders-api",
            "/",
            "{ request: { set_headers: { x-rid: $request_id, x-ip: $client_ip, x-route: '${route}/v1', x-consumer: '[$consumer]', x-price: '$$5' }, add_query: { rid: $request_id, from: $client_ip } }, response: { set_headers: { x-echo-rid: $request_id, x-echo-route: $route, x-echo-ip: $client_ip, x-echo-consumer: '[$consumer]' } } }",
        ),
    ))
    .await;

    // A request id the gateway generates.
    let r = get(&gw.url("/o")).await;
    assert_eq!(r.status, StatusCode::OK);
    let rid = r
        .header("x-request-id")
        .expect("request id returned")
        .to_owned();
    assert!(!rid.is_empty());
    let j = r.json();
    let h = &j["headers"];
    assert_eq!(h["x-rid"], rid.as_str());
    assert_eq!(h["x-ip"], "127.0.0.1");
    assert_eq!(h["x-route"], "orders-api/v1");
    assert_eq!(h["x-consumer"], "[]", "no consumer: empty");
    assert_eq!(h["x-price"], "$5");
    assert_eq!(
        j["query"].as_str(),
        Some(format!("from=127.0.0.1&rid={rid}").as_str())
    );
    assert_eq!(r.header("x-echo-rid"), Some(rid.as_str()));
    assert_eq!(r.header("x-echo-route"), Some("orders-api"));
    assert_eq!(r.header("x-echo-ip"), Some("127.0.0.1"));
    assert_eq!(r.header("x-echo-consumer"), Some("[]"));

    // A request id the client sent (kept by the gateway), percent-encoded in the query.
    let r = get_with(&gw.url("/o"), &[("x-request-id", "client/id:1")]).await;
    assert_eq!(r.header("x-request-id"), Some("client/id:1"));
    assert_eq!(r.header("x-echo-rid"), Some("client/id:1"));
    let j = r.json();
    assert_eq!(j["headers"]["x-rid"], "client/id:1");
    assert_eq!(j["query"], "from=127.0.0.1&rid=client%2Fid%3A1");
}

#[tokio::test]
async fn response_edits_also_apply_to_a_later_filters_reply() {
    let up = echo_upstream().await;
    let routes = "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - plugin: transform\n        timeout: 200ms\n        config: { response: { set_headers: { x-gateway: ferrox, x-route: $route } } }\n      - plugin: hello\n        timeout: 200ms\n        config: { header: x-name, response_header: x-hello }\n";
    let gw = gateway(&doc(
        up.addr,
        &guest_plugin_yaml("hello", &["counters"]),
        routes,
    ))
    .await;
    let r = get(&gw.url("/deny")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "denied");
    assert_eq!(r.header("x-gateway"), Some("ferrox"));
    assert_eq!(r.header("x-route"), Some("r"));
    assert_eq!(up.hits(), 0);
    let r = get(&gw.url("/ok")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-gateway"), Some("ferrox"));
    assert_eq!(r.header("x-hello"), Some("hello anonymous"));
}

/// The errors a document gets from `Gateway::new`.
async fn config_errors(filter_config: &str) -> Vec<String> {
    let yaml = doc(
        "127.0.0.1:9".parse().expect("addr"),
        "",
        &transform_route("r", "/", filter_config),
    );
    let cfg = ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid document");
    match ferrox_host::gateway::Gateway::new(cfg).await {
        Ok(_) => panic!("config {filter_config} accepted"),
        Err(err) => err.iter().map(ToString::to_string).collect(),
    }
}

#[tokio::test]
async fn a_bad_config_is_rejected_with_its_path_and_reason() {
    for (config, reason) in [
        (
            "{ request: { set_headers: { x-a: $user } } }",
            "request.set_headers.x-a: unknown variable `$user`",
        ),
        (
            "{ response: { strip_prefix: /api } }",
            "unknown field `strip_prefix` in `response`",
        ),
        (
            "{ request: { set_headers: { 'bad name': v } } }",
            "request.set_headers: \"bad name\" is not a valid header name",
        ),
        (
            "{ request: { remove_headers: [host] } }",
            "request.remove_headers: header `host` is managed by the gateway",
        ),
        ("{ responses: {} }", "unknown field `responses`"),
    ] {
        let errors = config_errors(config).await;
        let want = format!("routes[0].filters[0].config: rejected by transform: {reason}");
        assert!(
            errors.iter().any(|e| e.starts_with(&want)),
            "{config}: {errors:?} lacks {want:?}"
        );
    }
}
