//! The WebAssembly filter runtime — **the only module that imports wasmtime**.
//!
//! - [`engine`]: one engine per process (pooling allocator, epoch deadlines), compiled-artifact
//!   cache.
//! - [`bindings`]: the WIT contract's host side: request/response resources, host services.
//! - [`host`]: per-store state and the shared services.
//! - this module: [`Plugin`] (a loaded, type-checked component with its grants) and
//!   [`FilterPool`] (warm instances of one plugin with one config, for one route).

pub mod bindings;
mod crypto;
pub mod engine;
pub mod hooks;
pub mod host;
pub mod inspect;
pub mod response_cache;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{Linker, Resource};
use wasmtime::{Store, Trap, UpdateDeadline};

use bindings::{Filter, FilterPre};
pub use bindings::{Flow, Reply, RequestState, ResponseState};
pub use engine::PluginEngine;
pub use hooks::Hooks;
use host::{HostState, Services};

/// Host services a plugin can be granted, as named in the config's `grants`.
pub const SERVICES: [&str; 8] = [
    "log",
    "clock",
    "counters",
    "cache",
    "credentials",
    "metrics",
    "crypto",
    "response-cache",
];

/// A loaded component, type-checked against the `filter` world and its grants.
pub struct Plugin {
    /// Name used in routes and metrics.
    pub name: Arc<str>,
    /// SHA-256 of the component bytes.
    pub digest: String,
    /// The host services it imports.
    pub imports: BTreeSet<String>,
    /// The host services the operator granted.
    pub granted: Vec<String>,
    /// The hooks that do something (the others are not called).
    pub hooks: Hooks,
    pre: FilterPre<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("imports", &self.imports)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

fn linker(engine: &PluginEngine) -> Result<Arc<Linker<HostState>>, String> {
    static LINKER: OnceLock<Result<Arc<Linker<HostState>>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let mut l = Linker::new(engine.engine());
            wasmtime_wasi::p2::add_to_linker_async(&mut l).map_err(|e| format!("{e:#}"))?;
            Filter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
                &mut l,
                |s| s,
            )
            .map_err(|e| format!("{e:#}"))?;
            Ok(Arc::new(l))
        })
        .clone()
}

fn components() -> &'static Mutex<HashMap<String, wasmtime::component::Component>> {
    static CACHE: OnceLock<Mutex<HashMap<String, wasmtime::component::Component>>> =
        OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl Plugin {
    /// Load component `bytes` as plugin `name`, refusing imports of services not in `grants`.
    pub fn load(name: &str, bytes: &[u8], grants: &[String]) -> Result<Arc<Self>, String> {
        let engine = PluginEngine::global()?;
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(bytes))
        };
        let cached = components()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            .cloned();
        let component = match cached {
            Some(c) => c,
            None => {
                let (c, _) = engine.load(bytes).map_err(|e| e.to_string())?;
                components()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(digest.clone(), c.clone());
                c
            }
        };
        let mut imports = BTreeSet::new();
        for (import, _) in component.component_type().imports(engine.engine()) {
            let Some(rest) = import.strip_prefix("ferrox:filter/") else {
                continue;
            };
            let service = rest.split('@').next().unwrap_or(rest);
            if service == "types" {
                continue;
            }
            if !grants.iter().any(|g| g == service) {
                return Err(format!(
                    "the component imports the host service `{service}`, which is not granted (grants: [{}])",
                    grants.join(", ")
                ));
            }
            imports.insert(service.to_owned());
        }
        let pre = linker(&engine)?
            .instantiate_pre(&component)
            .map_err(|e| format!("the component does not fit the ferrox:filter world: {e:#}"))?;
        let pre = FilterPre::new(pre)
            .map_err(|e| format!("the component does not export the filter interface: {e:#}"))?;
        Ok(Arc::new(Self {
            name: name.into(),
            digest,
            imports,
            granted: grants.to_vec(),
            hooks: Hooks::of(bytes),
            pre,
        }))
    }
}

/// How a filter failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterFailure {
    /// Its deadline passed (epoch interruption).
    Timeout,
    /// It hit its memory cap.
    Memory,
    /// It trapped (panic, unreachable, stack overflow, …).
    Trap(String),
    /// `init` rejected the configuration.
    Config(String),
}

