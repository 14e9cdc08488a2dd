//! Entry points for the fuzz targets in `fuzz/` and the property tests that run the same checks
//! in `cargo test`: the host's side of the WIT boundary driven without a guest. Not an API.
//!
//! [`filter_output`] takes what a filter may hand the gateway (calls on the request and the
//! response it is lent, or a `respond` reply), applies it through the same host functions a
//! guest's calls reach, turns the result into the messages the gateway would send (the upstream
//! request, the client response) and checks them; a violation comes back as `Err(text)`.

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use wasmtime::component::Resource;

use crate::config::parse_target;
use crate::plugin::bindings::ferrox::filter::types::{HostRequest, HostResponse};
use crate::plugin::bindings::{MAX_FILTER_HEADERS, RequestState, ResponseState};
use crate::plugin::host::{HostState, Services};
use crate::plugin::response_cache::CacheUse;
use crate::proxy::handler::{join_query, reply_response, set_consumer_header, upstream_uri};

/// A call a filter makes on the request it is lent.
#[derive(Clone, Debug)]
pub enum RequestCall {
    /// `set-path`.
    SetPath(String),
    /// `set-query`.
    SetQuery(Option<String>),
    /// `set-header`.
    SetHeader(String, String),
    /// `append-header`.
    AppendHeader(String, String),
    /// `remove-header`.
    RemoveHeader(String),
    /// `set-consumer`.
    SetConsumer(String),
    /// `set-context`.
    SetContext(String, String),
}

/// A call a filter makes on the response it is lent.
#[derive(Clone, Debug)]
pub enum ResponseCall {
    /// `set-header`.
    SetHeader(String, String),
    /// `append-header`.
    AppendHeader(String, String),
    /// `remove-header`.
    RemoveHeader(String),
}

/// A filter's reply: status, headers, body.
pub type FilterReply = (u16, Vec<(String, String)>, Vec<u8>);

/// Everything a filter hands the gateway during one request.
#[derive(Clone, Debug, Default)]
pub struct FilterOutput {
    /// Calls made by `on-request`.
    pub request: Vec<RequestCall>,
    /// `respond(reply)` from `on-request`: status, headers, body.
    pub reply: Option<FilterReply>,
    /// Calls made by `on-response`.
    pub response: Vec<ResponseCall>,
}

// Headers a filter may never set or remove: the gateway's own list.
use crate::plugin::bindings::MANAGED_HEADERS as MANAGED;

/// Hop-by-hop or framing headers a response the gateway answers with must not carry: the managed
/// ones except `host`.
fn not_in_reply() -> impl Iterator<Item = &'static str> {
    MANAGED.into_iter().filter(|h| *h != "host")
}

fn services() -> Arc<Services> {
    static SERVICES: OnceLock<Arc<Services>> = OnceLock::new();
    SERVICES
        .get_or_init(|| Services::new(crate::metrics::Metrics::new()))
        .clone()
}

/// The request as the handler lends it to the first filter.
fn initial_request() -> RequestState {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert("x-request-id", HeaderValue::from_static("rid-1"));
    RequestState {
        method: Method::GET,
        path: "/users/1".into(),
        query: Some("a=1".into()),
        headers,
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        route: "route".into(),
        request_id: HeaderValue::from_static("rid-1"),
        consumer: None,
        context: Vec::new(),
        cache: CacheUse::Unused,
    }
}

/// The upstream's response as the handler lends it to `on-response`.
fn initial_response() -> ResponseState {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    ResponseState {
        status: StatusCode::OK,
        headers,
        store: None,
    }
}

fn managed(name: &HeaderName) -> bool {
    MANAGED.contains(&name.as_str())
}

/// Names in `after` that are managed and were not in `before` with the same values.
fn check_managed_untouched(
    before: &HeaderMap,
    after: &HeaderMap,
    what: &str,
) -> Result<(), String> {
    for name in MANAGED {
        let b: Vec<_> = before.get_all(name).iter().collect();
        let a: Vec<_> = after.get_all(name).iter().collect();
        if a != b {
            return Err(format!(
                "{what}: managed header {name} changed: {b:?} -> {a:?}"
            ));
        }
    }
    Ok(())
}

