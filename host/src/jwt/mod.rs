//! JWT credentials of consumers and native signature verification — what the `credentials`
//! and `crypto` host services answer the `jwt-auth` filter.
//!
//! The split (DESIGN §4, §6): the filter keeps the policy (where the token comes from, claims,
//! leeway, audiences); the gateway keeps the keys and verifies signatures natively
//! (`jsonwebtoken` on ring: HS256 in ~1 µs, RS256 in tens of µs, against ~10× that inside a
//! guest). A filter learns which credential a token names ([`JwtCredentials::lookup`]: consumer,
//! credential id, pinned algorithm — never the key) and asks [`JwtCredentials::verify`] to check
//! the signature with that credential's key and its pinned algorithm.
//!
//! Invariants:
//! - one algorithm per credential, fixed by the operator; a token whose header names another
//!   algorithm is refused before any key is touched, and the key is always used with the pinned
//!   algorithm (no `none`, no RS/HS confusion: an HMAC credential only has a secret, an
//!   asymmetric one only public keys, and JWKS sets never provide HMAC keys);
//! - keys come from the config or from the operator's JWKS URL ([`jwks`]), never from the
//!   token (`jku`, `x5u`, `jwk` headers are ignored);
//! - tokens are never logged or put in error messages.

pub mod jwks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::{ConsumerConfig, JwtAlgorithm, JwtCredentialConfig};
use jwks::{JwksCache, JwksSource};

/// Longest token the gateway verifies (bytes).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a signature was not verified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is not three base64url segments with a JSON header.
    #[error("malformed token")]
    Malformed,
    /// The token's header names another algorithm than the credential's.
    #[error("the token's algorithm is not the credential's")]
    AlgorithmMismatch,
    /// No credential has this id (the configuration changed).
    #[error("unknown credential")]
    UnknownCredential,
    /// The credential's key set has no key for the token's `kid`.
    #[error("no key for the token's key id")]
    UnknownKey,
    /// The credential's key set could not be fetched and none is cached.
    #[error("the key set is not available")]
    KeysUnavailable,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
}

/// One consumer credential, built from a [`JwtCredentialConfig`].
pub struct JwtCredential {
    /// Stable id the filter passes back to `verify` (`<consumer>.jwt[<index>]`).
    pub id: Arc<str>,
    /// The consumer it authenticates.
    pub consumer: Arc<str>,
    /// The `iss` of its tokens.
    pub issuer: Arc<str>,
    /// The `kid` of its tokens, if pinned.
    pub key_id: Option<Arc<str>>,
    /// The one algorithm accepted.
    pub algorithm: JwtAlgorithm,
    key: KeySource,
}

impl std::fmt::Debug for JwtCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("JwtCredential")
            .field("id", &self.id)
            .field("consumer", &self.consumer)
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

enum KeySource {
    /// A secret or a public key from the config.
    Static(DecodingKey),
    /// Keys fetched from the operator's JWKS URL.
    Jwks(Arc<JwksSource>),
}

/// Every JWT credential of a config, indexed for the filters' lookups.
#[derive(Debug, Default)]
pub struct JwtCredentials {
    list: Vec<JwtCredential>,
    by_id: HashMap<Arc<str>, usize>,
    /// `key_id` → credential.
    by_kid: HashMap<Arc<str>, usize>,
    /// issuer → its credential without `key_id`.
    by_issuer: HashMap<Arc<str>, usize>,
}

