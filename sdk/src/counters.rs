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

/// The current and previous fixed windows of a counter, after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sliding {
    /// Count in the current window, after the update.
    pub current: i64,
    /// Count in the previous window.
    pub previous: i64,
    /// Milliseconds elapsed in the current window.
    pub elapsed_ms: u64,
    /// Milliseconds until the current window ends.
    pub reset_ms: u64,
}

impl Sliding {
    /// The sliding-window estimate over the last `window_ms`: the previous window weighted by
    /// the part of it still inside the sliding window, plus the current count.
    pub fn estimate(&self, window_ms: u64) -> f64 {
        let w = window_ms.max(1) as f64;
        let weight = (w - self.elapsed_ms.min(window_ms) as f64) / w;
        self.previous as f64 * weight + self.current as f64
    }
}

/// Like [`incr`], also returning the previous window's count (one round trip), for
/// sliding-window limits.
///
/// # Errors
///
/// The state store's error; decide whether to fail open or closed.
pub fn incr_sliding(key: &str, delta: i64, window_ms: u64) -> Result<Sliding, String> {
    backend::incr_sliding(key, delta, window_ms)
}
