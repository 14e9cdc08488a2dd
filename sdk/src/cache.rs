//! A shared cache of bytes with a time to live, namespaced by the gateway like counters.
//!
//! ```
//! # use ferrox_sdk::cache;
//! cache::set("token:abc", b"alice", 30_000)?;
//! assert_eq!(cache::get("token:abc")?.as_deref(), Some(&b"alice"[..]));
//! # Ok::<(), String>(())
//! ```

use crate::backend;

/// The value for `key`, if present and not expired.
///
/// # Errors
///
/// The state store's error.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    backend::cache_get(key)
}

/// Store `value` under `key` for `ttl_ms` milliseconds.
///
/// # Errors
///
/// The state store's error, or a value the gateway refuses (too large).
pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
    backend::cache_set(key, value, ttl_ms)
}
