//! Host side of the WIT contract: generated bindings, the request/response resources and the
//! host services. Every guest→host call lands here.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use wasmtime::component::{Resource, ResourceTable};

use super::host::HostState;

wasmtime::component::bindgen!({
    world: "filter",
    path: "../wit",
    imports: {
        "ferrox:filter/counters": async | trappable,
        "ferrox:filter/cache": async | trappable,
        "ferrox:filter/crypto": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "ferrox:filter/types.request": RequestState,
        "ferrox:filter/types.response": ResponseState,
    },
});

pub use ferrox::filter::types::Reply;

/// The request as filters see it; moved into the store's resource table for a call and back
/// out afterwards.
#[derive(Debug)]
pub struct RequestState {
    /// Method.
    pub method: Method,
    /// Path to forward.
    pub path: String,
    /// Query to forward.
    pub query: Option<String>,
    /// Headers to forward.
    pub headers: HeaderMap,
    /// Client address.
    pub client_ip: IpAddr,
    /// Route name.
    pub route: Arc<str>,
    /// Request id.
    pub request_id: HeaderValue,
    /// Authenticated consumer.
    pub consumer: Option<String>,
    /// Values filters keep between their hooks on this request, keyed by plugin and key.
    pub context: Vec<(String, String)>,
    /// What the response cache does with this request (see `response-cache` in the WIT).
    pub cache: super::response_cache::CacheUse,
}

/// The response as filters see it.
#[derive(Debug)]
pub struct ResponseState {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Set when a filter asked the gateway to keep this response in the response cache.
    pub store: Option<super::response_cache::StoreIntent>,
}

/// Headers a filter may not set: framing and hop-by-hop are the gateway's business. The SDK
/// publishes the same list (`ferrox_sdk::MANAGED_HEADERS`) for its test harness and filters.
pub(crate) const MANAGED_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "host",
];

fn settable(name: &HeaderName) -> Result<(), String> {
    if MANAGED_HEADERS.contains(&name.as_str()) {
        Err(format!("header {name} is managed by the gateway"))
    } else {
        Ok(())
    }
}

/// Most header fields a message may carry after filters added theirs: a filter cannot blow up
/// memory, nor push a request past what upstreams commonly accept (100 fields).
pub(crate) const MAX_FILTER_HEADERS: usize = 100;

fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    settable(&n)?;
    let v = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    Ok((n, v))
}

