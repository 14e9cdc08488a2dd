//! Built-in filter `key-auth`: API-key authentication.
//!
//! The filter finds the API key the client presented, asks the gateway which consumer owns it
//! ([`credentials::consumer_for_key`]: the gateway keeps only SHA-256 digests and compares them
//! in constant time; the filter never sees the table), names that consumer on the request
//! (the gateway sends it upstream as `x-consumer-name`) and, by default, removes the key before
//! the request is proxied. Everything else is answered `401`.
//!
//! # Configuration
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `header` | `"apikey"` | the request header carrying the key (case-insensitive) |
//! | `headers` | `["apikey"]` | several headers instead (`header` and `headers` are exclusive); `[]` reads no header, which needs `bearer` or `query` |
//! | `bearer` | `false` | also accept `Authorization: Bearer <key>` |
//! | `query` | `null` | also accept the key in this query parameter (never read unless configured) |
//! | `hide_credentials` | `true` | remove the key before proxying: the key headers, the `Authorization` field that carried it, the query parameter (other parameters kept) |
//!
//! Unknown fields are refused with the field named. Header names must be HTTP tokens;
//! `authorization` is not accepted as a key header (use `bearer: true`).
//!
//! ```yaml
//! consumers:
//!   - { name: alice, keys: [alice-secret-key, "sha256:<hex of sha256(key)>"] }
//! routes:
//!   - name: api
//!     match: { path_prefix: /api }
//!     upstream: backend
//!     filters:
//!       - plugin: key-auth
//!         config: { headers: [apikey, x-api-key], bearer: true, query: api_key }
//! ```
//!
//! # Behaviour
//!
//! Every configured source is read: each value of each key header, each `Authorization`
//! field with the `Bearer` scheme (when `bearer` is on; other schemes are left alone), each
//! occurrence of the query parameter (percent-decoded, `+` as space). Then:
//!
//! - no key anywhere → `401`, "missing";
//! - two *different* keys (header and bearer, or one header sent twice with different values,
//!   or the query parameter repeated, …) → `401`, "ambiguous" (the same key presented twice is
//!   one key);
//! - a key no consumer owns (empty ones included) → `401`, "unknown";
//! - otherwise the consumer is set with [`Request::set_consumer`] and, with
//!   `hide_credentials`, the key is removed from the request.
//!
//! A `401` carries `content-type: application/json`, `cache-control: no-store`, the body
//! `{"error":"unauthorized","message":"..."}` and `WWW-Authenticate` challenges:
//! `Key realm="ferrox", header="<first key header>"` (plus `, query="<param>"` when the query is
//! read) when a header or query parameter is accepted, and `Bearer realm="ferrox"` when `bearer`
//! is on (with `error="invalid_token"` for an unknown key and `error="invalid_request"` for
//! several keys, as RFC 6750 describes).
//!
//! The key itself never appears in a reply, a log line or a metric. The filter logs at debug
//! level the consumer it authenticated or why it refused (never the key) and counts
//! `auth_success` / `auth_failure` through the gateway's metrics
//! (`ferrox_plugin_counter_total{plugin="key-auth",name=...}`).
//!
//! Host services used: `log`, `credentials`, `metrics`.

use ferrox_sdk::serde_json::{self, Map, Value, json};
use ferrox_sdk::{Filter, Flow, Reply, Request, credentials, log, metrics};

/// The key header when none is configured.
const DEFAULT_HEADER: &str = "apikey";
/// The realm named in challenges.
const REALM: &str = "ferrox";
/// Every configuration field.
const FIELDS: [&str; 5] = ["header", "headers", "bearer", "query", "hide_credentials"];
/// The header carrying bearer credentials.
const AUTHORIZATION: &str = "authorization";

/// The filter, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    /// Key headers, lower case, in configured order.
    headers: Vec<String>,
    /// Accept `Authorization: Bearer <key>`.
    bearer: bool,
    /// Accept the key in this query parameter.
    query: Option<String>,
    /// Remove the key before proxying.
    hide_credentials: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    /// No key presented.
    Missing,
    /// The key belongs to no consumer.
    Unknown,
    /// More than one different key presented.
    Ambiguous,
}

