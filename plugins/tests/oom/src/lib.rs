//! Test guest `oom`: `on_request` allocates without bound (the gateway's memory cap must stop
//! it). Never call it natively.

use std::hint::black_box;

use ferrox_sdk::{Filter, Flow, Request};

/// Allocates 1 MiB blocks forever on every request.
pub struct Oom;

impl Filter for Oom {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(Oom)
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Filled, so the pages are really touched.
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }
}

ferrox_sdk::export_filter!(Oom);