impl FilterFailure {
    /// The `kind` label of `ferrox_filter_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterFailure::Timeout => "timeout",
            FilterFailure::Memory => "memory",
            FilterFailure::Trap(_) => "trap",
            FilterFailure::Config(_) => "config",
        }
    }

    fn from_error(e: &wasmtime::Error) -> Self {
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return FilterFailure::Timeout;
        }
        let text = format!("{e:#}");
        if text.contains("forcing trap when growing memory")
            || text.contains("memory") && text.contains("limit")
        {
            FilterFailure::Memory
        } else {
            FilterFailure::Trap(text)
        }
    }
}

impl std::fmt::Display for FilterFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterFailure::Timeout => f.write_str("deadline exceeded"),
            FilterFailure::Memory => f.write_str("memory cap exceeded"),
            FilterFailure::Trap(t) => write!(f, "trapped: {}", t.lines().next().unwrap_or(t)),
            FilterFailure::Config(m) => f.write_str(m),
        }
    }
}

/// Isolation of instances between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Warm instances are reused across requests (state does not survive in a way that matters).
    Pooled,
    /// A fresh instance per request.
    Request,
}

/// Settings of one filter instance pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Deadline of one call.
    pub timeout: Duration,
    /// Memory cap of one instance.
    pub memory: usize,
    /// Instance reuse policy.
    pub isolation: Isolation,
    /// Idle instances kept.
    pub max_idle: usize,
    /// Calls after which a pooled instance is recycled.
    pub max_uses: u32,
}

struct Warm {
    store: Store<HostState>,
    filter: Filter,
    uses: u32,
}

/// Warm, initialised instances of one plugin with one config, for one route.
pub struct FilterPool {
    plugin: Arc<Plugin>,
    config: String,
    route: Arc<str>,
    services: Arc<Services>,
    settings: PoolSettings,
    idle: Mutex<Vec<Warm>>,
}