impl Rejection {
    /// What the client is told.
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "no API key in the request",
            Self::Unknown => "the API key is not valid",
            Self::Ambiguous => "more than one API key in the request",
        }
    }

    /// What is logged (never the key).
    fn log_line(self) -> &'static str {
        match self {
            Self::Missing => "rejected: missing key",
            Self::Unknown => "rejected: unknown key",
            Self::Ambiguous => "rejected: ambiguous (different keys presented)",
        }
    }

    /// The RFC 6750 error code of the Bearer challenge.
    fn bearer_error(self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Unknown => Some("invalid_token"),
            Self::Ambiguous => Some("invalid_request"),
        }
    }
}

/// The keys a request presents, each distinct key once, and where they were found.
#[derive(Debug, Default)]
struct Presented {
    /// Distinct keys, as bytes (a query value may decode to invalid UTF-8).
    keys: Vec<Vec<u8>>,
    /// A configured key header was present.
    in_headers: bool,
    /// `Authorization` values that are not bearer credentials (kept when the key is hidden).
    other_authorization: Vec<String>,
    /// An `Authorization` value was a bearer credential.
    in_bearer: bool,
    /// The query parameter was present.
    in_query: bool,
}

impl Presented {
    fn add(&mut self, key: Vec<u8>) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }
}

impl Filter for KeyAuth {
    // Nothing to do on the response: the gateway skips the call.
    const ON_RESPONSE: bool = false;

    fn init(config: &str) -> Result<Self, String> {
        let config: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let Value::Object(config) = config else {
            return Err("config must be a JSON object".to_owned());
        };
        Self::from_map(&config)
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let presented = self.presented(req);
        let consumer = match presented.keys.as_slice() {
            [] => Err(Rejection::Missing),
            [key] => std::str::from_utf8(key)
                .ok()
                .filter(|k| !k.is_empty())
                .and_then(credentials::consumer_for_key)
                .ok_or(Rejection::Unknown),
            _ => Err(Rejection::Ambiguous),
        };
        match consumer {
            Ok(consumer) => {
                req.set_consumer(&consumer);
                if self.hide_credentials
                    && let Err(e) = self.hide(req, &presented)
                {
                    // Forwarding the key would leak it: refuse instead.
                    log::error(&format!("could not remove the key from the request: {e}"));
                    metrics::counter_add("auth_failure", 1);
                    return Reply::credential_not_removed().into();
                }
                metrics::counter_add("auth_success", 1);
                log::debug(&format!("authenticated consumer {consumer}"));
                Flow::Continue
            }
            Err(rejection) => {
                metrics::counter_add("auth_failure", 1);
                log::debug(rejection.log_line());
                self.unauthorized(rejection).into()
            }
        }
    }
}

