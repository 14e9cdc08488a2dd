//! The filter's configuration, parsed and checked in `init`.

use ferrox_sdk::serde_json::{self, Map, Value};

/// Every configuration field.
const FIELDS: [&str; 8] = [
    "header",
    "cookie",
    "query",
    "leeway",
    "audiences",
    "issuers",
    "hide_credentials",
    "claims_to_headers",
];
/// The header carrying bearer credentials.
pub(crate) const AUTHORIZATION: &str = "authorization";
/// Largest leeway, in seconds.
pub(crate) const MAX_LEEWAY: u64 = 300;
/// Default leeway, in seconds.
pub(crate) const DEFAULT_LEEWAY: u64 = 60;

/// The filter, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuth {
    /// The header carrying the token, lower case (`authorization`: the `Bearer` scheme).
    pub(crate) header: String,
    /// Also read the token from this cookie.
    pub(crate) cookie: Option<String>,
    /// Also read the token from this query parameter.
    pub(crate) query: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub(crate) leeway: u64,
    /// When not empty, `aud` must name one of these.
    pub(crate) audiences: Vec<String>,
    /// When not empty, only tokens from these issuers are accepted on this route.
    pub(crate) issuers: Vec<String>,
    /// Remove the token before proxying.
    pub(crate) hide_credentials: bool,
    /// Claims copied into request headers (claim, header), in name order.
    pub(crate) claims_to_headers: Vec<(String, String)>,
}

impl JwtAuth {
    /// Build from a JSON configuration.
    pub(crate) fn parse(config: &str) -> Result<Self, String> {
        let config: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let Value::Object(config) = config else {
            return Err("config must be a JSON object".to_owned());
        };
        Self::from_map(&config)
    }

    fn from_map(config: &Map<String, Value>) -> Result<Self, String> {
        if let Some(field) = config.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field `{field}` (expected one of: {})",
                FIELDS.join(", ")
            ));
        }
        let header = match config.get("header") {
            None => AUTHORIZATION.to_owned(),
            Some(v) => header_name(v, "header")?,
        };
        let cookie = optional_name(config, "cookie")?;
        let query = optional_name(config, "query")?;
        let leeway = match config.get("leeway") {
            None => DEFAULT_LEEWAY,
            Some(v) => v.as_u64().filter(|s| *s <= MAX_LEEWAY).ok_or_else(|| {
                format!("`leeway` must be a number of seconds from 0 to {MAX_LEEWAY}")
            })?,
        };
        let audiences = string_list(config, "audiences")?;
        let issuers = string_list(config, "issuers")?;
        let hide_credentials = match config.get("hide_credentials") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`hide_credentials` must be true or false".to_owned()),
        };
        let claims_to_headers = match config.get("claims_to_headers") {
            None => Vec::new(),
            Some(Value::Object(map)) => {
                let mut out = Vec::with_capacity(map.len());
                for (claim, header) in map {
                    let name = header_name(header, &format!("claims_to_headers.{claim}"))?;
                    if name == AUTHORIZATION || name == "cookie" {
                        return Err(format!(
                            "`claims_to_headers.{claim}`: {name:?} cannot carry a claim"
                        ));
                    }
                    out.push((claim.clone(), name));
                }
                out
            }
            Some(_) => {
                return Err("`claims_to_headers` must map claim names to header names".to_owned());
            }
        };
        Ok(Self {
            header,
            cookie,
            query,
            leeway,
            audiences,
            issuers,
            hide_credentials,
            claims_to_headers,
        })
    }
}

/// A header name: a string that is an HTTP token, lower-cased.
fn header_name(v: &Value, field: &str) -> Result<String, String> {
    let Value::String(name) = v else {
        return Err(format!("`{field}` must be a header name (a string)"));
    };
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!("`{field}`: {name:?} is not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// An optional cookie or query parameter name (visible ASCII without separators).
fn optional_name(config: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name))
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !"&=#+%;,\"\\".contains(c)) =>
        {
            Ok(Some(name.clone()))
        }
        Some(_) => Err(format!(
            "`{field}` must be a name of visible ASCII characters other than & = # + % ; , \" \\"
        )),
    }
}

/// An optional list of non-empty strings.
fn string_list(config: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match config.get(field) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(format!("`{field}[{i}]` must be a non-empty string")),
            })
            .collect(),
        Some(_) => Err(format!("`{field}` must be a list of strings")),
    }
}
