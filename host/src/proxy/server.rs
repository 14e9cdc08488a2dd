//! The downstream server: accept loop, optional TLS (ALPN h2 + http/1.1), HTTP/1.1 and HTTP/2
//! (h2c prior knowledge on plain listeners), connection limits, graceful drain.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::conn_io::{ConnState, DoneBody, HeaderTimeoutIo};
use super::handler::{ConnInfo, handle};
use crate::config::ServerConfig;
use crate::gateway::Gateway;

/// At shutdown, how long HTTP/1.1 connections may go on before the graceful close (at most half
/// the drain timeout). Meanwhile each response carries `Connection: close`, so a client that
/// keeps sending learns to reconnect from a complete response instead of racing a close of an
/// idle connection (a request sent as the server closes fails on the client's side).
const DRAIN_CLOSE_GRACE: Duration = Duration::from_secs(1);

fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    if !cfg.h2c {
        b = b.http1_only();
    }
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        // Our own checks (JSON 431) run below hyper's hard limits.
        .max_headers(cfg.max_headers.saturating_mul(2).max(cfg.max_headers + 16))
        .max_buf_size(
            (cfg.max_header_bytes.0 as usize)
                .saturating_mul(2)
                .max(16 * 1024),
        );
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes.0).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// How accepting ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAccepting {
    /// This process alone holds the listening socket. It is closed; a client whose connection
    /// the kernel completed before that is served, one that connects meanwhile is refused (its
    /// SYN is dropped, so its retry finds the socket closed), and none is reset.
    Close,
    /// A successor process accepts from the same socket: leave the socket as it is.
    HandOver,
}

/// Accept connections until `shutdown` resolves, then drain in-flight requests for at most the
/// configured drain timeout.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = StopAccepting>,
) {
    let cfg = gw.snapshot().server.config.clone();
    let builder = Arc::new(builder(&cfg));
    let graceful = GracefulShutdown::new();
    // Connection tasks, aborted (closing their sockets) if the drain timeout is reached. Kept
    // here rather than as a per-connection signal, which every wake-up of every connection
    // would poll.
    let mut conns = tokio::task::JoinSet::new();
    // Set when accepting stops: HTTP/1.1 responses then carry `Connection: close`.
    let draining = Arc::new(AtomicBool::new(false));
    // Every accepted connection becomes a task in `conns`.
    let mut spawn = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        // Forget connections that ended.
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let draining = draining.clone();
        let header_timeout = cfg.header_read_timeout.0;
        let keepalive = cfg.keepalive_timeout.0;
        conns.spawn(async move {
            gw.metrics.connections_active.inc();
            // Counted down however the task ends (also when aborted at the drain timeout).
            let _active = ActiveGuard(gw.clone());
            let state = ConnState::new();
            let conn = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            match tls {
                None => {
                    let io = HeaderTimeoutIo::new(stream, state.clone(), header_timeout, keepalive);
                    serve_conn(
                        &builder,
                        watcher,
                        TokioIo::new(io),
                        gw.clone(),
                        conn,
                        state,
                        draining,
                    )
                    .await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                state.disable();
                            }
                            let io = HeaderTimeoutIo::new(
                                tls_stream,
                                state.clone(),
                                header_timeout,
                                keepalive,
                            );
                            serve_conn(
                                &builder,
                                watcher,
                                TokioIo::new(io),
                                gw.clone(),
                                conn,
                                state,
                                draining,
                            )
                            .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    };
    tokio::pin!(shutdown);
    let stop = loop {
        let (stream, peer) = tokio::select! {
            stop = &mut shutdown => break stop,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        spawn(stream, peer);
    };
    // Connections the kernel completed before the signal wait in the listen queue; closing the
    // listener would reset them although their clients see them as established. New
    // handshakes are stopped first (unless a successor shares the socket), then the queue is
    // taken with plain non-blocking accepts (the reactor's cached readiness may not know of
    // every entry yet), then the socket closes.
    let mut taken = 0usize;
    if let Ok(std_listener) = listener.into_std() {
        if stop == StopAccepting::Close {
            refuse_new_handshakes(&std_listener);
        }
        while let Ok((stream, peer)) = std_listener.accept() {
            match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(stream) => {
                    taken += 1;
                    spawn(stream, peer);
                }
                Err(e) => tracing::debug!(%peer, error = %e, "queued connection dropped"),
            }
        }
    }
    let drain = cfg.drain_timeout.0;
    tracing::info!(
        connections = graceful.count(),
        taken_from_queue = taken,
        ?drain,
        "draining connections"
    );
    draining.store(true, Ordering::Release);
    let grace = DRAIN_CLOSE_GRACE.min(drain / 2);
    let started = tokio::time::Instant::now();
    while graceful.count() > 0 && started.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain.saturating_sub(started.elapsed());
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Drop every packet that reaches the listening socket from now on: a client that sends a SYN
/// retries it a second later and then finds the socket closed (refused), and no handshake can
/// complete into the queue between its last accept and the close (which would reset it).
#[cfg(target_os = "linux")]
fn refuse_new_handshakes(listener: &std::net::TcpListener) {
    // Classic BPF, one instruction: `ret #0` (BPF_RET | BPF_K), keep no byte of any packet.
    const DROP_ALL: [socket2::SockFilter; 1] = [socket2::SockFilter::new(0x06, 0, 0, 0)];
    if let Err(e) = socket2::SockRef::from(listener).attach_filter(&DROP_ALL) {
        tracing::debug!(error = %e, "cannot stop new handshakes before closing the listener");
    }
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_handshakes(_listener: &std::net::TcpListener) {}

/// Counts a connection as active until dropped.
struct ActiveGuard(Arc<Gateway>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_active.dec();
    }
}

async fn serve_conn<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: TokioIo<I>,
    gw: Arc<Gateway>,
    conn: ConnInfo,
    state: Arc<ConnState>,
    // Set when accepting stops: HTTP/1.1 responses then carry `Connection: close`.
    draining: Arc<AtomicBool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let gw = gw.clone();
        let state = svc_state.clone();
        let draining = draining.clone();
        let h1 = req.version() < http::Version::HTTP_2;
        if !h1 {
            state.disable();
        }
        state.request_started();
        async move {
            let mut resp = handle(gw, req, conn).await?;
            if h1
                && draining.load(Ordering::Acquire)
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(resp.map(|b| DoneBody::new(b, state)))
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
}
