//! One request, start to finish: checks, route match, forward (with retries), response hygiene,
//! metrics and the access log line. Errors go to `crate::error` and nowhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::client::{Outgoing, UpstreamBody};
use super::headers::{
    Forwarding, check_host, check_request_headers, check_response_framing, client_ip,
    ensure_traceparent, is_trusted, request_id, set_forwarding, strip_hop_by_hop, wants_websocket,
};
use super::upstream::{PickError, Upstream, outcome_of_status};
use super::{cache, upgrade};
use crate::body::{BodyVerdict, GuardedBody, ProxyBody};
use crate::breaker::Outcome;
use crate::config::TargetAddr;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metrics::{NO_ROUTE, method_label};
use crate::pipeline::{FilterRecord, Ran, RequestOutcome};
use crate::plugin::bindings::MAX_FILTER_HEADERS;
use crate::plugin::response_cache::{CACHE_STATUS_HEADER, CacheUse};
use crate::plugin::{Reply, RequestState, ResponseState};
use crate::router::{has_encoded_slash, normalize_path};
use crate::snapshot::{Route, Snapshot};
use crate::tracing_export::SpanIds;

/// What the gateway knows about the downstream connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// Socket peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Facts gathered while serving a request, for metrics and the access log.
#[derive(Default)]
struct Trace {
    route: Option<Arc<Route>>,
    upstream: Option<Arc<Upstream>>,
    target: Option<String>,
    upstream_time: Option<Duration>,
    attempts: u32,
    filters: Vec<FilterRecord>,
    consumer: Option<String>,
    /// Span ids when spans are exported (`tracing`) and the request has a trace context.
    span: Option<SpanIds>,
    /// From the first attempt's send to the last attempt's response head.
    upstream_window: Option<(std::time::Instant, std::time::Instant)>,
}

impl Trace {
    /// Widen the upstream call's window to an attempt sent at `sent` that took `took`.
    fn attempted(&mut self, sent: Instant, took: Duration) {
        let first = self
            .upstream_window
            .map_or(sent.into_std(), |(first, _)| first);
        self.upstream_window = Some((first, sent.into_std() + took));
    }
}

