//! The example filters in Python and JavaScript (`examples/filters/`), built by their
//! `build.sh` when their component is missing, and the requests the language benchmarks send
//! them.

use std::path::PathBuf;

use std::time::Duration;

use ferrox_host::plugin::{Isolation, PoolSettings, RequestState};
use http::HeaderValue;

/// The component of `examples/filters/<lang>/<name>`, built by its `build.sh` when missing.
pub fn example_filter(lang: &str, name: &str) -> PathBuf {
    let dir = crate::workspace_root()
        .join("examples/filters")
        .join(lang)
        .join(name);
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    if !wasm.is_file() {
        let status = std::process::Command::new(dir.join("build.sh"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}/build.sh: {e}", dir.display()));
        assert!(status.success(), "{}/build.sh failed", dir.display());
    }
    wasm
}

/// A filter of each language with its config, grants and a request it lets through.
pub struct LangFilter {
    /// `rust`, `python` or `js`.
    pub lang: &'static str,
    /// What the filter does per call.
    pub work: &'static str,
    /// The component.
    pub path: PathBuf,
    /// Grants it needs.
    pub grants: Vec<String>,
    /// Its config.
    pub config: String,
    /// A request it lets through (so the same instance serves every call).
    pub request: fn() -> RequestState,
}

/// The HMAC secret of the Python filter's config.
const SECRET: &str = "partner-a-shared-secret";

fn signed_request() -> RequestState {
    let mut r = crate::request();
    // A fresh timestamp and a wrong signature: every call computes the HMAC over the request
    // line and compares in constant time, then answers 401 (a valid signature would instead
    // name the consumer and remove three headers: the same work within noise).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for (k, v) in [
        ("x-signature-key", "partner-a".to_owned()),
        ("x-signature-timestamp", now.to_string()),
        ("x-signature", format!("v1={}", "0".repeat(64))),
    ] {
        r.headers.insert(
            k,
            HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("x")),
        );
    }
    r
}

fn tenant_request() -> RequestState {
    let mut r = crate::request();
    r.headers
        .insert("x-tenant", HeaderValue::from_static("globex"));
    r
}

/// The three filters compared: the Rust `bench` guest reading a header, the Python HMAC
/// verifier checking a signature, the JS tenant router admitting a tenant.
pub fn lang_filters() -> Vec<LangFilter> {
    vec![
        LangFilter {
            lang: "rust",
            work: "read a header, set a header (bench guest, read-header)",
            path: crate::bench_guest(),
            grants: vec!["counters".into()],
            config: crate::mode_config("read-header"),
            request: crate::request,
        },
        LangFilter {
            lang: "python",
            work: "HMAC-SHA256 over the request line, constant-time compare, 401 (hmac-verify)",
            path: example_filter("python", "hmac-verify"),
            grants: vec!["log".into(), "clock".into()],
            config: format!(r#"{{"keys":{{"partner-a":"{SECRET}"}},"window":300}}"#),
            request: signed_request,
        },
        LangFilter {
            lang: "js",
            work: "tenant lookup from a header, set 2 headers and the context (tenant-router)",
            path: example_filter("js", "tenant-router"),
            grants: vec!["log".into()],
            config: r#"{"tenants":{"globex":{"shard":"us-2"}}}"#.into(),
            request: tenant_request,
        },
    ]
}

/// Pool settings of the language measurements: a 32 MiB cap (what Python and JavaScript
/// filters are configured with) and a 1 s deadline (a preempted call must not fail; the
/// deadline costs the same whatever its length).
pub fn lang_pool_settings(max_idle: usize) -> PoolSettings {
    PoolSettings {
        timeout: Duration::from_secs(1),
        memory: 32 << 20,
        isolation: Isolation::Pooled,
        max_idle,
        max_uses: u32::MAX,
    }
}
