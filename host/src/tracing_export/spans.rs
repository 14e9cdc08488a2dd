//! A finished request as OpenTelemetry spans: the SERVER span (`<method> <route>`), one
//! INTERNAL span per filter call (`filter <plugin> <phase>`) and one CLIENT span for the
//! upstream attempts (`upstream <name>`), placed in wall time from the request's `Instant`s.

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::{Finished, random_id};
use crate::router::normalize_path;

/// The instrumentation scope of every span the gateway exports.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("ferrox")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The spans of `f`, appended to `out`: the request's, then its filters', then the upstream
/// call's (when one was sent).
pub fn build(f: Finished, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
    let at = |i: Instant| wall(f.clock, i);
    let trace_id = TraceId::from_bytes(f.ids.trace_id);
    let server = SpanId::from_bytes(f.ids.server);
    let context = |span: SpanId| {
        SpanContext::new(trace_id, span, TraceFlags::SAMPLED, false, TraceState::NONE)
    };
    let span = |name: String, kind: SpanKind, id: SpanId, window: (Instant, Instant)| SpanData {
        span_context: context(id),
        parent_span_id: server,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: at(window.0),
        end_time: at(window.1),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    };
    let method = if f.method == "OTHER" {
        "_OTHER"
    } else {
        f.method
    };

    // The request.
    let mut request = span(
        match &f.route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        },
        SpanKind::Server,
        server,
        (f.started, f.ended),
    );
    request.parent_span_id = f.ids.parent.map_or(SpanId::INVALID, SpanId::from_bytes);
    request.parent_span_is_remote = f.ids.parent.is_some();
    let path = normalize_path(&f.path).unwrap_or_else(|_| f.path.to_string());
    let a = &mut request.attributes;
    a.push(KeyValue::new("http.request.method", method));
    a.push(KeyValue::new("url.path", path));
    if let Some(route) = &f.route {
        a.push(KeyValue::new("http.route", route.to_string()));
    }
    a.push(KeyValue::new(
        "http.response.status_code",
        i64::from(f.status),
    ));
    a.push(KeyValue::new("ferrox.request_id", f.request_id));
    if let Some(c) = f.consumer {
        a.push(KeyValue::new("ferrox.consumer", c));
    }
    if let Some(u) = &f.upstream {
        a.push(KeyValue::new("ferrox.upstream", u.clone()));
    }
    if let Some(t) = &f.target {
        a.push(KeyValue::new("ferrox.upstream.target", t.clone()));
    }
    if let Some(kind) = &f.error {
        a.push(KeyValue::new("error.type", kind.clone()));
    }
    if f.status >= 500 {
        request.status = Status::error(f.error.clone().unwrap_or_else(|| f.status.to_string()));
    }
    out.push(request);

    // Each filter call.
    for r in f.filters {
        let end = r.started + std::time::Duration::from_micros(r.micros);
        let mut s = span(
            format!("filter {} {}", r.plugin, r.phase),
            SpanKind::Internal,
            SpanId::from_bytes(random_id()),
            (r.started, end),
        );
        if r.decision.starts_with("failed") {
            s.status = Status::error(r.decision.clone());
        }
        let calls: Vec<StringValue> = r.calls.iter().map(|c| StringValue::from(*c)).collect();
        s.attributes = vec![
            KeyValue::new("ferrox.filter.plugin", r.plugin.to_string()),
            KeyValue::new("ferrox.filter.phase", r.phase),
            KeyValue::new("ferrox.filter.decision", r.decision),
            KeyValue::new(
                "ferrox.filter.host_calls",
                Value::Array(Array::String(calls)),
            ),
        ];
        out.push(s);
    }

    // The upstream call: every attempt, from the first send to the last response head.
    if let Some(window) = f.upstream_window {
        let mut s = span(
            format!("upstream {}", f.upstream.as_deref().unwrap_or("")),
            SpanKind::Client,
            SpanId::from_bytes(f.ids.client),
            window,
        );
        let a = &mut s.attributes;
        a.push(KeyValue::new("http.request.method", method));
        if let Some(u) = f.upstream {
            a.push(KeyValue::new("ferrox.upstream", u));
        }
        if let Some(t) = f.target {
            if let Some((host, port)) = server_address(&t) {
                a.push(KeyValue::new("server.address", host.to_owned()));
                a.push(KeyValue::new("server.port", port));
            }
            a.push(KeyValue::new("ferrox.upstream.target", t));
        }
        a.push(KeyValue::new(
            "ferrox.upstream.attempts",
            i64::from(f.attempts),
        ));
        if let Some(kind) = f.error.filter(|k| k.starts_with("upstream-")) {
            a.push(KeyValue::new("error.type", kind.clone()));
            s.status = Status::error(kind);
        }
        out.push(s);
    }
}

/// `i` in wall time, given one reading of both clocks.
fn wall((now, wall_now): (Instant, SystemTime), i: Instant) -> SystemTime {
    let ago = now.saturating_duration_since(i);
    wall_now.checked_sub(ago).unwrap_or(wall_now)
}

/// Host and port of a target label (`host:port` or `https://host:port`).
fn server_address(target: &str) -> Option<(&str, i64)> {
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))
        .unwrap_or(target);
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}