/// Serve one request. Never fails: every error becomes a response here.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let start = Instant::now();
    let snap = gw.snapshot();
    let rid = request_id(req.headers(), &snap.server.request_id_header);
    let method = req.method().clone();
    let access_log = tracing::enabled!(target: "ferrox::access", tracing::Level::INFO);
    let path_for_log = access_log.then(|| req.uri().path().to_owned());
    let path_for_stats: Box<str> = req.uri().path().into();
    let request_bytes = declared_length(req.headers()).ok().flatten();
    gw.metrics.requests_in_flight.inc();
    let mut trace = Trace {
        span: gw.trace_export.get().and_then(|x| x.begin(req.headers())),
        ..Trace::default()
    };
    let result = serve(&gw, &snap, req, conn, &rid, &mut trace).await;
    gw.metrics.requests_in_flight.dec();
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let GatewayError::UpstreamConnect(src)
            | GatewayError::UpstreamProtocol(src)
            | GatewayError::Internal(src) = &e
            {
                tracing::warn!(request_id = ?rid, error = %e, cause = %src, "request failed");
            }
            e.into_response(Some(&rid))
        }
    };
    resp.headers_mut()
        .insert(snap.server.request_id_header.clone(), rid.clone());

    let elapsed = start.elapsed();
    let route = trace.route.as_ref().map_or(NO_ROUTE, |r| &*r.name);
    let status = resp.status();
    gw.metrics
        .requests
        .with_label_values(&[route, method_label(&method), status.as_str()])
        .inc();
    match &trace.route {
        Some(r) => r.duration.observe(elapsed.as_secs_f64()),
        None => gw
            .metrics
            .request_duration
            .with_label_values(&[NO_ROUTE])
            .observe(elapsed.as_secs_f64()),
    }
    tracing::info!(
        target: "ferrox::access",
        request_id = rid.to_str().unwrap_or(""),
        client = %conn.peer.ip(),
        method = %method,
        path = path_for_log.as_deref(),
        route,
        upstream = trace.upstream.as_ref().map(|u| u.name()),
        upstream_target = trace.target.as_deref(),
        status = status.as_u16(),
        attempts = trace.attempts,
        duration_us = elapsed.as_micros() as u64,
        upstream_us = trace.upstream_time.map(|d| d.as_micros() as u64),
        ferrox_error = resp.headers().get(crate::error::FERROX_ERROR).and_then(|v| v.to_str().ok()),
        filters = (access_log && !trace.filters.is_empty())
            .then(|| describe_filters(&trace.filters))
            .as_deref(),
    );
    // Span export (`tracing`, recorded requests only): a try_send into a bounded queue.
    if let Some(ids) = trace.span.filter(|ids| ids.sampled)
        && let Some(export) = gw.trace_export.get()
    {
        let started = start.into_std();
        export.record(crate::tracing_export::Finished {
            ids,
            clock: (std::time::Instant::now(), std::time::SystemTime::now()),
            started,
            ended: started + elapsed,
            method: method_label(&method),
            path: path_for_stats.clone(),
            route: trace.route.as_ref().map(|r| r.name.clone()),
            status: status.as_u16(),
            request_id: rid.to_str().unwrap_or("").to_owned(),
            consumer: trace.consumer.clone(),
            error: resp
                .headers()
                .get(crate::error::FERROX_ERROR)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            upstream: trace.upstream.as_ref().map(|u| u.name().to_owned()),
            target: trace.target.clone(),
            attempts: trace.attempts,
            upstream_window: trace.upstream_window,
            filters: trace.filters.clone(),
        });
    }
    // Request logs (PostgreSQL mode): a try_send into a bounded queue, never a wait.
    if let Some(log) = gw.request_log.get() {
        log.record(crate::reqlog::Entry {
            request_id: rid.to_str().unwrap_or("").to_owned(),
            at: {
                let now = std::time::SystemTime::now();
                now.checked_sub(elapsed).unwrap_or(now)
            },
            route: trace.route.as_ref().map(|r| r.name.clone()),
            consumer: trace.consumer.take(),
            method: method_label(&method),
            path: path_for_stats.clone(),
            status: status.as_u16(),
            duration_us: elapsed.as_micros() as u64,
            upstream_us: trace.upstream_time.map(|d| d.as_micros() as u64),
            request_bytes,
            response_bytes: declared_length(resp.headers()).ok().flatten(),
            filters: trace.filters.clone(),
        });
    }
    // The dashboard's one hook: a push into a bounded buffer, never a wait.
    gw.stats.record(crate::dashboard::Sample {
        id: rid.to_str().unwrap_or("").into(),
        method: method_label(&method),
        path: path_for_stats,
        route: trace.route.as_ref().map(|r| r.name.clone()),
        upstream: trace.upstream.as_ref().map(|u| u.name().into()),
        target: trace.target.take(),
        status: status.as_u16(),
        micros: elapsed.as_micros() as u64,
        upstream_micros: trace.upstream_time.map(|d| d.as_micros() as u64),
        attempts: trace.attempts,
        error: resp
            .headers()
            .get(crate::error::FERROX_ERROR)
            .and_then(|v| v.to_str().ok())
            .map(Into::into),
        filters: std::mem::take(&mut trace.filters),
    });
    Ok(resp)
}

