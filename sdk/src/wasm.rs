//! The WebAssembly backend: the generated bindings of the `ferrox:filter/filter` world and the
//! glue between them and the SDK's types. Compiled only for `wasm32`.

use crate::counters::Counter;
use crate::export::Instance;
use crate::log::Level;
use crate::{Filter, Flow, Reply, Request, Response};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter",
        path: "../wit",
        // The export macro is used from the filter's crate, through `export_filter!`.
        pub_export_macro: true,
        export_macro_name: "export_bindings",
    });
}

use bindings::ferrox::filter::{
    cache, clock, counters, credentials, crypto, log, metrics, response_cache, types,
};

pub(crate) type RequestHandle<'a> = &'a types::Request;
pub(crate) type ResponseHandle<'a> = &'a types::Response;

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    };
    log::log(level, message);
}

pub(crate) fn now_ms() -> u64 {
    clock::now_ms()
}

pub(crate) fn incr(key: &str, delta: i64, window_ms: u64) -> Result<Counter, String> {
    counters::incr(key, delta, window_ms).map(|c| Counter {
        count: c.count,
        reset_ms: c.reset_ms,
    })
}

pub(crate) fn incr_sliding(
    key: &str,
    delta: i64,
    window_ms: u64,
) -> Result<crate::counters::Sliding, String> {
    counters::incr_sliding(key, delta, window_ms).map(|s| crate::counters::Sliding {
        current: s.current,
        previous: s.previous,
        elapsed_ms: s.elapsed_ms,
        reset_ms: s.reset_ms,
    })
}

pub(crate) fn cache_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    cache::get(key)
}

pub(crate) fn cache_set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
    cache::set(key, value, ttl_ms)
}

pub(crate) fn consumer_for_key(key: &str) -> Option<String> {
    credentials::consumer_for_key(key)
}

pub(crate) fn jwt_credential_for(
    issuer: Option<&str>,
    key_id: Option<&str>,
) -> Option<crate::credentials::JwtCredential> {
    use crate::credentials::JwtAlgorithm as A;
    use credentials::JwtAlgorithm as W;
    credentials::jwt_credential_for(issuer, key_id).map(|c| crate::credentials::JwtCredential {
        consumer: c.consumer,
        id: c.id,
        issuer: c.issuer,
        algorithm: match c.algorithm {
            W::Hs256 => A::HS256,
            W::Hs384 => A::HS384,
            W::Hs512 => A::HS512,
            W::Rs256 => A::RS256,
            W::Rs384 => A::RS384,
            W::Rs512 => A::RS512,
            W::Ps256 => A::PS256,
            W::Ps384 => A::PS384,
            W::Ps512 => A::PS512,
            W::Es256 => A::ES256,
            W::Es384 => A::ES384,
            W::Eddsa => A::EdDSA,
        },
    })
}

pub(crate) fn verify_jwt(
    credential: &str,
    key_id: Option<&str>,
    token: &str,
) -> Result<(), crate::crypto::VerifyError> {
    use crate::crypto::VerifyError as E;
    use crypto::VerifyError as W;
    crypto::verify_jwt(credential, key_id, token).map_err(|e| match e {
        W::Malformed => E::Malformed,
        W::AlgorithmMismatch => E::AlgorithmMismatch,
        W::UnknownCredential => E::UnknownCredential,
        W::UnknownKey => E::UnknownKey,
        W::KeysUnavailable => E::KeysUnavailable,
        W::BadSignature => E::BadSignature,
        W::Other(m) => E::Other(m),
    })
}

pub(crate) fn response_cache_lookup(req: &RequestHandle<'_>, key: &str) -> Result<(), String> {
    response_cache::lookup(req, key)
}

pub(crate) fn response_cache_bypass(req: &RequestHandle<'_>) {
    response_cache::bypass(req);
}

pub(crate) fn response_cache_store(
    req: &RequestHandle<'_>,
    resp: &ResponseHandle<'_>,
    ttl_ms: u64,
    max_body_bytes: u64,
) -> Result<(), String> {
    response_cache::store(req, resp, ttl_ms, max_body_bytes)
}

pub(crate) fn counter_add(name: &str, value: u64) {
    metrics::counter_add(name, value);
}

pub(crate) fn histogram_observe(name: &str, value: f64) {
    metrics::histogram_observe(name, value);
}

/// The generated `Guest` trait and the raw handle types, for `export_filter!`.
pub use bindings::{Guest, Request as RawRequest, Response as RawResponse};
/// The raw flow the `on-request` export returns.
pub use types::Flow as RawFlow;

/// `on-request`: wrap the handle, run the filter, lower its decision.
pub fn on_request<F: Filter>(instance: &Instance<F>, raw: &RawRequest) -> RawFlow {
    match instance.on_request(&mut Request::new(raw)) {
        Flow::Continue => RawFlow::Continue,
        Flow::Respond(Reply {
            status,
            headers,
            body,
        }) => RawFlow::Respond(types::Reply {
            status,
            headers,
            body,
        }),
    }
}

/// `on-response`: wrap both handles and run the filter.
pub fn on_response<F: Filter>(instance: &Instance<F>, req: &RawRequest, resp: &RawResponse) {
    instance.on_response(&Request::new(req), &mut Response::new(resp));
}
