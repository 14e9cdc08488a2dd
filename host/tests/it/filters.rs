//! The Wasm filter pipeline through the running gateway, with real components built from
//! `plugins/tests/`.

use std::net::SocketAddr;

use crate::support::*;

fn doc(up: SocketAddr, plugins: &str, routes: &str) -> String {
    format!(
        "upstreams:\n{}plugins:\n{plugins}routes:\n{routes}",
        upstream_yaml("u", &[up], "")
    )
}

#[tokio::test]
async fn filters_run_on_requests_and_responses_including_their_own_replies() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        &guest_plugin_yaml("hello", &["log", "counters"]),
        "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - plugin: hello\n        timeout: 100ms\n        config: { header: x-name, response_header: x-hello, count: true }\n",
    ))
    .await;
    let r = get_with(&gw.url("/x"), &[("x-name", "ada")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hello"), Some("hello ada"));
    assert_eq!(r.header("x-hello-count"), Some("1"));
    let r = get(&gw.url("/y")).await;
    assert_eq!(r.header("x-hello"), Some("hello anonymous"));
    assert_eq!(r.header("x-hello-count"), Some("2"));
    assert_eq!(up.hits(), 2);

    let r = get(&gw.url("/deny")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "denied");
    assert_eq!(
        r.header("x-hello"),
        Some("hello anonymous"),
        "response hook ran on the filter's reply"
    );
    assert_eq!(up.hits(), 2, "a filter reply never reaches the upstream");

    let m = gw.metrics().await;
    assert!(
        m.contains("ferrox_filter_duration_seconds_count{phase=\"request\",plugin=\"hello\"} 3"),
        "{m}"
    );
}

#[tokio::test]
async fn order_is_list_order_then_reverse_and_first_reply_wins() {
    let up = echo_upstream().await;
    let stage = |name: &str, respond: bool| {
        format!(
            "      - plugin: order\n        timeout: 100ms\n        config: {{ name: {name}, respond: {respond} }}\n"
        )
    };
    let routes = format!(
        "  - name: all\n    match: {{ path_prefix: /all }}\n    upstream: u\n    filters:\n{}{}{}  - name: stop\n    match: {{ path_prefix: /stop }}\n    upstream: u\n    filters:\n{}{}{}",
        stage("a", false),
        stage("b", false),
        stage("c", false),
        stage("a", false),
        stage("b", true),
        stage("c", false),
    );
    let gw = gateway(&doc(up.addr, &guest_plugin_yaml("order", &[]), &routes)).await;

    let r = get(&gw.url("/all")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-order"], "a, b, c");
    let resp_order: Vec<&str> = r
        .headers
        .get_all("x-order-resp")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(resp_order, ["c", "b", "a"]);

    let r = get(&gw.url("/stop")).await;
    assert_eq!(r.status, 418);
    let resp_order: Vec<&str> = r
        .headers
        .get_all("x-order-resp")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(resp_order, ["b", "a"], "c never ran; b and a see b's reply");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_rejected_filter_config_invalidates_the_document_with_its_path() {
    let yaml = doc(
        "127.0.0.1:9".parse().expect("addr"),
        &guest_plugin_yaml("hello", &["log", "counters"]),
        "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - plugin: hello\n        config: { header: x-name }\n",
    );
    let cfg = ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid document");
    let err = ferrox_host::gateway::Gateway::new(cfg)
        .await
        .expect_err("filter rejects its config");
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(
            |t| t.starts_with("routes[0].filters[0].config: rejected by hello:")
                && t.contains("response_header")
        ),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_plugin_importing_an_ungranted_service_is_refused_at_load() {
    let yaml = doc(
        "127.0.0.1:9".parse().expect("addr"),
        &guest_plugin_yaml("hello", &["log"]),
        "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - plugin: hello\n        config: { header: a, response_header: b }\n",
    );
    let cfg = ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid document");
    let err = ferrox_host::gateway::Gateway::new(cfg)
        .await
        .expect_err("counters not granted");
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(
            |t| t.starts_with("plugins[0]: ") && t.contains("`counters`, which is not granted")
        ),
        "{text:?}"
    );
}

/// Misbehaving guests: each fails within its deadline and follows its policy, while requests
/// on another route keep succeeding.
#[tokio::test]
async fn misbehaving_filters_follow_their_policy_and_harm_nobody_else() {
    let up = echo_upstream().await;
    let mut plugins = String::new();
    let mut routes =
        String::from("  - name: healthy\n    match: { path_prefix: /healthy }\n    upstream: u\n");
    // Deadlines are wall-clock: only `spin` gets a short one, so a loaded machine cannot turn
    // the others' failures into timeouts.
    for (g, timeout) in [("trap", "500ms"), ("spin", "20ms"), ("oom", "500ms")] {
        let grants: &[&str] = if g == "spin" {
            &["counters", "clock"]
        } else {
            &[]
        };
        plugins.push_str(&guest_plugin_yaml(g, grants));
        routes.push_str(&format!(
            "  - name: {g}-closed\n    match: {{ path_prefix: /{g}/closed }}\n    upstream: u\n    filters:\n      - {{ plugin: {g}, timeout: {timeout}, memory: 8MiB }}\n  - name: {g}-open\n    match: {{ path_prefix: /{g}/open }}\n    upstream: u\n    filters:\n      - {{ plugin: {g}, on_error: open, timeout: {timeout}, memory: 8MiB }}\n"
        ));
    }
    let gw = gateway(&doc(up.addr, &plugins, &routes)).await;
    let healthy = {
        let url = gw.url("/healthy");
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..40 {
                if get(&url).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        })
    };
    for g in ["trap", "spin", "oom"] {
        for _ in 0..2 {
            let r = get(&gw.url(&format!("/{g}/closed"))).await;
            assert_eq!(r.status, 503, "{g} closed");
            assert_eq!(r.header("ferrox-error"), Some("filter"));
            let r = get(&gw.url(&format!("/{g}/open"))).await;
            assert_eq!(r.status, 200, "{g} open skips the filter");
        }
    }
    assert_eq!(healthy.await.expect("task"), 40, "other routes unaffected");
    let m = gw.metrics().await;
    for (plugin, kind) in [("trap", "trap"), ("spin", "timeout"), ("oom", "memory")] {
        let v = metric_value(
            &m,
            &format!("ferrox_filter_failures_total{{kind=\"{kind}\",plugin=\"{plugin}\"}}"),
        );
        assert!(v.is_some_and(|v| v >= 4.0), "{plugin}/{kind}: {v:?}\n{m}");
    }
}

#[tokio::test]
async fn guests_cannot_reach_files_or_sockets_or_flood_headers() {
    let up = echo_upstream().await;
    let plugins = format!(
        "{}{}",
        guest_plugin_yaml("fs-net", &[]),
        guest_plugin_yaml("many-headers", &[])
    );
    let routes = "  - name: sandbox\n    match: { path_prefix: /sandbox }\n    upstream: u\n    filters:\n      - { plugin: fs-net, timeout: 200ms }\n  - name: flood\n    match: { path_prefix: /flood }\n    upstream: u\n    filters:\n      - { plugin: many-headers, timeout: 200ms }\n";
    let gw = gateway(&doc(up.addr, &plugins, routes)).await;
    let r = get(&gw.url("/sandbox")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["headers"]["x-sandbox"], "ok");
    let r = get(&gw.url("/flood")).await;
    assert_eq!(r.status, 200);
    let n = r.json()["headers"].as_object().expect("headers").len();
    assert!(n <= 100, "{n} headers reached the upstream");
}

/// Replacing a plugin's component and a route's filters in the watched file while requests
/// run concurrently fails no request.
#[tokio::test]
async fn hot_swapping_plugins_under_load_fails_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let up = echo_upstream().await;
    let v1 = format!(
        "upstreams:\n{}plugins:\n  - {{ name: p, path: {}, grants: [] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: p, timeout: 100ms, config: {{ name: one }} }}\n",
        upstream_yaml("u", &[up.addr], ""),
        guest("order").display()
    );
    let v2 = format!(
        "upstreams:\n{}plugins:\n  - {{ name: p, path: {}, grants: [log, counters] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: p, timeout: 100ms, config: {{ header: x-name, response_header: x-order-resp }} }}\n",
        upstream_yaml("u", &[up.addr], ""),
        guest("hello").display()
    );
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(&path, &v1).expect("write");
    let gw = gateway_watching(path.clone(), std::time::Duration::from_millis(50)).await;

    let done = Arc::new(AtomicBool::new(false));
    let seen_v1 = Arc::new(AtomicUsize::new(0));
    let seen_v2 = Arc::new(AtomicUsize::new(0));
    // 200 concurrent clients keep requests in flight through every swap.
    let mut workers = Vec::new();
    for _ in 0..200 {
        let (done, s1, s2) = (done.clone(), seen_v1.clone(), seen_v2.clone());
        let url = gw.url("/x");
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::SeqCst) || n < 3 {
                let r = get(&url).await;
                n += 1;
                match (r.status.as_u16(), r.header("x-order-resp")) {
                    (200, Some("one")) => s1.fetch_add(1, Ordering::SeqCst),
                    (200, Some("hello anonymous")) => s2.fetch_add(1, Ordering::SeqCst),
                    (status, h) => {
                        failures.push(format!("{status} {h:?}"));
                        0
                    }
                };
            }
            failures
        }));
    }
    for i in 0..6 {
        let text = if i % 2 == 0 { &v2 } else { &v1 };
        let tmp = dir.path().join("next.yaml");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    done.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.expect("worker"));
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(seen_v1.load(Ordering::SeqCst) > 0 && seen_v2.load(Ordering::SeqCst) > 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "ferrox_config_reloads_total{result=\"failure\"}"),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_filter_failing_repeatedly_is_tripped_and_bypassed_by_its_policy() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        &guest_plugin_yaml("trap", &[]),
        "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - { plugin: trap, on_error: open, timeout: 200ms }\n",
    ))
    .await;
    for _ in 0..8 {
        assert_eq!(
            get(&gw.url("/")).await.status,
            200,
            "open policy skips the filter"
        );
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_filter_failures_total{kind=\"trap\",plugin=\"trap\"}"
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "ferrox_filter_failures_total{kind=\"tripped\",plugin=\"trap\"}"
        ),
        Some(3.0),
        "{m}"
    );
}

#[tokio::test]
async fn request_isolation_runs_a_fresh_instance_per_request() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        &guest_plugin_yaml("hello", &["log", "counters"]),
        "  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    filters:\n      - plugin: hello\n        isolation: request\n        timeout: 200ms\n        config: { header: x-name, response_header: x-hello, count: true }\n",
    ))
    .await;
    for i in 1..=5 {
        let r = get_with(&gw.url("/"), &[("x-name", "bo")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hello"), Some("hello bo"));
        // Shared state lives in host services, so it survives fresh instances.
        assert_eq!(r.header("x-hello-count"), Some(i.to_string().as_str()));
    }
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_by_content_hash() {
    use sha2::Digest;
    let bytes = std::fs::read(guest("order")).expect("guest");
    ferrox_host::plugin::Plugin::load("order", &bytes, &[]).expect("loads");
    let engine = ferrox_host::plugin::PluginEngine::global().expect("engine");
    let dir = engine.cache_dir().expect("a cache directory");
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let cached = std::fs::read_dir(dir)
        .expect("cache dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&digest));
    assert!(cached, "no artifact for {digest} in {}", dir.display());
}
