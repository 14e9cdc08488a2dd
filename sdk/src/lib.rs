//! # Ferrox filter SDK
//!
//! Write a [Ferrox](https://example.invalid/ferrox) gateway filter in plain Rust: implement
//! [`Filter`] on a type, export it with [`export_filter!`], build for `wasm32-wasip2`. The
//! gateway runs the resulting WebAssembly component on the routes that list it; the SDK hides the
//! component bindings behind the types here. Start with the example below, then read [`Filter`],
//! [`Request`] and the host service modules ([`log`], [`clock`], [`counters`], [`cache`],
//! [`credentials`], [`crypto`], [`metrics`], [`response_cache`]).
//!
//! ## A filter
//!
//! A filter that lets a request through only with a known API key, counts requests per consumer
//! and tags the response:
//!
//! ```
//! use ferrox_sdk::serde_json::{self, json};
//! use ferrox_sdk::{counters, credentials, log, metrics, Filter, Flow, Reply, Request, Response};
//!
//! /// Configuration: `{"header": "x-api-key", "per_minute": 100}`.
//! pub struct KeyGate {
//!     header: String,
//!     per_minute: i64,
//! }
//!
//! impl Filter for KeyGate {
//!     fn init(config: &str) -> Result<Self, String> {
//!         let config: serde_json::Value =
//!             serde_json::from_str(config).map_err(|e| format!("invalid JSON: {e}"))?;
//!         let header = match config.get("header") {
//!             None => "x-api-key".to_owned(),
//!             Some(v) => v.as_str().ok_or("`header` must be a string")?.to_owned(),
//!         };
//!         let per_minute = config
//!             .get("per_minute")
//!             .and_then(serde_json::Value::as_i64)
//!             .ok_or("`per_minute` is required and must be an integer")?;
//!         Ok(KeyGate { header, per_minute })
//!     }
//!
//!     fn on_request(&self, req: &mut Request<'_>) -> Flow {
//!         let Some(consumer) = req.header(&self.header).and_then(|k| credentials::consumer_for_key(&k))
//!         else {
//!             metrics::counter_add("rejected", 1);
//!             return Reply::new(401).json(&json!({ "error": "unknown key" })).into();
//!         };
//!         // Never forward the key upstream.
//!         req.remove_header(&self.header);
//!         req.set_consumer(&consumer);
//!         match counters::incr(&consumer, 1, 60_000) {
//!             Ok(c) if c.count > self.per_minute => Reply::new(429)
//!                 .header("retry-after", (c.reset_ms.div_ceil(1000)).to_string())
//!                 .json(&json!({ "error": "too many requests" }))
//!                 .into(),
//!             Ok(_) => Flow::Continue,
//!             Err(e) => {
//!                 // The state store is down: fail open, but say so.
//!                 log::warn(&format!("counter unavailable: {e}"));
//!                 Flow::Continue
//!             }
//!         }
//!     }
//!
//!     fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
//!         if let Some(consumer) = req.consumer() {
//!             // A refused header is not worth failing the response for.
//!             let _ = resp.set_header("x-consumer", &consumer);
//!         }
//!     }
//! }
//!
//! ferrox_sdk::export_filter!(KeyGate);
//! # fn main() {}
//! ```
//!
//! `init` runs once per filter instance with the route's JSON configuration; an `Err` makes the
//! configuration invalid and the gateway reports the message with the route and filter. The
//! gateway reuses an instance for many requests, so keep nothing in the filter value that
//! belongs to one request; shared state goes into [`counters`] and [`cache`].
//!
//! ## Building
//!
//! A filter is a crate of type `cdylib` depending on `ferrox-sdk`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]   # add "rlib" to unit-test it from other crates too
//!
//! [dependencies]
//! ferrox-sdk = "0.1"
//! ```
//!
//! ```sh
//! rustup target add wasm32-wasip2
//! cargo build --target wasm32-wasip2 --release
//! # → target/wasm32-wasip2/release/<crate_name>.wasm, a component ready for the gateway
//! ```
//!
//! The component imports the `ferrox:filter` interfaces it uses and the WASI interfaces Rust's
//! standard library links (the gateway grants those without files, network, environment or
//! arguments). A panic traps the instance: the gateway answers according to the filter's
//! `on_error` policy and never reuses that instance.
//!
//! # Testing
//!
//! On native targets the same code runs against an in-memory gateway, [`testing`]: build a
//! [`TestRequest`](testing::TestRequest), run a hook, assert on the outcome and on what the
//! filter did to the request, to the response and to the host services (logs, counters, cache,
//! metrics). Each test thread has its own host; the clock stands still unless moved.
//!
//! ```
//! # use ferrox_sdk::{Filter, Flow, Reply, Request, counters};
//! # struct Limit;
//! # impl Filter for Limit {
//! #     fn init(_: &str) -> Result<Self, String> { Ok(Limit) }
//! #     fn on_request(&self, req: &mut Request<'_>) -> Flow {
//! #         match counters::incr(&req.client_ip(), 1, 1_000) {
//! #             Ok(c) if c.count > 2 => Reply::new(429).into(),
//! #             _ => Flow::Continue,
//! #         }
//! #     }
//! # }
//! use ferrox_sdk::testing::{self, TestRequest};
//!
//! let filter = Limit::init("{}").expect("valid config");
//! let mut req = TestRequest::get("/").client_ip("203.0.113.7");
//! assert_eq!(testing::run_request(&filter, &mut req), Flow::Continue);
//! assert_eq!(testing::run_request(&filter, &mut req), Flow::Continue);
//! assert!(matches!(testing::run_request(&filter, &mut req), Flow::Respond(r) if r.status == 429));
//! testing::advance_ms(1_000); // next window
//! assert_eq!(testing::run_request(&filter, &mut req), Flow::Continue);
//! ```
//!
//! Run them with plain `cargo test`.

