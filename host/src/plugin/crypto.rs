//! The `crypto` host service and the JWT half of `credentials`: what `jwt-auth` asks the
//! gateway ([`crate::jwt`] does the work; this module only converts between it and the WIT).

use super::bindings::ferrox::filter::credentials::{JwtAlgorithm as WitAlgorithm, JwtCredential};
use super::bindings::ferrox::filter::crypto::{Host, VerifyError as WitError};
use super::host::{HostState, Services};
use crate::config::JwtAlgorithm;
use crate::jwt::VerifyError;

/// `credentials.jwt-credential-for`.
pub(super) fn jwt_credential_for(
    services: &Services,
    issuer: Option<&str>,
    key_id: Option<&str>,
) -> Option<JwtCredential> {
    let credentials = services.credentials.load();
    credentials
        .jwt
        .lookup(issuer, key_id)
        .map(|c| JwtCredential {
            consumer: c.consumer.to_string(),
            id: c.id.to_string(),
            issuer: c.issuer.to_string(),
            algorithm: wit_algorithm(c.algorithm),
        })
}

fn wit_algorithm(a: JwtAlgorithm) -> WitAlgorithm {
    match a {
        JwtAlgorithm::HS256 => WitAlgorithm::Hs256,
        JwtAlgorithm::HS384 => WitAlgorithm::Hs384,
        JwtAlgorithm::HS512 => WitAlgorithm::Hs512,
        JwtAlgorithm::RS256 => WitAlgorithm::Rs256,
        JwtAlgorithm::RS384 => WitAlgorithm::Rs384,
        JwtAlgorithm::RS512 => WitAlgorithm::Rs512,
        JwtAlgorithm::PS256 => WitAlgorithm::Ps256,
        JwtAlgorithm::PS384 => WitAlgorithm::Ps384,
        JwtAlgorithm::PS512 => WitAlgorithm::Ps512,
        JwtAlgorithm::ES256 => WitAlgorithm::Es256,
        JwtAlgorithm::ES384 => WitAlgorithm::Es384,
        JwtAlgorithm::EdDSA => WitAlgorithm::Eddsa,
    }
}

impl Host for HostState {
    async fn verify_jwt(
        &mut self,
        credential: String,
        key_id: Option<String>,
        token: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        self.note("crypto");
        let credentials = self.services.credentials.load_full();
        let deadline = self.store_deadline;
        let result = self
            .io(credentials
                .jwt
                .verify(&credential, key_id.as_deref(), &token, deadline))
            .await;
        Ok(result.map_err(|e| match e {
            VerifyError::Malformed => WitError::Malformed,
            VerifyError::AlgorithmMismatch => WitError::AlgorithmMismatch,
            VerifyError::UnknownCredential => WitError::UnknownCredential,
            VerifyError::UnknownKey => WitError::UnknownKey,
            VerifyError::KeysUnavailable => WitError::KeysUnavailable,
            VerifyError::BadSignature => WitError::BadSignature,
        }))
    }
}
