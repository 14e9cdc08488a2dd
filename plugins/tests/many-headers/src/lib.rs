//! Test guest `many-headers`: `on_request` tries to set 10 000 distinct request headers (the
//! gateway caps how many a filter may add; refusals are ignored) and continues. Imports no host
//! service.

use ferrox_sdk::{Filter, Flow, Request};

/// How many headers `on_request` tries to set.
pub const ATTEMPTS: usize = 10_000;

/// Floods the request with headers.
pub struct ManyHeaders;

impl Filter for ManyHeaders {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(ManyHeaders)
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        for i in 0..ATTEMPTS {
            // Refusals past the gateway's cap are expected.
            let _ = req.set_header(&format!("x-flood-{i}"), "v");
        }
        Flow::Continue
    }
}

ferrox_sdk::export_filter!(ManyHeaders);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrox_sdk::testing::{self, TestRequest};

    #[test]
    fn the_cap_holds_and_the_request_continues() {
        let req = TestRequest::get("/").header("x-original", "1");
        assert_eq!(testing::run_request(&ManyHeaders, &req), Flow::Continue);
        assert_eq!(req.headers().len(), ferrox_sdk::MAX_HEADERS);
        assert_eq!(req.request().header("x-original").as_deref(), Some("1"));
    }
}
