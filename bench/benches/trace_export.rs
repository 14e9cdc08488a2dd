//! Criterion benchmark of span export's per-request cost (`tracing` on, request recorded).
//! On the request path: the trace context read from `traceparent`, the `traceparent` set for
//! the upstream, and the hand-over of the finished request (both clocks read, route, target and
//! 4 filter records copied, a `try_send` into the bounded queue). Off the request path, in the
//! exporter task: the request's 6 spans made (server, 4 filter calls, upstream). With `tracing`
//! off, the request path pays one `OnceLock` read. The export itself (protobuf encoding, HTTP)
//! runs in the exporter task, one batch at a time, and is not measured here.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use ferrox_host::metrics::Metrics;
use ferrox_host::pipeline::FilterRecord;
use ferrox_host::tracing_export::{Finished, SpanIds, TraceExport, spans};
use http::{HeaderMap, HeaderValue};

/// Requests handed over per timed chunk (the queue holds them all: no drop is measured).
const CHUNK: u64 = 10_000;

fn records(start: Instant) -> Vec<FilterRecord> {
    let mut v = Vec::new();
    for (phase, decision) in [("request", "continue"), ("response", "done")] {
        for p in ["key-auth", "transform"] {
            v.push(FilterRecord {
                plugin: Arc::from(p),
                phase,
                decision: decision.to_owned(),
                started: start,
                micros: 3,
                calls: vec!["request.header", "credentials"],
            });
        }
    }
    v
}

fn finished(ids: SpanIds, start: Instant, filters: Vec<FilterRecord>) -> Finished {
    Finished {
        ids,
        clock: (Instant::now(), SystemTime::now()),
        started: start,
        ended: start + Duration::from_micros(180),
        method: "GET",
        path: black_box("/api/v1/users/12345/orders").into(),
        route: Some(Arc::from("api")),
        status: 200,
        request_id: black_box("4bf92f3577b34da6a3ce929d0e0e4736").to_owned(),
        consumer: Some("alice".to_owned()),
        error: None,
        upstream: Some("users".to_owned()),
        target: Some("10.0.0.7:8080".to_owned()),
        attempts: 1,
        upstream_window: Some((start, start + Duration::from_micros(120))),
        filters,
    }
}

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let start = Instant::now();
    let filters = records(start);
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));

    c.bench_function("trace_export/request path (4 filter calls)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                left -= n;
                let (export, rx) = TraceExport::new(n as usize, 1.0, metrics.trace_dropped.clone());
                let mut h = headers.clone();
                let t = Instant::now();
                for _ in 0..n {
                    let Some(ids) = export.begin(black_box(&h)) else {
                        unreachable!("a sampled traceparent is recorded")
                    };
                    ids.propagate(&mut h);
                    export.record(finished(ids, start, filters.clone()));
                }
                total += t.elapsed();
                drop(black_box(rx));
            }
            total
        })
    });

    let scope = spans::scope();
    let ids = SpanIds {
        trace_id: [7; 16],
        parent: Some([9; 8]),
        server: [1; 8],
        client: [2; 8],
        sampled: true,
    };
    c.bench_function("trace_export/spans made (exporter task, 6 spans)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                left -= n;
                let mut pending: Vec<Finished> = (0..n)
                    .map(|_| finished(ids, start, filters.clone()))
                    .collect();
                let mut out = Vec::with_capacity(6 * n as usize);
                let t = Instant::now();
                for f in pending.drain(..) {
                    spans::build(f, &scope, &mut out);
                }
                total += t.elapsed();
                drop(black_box(out));
            }
            total
        })
    });
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
