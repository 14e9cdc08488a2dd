//! Criterion benchmark of the dashboard's per-request hook: building the [`Sample`] the request
//! handler hands over (request id, path and upstream name copied; filter records moved) and
//! [`StatsHub::record`] (one short lock, a push into the bounded buffer). A fresh hub is used
//! per batch of at most `PENDING_CAP` samples, so every push is a real push, never the
//! buffer-full drop.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ferrox_host::dashboard::stats::PENDING_CAP;
use ferrox_host::dashboard::{Sample, StatsHub};
use ferrox_host::pipeline::FilterRecord;

fn records(plugins: &[Arc<str>]) -> Vec<FilterRecord> {
    let mut v = Vec::with_capacity(plugins.len() * 2);
    for (phase, decision) in [("request", "continue"), ("response", "done")] {
        for p in plugins {
            v.push(FilterRecord {
                plugin: p.clone(),
                phase,
                decision: decision.to_owned(),
                started: Instant::now(),
                micros: 3,
                calls: vec!["request.header", "counters"],
            });
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let route: Arc<str> = "api".into();
    let plugins: Vec<Arc<str>> = vec!["rate-limit".into(), "key-auth".into(), "transform".into()];
    let rid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let path = "/api/v1/users/12345/orders";
    let upstream = "users";
    c.bench_function("dashboard/record (3 filters)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PENDING_CAP as u64);
                left -= n;
                let hub = StatsHub::new();
                // The filter records and the target label exist before the hook (the pipeline
                // and the forward made them; the hook moves them): not timed.
                let mut pending: Vec<(Vec<FilterRecord>, String)> = (0..n)
                    .map(|_| (records(&plugins), "10.0.0.7:8080".to_owned()))
                    .collect();
                let start = Instant::now();
                for (filters, target) in pending.drain(..) {
                    hub.record(Sample {
                        id: black_box(rid).into(),
                        method: "GET",
                        path: black_box(path).into(),
                        route: Some(route.clone()),
                        upstream: Some(black_box(upstream).into()),
                        target: Some(target),
                        status: 200,
                        micros: 180,
                        upstream_micros: Some(120),
                        attempts: 1,
                        error: None,
                        filters,
                    });
                }
                total += start.elapsed();
                drop(black_box(hub));
            }
            total
        })
    });
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
