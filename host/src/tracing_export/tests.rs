use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, Value};

use super::*;

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn export(ratio: f64) -> (TraceExport, mpsc::Receiver<Finished>) {
    TraceExport::new(1, ratio, IntCounter::new("t", "t").expect("counter"))
}

fn headers(tp: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TRACEPARENT, HeaderValue::from_str(tp).expect("value"));
    h
}

#[test]
fn traceparent_parses_and_encodes_back() {
    let tp = TraceParent::parse(INCOMING.as_bytes()).expect("valid");
    assert_eq!(hex::encode(tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(tp.parent_id), "00f067aa0ba902b7");
    assert!(tp.sampled());
    assert_eq!(&tp.encode()[..], INCOMING.as_bytes());
    for bad in [
        "",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
    ] {
        assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn an_incoming_sampled_trace_is_continued_with_the_gateways_span_as_parent_upstream() {
    let (x, _rx) = export(0.0);
    let ids = x.begin(&headers(INCOMING)).expect("traced");
    assert!(
        ids.sampled,
        "the caller's decision wins over sample_ratio 0"
    );
    assert_eq!(
        hex::encode(ids.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        ids.parent.map(hex::encode).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_ne!(ids.server, ids.client);
    let mut h = headers(INCOMING);
    ids.propagate(&mut h);
    assert_eq!(
        h[TRACEPARENT],
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            hex::encode(ids.client)
        )
    );
}

#[test]
fn an_incoming_unsampled_trace_passes_through_untouched() {
    let (x, _rx) = export(1.0);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_eq!(x.begin(&headers(tp)), None);
}

#[test]
fn a_request_without_traceparent_starts_a_trace_sampled_by_ratio() {
    let (all, _rx) = export(1.0);
    let ids = all.begin(&HeaderMap::new()).expect("started");
    assert!(ids.sampled && ids.parent.is_none() && ids.trace_id != [0; 16]);
    let (none, _rx) = export(0.0);
    let ids = none.begin(&HeaderMap::new()).expect("started");
    assert!(!ids.sampled, "ratio 0 records nothing");
    let mut h = HeaderMap::new();
    ids.propagate(&mut h);
    let sent = TraceParent::parse(h[TRACEPARENT].as_bytes()).expect("valid");
    assert!(
        !sent.sampled(),
        "the upstream is told the trace is not recorded"
    );
    // An invalid traceparent is replaced by a new trace.
    let ids = all.begin(&headers("garbage")).expect("started");
    assert!(ids.parent.is_none());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (x, _rx) = export(1.0);
    let f = || finished(Vec::new(), None);
    x.record(f());
    x.record(f());
    assert_eq!(x.dropped.get(), 1);
}

fn finished(filters: Vec<FilterRecord>, upstream_window: Option<(Instant, Instant)>) -> Finished {
    let started = Instant::now();
    Finished {
        ids: SpanIds {
            trace_id: [7; 16],
            parent: Some([9; 8]),
            server: [1; 8],
            client: [2; 8],
            sampled: true,
        },
        clock: (
            started + Duration::from_millis(10),
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        ),
        started,
        ended: started + Duration::from_millis(5),
        method: "GET",
        path: "/api//v1/./users".into(),
        route: Some("api".into()),
        status: 502,
        request_id: "rid".into(),
        consumer: Some("alice".into()),
        error: Some("upstream-connect".into()),
        upstream: Some("users".into()),
        target: Some("127.0.0.1:9001".into()),
        attempts: 2,
        upstream_window,
        filters,
    }
}

fn attr(s: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[test]
fn spans_are_the_request_each_filter_call_and_the_upstream_call() {
    let base = Instant::now();
    let filter = FilterRecord {
        plugin: Arc::from("key-auth"),
        phase: "request",
        decision: "continue".into(),
        started: base + Duration::from_millis(1),
        micros: 250,
        calls: vec!["credentials"],
    };
    let mut f = finished(
        vec![filter],
        Some((
            base + Duration::from_millis(2),
            base + Duration::from_millis(4),
        )),
    );
    f.started = base;
    f.ended = base + Duration::from_millis(5);
    f.clock = (
        base + Duration::from_millis(10),
        SystemTime::UNIX_EPOCH + Duration::from_secs(100),
    );
    let mut out = Vec::new();
    spans::build(f, &spans::scope(), &mut out);
    assert_eq!(out.len(), 3);
    let wall = |ms: u64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(100) - Duration::from_millis(10)
            + Duration::from_millis(ms)
    };

    let server = &out[0];
    assert_eq!(server.name, "GET api");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.parent_span_id, SpanId::from_bytes([9; 8]));
    assert!(server.parent_span_is_remote);
    assert_eq!((server.start_time, server.end_time), (wall(0), wall(5)));
    assert_eq!(attr(server, "url.path"), Some(Value::from("/api/v1/users")));
    assert_eq!(attr(server, "http.route"), Some(Value::from("api")));
    assert_eq!(
        attr(server, "http.response.status_code"),
        Some(Value::I64(502))
    );
    assert_eq!(attr(server, "ferrox.consumer"), Some(Value::from("alice")));
    assert_eq!(
        attr(server, "error.type"),
        Some(Value::from("upstream-connect"))
    );
    assert!(matches!(server.status, Status::Error { .. }));

    let filter = &out[1];
    assert_eq!(filter.name, "filter key-auth request");
    assert_eq!(filter.parent_span_id, SpanId::from_bytes([1; 8]));
    assert_eq!(
        (filter.start_time, filter.end_time),
        (wall(1), wall(1) + Duration::from_micros(250))
    );
    assert_eq!(
        attr(filter, "ferrox.filter.decision"),
        Some(Value::from("continue"))
    );
    assert_eq!(
        attr(filter, "ferrox.filter.host_calls"),
        Some(Value::Array(Array::String(vec!["credentials".into()])))
    );

    let client = &out[2];
    assert_eq!(client.name, "upstream users");
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.span_context.span_id(), SpanId::from_bytes([2; 8]));
    assert_eq!(client.parent_span_id, SpanId::from_bytes([1; 8]));
    assert_eq!((client.start_time, client.end_time), (wall(2), wall(4)));
    assert_eq!(attr(client, "server.port"), Some(Value::I64(9001)));
    assert_eq!(
        attr(client, "ferrox.upstream.attempts"),
        Some(Value::I64(2))
    );
    assert!(matches!(client.status, Status::Error { .. }));
}

#[test]
fn no_upstream_call_no_client_span() {
    let mut out = Vec::new();
    let mut f = finished(Vec::new(), None);
    f.route = None;
    f.ids.parent = None;
    spans::build(f, &spans::scope(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "GET");
    assert_eq!(out[0].parent_span_id, SpanId::INVALID);
    assert!(!out[0].parent_span_is_remote);
}
