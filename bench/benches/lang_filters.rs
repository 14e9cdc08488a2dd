//! Criterion benchmark of one `on_request` call on a warm, reused instance (`isolation:
//! pooled`) for a filter in each language: Rust (the `bench` guest), Python (componentize-py,
//! `examples/filters/python/hmac-verify`) and JavaScript (componentize-js,
//! `examples/filters/js/tenant-router`). See `ferrox_bench::lang` for what each call does.
//! Size, compile and load times and memory per instance: `--bin lang_costs`.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use ferrox_bench::lang::{lang_filters, lang_pool_settings};
use ferrox_host::metrics::Metrics;
use ferrox_host::plugin::host::Services;
use ferrox_host::plugin::{FilterPool, Plugin};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let services = Services::new(Metrics::new());
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("lang_call");
    for f in lang_filters() {
        let bytes = std::fs::read(&f.path).expect("component");
        let plugin = Plugin::load(f.lang, &bytes, &f.grants).expect("loads");
        let settings = lang_pool_settings(4);
        let pool = rt
            .block_on(FilterPool::new(
                plugin,
                f.config.clone(),
                "bench".into(),
                services.clone(),
                settings,
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", f.lang));
        let mut req = Some((f.request)());
        group.bench_function(f.lang, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let out = pool.on_request(&mut req).await;
                        assert!(out.result.is_ok(), "{}: {:?}", f.lang, out.result);
                        black_box(out.result.ok());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    c.final_summary();
}
