//! Signature verification with keys the gateway holds: native, fast, and the keys never enter
//! the filter.
//!
//! ```
//! # use ferrox_sdk::{credentials, crypto};
//! # let token = "e30.e30.c2ln";
//! // The filter found the credential (by `iss` / `kid`) and checked the header's `alg`.
//! if let Some(cred) = credentials::jwt_credential_for(Some("alice-app"), None) {
//!     let verified = crypto::verify_jwt(&cred.id, None, token).is_ok();
//! #   let _ = verified;
//! }
//! ```

use crate::backend;

/// Why a signature was not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The token is not three base64url segments with a JSON header naming `alg`.
    Malformed,
    /// The token's `alg` is not the credential's pinned algorithm.
    AlgorithmMismatch,
    /// No credential has this id (the configuration changed meanwhile).
    UnknownCredential,
    /// The credential's key set (JWKS) has no key for the token's `kid`.
    UnknownKey,
    /// The credential's key set could not be fetched and none is cached.
    KeysUnavailable,
    /// The signature does not match.
    BadSignature,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::AlgorithmMismatch => "the token's algorithm is not the credential's",
            Self::UnknownCredential => "unknown credential",
            Self::UnknownKey => "no key for the token's key id",
            Self::KeysUnavailable => "the key set is not available",
            Self::BadSignature => "bad signature",
            Self::Other(m) => m,
        })
    }
}

/// Verify the signature of compact JWS `token` with the key of credential `credential` (an id
/// from [`credentials::jwt_credential_for`](crate::credentials::jwt_credential_for)) and its
/// pinned algorithm; `key_id` (the token's `kid`) picks the key of a JWKS credential. Claims
/// are not looked at.
///
/// # Errors
///
/// Why the signature was not verified; treat every error as "not authenticated".
pub fn verify_jwt(credential: &str, key_id: Option<&str>, token: &str) -> Result<(), VerifyError> {
    backend::verify_jwt(credential, key_id, token)
}