/// New header names past the cap are refused; present names may take more values.
fn check_cap(before: &HeaderMap, after: &HeaderMap, what: &str) -> Result<(), String> {
    if after.keys_len() > before.keys_len().max(MAX_FILTER_HEADERS) {
        return Err(format!(
            "{what}: {} header names after filters (cap {MAX_FILTER_HEADERS})",
            after.keys_len()
        ));
    }
    Ok(())
}

/// Apply `output` as the gateway does and check the messages it would send.
pub fn filter_output(output: &FilterOutput) -> Result<(), String> {
    // One store state per thread, as a warm instance keeps its own (building the WASI context
    // for every input would cost more than the checks).
    thread_local! {
        static HOST: std::cell::RefCell<Option<HostState>> = const { std::cell::RefCell::new(None) };
    }
    HOST.with(|cell| {
        let mut slot = cell.borrow_mut();
        let host = slot.get_or_insert_with(|| {
            HostState::new(services(), "fuzz".into(), "route".into(), 1 << 20)
        });
        apply(host, output)
    })
}

fn apply(host: &mut HostState, output: &FilterOutput) -> Result<(), String> {
    let before = initial_request();
    let before_headers = before.headers.clone();
    let handle = host
        .table
        .push(before)
        .map_err(|e| format!("resource table: {e}"))?;
    let borrow = || Resource::<RequestState>::new_borrow(handle.rep());
    for call in &output.request {
        let r = match call.clone() {
            RequestCall::SetPath(p) => HostRequest::set_path(host, borrow(), p),
            RequestCall::SetQuery(q) => HostRequest::set_query(host, borrow(), q),
            RequestCall::SetHeader(n, v) => HostRequest::set_header(host, borrow(), n, v),
            RequestCall::AppendHeader(n, v) => HostRequest::append_header(host, borrow(), n, v),
            RequestCall::RemoveHeader(n) => HostRequest::remove_header(host, borrow(), n).map(Ok),
            RequestCall::SetConsumer(c) => HostRequest::set_consumer(host, borrow(), c).map(Ok),
            RequestCall::SetContext(k, v) => {
                HostRequest::set_context(host, borrow(), k.clone(), v.clone())
                    .map_err(|e| format!("set-context trapped: {e}"))?;
                // What a filter stored it reads back; a value over 4096 bytes is not kept (nor
                // is a 65th key).
                let back =
                    HostRequest::context(host, borrow(), k).map_err(|e| format!("context: {e}"))?;
                let kept = back.as_ref().is_some_and(|b| *b == v);
                if v.len() > 4096 && kept {
                    return Err("a context value over 4096 bytes was kept".into());
                }
                if v.len() <= 4096 && back.is_some() && !kept {
                    return Err("context read back another value".into());
                }
                Ok(Ok(()))
            }
        };
        // A refusal is an answer to the filter; a trap here would fail the call.
        let _refused = r.map_err(|e| format!("{call:?} trapped: {e}"))?;
    }
    let req = host
        .table
        .delete(handle)
        .map_err(|e| format!("request lost: {e}"))?;

    if req.context.len() > 64 || req.context.iter().any(|(_, v)| v.len() > 4096) {
        return Err(format!(
            "context over its caps: {} entries",
            req.context.len()
        ));
    }
    check_managed_untouched(&before_headers, &req.headers, "request")?;
    check_cap(&before_headers, &req.headers, "request")?;

    if let Some((status, headers, body)) = &output.reply {
        let reply = crate::plugin::Reply {
            status: *status,
            headers: headers.clone(),
            body: body.clone(),
        };
        return match reply_response(reply) {
            Ok(resp) => {
                let s = resp.status();
                if s.is_informational() || s.as_u16() != *status {
                    return Err(format!("reply {status} answered as {s}"));
                }
                for name in not_in_reply() {
                    if resp.headers().contains_key(name) {
                        return Err(format!("reply carries {name}"));
                    }
                }
                if headers.len() > MAX_FILTER_HEADERS {
                    return Err(format!("reply with {} headers accepted", headers.len()));
                }
                Ok(())
            }
            // Refused: the filter failed and its policy applies.
            Err(_) => {
                let valid = (100..=599).contains(status)
                    && !(100..200).contains(status)
                    && headers.len() <= MAX_FILTER_HEADERS
                    && headers.iter().all(|(n, v)| {
                        HeaderName::from_bytes(n.as_bytes()).is_ok()
                            && HeaderValue::from_str(v).is_ok()
                    });
                if valid {
                    Err(format!("valid reply {status} refused"))
                } else {
                    Ok(())
                }
            }
        };
    }

    // Forwarded: what the handler builds from the request the filters left.
    let RequestState {
        method,
        path,
        query,
        mut headers,
        consumer,
        context,
        ..
    } = req;
    set_consumer_header(&mut headers, consumer.as_deref());
    let target = parse_target("127.0.0.1:8080").map_err(|e| format!("target: {e}"))?;
    let path_and_query = join_query(path.clone(), query.as_deref());
    let uri = upstream_uri(&target, &path_and_query)
        .map_err(|e| format!("accepted path {path:?} / query {query:?} cannot be sent: {e}"))?;
    if uri.path() != path || uri.query() != query.as_deref() {
        return Err(format!("sent {uri} for path {path:?} query {query:?}"));
    }
    let mut upstream = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(())
        .map_err(|e| format!("upstream request: {e}"))?;
    *upstream.headers_mut() = headers.clone();

    // The response filters see the request as forwarded and the upstream's response.
    let forwarded = RequestState {
        method,
        path,
        query,
        headers,
        consumer,
        context,
        ..initial_request()
    };
    let resp_before = initial_response();
    let resp_before_headers = resp_before.headers.clone();
    let (Ok(hq), Ok(hs)) = (host.table.push(forwarded), host.table.push(resp_before)) else {
        return Err("resource table full".into());
    };
    let rs = || Resource::<ResponseState>::new_borrow(hs.rep());
    for call in &output.response {
        let r = match call.clone() {
            ResponseCall::SetHeader(n, v) => HostResponse::set_header(host, rs(), n, v),
            ResponseCall::AppendHeader(n, v) => HostResponse::append_header(host, rs(), n, v),
            ResponseCall::RemoveHeader(n) => HostResponse::remove_header(host, rs(), n).map(Ok),
        };
        let _refused = r.map_err(|e| format!("{call:?} trapped: {e}"))?;
    }
    let _ = host.table.delete(hq);
    let resp = host
        .table
        .delete(hs)
        .map_err(|e| format!("response lost: {e}"))?;
    check_managed_untouched(&resp_before_headers, &resp.headers, "response")?;
    check_cap(&resp_before_headers, &resp.headers, "response")?;
    let mut response = http::Response::new(());
    *response.status_mut() = resp.status;
    *response.headers_mut() = resp.headers;
    for (name, value) in upstream.headers().iter().chain(response.headers()) {
        if managed(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            return Err(format!("message carries {name}: {value:?}"));
        }
        if value
            .as_bytes()
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(format!("header {name} value {value:?} breaks the framing"));
        }
    }
    Ok(())
}

