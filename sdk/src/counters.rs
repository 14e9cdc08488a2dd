//! Shared counters with fixed windows, local to the gateway process or in Redis as the operator
//! configured. Keys are namespaced by the gateway per plugin and route.
//!
//! ```
//! # use ferrox_sdk::counters;
//! // At most 10 requests per client per second.
//! let c = counters::incr("ip:203.0.113.7", 1, 1_000)?;
//! let allowed = c.count <= 10;
//! # assert!(allowed);
//! # Ok::<(), String>(())
//! ```

use crate::backend;

/// A counter's value after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The count in the current window, after the update.
    pub count: i64,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// Add `delta` to `key` in a fixed window of `window_ms` milliseconds. Windows are aligned to
/// multiples of their length since the Unix epoch, so every gateway instance agrees.
///
/// # Errors
///
/// The state store's error (e.g. Redis unreachable); decide whether to fail open or closed.
pub fn incr(key: &str, delta: i64, window_ms: u64) -> Result<Counter, String> {
    backend::incr(key, delta, window_ms)
}
