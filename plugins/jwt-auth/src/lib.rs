//! Built-in filter `jwt-auth`: JSON Web Token authentication.
//!
//! The filter finds the token, decodes its header and claims, asks the gateway which consumer
//! credential the token names ([`credentials::jwt_credential_for`], by `kid` then by `iss`: the
//! answer carries the consumer, the credential id and its pinned algorithm, never the key),
//! asks the gateway to verify the signature natively with that credential's key and pinned
//! algorithm ([`crypto::verify_jwt`]), then applies the claims policy. Everything else is
//! answered `401`.
//!
//! # Configuration
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `header` | `"authorization"` | header carrying the token; `authorization` takes the `Bearer` scheme, another header its whole value (a `Bearer ` prefix is accepted) |
//! | `cookie` | `null` | also read the token from this cookie (never unless configured) |
//! | `query` | `null` | also read the token from this query parameter (never unless configured) |
//! | `leeway` | `60` | seconds of clock skew tolerated on `exp`, `nbf`, `iat` (0–300) |
//! | `audiences` | `[]` | when not empty, `aud` must name one of them |
//! | `issuers` | `[]` | when not empty, only these issuers are accepted on the route |
//! | `hide_credentials` | `true` | remove the token (header value, cookie, query parameter) before proxying |
//! | `claims_to_headers` | `{}` | copy claims to request headers, e.g. `{ "sub": "x-jwt-sub" }` (client-sent copies are always removed) |
//!
//! Credentials are the consumers' (`consumers[].jwt` in the gateway config): issuer, optional
//! key id, the pinned algorithm and a secret, a PEM public key or a JWKS URL.
//!
//! # Behaviour
//!
//! - no token → `401` (`WWW-Authenticate: Bearer realm="ferrox"`); more than one token (the
//!   header twice, header and query, …) → `401` `invalid_request`;
//! - malformed, unsigned (`alg: none`), no credential for its `kid`/`iss`, `alg` other than the
//!   credential's, `iss` other than the credential's, bad signature, key set unavailable,
//!   `exp` missing or past, `nbf`/`iat` in the future, audience not accepted → `401`
//!   `invalid_token`. Never open: a gateway that cannot verify refuses.
//! - otherwise the consumer is set and, with `hide_credentials`, the token removed.
//!
//! A `401` carries `content-type: application/json`, `cache-control: no-store`, the body
//! `{"error":"unauthorized","message":"..."}` and the challenge. The token never appears in a
//! reply, a log line or a metric; the filter counts `auth_success` / `auth_failure`.
//!
//! Host services used: `log`, `clock`, `credentials`, `crypto`, `metrics`.

mod config;
mod token;

use ferrox_sdk::serde_json::json;
use ferrox_sdk::{Filter, Flow, Reply, Request, clock, credentials, crypto, log, metrics};

use config::AUTHORIZATION;
pub use config::JwtAuth;
use token::Token;

/// The realm named in challenges.
const REALM: &str = "ferrox";

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No token.
    Missing,
    /// More than one token.
    Multiple,
    /// Not a compact JWS with JSON header and claims.
    Malformed,
    /// `alg: none` or an empty signature.
    Unsigned,
    /// No credential for its `kid` / `iss`.
    UnknownCredential,
    /// `alg` is not the credential's.
    Algorithm,
    /// `iss` is not the credential's, or not accepted on this route.
    Issuer,
    /// The gateway did not verify the signature.
    Signature,
    /// The credential's key set is not available.
    KeysUnavailable,
    /// No `exp`.
    NoExpiry,
    /// `exp` has passed.
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    /// `aud` not accepted.
    Audience,
}

