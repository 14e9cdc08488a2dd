//! The lean HTTP/1.1 path to plain-HTTP upstream targets.
//!
//! For a request without a body (GET, HEAD, DELETE… — most API traffic) to an `http://`
//! target, the request's own task writes the request head on a pooled connection and reads the
//! response head from it: no connection task, no channel between the two, no second copy of
//! the request. The response body reads from the same connection and hands it back to its pool
//! when the body ends exactly at its framing boundary. Everything else (request bodies,
//! WebSocket upgrades, TLS targets, HTTP/2) goes through hyper's client (`client.rs`).
//!
//! Invariants:
//! - A connection is reused only after a complete response, framed by `Content-Length` or
//!   chunked encoding, with no byte left over, on HTTP/1.1 without `Connection: close`.
//! - A response body never ends cleanly unless its framing says it is complete: a connection
//!   that closes early is an error frame, never a short body.
//! - Framing is strict: `Content-Length` beside `Transfer-Encoding`, differing lengths, any
//!   transfer coding but a single `chunked`, malformed chunk lines: all are errors.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::client::{Outgoing, Pool};
use super::headers;
use crate::error::BoxError;

/// Largest response head accepted (status line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted (hyper's client default).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) and largest trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Bytes reserved for each read.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange on a raw connection failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The socket failed.
    #[error("upstream connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("upstream closed the connection before a complete response")]
    Closed {
        /// Whether any byte of a response had arrived.
        received: bool,
    },
    /// The response head broke HTTP/1.1.
    #[error("invalid upstream response: {0}")]
    Invalid(&'static str),
}

impl H1Error {
    /// Whether the request may not have reached the upstream at all: the connection was found
    /// closed (or reset) before any response byte. On a reused keep-alive connection this is the
    /// race with the upstream's idle close, and an idempotent request is safe to send again.
    pub fn nothing_received(&self) -> bool {
        match self {
            H1Error::Closed { received } => !received,
            H1Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ),
            H1Error::Invalid(_) => false,
        }
    }
}

/// A plain TCP connection to an upstream target, with its read buffer.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    out: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// How the response body is delimited.
#[derive(Debug)]
enum Framing {
    /// `remaining` bytes to go.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Until the upstream closes (never reused).
    Close,
    /// The body is complete.
    Done,
}

/// Where the chunked decoder is.
#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes seen so far).
    Trailers(usize),
}

