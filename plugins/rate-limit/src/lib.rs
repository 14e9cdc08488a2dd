//! Built-in filter `rate-limit`: fixed- and sliding-window rate limiting with the IETF
//! `RateLimit` / `RateLimit-Policy` headers.
//!
//! ```yaml
//! filters:
//!   - plugin: rate-limit
//!     config:
//!       limits:
//!         - { requests: 10, window: 1s, name: per-second }
//!         - { requests: 1000, window: 1h }
//!       by: header
//!       header: x-user
//! ```
//!
//! # Configuration
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `limits` | required | 1 to 16 limits; a request counts against every one and is refused when any is exceeded |
//! | `limits[].requests` | required | requests admitted per window (a positive integer) |
//! | `limits[].window` | required | window length: a whole number of seconds, written `"30s"`, `"1m"`, `"1h"`, `"1d"` (or `"5000ms"`) |
//! | `limits[].name` | `<requests>-per-<seconds>s` | name shown in the `RateLimit` headers (1–64 printable ASCII characters, unique) |
//! | `by` | `ip` | what is counted: `ip` (the client address the gateway determined), `consumer` (the consumer an auth filter earlier in the list set), `header` (the value of `header`), `route` (everything on the route together) |
//! | `header` | — | the header to count by; required with `by: header`, refused otherwise |
//! | `algorithm` | `fixed` | `fixed` or `sliding` (below) |
//! | `policy` | `fail_open` | when the counter store fails: `fail_open` lets the request through without `RateLimit` headers, `fail_closed` answers `503 {"error":"rate_limit_unavailable"}` |
//!
//! Unknown fields are refused, naming the field.
//!
//! # Behaviour
//!
//! - **Counting key.** `by: consumer` without a consumer (no auth filter before this one, or it
//!   let the request through anonymously) and `by: header` without the header (or with an empty
//!   value) fall back to the client address, saying so in a debug log. Counters are namespaced by
//!   the gateway per plugin and route; within that, per limit (name and window), algorithm and
//!   key. Header values longer than 128 bytes are counted under a 64-bit hash of the value.
//! - **Fixed windows** are aligned to multiples of the window since the Unix epoch (so every
//!   gateway instance agrees); a request is refused when the count in the current window,
//!   including it, is over `requests`.
//! - **Sliding windows** estimate the count over the last `window` from two fixed windows:
//!   `previous × (window − elapsed) / window + current`, and refuse a request when the estimate,
//!   including it, is over `requests`. The approximation assumes the previous window's requests
//!   were spread evenly over it: a burst at the very end of the previous window is under-weighted
//!   (at most the limit plus that burst's weighted share pass in one window length), and a burst
//!   early in it is over-weighted (a client may have to wait up to two windows after filling the
//!   current one). It needs two counters per key and one store round trip per limit.
//! - **Refused requests are not counted**: when a request is refused, its increments are taken
//!   back (one more counter update per limit, on the refusal path only), so a client that keeps
//!   sending over the limit still gets `requests` per window, and a request refused by one limit
//!   does not use up another. Admission stays exact under concurrency: the store's increments
//!   are atomic, and an increment not yet taken back can only make a concurrent request be
//!   refused, never let one through. (One narrow exception: a take-back that lands in the next
//!   window because the window ended in between is undone with a second update, and a request
//!   arriving between the two could be admitted once over the limit.)
//! - **Refusal**: `429` with `Retry-After` (seconds, rounded up, at least 1: until every limit
//!   that has no room left would admit one more request, assuming no other traffic) and the JSON
//!   body `{"error":"rate_limited","message":…,"status":429,"request_id":…,"limit":…,"retry_after":…}`.
//! - **Headers** (draft-ietf-httpapi-ratelimit-headers, structured-field form) on every
//!   response of the route — the upstream's and the 429 — replacing any the upstream sent:
//!   `RateLimit-Policy: "<name>";q=<requests>;w=<window seconds>` listing every limit, and
//!   `RateLimit: "<name>";r=<remaining>;t=<seconds>` for the most restrictive limit (the lowest
//!   remaining; on a tie the longest `t`). `t` is the time until the window resets, or, when
//!   nothing is left, until one more request would be admitted (the `Retry-After` value).
//! - **Store errors**: one warn log per request and the metric `store_errors`; then `policy`
//!   applies. Refusals are counted in the metric `limited`.
//! - Two `rate-limit` filters on one route share their request context, so the headers show the
//!   later filter's numbers; put several limits in one filter instead.