impl KeyAuth {
    /// Build from a parsed configuration object.
    fn from_map(config: &Map<String, Value>) -> Result<Self, String> {
        if let Some(field) = config.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field `{field}` (expected one of: {})",
                FIELDS.join(", ")
            ));
        }
        let headers = match (config.get("header"), config.get("headers")) {
            (Some(_), Some(_)) => {
                return Err("`header` and `headers` are exclusive; use one".to_owned());
            }
            (Some(v), None) => vec![header_name(v, "header")?],
            (None, Some(Value::Array(list))) => {
                let mut names: Vec<String> = Vec::with_capacity(list.len());
                for (i, v) in list.iter().enumerate() {
                    let name = header_name(v, &format!("headers[{i}]"))?;
                    if names.contains(&name) {
                        return Err(format!("`headers` lists {name:?} twice"));
                    }
                    names.push(name);
                }
                names
            }
            (None, Some(_)) => return Err("`headers` must be a list of header names".to_owned()),
            (None, None) => vec![DEFAULT_HEADER.to_owned()],
        };
        let bearer = optional_bool(config, "bearer", false)?;
        let hide_credentials = optional_bool(config, "hide_credentials", true)?;
        let query = match config.get("query") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => {
                let allowed = |c: char| c.is_ascii_graphic() && !"&=#+%\"\\".contains(c);
                if name.is_empty() || !name.chars().all(allowed) {
                    return Err(format!(
                        "`query` must be a parameter name of visible ASCII characters other \
                         than & = # + % \" \\, not {name:?}"
                    ));
                }
                Some(name.clone())
            }
            Some(_) => return Err("`query` must be a parameter name or null".to_owned()),
        };
        if headers.is_empty() && !bearer && query.is_none() {
            return Err(
                "`headers` is empty and neither `bearer` nor `query` is set: no key could ever \
                 be presented"
                    .to_owned(),
            );
        }
        Ok(Self {
            headers,
            bearer,
            query,
            hide_credentials,
        })
    }

    /// Every key the request presents through the configured sources.
    fn presented(&self, req: &Request<'_>) -> Presented {
        let mut p = Presented::default();
        for name in &self.headers {
            for value in req.header_all(name) {
                p.in_headers = true;
                p.add(value.into_bytes());
            }
        }
        if self.bearer {
            for value in req.header_all(AUTHORIZATION) {
                match bearer_token(&value) {
                    Some(token) => {
                        p.in_bearer = true;
                        p.add(token.as_bytes().to_vec());
                    }
                    None => p.other_authorization.push(value),
                }
            }
        }
        if let Some(param) = &self.query
            && let Some(query) = req.query()
        {
            for (name, value) in query.split('&').filter_map(split_pair) {
                if percent_decode(name) == param.as_bytes() {
                    p.in_query = true;
                    p.add(percent_decode(value));
                }
            }
        }
        p
    }

    /// Remove the presented key from the request.
    fn hide(&self, req: &mut Request<'_>, p: &Presented) -> Result<(), String> {
        if p.in_headers {
            for name in &self.headers {
                req.remove_header(name);
            }
        }
        if p.in_bearer {
            req.remove_header(AUTHORIZATION);
            for value in &p.other_authorization {
                req.append_header(AUTHORIZATION, value)?;
            }
        }
        if p.in_query
            && let (Some(param), Some(query)) = (&self.query, req.query())
        {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|segment| {
                    split_pair(segment)
                        .is_none_or(|(name, _)| percent_decode(name) != param.as_bytes())
                })
                .collect();
            let kept = kept.join("&");
            req.set_query((!kept.is_empty()).then_some(kept.as_str()))?;
        }
        Ok(())
    }

    /// The `401` for `rejection`.
    fn unauthorized(&self, rejection: Rejection) -> Reply {
        let mut reply = Reply::new(401).header("cache-control", "no-store");
        if !self.headers.is_empty() || self.query.is_some() {
            let mut challenge = format!("Key realm=\"{REALM}\"");
            if let Some(header) = self.headers.first() {
                challenge.push_str(&format!(", header=\"{header}\""));
            }
            if let Some(param) = &self.query {
                challenge.push_str(&format!(", query=\"{param}\""));
            }
            reply = reply.header("www-authenticate", challenge);
        }
        if self.bearer {
            let mut challenge = format!("Bearer realm=\"{REALM}\"");
            if let Some(error) = rejection.bearer_error() {
                challenge.push_str(&format!(", error=\"{error}\""));
            }
            reply = reply.header("www-authenticate", challenge);
        }
        reply.json(&json!({
            "error": "unauthorized",
            "message": rejection.message(),
        }))
    }
}

/// A configured header name: a string that is an HTTP token, lower-cased.
fn header_name(v: &Value, field: &str) -> Result<String, String> {
    let Value::String(name) = v else {
        return Err(format!("`{field}` must be a header name (a string)"));
    };
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!("`{field}`: {name:?} is not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if name == AUTHORIZATION {
        return Err(format!(
            "`{field}`: use `bearer: true` to accept keys in Authorization"
        ));
    }
    Ok(name)
}

/// An optional boolean field.
fn optional_bool(config: &Map<String, Value>, field: &str, default: bool) -> Result<bool, String> {
    match config.get(field) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{field}` must be true or false")),
    }
}

/// The credentials of an `Authorization` value with the `Bearer` scheme (case-insensitive);
/// `None` for other schemes.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches([' ', '\t']))
}

/// `name` and `value` of one `&`-separated query segment (`None` for an empty segment; a
/// segment without `=` has an empty value).
fn split_pair(segment: &str) -> Option<(&str, &str)> {
    (!segment.is_empty()).then(|| segment.split_once('=').unwrap_or((segment, "")))
}

/// Decode a query component: `%XX` escapes and `+` as space (invalid escapes are kept as
/// they are).
fn percent_decode(s: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = bytes
                    .get(i + 1)
                    .zip(bytes.get(i + 2))
                    .and_then(|(&h, &l)| Some(hex(h)? << 4 | hex(l)?));
                if let Some(b) = decoded {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

ferrox_sdk::export_filter!(KeyAuth);

#[cfg(test)]
mod tests;
