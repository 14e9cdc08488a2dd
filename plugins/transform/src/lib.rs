//! Built-in filter `transform`: edit request and response headers, the request path and the
//! query string, with values templated from the request.
//!
//! # Configuration
//!
//! ```yaml
//! - plugin: transform
//!   config:
//!     request:
//!       remove_headers: [x-internal-debug]
//!       rename_headers: { x-api-version: x-version }
//!       set_headers: { x-forwarded-by: "ferrox $route", x-consumer: $consumer }
//!       add_headers: { via: "1.1 ferrox" }
//!       strip_prefix: /api            # or rewrite_path: /v2/items
//!       add_query: { source: gateway, rid: $request_id }
//!     response:
//!       set_headers: { x-gateway: ferrox, x-request: $request_id }
//!       remove_headers: [server]
//! ```
//!
//! Every field is optional; `{}` (or no config) edits nothing.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `request` | object | edits of the request before it goes upstream (fields below) |
//! | `response` | object | edits of the response before it goes to the client: the four header fields only |
//! | `*.remove_headers` | list of names | remove every value of these headers |
//! | `*.rename_headers` | map old → new | move every value of `old` to `new` (replacing any `new` already there); a missing `old` changes nothing |
//! | `*.set_headers` | map name → value | set the header to this value, replacing every value it had |
//! | `*.add_headers` | map name → value | add this value after the values the header already has |
//! | `request.strip_prefix` | path | remove this prefix from the path when the path starts with it on a segment boundary (`/api` strips `/api` and `/api/x`, not `/apix`); nothing left gives `/` |
//! | `request.rewrite_path` | path | replace the whole path (the query is kept); cannot be combined with `strip_prefix` |
//! | `request.add_query` | map name → value | append `name=value` to the query, both percent-encoded (every byte except `A–Z a–z 0–9 - . _ ~`); parameters already there are kept, also those of the same name |
//!
//! Header names are case-insensitive and must be valid HTTP tokens; the headers the gateway
//! manages (`connection`, `content-length`, `transfer-encoding`, `host`, `te`, `trailer`,
//! `upgrade`, `keep-alive`, `proxy-connection`) cannot be edited. A name listed twice in one
//! field (in any case), a header renamed to itself or two headers renamed to the same name are
//! errors. Paths must start with `/` and hold only visible ASCII without `?` or `#`; they are
//! not templated.
//!
//! ## Templates
//!
//! Header values and `add_query` values may use variables, written `$name` or `${name}`
//! (the braces let a name touch following text: `${route}v2`):
//!
//! | variable | value |
//! |---|---|
//! | `$consumer` | the consumer an earlier filter (e.g. `key-auth`) authenticated; empty when none |
//! | `$request_id` | the request id (the `x-request-id` sent upstream and returned to the client) |
//! | `$client_ip` | the client's address as the gateway determined it (trusted proxies honoured) |
//! | `$route` | the route's name |
//!
//! `$$` is a literal `$`. An unknown variable, or a `$` followed by no name, is a configuration
//! error. Numbers and booleans are taken as their text (`x-version: 2`). Response templates
//! read the request as it was forwarded.
//!
//! # Order
//!
//! Within each side: **remove → rename → set → add**, then on the request **path → query**.
//! So `remove_headers` and `rename_headers` act on what the client (or upstream) sent, a
//! header both set and added ends with two values, and `add_query` sees the path already
//! rewritten. Within one field, entries apply in name order (the gateway hands the
//! configuration over as JSON with sorted keys); renames read every source header first, so
//! `{a: b, b: a}` swaps two headers.
//!
//! The filter never answers a request itself. An edit the gateway refuses at run time (a
//! message already at its 100-field cap, a templated value holding a control character) is
//! skipped; the request goes on.
//!
//! # Limits
//!
//! - Header values that are not text (bytes outside visible ASCII) are invisible to the
//!   filter: a request rename of such a header changes nothing.

mod config;
mod template;

use ferrox_sdk::{Filter, Flow, Request, Response};

use config::{Config, HeaderOps, PathOp};
use template::Vars;

/// The filter: the parsed configuration (nothing per request is kept here).
pub struct Transform {
    config: Config,
}

