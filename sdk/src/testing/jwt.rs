//! JWT credentials of the in-memory gateway: the `credentials` lookup and the `crypto`
//! verification, with the gateway's rules (lookup by `kid` then issuer, the header's `alg` must
//! be the pinned one). HMAC credentials verify real signatures, so tests can use tokens signed
//! with [`sign_jwt`]; other algorithms stand in with a list of accepted signatures.

use std::cell::RefCell;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};

use crate::credentials::{JwtAlgorithm, JwtCredential};
use crate::crypto::VerifyError;

/// The key of a test credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestJwtKey {
    /// An HMAC secret (for `HS256` / `HS384` / `HS512`): signatures are really computed.
    Secret(Vec<u8>),
    /// Stands in for a public key: these signature segments (the token's third part) verify,
    /// others do not.
    Signatures(Vec<String>),
}

#[derive(Debug)]
struct Entry {
    credential: JwtCredential,
    key_id: Option<String>,
    key: TestJwtKey,
}

#[derive(Debug, Default)]
struct Jwt {
    entries: Vec<Entry>,
    verified: Vec<String>,
}

thread_local! {
    static JWT: RefCell<Jwt> = RefCell::new(Jwt::default());
}

pub(crate) fn reset() {
    JWT.with(|j| *j.borrow_mut() = Jwt::default());
}

/// Give `consumer` a JWT credential for tokens from `issuer` (with `kid` = `key_id` when set),
/// pinned to `algorithm`. Returns its id (`<consumer>.jwt[<n>]`, as the gateway names them).
pub fn add_jwt_credential(
    consumer: &str,
    issuer: &str,
    key_id: Option<&str>,
    algorithm: JwtAlgorithm,
    key: TestJwtKey,
) -> String {
    JWT.with(|j| {
        let mut j = j.borrow_mut();
        let n = j
            .entries
            .iter()
            .filter(|e| e.credential.consumer == consumer)
            .count();
        let id = format!("{consumer}.jwt[{n}]");
        j.entries.push(Entry {
            credential: JwtCredential {
                consumer: consumer.to_owned(),
                id: id.clone(),
                issuer: issuer.to_owned(),
                algorithm,
            },
            key_id: key_id.map(str::to_owned),
            key,
        });
        id
    })
}

/// The credential ids `crypto::verify_jwt` was asked about, in order.
pub fn jwt_verifications() -> Vec<String> {
    JWT.with(|j| j.borrow().verified.clone())
}

/// A compact JWS of `header` and `claims` (JSON values, serialised as given) signed with
/// HMAC `secret` under `algorithm` (`HS256` / `HS384` / `HS512`; any other algorithm gets the
/// signature segment `"sig"`, for use with [`TestJwtKey::Signatures`]).
pub fn sign_jwt(
    algorithm: JwtAlgorithm,
    secret: &[u8],
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = hmac(algorithm, secret, input.as_bytes())
        .map_or_else(|| "sig".to_owned(), |s| URL_SAFE_NO_PAD.encode(s));
    format!("{input}.{signature}")
}

fn hmac(algorithm: JwtAlgorithm, secret: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
        let mut m = <M as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        JwtAlgorithm::HS256 => Some(mac::<Hmac<sha2::Sha256>>(secret, input)),
        JwtAlgorithm::HS384 => Some(mac::<Hmac<sha2::Sha384>>(secret, input)),
        JwtAlgorithm::HS512 => Some(mac::<Hmac<sha2::Sha512>>(secret, input)),
        _ => None,
    }
}

pub(crate) fn jwt_credential_for(
    issuer: Option<&str>,
    key_id: Option<&str>,
) -> Option<JwtCredential> {
    JWT.with(|j| {
        let j = j.borrow();
        key_id
            .and_then(|kid| j.entries.iter().find(|e| e.key_id.as_deref() == Some(kid)))
            .or_else(|| {
                let iss = issuer?;
                j.entries
                    .iter()
                    .find(|e| e.key_id.is_none() && e.credential.issuer == iss)
            })
            .map(|e| e.credential.clone())
    })
}

pub(crate) fn verify_jwt(
    credential: &str,
    _key_id: Option<&str>,
    token: &str,
) -> Result<(), VerifyError> {
    JWT.with(|j| {
        let mut j = j.borrow_mut();
        j.verified.push(credential.to_owned());
        let entry = j
            .entries
            .iter()
            .find(|e| e.credential.id == credential)
            .ok_or(VerifyError::UnknownCredential)?;
        let (input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (header, _) = input.split_once('.').ok_or(VerifyError::Malformed)?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(VerifyError::Malformed)?;
        if header.get("alg").and_then(serde_json::Value::as_str)
            != Some(entry.credential.algorithm.name())
        {
            return Err(VerifyError::AlgorithmMismatch);
        }
        let valid = match &entry.key {
            TestJwtKey::Secret(secret) => {
                let given = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|_| VerifyError::Malformed)?;
                hmac(entry.credential.algorithm, secret, input.as_bytes())
                    .is_some_and(|expected| expected == given)
            }
            TestJwtKey::Signatures(accepted) => accepted.iter().any(|s| s == signature),
        };
        if valid {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    })
}
