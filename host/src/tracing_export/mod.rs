//! Span export over OTLP/HTTP (the `tracing` config section). Off unless configured; when off,
//! the handler's only cost is one `OnceLock` read per request.
//!
//! When on, a request's trace context is decided once at its start ([`TraceExport::begin`]):
//! a valid incoming `traceparent` gives the trace id, the parent span and the sampled flag; a
//! request without one starts a trace, recorded with probability `sample_ratio`. The gateway
//! forwards `traceparent` with its own upstream (CLIENT) span as the parent
//! ([`SpanIds::propagate`]), so the upstream's spans are children of the gateway's.
//!
//! Nothing is instrumented deep in the datapath: at the end of a recorded request the handler
//! hands over what it already gathered for the access log ([`Finished`]: route, status, target,
//! each filter's [`FilterRecord`] with its start and µs, the upstream call's window), a
//! `try_send` into a bounded queue that never waits. The exporter task ([`exporter`]) turns it
//! into spans (one SERVER span, one per filter call, one CLIENT span for the upstream
//! attempts; [`spans`]) and sends them in batches with `opentelemetry-otlp`. A full queue or a
//! batch that could not be delivered is dropped and counted in `ferrox_trace_dropped_total`.

pub mod exporter;
pub mod spans;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::pipeline::FilterRecord;
use crate::proxy::headers::TRACEPARENT;

pub use exporter::attach;

/// The datapath's handle: the sampling decision and a bounded queue towards the exporter.
#[derive(Debug, Clone)]
pub struct TraceExport {
    tx: mpsc::Sender<Finished>,
    dropped: IntCounter,
    sample_ratio: f64,
}

/// The ids of a request the gateway traces: the trace, the incoming parent, the gateway's
/// SERVER span and its CLIENT span towards the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    /// Trace id (incoming or new).
    pub trace_id: [u8; 16],
    /// The caller's span, when the request came with a `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// The gateway's span for the request.
    pub server: [u8; 8],
    /// The gateway's span for the upstream call: the parent the upstream sees.
    pub client: [u8; 8],
    /// Whether the request is recorded (and its spans exported).
    pub sampled: bool,
}

impl TraceExport {
    /// A handle queueing at most `queue` finished requests (drops counted in `dropped`),
    /// recording new traces with probability `sample_ratio`, and the queue's receiving end.
    pub fn new(
        queue: usize,
        sample_ratio: f64,
        dropped: IntCounter,
    ) -> (Self, mpsc::Receiver<Finished>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let handle = Self {
            tx,
            dropped,
            sample_ratio,
        };
        (handle, rx)
    }

    /// The trace context of a request from its `headers`: `None` when an incoming
    /// `traceparent` says "not sampled" (it is forwarded unchanged and nothing is recorded).
    pub fn begin(&self, headers: &HeaderMap) -> Option<SpanIds> {
        let (trace_id, parent, sampled) = match headers
            .get(&TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()))
        {
            Some(tp) if tp.sampled() => (tp.trace_id, Some(tp.parent_id), true),
            Some(_) => return None,
            None => (
                random_id(),
                None,
                self.sample_ratio >= 1.0 || fastrand::f64() < self.sample_ratio,
            ),
        };
        Some(SpanIds {
            trace_id,
            parent,
            server: random_id(),
            client: random_id(),
            sampled,
        })
    }

    /// Queue a finished request's spans, or drop and count them when the queue is full.
    /// Never waits.
    pub fn record(&self, finished: Finished) {
        if self.tx.try_send(finished).is_err() {
            self.dropped.inc();
        }
    }
}

impl SpanIds {
    /// Set the `traceparent` sent upstream: this trace, the gateway's CLIENT span as parent,
    /// the sampling decision as flag. (`tracestate` is forwarded as received.)
    pub fn propagate(&self, headers: &mut HeaderMap) {
        let tp = TraceParent {
            trace_id: self.trace_id,
            parent_id: self.client,
            flags: u8::from(self.sampled),
        };
        if let Ok(v) = HeaderValue::from_bytes(&tp.encode()) {
            headers.insert(TRACEPARENT, v);
        }
    }
}

/// A W3C `traceparent` (version `00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zero.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parse `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>` (lower-case hex, ids
    /// not all zero); anything else is `None`.
    pub fn parse(v: &[u8]) -> Option<Self> {
        if v.len() != 55 || &v[0..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flags = [0u8; 1];
        decode_hex(&v[3..35], &mut trace_id)?;
        decode_hex(&v[36..52], &mut parent_id)?;
        decode_hex(&v[53..55], &mut flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// Whether the caller records this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value.
    pub fn encode(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        encode_hex(&self.trace_id, &mut out[3..35]);
        encode_hex(&self.parent_id, &mut out[36..52]);
        encode_hex(&[self.flags], &mut out[53..55]);
        out
    }
}

fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// A random id, never all zero.
fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        fastrand::fill(&mut id);
        if id != [0; N] {
            return id;
        }
    }
}

/// What the handler knows about a finished request: the spans are made from it off the
/// request path.
#[derive(Debug)]
pub struct Finished {
    /// Its trace context.
    pub ids: SpanIds,
    /// One reading of both clocks at the end, to place the `Instant`s below in wall time.
    pub clock: (Instant, SystemTime),
    /// When the request arrived.
    pub started: Instant,
    /// When its response head was ready.
    pub ended: Instant,
    /// Method label (`GET`, …, `OTHER`).
    pub method: &'static str,
    /// Path as received, without the query (normalised when the spans are made).
    pub path: Box<str>,
    /// The route it matched.
    pub route: Option<Arc<str>>,
    /// Status answered.
    pub status: u16,
    /// The request id.
    pub request_id: String,
    /// The consumer a filter identified.
    pub consumer: Option<String>,
    /// The `ferrox-error` kind of a gateway-made error.
    pub error: Option<String>,
    /// The route's upstream.
    pub upstream: Option<String>,
    /// The last target tried.
    pub target: Option<String>,
    /// Attempts sent upstream.
    pub attempts: u32,
    /// From the first attempt's send to the last attempt's response head.
    pub upstream_window: Option<(Instant, Instant)>,
    /// Each filter call.
    pub filters: Vec<FilterRecord>,
}

#[cfg(test)]
mod tests;
