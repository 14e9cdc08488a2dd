//! Three gateway instances in this process, each with its own PostgreSQL store connection, on one
//! fresh database and one Redis: changes committed through one serve on the others, change
//! propagation over 100 changes (printed), a Redis-backed rate limit exact across the cluster,
//! filter churn under load without a failed request, and a PostgreSQL outage that traffic does
//! not notice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrox_host::config::{FilterConfig, GatewayConfig, RouteConfig};
use ferrox_host::store::{Store, StoreError, Version};

use crate::pg_store::{TestDb, audit, eventually};
use crate::support::*;

/// Start `n` instances on `db` from the same file `yaml` (the first seeds the database).
pub async fn cluster(db: &TestDb, n: usize, yaml: &str) -> Vec<Gw> {
    let doc = format!("database_url: {}\n{yaml}", db.url);
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(gateway(&doc).await);
    }
    for g in &nodes {
        assert_eq!(g.running.control.store.kind(), "postgres");
    }
    nodes
}

fn store(g: &Gw) -> &Store {
    &g.running.control.store
}

/// Load, change and commit through `g`'s store; returns the new version.
async fn change(g: &Gw, what: &str, f: impl FnOnce(&mut GatewayConfig)) -> Version {
    let stored = store(g).load().await.expect("load");
    let mut doc = stored.config;
    f(&mut doc);
    store(g)
        .commit(stored.version, &doc, audit("update", what))
        .await
        .expect("commit")
}

/// Wait until every node runs `version` or newer.
async fn all_at(nodes: &[Gw], version: Version) {
    eventually(
        Duration::from_secs(10),
        "every node applies the change",
        || {
            nodes
                .iter()
                .all(|g| g.running.control.applied_version() >= version)
        },
    )
    .await;
}

fn route(name: &str, prefix: &str, filters: Vec<FilterConfig>) -> RouteConfig {
    let mut r: RouteConfig = serde_yaml::from_str(&format!(
        "{{ name: {name}, match: {{ path_prefix: {prefix} }}, upstream: u }}"
    ))
    .expect("route");
    r.filters = filters;
    r
}

fn filter(plugin: &str, config: serde_json::Value) -> FilterConfig {
    let mut f: FilterConfig =
        serde_yaml::from_str(&format!("{{ plugin: {plugin}, timeout: 500ms }}")).expect("filter");
    f.config = config;
    f
}

fn header_filter(value: &str) -> FilterConfig {
    filter(
        "transform",
        serde_json::json!({ "response": { "set_headers": { "x-version": value } } }),
    )
}

#[tokio::test]
async fn a_route_committed_through_one_instance_serves_on_all() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = cluster(
        &db,
        3,
        &format!("upstreams:\n{}", upstream_yaml("u", &[up.addr], "")),
    )
    .await;
    for g in &nodes {
        assert_eq!(get(&g.url("/new")).await.status, 404);
    }
    let v = change(&nodes[0], "routes/new", |d| {
        d.routes
            .push(route("new", "/new", vec![header_filter("one")]));
    })
    .await;
    all_at(&nodes, v).await;
    for g in &nodes {
        let r = get(&g.url("/new/x")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-version"), Some("one"));
    }
    // And through another instance, back again.
    let v = change(&nodes[2], "routes/new", |d| d.routes.clear()).await;
    all_at(&nodes, v).await;
    for g in &nodes {
        assert_eq!(get(&g.url("/new/x")).await.status, 404);
    }
}

