//! The harness's response cache: it keeps what filters mark storable (status and headers; the
//! harness has no bodies) against the harness clock, and [`run_exchange`](super::run_exchange)
//! serves hits from it the way the gateway does.

use std::cell::RefCell;
use std::collections::HashMap;

use super::host;
use super::message::{RequestHandle, ResponseHandle};
use super::{TestRequest, TestResponse};

/// The gateway's cap on stored bodies.
const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// What the response cache does with a request (mirrors the gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum CacheState {
    #[default]
    Unused,
    /// Looked up under this raw key (the filter's key), not settled yet.
    Lookup(String),
    Hit(String),
    Miss(String),
    Bypass,
    Unavailable,
}

impl CacheState {
    fn status(&self) -> Option<&'static str> {
        match self {
            Self::Unused | Self::Lookup(_) => None,
            Self::Hit(_) => Some("HIT"),
            Self::Miss(_) => Some("MISS"),
            Self::Bypass | Self::Unavailable => Some("BYPASS"),
        }
    }

    fn key(&self) -> Option<&str> {
        match self {
            Self::Lookup(k) | Self::Hit(k) | Self::Miss(k) => Some(k),
            _ => None,
        }
    }
}

/// A [`response_cache::store`](crate::response_cache::store) call: what a filter asked the
/// gateway to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    /// Time to live, ms.
    pub ttl_ms: u64,
    /// The body bound the filter gave (capped at the gateway's 8 MiB).
    pub max_body_bytes: u64,
    /// The headers as they were when the filter asked (without `x-cache-status`).
    pub headers: Vec<(String, String)>,
}

struct Entry {
    stored_at_ms: u64,
    expires_at_ms: u64,
    status: u16,
    headers: Vec<(String, String)>,
}

thread_local! {
    static STORE: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// Forget every stored response (part of [`reset`](super::reset)).
pub(crate) fn clear() {
    STORE.with(|s| s.borrow_mut().clear());
}

fn storage_key(method: &str, key: &str) -> String {
    format!("{method}\n{key}")
}

pub(crate) fn response_cache_lookup(req: &RequestHandle<'_>, key: &str) -> Result<(), String> {
    req.with_cache(|method, cache| {
        if method != "GET" && method != "HEAD" {
            return Err(format!(
                "only GET and HEAD requests are looked up in the response cache (this is {method})"
            ));
        }
        match cache {
            CacheState::Unused | CacheState::Lookup(_) | CacheState::Bypass => {
                *cache = CacheState::Lookup(storage_key(method, key));
                Ok(())
            }
            _ => Err("this request was already looked up in the response cache".to_owned()),
        }
    })
}

pub(crate) fn response_cache_bypass(req: &RequestHandle<'_>) {
    req.with_cache(|_, cache| {
        if matches!(cache, CacheState::Unused | CacheState::Lookup(_)) {
            *cache = CacheState::Bypass;
        }
    });
}

pub(crate) fn response_cache_store(
    req: &RequestHandle<'_>,
    resp: &ResponseHandle<'_>,
    ttl_ms: u64,
    max_body_bytes: u64,
) -> Result<(), String> {
    req.with_cache(|_, cache| match cache {
        CacheState::Miss(_) => Ok(()),
        CacheState::Hit(_) => Err("the response came from the cache".to_owned()),
        _ => Err("only a response to a request that missed the cache can be stored".to_owned()),
    })?;
    if ttl_ms == 0 {
        return Err("the time to live must be at least 1 ms".to_owned());
    }
    let headers = resp
        .header_pairs()
        .into_iter()
        .filter(|(n, _)| n != "x-cache-status")
        .collect();
    resp.set_stored(StoreCall {
        ttl_ms,
        max_body_bytes: max_body_bytes.min(MAX_BODY_BYTES),
        headers,
    });
    Ok(())
}

/// Settle a lookup the filter asked for: the stored response on a hit.
pub(crate) fn settle(req: &TestRequest) -> Option<TestResponse> {
    let view = req.request();
    view.handle().with_cache(|_, cache| {
        let CacheState::Lookup(key) = cache else {
            return None;
        };
        let key = key.clone();
        if host::cache_error().is_some() {
            *cache = CacheState::Unavailable;
            return None;
        }
        let now = host::now_ms();
        let hit = STORE.with(|s| {
            let mut store = s.borrow_mut();
            if store.get(&key).is_some_and(|e| e.expires_at_ms <= now) {
                store.remove(&key);
            }
            store.get(&key).map(|e| {
                let age = (now - e.stored_at_ms) / 1000;
                e.headers
                    .iter()
                    .fold(TestResponse::new(e.status), |r, (n, v)| r.header(n, v))
                    .header("age", &age.to_string())
            })
        });
        *cache = match hit {
            Some(_) => CacheState::Hit(key),
            None => CacheState::Miss(key),
        };
        hit
    })
}

/// The `X-Cache-Status` the gateway adds before the response hooks, if any.
pub(crate) fn status(req: &TestRequest) -> Option<&'static str> {
    req.request().handle().with_cache(|_, cache| cache.status())
}

/// After the response hooks: keep what the filter marked storable on a miss.
pub(crate) fn keep(req: &TestRequest, resp: &TestResponse) {
    let Some(call) = resp.response().handle().stored() else {
        return;
    };
    let key = req.request().handle().with_cache(|_, cache| match cache {
        CacheState::Miss(key) => Some(key.clone()),
        _ => None,
    });
    let Some(key) = key else {
        return;
    };
    if host::cache_error().is_some() {
        return;
    }
    let now = host::now_ms();
    STORE.with(|s| {
        s.borrow_mut().insert(
            key,
            Entry {
                stored_at_ms: now,
                expires_at_ms: now.saturating_add(call.ttl_ms),
                status: resp.status(),
                headers: call.headers,
            },
        );
    });
}

impl TestRequest {
    /// The key the filter looked this request up under (`None` without a lookup), as the
    /// filter gave it.
    pub fn cache_key(&self) -> Option<String> {
        self.request().handle().with_cache(|_, cache| {
            cache
                .key()
                .map(|k| k.split_once('\n').map_or(k, |(_, k)| k).to_owned())
        })
    }

    /// The `X-Cache-Status` the gateway gives this request once settled (`HIT`, `MISS`,
    /// `BYPASS`), or `None` when the filter did not use the cache.
    pub fn cache_status(&self) -> Option<&'static str> {
        status(self)
    }
}

impl TestResponse {
    /// What the filter asked the gateway to keep of this response, if anything.
    pub fn stored(&self) -> Option<StoreCall> {
        self.response().handle().stored()
    }
}
