//! Memory of a gateway with 100 routes × 3 filters (300 filter pools, one warm instance each),
//! built from a generated YAML document through the host's public API
//! (`config::load_str` + `Gateway::new`), with no traffic. Prints `VmRSS` from
//! `/proc/self/status` at each step. DESIGN §10 target: ≤ 40 MB.
//!
//! `cargo run --release -p ferrox-bench --bin filter_rss [-- ROUTES]` (default 100 routes).

use std::fmt::Write as _;

/// The allocator of the `ferrox` binary, so the numbers are the shipped gateway's (glibc's
/// malloc keeps different amounts of freed memory).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use ferrox_bench::{bench_guest, proc_smaps_kib, proc_status_kib};
use ferrox_host::config::{Overrides, load_str};
use ferrox_host::gateway::Gateway;
use ferrox_host::plugin::{Plugin, PluginEngine};
use http::{HeaderMap, Method};

/// The filters of every route, in order.
const MODES: [&str; 3] = ["read-header", "counter", "set-response-header"];
/// The design's target for 100 routes × 3 filters, in MB (10^6 bytes).
const TARGET_MB: f64 = 40.0;

fn config_yaml(routes: usize, wasm: &std::path::Path) -> String {
    let mut yaml = String::from(
        "listen: 127.0.0.1:0\n\
         admin:\n  listen: 127.0.0.1:0\n  token: bench-token\n\
         upstreams:\n  - name: backend\n    targets: [127.0.0.1:9]\n\
         plugins:\n",
    );
    writeln!(
        yaml,
        "  - name: bench\n    path: {}\n    grants: [counters]",
        wasm.display()
    )
    .expect("write to a String");
    yaml.push_str("routes:\n");
    for r in 0..routes {
        writeln!(
            yaml,
            "  - name: r{r}\n    match: {{ path_prefix: /r{r}/ }}\n    upstream: backend\n    filters:"
        )
        .expect("write to a String");
        for mode in MODES {
            writeln!(
                yaml,
                "      - plugin: bench\n        config: {{ mode: {mode} }}"
            )
            .expect("write to a String");
        }
    }
    yaml
}

fn rss_kib() -> u64 {
    proc_status_kib("VmRSS").expect("VmRSS in /proc/self/status")
}

fn show(step: &str, kib: u64) {
    show_field(step, "VmRSS", kib);
}

fn show_field(step: &str, field: &str, kib: u64) {
    println!(
        "{step:<44} {field} {kib:>7} KiB = {:>6.1} MB",
        kib as f64 * 1024.0 / 1e6
    );
}

fn main() {
    let routes: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUTES must be a number"))
        .unwrap_or(100);
    let start = rss_kib();
    show("start", start);

    let wasm = bench_guest();
    let yaml = config_yaml(routes, &wasm);
    let config = load_str(&yaml, &Overrides::default()).expect("the generated config is valid");
    show("config parsed", rss_kib());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    PluginEngine::global().expect("the Wasm engine starts");
    show("engine created", rss_kib());
    let bytes = std::fs::read(&wasm).expect("read the bench guest");
    Plugin::load("bench", &bytes, &["counters".into()]).expect("the bench guest loads");
    drop(bytes);
    let loaded = rss_kib();
    show("plugin compiled or loaded from cache", loaded);

    let built = Instant::now();
    let gateway = rt
        .block_on(Gateway::new(config))
        .unwrap_or_else(|issues| panic!("the gateway does not build: {issues:?}"));
    let built = built.elapsed();
    let snapshot = gateway.snapshot();
    let mut pools = 0;
    for r in 0..routes {
        let found = snapshot
            .routes
            .find(
                "localhost",
                &format!("/r{r}/x"),
                &Method::GET,
                &HeaderMap::new(),
            )
            .unwrap_or_else(|| panic!("route r{r} is in the snapshot"));
        assert_eq!(&*found.route.name, format!("r{r}").as_str());
        pools += found.route.pipeline.stages.len();
    }
    assert_eq!(pools, routes * MODES.len(), "every filter got a pool");
    let after = rss_kib();
    show(
        &format!(
            "gateway built ({routes} routes, {pools} pools, {} ms)",
            built.as_millis()
        ),
        after,
    );

    rt.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    let idle = rss_kib();
    show("after 2 s idle, no traffic", idle);
    if let Some(hwm) = proc_status_kib("VmHWM") {
        show_field("peak", "VmHWM", hwm);
    }
    // VmRSS counts a shared page once per mapping: each instance maps the guest's memory image
    // (copy-on-write), so the pages it only reads are counted once per instance. Pss splits them.
    if let Some(pss) = proc_smaps_kib("Pss") {
        show_field("same, shared pages counted once", "Pss  ", pss);
    }
    println!(
        "pools cost {:.1} KiB each ({} KiB over the loaded plugin); total {:.1} MB, target ≤ {TARGET_MB} MB: {}",
        after.saturating_sub(loaded) as f64 / pools.max(1) as f64,
        after.saturating_sub(loaded),
        idle as f64 * 1024.0 / 1e6,
        if idle as f64 * 1024.0 / 1e6 <= TARGET_MB {
            "met"
        } else {
            "missed"
        }
    );
    drop(gateway);
}
