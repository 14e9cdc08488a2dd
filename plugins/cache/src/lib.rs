//! Built-in filter `cache`: response caching. The filter decides the key and the policy; the
//! gateway keeps the bytes (in-process or in Redis, as `state` says) and serves hits itself, so
//! bodies never enter the filter.
//!
//! ```yaml
//! filters:
//!   - plugin: key-auth        # auth first: a hit never skips it
//!   - plugin: cache
//!     config:
//!       ttl: 5m
//!       vary: [accept, accept-language]
//! ```
//!
//! # Configuration
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `ttl` | `60s` | how long a response is kept when the upstream does not say (`s-maxage` / `max-age`); a duration like `"30s"`, `"5m"`, `"1h"` |
//! | `vary` | `[]` | request headers whose values are part of the key (up to 16) |
//! | `statuses` | `[200]` | statuses that may be stored; allowed: 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501 (cacheable by default in HTTP; not 206) |
//! | `max_body_bytes` | `1048576` | larger bodies are not stored (at most 8 MiB) |
//! | `store_set_cookie` | `false` | store responses that carry `Set-Cookie` |
//!
//! Unknown fields are refused, naming the field.
//!
//! # Behaviour
//!
//! - **What is looked up.** GET and HEAD requests only; every other method is a `BYPASS`. The
//!   key is made of the method (the gateway adds it), the `Host` header (lowercased), the path,
//!   the query string (as sent) and the values of the `vary` headers; the gateway hashes it and
//!   namespaces it per plugin and route.
//! - **Hits** are answered by the gateway with the stored status, headers and body, plus `Age`
//!   (the upstream's `Age` plus the seconds spent in the cache) and `X-Cache-Status: HIT`.
//!   Filters after `cache` on the route and the upstream are skipped; filters before it (auth,
//!   rate limit) ran and their response hooks run. Misses carry `X-Cache-Status: MISS`; other
//!   methods, and any request while the state store fails, `BYPASS` (never an error).
//! - **What is stored**: the upstream's response to a miss, when all of these hold: its status
//!   is in `statuses`; `Cache-Control` has none of `no-store`, `no-cache`, `private` (this is a
//!   shared cache that does not revalidate); it has no `Set-Cookie` (unless
//!   `store_set_cookie`); its `Vary` is not `*` and names only headers listed in `vary` (else
//!   the key could not tell the variants apart: add e.g. `accept-encoding` to `vary`); when the
//!   request carried `Authorization`, the response says `public`, `s-maxage` or
//!   `must-revalidate` (RFC 9111 §3.5). The gateway then stores it once the whole body reached
//!   the client, and only if it is at most `max_body_bytes`: truncated, aborted or larger
//!   bodies are never stored.
//! - **For how long**: `s-maxage`, else `max-age`, less the upstream's `Age`; a response that is
//!   already stale (0 or less) is not stored. Without either, `ttl`. `Expires` is not read:
//!   upstreams that want a lifetime give `max-age`.
//! - Request `Cache-Control` from clients is ignored (as shared caches commonly do), so a
//!   client cannot force a gateway-wide miss storm.
//! - Metrics: `stored` (responses marked storable) and `not_stored` (misses the policy kept out);
//!   the gateway counts lookups in `ferrox_cache_lookups_total{route,result}`.

use ferrox_sdk::{Filter, Flow, Request, Response, log, metrics, response_cache};

mod config;
mod policy;

pub use config::{CACHEABLE_STATUSES, Config};
pub use policy::{CacheControl, Decision, decide};

/// Request-context key set when the request carried `Authorization`.
const AUTHORIZED: &str = "authorized";

/// The filter: its parsed configuration.
pub struct Cache {
    config: Config,
}

impl Filter for Cache {
    fn init(config: &str) -> Result<Self, String> {
        Ok(Self {
            config: Config::parse(config)?,
        })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let method = req.method();
        if method != "GET" && method != "HEAD" {
            response_cache::bypass(req);
            return Flow::Continue;
        }
        if req.header("authorization").is_some() {
            req.set_context(AUTHORIZED, "1");
        }
        if let Err(e) = response_cache::lookup(req, &self.key(req)) {
            log::debug(&format!("cache lookup refused: {e}"));
            response_cache::bypass(req);
        }
        Flow::Continue
    }

    fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        if resp.header("x-cache-status").as_deref() != Some("MISS") {
            return;
        }
        let facts = policy::Facts {
            status: resp.status(),
            cache_control: resp.header_all("cache-control"),
            vary: resp.header_all("vary"),
            age: resp.header("age"),
            set_cookie: resp.header("set-cookie").is_some(),
            authorized: req.context(AUTHORIZED).is_some(),
        };
        match decide(&self.config, &facts) {
            Decision::Store { ttl_ms } => {
                match response_cache::store(req, resp, ttl_ms, self.config.max_body_bytes) {
                    Ok(()) => metrics::counter_add("stored", 1),
                    Err(e) => log::debug(&format!("response not stored: {e}")),
                }
            }
            Decision::Skip(why) => {
                metrics::counter_add("not_stored", 1);
                log::debug(&format!("response not stored: {why}"));
            }
        }
    }
}

impl Cache {
    /// The key: host, path, query and the vary headers, each length-prefixed so that no two
    /// different requests write the same text.
    fn key(&self, req: &Request<'_>) -> String {
        let mut key = String::new();
        let mut part = |text: &str| {
            key.push_str(&text.len().to_string());
            key.push(':');
            key.push_str(text);
        };
        part(&req.header("host").unwrap_or_default().to_ascii_lowercase());
        part(&req.path());
        match req.query() {
            Some(q) => part(&format!("?{q}")),
            None => part(""),
        }
        for name in &self.config.vary {
            // Header values hold no newline: an absent header differs from an empty one.
            let values = req.header_all(name);
            part(&if values.is_empty() {
                "\n".to_owned()
            } else {
                values.join("\n")
            });
        }
        key
    }
}

ferrox_sdk::export_filter!(Cache);

#[cfg(test)]
mod tests;
