//! Parsing and validating the configuration (strict: unknown fields and invalid names are
//! errors that name the field).

use ferrox_sdk::serde_json::{Map, Value};

use crate::template::{Template, Uses};

// Headers a filter may not edit: refusing them here reports the mistake at load.
use ferrox_sdk::MANAGED_HEADERS as MANAGED;

const REQUEST_FIELDS: [&str; 7] = [
    "set_headers",
    "add_headers",
    "remove_headers",
    "rename_headers",
    "strip_prefix",
    "rewrite_path",
    "add_query",
];
const RESPONSE_FIELDS: [&str; 4] = [
    "set_headers",
    "add_headers",
    "remove_headers",
    "rename_headers",
];

/// Header edits of one side, in the order they apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderOps {
    /// Lowercase names to remove.
    pub(crate) remove: Vec<String>,
    /// `(old, new)` lowercase names.
    pub(crate) rename: Vec<(String, String)>,
    /// Lowercase name and value, replacing every value.
    pub(crate) set: Vec<(String, Template)>,
    /// Lowercase name and value, added after the values present.
    pub(crate) add: Vec<(String, Template)>,
}

impl HeaderOps {
    pub(crate) fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    fn uses(&self, uses: &mut Uses) {
        for (_, t) in self.set.iter().chain(&self.add) {
            uses.add(t);
        }
    }
}

/// What happens to the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathOp {
    /// Remove this prefix (no trailing `/`) when the path starts with it on a segment boundary.
    Strip(String),
    /// Replace the path.
    Rewrite(String),
}

/// Edits of the request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestOps {
    pub(crate) headers: HeaderOps,
    pub(crate) path: Option<PathOp>,
    /// Percent-encoded name and the value's template.
    pub(crate) add_query: Vec<(String, Template)>,
    /// Variables the templates use.
    pub(crate) uses: Uses,
}

impl RequestOps {
    pub(crate) fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.path.is_none() && self.add_query.is_empty()
    }
}

/// Edits of the response.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ResponseOps {
    pub(crate) headers: HeaderOps,
    pub(crate) uses: Uses,
}

/// The whole configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) request: RequestOps,
    pub(crate) response: ResponseOps,
}

/// Parse `text` (the filter's JSON configuration).
pub(crate) fn parse(text: &str) -> Result<Config, String> {
    let value: Value =
        ferrox_sdk::serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(top) = value.as_object() else {
        return Err("the configuration must be an object with `request` and/or `response`".into());
    };
    check_fields(top, "the configuration", &["request", "response"])?;
    let mut config = Config::default();
    if let Some(obj) = section(top, "request")? {
        check_fields(obj, "`request`", &REQUEST_FIELDS)?;
        let r = &mut config.request;
        r.headers = header_ops(obj, "request")?;
        let strip = field(obj, "strip_prefix")
            .map(|v| path_value(v, "request.strip_prefix"))
            .transpose()?;
        let rewrite = field(obj, "rewrite_path")
            .map(|v| path_value(v, "request.rewrite_path"))
            .transpose()?;
        r.path = match (strip, rewrite) {
            (Some(_), Some(_)) => {
                return Err(
                    "request: `strip_prefix` and `rewrite_path` cannot be combined \
                            (`rewrite_path` replaces the whole path)"
                        .into(),
                );
            }
            (Some(prefix), None) => {
                let prefix = prefix.trim_end_matches('/');
                if prefix.is_empty() {
                    return Err("request.strip_prefix: `/` strips nothing".into());
                }
                Some(PathOp::Strip(prefix.to_owned()))
            }
            (None, Some(path)) => Some(PathOp::Rewrite(path)),
            (None, None) => None,
        };
        if let Some(map) = map_field(obj, "add_query", "request")? {
            for (name, value) in map {
                let at = format!("request.add_query.{name}");
                if name.is_empty() {
                    return Err("request.add_query: a parameter name is empty".into());
                }
                let mut encoded = String::new();
                crate::encode_component(name, &mut encoded);
                // Percent-encoded when rendered, so any text is fine.
                r.add_query.push((encoded, template(value, &at, false)?));
            }
        }
        r.headers.uses(&mut r.uses);
        for (_, t) in &r.add_query {
            r.uses.add(t);
        }
    }
    if let Some(obj) = section(top, "response")? {
        check_fields(obj, "`response`", &RESPONSE_FIELDS)?;
        let r = &mut config.response;
        r.headers = header_ops(obj, "response")?;
        r.headers.uses(&mut r.uses);
    }
    Ok(config)
}

