//! What a filter costs in each language, beyond the per-call time (`benches/lang_filters.rs`):
//! component size, first compilation (wasmtime `precompile_component`, into an empty artifact
//! cache), load from the precompiled cache (read + deserialize), instantiation with `init`, and
//! resident memory per warm instance (VmRSS and Pss growth over N pools of one instance each,
//! divided by N).
//!
//! `cargo run --release -p ferrox-bench --bin lang_costs [-- INSTANCES]` (default 20). Uses a
//! fresh cache directory, so the first load really compiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrox_bench::lang::{lang_filters, lang_pool_settings};
use ferrox_bench::{proc_smaps_kib, proc_status_kib};
use ferrox_host::metrics::Metrics;
use ferrox_host::plugin::host::Services;
use ferrox_host::plugin::{FilterPool, Plugin, PluginEngine};

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let instances: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("INSTANCES must be a number"))
        .unwrap_or(20);
    // The engine reads its cache directory once: run again in a child with a fresh one.
    let Some(cache) = std::env::var_os("FERROX_LANG_COSTS_CACHE") else {
        let cache = std::env::temp_dir().join(format!("ferrox-lang-costs-{}", std::process::id()));
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env("FERROX_LANG_COSTS_CACHE", &cache)
            .env("FERROX_CACHE_DIR", &cache)
            .status()
            .expect("run the measurement");
        let _ = std::fs::remove_dir_all(&cache);
        std::process::exit(status.code().unwrap_or(1));
    };
    assert!(
        std::fs::read_dir(&cache)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "the artifact cache must start empty"
    );
    let filters = lang_filters();
    let engine = PluginEngine::global().expect("engine");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let services = Services::new(Metrics::new());
    println!(
        "| language | component | first compile | load from cache | instantiate + init | VmRSS / instance | Pss / instance |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &filters {
        let bytes = std::fs::read(&f.path).expect("component");
        let t = Instant::now();
        engine.load(&bytes).expect("compiles");
        let compile = t.elapsed();
        let t = Instant::now();
        engine.load(&bytes).expect("loads from the cache");
        let load = t.elapsed();
        let plugin = Plugin::load(f.lang, &bytes, &f.grants).expect("accepted");
        let settings = lang_pool_settings(1);
        let new_pool = |plugin: Arc<Plugin>| {
            rt.block_on(FilterPool::new(
                plugin,
                f.config.clone(),
                "bench".into(),
                services.clone(),
                settings.clone(),
            ))
            .expect("pool")
        };
        // Warm up the allocator and the plugin's first instance, then measure.
        let first = new_pool(plugin.clone());
        let t = Instant::now();
        let second = new_pool(plugin.clone());
        let instantiate = t.elapsed();
        let rss0 = proc_status_kib("VmRSS").unwrap_or_default();
        let pss0 = proc_smaps_kib("Pss").unwrap_or_default();
        let pools: Vec<FilterPool> = (0..instances).map(|_| new_pool(plugin.clone())).collect();
        let rss = proc_status_kib("VmRSS")
            .unwrap_or_default()
            .saturating_sub(rss0);
        let pss = proc_smaps_kib("Pss")
            .unwrap_or_default()
            .saturating_sub(pss0);
        println!(
            "| {} | {:.1} MiB | {} | {} | {} | {:.0} KiB | {:.0} KiB |",
            f.lang,
            bytes.len() as f64 / (1024.0 * 1024.0),
            ms(compile),
            ms(load),
            ms(instantiate),
            rss as f64 / instances as f64,
            pss as f64 / instances as f64,
        );
        drop((pools, first, second));
    }
    for f in &filters {
        println!("- {}: {}", f.lang, f.work);
    }
}
