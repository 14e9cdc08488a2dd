//! The filter's configuration: strict parsing of the route's JSON (unknown fields are errors)
//! and the duration syntax (`"500ms"`, `"1s"`, `"5m"`, `"1h"`, `"1d"`).

use ferrox_sdk::config::header_name;
pub use ferrox_sdk::config::parse_duration_ms;
use ferrox_sdk::serde_json::{self, Map, Value};

/// Most limits one filter may hold (each costs one counter update per request).
pub const MAX_LIMITS: usize = 16;
/// Longest limit name (it is sent in the `RateLimit` headers).
pub const MAX_NAME_LEN: usize = 64;

/// One limit: at most `requests` per `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Name shown in the `RateLimit` headers (default `<requests>-per-<seconds>s`).
    pub name: String,
    /// Requests admitted per window.
    pub requests: u64,
    /// Window length in milliseconds (a whole number of seconds).
    pub window_ms: u64,
}

impl Limit {
    /// The window in whole seconds.
    pub fn window_s(&self) -> u64 {
        self.window_ms / 1000
    }
}

/// What requests are counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// The client address the gateway determined.
    Ip,
    /// The consumer an earlier (auth) filter set; the client address without one.
    Consumer,
    /// The value of this request header (lowercase name); the client address without one.
    Header(String),
    /// Everything on the route together.
    Route,
}

/// How a window is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Fixed windows aligned to multiples of the window since the Unix epoch.
    Fixed,
    /// The fixed-window count weighted with the previous window's.
    Sliding,
}

/// What happens when the counter store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Let the request through (without RateLimit headers).
    FailOpen,
    /// Answer 503.
    FailClosed,
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The limits, in configuration order.
    pub limits: Vec<Limit>,
    /// The counting key.
    pub by: By,
    /// The window algorithm.
    pub algorithm: Algorithm,
    /// The store-failure policy.
    pub policy: Policy,
}

const TOP_FIELDS: &str = "limits, by, header, algorithm, policy";
const LIMIT_FIELDS: &str = "requests, window, name";

impl Config {
    /// Parse and validate the route's JSON configuration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("the configuration must be a map with `limits`".to_owned());
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !TOP_FIELDS.split(", ").any(|f| f == k.as_str()))
        {
            return Err(format!(
                "unknown field `{unknown}` (expected one of: {TOP_FIELDS})"
            ));
        }

        let limits = match map.get("limits") {
            None | Some(Value::Null) => {
                return Err(
                    "`limits` is required: a list like [{ requests: 100, window: 60s }]".to_owned(),
                );
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(
                    "`limits` must be a list like [{ requests: 100, window: 60s }]".to_owned(),
                );
            }
        };
        if limits.is_empty() {
            return Err("`limits` must hold at least one limit".to_owned());
        }
        if limits.len() > MAX_LIMITS {
            return Err(format!(
                "`limits` holds {} limits; at most {MAX_LIMITS} are allowed",
                limits.len()
            ));
        }
        let limits = limits
            .iter()
            .enumerate()
            .map(|(i, v)| parse_limit(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, limit) in limits.iter().enumerate() {
            if let Some(j) = limits[..i].iter().position(|l| l.name == limit.name) {
                return Err(format!(
                    "`limits[{j}]` and `limits[{i}]` are both named {:?}: give them distinct `name`s",
                    limit.name
                ));
            }
        }

        let by = match string_field(&map, "by")?.as_deref() {
            None | Some("ip") => By::Ip,
            Some("consumer") => By::Consumer,
            Some("route") => By::Route,
            Some("header") => {
                let name = string_field(&map, "header")?
                    .ok_or("`header` is required with `by: header` (the header to count by)")?;
                By::Header(header_name(&name).map_err(|e| format!("`header` is {e}"))?)
            }
            Some(other) => {
                return Err(format!(
                    "`by` must be one of ip, consumer, header, route (got {other:?})"
                ));
            }
        };
        if !matches!(by, By::Header(_)) && map.contains_key("header") {
            return Err("`header` is only used with `by: header`".to_owned());
        }

        let algorithm = match string_field(&map, "algorithm")?.as_deref() {
            None | Some("fixed") => Algorithm::Fixed,
            Some("sliding") => Algorithm::Sliding,
            Some(other) => {
                return Err(format!(
                    "`algorithm` must be fixed or sliding (got {other:?})"
                ));
            }
        };
        let policy = match string_field(&map, "policy")?.as_deref() {
            None | Some("fail_open") => Policy::FailOpen,
            Some("fail_closed") => Policy::FailClosed,
            Some(other) => {
                return Err(format!(
                    "`policy` must be fail_open or fail_closed (got {other:?})"
                ));
            }
        };
        Ok(Self {
            limits,
            by,
            algorithm,
            policy,
        })
    }
}

