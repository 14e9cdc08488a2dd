//! Consumer credentials held by the gateway: a filter asks, it never sees the table.

use crate::backend;

/// The name of the consumer owning API key `key`, if any. The gateway hashes the key and
/// compares it in constant time.
pub fn consumer_for_key(key: &str) -> Option<String> {
    backend::consumer_for_key(key)
}

/// A JWS signature algorithm (RFC 7518), as pinned on a credential. There is no `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every algorithm.
    pub const ALL: [JwtAlgorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The name JOSE headers use (`"HS256"`, …, `"EdDSA"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// A consumer's JWT credential as a filter sees it: never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtCredential {
    /// The consumer it authenticates.
    pub consumer: String,
    /// Its id, for [`crypto::verify_jwt`](crate::crypto::verify_jwt).
    pub id: String,
    /// The `iss` its tokens must carry.
    pub issuer: String,
    /// The only algorithm its tokens may use.
    pub algorithm: JwtAlgorithm,
}

/// The credential a token names: the one whose key id is the token's `kid`, else the
/// `issuer`'s credential without a key id.
pub fn jwt_credential_for(issuer: Option<&str>, key_id: Option<&str>) -> Option<JwtCredential> {
    backend::jwt_credential_for(issuer, key_id)
}