/// The path normaliser's properties: never panics; a normalised path starts with `/`, holds no
/// empty, `.` or `..` segment (except a trailing slash), and normalising it again changes nothing.
pub fn normalize_path(input: &str) -> Result<(), String> {
    let Ok(out) = crate::router::normalize_path(input) else {
        return Ok(());
    };
    if !out.starts_with('/') {
        return Err(format!("{input:?} -> {out:?} is not absolute"));
    }
    if out.contains("//") {
        return Err(format!("{input:?} -> {out:?} holds //"));
    }
    let inner = out.trim_end_matches('/');
    for seg in inner.split('/').skip(1) {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err(format!("{input:?} -> {out:?} keeps a dot segment"));
        }
    }
    match crate::router::normalize_path(&out) {
        Ok(again) if again == out => Ok(()),
        other => Err(format!("{input:?} -> {out:?} -> {other:?}: not idempotent")),
    }
}

/// `ferrox validate`'s document checks (parse, overrides, validate) on arbitrary text: issues,
/// never a panic; a document that passed serialises and passes again.
pub fn config(text: &str) -> Result<(), String> {
    match crate::config::load_str(text, &crate::config::Overrides::default()) {
        Ok(cfg) => {
            let again = serde_yaml::to_string(&cfg).map_err(|e| format!("serialise: {e}"))?;
            let back = crate::config::load_str(&again, &crate::config::Overrides::default())
                .map_err(|e| format!("a valid document failed after a round trip: {e}\n{again}"))?;
            if back != cfg {
                return Err(format!("a round trip changed the document:\n{again}"));
            }
            Ok(())
        }
        Err(e) => {
            if e.issues().is_empty() {
                return Err("refused without an issue".into());
            }
            Ok(())
        }
    }
}