/// A string field, `None` when absent or null.
fn string_field(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{field}` must be a string (got {other})")),
    }
}

fn parse_limit(i: usize, value: &Value) -> Result<Limit, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "`limits[{i}]` must be a map like {{ requests: 100, window: 60s }}"
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !LIMIT_FIELDS.split(", ").any(|f| f == k.as_str()))
    {
        return Err(format!(
            "unknown field `limits[{i}].{unknown}` (expected one of: {LIMIT_FIELDS})"
        ));
    }
    let requests = match map.get("requests") {
        None | Some(Value::Null) => {
            return Err(format!("`limits[{i}].requests` is required"));
        }
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=i64::MAX as u64).contains(n))
            .ok_or_else(|| {
                format!("`limits[{i}].requests` must be a positive integer (got {v})")
            })?,
    };
    let window_ms = match map.get("window") {
        None | Some(Value::Null) => {
            return Err(format!(
                "`limits[{i}].window` is required: a duration like \"60s\""
            ));
        }
        Some(Value::String(s)) => {
            parse_duration_ms(s).map_err(|e| format!("`limits[{i}].window`: {e}"))?
        }
        Some(v) => {
            return Err(format!(
                "`limits[{i}].window` must be a duration string like \"60s\" (got {v})"
            ));
        }
    };
    if window_ms < 1000 || window_ms % 1000 != 0 {
        return Err(format!(
            "`limits[{i}].window` must be a whole number of seconds, at least 1s (the RateLimit \
             headers give windows in seconds)"
        ));
    }
    let name = match map.get("name") {
        None | Some(Value::Null) => format!("{requests}-per-{}s", window_ms / 1000),
        Some(Value::String(s)) => {
            if s.is_empty()
                || s.len() > MAX_NAME_LEN
                || !s.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(format!(
                    "`limits[{i}].name` must be 1 to {MAX_NAME_LEN} printable ASCII characters"
                ));
            }
            s.clone()
        }
        Some(v) => return Err(format!("`limits[{i}].name` must be a string (got {v})")),
    };
    Ok(Limit {
        name,
        requests,
        window_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        Config::parse(config).expect_err(config)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1s"), Ok(1_000));
        assert_eq!(parse_duration_ms("60s"), Ok(60_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        for bad in [
            "", "60", "s", "1.5s", "-1s", "1 s", "1sec", "0s", "1m30s", " 1s",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration_ms("99999999999999999999d").is_err());
        assert!(parse_duration_ms("999999999999999999d").is_err());
    }

    #[test]
    fn the_design_example_and_defaults() {
        let c = Config::parse(r#"{"limits":[{"requests":100,"window":"60s"}],"by":"ip"}"#)
            .expect("valid");
        assert_eq!(
            c,
            Config {
                limits: vec![Limit {
                    name: "100-per-60s".into(),
                    requests: 100,
                    window_ms: 60_000
                }],
                by: By::Ip,
                algorithm: Algorithm::Fixed,
                policy: Policy::FailOpen,
            }
        );
        let c = Config::parse(r#"{"limits":[{"requests":1000,"window":"1h"}]}"#).expect("valid");
        assert_eq!(c.by, By::Ip);
        assert_eq!(c.limits[0].name, "1000-per-3600s");
    }

    #[test]
    fn every_option() {
        let c = Config::parse(
            r#"{"limits":[{"requests":10,"window":"1s","name":"per-second"},
                          {"requests":1000,"window":"1h"}],
                "by":"header","header":"X-User","algorithm":"sliding","policy":"fail_closed"}"#,
        )
        .expect("valid");
        assert_eq!(c.by, By::Header("x-user".into()));
        assert_eq!(c.algorithm, Algorithm::Sliding);
        assert_eq!(c.policy, Policy::FailClosed);
        assert_eq!(c.limits[0].name, "per-second");
        assert_eq!(c.limits[1].window_ms, 3_600_000);
        for by in ["consumer", "route"] {
            let c = Config::parse(&format!(
                r#"{{"limits":[{{"requests":1,"window":"1s"}}],"by":"{by}"}}"#
            ))
            .expect("valid");
            assert_eq!(
                c.by,
                if by == "route" {
                    By::Route
                } else {
                    By::Consumer
                }
            );
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("{}", "`limits` is required"),
            ("[]", "must be a map"),
            ("nope", "invalid JSON"),
            (r#"{"limits":[]}"#, "at least one limit"),
            (r#"{"limits":{}}"#, "`limits` must be a list"),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"burst":3}"#,
                "unknown field `burst`",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s","per":"ip"}]}"#,
                "unknown field `limits[0].per`",
            ),
            (
                r#"{"limits":[{"window":"1s"}]}"#,
                "`limits[0].requests` is required",
            ),
            (
                r#"{"limits":[{"requests":0,"window":"1s"}]}"#,
                "`limits[0].requests` must be a positive integer",
            ),
            (
                r#"{"limits":[{"requests":1.5,"window":"1s"}]}"#,
                "must be a positive integer",
            ),
            (
                r#"{"limits":[{"requests":"10","window":"1s"}]}"#,
                "must be a positive integer",
            ),
            (
                r#"{"limits":[{"requests":1}]}"#,
                "`limits[0].window` is required",
            ),
            (
                r#"{"limits":[{"requests":1,"window":60}]}"#,
                "must be a duration string",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1x"}]}"#,
                "`limits[0].window`: \"1x\" is not a duration",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"500ms"}]}"#,
                "whole number of seconds",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1500ms"}]}"#,
                "whole number of seconds",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s","name":""}]}"#,
                "`limits[0].name` must be 1 to 64",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s","name":"tab\there"}]}"#,
                "printable ASCII",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"},{"requests":1,"window":"1s"}]}"#,
                "both named \"1-per-1s\"",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"by":"user"}"#,
                "`by` must be one of",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"by":"header"}"#,
                "`header` is required with `by: header`",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"by":"header","header":"bad name"}"#,
                "not a valid header name",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"header":"x-user"}"#,
                "only used with `by: header`",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"algorithm":"leaky"}"#,
                "`algorithm` must be fixed or sliding",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"policy":"open"}"#,
                "`policy` must be fail_open or fail_closed",
            ),
            (
                r#"{"limits":[{"requests":1,"window":"1s"}],"by":1}"#,
                "`by` must be a string",
            ),
        ];
        for (config, expected) in cases {
            let e = err(config);
            assert!(e.contains(expected), "{config}: {e}");
        }
        let many: Vec<String> = (1..=17)
            .map(|i| format!(r#"{{"requests":{i},"window":"1s"}}"#))
            .collect();
        let e = err(&format!(r#"{{"limits":[{}]}}"#, many.join(",")));
        assert!(e.contains("at most 16"), "{e}");
    }
}
