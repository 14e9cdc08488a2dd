//! The filter's configuration: strict parsing of the route's JSON (unknown fields are errors).

use ferrox_sdk::config::{header_name, parse_duration_ms};
use ferrox_sdk::serde_json::{self, Map, Value};

/// Fields the configuration may hold.
const FIELDS: &str = "ttl, vary, statuses, max_body_bytes, store_set_cookie";
/// Statuses that may be configured as cacheable: those HTTP defines as cacheable by default
/// (RFC 9110 §15.1), less `206` (partial content: the gateway stores whole bodies only).
pub const CACHEABLE_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
/// The largest body the gateway keeps.
pub const MAX_BODY_LIMIT: u64 = 8 * 1024 * 1024;
/// Most vary headers (each adds to every key).
pub const MAX_VARY: usize = 16;

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Time to live when the upstream gives no `s-maxage` / `max-age`.
    pub ttl_ms: u64,
    /// Request headers whose values are part of the key (lowercase).
    pub vary: Vec<String>,
    /// Statuses whose responses may be stored.
    pub statuses: Vec<u16>,
    /// Bodies larger than this are not stored.
    pub max_body_bytes: u64,
    /// Store responses that carry `Set-Cookie` (off by default: cookies are per client).
    pub store_set_cookie: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl_ms: 60_000,
            vary: Vec::new(),
            statuses: vec![200],
            max_body_bytes: 1024 * 1024,
            store_set_cookie: false,
        }
    }
}

impl Config {
    /// Parse and validate the route's JSON configuration (`{}` or empty means the defaults).
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
        };
        let map = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(format!("the configuration must be a map ({FIELDS})")),
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !FIELDS.split(", ").any(|f| f == k.as_str()))
        {
            return Err(format!(
                "unknown field `{unknown}` (expected one of: {FIELDS})"
            ));
        }
        let mut config = Config::default();
        match map.get("ttl") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                config.ttl_ms = parse_duration_ms(s).map_err(|e| format!("`ttl`: {e}"))?;
            }
            Some(v) => {
                return Err(format!(
                    "`ttl` must be a duration string like \"60s\" (got {v})"
                ));
            }
        }
        match map.get("vary") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if items.len() > MAX_VARY {
                    return Err(format!("`vary` holds at most {MAX_VARY} headers"));
                }
                for (i, item) in items.iter().enumerate() {
                    let name = item
                        .as_str()
                        .ok_or_else(|| format!("`vary[{i}]` must be a header name (got {item})"))?;
                    let name = header_name(name).map_err(|e| format!("`vary[{i}]`: {e}"))?;
                    if !config.vary.contains(&name) {
                        config.vary.push(name);
                    }
                }
            }
            Some(v) => return Err(format!("`vary` must be a list of header names (got {v})")),
        }
        match map.get("statuses") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if !items.is_empty() => {
                config.statuses.clear();
                for (i, item) in items.iter().enumerate() {
                    let status = item
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .filter(|s| CACHEABLE_STATUSES.contains(s))
                        .ok_or_else(|| {
                            format!(
                                "`statuses[{i}]` must be one of {CACHEABLE_STATUSES:?} (got {item})"
                            )
                        })?;
                    if !config.statuses.contains(&status) {
                        config.statuses.push(status);
                    }
                }
            }
            Some(v) => {
                return Err(format!(
                    "`statuses` must be a non-empty list of status codes (got {v})"
                ));
            }
        }
        match map.get("max_body_bytes") {
            None | Some(Value::Null) => {}
            Some(v) => {
                config.max_body_bytes = v
                    .as_u64()
                    .filter(|n| (1..=MAX_BODY_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("`max_body_bytes` must be an integer from 1 to {MAX_BODY_LIMIT} (got {v})")
                    })?;
            }
        }
        match map.get("store_set_cookie") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => config.store_set_cookie = *b,
            Some(v) => {
                return Err(format!(
                    "`store_set_cookie` must be true or false (got {v})"
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_option() {
        assert_eq!(Config::parse("{}"), Ok(Config::default()));
        assert_eq!(Config::parse(""), Ok(Config::default()));
        let c = Config::parse(
            r#"{"ttl":"5m","vary":["Accept","accept-language","ACCEPT"],"statuses":[200,404],
                "max_body_bytes":1000,"store_set_cookie":true}"#,
        )
        .expect("valid");
        assert_eq!(
            c,
            Config {
                ttl_ms: 300_000,
                vary: vec!["accept".into(), "accept-language".into()],
                statuses: vec![200, 404],
                max_body_bytes: 1000,
                store_set_cookie: true,
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (config, expected) in [
            (r#"{"ttl":60}"#, "`ttl` must be a duration string"),
            (r#"{"ttl":"0s"}"#, "`ttl`: \"0s\" must be longer than zero"),
            (r#"{"ttl":"1x"}"#, "`ttl`: \"1x\" is not a duration"),
            (r#"{"vary":"accept"}"#, "`vary` must be a list"),
            (
                r#"{"vary":["bad name"]}"#,
                "`vary[0]`: not a valid header name",
            ),
            (r#"{"vary":[1]}"#, "`vary[0]` must be a header name"),
            (r#"{"statuses":[500]}"#, "`statuses[0]` must be one of"),
            (r#"{"statuses":[206]}"#, "`statuses[0]` must be one of"),
            (r#"{"statuses":[]}"#, "non-empty list"),
            (
                r#"{"max_body_bytes":0}"#,
                "`max_body_bytes` must be an integer from 1",
            ),
            (
                r#"{"max_body_bytes":9000000}"#,
                "`max_body_bytes` must be an integer from 1",
            ),
            (
                r#"{"store_set_cookie":"yes"}"#,
                "`store_set_cookie` must be true or false",
            ),
            (r#"{"ttl_s":1}"#, "unknown field `ttl_s`"),
            ("[]", "must be a map"),
            ("{", "invalid JSON"),
        ] {
            let e = Config::parse(config).expect_err(config);
            assert!(e.contains(expected), "{config}: {e}");
        }
    }
}