impl Filter for Transform {
    fn init(config: &str) -> Result<Self, String> {
        Ok(Self {
            config: config::parse(config)?,
        })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let ops = &self.config.request;
        if ops.is_empty() {
            return Flow::Continue;
        }
        let vars = Vars::fetch(req, ops.uses);
        apply_headers(&ops.headers, &mut ReqHeaders(req), &vars);
        match &ops.path {
            Some(PathOp::Strip(prefix)) => {
                if let Some(path) = strip_prefix(&req.path(), prefix) {
                    let _ = req.set_path(&path);
                }
            }
            Some(PathOp::Rewrite(path)) => {
                let _ = req.set_path(path);
            }
            None => {}
        }
        if !ops.add_query.is_empty() {
            let mut query = req.query().unwrap_or_default();
            for (name, value) in &ops.add_query {
                if !query.is_empty() && !query.ends_with('&') {
                    query.push('&');
                }
                query.push_str(name);
                query.push('=');
                encode_component(&value.render(&vars), &mut query);
            }
            let _ = req.set_query(Some(&query));
        }
        Flow::Continue
    }

    fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        let ops = &self.config.response;
        if ops.headers.is_empty() {
            return;
        }
        let vars = Vars::fetch(req, ops.uses);
        apply_headers(&ops.headers, &mut RespHeaders(resp), &vars);
    }
}

ferrox_sdk::export_filter!(Transform);

/// The header operations the request and the response share.
trait Headers {
    /// Every value of `name` the filter can read.
    fn values(&self, name: &str) -> Vec<String>;
    fn set(&mut self, name: &str, value: &str) -> Result<(), String>;
    fn append(&mut self, name: &str, value: &str) -> Result<(), String>;
    fn remove(&mut self, name: &str);
}

struct ReqHeaders<'a, 'r>(&'a mut Request<'r>);

impl Headers for ReqHeaders<'_, '_> {
    fn values(&self, name: &str) -> Vec<String> {
        self.0.header_all(name)
    }
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.0.set_header(name, value)
    }
    fn append(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.0.append_header(name, value)
    }
    fn remove(&mut self, name: &str) {
        self.0.remove_header(name);
    }
}

struct RespHeaders<'a, 'r>(&'a mut Response<'r>);

impl Headers for RespHeaders<'_, '_> {
    fn values(&self, name: &str) -> Vec<String> {
        self.0.header_all(name)
    }
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.0.set_header(name, value)
    }
    fn append(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.0.append_header(name, value)
    }
    fn remove(&mut self, name: &str) {
        self.0.remove_header(name);
    }
}

/// Apply `ops` in order: remove, rename, set, add. Refused edits are skipped.
fn apply_headers(ops: &HeaderOps, headers: &mut impl Headers, vars: &Vars) {
    for name in &ops.remove {
        headers.remove(name);
    }
    if !ops.rename.is_empty() {
        // Read every source first, so renames do not see each other's results.
        let moved: Vec<(&str, &str, Vec<String>)> = ops
            .rename
            .iter()
            .filter_map(|(old, new)| {
                let values = headers.values(old);
                (!values.is_empty()).then_some((old.as_str(), new.as_str(), values))
            })
            .collect();
        for (old, _, _) in &moved {
            headers.remove(old);
        }
        for (_, new, values) in &moved {
            let mut values = values.iter();
            if let Some(first) = values.next() {
                let _ = headers.set(new, first);
            }
            for value in values {
                let _ = headers.append(new, value);
            }
        }
    }
    for (name, value) in &ops.set {
        let _ = headers.set(name, &value.render(vars));
    }
    for (name, value) in &ops.add {
        let _ = headers.append(name, &value.render(vars));
    }
}

/// `path` without `prefix` (given without trailing `/`) if it starts with it on a segment
/// boundary; `/` when nothing is left.
fn strip_prefix(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/".to_owned())
    } else if rest.starts_with('/') {
        Some(rest.to_owned())
    } else {
        None
    }
}

/// Append `text` to `out`, percent-encoding every byte but the unreserved characters of
/// RFC 3986 (`A–Z a–z 0–9 - . _ ~`).
pub(crate) fn encode_component(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

// The test harness exists on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