#[tokio::test]
async fn change_propagation_over_100_changes() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = cluster(
        &db,
        3,
        &format!(
            "upstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
            upstream_yaml("u", &[up.addr], "")
        ),
    )
    .await;
    let mut took = Vec::with_capacity(100);
    let mut commits = Vec::with_capacity(100);
    for i in 0..100 {
        let value = format!("v{i}");
        let started = Instant::now();
        let v = change(&nodes[0], "routes/r", |d| {
            d.routes[0].filters = vec![header_filter(&value)];
        })
        .await;
        commits.push(started.elapsed());
        while !nodes[1..]
            .iter()
            .all(|g| g.running.control.applied_version() >= v)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "change {i} not applied within 10 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        took.push(started.elapsed());
        for g in &nodes[1..] {
            let snap = g.running.gateway.snapshot();
            assert_eq!(
                snap.config.routes[0].filters[0].config["response"]["set_headers"]["x-version"],
                value.as_str()
            );
        }
    }
    // A applies its own commits through its follower too.
    // Read the version first: a `watch` borrow kept across the await would block the
    // store's own updates of it.
    let newest = *store(&nodes[0]).changes().borrow();
    all_at(&nodes, newest).await;
    for g in &nodes {
        assert_eq!(get(&g.url("/")).await.header("x-version"), Some("v99"));
    }
    took.sort();
    commits.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "change propagation over {} changes, 3 instances (commit on A until B and C run it): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms (of which the commit itself: p50 {:.1} ms, p99 {:.1} ms)",
        took.len(),
        ms(took[took.len() / 2]),
        ms(took[took.len() * 9 / 10]),
        ms(took[took.len() * 99 / 100]),
        ms(commits[commits.len() / 2]),
        ms(commits[commits.len() * 99 / 100])
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[tokio::test]
async fn a_redis_rate_limit_is_exact_across_three_instances() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let prefix = format!("ferrox-it:{:016x}:", fastrand::u64(..));
    let limit = 25;
    let nodes = cluster(
        &db,
        3,
        &format!(
            "state: redis://127.0.0.1:6379\nstate_options: {{ key_prefix: \"{prefix}\", timeout: 2s }}\nupstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: rate-limit\n        timeout: 2s\n        config: {{ limits: [{{ requests: {limit}, window: 60s }}], by: ip, policy: fail_closed }}\n",
            upstream_yaml("u", &[up.addr], "")
        ),
    )
    .await;
    // Keep the whole burst inside one window.
    let left = 60_000 - now_ms() % 60_000;
    if left < 15_000 {
        tokio::time::sleep(Duration::from_millis(left + 20)).await;
    }
    let mut tasks = Vec::new();
    for i in 0..limit * 3 {
        let url = nodes[i % 3].url("/");
        tasks.push(tokio::spawn(async move { get(&url).await.status }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("client").as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (ok, limited),
        (limit, limit * 2),
        "exactly {limit} admitted across 3 instances"
    );
}

/// One edit of the document.
type Step = Box<dyn FnOnce(&mut GatewayConfig)>;

#[tokio::test]
async fn filter_churn_under_load_fails_no_request() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = Arc::new(
        cluster(
            &db,
            3,
            &format!(
                "upstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
                upstream_yaml("u", &[up.addr], "")
            ),
        )
        .await,
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..9 {
        let url = nodes[c % 3].url("/churn");
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = get(&url).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "failed: {} {:?}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                }
            }
        }));
    }
    let generous = || {
        filter(
            "rate-limit",
            serde_json::json!({ "limits": [{ "requests": 1_000_000, "window": "60s" }], "by": "ip" }),
        )
    };
    let mut last = 0;
    for round in 0..5 {
        let tag = format!("r{round}");
        // Attach, attach a second, reorder, update a config, detach one, detach the other.
        let steps: Vec<Step> = vec![
            Box::new(|d| d.routes[0].filters.push(header_filter("a"))),
            Box::new(move |d| d.routes[0].filters.insert(0, generous())),
            Box::new(|d| d.routes[0].filters.swap(0, 1)),
            Box::new(move |d| d.routes[0].filters[0] = header_filter(&tag)),
            Box::new(|d| {
                d.routes[0].filters.remove(1);
            }),
            Box::new(|d| d.routes[0].filters.clear()),
        ];
        for step in steps {
            last = change(&nodes[round % 3], "routes/r/filters", step).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    all_at(&nodes, last).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent >= 100, "only {sent} requests during the churn");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests out of {sent}"
    );
    for g in nodes.iter() {
        assert!(
            g.running.gateway.snapshot().config.routes[0]
                .filters
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_postgres_outage_keeps_traffic_flowing_and_recovers() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = cluster(
        &db,
        3,
        &format!(
            "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: transform, timeout: 500ms, config: {{ response: {{ set_headers: {{ x-version: before }} }} }} }}\n",
            upstream_yaml("u", &[up.addr], "")
        ),
    )
    .await;
    db.cut().await;
    for g in &nodes {
        let mut up = match store(g) {
            Store::Postgres(pg) => pg.up(),
            _ => unreachable!("a postgres cluster"),
        };
        tokio::time::timeout(Duration::from_secs(10), up.wait_for(|u| !*u))
            .await
            .expect("each instance notices within 10 s")
            .expect("alive");
        assert!(!store(g).healthy().await);
    }
    for g in &nodes {
        let mut m = String::new();
        for _ in 0..200 {
            m = g.metrics().await;
            if metric_value(&m, "ferrox_store_up") == Some(0.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metric_value(&m, "ferrox_store_up"), Some(0.0), "{m}");
    }
    // Traffic continues on the last snapshot.
    for i in 0..30 {
        let r = get(&nodes[i % 3].url("/during")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-version"), Some("before"));
    }
    // Writes fail as unavailable.
    let stored = store(&nodes[0]).load().await;
    assert!(
        matches!(stored, Err(StoreError::Unavailable(_))),
        "{stored:?}"
    );
    let mut doc = GatewayConfig::clone(&nodes[0].running.gateway.snapshot().config);
    doc.routes[0].filters = vec![header_filter("after")];
    let version = nodes[0].running.control.applied_version();
    match store(&nodes[0])
        .commit(version, &doc, audit("update", "routes/r"))
        .await
    {
        Err(StoreError::Unavailable(m)) => assert!(!m.is_empty()),
        other => panic!("expected unavailable, got {other:?}"),
    }

    db.restore().await;
    for g in &nodes {
        let mut up = match store(g) {
            Store::Postgres(pg) => pg.up(),
            _ => unreachable!("a postgres cluster"),
        };
        tokio::time::timeout(Duration::from_secs(15), up.wait_for(|u| *u))
            .await
            .expect("each instance reconnects within 15 s")
            .expect("alive");
    }
    let v = change(&nodes[0], "routes/r", |d| {
        d.routes[0].filters = vec![header_filter("after")];
    })
    .await;
    all_at(&nodes, v).await;
    for g in &nodes {
        assert_eq!(get(&g.url("/")).await.header("x-version"), Some("after"));
        let m = g.metrics().await;
        assert_eq!(metric_value(&m, "ferrox_store_up"), Some(1.0));
    }
}

#[tokio::test]
async fn the_admin_api_drives_the_cluster() {
    use crate::admin_api::{call, call_as, user_token};
    use http::{Method, StatusCode};

    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = cluster(
        &db,
        3,
        &format!("upstreams:\n{}", upstream_yaml("u", &[up.addr], "")),
    )
    .await;
    let route = serde_json::json!({
        "name": "api",
        "match": { "path_prefix": "/api" },
        "upstream": "u",
        "filters": [{ "plugin": "transform", "timeout": "500ms",
                      "config": { "response": { "set_headers": { "x-via": "admin" } } } }]
    });
    let r = call(&nodes[0], Method::POST, "/routes", Some(route)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = store(&nodes[0]).changes().borrow().to_owned();
    all_at(&nodes, v).await;
    for g in &nodes {
        let r = get(&g.url("/api/x")).await;
        assert_eq!((r.status.as_u16(), r.header("x-via")), (200, Some("admin")));
    }
    // Users and their tokens live in the database: a token made on A works on C.
    let token = user_token(&nodes[0], "ann", "operator").await;
    let r = call_as(&nodes[2], &token, Method::GET, "/routes", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // PostgreSQL gone: writes answer 503 with a message, /status says so, traffic goes on.
    db.cut().await;
    for g in &nodes {
        let mut up = match store(g) {
            Store::Postgres(pg) => pg.up(),
            _ => unreachable!("a postgres cluster"),
        };
        tokio::time::timeout(Duration::from_secs(10), up.wait_for(|u| !*u))
            .await
            .expect("each instance notices within 10 s")
            .expect("alive");
    }
    let other = serde_json::json!({ "name": "other", "match": { "path_prefix": "/other" }, "upstream": "u" });
    let r = call(&nodes[1], Method::POST, "/routes", Some(other.clone())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(
        r.json().to_string().contains("unavailable"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let status = call(&nodes[1], Method::GET, "/status", None).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(
        status.json()["store"]["healthy"],
        false,
        "{}",
        status.json()
    );
    assert_eq!(status.json()["store"]["kind"], "postgres");
    for g in &nodes {
        assert_eq!(get(&g.url("/api/y")).await.status, 200);
    }

    db.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = call(&nodes[1], Method::POST, "/routes", Some(other.clone())).await;
        if r.status == StatusCode::CREATED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes do not recover: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = store(&nodes[1]).changes().borrow().to_owned();
    all_at(&nodes, v).await;
    for g in &nodes {
        assert_eq!(get(&g.url("/other")).await.status, 200);
    }
    let status = call(&nodes[0], Method::GET, "/status", None).await;
    assert_eq!(status.json()["store"]["healthy"], true, "{}", status.json());
}
