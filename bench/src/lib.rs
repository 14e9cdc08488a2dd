//! Shared helpers of the filter-runtime benchmarks (`benches/filters.rs`) and the memory check
//! (`src/bin/filter_rss.rs`): building the `bench` test guest, requests to run it on, pool
//! settings and `/proc/self/status` readings.

pub mod lang;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferrox_host::plugin::{Isolation, Plugin, PoolSettings, RequestState, ResponseState};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cargo target directory this executable was built in (the nearest ancestor holding
/// cargo's `CACHEDIR.TAG`), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of the `bench` test guest (`plugins/tests/bench`), built for `wasm32-wasip2` in release
/// mode into `<target>/wasm-plugins` first. `FERROX_BENCH_GUEST=<file.wasm>` uses a prebuilt
/// component instead.
pub fn bench_guest() -> PathBuf {
    if let Some(path) = std::env::var_os("FERROX_BENCH_GUEST") {
        return PathBuf::from(path);
    }
    let target = target_dir().join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "ferrox-guest-bench",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo for the bench guest");
    assert!(status.success(), "building the bench guest failed");
    let path = target.join("wasm32-wasip2/release/ferrox_guest_bench.wasm");
    assert!(path.is_file(), "no bench guest at {}", path.display());
    path
}

/// Load the bench guest as plugin `bench`, granted `counters`.
pub fn load_bench_plugin() -> Arc<Plugin> {
    let path = bench_guest();
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Plugin::load("bench", &bytes, &["counters".into()]).expect("the bench guest loads")
}

/// The guest's configuration for `mode`.
pub fn mode_config(mode: &str) -> String {
    format!(r#"{{"mode":"{mode}"}}"#)
}

/// Pool settings as the gateway builds them for a filter with default config (16 MiB cap, up
/// to 64 idle instances, recycled after 10 000 calls), except the deadline: 1 s instead of
/// 5 ms, so that a benchmark preempted on a busy machine is not failed by the filter deadline.
/// A call's deadline costs the same whatever its length (one epoch check per call).
pub fn pool_settings(isolation: Isolation) -> PoolSettings {
    PoolSettings {
        timeout: Duration::from_secs(1),
        memory: 16 * 1024 * 1024,
        isolation,
        max_idle: 64,
        max_uses: 10_000,
    }
}

/// A `GET /api/users/42` request with 8 headers (one of them `x-user`).
pub fn request() -> RequestState {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("x-user", "ada"),
        ("x-forwarded-for", "203.0.113.7"),
        ("cookie", "session=0123456789abcdef"),
        ("x-request-id", "6f1c2d3e-0000-4000-8000-000000000000"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    RequestState {
        method: Method::GET,
        path: "/api/users/42".into(),
        query: Some("fields=name".into()),
        headers,
        client_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        route: "bench".into(),
        request_id: HeaderValue::from_static("6f1c2d3e-0000-4000-8000-000000000000"),
        consumer: None,
        context: Vec::new(),
        cache: Default::default(),
    }
}

/// A `200` response with 3 headers.
pub fn response() -> ResponseState {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "42"),
        ("date", "Sat, 28 Nov 2026 12:00:00 GMT"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    ResponseState {
        status: StatusCode::OK,
        headers,
        store: None,
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`, …); `None` where unavailable.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    proc_kib("/proc/self/status", field)
}

/// A field of `/proc/self/smaps_rollup` in KiB (`Pss`, `Pss_Anon`, …); `None` where
/// unavailable. Unlike `VmRSS`, `Pss` counts a page mapped N times (such as a filter's
/// copy-on-write memory image, mapped once per instance) as 1/N per mapping.
pub fn proc_smaps_kib(field: &str) -> Option<u64> {
    proc_kib("/proc/self/smaps_rollup", field)
}

fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(file).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// `p` (0–100) percentile of sorted `samples` (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&samples, 0.0), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn the_request_has_eight_headers() {
        assert_eq!(request().headers.len(), 8);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_status() {
        assert!(proc_status_kib("VmRSS").is_some_and(|kib| kib > 0));
        assert_eq!(proc_status_kib("NoSuchField"), None);
        assert!(proc_smaps_kib("Pss").is_some_and(|kib| kib > 0));
    }
}
