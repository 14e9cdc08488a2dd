//! Whether and for how long a response may be stored: pure functions of the configuration and
//! the response's headers.

use crate::config::Config;

/// What the filter read from a response (and its request).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Status code.
    pub status: u16,
    /// Every `Cache-Control` value.
    pub cache_control: Vec<String>,
    /// Every `Vary` value.
    pub vary: Vec<String>,
    /// The `Age` value, if any.
    pub age: Option<String>,
    /// Whether it sets a cookie.
    pub set_cookie: bool,
    /// Whether the request carried `Authorization`.
    pub authorized: bool,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store for this long.
    Store {
        /// Time to live, ms.
        ttl_ms: u64,
    },
    /// Do not store, and why.
    Skip(&'static str),
}

/// The `Cache-Control` directives the cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`
    pub no_store: bool,
    /// `no-cache` (also with field names: this cache does not revalidate)
    pub no_cache: bool,
    /// `private` (also with field names)
    pub private: bool,
    /// `public`
    pub public: bool,
    /// `must-revalidate`
    pub must_revalidate: bool,
    /// `max-age`, seconds
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds
    pub s_maxage: Option<u64>,
}

impl CacheControl {
    /// Parse every `Cache-Control` value (directives are case-insensitive; a malformed
    /// `max-age` counts as 0, as RFC 9111 §4.2.1 asks: stale).
    pub fn parse(values: &[String]) -> Self {
        let mut cc = Self::default();
        for directive in values.iter().flat_map(|v| split_directives(v)) {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            match name.to_ascii_lowercase().as_str() {
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                // The first occurrence wins; later duplicates are ignored.
                "max-age" => cc.max_age = cc.max_age.or(Some(seconds())),
                "s-maxage" => cc.s_maxage = cc.s_maxage.or(Some(seconds())),
                _ => {}
            }
        }
        cc
    }
}

/// Split a header value on commas outside quoted strings.
fn split_directives(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Decide whether a response to a miss is stored, and for how long.
pub fn decide(config: &Config, facts: &Facts) -> Decision {
    if !config.statuses.contains(&facts.status) {
        return Decision::Skip("status not in `statuses`");
    }
    let cc = CacheControl::parse(&facts.cache_control);
    if cc.no_store {
        return Decision::Skip("Cache-Control: no-store");
    }
    if cc.private {
        return Decision::Skip("Cache-Control: private");
    }
    if cc.no_cache {
        return Decision::Skip("Cache-Control: no-cache (this cache does not revalidate)");
    }
    if facts.set_cookie && !config.store_set_cookie {
        return Decision::Skip("Set-Cookie (enable `store_set_cookie` to store such responses)");
    }
    for name in facts.vary.iter().flat_map(|v| v.split(',')) {
        let name = name.trim().to_ascii_lowercase();
        if name == "*" {
            return Decision::Skip("Vary: *");
        }
        if !name.is_empty() && !config.vary.contains(&name) {
            return Decision::Skip("Vary names a header not in `vary`");
        }
    }
    if facts.authorized && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return Decision::Skip(
            "the request carried Authorization and the response is not marked public",
        );
    }
    let ttl_ms = match cc.s_maxage.or(cc.max_age) {
        Some(lifetime) => {
            let age = facts
                .age
                .as_deref()
                .and_then(|a| a.trim().parse::<u64>().ok())
                .unwrap_or(0);
            lifetime.saturating_sub(age).saturating_mul(1000)
        }
        None => config.ttl_ms,
    };
    if ttl_ms == 0 {
        return Decision::Skip("already stale (max-age minus Age is 0)");
    }
    Decision::Store { ttl_ms }
}
