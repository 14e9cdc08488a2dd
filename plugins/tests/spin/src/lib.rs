//! Test guest `spin`: with no config, `on_request` never returns (the gateway's deadline must
//! stop it). With `{"incr": true, "work_ms": N}` it first updates a counter (host I/O, which
//! the test makes slow) and then computes for `N` ms of wall time before continuing.
//! Never call it natively.

use std::hint::black_box;

use ferrox_sdk::{Filter, Flow, Request, clock, counters};

/// Loops forever, or does a counter update and then `work_ms` of work.
pub struct Spin {
    incr: bool,
    work_ms: Option<u64>,
}

impl Filter for Spin {
    fn init(config: &str) -> Result<Self, String> {
        let v: ferrox_sdk::serde_json::Value = if config.trim().is_empty() {
            ferrox_sdk::serde_json::Value::Null
        } else {
            ferrox_sdk::serde_json::from_str(config).map_err(|e| e.to_string())?
        };
        Ok(Spin {
            incr: v["incr"].as_bool().unwrap_or(false),
            work_ms: v["work_ms"].as_u64(),
        })
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        if self.incr {
            // The outcome does not matter here, only the time the call takes.
            let _ = counters::incr("spin", 1, 60_000);
        }
        let mut n: u64 = 0;
        let Some(work_ms) = self.work_ms else {
            loop {
                n = black_box(n.wrapping_add(1));
            }
        };
        let start = clock::now_ms();
        while clock::now_ms().saturating_sub(start) < work_ms {
            n = black_box(n.wrapping_add(1));
        }
        Flow::Continue
    }
}

ferrox_sdk::export_filter!(Spin);
