//! Test guest `trap`: `on_request` panics, which traps the instance.

use ferrox_sdk::{Filter, Flow, Request};

/// Panics on every request.
pub struct Trap;

impl Filter for Trap {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Trap)
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        panic!("boom")
    }
}

ferrox_sdk::export_filter!(Trap);