async fn serve(
    gw: &Gateway,
    snap: &Snapshot,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    rid: &HeaderValue,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let settings = &snap.server.config;
    if req.method() == Method::CONNECT {
        return Err(GatewayError::MethodNotAllowed);
    }
    check_host(req.version(), req.uri(), req.headers())?;
    if request_target_len(req.uri()) as u64 > settings.max_header_bytes.0 {
        return Err(GatewayError::UriTooLong);
    }
    check_request_headers(
        req.headers(),
        settings.max_headers,
        settings.max_header_bytes.0,
    )?;
    let raw_path = req.uri().path();
    let path = normalize_path(raw_path).map_err(|_| GatewayError::BadRequest("invalid path"))?;
    let host = request_host(&req);
    let Some(m) = snap.routes.find(host, &path, req.method(), req.headers()) else {
        return Err(GatewayError::NoRoute);
    };
    let route: &Arc<Route> = m.route;
    trace.route = Some(route.clone());
    trace.upstream = Some(route.upstream.clone());
    if !route.allow_encoded_slashes && has_encoded_slash(&path) {
        return Err(GatewayError::BadRequest("encoded '/' or '\\' in path"));
    }
    if let Some(len) = declared_length(req.headers())?
        && len > route.max_body
    {
        return Err(GatewayError::PayloadTooLarge {
            limit: route.max_body,
        });
    }

    let websocket =
        route.websocket && req.version() == Version::HTTP_11 && wants_websocket(req.headers());
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let forward_path = route.path_rewrite.apply(&path, m.matched_len);

    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    // Room for what the gateway adds (forwarding headers, trace context, request id, Host):
    // one growth of the map instead of several.
    headers.reserve(8);
    let trusted = is_trusted(conn.peer.ip(), &settings.trusted_proxies);
    let client = client_ip(&headers, conn.peer.ip(), &settings.trusted_proxies);
    let original_host = headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    set_forwarding(
        &mut headers,
        &Forwarding {
            peer: conn.peer.ip(),
            trusted,
            proto: if conn.tls { "https" } else { "http" },
            host: original_host.as_ref(),
        },
        client,
    );
    ensure_traceparent(&mut headers);
    if let Some(ids) = &trace.span {
        ids.propagate(&mut headers);
    }
    headers.insert(snap.server.request_id_header.clone(), rid.clone());
    if websocket {
        upgrade::set_upgrade_headers(&mut headers);
    }

    // The consumer header is the gateway's to set (after a filter named one), never the client's.
    headers.remove(CONSUMER_HEADER);
    if route.pipeline.is_empty() {
        let path_and_query = join_query(forward_path, parts.uri.query());
        let target = Forward {
            method: parts.method,
            headers,
            path_and_query,
            websocket,
            body_idle: settings.body_idle_timeout.0,
        };
        return forward(gw, route, target, body, downstream_upgrade, trace).await;
    }

    let mut state = Some(RequestState {
        method: parts.method.clone(),
        path: forward_path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        client_ip: client,
        route: route.name.clone(),
        request_id: rid.clone(),
        consumer: None,
        context: Vec::new(),
        cache: CacheUse::Unused,
    });
    // Boxed here and below: the filter phases are large futures that a request on a route
    // without filters would otherwise carry (and copy) in its own.
    let (outcome, ran) = Box::pin(route.pipeline.on_request(
        &mut state,
        &gw.metrics,
        &mut trace.filters,
    ))
    .await;
    trace.consumer = state.as_ref().and_then(|s| s.consumer.clone());
    let (response, source) = match outcome {
        RequestOutcome::Failed => return Err(GatewayError::Filter),
        RequestOutcome::Respond(reply) => {
            if reply.status == 429 {
                gw.metrics
                    .rate_limited
                    .with_label_values(&[&*route.name])
                    .inc();
            }
            (reply_response(reply)?, Source::Gateway)
        }
        RequestOutcome::Cached(entry) => (
            cache::hit_response(&entry, parts.method == Method::HEAD),
            Source::Gateway,
        ),
        RequestOutcome::Forward => {
            let Some(RequestState {
                method,
                path,
                query,
                mut headers,
                consumer,
                context,
                cache,
                ..
            }) = state.take()
            else {
                return Err(GatewayError::Internal("filter request state lost".into()));
            };
            set_consumer_header(&mut headers, consumer.as_deref());
            // Response filters read the request as it was forwarded (copied only when one
            // will run, or the response cache needs its state).
            if route.pipeline.has_response_hooks(ran) || !matches!(cache, CacheUse::Unused) {
                state = Some(RequestState {
                    method: method.clone(),
                    path: path.clone(),
                    query: query.clone(),
                    headers: headers.clone(),
                    client_ip: client,
                    route: route.name.clone(),
                    request_id: rid.clone(),
                    consumer,
                    context,
                    cache,
                });
            }
            let target = Forward {
                method,
                headers,
                path_and_query: join_query(path, query.as_deref()),
                websocket,
                body_idle: settings.body_idle_timeout.0,
            };
            (
                forward(gw, route, target, body, downstream_upgrade, trace).await?,
                Source::Upstream,
            )
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response);
    }
    Box::pin(response_phase(
        gw,
        route,
        ran,
        state,
        (response, source),
        trace,
    ))
    .await
}

