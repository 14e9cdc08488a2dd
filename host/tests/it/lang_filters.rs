//! Filters written in Python (componentize-py) and JavaScript (componentize-js), from
//! `examples/filters/`, run in a real gateway through the same checks as a Rust filter:
//! behaviour, a trap, a deadline, and the grants they need.
//!
//! The components are built by each example's `build.sh` (which installs its pinned toolchain
//! locally) unless the artifact it left is newer than the sources and the WIT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::support::*;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Newest modification time of the files under `dir`, skipping toolchains and outputs.
fn newest(dir: &Path) -> SystemTime {
    let mut latest = UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return latest;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if matches!(
            name.to_str(),
            Some(".venv" | "node_modules" | "build" | "__pycache__")
        ) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let t = if meta.is_dir() {
            newest(&e.path())
        } else {
            meta.modified().unwrap_or(UNIX_EPOCH)
        };
        latest = latest.max(t);
    }
    latest
}

/// The component of example filter `examples/filters/<lang>/<name>`, built by its `build.sh`
/// when missing or older than its sources, the WIT or the shared build helper.
pub fn example_filter(lang: &str, name: &str) -> PathBuf {
    static BUILDS: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_at_a_time = BUILDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let dir = root.join("examples/filters").join(lang).join(name);
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    let helper = std::fs::metadata(root.join("examples/filters/narrow-world.sh"))
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let inputs = newest(&dir).max(newest(&root.join("wit"))).max(helper);
    if built.is_none_or(|b| b < inputs) {
        let out = std::process::Command::new(dir.join("build.sh"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/build.sh: {e}", dir.display()));
        assert!(
            out.status.success(),
            "{}/build.sh failed:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(wasm.exists(), "no component at {}", wasm.display());
    wasm
}

fn doc(up: SocketAddr, plugin: &str, path: &Path, grants: &str, routes: &str) -> String {
    format!(
        "upstreams:\n{}plugins:\n  - {{ name: {plugin}, path: {}, grants: {grants} }}\nroutes:\n{routes}",
        upstream_yaml("u", &[up], ""),
        path.display()
    )
}

/// Routes `/ok` (behaviour), `/closed` and `/open` (the two failure policies) for `plugin`,
/// with fault injection on for the last two.
fn routes(plugin: &str, config: &str, faulty_config: &str) -> String {
    // Deadlines are wall-clock: generous for the behaviour route so a loaded machine cannot
    // trip it, short where the test wants a timeout.
    format!(
        "  - name: ok\n    match: {{ path_prefix: /ok }}\n    upstream: u\n    filters:\n      - {{ plugin: {plugin}, timeout: 500ms, memory: 32MiB, config: {config} }}\n  - name: closed\n    match: {{ path_prefix: /closed }}\n    upstream: u\n    filters:\n      - {{ plugin: {plugin}, timeout: 100ms, memory: 32MiB, config: {faulty_config} }}\n  - name: open\n    match: {{ path_prefix: /open }}\n    upstream: u\n    filters:\n      - {{ plugin: {plugin}, on_error: open, timeout: 100ms, memory: 32MiB, config: {faulty_config} }}\n"
    )
}

/// A trap and a deadline, each under both policies: 503 `ferrox-error: filter` when closed, the
/// request forwarded when open, and both counted by kind.
async fn faults_follow_the_policy(gw: &Gw, plugin: &str, headers: &[(&str, &str)]) {
    for (fault, kind) in [("raise", "trap"), ("loop", "timeout")] {
        let mut h = headers.to_vec();
        h.push(("x-ferrox-fault", fault));
        for _ in 0..2 {
            let r = get_with(&gw.url("/closed/x"), &h).await;
            assert_eq!(r.status, 503, "{plugin} {fault} closed");
            assert_eq!(r.header("ferrox-error"), Some("filter"));
            let r = get_with(&gw.url("/open/x"), &h).await;
            assert_eq!(r.status, 200, "{plugin} {fault} open skips the filter");
        }
        let m = gw.metrics().await;
        let v = metric_value(
            &m,
            &format!("ferrox_filter_failures_total{{kind=\"{kind}\",plugin=\"{plugin}\"}}"),
        );
        assert!(v.is_some_and(|v| v >= 4.0), "{plugin}/{kind}: {v:?}\n{m}");
    }
    // Failed instances are dropped; a well-formed request still works on the same route.
    let r = get_with(&gw.url("/open/x"), headers).await;
    assert_eq!(r.status, 200);
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The headers a client sends for a signed request.
fn signed(key_id: &str, secret: &str, ts: u64, path: &str, query: &str) -> Vec<(String, String)> {
    let message = format!("{ts}\nGET\n{path}\n{query}");
    vec![
        ("x-signature-key".into(), key_id.into()),
        ("x-signature-timestamp".into(), ts.to_string()),
        (
            "x-signature".into(),
            format!("v1={}", hmac_sha256(secret.as_bytes(), message.as_bytes())),
        ),
    ]
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

const SECRET: &str = "partner-a-shared-secret";

#[tokio::test]
async fn python_hmac_filter_verifies_signatures_in_the_gateway() {
    let wasm = example_filter("python", "hmac-verify");
    let up = echo_upstream().await;
    let config = format!("{{ keys: {{ partner-a: {SECRET} }}, window: 60 }}");
    let faulty = format!("{{ keys: {{ partner-a: {SECRET} }}, fault_injection: true }}");
    let gw = gateway(&doc(
        up.addr,
        "hmac-verify",
        &wasm,
        "[log, clock]",
        &routes("hmac-verify", &config, &faulty),
    ))
    .await;

    let r = get(&gw.url("/ok/orders")).await;
    assert_eq!(r.status, 401, "unsigned");
    assert_eq!(r.json()["error"], "the request is not signed");
    assert!(r.header("www-authenticate").is_some());

    let good = signed("partner-a", SECRET, now_s(), "/ok/orders", "page=2");
    let r = get_with(&gw.url("/ok/orders?page=2"), &refs(&good)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = r.json();
    assert_eq!(seen["headers"]["x-consumer-name"], "partner-a");
    assert!(
        seen["headers"].get("x-signature").is_none()
            && seen["headers"].get("x-signature-key").is_none(),
        "signature headers are not forwarded: {seen}"
    );

    // Same signature on another path, a wrong secret, an old timestamp, an unknown key.
    let r = get_with(&gw.url("/ok/admin?page=2"), &refs(&good)).await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"].clone()),
        (401, "bad signature".into())
    );
    let wrong = signed(
        "partner-a",
        "not-the-right-secret",
        now_s(),
        "/ok/orders",
        "",
    );
    let r = get_with(&gw.url("/ok/orders"), &refs(&wrong)).await;
    assert_eq!(r.status, 401);
    let old = signed("partner-a", SECRET, now_s() - 600, "/ok/orders", "");
    let r = get_with(&gw.url("/ok/orders"), &refs(&old)).await;
    assert_eq!(
        r.json()["error"],
        "the signature timestamp is outside the allowed window"
    );
    let unknown = signed("partner-z", SECRET, now_s(), "/ok/orders", "");
    let r = get_with(&gw.url("/ok/orders"), &refs(&unknown)).await;
    assert_eq!(r.json()["error"], "unknown signing key");
    assert_eq!(up.hits(), 1, "only the good request reached the upstream");

    let good = signed("partner-a", SECRET, now_s(), "/open/x", "");
    faults_follow_the_policy(&gw, "hmac-verify", &refs(&good)).await;
}

#[tokio::test]
async fn js_tenant_router_admits_tenants_and_tags_upstream_requests() {
    let wasm = example_filter("js", "tenant-router");
    let up = echo_upstream().await;
    let tenants = "{ acme: { shard: eu-1, allow: [/orders] }, globex: { shard: us-2 }, initech: { blocked: true } }";
    let config = format!("{{ tenants: {tenants} }}");
    let faulty = format!("{{ tenants: {tenants}, fault_injection: true }}");
    let mut routes = routes("tenant-router", &config, &faulty);
    routes.push_str(&format!(
        "  - name: by-path\n    match: {{ path_prefix: /t }}\n    upstream: u\n    strip_prefix: true\n    filters:\n      - {{ plugin: tenant-router, timeout: 500ms, memory: 32MiB, config: {{ source: path, tenants: {tenants} }} }}\n"
    ));
    let gw = gateway(&doc(up.addr, "tenant-router", &wasm, "[log]", &routes)).await;

    let r = get_with(&gw.url("/ok/orders/7"), &[("x-tenant", "globex")]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-tenant"), Some("globex"), "response hook ran");
    let seen = r.json();
    assert_eq!(seen["headers"]["x-tenant-id"], "globex");
    assert_eq!(seen["headers"]["x-tenant-shard"], "us-2");

    for (tenant, path, status) in [
        (None, "/ok/orders", 400),
        (Some("umbrella"), "/ok/orders", 403),
        (Some("initech"), "/ok/orders", 403),
        (Some("acme"), "/ok/invoices", 403),
    ] {
        let h: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
        let r = get_with(&gw.url(path), &h).await;
        assert_eq!(r.status, status, "{tenant:?} {path}");
        assert!(r.json()["error"].is_string());
    }

    // Tenant from the path: `/t/acme/orders/1` reaches the upstream as `/orders/1`.
    let r = get(&gw.url("/t/acme/orders/1")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = r.json();
    assert_eq!(seen["path"], "/orders/1");
    assert_eq!(seen["headers"]["x-tenant-shard"], "eu-1");
    assert_eq!(get(&gw.url("/t/acme/admin")).await.status, 403);
    assert_eq!(up.hits(), 2);

    faults_follow_the_policy(&gw, "tenant-router", &[("x-tenant", "globex")]).await;
}

#[tokio::test]
async fn language_filters_need_exactly_their_grants_and_reject_bad_config() {
    let up = echo_upstream().await;
    let route = |config: &str| {
        format!(
            "  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: p, timeout: 500ms, memory: 32MiB, config: {config} }}\n"
        )
    };
    let cases = [
        (
            example_filter("python", "hmac-verify"),
            "[log]",
            format!("{{ keys: {{ a: {SECRET} }} }}"),
            "`clock`",
        ),
        (
            example_filter("js", "tenant-router"),
            "[]",
            "{ tenants: { a: {} } }".to_owned(),
            "`log`",
        ),
        (
            example_filter("python", "hmac-verify"),
            "[log, clock]",
            "{ keys: { a: short } }".to_owned(),
            "16 characters",
        ),
        (
            example_filter("js", "tenant-router"),
            "[log]",
            "{ tenants: {}, source: cookie }".to_owned(),
            "must be",
        ),
    ];
    for (wasm, grants, config, expect) in cases {
        let yaml = doc(up.addr, "p", &wasm, grants, &route(&config));
        let path = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(path.path(), &yaml).expect("write config");
        let cfg =
            ferrox_host::config::load_file(path.path(), &Default::default()).expect("document");
        let metrics = ferrox_host::metrics::Metrics::new();
        let services = ferrox_host::plugin::host::Services::new(metrics.clone());
        let issues = ferrox_host::snapshot::Snapshot::build(cfg, None, &metrics, &services)
            .await
            .expect_err("refused");
        let text = issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains(expect), "{grants} {config}: {text}");
    }
}
