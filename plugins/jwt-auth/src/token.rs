//! A compact JWS as the filter reads it (before and after the gateway checked its signature)
//! and the claims policy. Pure functions, the clock passed in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferrox_sdk::serde_json::{self, Map, Value};

use crate::Rejection;

/// Longest token accepted (bytes).
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The parts of a token the policy reads. The signature is the gateway's business.
#[derive(Debug)]
pub(crate) struct Token {
    /// Header `alg`.
    pub(crate) alg: String,
    /// Header `kid`.
    pub(crate) kid: Option<String>,
    /// The claims.
    pub(crate) claims: Map<String, Value>,
}

impl Token {
    /// Decode header and claims (nothing is trusted yet). `alg: none` in any spelling and
    /// `crit` extensions are refused; `jku`, `x5u`, `jwk` and `x5c` are ignored (keys only come
    /// from the gateway).
    pub(crate) fn parse(token: &str) -> Result<Self, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = json_object(header)?;
        let claims = json_object(payload)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(Rejection::Malformed),
        };
        if alg.eq_ignore_ascii_case("none") || signature.is_empty() {
            return Err(Rejection::Unsigned);
        }
        if header.contains_key("crit") {
            return Err(Rejection::Malformed);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Rejection::Malformed),
        };
        Ok(Self { alg, kid, claims })
    }

    /// A string claim (`None` when absent or not a string).
    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Check the time claims against `now` (seconds since the epoch) with `leeway` seconds of
    /// tolerance: `exp` required, `nbf` and `iat` when present.
    pub(crate) fn check_times(&self, now: f64, leeway: u64) -> Result<(), Rejection> {
        let leeway = leeway as f64;
        let exp = match self.claims.get("exp") {
            None => return Err(Rejection::NoExpiry),
            Some(v) => v.as_f64().ok_or(Rejection::Malformed)?,
        };
        if now > exp + leeway {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = self.claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(Rejection::Malformed)?;
            if now + leeway < nbf {
                return Err(Rejection::NotYetValid);
            }
        }
        if let Some(iat) = self.claims.get("iat") {
            let iat = iat.as_f64().ok_or(Rejection::Malformed)?;
            if now + leeway < iat {
                return Err(Rejection::NotYetValid);
            }
        }
        Ok(())
    }

    /// `aud` (a string or a list of strings) names one of `accepted`.
    pub(crate) fn check_audience(&self, accepted: &[String]) -> Result<(), Rejection> {
        if accepted.is_empty() {
            return Ok(());
        }
        let matches = |a: &Value| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
        let ok = match self.claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        };
        if ok { Ok(()) } else { Err(Rejection::Audience) }
    }

    /// A claim as header text: strings as they are, numbers and booleans printed; other
    /// claims (objects, lists, null) are not copied.
    pub(crate) fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A base64url segment holding a JSON object.
fn json_object(segment: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed),
    }
}