use ferrox_sdk::counters;
use ferrox_sdk::serde_json::json;
use ferrox_sdk::{Filter, Flow, Reply, Request, Response, log, metrics};

mod config;
mod window;

pub use config::{Algorithm, By, Config, Limit, Policy, parse_duration_ms};
use window::{Hit, Standing};

/// Request-context key carrying the header values from `on_request` to `on_response`:
/// `"<RateLimit-Policy>\n<RateLimit>"` (header values cannot hold a newline).
const CONTEXT: &str = "headers";
/// Header values longer than this are counted under their hash.
const MAX_RAW_KEY: usize = 128;

/// The filter: its parsed configuration and the precomputed `RateLimit-Policy` value.
pub struct RateLimit {
    config: Config,
    policy_header: String,
}

impl Filter for RateLimit {
    fn init(config: &str) -> Result<Self, String> {
        let config = Config::parse(config)?;
        let policy_header = config
            .limits
            .iter()
            .map(|l| format!("{};q={};w={}", sf_string(&l.name), l.requests, l.window_s()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Self {
            config,
            policy_header,
        })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let subject = self.subject(req);
        let mut hits = Vec::with_capacity(self.config.limits.len());
        for limit in &self.config.limits {
            match self.count(limit, &subject, 1) {
                Ok(hit) => hits.push(hit),
                Err(e) => return self.store_failed(req, &subject, hits.len(), &e),
            }
        }

        let refused = self
            .config
            .limits
            .iter()
            .zip(&hits)
            .any(|(l, h)| h.exceeds(l.requests, l.window_ms));
        if refused {
            for (limit, hit) in self.config.limits.iter().zip(hits.iter_mut()) {
                self.take_back(limit, &subject, hit);
                *hit = hit.without_this_request();
            }
        }

        let standings: Vec<Standing> = self
            .config
            .limits
            .iter()
            .zip(&hits)
            .map(|(l, h)| h.standing(l.requests, l.window_ms))
            .collect();
        let (tightest, now) = standings
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                a.remaining
                    .cmp(&b.remaining)
                    .then(b.reset_s.cmp(&a.reset_s))
            })
            .expect("at least one limit");
        let ratelimit = format!(
            "{};r={};t={}",
            sf_string(&self.config.limits[tightest].name),
            now.remaining,
            now.reset_s
        );
        req.set_context(CONTEXT, &format!("{}\n{ratelimit}", self.policy_header));
        if !refused {
            return Flow::Continue;
        }

        // The limit that keeps the client waiting longest decides Retry-After.
        let (blocking, wait_ms) = standings
            .iter()
            .enumerate()
            .filter(|(_, s)| s.remaining == 0)
            .map(|(i, s)| (i, s.wait_ms))
            .max_by_key(|&(_, wait)| wait)
            .unwrap_or((tightest, now.wait_ms));
        let retry_after = wait_ms.div_ceil(1000).max(1);
        let name = &self.config.limits[blocking].name;
        metrics::counter_add("limited", 1);
        Reply::new(429)
            .header("retry-after", retry_after.to_string())
            .header("ratelimit-policy", self.policy_header.clone())
            .header("ratelimit", ratelimit)
            .json(&json!({
                "error": "rate_limited",
                "message": format!("rate limit {name:?} exceeded; retry in {retry_after} s"),
                "status": 429,
                "request_id": req.request_id(),
                "limit": name,
                "retry_after": retry_after,
            }))
            .into()
    }

    fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        // Absent when the counter store failed (fail_open): no numbers to show.
        let Some(carried) = req.context(CONTEXT) else {
            return;
        };
        let Some((policy, ratelimit)) = carried.split_once('\n') else {
            return;
        };
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", ratelimit)] {
            if let Err(e) = resp.set_header(name, value) {
                log::debug(&format!("cannot set {name}: {e}"));
            }
        }
    }
}

