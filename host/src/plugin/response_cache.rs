//! Host side of the `response-cache` interface: a filter names the cache key of a request and
//! marks responses storable; the gateway keeps the bytes (`crate::state::CachedResponse`),
//! looks entries up between filters (`crate::pipeline`) and tees bodies into the store
//! (`crate::proxy::cache`). Bodies never cross into the filter.

use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::bindings::ferrox::filter::response_cache::Host;
use super::bindings::{RequestState, ResponseState};
use super::host::HostState;

/// Largest body the gateway keeps in its response cache, whatever a filter asks.
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// Header telling the client how the cache handled its request.
pub const CACHE_STATUS_HEADER: http::HeaderName = http::HeaderName::from_static("x-cache-status");

/// What the response cache does with one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheUse {
    /// No filter used the cache: no `X-Cache-Status`.
    #[default]
    Unused,
    /// A filter asked for a lookup under this storage key; the gateway looks it up when the
    /// filter's `on-request` returns.
    Lookup(String),
    /// Answered from the cache.
    Hit,
    /// Looked up and not found under this storage key: forwarded, and storable.
    Miss(String),
    /// A filter said this request does not use the cache.
    Bypass,
    /// The state store failed: forwarded uncached.
    Unavailable,
}

impl CacheUse {
    /// The `X-Cache-Status` value, once the lookup is settled.
    pub fn status(&self) -> Option<&'static str> {
        match self {
            CacheUse::Unused | CacheUse::Lookup(_) => None,
            CacheUse::Hit => Some("HIT"),
            CacheUse::Miss(_) => Some("MISS"),
            CacheUse::Bypass | CacheUse::Unavailable => Some("BYPASS"),
        }
    }
}

/// A filter's request to keep a response: the storage key, for how long, the largest body
/// accepted and the headers as they were when the filter asked.
#[derive(Clone, Debug)]
pub struct StoreIntent {
    /// Namespaced, hashed key.
    pub key: String,
    /// Time to live.
    pub ttl_ms: u64,
    /// Bodies longer than this are not kept.
    pub max_body: u64,
    /// Headers to store.
    pub headers: HeaderMap,
}

impl HostState {
    /// The storage key of a filter's cache key for `method`: namespaced by plugin and route,
    /// hashed (so any length and any bytes work, and keys cannot be made to collide). The
    /// method is always part of it: a HEAD answer (no body) is never served to a GET.
    fn response_key(&self, method: &Method, key: &str) -> String {
        let mut digest = Sha256::new();
        digest.update(method.as_str().as_bytes());
        digest.update(b"\n");
        digest.update(key.as_bytes());
        self.namespaced(&hex::encode(digest.finalize()))
    }
}

impl Host for HostState {
    fn lookup(
        &mut self,
        req: Resource<RequestState>,
        key: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("response-cache");
        let method = self.table.get(&req)?.method.clone();
        let storage_key = self.response_key(&method, &key);
        let r = self.table.get_mut(&req)?;
        if r.method != Method::GET && r.method != Method::HEAD {
            return Ok(Err(format!(
                "only GET and HEAD requests are looked up in the response cache (this is {})",
                r.method
            )));
        }
        match r.cache {
            CacheUse::Unused | CacheUse::Lookup(_) | CacheUse::Bypass => {
                r.cache = CacheUse::Lookup(storage_key);
                Ok(Ok(()))
            }
            CacheUse::Hit | CacheUse::Miss(_) | CacheUse::Unavailable => Ok(Err(
                "this request was already looked up in the response cache".into(),
            )),
        }
    }

    fn bypass(&mut self, req: Resource<RequestState>) -> wasmtime::Result<()> {
        self.note("response-cache");
        let r = self.table.get_mut(&req)?;
        if matches!(r.cache, CacheUse::Unused | CacheUse::Lookup(_)) {
            r.cache = CacheUse::Bypass;
            self.services
                .metrics
                .cache_lookups
                .with_label_values(&[&*self.route, "bypass"])
                .inc();
        }
        Ok(())
    }

    fn store(
        &mut self,
        req: Resource<RequestState>,
        resp: Resource<ResponseState>,
        ttl_ms: u64,
        max_body_bytes: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        self.note("response-cache");
        let key = match &self.table.get(&req)?.cache {
            CacheUse::Miss(key) => key.clone(),
            CacheUse::Hit => return Ok(Err("the response came from the cache".into())),
            _ => {
                return Ok(Err(
                    "only a response to a request that missed the cache can be stored".into(),
                ));
            }
        };
        if ttl_ms == 0 {
            return Ok(Err("the time to live must be at least 1 ms".into()));
        }
        let r = self.table.get_mut(&resp)?;
        let mut headers = r.headers.clone();
        headers.remove(CACHE_STATUS_HEADER);
        r.store = Some(StoreIntent {
            key,
            ttl_ms,
            max_body: max_body_bytes.min(MAX_BODY_BYTES),
            headers,
        });
        Ok(Ok(()))
    }
}