impl JwtCredentials {
    /// Build the credentials of `consumers` (validated: see [`check_credential`]); JWKS URLs
    /// get their entry in `jwks` (nothing is fetched here). Errors name the field.
    pub fn build(consumers: &[ConsumerConfig], jwks: &JwksCache) -> Result<Self, (String, String)> {
        let mut out = Self::default();
        for (i, c) in consumers.iter().enumerate() {
            for (j, cfg) in c.jwt.iter().enumerate() {
                let path = format!("consumers[{i}].jwt[{j}]");
                let key = match (&cfg.jwks_url, decoding_key(cfg)) {
                    (_, Err((field, message))) => return Err((format!("{path}.{field}"), message)),
                    (_, Ok(Some(key))) => KeySource::Static(key),
                    (Some(url), Ok(None)) => {
                        KeySource::Jwks(jwks.source(url, cfg.jwks_refetch_interval.0))
                    }
                    (None, Ok(None)) => {
                        return Err((path, "needs `secret`, `public_key` or `jwks_url`".into()));
                    }
                };
                let credential = JwtCredential {
                    id: format!("{}.jwt[{j}]", c.name).into(),
                    consumer: c.name.as_str().into(),
                    issuer: cfg.issuer.as_str().into(),
                    key_id: cfg.key_id.as_deref().map(Arc::from),
                    algorithm: cfg.algorithm,
                    key,
                };
                let index = out.list.len();
                out.by_id.insert(credential.id.clone(), index);
                let slot = match &credential.key_id {
                    Some(kid) => out.by_kid.insert(kid.clone(), index),
                    None => out.by_issuer.insert(credential.issuer.clone(), index),
                };
                if slot.is_some() {
                    return Err((path, "same issuer or key_id as another credential".into()));
                }
                out.list.push(credential);
            }
        }
        Ok(out)
    }

    /// How many credentials there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The JWKS sources the credentials use (to fetch them before serving).
    pub fn jwks_sources(&self) -> Vec<Arc<JwksSource>> {
        let mut out: Vec<Arc<JwksSource>> = Vec::new();
        for c in &self.list {
            if let KeySource::Jwks(s) = &c.key
                && !out.iter().any(|o| Arc::ptr_eq(o, s))
            {
                out.push(s.clone());
            }
        }
        out
    }

    /// Fetch every key set the credentials use that is not cached yet, waiting at most
    /// [`jwks::PREFETCH_WAIT`]; then forget the sets of `cache` no credential uses. Called
    /// before a config starts serving.
    pub async fn prefetch(&self, cache: &JwksCache) {
        let sources = self.jwks_sources();
        futures_util::future::join_all(sources.iter().map(|s| s.prefetch(jwks::PREFETCH_WAIT)))
            .await;
        cache.retain(&sources);
    }

    /// The credential a token names: the one whose `key_id` is the token's `kid`, else the
    /// issuer's credential without `key_id`.
    pub fn lookup(&self, issuer: Option<&str>, key_id: Option<&str>) -> Option<&JwtCredential> {
        key_id
            .and_then(|kid| self.by_kid.get(kid))
            .or_else(|| issuer.and_then(|iss| self.by_issuer.get(iss)))
            .map(|&i| &self.list[i])
    }

    /// Verify the signature of compact JWS `token` with credential `id`'s key and pinned
    /// algorithm (for a JWKS credential, the key `key_id` names; a miss may wait for a refetch
    /// until `deadline`).
    pub async fn verify(
        &self,
        id: &str,
        key_id: Option<&str>,
        token: &str,
        deadline: Option<Instant>,
    ) -> Result<(), VerifyError> {
        let credential = self
            .by_id
            .get(id)
            .map(|&i| &self.list[i])
            .ok_or(VerifyError::UnknownCredential)?;
        let parts = split_token(token)?;
        if header_algorithm(parts.header)? != credential.algorithm.name() {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let algorithm = algorithm(credential.algorithm);
        match &credential.key {
            KeySource::Static(key) => check(&parts, key, algorithm),
            KeySource::Jwks(source) => {
                let key = source.key(key_id, credential.algorithm, deadline).await?;
                check(&parts, &key, algorithm)
            }
        }
    }
}

/// The three segments of a compact JWS.
struct TokenParts<'a> {
    header: &'a str,
    signing_input: &'a str,
    signature: &'a str,
}

fn split_token(token: &str) -> Result<TokenParts<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(VerifyError::Malformed)?;
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || signature.is_empty()
        || ![header, payload, signature].iter().all(|s| b64url(s))
    {
        return Err(VerifyError::Malformed);
    }
    Ok(TokenParts {
        header,
        signing_input,
        signature,
    })
}