impl Rejection {
    /// What the client is told (never the token).
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "no bearer token in the request",
            Self::Multiple => "more than one token in the request",
            Self::Malformed => "the token is malformed",
            Self::Unsigned => "unsigned tokens are not accepted",
            Self::UnknownCredential => "the token's issuer or key id is not known",
            Self::Algorithm => "the token's algorithm is not accepted",
            Self::Issuer => "the token's issuer is not accepted",
            Self::Signature => "the token's signature is not valid",
            Self::KeysUnavailable => "the token cannot be verified now",
            Self::NoExpiry => "the token has no expiry (exp)",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::Audience => "the token's audience is not accepted",
        }
    }

    /// The RFC 6750 error code of the Bearer challenge.
    fn bearer_error(self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Multiple => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Where a token was found (to remove it afterwards).
#[derive(Debug, Default)]
struct Found {
    tokens: Vec<String>,
    /// `Authorization` values that are not bearer credentials (kept when the token is hidden).
    other_authorization: Vec<String>,
    in_header: bool,
    in_cookie: bool,
    in_query: bool,
}

impl Filter for JwtAuth {
    // Nothing to do on the response: the gateway skips the call.
    const ON_RESPONSE: bool = false;

    fn init(config: &str) -> Result<Self, String> {
        JwtAuth::parse(config)
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let found = self.find(req);
        let verdict = match found.tokens.as_slice() {
            [] => Err(Rejection::Missing),
            [token] => self.authenticate(token),
            _ => Err(Rejection::Multiple),
        };
        match verdict {
            Ok((consumer, token)) => {
                req.set_consumer(&consumer);
                if let Err(e) = self.edit(req, &found, &token) {
                    // Forwarding the token would leak it: refuse instead.
                    log::error(&format!("could not remove the token from the request: {e}"));
                    metrics::counter_add("auth_failure", 1);
                    return Reply::credential_not_removed().into();
                }
                metrics::counter_add("auth_success", 1);
                log::debug(&format!("authenticated consumer {consumer}"));
                Flow::Continue
            }
            Err(rejection) => {
                metrics::counter_add("auth_failure", 1);
                log::debug(&format!("rejected: {}", rejection.message()));
                unauthorized(rejection).into()
            }
        }
    }
}

impl JwtAuth {
    /// Every token the request presents through the configured sources.
    fn find(&self, req: &Request<'_>) -> Found {
        let mut found = Found::default();
        for value in req.header_all(&self.header) {
            match bearer(&value) {
                Some(token) => {
                    found.in_header = true;
                    found.tokens.push(token.to_owned());
                }
                None if self.header == AUTHORIZATION => found.other_authorization.push(value),
                None => {
                    found.in_header = true;
                    found.tokens.push(value.trim().to_owned());
                }
            }
        }
        if let Some(name) = &self.cookie {
            for header in req.header_all("cookie") {
                for (n, v) in header.split(';').filter_map(|c| c.trim().split_once('=')) {
                    if n == name {
                        found.in_cookie = true;
                        found.tokens.push(v.trim_matches('"').to_owned());
                    }
                }
            }
        }
        if let Some(param) = &self.query
            && let Some(query) = req.query()
        {
            for (n, v) in query
                .split('&')
                .map(|p| p.split_once('=').unwrap_or((p, "")))
            {
                if n == param {
                    found.in_query = true;
                    found.tokens.push(v.to_owned());
                }
            }
        }
        found
    }

    /// The consumer a token authenticates.
    fn authenticate(&self, raw: &str) -> Result<(String, Token), Rejection> {
        let token = Token::parse(raw)?;
        let issuer = token.str_claim("iss");
        let credential = credentials::jwt_credential_for(issuer, token.kid.as_deref())
            .ok_or(Rejection::UnknownCredential)?;
        if token.alg != credential.algorithm.name() {
            return Err(Rejection::Algorithm);
        }
        if issuer != Some(credential.issuer.as_str())
            || !self.issuers.is_empty() && !self.issuers.contains(&credential.issuer)
        {
            return Err(Rejection::Issuer);
        }
        crypto::verify_jwt(&credential.id, token.kid.as_deref(), raw).map_err(|e| match e {
            crypto::VerifyError::KeysUnavailable => {
                log::warn(&format!(
                    "the key set of credential {} is not available",
                    credential.id
                ));
                Rejection::KeysUnavailable
            }
            crypto::VerifyError::AlgorithmMismatch => Rejection::Algorithm,
            crypto::VerifyError::UnknownCredential | crypto::VerifyError::UnknownKey => {
                Rejection::UnknownCredential
            }
            _ => Rejection::Signature,
        })?;
        let now = clock::now_ms() as f64 / 1000.0;
        token.check_times(now, self.leeway)?;
        token.check_audience(&self.audiences)?;
        Ok((credential.consumer, token))
    }

    /// After success: remove the token (with `hide_credentials`) and set the claim headers
    /// (client-sent copies are removed either way).
    fn edit(&self, req: &mut Request<'_>, found: &Found, token: &Token) -> Result<(), String> {
        if self.hide_credentials {
            if found.in_header {
                req.remove_header(&self.header);
                for value in &found.other_authorization {
                    req.append_header(AUTHORIZATION, value)?;
                }
            }
            if found.in_cookie
                && let Some(name) = &self.cookie
            {
                let kept: Vec<String> = req
                    .header_all("cookie")
                    .iter()
                    .flat_map(|h| h.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty() && c.split_once('=').is_none_or(|(n, _)| n != name))
                    .map(str::to_owned)
                    .collect();
                req.remove_header("cookie");
                if !kept.is_empty() {
                    req.set_header("cookie", &kept.join("; "))?;
                }
            }
            if found.in_query
                && let (Some(param), Some(query)) = (&self.query, req.query())
            {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|p| !p.is_empty() && p.split('=').next() != Some(param.as_str()))
                    .collect();
                let kept = kept.join("&");
                req.set_query((!kept.is_empty()).then_some(kept.as_str()))?;
            }
        }
        for (claim, header) in &self.claims_to_headers {
            req.remove_header(header);
            if let Some(value) = token.claim_text(claim) {
                req.set_header(header, &value)?;
            }
        }
        Ok(())
    }
}

/// The credentials of a value with the `Bearer` scheme (case-insensitive); `None` otherwise.
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The `401` for `rejection`.
fn unauthorized(rejection: Rejection) -> Reply {
    let mut challenge = format!("Bearer realm=\"{REALM}\"");
    if let Some(error) = rejection.bearer_error() {
        challenge.push_str(&format!(
            ", error=\"{error}\", error_description=\"{}\"",
            rejection.message()
        ));
    }
    Reply::new(401)
        .header("cache-control", "no-store")
        .header("www-authenticate", challenge)
        .json(&json!({
            "error": "unauthorized",
            "message": rejection.message(),
        }))
}

ferrox_sdk::export_filter!(JwtAuth);

#[cfg(test)]
mod tests;
