//! Span export over OTLP/HTTP against a real receiver in this process (axum on port 0, POST
//! `/v1/traces`, protobuf decoded with opentelemetry-proto's types): the request's SERVER span
//! continues the caller's trace, filter calls and the upstream call are its children, the
//! upstream sees the gateway's span as parent; unsampled traces and a gateway without a
//! `tracing` section send nothing; a dead receiver costs requests nothing; spans queued at
//! shutdown are flushed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;

use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const API_KEY: &str = "alice-tracing-key";

/// One exported span with its resource's `service.name`.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    span: Span,
}

/// An OTLP/HTTP receiver: what it was sent, and how many export requests it took.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    posts: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Sink {
    spans: Arc<Mutex<Vec<Got>>>,
    posts: Arc<Mutex<usize>>,
}

async fn accept(
    State(sink): State<Sink>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut out = HeaderMap::new();
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, out, Bytes::new());
    }
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, out, Bytes::new());
    };
    *sink.posts.lock().expect("lock") += 1;
    let mut spans = sink.spans.lock().expect("lock");
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| string(kv.value.as_ref()))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.push(Got {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    out.insert(
        "content-type",
        "application/x-protobuf".parse().expect("value"),
    );
    (
        StatusCode::OK,
        out,
        ExportTraceServiceResponse::default().encode_to_vec().into(),
    )
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    let sink = Sink {
        spans: Arc::default(),
        posts: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(accept))
        .with_state(sink.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        addr,
        spans: sink.spans,
        posts: sink.posts,
        task,
    }
}

impl Receiver {
    fn spans(&self) -> Vec<Got> {
        self.spans.lock().expect("lock").clone()
    }

    /// The spans of trace `trace_id` (hex), once at least `n` have arrived.
    async fn trace(&self, trace_id: &str, n: usize) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Got> = self
                .spans()
                .into_iter()
                .filter(|g| hex::encode(&g.span.trace_id) == trace_id)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} spans of trace {trace_id} after 20s: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn string(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// A route `r` with two filters (key-auth, then transform) to an echo upstream, tracing to
/// `endpoint` with `extra` settings.
fn doc(up: SocketAddr, tracing: Option<(SocketAddr, &str)>) -> String {
    let tracing = tracing.map_or(String::new(), |(endpoint, extra)| {
        format!(
            "tracing:\n  otlp_endpoint: \"http://{endpoint}\"\n  service_name: ferrox-test\n{extra}"
        )
    });
    format!(
        "{tracing}upstreams:\n{}consumers:\n  - {{ name: alice, keys: [{API_KEY}] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: /api }}\n    upstream: u\n    filters:\n      - {{ plugin: key-auth, timeout: 500ms }}\n      - {{ plugin: transform, timeout: 500ms, config: {{ request: {{ set_headers: {{ x-traced: gateway }} }} }} }}\n",
        upstream_yaml("u", &[up], ""),
    )
}

const FAST: &str = "  flush_interval: 10ms\n";

/// The `traceparent` the echo upstream received.
fn upstream_traceparent(r: &Resp) -> String {
    r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {}", r.json()))
        .to_owned()
}

#[tokio::test]
async fn a_traced_request_exports_its_span_its_filters_and_the_upstream_call() {
    let rx = receiver().await;
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, Some((rx.addr, FAST)))).await;
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let r = get_with(
        &gw.url("/api/./users//7?q=1"),
        &[("traceparent", &incoming), ("apikey", API_KEY)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent_up = upstream_traceparent(&r);
    assert_eq!(
        r.json()["headers"]["x-traced"],
        "gateway",
        "both filters ran"
    );

    // key-auth's request hook, transform's request and response hooks: 3 filter calls
    // (key-auth declares no response hook, so none is called).
    let spans = rx.trace(TRACE_ID, 5).await;
    assert_eq!(spans.len(), 5, "{spans:#?}");
    assert!(spans.iter().all(|g| g.service == "ferrox-test"));
    let find = |name: &str| -> Span {
        let mut it = spans.iter().filter(|g| g.span.name == name);
        let s = it
            .next()
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"));
        assert!(it.next().is_none(), "two spans named {name:?}");
        s.span.clone()
    };

    let server = find("GET r");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex::encode(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attr_str(&server, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr_str(&server, "url.path").as_deref(),
        Some("/api/users/7")
    );
    assert_eq!(attr_str(&server, "http.route").as_deref(), Some("r"));
    assert_eq!(attr_int(&server, "http.response.status_code"), Some(200));
    assert_eq!(
        attr_str(&server, "ferrox.upstream.target"),
        Some(up.addr.to_string())
    );
    assert_eq!(
        attr_str(&server, "ferrox.consumer").as_deref(),
        Some("alice")
    );
    assert_eq!(
        attr_str(&server, "ferrox.request_id").as_deref(),
        r.header("x-request-id")
    );
    assert_eq!(attr(&server, "error.type"), None);
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);

    for (plugin, phase) in [
        ("key-auth", "request"),
        ("transform", "request"),
        ("transform", "response"),
    ] {
        let f = find(&format!("filter {plugin} {phase}"));
        assert_eq!(f.kind, SpanKind::Internal as i32);
        assert_eq!(f.parent_span_id, server.span_id, "{plugin} {phase}");
        assert_eq!(
            attr_str(&f, "ferrox.filter.plugin").as_deref(),
            Some(plugin)
        );
        assert_eq!(attr_str(&f, "ferrox.filter.phase").as_deref(), Some(phase));
        let decision = attr_str(&f, "ferrox.filter.decision").expect("decision");
        assert_eq!(
            decision,
            if phase == "request" {
                "continue"
            } else {
                "done"
            }
        );
        assert!(
            matches!(
                attr(&f, "ferrox.filter.host_calls"),
                Some(any_value::Value::ArrayValue(_))
            ),
            "{f:#?}"
        );
        assert!(
            f.start_time_unix_nano >= server.start_time_unix_nano,
            "{plugin} {phase}"
        );
        assert!(
            f.end_time_unix_nano <= server.end_time_unix_nano + 1_000_000,
            "{plugin} {phase}"
        );
    }
    let key_auth_calls = find("filter key-auth request");
    let Some(any_value::Value::ArrayValue(calls)) =
        attr(&key_auth_calls, "ferrox.filter.host_calls")
    else {
        unreachable!("checked above")
    };
    assert!(
        calls
            .values
            .iter()
            .any(|v| string(Some(v)).as_deref() == Some("credentials")),
        "key-auth looks the key up through the credentials service: {calls:?}"
    );

    let client = find("upstream u");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(attr_str(&client, "ferrox.upstream").as_deref(), Some("u"));
    assert_eq!(
        attr_int(&client, "server.port"),
        Some(i64::from(up.addr.port()))
    );
    assert_eq!(attr_int(&client, "ferrox.upstream.attempts"), Some(1));
    // The upstream's parent is the gateway's CLIENT span, in the caller's trace.
    assert_eq!(
        sent_up,
        format!("00-{TRACE_ID}-{}-01", hex::encode(&client.span_id))
    );
    // Every span id is distinct.
    let ids: BTreeSet<Vec<u8>> = spans.iter().map(|g| g.span.span_id.clone()).collect();
    assert_eq!(ids.len(), 5);
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_trace_and_gateway_errors_are_marked() {
    let rx = receiver().await;
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, Some((rx.addr, FAST)))).await;
    let r = get_with(&gw.url("/api/x"), &[("apikey", API_KEY)]).await;
    assert_eq!(r.status, 200);
    let sent = upstream_traceparent(&r);
    let (trace_id, parent) = (&sent[3..35], &sent[36..52]);
    assert!(sent.ends_with("-01"), "{sent}");
    let spans = rx.trace(trace_id, 5).await;
    let server = spans
        .iter()
        .find(|g| g.span.kind == SpanKind::Server as i32)
        .expect("server span");
    assert!(server.span.parent_span_id.is_empty(), "a root span");
    let client = spans
        .iter()
        .find(|g| g.span.kind == SpanKind::Client as i32)
        .expect("client span");
    assert_eq!(hex::encode(&client.span.span_id), parent);

    // A filter's 401: the server span and the key-auth call, no upstream call.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = get_with(&gw.url("/api/x"), &[("traceparent", tp)]).await;
    assert_eq!(r.status, 401);
    let spans = rx.trace("0af7651916cd43dd8448eb211c80319c", 2).await;
    let mut names: Vec<&str> = spans.iter().map(|g| g.span.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["GET r", "filter key-auth request"]);
    let decision = spans
        .iter()
        .find(|g| g.span.name == "filter key-auth request")
        .and_then(|g| attr_str(&g.span, "ferrox.filter.decision"));
    assert_eq!(decision.as_deref(), Some("respond 401"));

    // A gateway error: no route.
    let tp = "00-11111111111111111111111111111111-2222222222222222-01";
    let r = get_with(&gw.url("/nowhere"), &[("traceparent", tp)]).await;
    assert_eq!(r.status, 404);
    let spans = rx.trace("11111111111111111111111111111111", 1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span.name, "GET");
    assert_eq!(
        attr_str(&spans[0].span, "error.type").as_deref(),
        Some("no-route")
    );
    assert_eq!(
        attr_int(&spans[0].span, "http.response.status_code"),
        Some(404)
    );
    gw.running.shutdown().await;
}

#[tokio::test]
async fn an_unsampled_trace_is_forwarded_untouched_and_not_exported() {
    let rx = receiver().await;
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, Some((rx.addr, FAST)))).await;
    let unsampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    let r = get_with(
        &gw.url("/api/x"),
        &[("traceparent", &unsampled), ("apikey", API_KEY)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream_traceparent(&r), unsampled);
    // A sampled request after it: once its spans are in, the unsampled one would be too.
    let marker = "00-33333333333333333333333333333333-4444444444444444-01";
    let r = get_with(
        &gw.url("/api/x"),
        &[("traceparent", marker), ("apikey", API_KEY)],
    )
    .await;
    assert_eq!(r.status, 200);
    rx.trace("33333333333333333333333333333333", 5).await;
    gw.running.shutdown().await;
    let spans = rx.spans();
    assert!(
        spans
            .iter()
            .all(|g| hex::encode(&g.span.trace_id) != TRACE_ID),
        "{spans:#?}"
    );
    assert_eq!(spans.len(), 5);

    // sample_ratio 0: new traces are started unsampled and sent nowhere.
    let gw = gateway(&doc(
        up.addr,
        Some((rx.addr, "  flush_interval: 10ms\n  sample_ratio: 0.0\n")),
    ))
    .await;
    for _ in 0..5 {
        let r = get_with(&gw.url("/api/x"), &[("apikey", API_KEY)]).await;
        assert_eq!(r.status, 200);
        assert!(upstream_traceparent(&r).ends_with("-00"));
    }
    gw.running.shutdown().await;
    assert_eq!(
        rx.spans().len(),
        5,
        "nothing more after the shutdown's flush"
    );
}

