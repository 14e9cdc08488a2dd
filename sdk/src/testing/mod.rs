//! An in-memory gateway for unit-testing filters natively with plain `cargo test`.
//!
//! Build a [`TestRequest`] (and a [`TestResponse`] for `on_response`), run a hook with
//! [`run_request`] / [`run_response`] / [`run_exchange`], then assert on the [`Flow`], on the
//! request and response (through [`TestRequest::request`] and [`TestResponse::response`], the
//! same [`Request`](crate::Request) / [`Response`](crate::Response) API the filter uses) and on
//! the host services:
//!
//! - the clock stands at [`DEFAULT_NOW_MS`] until moved with [`set_now_ms`] / [`advance_ms`];
//! - [`counters`](crate::counters) honour their fixed windows against that clock, the
//!   [`cache`](crate::cache) its TTLs; [`set_counters_error`] / [`set_cache_error`] simulate a
//!   state store that is down; tests may call both modules directly to inspect or seed state;
//! - [`credentials`](crate::credentials) know the keys added with [`add_key`] and the JWT
//!   credentials added with [`add_jwt_credential`]; [`crypto`](crate::crypto) verifies HMAC
//!   tokens for real (sign them with [`sign_jwt`]);
//! - the [`response_cache`](crate::response_cache) keeps what a filter marks storable (status
//!   and headers) and [`run_exchange`] serves hits from it;
//! - [`logs`], [`metric_counter`] and [`metric_histogram`] return what the filter recorded.
//!
//! The request and response follow the gateway's rules (header names case-insensitive, managed
//! headers such as `content-length` or `host` refused, at most 100 header values, paths must
//! start with `/`), so a filter that works here behaves the same behind the gateway.
//!
//! The host is per thread: the standard test harness runs each test on its own thread, so each
//! test starts fresh. Call [`reset`] where tests share a thread.
//!
//! ```
//! use ferrox_sdk::testing::{self, TestRequest, TestResponse};
//! use ferrox_sdk::{Filter, Request, Response};
//!
//! struct Tag;
//! impl Filter for Tag {
//!     fn init(_: &str) -> Result<Self, String> {
//!         Ok(Tag)
//!     }
//!     fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
//!         let _ = resp.set_header("x-route", &req.route());
//!     }
//! }
//!
//! let filter = Tag::init("{}").expect("valid config");
//! let req = TestRequest::get("/").route("users");
//! let resp = testing::run_exchange(&filter, &req, TestResponse::new(200));
//! assert_eq!(resp.response().header("x-route").as_deref(), Some("users"));
//! ```

mod headers;
mod host;
mod jwt;
mod message;
mod response_cache;
#[cfg(test)]
mod tests;

pub use host::{
    DEFAULT_NOW_MS, LogRecord, add_key, advance_ms, logs, metric_counter, metric_histogram, reset,
    set_cache_error, set_counters_error, set_now_ms,
};
pub use jwt::{TestJwtKey, add_jwt_credential, jwt_verifications, sign_jwt};
pub use message::{TestRequest, TestResponse};
pub use response_cache::StoreCall;

use crate::{Filter, Flow};

/// What the SDK's types and service modules call on native targets.
pub(crate) mod backend {
    pub(crate) use super::host::{
        cache_get, cache_set, consumer_for_key, counter_add, histogram_observe, incr, incr_sliding,
        log, now_ms,
    };
    pub(crate) use super::jwt::{jwt_credential_for, verify_jwt};
    pub(crate) use super::message::{RequestHandle, ResponseHandle};
    pub(crate) use super::response_cache::{
        response_cache_bypass, response_cache_lookup, response_cache_store,
    };
}

/// Run `filter.on_request` on `req` and return its decision; `req` keeps the filter's edits.
/// Like the gateway, continues without a call for a filter whose [`Filter::ON_REQUEST`] is
/// `false`.
pub fn run_request<F: Filter>(filter: &F, req: &TestRequest) -> Flow {
    if !F::ON_REQUEST {
        return Flow::Continue;
    }
    filter.on_request(&mut req.request())
}

/// Run `filter.on_response` on `req` and `resp`; `resp` keeps the filter's edits. Like the
/// gateway, does nothing for a filter whose [`Filter::ON_RESPONSE`] is `false`.
pub fn run_response<F: Filter>(filter: &F, req: &TestRequest, resp: &TestResponse) {
    if F::ON_RESPONSE {
        filter.on_response(&req.request(), &mut resp.response());
    }
}

/// Run one exchange through `filter` as the gateway would: `on_request`, then `on_response` on
/// `upstream` if the filter continued, or on the response made from its [`Reply`](crate::Reply)
/// if it answered. Returns the response the client would get (without a body).
///
/// The [`response_cache`](crate::response_cache) works as in the gateway: a lookup that hits
/// answers with the stored response (`age` and `x-cache-status: HIT` added) instead of
/// `upstream`; a miss or bypass adds `x-cache-status` to `upstream`; what the filter marks
/// storable after a miss is kept (against the harness clock) for later exchanges.
pub fn run_exchange<F: Filter>(
    filter: &F,
    req: &TestRequest,
    upstream: TestResponse,
) -> TestResponse {
    let (resp, from_upstream) = match run_request(filter, req) {
        Flow::Continue => match response_cache::settle(req) {
            Some(hit) => (hit.header("x-cache-status", "HIT"), false),
            None => (upstream, true),
        },
        Flow::Respond(reply) => (TestResponse::from(reply), false),
    };
    let resp = match response_cache::status(req) {
        Some(status) if from_upstream => resp.header("x-cache-status", status),
        _ => resp,
    };
    run_response(filter, req, &resp);
    if from_upstream {
        response_cache::keep(req, &resp);
    }
    resp
}