/// Whether a request target can be sent upstream as it is (`http` refuses some bytes, such as
/// `<` or non-ASCII, that the checks above let through): what a filter sets must be
/// forwardable, or the request would fail as the client's fault.
fn forwardable(path_and_query: &str) -> bool {
    http::uri::PathAndQuery::try_from(path_and_query).is_ok()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Remove every value of a header a filter may edit (others are silently left alone).
fn remove(headers: &mut HeaderMap, name: &str) {
    if let Ok(n) = HeaderName::from_bytes(name.as_bytes())
        && settable(&n).is_ok()
    {
        headers.remove(n);
    }
}

fn header_texts(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn set(headers: &mut HeaderMap, name: &str, value: &str, append: bool) -> Result<(), String> {
    let (n, v) = parse_header(name, value)?;
    if headers.len() >= MAX_FILTER_HEADERS && !headers.contains_key(&n) {
        return Err(format!("more than {MAX_FILTER_HEADERS} headers"));
    }
    if append {
        headers.append(n, v);
    } else {
        headers.insert(n, v);
    }
    Ok(())
}

fn get<'a, T: 'static>(table: &'a ResourceTable, r: &Resource<T>) -> wasmtime::Result<&'a T> {
    Ok(table.get(r)?)
}

fn get_mut<'a, T: 'static>(
    table: &'a mut ResourceTable,
    r: &Resource<T>,
) -> wasmtime::Result<&'a mut T> {
    Ok(table.get_mut(r)?)
}

impl ferrox::filter::types::Host for HostState {}

impl ferrox::filter::types::HostRequest for HostState {
    fn method(&mut self, r: Resource<RequestState>) -> wasmtime::Result<String> {
        self.note("request.method");
        Ok(get(&self.table, &r)?.method.as_str().to_owned())
    }
    fn path(&mut self, r: Resource<RequestState>) -> wasmtime::Result<String> {
        self.note("request.path");
        Ok(get(&self.table, &r)?.path.clone())
    }
    fn set_path(
        &mut self,
        r: Resource<RequestState>,
        path: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("request.set-path");
        if !path.starts_with('/')
            || path
                .bytes()
                .any(|b| b <= 0x20 || b == 0x7f || b == b'?' || b == b'#')
            || !forwardable(&path)
        {
            return Ok(Err(format!(
                "{path:?} is not an absolute path without query"
            )));
        }
        get_mut(&mut self.table, &r)?.path = path;
        Ok(Ok(()))
    }
    fn query(&mut self, r: Resource<RequestState>) -> wasmtime::Result<Option<String>> {
        self.note("request.query");
        Ok(get(&self.table, &r)?.query.clone())
    }
    fn set_query(
        &mut self,
        r: Resource<RequestState>,
        query: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("request.set-query");
        if query.as_deref().is_some_and(|q| {
            q.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'#')
                || !forwardable(&format!("/?{q}"))
        }) {
            return Ok(Err("query contains invalid characters".into()));
        }
        get_mut(&mut self.table, &r)?.query = query;
        Ok(Ok(()))
    }
    fn header(
        &mut self,
        r: Resource<RequestState>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        self.note("request.header");
        Ok(header_text(&get(&self.table, &r)?.headers, &name))
    }
    fn header_all(
        &mut self,
        r: Resource<RequestState>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        self.note("request.header-all");
        Ok(header_texts(&get(&self.table, &r)?.headers, &name))
    }
    fn set_header(
        &mut self,
        r: Resource<RequestState>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("request.set-header");
        Ok(set(
            &mut get_mut(&mut self.table, &r)?.headers,
            &name,
            &value,
            false,
        ))
    }
    fn append_header(
        &mut self,
        r: Resource<RequestState>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("request.append-header");
        Ok(set(
            &mut get_mut(&mut self.table, &r)?.headers,
            &name,
            &value,
            true,
        ))
    }
    fn remove_header(&mut self, r: Resource<RequestState>, name: String) -> wasmtime::Result<()> {
        self.note("request.remove-header");
        remove(&mut get_mut(&mut self.table, &r)?.headers, &name);
        Ok(())
    }
    fn client_ip(&mut self, r: Resource<RequestState>) -> wasmtime::Result<String> {
        self.note("request.client-ip");
        Ok(get(&self.table, &r)?.client_ip.to_string())
    }
    fn route(&mut self, r: Resource<RequestState>) -> wasmtime::Result<String> {
        self.note("request.route");
        Ok(get(&self.table, &r)?.route.to_string())
    }
    fn request_id(&mut self, r: Resource<RequestState>) -> wasmtime::Result<String> {
        self.note("request.request-id");
        Ok(String::from_utf8_lossy(get(&self.table, &r)?.request_id.as_bytes()).into_owned())
    }
    fn consumer(&mut self, r: Resource<RequestState>) -> wasmtime::Result<Option<String>> {
        self.note("request.consumer");
        Ok(get(&self.table, &r)?.consumer.clone())
    }
    fn set_consumer(&mut self, r: Resource<RequestState>, name: String) -> wasmtime::Result<()> {
        self.note("request.set-consumer");
        get_mut(&mut self.table, &r)?.consumer = Some(name);
        Ok(())
    }
    fn context(
        &mut self,
        r: Resource<RequestState>,
        key: String,
    ) -> wasmtime::Result<Option<String>> {
        self.note("request.context");
        let key = self.namespaced(&key);
        Ok(get(&self.table, &r)?
            .context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone()))
    }
    fn set_context(
        &mut self,
        r: Resource<RequestState>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.note("request.set-context");
        let key = self.namespaced(&key);
        let context = &mut get_mut(&mut self.table, &r)?.context;
        if value.len() > 4096 {
            return Ok(());
        }
        if let Some(entry) = context.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = value;
        } else if context.len() < 64 {
            context.push((key, value));
        }
        Ok(())
    }
    fn drop(&mut self, _r: Resource<RequestState>) -> wasmtime::Result<()> {
        // The host owns the request and takes it back after the call.
        Ok(())
    }
}