impl Conn {
    /// Connect to `authority` (port 80 when it has none) within `timeout`.
    pub async fn connect(authority: &Authority, timeout: Duration) -> std::io::Result<Conn> {
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
            }
        };
        stream.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            out: Vec::with_capacity(512),
        })
    }

    /// Whether an idle connection can carry a request: nothing has arrived on it (no data, no
    /// close). Costs a syscall only when the socket was reported readable.
    pub fn idle_and_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: an idle connection has nothing to say but a close (or garbage).
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Send a body-less request and read the response head. `authority` is sent as `Host`
    /// when the request has none. On success the connection moves into the returned body.
    pub async fn request(
        mut self,
        req: &Outgoing<'_>,
        authority: &Authority,
    ) -> Result<(Response<()>, RawBody), H1Error> {
        encode_head(&mut self.out, req, authority);
        self.stream.write_all(&self.out).await?;
        let head_request = *req.method == Method::HEAD;
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                if let Some((resp, framing, keep_alive)) = self.parse_head(head_request)? {
                    if resp.status().is_informational()
                        && resp.status() != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue; // 100 Continue, 103 Early Hints: the final answer follows
                    }
                    let body = RawBody {
                        conn: Some(self),
                        framing,
                        keep_alive,
                        pool: None,
                        failing: false,
                    };
                    return Ok((resp, body));
                }
            }
            if self.read().await? == 0 {
                return Err(H1Error::Closed { received });
            }
        }
    }

    async fn read(&mut self) -> std::io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx)).await
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Parse a complete response head at the start of the buffer (consuming it), or `None`
    /// when more bytes are needed. Hop-by-hop headers (and those `Connection` names) are
    /// dropped here, after framing and keep-alive have been read from them.
    fn parse_head(
        &mut self,
        head_request: bool,
    ) -> Result<Option<(Response<()>, Framing, bool)>, H1Error> {
        // Offsets of each header's name and value in the head: one parse, then the values
        // share the head's bytes instead of each being copied.
        let mut spans = [[0u32; 4]; MAX_HEADERS];
        let (len, count, code, minor) = {
            // Left uninitialised: httparse fills what it parses.
            let mut slots =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let parser = httparse::ParserConfig::default();
            let len =
                match parser.parse_response_with_uninit_headers(&mut parsed, &self.buf, &mut slots)
                {
                    Ok(httparse::Status::Complete(len)) => len,
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > MAX_HEAD_BYTES {
                            return Err(H1Error::Invalid("response head too large"));
                        }
                        return Ok(None);
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(H1Error::Invalid("too many response headers"));
                    }
                    Err(_) => return Err(H1Error::Invalid("malformed response head")),
                };
            if len > MAX_HEAD_BYTES {
                return Err(H1Error::Invalid("response head too large"));
            }
            let base = self.buf.as_ptr() as usize;
            for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
                // Both slices point into `self.buf`, below MAX_HEAD_BYTES: the offsets fit.
                let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
                *span = [
                    at(h.name.as_bytes()),
                    h.name.len() as u32,
                    at(h.value),
                    h.value.len() as u32,
                ];
            }
            (len, parsed.headers.len(), parsed.code, parsed.version)
        };
        let head = self.buf.split_to(len).freeze();
        let spans = &spans[..count];
        let name_of = |s: &[u32; 4]| &head[s[0] as usize..(s[0] + s[1]) as usize];
        let value_of = |s: &[u32; 4]| &head[s[2] as usize..(s[2] + s[3]) as usize];

        let status = code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(H1Error::Invalid("invalid status code"))?;
        let version = match minor {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        let fields = || spans.iter().map(|s| (name_of(s), value_of(s)));
        let framing = framing(status, fields(), head_request)?;
        // The `Connection` tokens, gathered once (a handful at most in practice; any beyond
        // the first 16 still count for `close` but their headers are not looked for).
        let mut tokens: [&[u8]; 16] = [&[]; 16];
        let mut ntokens = 0;
        let mut close = false;
        for t in fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
        {
            close |= t.eq_ignore_ascii_case(b"close");
            if ntokens < tokens.len() {
                tokens[ntokens] = t;
                ntokens += 1;
            }
        }
        let tokens = &tokens[..ntokens];
        let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
        // After a 101 the connection speaks another protocol: never reused.
        let keep_alive =
            version == Version::HTTP_11 && !matches!(framing, Framing::Close) && !close && !upgrade;
        let mut headers = HeaderMap::with_capacity(count);
        for s in spans {
            let name = name_of(s);
            if (headers::is_hop_by_hop(name) && !(upgrade && is_upgrade_header(name)))
                || tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let name = HeaderName::from_bytes(name)
                .map_err(|_| H1Error::Invalid("invalid header name"))?;
            let value =
                HeaderValue::from_maybe_shared(head.slice(s[2] as usize..(s[2] + s[3]) as usize))
                    .map_err(|_| H1Error::Invalid("invalid header value"))?;
            headers.append(name, value);
        }
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        *resp.version_mut() = version;
        *resp.headers_mut() = headers;
        Ok(Some((resp, framing, keep_alive)))
    }
}

/// The headers a `101 Switching Protocols` keeps for the tunnel.
fn is_upgrade_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"connection")
}

/// The request head: request line, `Host` (the override, the request's, or the target's
/// authority), the other headers as given, and `Content-Length: 0` for methods whose requests
/// usually carry a body.
fn encode_head(out: &mut Vec<u8>, req: &Outgoing<'_>, authority: &Authority) {
    let (method, target, headers) = (req.method, req.target, req.headers);
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = match req.host {
        Some(h) => Some(h.as_bytes()),
        None if headers.contains_key(header::HOST) => None,
        None => Some(authority.as_str().as_bytes()),
    };
    if let Some(host) = host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if host.is_some() && name == header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response's body is delimited (RFC 9112 §6.3), from its header fields.
fn framing<'a>(
    status: StatusCode,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    head_request: bool,
) -> Result<Framing, H1Error> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    let named = |name: &'static [u8]| {
        fields
            .clone()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
    };
    let te = fields
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"));
    let cl = fields
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
    if te && cl {
        return Err(H1Error::Invalid(headers::LENGTH_AND_CODING));
    }
    if te {
        // Exactly one coding, `chunked`: anything else would be passed on still applied.
        let values = fields
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"))
            .map(|(_, v)| v);
        return if headers::only_chunked(values) {
            Ok(Framing::Chunked(Chunk::Size))
        } else {
            Err(H1Error::Invalid(headers::UNSUPPORTED_CODING))
        };
    }
    if cl {
        // Repeated values (or a list) must all agree.
        let mut length = None;
        for part in named(b"content-length") {
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(H1Error::Invalid("invalid Content-Length"));
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Invalid("conflicting Content-Length values"));
            }
            length = Some(n);
        }
        return Ok(Framing::Length(length.unwrap_or(0)));
    }
    Ok(Framing::Close)
}