#![deny(missing_docs)]

pub mod cache;
pub mod clock;
pub mod config;
pub mod counters;
pub mod credentials;
pub mod crypto;
mod export;
mod flow;
mod http;
pub mod log;
pub mod metrics;
pub mod response_cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
use testing::backend;
#[cfg(target_arch = "wasm32")]
use wasm as backend;

pub use flow::{Flow, Reply};
pub use http::{MANAGED_HEADERS, MAX_HEADERS, Request, Response};
/// The `serde_json` the SDK uses (for [`Reply::json`] and for parsing configurations).
pub use serde_json;

/// A filter: built once per instance from its configuration, then called for each request and
/// response of the routes that list it.
///
/// Only [`init`](Filter::init) is required; the hooks do nothing by default.
pub trait Filter: Sized + 'static {
    /// Parse and validate the JSON configuration (called once per instance).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with the configuration; the gateway refuses it and shows
    /// the message with the route and filter it belongs to.
    fn init(config: &str) -> Result<Self, String>;

    /// Whether [`on_request`](Filter::on_request) does anything. Set it to `false` in a filter
    /// that keeps the default `on_request`: the gateway then skips the call (and the instance
    /// checkout it needs) and goes on as if the filter had continued. A filter that sets it to
    /// `false` and still defines `on_request` is never called for requests.
    const ON_REQUEST: bool = true;

    /// Whether [`on_response`](Filter::on_response) does anything. Set it to `false` in a
    /// filter that keeps the default `on_response` (an authentication filter, say): the gateway
    /// then skips the call, the instance checkout and, when no other filter of the route has a
    /// response hook, the copy of the request kept for response hooks. A filter that sets it to
    /// `false` and still defines `on_response` is never called for responses (the
    /// [`testing`] harness behaves the same).
    const ON_RESPONSE: bool = true;

    /// Called for each request, in the route's filter order: edit the request and go on, or
    /// answer the client now.
    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let _ = req;
        Flow::Continue
    }

    /// Called for each response, in reverse filter order, for every filter whose `on_request`
    /// ran (also when a later filter answered).
    fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        let _ = (req, resp);
    }
}

/// What [`export_filter!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{HOOKS_SECTION_LEN, Instance, hooks_section};
    #[cfg(target_arch = "wasm32")]
    pub use crate::wasm::{
        Guest, RawFlow, RawRequest, RawResponse, bindings, bindings::export_bindings, on_request,
        on_response,
    };
}