#[tokio::test]
async fn without_a_tracing_section_nothing_is_sent() {
    let rx = receiver().await;
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, None)).await;
    assert!(gw.running.gateway.trace_export.get().is_none());
    let incoming = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for _ in 0..5 {
        let r = get_with(
            &gw.url("/api/x"),
            &[("traceparent", &incoming), ("apikey", API_KEY)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(upstream_traceparent(&r), incoming, "forwarded as received");
    }
    gw.running.shutdown().await;
    assert_eq!(*rx.posts.lock().expect("lock"), 0);
}

#[tokio::test]
async fn spans_queued_at_shutdown_are_flushed() {
    let rx = receiver().await;
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        Some((rx.addr, "  flush_interval: 60s\n  batch: 1000\n")),
    ))
    .await;
    for _ in 0..3 {
        let r = get_with(&gw.url("/api/x"), &[("apikey", API_KEY)]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(*rx.posts.lock().expect("lock"), 0, "held for the batch");
    let stopping = std::time::Instant::now();
    gw.running.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "shutdown waited for the 60s flush interval: {:?}",
        stopping.elapsed()
    );
    assert_eq!(rx.spans().len(), 15, "3 requests × 5 spans");
}

#[tokio::test]
async fn a_dead_receiver_costs_requests_nothing_and_is_counted() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let up = echo_upstream().await;
    let gw = gateway(&doc(
        up.addr,
        Some((dead, "  flush_interval: 10ms\n  timeout: 300ms\n")),
    ))
    .await;
    for _ in 0..4 {
        let r = get_with(&gw.url("/api/x"), &[("apikey", API_KEY)]).await;
        assert_eq!(r.status, 200);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dropped = metric_value(&gw.metrics().await, "ferrox_trace_dropped_total");
        if dropped == Some(4.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ferrox_trace_dropped_total {dropped:?} after 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.running.shutdown().await;
}