impl std::fmt::Debug for FilterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterPool")
            .field("plugin", &self.plugin.name)
            .field("route", &self.route)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Budget for `init` (compilation is done; this bounds a guest's own start-up work).
const INIT_DEADLINE: Duration = Duration::from_secs(2);

fn ticks(d: Duration) -> u64 {
    (d.as_micros() / engine::EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

/// The result of one filter call, with the host services it used.
#[derive(Debug)]
pub struct CallOutcome<T> {
    /// What the filter returned, or how it failed.
    pub result: Result<T, FilterFailure>,
    /// Host services called, in order (deduplicated runs).
    pub calls: Vec<&'static str>,
}

impl FilterPool {
    /// Create the pool and initialise one instance with `config` (validating it).
    pub async fn new(
        plugin: Arc<Plugin>,
        config: String,
        route: Arc<str>,
        services: Arc<Services>,
        settings: PoolSettings,
    ) -> Result<Self, FilterFailure> {
        let pool = Self {
            plugin,
            config,
            route,
            services,
            settings,
            idle: Mutex::new(Vec::new()),
        };
        let warm = pool.instantiate().await?;
        if pool.settings.isolation == Isolation::Pooled {
            pool.release(warm);
        }
        Ok(pool)
    }

    /// The plugin this pool runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The host services its instances use.
    pub fn services(&self) -> &Services {
        &self.services
    }

    async fn instantiate(&self) -> Result<Warm, FilterFailure> {
        let engine = PluginEngine::global().map_err(FilterFailure::Trap)?;
        let state = HostState::new(
            self.services.clone(),
            self.plugin.name.clone(),
            self.route.clone(),
            self.settings.memory,
        );
        let mut store = Store::new(engine.engine(), state);
        store.limiter(host::limiter);
        // The wall-clock epoch deadline is a cheap first check; when it passes, the call goes
        // on only if its own execution (wall time less host I/O waits) is still in budget.
        store.epoch_deadline_callback(|ctx| {
            Ok(match ctx.data().remaining_budget() {
                Some(left) => UpdateDeadline::Continue(ticks(left)),
                None => UpdateDeadline::Interrupt,
            })
        });
        store.data_mut().start_call(INIT_DEADLINE);
        store.set_epoch_deadline(ticks(INIT_DEADLINE));
        let filter = self
            .plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| FilterFailure::from_error(&e))?;
        match filter.call_init(&mut store, &self.config).await {
            Ok(Ok(())) => Ok(Warm {
                store,
                filter,
                uses: 0,
            }),
            Ok(Err(message)) => Err(FilterFailure::Config(message)),
            Err(e) => Err(FilterFailure::from_error(&e)),
        }
    }

    async fn acquire(&self) -> Result<Warm, FilterFailure> {
        let reused = if self.settings.isolation == Isolation::Pooled {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
        } else {
            None
        };
        match reused {
            Some(w) => Ok(w),
            None => self.instantiate().await,
        }
    }

    fn release(&self, mut warm: Warm) {
        warm.uses += 1;
        if self.settings.isolation == Isolation::Request || warm.uses >= self.settings.max_uses {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.max_idle {
            idle.push(warm);
        }
    }

    /// Run `on-request`. The request is lent to the guest for the call and always returned.
    pub async fn on_request(&self, req: &mut Option<RequestState>) -> CallOutcome<Flow> {
        let mut warm = match self.acquire().await {
            Ok(w) => w,
            Err(e) => {
                return CallOutcome {
                    result: Err(e),
                    calls: Vec::new(),
                };
            }
        };
        let Some(state) = req.take() else {
            return CallOutcome {
                result: Err(FilterFailure::Trap("request already taken".into())),
                calls: Vec::new(),
            };
        };
        warm.store.data_mut().calls.clear();
        let handle = match warm.store.data_mut().table.push(state) {
            Ok(h) => h,
            Err(e) => {
                return CallOutcome {
                    result: Err(FilterFailure::Trap(e.to_string())),
                    calls: Vec::new(),
                };
            }
        };
        warm.store.set_epoch_deadline(ticks(self.settings.timeout));
        warm.store.data_mut().start_call(self.settings.timeout);
        let borrow = Resource::<RequestState>::new_borrow(handle.rep());
        let result = warm.filter.call_on_request(&mut warm.store, borrow).await;
        let returned = warm.store.data_mut().table.delete(handle);
        let calls = std::mem::take(&mut warm.store.data_mut().calls);
        match returned {
            Ok(s) => *req = Some(s),
            Err(e) => {
                return CallOutcome {
                    result: Err(FilterFailure::Trap(format!("request handle lost: {e}"))),
                    calls,
                };
            }
        }
        let result = result.map_err(|e| FilterFailure::from_error(&e));
        if result.is_ok() {
            self.release(warm);
        }
        CallOutcome { result, calls }
    }

    /// Run `on-response`. Request and response are lent for the call and always returned.
    pub async fn on_response(
        &self,
        req: &mut Option<RequestState>,
        resp: &mut Option<ResponseState>,
    ) -> CallOutcome<()> {
        let mut warm = match self.acquire().await {
            Ok(w) => w,
            Err(e) => {
                return CallOutcome {
                    result: Err(e),
                    calls: Vec::new(),
                };
            }
        };
        let (Some(rq), Some(rs)) = (req.take(), resp.take()) else {
            return CallOutcome {
                result: Err(FilterFailure::Trap(
                    "request or response already taken".into(),
                )),
                calls: Vec::new(),
            };
        };
        warm.store.data_mut().calls.clear();
        let table = &mut warm.store.data_mut().table;
        let (Ok(hq), Ok(hs)) = (table.push(rq), table.push(rs)) else {
            return CallOutcome {
                result: Err(FilterFailure::Trap("resource table full".into())),
                calls: Vec::new(),
            };
        };
        warm.store.set_epoch_deadline(ticks(self.settings.timeout));
        warm.store.data_mut().start_call(self.settings.timeout);
        let result = warm
            .filter
            .call_on_response(
                &mut warm.store,
                Resource::new_borrow(hq.rep()),
                Resource::new_borrow(hs.rep()),
            )
            .await;
        let table = &mut warm.store.data_mut().table;
        let back_q = table.delete(hq);
        let back_s = table.delete(hs);
        let calls = std::mem::take(&mut warm.store.data_mut().calls);
        match (back_q, back_s) {
            (Ok(q), Ok(s)) => {
                *req = Some(q);
                *resp = Some(s);
            }
            _ => {
                return CallOutcome {
                    result: Err(FilterFailure::Trap(
                        "request or response handle lost".into(),
                    )),
                    calls,
                };
            }
        }
        let result = result.map_err(|e| FilterFailure::from_error(&e));
        if result.is_ok() {
            self.release(warm);
        }
        CallOutcome { result, calls }
    }
}