/// Where a response came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The upstream answered.
    Upstream,
    /// A filter or the response cache answered.
    Gateway,
}

/// Run the response filters of the `ran` filters on `response`.
async fn response_phase(
    gw: &Gateway,
    route: &Route,
    ran: Ran,
    mut req: Option<RequestState>,
    (response, source): (Response<ProxyBody>, Source),
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (mut parts, mut body) = response.into_parts();
    if let Some(status) = req.as_ref().and_then(|r| r.cache.status()) {
        parts
            .headers
            .insert(CACHE_STATUS_HEADER, HeaderValue::from_static(status));
    }
    let mut resp = Some(ResponseState {
        status: parts.status,
        headers: std::mem::take(&mut parts.headers),
        store: None,
    });
    let ok = route
        .pipeline
        .on_response(ran, &mut req, &mut resp, &gw.metrics, &mut trace.filters)
        .await;
    if !ok {
        return Err(GatewayError::Filter);
    }
    let Some(resp) = resp else {
        return Err(GatewayError::Internal("filter response state lost".into()));
    };
    parts.headers = resp.headers;
    // Only the upstream's answer to a request that missed is stored.
    if let Some(intent) = resp.store
        && source == Source::Upstream
        && req
            .as_ref()
            .is_some_and(|r| matches!(r.cache, CacheUse::Miss(_)))
    {
        body = cache::tee(body, parts.status, intent, gw.services.state.load_full());
    }
    Ok(Response::from_parts(parts, body))
}

/// The response a filter answered with.
pub(crate) fn reply_response(reply: Reply) -> Result<Response<ProxyBody>, GatewayError> {
    let status = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or(GatewayError::Filter)?;
    // The cap filters have on the messages they edit; beyond 32768 names the map would panic.
    if reply.headers.len() > MAX_FILTER_HEADERS {
        return Err(GatewayError::Filter);
    }
    let mut resp = Response::new(crate::body::full(reply.body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    for (name, value) in reply.headers {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(GatewayError::Filter);
        };
        headers.append(n, v);
    }
    strip_hop_by_hop(headers);
    headers.remove(header::CONTENT_LENGTH);
    Ok(resp)
}

pub(crate) fn join_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// Header naming the authenticated consumer to the upstream.
const CONSUMER_HEADER: http::HeaderName = http::HeaderName::from_static("x-consumer-name");

/// Name the consumer a filter authenticated to the upstream (a name that is no header value is
/// not sent).
pub(crate) fn set_consumer_header(headers: &mut HeaderMap, consumer: Option<&str>) {
    if let Some(c) = consumer.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(CONSUMER_HEADER, c);
    }
}

/// The URI of a request to `addr` for the path and query to forward.
pub(crate) fn upstream_uri(addr: &TargetAddr, path_and_query: &str) -> Result<Uri, GatewayError> {
    Uri::builder()
        .scheme(addr.scheme.clone())
        .authority(addr.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| GatewayError::BadRequest(bad_uri(&e)))
}

/// What to send upstream.
struct Forward {
    method: Method,
    headers: HeaderMap,
    path_and_query: String,
    websocket: bool,
    body_idle: Duration,
}

