//! Wall-clock time from the gateway (in tests: the harness's settable clock).

use crate::backend;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    backend::now_ms()
}