impl RateLimit {
    /// What this request is counted by: `ip:…`, `consumer:…`, `header:…` or `route`.
    fn subject(&self, req: &Request<'_>) -> String {
        match &self.config.by {
            By::Ip => format!("ip:{}", req.client_ip()),
            By::Route => "route".to_owned(),
            By::Consumer => match req.consumer().filter(|c| !c.is_empty()) {
                Some(consumer) => format!("consumer:{consumer}"),
                None => {
                    log::debug(
                        "by consumer: the request has no consumer (no auth filter before \
                         rate-limit?); counting it by client ip",
                    );
                    format!("ip:{}", req.client_ip())
                }
            },
            By::Header(name) => match req.header(name).filter(|v| !v.is_empty()) {
                Some(value) if value.len() <= MAX_RAW_KEY => format!("header:{value}"),
                Some(value) => format!("header#{:016x}:{}", fnv1a(&value), value.len()),
                None => {
                    log::debug(&format!(
                        "by header: the request has no {name} header; counting it by client ip"
                    ));
                    format!("ip:{}", req.client_ip())
                }
            },
        }
    }

    /// The store key of `limit` for `subject`.
    fn key(&self, limit: &Limit, subject: &str) -> String {
        let algorithm = match self.config.algorithm {
            Algorithm::Fixed => 'f',
            Algorithm::Sliding => 's',
        };
        format!(
            "{algorithm}:{}:{}:{}:{subject}",
            limit.window_ms,
            limit.name.len(),
            limit.name
        )
    }

    /// Add `delta` to the counter of `limit` for `subject`.
    fn count(&self, limit: &Limit, subject: &str, delta: i64) -> Result<Hit, String> {
        let key = self.key(limit, subject);
        match self.config.algorithm {
            Algorithm::Fixed => counters::incr(&key, delta, limit.window_ms).map(|c| Hit::Fixed {
                count: c.count,
                reset_ms: c.reset_ms,
            }),
            Algorithm::Sliding => {
                counters::incr_sliding(&key, delta, limit.window_ms).map(Hit::Sliding)
            }
        }
    }

    /// Take back this request's increment of `limit` (it was refused). If the window rolled over
    /// between the two updates, the decrement landed in the new window: put it back there.
    fn take_back(&self, limit: &Limit, subject: &str, hit: &Hit) {
        match self.count(limit, subject, -1) {
            Ok(after) if after.reset_ms() > hit.reset_ms() => {
                let _ = self.count(limit, subject, 1);
            }
            Ok(_) => {}
            Err(e) => log::debug(&format!(
                "cannot take back a refused request from {:?}: {e}",
                limit.name
            )),
        }
    }

    /// The counter store failed after `counted` limits were updated: apply the policy.
    fn store_failed(&self, req: &Request<'_>, subject: &str, counted: usize, error: &str) -> Flow {
        metrics::counter_add("store_errors", 1);
        match self.config.policy {
            Policy::FailOpen => {
                log::warn(&format!(
                    "counter store unavailable ({error}); policy fail_open: request not limited"
                ));
                Flow::Continue
            }
            Policy::FailClosed => {
                log::warn(&format!(
                    "counter store unavailable ({error}); policy fail_closed: answering 503"
                ));
                // The request is refused: best effort to take back what was counted.
                for limit in &self.config.limits[..counted] {
                    let _ = self.count(limit, subject, -1);
                }
                Reply::new(503)
                    .json(&json!({
                        "error": "rate_limit_unavailable",
                        "message": "the rate limit state is unavailable",
                        "status": 503,
                        "request_id": req.request_id(),
                    }))
                    .into()
            }
        }
    }
}

/// A structured-field String (RFC 8941 §3.3.3): quoted, with `"` and `\` escaped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// 64-bit FNV-1a (bounds the key size of long header values).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

ferrox_sdk::export_filter!(RateLimit);

#[cfg(test)]
mod tests;
