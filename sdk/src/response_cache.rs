//! The gateway's response cache (grant `response-cache`). A filter decides: which key a request
//! is looked up under ([`lookup`], in `on_request`), and whether and for how long the upstream's
//! response may be kept ([`store`], in `on_response`). The gateway stores the bytes and serves
//! hits itself: bodies never reach the filter.
//!
//! After `on_request` returns [`Flow::Continue`](crate::Flow::Continue) with a lookup, the
//! gateway answers a hit with the stored response (`X-Cache-Status: HIT`, `Age`), skipping later
//! filters and the upstream, as if the filter had answered; a miss goes on
//! (`X-Cache-Status: MISS`), and a state store failure goes on uncached (`BYPASS`).
//!
//! ```
//! use ferrox_sdk::{Filter, Flow, Request, Response, response_cache};
//!
//! struct Cache;
//! impl Filter for Cache {
//!     fn init(_: &str) -> Result<Self, String> {
//!         Ok(Cache)
//!     }
//!     fn on_request(&self, req: &mut Request<'_>) -> Flow {
//!         if req.method() == "GET" {
//!             let key = format!("{}?{}", req.path(), req.query().unwrap_or_default());
//!             let _ = response_cache::lookup(req, &key);
//!         } else {
//!             response_cache::bypass(req);
//!         }
//!         Flow::Continue
//!     }
//!     fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
//!         if resp.status() == 200 {
//!             let _ = response_cache::store(req, resp, 60_000, 1 << 20);
//!         }
//!     }
//! }
//! # use ferrox_sdk::testing::{self, TestRequest, TestResponse};
//! let f = Cache::init("{}").expect("valid");
//! let req = TestRequest::get("/a");
//! let first = testing::run_exchange(&f, &req, TestResponse::new(200));
//! assert_eq!(first.response().header("x-cache-status").as_deref(), Some("MISS"));
//! let req = TestRequest::get("/a");
//! let second = testing::run_exchange(&f, &req, TestResponse::new(500));
//! assert_eq!(second.status(), 200, "served from the cache");
//! assert_eq!(second.response().header("x-cache-status").as_deref(), Some("HIT"));
//! ```

use crate::{Request, Response, backend};

/// Look `req` up under `key` when `on_request` returns (GET and HEAD only; the gateway hashes
/// the key and adds the method and the plugin's and route's names to it).
///
/// # Errors
///
/// Another method, or a request that was already looked up.
pub fn lookup(req: &Request<'_>, key: &str) -> Result<(), String> {
    backend::response_cache_lookup(req.handle(), key)
}

/// Say that `req` does not use the cache (`X-Cache-Status: BYPASS`).
pub fn bypass(req: &Request<'_>) {
    backend::response_cache_bypass(req.handle());
}

/// Keep `resp` (the upstream's answer to a request that missed) for `ttl_ms` milliseconds if
/// its body turns out to be at most `max_body_bytes` (the gateway caps this at 8 MiB) and
/// reaches the client completely. The headers are stored as they are now.
///
/// # Errors
///
/// The request was not a miss (a hit, a bypass, no lookup), or `ttl_ms` is 0.
pub fn store(
    req: &Request<'_>,
    resp: &Response<'_>,
    ttl_ms: u64,
    max_body_bytes: u64,
) -> Result<(), String> {
    backend::response_cache_store(req.handle(), resp.handle(), ttl_ms, max_body_bytes)
}