impl ferrox::filter::types::HostResponse for HostState {
    fn status(&mut self, r: Resource<ResponseState>) -> wasmtime::Result<u16> {
        self.note("response.status");
        Ok(get(&self.table, &r)?.status.as_u16())
    }
    fn header(
        &mut self,
        r: Resource<ResponseState>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        self.note("response.header");
        Ok(header_text(&get(&self.table, &r)?.headers, &name))
    }
    fn header_all(
        &mut self,
        r: Resource<ResponseState>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        self.note("response.header-all");
        Ok(header_texts(&get(&self.table, &r)?.headers, &name))
    }
    fn set_header(
        &mut self,
        r: Resource<ResponseState>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("response.set-header");
        Ok(set(
            &mut get_mut(&mut self.table, &r)?.headers,
            &name,
            &value,
            false,
        ))
    }
    fn append_header(
        &mut self,
        r: Resource<ResponseState>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("response.append-header");
        Ok(set(
            &mut get_mut(&mut self.table, &r)?.headers,
            &name,
            &value,
            true,
        ))
    }
    fn remove_header(&mut self, r: Resource<ResponseState>, name: String) -> wasmtime::Result<()> {
        self.note("response.remove-header");
        remove(&mut get_mut(&mut self.table, &r)?.headers, &name);
        Ok(())
    }
    fn drop(&mut self, _r: Resource<ResponseState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl ferrox::filter::log::Host for HostState {
    fn log(&mut self, level: ferrox::filter::log::Level, message: String) -> wasmtime::Result<()> {
        use ferrox::filter::log::Level;
        self.note("log");
        let message: String = message.chars().take(4096).collect();
        let (plugin, route) = (&*self.plugin, &*self.route);
        match level {
            Level::Trace => tracing::trace!(target: "ferrox::filter", plugin, route, "{message}"),
            Level::Debug => tracing::debug!(target: "ferrox::filter", plugin, route, "{message}"),
            Level::Info => tracing::info!(target: "ferrox::filter", plugin, route, "{message}"),
            Level::Warn => tracing::warn!(target: "ferrox::filter", plugin, route, "{message}"),
            Level::Error => tracing::error!(target: "ferrox::filter", plugin, route, "{message}"),
        }
        Ok(())
    }
}

impl ferrox::filter::clock::Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.note("clock");
        Ok(crate::state::now_ms())
    }
}

impl ferrox::filter::counters::Host for HostState {
    async fn incr(
        &mut self,
        key: String,
        delta: i64,
        window_ms: u64,
    ) -> wasmtime::Result<Result<ferrox::filter::counters::Counter, String>> {
        self.note("counters");
        let key = self.namespaced(&key);
        let store = self.services.state.load_full();
        let deadline = self.store_deadline;
        Ok(self
            .io(store.incr(&key, delta, window_ms, deadline))
            .await
            .map(|v| ferrox::filter::counters::Counter {
                count: v.count,
                reset_ms: v.reset_ms,
            }))
    }

    async fn incr_sliding(
        &mut self,
        key: String,
        delta: i64,
        window_ms: u64,
    ) -> wasmtime::Result<Result<ferrox::filter::counters::Sliding, String>> {
        self.note("counters");
        let key = self.namespaced(&key);
        let store = self.services.state.load_full();
        let deadline = self.store_deadline;
        Ok(self
            .io(store.incr_sliding(&key, delta, window_ms, deadline))
            .await
            .map(|v| ferrox::filter::counters::Sliding {
                current: v.current,
                previous: v.previous,
                elapsed_ms: v.elapsed_ms,
                reset_ms: v.reset_ms,
            }))
    }
}

impl ferrox::filter::cache::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        self.note("cache");
        let key = self.namespaced(&key);
        let store = self.services.state.load_full();
        let deadline = self.store_deadline;
        Ok(self.io(store.get(&key, deadline)).await)
    }
    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("cache");
        if value.len() > 8 * 1024 * 1024 {
            return Ok(Err("cache values are limited to 8 MiB".into()));
        }
        let key = self.namespaced(&key);
        let store = self.services.state.load_full();
        let deadline = self.store_deadline;
        Ok(self.io(store.set(&key, value, ttl_ms, deadline)).await)
    }
}

impl ferrox::filter::credentials::Host for HostState {
    fn consumer_for_key(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.note("credentials");
        Ok(self.services.credentials.load().consumer_for_key(&key))
    }
    fn jwt_credential_for(
        &mut self,
        issuer: Option<String>,
        key_id: Option<String>,
    ) -> wasmtime::Result<Option<ferrox::filter::credentials::JwtCredential>> {
        self.note("credentials");
        Ok(super::crypto::jwt_credential_for(
            &self.services,
            issuer.as_deref(),
            key_id.as_deref(),
        ))
    }
}

impl ferrox::filter::metrics::Host for HostState {
    fn counter_add(&mut self, name: String, value: u64) -> wasmtime::Result<()> {
        self.note("metrics");
        self.services
            .metrics
            .plugin_counter(&self.plugin, &name, value);
        Ok(())
    }
    fn histogram_observe(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.note("metrics");
        self.services
            .metrics
            .plugin_histogram(&self.plugin, &name, value);
        Ok(())
    }
}
