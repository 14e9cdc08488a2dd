//! The process's one Wasm engine: component model, pooling allocator, epoch interruption.
//! Compiled components are cached on disk keyed by content hash and engine compatibility, so a
//! restart skips compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// One epoch tick; filter deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory any instance may have (per-filter caps are lower).
pub const MAX_MEMORY: usize = 256 * 1024 * 1024;

/// The shared engine and its epoch ticker.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component, or not compilable.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
}

impl PluginEngine {
    /// The process-wide engine (created on first use, with its ticker thread).
    pub fn global() -> Result<Self, String> {
        static ENGINE: OnceLock<Result<PluginEngine, String>> = OnceLock::new();
        ENGINE.get_or_init(Self::create).clone()
    }

    fn create() -> Result<Self, String> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(2000)
            .total_core_instances(4000)
            .total_memories(2000)
            .total_tables(4000)
            .total_stacks(2000)
            .max_memory_size(MAX_MEMORY)
            .max_core_instances_per_component(50)
            .max_memories_per_component(10)
            .max_tables_per_component(20)
            .table_elements(100_000)
            .max_component_instance_size(1 << 20)
            // Keep pages resident between reuses: without it, two threads instantiating
            // concurrently fault pages in and out (DESIGN §5).
            .linear_memory_keep_resident(64 * 1024)
            .table_keep_resident(16 * 1024);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false)
            .memory_reservation(1 << 30)
            .memory_guard_size(32 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot create the Wasm engine: {e:#}"))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("ferrox-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        Ok(Self {
            engine,
            cache_dir: default_cache_dir(),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where compiled components are cached (`None` when caching is off).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Compile `bytes` (or load the cached artifact for them).
    pub fn load(&self, bytes: &[u8]) -> Result<(Component, String), LoadError> {
        let digest = hex::encode(Sha256::digest(bytes));
        if let Some(dir) = &self.cache_dir {
            let path = dir.join(format!("{digest}-{}.cwasm", self.compat_key()));
            if let Some(c) = self.load_cached(&path) {
                return Ok((c, digest));
            }
            let compiled = self
                .engine
                .precompile_component(bytes)
                .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
            if let Err(e) = write_atomic(&path, &compiled) {
                tracing::debug!(error = %e, path = %path.display(), "cannot cache a compiled plugin");
            }
            return deserialize(&self.engine, &compiled).map(|c| (c, digest));
        }
        Component::new(&self.engine, bytes)
            .map(|c| (c, digest))
            .map_err(|e| LoadError::Compile(format!("{e:#}")))
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        match deserialize(&self.engine, &bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(error = %e, path = %path.display(), "ignoring an unusable cached plugin");
                None
            }
        }
    }

    fn compat_key(&self) -> String {
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// Deserialize an artifact this process (or a previous run of the same binary) compiled.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: `Component::deserialize` requires trusted input. The bytes are either what
    // `precompile_component` returned just now, or a file in Ferrox's private cache directory
    // (created 0700 by this process) named by the source's SHA-256 and this engine's
    // compatibility hash. wasmtime additionally checks the artifact's header and engine
    // compatibility before using it.
    unsafe { Component::deserialize(engine, bytes) }
        .map_err(|e| LoadError::Compile(format!("{e:#}")))
}

fn default_cache_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FERROX_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ferrox")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/ferrox")))?
        .join("plugins");
    if let Err(e) = create_private_dir(&dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "no compiled-plugin cache; plugins compile at every start");
        return None;
    }
    Some(dir)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Shared handle type for loaded components.
pub type SharedComponent = Arc<Component>;