/// Send the request to a target of the route's upstream (with retries) and return its
/// response.
async fn forward(
    gw: &Gateway,
    route: &Route,
    target: Forward,
    body: Incoming,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let Forward {
        method,
        mut headers,
        path_and_query,
        websocket,
        body_idle,
    } = target;
    let verdict = BodyVerdict::default();
    let body = GuardedBody::new(body, route.max_body, body_idle, verdict.clone());
    let upstream = &route.upstream;
    let replayable = body.is_end_stream() && is_idempotent(&method);
    let mut body = Some(body.boxed());

    upstream.deposit();
    let uri = origin_form_uri(path_and_query)?;
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error = None;
    loop {
        let lease = match upstream.pick(&headers, &tried) {
            Ok(lease) => lease,
            Err(e) => {
                return Err(last_error.unwrap_or_else(|| pick_error(upstream, e)));
            }
        };
        tried.push(lease.index);
        trace.attempts += 1;
        trace.target = Some(lease.target.label.clone());
        let attempt_body = if replayable {
            crate::body::empty()
        } else {
            match body.take() {
                Some(b) => b,
                None => {
                    return Err(
                        last_error.unwrap_or(GatewayError::Internal("body already sent".into()))
                    );
                }
            }
        };
        let host = if upstream.config.preserve_host {
            None
        } else {
            lease.target.host.as_ref()
        };
        let pool = &lease.target.pool;
        let lean = upstream
            .client
            .takes_lean_path(pool, attempt_body.is_end_stream(), &headers);
        // The last possible attempt takes the headers; earlier ones keep them for a retry
        // (and a WebSocket answer still needs the client's key). The lean path only borrows.
        let last_attempt = !replayable || tried.len() > upstream.config.retries as usize;
        let call = async {
            if lean {
                let out = Outgoing {
                    method: &method,
                    target: uri.path_and_query().map_or("/", |p| p.as_str()),
                    headers: &headers,
                    host,
                };
                return upstream.client.send_lean(pool, &out).await;
            }
            let mut out_headers = if last_attempt && !websocket {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            if let Some(h) = host {
                out_headers.insert(header::HOST, h.clone());
            }
            let mut out = Request::new(attempt_body);
            *out.method_mut() = method.clone();
            // Origin form; the client adds the target's scheme and authority where needed.
            *out.uri_mut() = uri.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = out_headers;
            // Boxed: hyper's client futures are large and this path is the less common one.
            Box::pin(upstream.client.send(pool, out)).await
        };
        let sent = Instant::now();
        let result = tokio::time::timeout(upstream.config.timeouts.request.0, call).await;
        let took = sent.elapsed();
        trace.upstream_time = Some(took);
        trace.attempted(sent, took);
        upstream.duration.observe(took.as_secs_f64());
        let error = match result {
            Ok(Ok(resp)) => {
                if let Err(why) = check_response_framing(resp.headers()) {
                    count_error(gw, upstream, "protocol");
                    lease.finish(Outcome::Failure);
                    return Err(GatewayError::UpstreamProtocol(why.into()));
                }
                lease.finish(outcome_of_status(resp.status()));
                return finish_response(gw, resp, upstream, downstream_upgrade, &headers);
            }
            Ok(Err(e)) => {
                if verdict.too_large() {
                    drop(lease); // the client's fault: not counted against the target
                    return Err(GatewayError::PayloadTooLarge {
                        limit: route.max_body,
                    });
                }
                if verdict.idle() {
                    drop(lease);
                    return Err(GatewayError::RequestTimeout);
                }
                if verdict.broken() {
                    drop(lease); // bad chunked framing or a client gone: not the target's fault
                    return Err(GatewayError::BadRequest("invalid request body"));
                }
                let kind = if e.is_connect() {
                    "connect"
                } else {
                    "protocol"
                };
                count_error(gw, upstream, kind);
                lease.finish(Outcome::Failure);
                if e.is_connect() {
                    GatewayError::UpstreamConnect(e.into())
                } else {
                    GatewayError::UpstreamProtocol(e.into())
                }
            }
            Err(_elapsed) => {
                count_error(gw, upstream, "timeout");
                lease.finish(Outcome::Failure);
                // A timed-out request may have had effects upstream: never retried.
                return Err(GatewayError::UpstreamTimeout);
            }
        };
        // `tried` counts attempts so far; a retry goes to a target not tried yet.
        let may_retry = replayable
            && tried.len() <= upstream.config.retries as usize
            && upstream.withdraw_retry();
        if !may_retry {
            return Err(error);
        }
        gw.metrics
            .retries
            .with_label_values(&[upstream.name()])
            .inc();
        last_error = Some(error);
    }
}

/// `plugin/phase: decision (µs) [host calls]; …` for the access log.
fn describe_filters(records: &[FilterRecord]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(
            out,
            "{}/{}: {} ({}µs)",
            r.plugin, r.phase, r.decision, r.micros
        );
        if !r.calls.is_empty() {
            let _ = write!(out, " [{}]", r.calls.join(","));
        }
    }
    out
}