/// The `alg` of a base64url JOSE header; headers with `crit` extensions are refused (none is
/// understood, RFC 7515 §4.1.11).
fn header_algorithm(header: &str) -> Result<String, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed)?;
    if header.contains_key("crit") {
        return Err(VerifyError::Malformed);
    }
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) => Ok(alg.clone()),
        _ => Err(VerifyError::Malformed),
    }
}

fn check(
    parts: &TokenParts<'_>,
    key: &DecodingKey,
    algorithm: Algorithm,
) -> Result<(), VerifyError> {
    match jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signing_input.as_bytes(),
        key,
        algorithm,
    ) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(VerifyError::BadSignature),
    }
}

/// The `jsonwebtoken` algorithm of a pinned one.
pub fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// The kind of public key an algorithm needs, as named in messages.
fn key_kind(a: JwtAlgorithm) -> &'static str {
    match a {
        JwtAlgorithm::ES256 => "EC P-256",
        JwtAlgorithm::ES384 => "EC P-384",
        JwtAlgorithm::EdDSA => "Ed25519",
        _ => "RSA",
    }
}

/// The static key of a credential (`None` for a JWKS credential), or the field at fault and
/// why. Checks which key fields go with the algorithm.
pub fn decoding_key(
    cfg: &JwtCredentialConfig,
) -> Result<Option<DecodingKey>, (&'static str, String)> {
    let given = [
        ("secret", cfg.secret.is_some()),
        ("public_key", cfg.public_key.is_some()),
        ("jwks_url", cfg.jwks_url.is_some()),
    ];
    let alg = cfg.algorithm.name();
    if cfg.algorithm.is_hmac() {
        for (field, present) in &given[1..] {
            if *present {
                return Err((
                    field,
                    format!(
                        "{alg} is keyed by `secret`; a public key is never used as an HMAC secret"
                    ),
                ));
            }
        }
        return match cfg.secret.as_deref() {
            None => Err(("secret", format!("required for {alg}"))),
            Some("") => Err(("secret", "must not be empty".into())),
            Some(s) => Ok(Some(DecodingKey::from_secret(s.as_bytes()))),
        };
    }
    if cfg.secret.is_some() {
        return Err((
            "secret",
            format!("{alg} verifies with a public key (`public_key` or `jwks_url`), not a secret"),
        ));
    }
    match (&cfg.public_key, &cfg.jwks_url) {
        (Some(_), Some(_)) => Err((
            "jwks_url",
            "give `public_key` or `jwks_url`, not both".into(),
        )),
        (None, None) => Err((
            "public_key",
            format!("{alg} needs `public_key` or `jwks_url`"),
        )),
        (None, Some(url)) => check_jwks_url(url)
            .map(|()| None)
            .map_err(|m| ("jwks_url", m)),
        (Some(pem), None) => {
            let kind = key_kind(cfg.algorithm);
            let not_valid = || ("public_key", format!("not a valid PEM {kind} public key"));
            if pem.contains("PRIVATE KEY") {
                return Err((
                    "public_key",
                    "is a private key; give the public key (never configure the signing key)"
                        .into(),
                ));
            }
            let key = match cfg.algorithm {
                JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => {
                    DecodingKey::from_ec_pem(pem.as_bytes())
                }
                JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
            };
            key.map(Some).map_err(|_| not_valid())
        }
    }
}

/// A JWKS URL: `http://` or `https://` with a host.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        )),
    }
}

/// Check one credential: every problem as `(field, message)`.
pub fn check_credential(cfg: &JwtCredentialConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if cfg.issuer.trim().is_empty() {
        out.push(("issuer", "must not be empty".to_owned()));
    }
    if cfg.key_id.as_deref().is_some_and(str::is_empty) {
        out.push((
            "key_id",
            "must not be empty (leave it out instead)".to_owned(),
        ));
    }
    let interval = cfg.jwks_refetch_interval.0;
    if interval < std::time::Duration::from_secs(1)
        || interval > std::time::Duration::from_secs(3600)
    {
        out.push((
            "jwks_refetch_interval",
            format!(
                "must be between 1s and 1h (got {})",
                cfg.jwks_refetch_interval
            ),
        ));
    }
    if let Err(e) = decoding_key(cfg) {
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests;