/// A response body read straight from its connection. The connection goes back to its pool
/// when the body is complete and the connection can be reused; a body dropped before its end
/// closes the connection.
pub struct RawBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Option<Arc<Pool>>,
    /// Whether a failure was already held back once (see [`RawBody::fail`]).
    failing: bool,
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBody")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl RawBody {
    /// Return the connection to `pool` when the body is done; a body already complete (no
    /// bytes, or all of them read with the head) frees it now.
    pub fn attach(mut self, pool: &Arc<Pool>) -> Self {
        self.pool = Some(pool.clone());
        if matches!(self.framing, Framing::Length(0)) {
            self.framing = Framing::Done;
            self.release();
        }
        self
    }

    /// The body is complete: the connection goes back if it may.
    fn release(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep_alive
            && conn.buf.is_empty()
            && let Some(pool) = self.pool.as_ref()
        {
            pool.checkin_raw(conn);
        }
    }

    /// End the body with an error. The first time, this yields once instead (waking itself at
    /// once): the server then writes out the head and data it holds before the error aborts
    /// the response, so a client sees a status and the bytes that did arrive, cut short, rather
    /// than a connection closed without an answer. Polled again, the same failure is found.
    fn fail(&mut self, e: H1Error, cx: &mut Context<'_>) -> Polled {
        if !self.failing {
            self.failing = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(e.into())))
    }

    /// Read more bytes; `Ok(false)` at the connection's end.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, H1Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        match conn.poll_read(cx) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n > 0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Read more of a body that is not complete: `None` when bytes arrived (decode again),
    /// otherwise what `poll_frame` returns — pending, or the failure (`at_end` when the
    /// connection ended).
    fn more(&mut self, cx: &mut Context<'_>, at_end: &'static str) -> Option<Polled> {
        match self.fill(cx) {
            Poll::Pending => Some(Poll::Pending),
            Poll::Ready(Ok(true)) => None,
            Poll::Ready(Ok(false)) => Some(self.fail(H1Error::Invalid(at_end), cx)),
            Poll::Ready(Err(e)) => Some(self.fail(e, cx)),
        }
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(0) => {
                    this.framing = Framing::Done;
                    this.release();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) => {
                    let remaining = *remaining;
                    let Some(conn) = this.conn.as_mut() else {
                        return this.fail(H1Error::Closed { received: true }, cx);
                    };
                    if !conn.buf.is_empty() {
                        let n = (conn.buf.len() as u64).min(remaining) as usize;
                        let data = conn.buf.split_to(n).freeze();
                        let left = remaining - n as u64;
                        this.framing = Framing::Length(left);
                        if left == 0 {
                            this.framing = Framing::Done;
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if let Some(done) = this.more(
                        cx,
                        "upstream closed the connection before the end of the body",
                    ) {
                        return done;
                    }
                }
                Framing::Close => {
                    let Some(conn) = this.conn.as_mut() else {
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    };
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match this.fill(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(true)) => {}
                        Poll::Ready(Ok(false)) => {
                            this.conn = None;
                            this.framing = Framing::Done;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Err(e)) => return this.fail(e, cx),
                    }
                }
                Framing::Chunked(state) => {
                    let Some(conn) = this.conn.as_mut() else {
                        return this.fail(H1Error::Closed { received: true }, cx);
                    };
                    match decode_chunked(state, &mut conn.buf) {
                        Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Decoded::End) => {
                            this.framing = Framing::Done;
                            this.release();
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::NeedMore) => {
                            if let Some(done) = this
                                .more(cx, "upstream closed the connection inside a chunked body")
                            {
                                return done;
                            }
                        }
                        Err(e) => return this.fail(e, cx),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// What `poll_frame` returns.
type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// What the chunked decoder made of the buffered bytes.
enum Decoded {
    Data(Bytes),
    End,
    NeedMore,
}

/// Advance the chunked decoder in `state` over the buffered bytes.
fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, H1Error> {
    loop {
        match state {
            Chunk::Size => {
                let Some(eol) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Decoded::NeedMore);
                };
                let size = chunk_size(&buf[..eol])?;
                buf.advance(eol + 2);
                *state = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(remaining) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = (buf.len() as u64).min(*remaining) as usize;
                let data = buf.split_to(n).freeze();
                *remaining -= n as u64;
                if *remaining == 0 {
                    *state = Chunk::DataEnd;
                }
                return Ok(Decoded::Data(data));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(H1Error::Invalid("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers(seen) => {
                let Some(eol) = find_crlf(buf, MAX_TRAILER_BYTES)? else {
                    return Ok(Decoded::NeedMore);
                };
                // Trailer fields are dropped: nothing downstream of the proxy uses them.
                buf.advance(eol + 2);
                if eol == 0 {
                    return Ok(Decoded::End);
                }
                *seen += eol + 2;
                if *seen > MAX_TRAILER_BYTES {
                    return Err(H1Error::Invalid("chunked trailers too large"));
                }
            }
        }
    }
}

/// Position of the first CRLF, `None` if more bytes are needed; a bare LF or a line longer
/// than `max` is an error.
fn find_crlf(buf: &[u8], max: usize) -> Result<Option<usize>, H1Error> {
    match buf.iter().take(max + 2).position(|b| *b == b'\n') {
        Some(0) => Err(H1Error::Invalid("bare LF in chunked body")),
        Some(lf) if buf[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(H1Error::Invalid("bare LF in chunked body")),
        None if buf.len() > max + 1 => Err(H1Error::Invalid("chunk line too long")),
        None => Ok(None),
    }
}

/// The size of a chunk-size line (`1a`, `1a;ext=v`, `1a ;ext`): 1–16 hex digits.
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err(H1Error::Invalid("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(H1Error::Invalid("invalid chunk size"));
    }
    if rest.iter().any(|b| *b == b'\r' || *b == 0) {
        return Err(H1Error::Invalid("invalid chunk extension"));
    }
    let hex =
        std::str::from_utf8(&line[..digits]).map_err(|_| H1Error::Invalid("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| H1Error::Invalid("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn framing_of(
        status: StatusCode,
        pairs: &[(&str, &str)],
        head: bool,
    ) -> Result<Framing, H1Error> {
        let fields: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        framing(status, fields.iter().copied(), head)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = StatusCode::OK;
        let f = |pairs: &[(&str, &str)]| framing_of(ok, pairs, false);
        assert!(matches!(
            f(&[("content-length", "5")]),
            Ok(Framing::Length(5))
        ));
        assert!(matches!(
            f(&[("Content-Length", "5"), ("content-length", "5")]),
            Ok(Framing::Length(5))
        ));
        assert!(matches!(
            f(&[("content-length", "5, 5")]),
            Ok(Framing::Length(5))
        ));
        assert!(f(&[("content-length", "5, 6")]).is_err());
        assert!(f(&[("content-length", "5"), ("content-length", "6")]).is_err());
        assert!(f(&[("content-length", "+5")]).is_err());
        assert!(f(&[("content-length", "")]).is_err());
        assert!(f(&[("content-length", "99999999999999999999")]).is_err());
        assert!(matches!(
            f(&[("transfer-encoding", "Chunked")]),
            Ok(Framing::Chunked(_))
        ));
        assert!(f(&[("transfer-encoding", "gzip, chunked")]).is_err());
        assert!(
            f(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ])
            .is_err()
        );
        assert!(f(&[("transfer-encoding", "chunked"), ("content-length", "3")]).is_err());
        assert!(matches!(f(&[]), Ok(Framing::Close)));
        // No body whatever the headers say.
        let cl = [("content-length", "5")];
        assert!(matches!(framing_of(ok, &cl, true), Ok(Framing::Length(0))));
        assert!(matches!(
            framing_of(StatusCode::NO_CONTENT, &cl, false),
            Ok(Framing::Length(0))
        ));
        assert!(matches!(
            framing_of(StatusCode::NOT_MODIFIED, &cl, false),
            Ok(Framing::Length(0))
        ));
    }

    /// A one-shot upstream on port 0 that reads a request head and answers `response`.
    async fn answer(response: &'static [u8]) -> Authority {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.expect("read");
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&chunk[..n]);
            }
            s.write_all(response).await.expect("write");
            // Keep the connection open: the body must end by its framing, not by a close.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr.to_string().parse().expect("authority")
    }

    async fn exchange(response: &'static [u8]) -> Result<(Response<()>, Bytes, RawBody), String> {
        use http_body_util::BodyExt as _;
        let authority = answer(response).await;
        let conn = Conn::connect(&authority, Duration::from_secs(2))
            .await
            .expect("connect");
        let empty = HeaderMap::new();
        let out = Outgoing {
            method: &Method::GET,
            target: "/",
            headers: &empty,
            host: None,
        };
        let (head, mut body) = conn
            .request(&out, &authority)
            .await
            .map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(d) = frame.data_ref() {
                data.extend_from_slice(d);
            }
        }
        Ok((head, Bytes::from(data), body))
    }

    #[tokio::test]
    async fn hop_by_hop_response_headers_are_dropped_and_the_body_ends_by_its_length() {
        let (head, data, body) = exchange(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\n\
              X-Hop: 1\r\nX-Kept: 2\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await
        .expect("exchange");
        assert_eq!(head.status(), 200);
        assert_eq!(&data[..], b"hello");
        let h = head.headers();
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
        assert!(
            h.get("x-hop").is_none(),
            "a header named in Connection is dropped"
        );
        assert_eq!(h.get("x-kept").expect("kept"), "2");
        assert_eq!(h.get("content-length").expect("length"), "5");
        assert!(body.keep_alive && body.is_end_stream());
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_and_trailers_dropped() {
        let (head, data, body) = exchange(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: t\r\n\r\n",
        )
        .await
        .expect("exchange");
        assert_eq!(&data[..], b"hello!");
        assert!(head.headers().get("transfer-encoding").is_none());
        assert!(body.keep_alive);
    }

    #[tokio::test]
    async fn bad_framing_is_an_error_never_a_short_body() {
        for response in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(
                exchange(response).await.is_err(),
                "{}",
                String::from_utf8_lossy(response)
            );
        }
    }

    #[test]
    fn chunk_lines_are_strict() {
        assert_eq!(chunk_size(b"1a").ok(), Some(26));
        assert_eq!(chunk_size(b"1A;name=value").ok(), Some(26));
        assert_eq!(chunk_size(b"0 ;x").ok(), Some(0));
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"-1").is_err());
        assert!(chunk_size(b"0x1a").is_err());
        assert!(chunk_size(b"1a x").is_err());
        assert!(chunk_size(b"11111111111111111").is_err()); // 17 digits
        assert!(matches!(find_crlf(b"1a\r\nxx", 10), Ok(Some(2))));
        assert!(matches!(find_crlf(b"1a", 10), Ok(None)));
        assert!(find_crlf(b"1a\nxx", 10).is_err());
        assert!(find_crlf(b"\n", 10).is_err());
        assert!(find_crlf(b"0123456789abcdef", 10).is_err());
    }

    #[test]
    fn the_request_head_is_written_as_given() {
        let mut out = Vec::new();
        let authority: Authority = "up:8080".parse().expect("authority");
        let given = headers(&[("host", "example"), ("x-a", "1"), ("x-a", "2")]);
        let mut req = Outgoing {
            method: &Method::GET,
            target: "/a?b=1",
            headers: &given,
            host: None,
        };
        encode_head(&mut out, &req, &authority);
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf8"),
            "GET /a?b=1 HTTP/1.1\r\nhost: example\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        let target_host = HeaderValue::from_static("backend");
        req.host = Some(&target_host);
        encode_head(&mut out, &req, &authority);
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf8"),
            "GET /a?b=1 HTTP/1.1\r\nhost: backend\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        let none = HeaderMap::new();
        let post = Outgoing {
            method: &Method::POST,
            target: "",
            headers: &none,
            host: None,
        };
        encode_head(&mut out, &post, &authority);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "POST / HTTP/1.1\r\nhost: up:8080\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
