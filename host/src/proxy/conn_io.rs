//! A connection wrapper that enforces the request-header read timeout with a real `408`
//! response (hyper alone would close silently) and closes idle keep-alive connections.
//!
//! The handler flips [`ConnState`] when a request head has been read (`request_started`) and
//! when its response has been fully written (`response_finished`, via [`DoneBody`]). Between a
//! finished response and the next request head, the first byte read arms the header deadline;
//! no byte at all for `idle` closes the connection quietly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nferrox-error: request-timeout\r\nconnection: close\r\ncontent-length: 70\r\n\r\n{\"error\":\"request-timeout\",\"message\":\"request timed out\",\"status\":408}";

/// Per-connection flags shared between the IO wrapper and the request handler.
#[derive(Debug)]
pub struct ConnState {
    awaiting_head: AtomicBool,
    disabled: AtomicBool,
    /// The reader parked while a request was in progress: woken when its response finishes so
    /// that the idle timer starts (hyper may not read again before the client sends).
    reader: AtomicWaker,
}

impl ConnState {
    /// A fresh connection, waiting for its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            awaiting_head: AtomicBool::new(true),
            disabled: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        })
    }
    /// A request head was parsed.
    pub fn request_started(&self) {
        self.awaiting_head.store(false, Ordering::Release);
    }
    /// The response was written completely: the next bytes start a new request.
    pub fn response_finished(&self) {
        self.awaiting_head.store(true, Ordering::Release);
        self.reader.wake();
    }
    /// HTTP/2 connections multiplex; header timing is h2's business there.
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// IO wrapper enforcing the header deadline and the keep-alive idle timeout.
    pub struct HeaderTimeoutIo<T> {
        #[pin]
        inner: T,
        state: Arc<ConnState>,
        header_timeout: Duration,
        idle_timeout: Duration,
        sleep: Pin<Box<Sleep>>,
        // When the current wait ends. The timer is moved to it only when a read actually has
        // to wait: most requests arrive whole, and re-arming a timer per request costs more
        // than the rest of this wrapper.
        deadline: Instant,
        armed: bool,
        was_awaiting: bool,
        written_408: usize,
    }
}

impl<T> HeaderTimeoutIo<T> {
    /// Wrap a fresh connection.
    pub fn new(
        inner: T,
        state: Arc<ConnState>,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        // A new connection that sends nothing within the header timeout is closed quietly.
        let deadline = Instant::now() + header_timeout;
        Self {
            inner,
            state,
            header_timeout,
            idle_timeout,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            deadline,
            armed: false,
            was_awaiting: true,
            written_408: 0,
        }
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for HeaderTimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if this.state.disabled.load(Ordering::Acquire) {
            return this.inner.poll_read(cx, buf);
        }
        let awaiting = this.state.awaiting_head.load(Ordering::Acquire);
        if awaiting && !*this.was_awaiting {
            // A response just finished: the connection is idle until the next byte.
            *this.armed = false;
            *this.deadline = Instant::now() + *this.idle_timeout;
        }
        *this.was_awaiting = awaiting;
        let before = buf.filled().len();
        match this.inner.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if awaiting && !*this.armed && buf.filled().len() > before {
                    *this.armed = true;
                    *this.deadline = Instant::now() + *this.header_timeout;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !awaiting {
                    this.state.reader.register(cx.waker());
                    // A response that finished meanwhile must still start the idle timer.
                    if this.state.awaiting_head.load(Ordering::Acquire) {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
                if this.sleep.deadline() != *this.deadline {
                    this.sleep.as_mut().reset(*this.deadline);
                }
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if *this.armed {
                    // Part of a request head arrived but not all of it in time: say so.
                    while *this.written_408 < RESPONSE_408.len() {
                        match this
                            .inner
                            .as_mut()
                            .poll_write(cx, &RESPONSE_408[*this.written_408..])
                        {
                            Poll::Ready(Ok(n)) if n > 0 => *this.written_408 += n,
                            _ => break,
                        }
                    }
                    let _ = this.inner.as_mut().poll_flush(cx);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request header read timeout",
                    )));
                }
                // Idle keep-alive connection: end of stream, closed quietly.
                Poll::Ready(Ok(()))
            }
        }
    }
}

use std::future::Future as _;

impl<T: AsyncWrite> AsyncWrite for HeaderTimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells the connection when it has been fully written (or dropped).
    pub struct DoneBody<B> {
        #[pin]
        inner: B,
        state: Option<Arc<ConnState>>,
    }
    impl<B> PinnedDrop for DoneBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(s) = this.project().state.take() {
                s.response_finished();
            }
        }
    }
}

impl<B> DoneBody<B> {
    /// Wrap a response body of the connection with `state`.
    pub fn new(inner: B, state: Arc<ConnState>) -> Self {
        Self {
            inner,
            state: Some(state),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for DoneBody<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = r
            && let Some(s) = this.state.take()
        {
            s.response_finished();
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