/// A field, treating `null` (an empty YAML key) as absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn section<'a>(
    top: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    field(top, name)
        .map(|v| {
            v.as_object()
                .ok_or_else(|| format!("`{name}` must be an object"))
        })
        .transpose()
}

fn map_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    side: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    field(obj, name)
        .map(|v| {
            v.as_object()
                .ok_or_else(|| format!("{side}.{name} must be a map of names to values"))
        })
        .transpose()
}

fn check_fields(obj: &Map<String, Value>, what: &str, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field `{k}` in {what} (expected one of: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn header_ops(obj: &Map<String, Value>, side: &str) -> Result<HeaderOps, String> {
    let mut ops = HeaderOps::default();
    if let Some(v) = field(obj, "remove_headers") {
        let at = format!("{side}.remove_headers");
        let list = v
            .as_array()
            .ok_or_else(|| format!("{at} must be a list of header names"))?;
        for item in list {
            let name = item
                .as_str()
                .ok_or_else(|| format!("{at}: {item} is not a header name"))?;
            let name = header_name(name, &at)?;
            if !ops.remove.contains(&name) {
                ops.remove.push(name);
            }
        }
    }
    if let Some(map) = map_field(obj, "rename_headers", side)? {
        let at = format!("{side}.rename_headers");
        for (old, new) in map {
            let old = header_name(old, &at)?;
            let new = new
                .as_str()
                .ok_or_else(|| format!("{at}.{old}: the new name must be a string"))?;
            let new = header_name(new, &at)?;
            if old == new {
                return Err(format!("{at}: `{old}` is renamed to itself"));
            }
            if ops.rename.iter().any(|(o, _)| *o == old) {
                return Err(format!("{at}: `{old}` is listed twice"));
            }
            if ops.rename.iter().any(|(_, n)| *n == new) {
                return Err(format!("{at}: two headers are renamed to `{new}`"));
            }
            ops.rename.push((old, new));
        }
    }
    for (key, list) in [("set_headers", &mut ops.set), ("add_headers", &mut ops.add)] {
        if let Some(map) = map_field(obj, key, side)? {
            let at = format!("{side}.{key}");
            for (name, value) in map {
                let name = header_name(name, &at)?;
                if list.iter().any(|(n, _)| *n == name) {
                    return Err(format!("{at}: `{name}` is listed twice"));
                }
                let value = template(value, &format!("{at}.{name}"), true)?;
                list.push((name, value));
            }
        }
    }
    Ok(ops)
}

/// A valid header name that filters may edit, lowercased.
fn header_name(name: &str, at: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("{at}: {name:?} is not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if MANAGED.contains(&name.as_str()) {
        return Err(format!(
            "{at}: header `{name}` is managed by the gateway and cannot be edited"
        ));
    }
    Ok(name)
}

/// A templated value: a string, or a number or boolean taken as its text.
fn template(value: &Value, at: &str, header: bool) -> Result<Template, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(format!("{at}: the value must be a string")),
    };
    let template = Template::parse(&text).map_err(|e| format!("{at}: {e}"))?;
    if header
        && template
            .literals()
            .any(|s| s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f))
    {
        return Err(format!("{at}: the value contains a control character"));
    }
    Ok(template)
}

/// An absolute path for the request line: ASCII, starting with `/`, without query, fragment,
/// spaces or control characters.
fn path_value(value: &Value, at: &str) -> Result<String, String> {
    let path = value
        .as_str()
        .ok_or_else(|| format!("{at} must be a string"))?;
    if !path.starts_with('/') {
        return Err(format!("{at}: {path:?} must start with `/`"));
    }
    if path
        .bytes()
        .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
    {
        return Err(format!(
            "{at}: {path:?} may hold only visible ASCII without `?` or `#` (percent-encode other characters)"
        ));
    }
    Ok(path.to_owned())
}
