//! Metrics exported on the gateway's `/metrics`, labelled with the plugin's name.

use crate::backend;

/// Add `value` to counter `name`.
pub fn counter_add(name: &str, value: u64) {
    backend::counter_add(name, value);
}

/// Record `value` in histogram `name`.
pub fn histogram_observe(name: &str, value: f64) {
    backend::histogram_observe(name, value);
}
