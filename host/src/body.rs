//! Body types shared by the proxy: one boxed streaming body for every response, and the guard
//! that enforces a request body's size limit and idle timeout while it streams.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;

/// The body type of every response the gateway sends and every request it forwards.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Why a guarded body stopped (shared with the request handler so it can answer 413/408).
#[derive(Clone, Debug, Default)]
pub struct BodyVerdict(Arc<AtomicU8>);

impl BodyVerdict {
    const OK: u8 = 0;
    const TOO_LARGE: u8 = 1;
    const IDLE: u8 = 2;
    const BROKEN: u8 = 3;

    /// The body exceeded its limit.
    pub fn too_large(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::TOO_LARGE
    }
    /// The client paused longer than the idle timeout.
    pub fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::IDLE
    }
    /// The client's body itself failed (bad chunked framing, the client went away).
    pub fn broken(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::BROKEN
    }
    fn set(&self, v: u8) {
        let _ = self
            .0
            .compare_exchange(Self::OK, v, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Errors a guarded body ends with.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More bytes than allowed.
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    /// No bytes for longer than the idle timeout.
    #[error("request body idle for more than {0:?}")]
    Idle(Duration),
}

pin_project_lite::pin_project! {
    /// Wraps a body: counts bytes against a limit and fails when the peer stalls.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        idle: Duration,
        // Created on the first wait only: most bodies are ready at once and never need a timer.
        sleep: Option<Pin<Box<Sleep>>>,
        verdict: BodyVerdict,
    }
}

impl<B> GuardedBody<B> {
    /// Guard `inner` with a byte `limit` and an `idle` timeout between chunks.
    pub fn new(inner: B, limit: u64, idle: Duration, verdict: BodyVerdict) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            idle,
            sleep: None,
            verdict,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let idle = *this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(sleep.as_mut().poll(cx));
                this.verdict.set(BodyVerdict::IDLE);
                Poll::Ready(Some(Err(BodyError::Idle(*this.idle).into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.remaining {
                        this.verdict.set(BodyVerdict::TOO_LARGE);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(*this.limit).into())));
                    }
                    *this.remaining -= n;
                }
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *this.idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.verdict.set(BodyVerdict::BROKEN);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test]
    async fn limit_is_enforced_while_streaming() {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..4)
            .map(|_| Ok(Frame::data(Bytes::from(vec![0u8; 400]))))
            .collect();
        let verdict = BodyVerdict::default();
        let body = GuardedBody::new(
            StreamBody::new(futures_util::stream::iter(chunks)),
            1000,
            Duration::from_secs(5),
            verdict.clone(),
        );
        let err = body.collect().await.expect_err("over the limit");
        assert!(err.to_string().contains("exceeds 1000"));
        assert!(verdict.too_large());
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_times_out() {
        let verdict = BodyVerdict::default();
        let pending = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >());
        let body = GuardedBody::new(pending, 10, Duration::from_secs(30), verdict.clone());
        let err = body.collect().await.expect_err("idle");
        assert!(err.to_string().contains("idle"));
        assert!(verdict.idle());
    }
}
