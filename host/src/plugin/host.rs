//! Per-store host state (what a guest's calls can reach) and the services shared by all stores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::metrics::Metrics;
use crate::state::StateStore;

/// Services shared by every filter instance of a gateway.
#[derive(Debug)]
pub struct Services {
    /// Counters and cache: in-process or Redis, as `state` says; replaced when a new config
    /// names another store.
    pub state: ArcSwap<StateStore>,
    /// API key → consumer index, swapped with each config.
    pub credentials: ArcSwap<Credentials>,
    /// Metrics registry (plugin metrics live there too).
    pub metrics: Metrics,
    /// JWKS key sets fetched for JWT credentials, by URL (kept across configs).
    pub jwks: crate::jwt::jwks::JwksCache,
}

impl Services {
    /// Services with in-process state and no credentials yet.
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Self::with_state(metrics, StateStore::default())
    }

    /// Services using `state`, with no credentials yet.
    pub fn with_state(metrics: Metrics, state: StateStore) -> Arc<Self> {
        Arc::new(Self {
            state: ArcSwap::from_pointee(state),
            credentials: ArcSwap::from_pointee(Credentials::default()),
            metrics,
            jwks: Default::default(),
        })
    }
}

/// API keys by SHA-256 digest (plaintext keys are never stored) and JWT credentials.
#[derive(Debug, Default)]
pub struct Credentials {
    by_digest: HashMap<[u8; 32], String>,
    /// JWT credentials (keys stay here; filters get ids).
    pub jwt: crate::jwt::JwtCredentials,
}

impl Credentials {
    /// Index `(key, consumer)` pairs; a key is plaintext or `sha256:<hex>`.
    pub fn build<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for (key, consumer) in keys {
            let digest = key_digest(key)?;
            if let Some(other) = by_digest.insert(digest, consumer.to_owned())
                && other != consumer
            {
                return Err(format!(
                    "the same API key is given to {other:?} and {consumer:?}"
                ));
            }
        }
        Ok(Self {
            by_digest,
            jwt: Default::default(),
        })
    }

    /// The consumer owning a presented key.
    pub fn consumer_for_key(&self, presented: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // The hash index finds the candidate; the digest comparison is constant-time.
        self.by_digest
            .get_key_value(&digest)
            .filter(|(stored, _)| crate::admin::constant_time_eq(stored.as_slice(), &digest))
            .map(|(_, c)| c.clone())
    }
}

/// The SHA-256 digest of a configured key (`sha256:<hex>` or plaintext).
pub fn key_digest(key: &str) -> Result<[u8; 32], String> {
    match key.strip_prefix("sha256:") {
        Some(hex_digest) => {
            let bytes = hex::decode(hex_digest)
                .map_err(|_| "a sha256: key must be 64 hex digits".to_owned())?;
            bytes
                .try_into()
                .map_err(|_| "a sha256: key must be 64 hex digits".to_owned())
        }
        None if key.is_empty() => Err("an API key must not be empty".into()),
        None => Ok(Sha256::digest(key.as_bytes()).into()),
    }
}

/// What a guest's store holds.
pub struct HostState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) services: Arc<Services>,
    pub(crate) plugin: Arc<str>,
    pub(crate) route: Arc<str>,
    /// Host services called during the current call (for the request explain view).
    pub(crate) calls: Vec<&'static str>,
    /// When host I/O (a state store call, a JWKS fetch) must have answered during the current
    /// call: the filter's `timeout` after the call started, or sooner by the service's own
    /// timeout. A slow store fails the host call and the filter applies its own policy; the
    /// wait is not counted against the filter's execution budget, so it never fails the filter.
    pub(crate) store_deadline: Option<Instant>,
    /// When the current call started, its execution budget (the filter's `timeout`) and the
    /// time it spent waiting on host I/O, which does not count against the budget.
    call_start: Instant,
    budget: Duration,
    io_wait: Duration,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.plugin)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// State for one instance of `plugin` on `route`, with a memory cap.
    pub fn new(services: Arc<Services>, plugin: Arc<str>, route: Arc<str>, memory: usize) -> Self {
        // The sandbox: no preopened directories, no environment, no arguments, no network.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(64)
                .tables(64)
                .memories(16)
                .table_elements(1_000_000)
                .trap_on_grow_failure(true)
                .build(),
            services,
            plugin,
            route,
            calls: Vec::new(),
            store_deadline: None,
            call_start: Instant::now(),
            budget: Duration::ZERO,
            io_wait: Duration::ZERO,
        }
    }

    /// Start a filter call whose own execution may take `timeout`. Waiting on host I/O
    /// (Redis, a JWKS fetch) is not counted: on a busy machine an awaited store call can take
    /// milliseconds of wall time before the task runs again, and that must not fail a filter
    /// whose code took microseconds. Host I/O is bounded separately (`store_deadline`).
    pub(crate) fn start_call(&mut self, timeout: Duration) {
        let now = Instant::now();
        self.call_start = now;
        self.budget = timeout;
        self.io_wait = Duration::ZERO;
        self.store_deadline = Some(now + timeout);
    }

    /// Await host I/O for the guest, keeping the wait off the call's execution budget.
    pub(crate) async fn io<F: std::future::Future>(&mut self, f: F) -> F::Output {
        let started = Instant::now();
        let out = f.await;
        self.io_wait += started.elapsed();
        out
    }

    /// What is left of the current call's execution budget, or `None` once it is spent.
    /// Asked by the epoch-deadline callback when the wall-clock deadline passes.
    pub(crate) fn remaining_budget(&self) -> Option<Duration> {
        let executed = self.call_start.elapsed().saturating_sub(self.io_wait);
        self.budget.checked_sub(executed).filter(|d| !d.is_zero())
    }

    /// Record a host call (deduplicated, for the explain view).
    pub(crate) fn note(&mut self, service: &'static str) {
        if self.calls.last() != Some(&service) && self.calls.len() < 64 {
            self.calls.push(service);
        }
    }

    /// Namespace a filter's key by plugin and route.
    pub(crate) fn namespaced(&self, key: &str) -> String {
        format!("{}\u{1f}{}\u{1f}{key}", self.plugin, self.route)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Lets the store enforce the memory cap (`limiter` needs `&mut dyn ResourceLimiter`).
pub(crate) fn limiter(state: &mut HostState) -> &mut dyn ResourceLimiter {
    &mut state.limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_digest_only() {
        let digest = hex::encode(Sha256::digest(b"bob-key"));
        let c = Credentials::build([
            ("alice-key", "alice"),
            (format!("sha256:{digest}").as_str(), "bob"),
        ])
        .expect("valid keys");
        assert_eq!(c.consumer_for_key("alice-key").as_deref(), Some("alice"));
        assert_eq!(c.consumer_for_key("bob-key").as_deref(), Some("bob"));
        assert_eq!(c.consumer_for_key("nope"), None);
        assert!(Credentials::build([("sha256:zz", "x")]).is_err());
    }
}
