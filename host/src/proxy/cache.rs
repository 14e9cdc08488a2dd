//! The datapath side of the response cache: answering a hit from a stored response, and
//! teeing a storable response's body into the store while it streams to the client.
//!
//! A body is stored only when it completed cleanly: every frame arrived, the length matches a
//! declared `Content-Length`, and it stayed within the filter's size bound. An upstream that
//! fails mid-body, a client that goes away, or an over-size body leaves nothing behind.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};

use crate::body::ProxyBody;
use crate::error::BoxError;
use crate::plugin::response_cache::{CACHE_STATUS_HEADER, StoreIntent};
use crate::state::{CachedResponse, StateStore, now_ms};

/// The response for a cache hit: the stored status, headers and body (none for HEAD), with
/// `Age` and `X-Cache-Status: HIT`.
pub fn hit_response(entry: &CachedResponse, head: bool) -> Response<ProxyBody> {
    let body = if head {
        crate::body::empty()
    } else {
        crate::body::full(entry.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    *headers = entry.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(entry.age_at(now_ms())));
    headers.insert(CACHE_STATUS_HEADER, HeaderValue::from_static("HIT"));
    resp
}

/// Wrap `body` so that it is stored under the intent's key once it has streamed completely.
pub fn tee(
    body: ProxyBody,
    status: StatusCode,
    intent: StoreIntent,
    store: Arc<StateStore>,
) -> ProxyBody {
    let StoreIntent {
        key,
        ttl_ms,
        max_body,
        mut headers,
    } = intent;
    let age_s = headers
        .remove(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .unwrap_or(0);
    let declared = declared_length(&headers);
    if declared.is_some_and(|n| n > max_body) {
        return body;
    }
    let mut tee = TeeBody {
        inner: body,
        pending: Some(Pending {
            key,
            ttl_ms,
            max_body,
            status: status.as_u16(),
            headers,
            age_s,
            declared,
            buf: BytesMut::new(),
            store,
        }),
    };
    if tee.inner.is_end_stream() {
        // Nothing to stream (HEAD, 204, empty): the server may never poll the body.
        tee.finish();
    }
    http_body_util::BodyExt::boxed(tee)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

struct Pending {
    key: String,
    ttl_ms: u64,
    max_body: u64,
    status: u16,
    headers: HeaderMap,
    age_s: u64,
    declared: Option<u64>,
    buf: BytesMut,
    store: Arc<StateStore>,
}

struct TeeBody {
    inner: ProxyBody,
    /// `None` once stored or abandoned.
    pending: Option<Pending>,
}

impl TeeBody {
    /// Keep `data`; abandon the entry when it grows past its bound.
    fn keep(&mut self, data: &Bytes) {
        if let Some(p) = &mut self.pending {
            if (p.buf.len() + data.len()) as u64 > p.max_body {
                self.pending = None;
            } else {
                p.buf.extend_from_slice(data);
            }
        }
    }

    /// The body is complete: store it (at once when the store is in-process, else in a task).
    fn finish(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let body = p.buf.freeze();
        // HEAD answers declare the length of a body they do not carry.
        if !body.is_empty() && p.declared.is_some_and(|n| n != body.len() as u64) {
            return;
        }
        let entry = CachedResponse {
            stored_at_ms: now_ms(),
            age_s: p.age_s,
            status: p.status,
            headers: p.headers,
            body,
        };
        let (store, key, ttl_ms) = (p.store, p.key, p.ttl_ms);
        let mut put = Box::pin(async move {
            if let Err(e) = store.put_response(&key, entry, ttl_ms, None).await {
                tracing::debug!(error = %e, "response not stored in the cache");
            }
        });
        if put.as_mut().now_or_never().is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(put);
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
