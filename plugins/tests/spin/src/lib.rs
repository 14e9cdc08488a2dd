//! Test guest `spin`: `on_request` never returns (the gateway's deadline must stop it).
//! Never call it natively.

use std::hint::black_box;

use ferrox_sdk::{Filter, Flow, Request};

/// Loops forever on every request.
pub struct Spin;

impl Filter for Spin {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }
}

ferrox_sdk::export_filter!(Spin);
