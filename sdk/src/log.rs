//! Logging into the gateway's log, tagged there with plugin, route and request id.
//!
//! ```
//! ferrox_sdk::log::info("key accepted");
//! ferrox_sdk::log::warn(&format!("unknown key prefix {}", "ab12"));
//! ```

use std::fmt;

use crate::backend;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// A failure.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        })
    }
}

/// Write one log line at `level`. The gateway may shorten very long messages.
pub fn log(level: Level, message: &str) {
    backend::log(level, message);
}

/// Write a [`Level::Trace`] line.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Write a [`Level::Debug`] line.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Write a [`Level::Info`] line.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Write a [`Level::Warn`] line.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Write a [`Level::Error`] line.
pub fn error(message: &str) {
    log(Level::Error, message);
}
