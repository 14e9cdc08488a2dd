//! Test guest `bench`: the smallest filters worth measuring, one per mode (used by
//! `bench/benches/filters.rs` and `bench/src/bin/filter_rss.rs`).
//!
//! Configuration: `{"mode": "noop" | "read-header" | "counter" | "set-response-header"}`.
//! - `noop`: `on_request` continues.
//! - `read-header`: `on_request` reads request header `x-user` and continues.
//! - `counter`: `on_request` calls `counters::incr("c", 1, 60000)` and continues.
//! - `set-response-header`: `on_request` continues; `on_response` sets `x-bench: 1`.
//!
//! Imports only `ferrox:filter/counters` besides the request/response types.

use std::hint::black_box;

use ferrox_sdk::serde_json::{self, Value};
use ferrox_sdk::{Filter, Flow, Request, Response, counters};

/// What the filter does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Noop,
    /// Read request header `x-user`.
    ReadHeader,
    /// Increment counter `c` in a one-minute window.
    Counter,
    /// Set response header `x-bench: 1`.
    SetResponseHeader,
}

/// The benchmark filter.
#[derive(Debug)]
pub struct Bench {
    mode: Mode,
}

impl Bench {
    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

impl Filter for Bench {
    fn init(config: &str) -> Result<Self, String> {
        let config: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let mode = match config.get("mode") {
            Some(Value::String(m)) => match m.as_str() {
                "noop" => Mode::Noop,
                "read-header" => Mode::ReadHeader,
                "counter" => Mode::Counter,
                "set-response-header" => Mode::SetResponseHeader,
                other => {
                    return Err(format!(
                        "unknown mode {other:?} (noop, read-header, counter, set-response-header)"
                    ));
                }
            },
            Some(_) => return Err("`mode` must be a string".to_owned()),
            None => return Err("`mode` is required".to_owned()),
        };
        Ok(Bench { mode })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        match self.mode {
            Mode::ReadHeader => {
                black_box(req.header("x-user"));
            }
            Mode::Counter => {
                // An unavailable counter is not this filter's business: it only measures the call.
                let _ = black_box(counters::incr("c", 1, 60_000));
            }
            Mode::Noop | Mode::SetResponseHeader => {}
        }
        Flow::Continue
    }

    fn on_response(&self, _req: &Request<'_>, resp: &mut Response<'_>) {
        if self.mode == Mode::SetResponseHeader {
            // Cannot fail for this name and value short of the header cap; nothing to report to.
            let _ = resp.set_header("x-bench", "1");
        }
    }
}

ferrox_sdk::export_filter!(Bench);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrox_sdk::testing::{self, TestRequest, TestResponse};

    fn bench(mode: &str) -> Bench {
        Bench::init(&format!(r#"{{"mode": "{mode}"}}"#)).expect("valid config")
    }

    #[test]
    fn every_mode_continues_and_does_its_one_thing() {
        testing::set_now_ms(60_000 * 1_000);
        let req = TestRequest::get("/").header("x-user", "ada");
        for mode in ["noop", "read-header", "counter", "set-response-header"] {
            let filter = bench(mode);
            assert_eq!(
                testing::run_request(&filter, &req),
                Flow::Continue,
                "{mode}"
            );
            let resp = testing::run_exchange(&filter, &req, TestResponse::new(200));
            let tagged = resp.response().header("x-bench");
            if mode == "set-response-header" {
                assert_eq!(tagged.as_deref(), Some("1"));
            } else {
                assert_eq!(tagged, None, "{mode}");
            }
        }
        // Only `counter` counts: twice (run_request, then run_exchange).
        assert_eq!(
            counters::incr("c", 0, 60_000).expect("counter").count,
            2,
            "counter mode increments once per request"
        );
        assert_eq!(req.request().header("x-user").as_deref(), Some("ada"));
    }

    #[test]
    fn modes_parse_and_bad_configs_are_refused() {
        assert_eq!(bench("noop").mode(), Mode::Noop);
        assert_eq!(bench("read-header").mode(), Mode::ReadHeader);
        assert_eq!(bench("counter").mode(), Mode::Counter);
        assert_eq!(bench("set-response-header").mode(), Mode::SetResponseHeader);
        let err = |c: &str| Bench::init(c).expect_err("refused");
        assert!(err("nope").starts_with("config is not valid JSON"));
        assert_eq!(err("{}"), "`mode` is required");
        assert_eq!(err(r#"{"mode": 1}"#), "`mode` must be a string");
        assert!(err(r#"{"mode": "fast"}"#).starts_with("unknown mode \"fast\""));
    }
}