fn bad_uri(_e: &http::Error) -> &'static str {
    "request target cannot be forwarded"
}

/// The request target as sent to an upstream (`/path?query`), built without a copy.
fn origin_form_uri(path_and_query: String) -> Result<Uri, GatewayError> {
    http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(path_and_query))
        .map(Uri::from)
        .map_err(|e| GatewayError::BadRequest(bad_uri(&e.into())))
}

fn count_error(gw: &Gateway, upstream: &Upstream, kind: &str) {
    gw.metrics
        .upstream_errors
        .with_label_values(&[upstream.name(), kind])
        .inc();
}

fn pick_error(upstream: &Upstream, e: PickError) -> GatewayError {
    match e {
        PickError::CircuitOpen => GatewayError::CircuitOpen {
            upstream: upstream.name().to_owned(),
        },
        PickError::NoHealthyTarget => GatewayError::NoHealthyTarget {
            upstream: upstream.name().to_owned(),
        },
    }
}

/// Turn the upstream's response into the client's: hop-by-hop headers out, body streamed with
/// an idle timeout, WebSocket tunnel set up after a valid 101.
fn finish_response(
    gw: &Gateway,
    resp: Response<UpstreamBody>,
    upstream: &Arc<Upstream>,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    request_headers: &HeaderMap,
) -> Result<Response<ProxyBody>, GatewayError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(on_upgrade) = downstream_upgrade else {
            return Err(GatewayError::UpstreamProtocol(
                "upstream switched protocols without being asked".into(),
            ));
        };
        let (parts, body) = resp.into_parts();
        let Some(body) = body.into_inner() else {
            return Err(GatewayError::UpstreamProtocol(
                "upstream switched protocols on a connection that cannot be upgraded".into(),
            ));
        };
        let resp = Response::from_parts(parts, body);
        return upgrade::tunnel(gw, resp, on_upgrade, request_headers);
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let verdict = BodyVerdict::default();
    let body = GuardedBody::new(
        body,
        u64::MAX,
        upstream.config.timeouts.idle.0,
        verdict.clone(),
    );
    // A body that fails after the head (reset, cut short, stalled) is counted like a failed
    // attempt; the client sees its body end with an error, never a clean end.
    let (errors, upstream) = (gw.metrics.upstream_errors.clone(), Arc::clone(upstream));
    let body = body.map_err(move |e| {
        let kind = if verdict.idle() {
            "timeout"
        } else {
            "protocol"
        };
        errors.with_label_values(&[upstream.name(), kind]).inc();
        e
    });
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The host the client asked for, without port.
fn request_host(req: &Request<Incoming>) -> &str {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let without_port = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h.trim_start_matches('['))
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    // The route table compares hosts case-insensitively: no lower-cased copy needed.
    without_port
}

/// Length of the request target as sent (origin or absolute form).
fn request_target_len(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// The declared `Content-Length`, if any (hyper has already refused conflicting values).
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, GatewayError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(GatewayError::BadRequest("invalid Content-Length")),
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
