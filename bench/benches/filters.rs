//! Criterion benchmarks of the filter runtime, with the `bench` test guest:
//!
//! - `one_call/noop`, `one_call/read_header`: one `on_request` on a warm, reused instance
//!   (`isolation: pooled`), 8-header request;
//! - `chain3`: a 3-stage [`Pipeline`] (read-header → counter → set-response-header), request
//!   phase then response phase (6 guest calls), as the proxy runs it (metrics and records
//!   included);
//! - `isolation_request/read_header`: the single call with `isolation: request` (a fresh
//!   instance, `init` included, per call).
//!
//! Criterion gives medians but no tail, so `chain3` is also timed run by run afterwards
//! (20 000 runs after 2 000 warm-up runs; `FERROX_BENCH_RUNS` overrides) and its p50/p90/p99/
//! p99.9/max are printed.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ferrox_bench::{load_bench_plugin, mode_config, percentile, pool_settings, request, response};
use ferrox_host::metrics::Metrics;
use ferrox_host::pipeline::{FilterRecord, OnError, Pipeline, RequestOutcome, Stage};
use ferrox_host::plugin::host::Services;
use ferrox_host::plugin::{FilterPool, Flow, Isolation, Plugin, RequestState, ResponseState};
use tokio::runtime::Runtime;

struct Fixture {
    rt: Runtime,
    plugin: Arc<Plugin>,
    metrics: Metrics,
    services: Arc<Services>,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let metrics = Metrics::new();
        let services = Services::new(metrics.clone());
        Self {
            rt,
            plugin: load_bench_plugin(),
            metrics,
            services,
        }
    }

    fn pool(&self, mode: &str, isolation: Isolation) -> FilterPool {
        self.rt
            .block_on(FilterPool::new(
                self.plugin.clone(),
                mode_config(mode),
                "bench".into(),
                self.services.clone(),
                pool_settings(isolation),
            ))
            .unwrap_or_else(|e| panic!("pool for mode {mode}: {e}"))
    }

    fn chain3(&self) -> Pipeline {
        Pipeline {
            stages: ["read-header", "counter", "set-response-header"]
                .into_iter()
                .map(|mode| {
                    Stage::new(
                        self.plugin.name.clone(),
                        self.pool(mode, Isolation::Pooled),
                        OnError::Closed,
                    )
                })
                .collect(),
        }
    }
}

/// Run one `on_request` and check that the filter continued.
async fn call(pool: &FilterPool, req: &mut Option<RequestState>) {
    let outcome = pool.on_request(req).await;
    assert!(
        matches!(outcome.result, Ok(Flow::Continue)),
        "the filter did not continue: {:?}",
        outcome.result
    );
    black_box(outcome.calls);
}

/// One exchange through the chain: request phase, then response phase.
async fn exchange(
    chain: &Pipeline,
    metrics: &Metrics,
    req: &mut Option<RequestState>,
    resp: &mut Option<ResponseState>,
    records: &mut Vec<FilterRecord>,
) {
    records.clear();
    let (outcome, ran) = chain.on_request(req, metrics, records).await;
    assert!(
        matches!(outcome, RequestOutcome::Forward),
        "the chain did not forward: {outcome:?}"
    );
    let ok = chain.on_response(ran, req, resp, metrics, records).await;
    assert!(ok, "a response filter failed: {records:?}");
}

/// Time `iters` single calls on `pool` inside one `block_on`.
fn time_calls(fx: &Fixture, pool: &FilterPool, iters: u64) -> Duration {
    let mut req = Some(request());
    fx.rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            call(pool, &mut req).await;
        }
        start.elapsed()
    })
}

fn one_call(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("one_call");
    for (id, mode) in [("noop", "noop"), ("read_header", "read-header")] {
        let pool = fx.pool(mode, Isolation::Pooled);
        group.bench_function(id, |b| b.iter_custom(|iters| time_calls(fx, &pool, iters)));
    }
    group.finish();
}

fn chain3(c: &mut Criterion, fx: &Fixture) {
    let chain = fx.chain3();
    let mut req = Some(request());
    let mut resp = Some(response());
    let mut records = Vec::with_capacity(8);
    c.bench_function("chain3", |b| {
        b.iter_custom(|iters| {
            fx.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    exchange(&chain, &fx.metrics, &mut req, &mut resp, &mut records).await;
                }
                start.elapsed()
            })
        })
    });
    let tagged = resp
        .as_ref()
        .and_then(|r| r.headers.get("x-bench"))
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(
        tagged.as_deref(),
        Some(&b"1"[..]),
        "the response was tagged"
    );
}

fn isolation_request(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("isolation_request");
    let pool = fx.pool("read-header", Isolation::Request);
    group.bench_function("read_header", |b| {
        b.iter_custom(|iters| time_calls(fx, &pool, iters))
    });
    group.finish();
}

/// Time `runs` chain exchanges one by one and print their distribution.
fn chain3_percentiles(fx: &Fixture, runs: usize) {
    let chain = fx.chain3();
    let mut req = Some(request());
    let mut resp = Some(response());
    let mut records = Vec::with_capacity(8);
    let warmup = (runs / 10).max(1);
    let mut samples = Vec::with_capacity(runs);
    fx.rt.block_on(async {
        for _ in 0..warmup {
            exchange(&chain, &fx.metrics, &mut req, &mut resp, &mut records).await;
        }
        for _ in 0..runs {
            let start = Instant::now();
            exchange(&chain, &fx.metrics, &mut req, &mut resp, &mut records).await;
            samples.push(start.elapsed());
        }
    });
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "chain3 per-run ({runs} runs after {warmup} warm-up): p50 {:.2} µs  p90 {:.2} µs  \
         p99 {:.2} µs  p99.9 {:.2} µs  max {:.2} µs",
        us(percentile(&samples, 50.0)),
        us(percentile(&samples, 90.0)),
        us(percentile(&samples, 99.0)),
        us(percentile(&samples, 99.9)),
        us(samples.last().copied().unwrap_or_default()),
    );
}

fn main() {
    let fx = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    one_call(&mut c, &fx);
    chain3(&mut c, &fx);
    isolation_request(&mut c, &fx);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (a quick smoke run then).
    let benching = std::env::args().any(|a| a == "--bench");
    let runs = std::env::var("FERROX_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if benching { 20_000 } else { 200 });
    chain3_percentiles(&fx, runs);
}
