//! Unit tests of JWT credentials: config checks with their paths, the lookup rules, native
//! verification with real keys (HMAC, RSA, EC, Ed25519) and key set parsing.

use jsonwebtoken::{EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

use super::*;
use crate::config::{parse_yaml, validate};

fn issues_of(yaml: &str) -> Vec<String> {
    validate(&parse_yaml(yaml).expect("parses"))
        .iter()
        .map(ToString::to_string)
        .collect()
}

struct KeyPair {
    private_pem: String,
    public_pem: String,
}

fn rsa_pair() -> KeyPair {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    KeyPair {
        private_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string(),
        public_pem: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI PEM"),
    }
}

fn rcgen_pair(alg: &'static rcgen::SignatureAlgorithm) -> KeyPair {
    let key = rcgen::KeyPair::generate_for(alg).expect("key pair");
    KeyPair {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("signs")
}

fn credentials(yaml: &str) -> JwtCredentials {
    let cfg = parse_yaml(yaml).expect("parses");
    let issues = validate(&cfg);
    assert!(issues.is_empty(), "{issues:?}");
    JwtCredentials::build(&cfg.consumers, &JwksCache::default()).expect("builds")
}

fn indent(pem: &str) -> String {
    pem.lines()
        .map(|l| format!("          {l}\n"))
        .collect::<String>()
}

async fn verify(c: &JwtCredentials, id: &str, token: &str) -> Result<(), VerifyError> {
    c.verify(id, None, token, None).await
}

#[test]
fn the_design_example_is_accepted_as_written() {
    let c = credentials(
        "consumers:\n  - name: alice\n    keys: [alice-secret-key]\n    jwt: [{ issuer: alice-app, algorithm: HS256, secret: alice-jwt-secret }]\n",
    );
    let found = c.lookup(Some("alice-app"), None).expect("found by issuer");
    assert_eq!(&*found.id, "alice.jwt[0]");
    assert_eq!(&*found.consumer, "alice");
    assert_eq!(found.algorithm, JwtAlgorithm::HS256);
    // The key never shows in debug output.
    assert!(!format!("{found:?}").contains("alice-jwt-secret"));
}

#[test]
fn credential_errors_name_their_field() {
    let rsa = rsa_pair();
    let yaml = format!(
        r#"
consumers:
  - name: alice
    jwt:
      - {{ issuer: a, algorithm: HS256 }}
      - {{ issuer: b, algorithm: RS256, public_key: "not a pem" }}
      - {{ issuer: c, algorithm: HS256, secret: s, public_key: "x" }}
      - {{ issuer: d, algorithm: RS256, secret: s }}
      - {{ issuer: e, algorithm: ES256, public_key: "x", jwks_url: "https://x/jwks" }}
      - {{ issuer: f, algorithm: ES256 }}
      - {{ issuer: g, algorithm: RS256, jwks_url: "ftp://x/jwks" }}
      - {{ issuer: "", algorithm: HS256, secret: "" }}
      - {{ issuer: h, algorithm: HS256, secret: s, key_id: k1 }}
  - name: bob
    jwt:
      - {{ issuer: h, algorithm: HS256, secret: s, key_id: k1 }}
      - {{ issuer: i, algorithm: RS256, jwks_url: "http://127.0.0.1:1/jwks", jwks_refetch_interval: 100ms }}
      - {{ issuer: a, algorithm: HS512, secret: s }}
      - issuer: j
        algorithm: RS256
        public_key: |
{}
      - issuer: k
        algorithm: ES256
        public_key: |
{}
"#,
        indent(&rsa.private_pem),
        indent(&rsa.public_pem),
    );
    let got = issues_of(&yaml);
    let expected = [
        "consumers[0].jwt[0].secret: required for HS256",
        "consumers[0].jwt[1].public_key: not a valid PEM RSA public key",
        "consumers[0].jwt[2].public_key: HS256 is keyed by `secret`; a public key is never used as an HMAC secret",
        "consumers[0].jwt[3].secret: RS256 verifies with a public key (`public_key` or `jwks_url`), not a secret",
        "consumers[0].jwt[4].jwks_url: give `public_key` or `jwks_url`, not both",
        "consumers[0].jwt[5].public_key: ES256 needs `public_key` or `jwks_url`",
        "consumers[0].jwt[6].jwks_url: \"ftp://x/jwks\" must be an http:// or https:// URL with a host",
        "consumers[0].jwt[7].issuer: must not be empty",
        "consumers[0].jwt[7].secret: must not be empty",
        "consumers[1].jwt[0].key_id: key_id \"k1\" is also used by consumers[0].jwt[8]",
        "consumers[1].jwt[1].jwks_refetch_interval: must be between 1s and 1h (got 100ms)",
        "consumers[1].jwt[2].issuer: issuer \"a\" already has a credential without key_id (consumers[0].jwt[0]); give each of them a key_id",
        "consumers[1].jwt[3].public_key: is a private key; give the public key (never configure the signing key)",
        "consumers[1].jwt[4].public_key: not a valid PEM EC P-256 public key",
    ];
    for e in expected {
        assert!(got.iter().any(|g| g == e), "missing {e:?} in {got:#?}");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

#[test]
fn algorithm_none_and_unknown_algorithms_do_not_parse() {
    for alg in ["none", "None", "hs256", "RS1"] {
        let yaml = format!(
            "consumers: [{{ name: a, jwt: [{{ issuer: a, algorithm: {alg}, secret: s }}] }}]"
        );
        let err = parse_yaml(&yaml).expect_err("refused").to_string();
        assert!(err.contains("algorithm"), "{alg}: {err}");
    }
}

#[test]
fn lookup_prefers_the_kid_then_the_issuer_credential_without_kid() {
    let c = credentials(
        r#"
consumers:
  - name: alice
    jwt:
      - { issuer: shared, algorithm: HS256, secret: s1 }
      - { issuer: shared, key_id: k2, algorithm: HS384, secret: s2 }
  - name: bob
    jwt:
      - { issuer: bob-app, key_id: b1, algorithm: HS256, secret: s3 }
"#,
    );
    let id = |iss, kid| c.lookup(iss, kid).map(|c| c.id.to_string());
    assert_eq!(id(Some("shared"), None).as_deref(), Some("alice.jwt[0]"));
    assert_eq!(
        id(Some("shared"), Some("k2")).as_deref(),
        Some("alice.jwt[1]")
    );
    assert_eq!(
        id(Some("shared"), Some("zz")).as_deref(),
        Some("alice.jwt[0]")
    );
    assert_eq!(id(None, Some("b1")).as_deref(), Some("bob.jwt[0]"));
    // bob's issuer has only a credential with key id: a token without it names nothing.
    assert_eq!(id(Some("bob-app"), None), None);
    assert_eq!(id(Some("bob-app"), Some("nope")), None);
    assert_eq!(id(None, None), None);
}

#[tokio::test]
async fn hmac_tokens_verify_and_everything_else_fails() {
    let c = credentials(
        "consumers: [{ name: alice, jwt: [{ issuer: a, algorithm: HS256, secret: alice-jwt-secret }] }]",
    );
    let claims = json!({ "iss": "a", "exp": 2_000_000_000u64 });
    let key = EncodingKey::from_secret(b"alice-jwt-secret");
    let token = sign(Algorithm::HS256, &key, &claims);
    assert_eq!(verify(&c, "alice.jwt[0]", &token).await, Ok(()));
    assert_eq!(
        verify(&c, "nobody.jwt[0]", &token).await,
        Err(VerifyError::UnknownCredential)
    );
    // Another secret, another algorithm, a tampered payload, alg none, junk.
    let other = sign(Algorithm::HS256, &EncodingKey::from_secret(b"x"), &claims);
    assert_eq!(
        verify(&c, "alice.jwt[0]", &other).await,
        Err(VerifyError::BadSignature)
    );
    let hs384 = sign(Algorithm::HS384, &key, &claims);
    assert_eq!(
        verify(&c, "alice.jwt[0]", &hs384).await,
        Err(VerifyError::AlgorithmMismatch)
    );
    let (header, rest) = token.split_once('.').expect("parts");
    let (_, sig) = rest.split_once('.').expect("parts");
    let admin = URL_SAFE_NO_PAD
        .encode(json!({ "iss": "a", "exp": 2_000_000_000u64, "admin": true }).to_string());
    assert_eq!(
        verify(&c, "alice.jwt[0]", &format!("{header}.{admin}.{sig}")).await,
        Err(VerifyError::BadSignature)
    );
    let none = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert_eq!(
        verify(&c, "alice.jwt[0]", &none).await,
        Err(VerifyError::AlgorithmMismatch)
    );
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.c2ln",
        "e30.e30.c2ln",
        &"a".repeat(MAX_TOKEN_BYTES + 1),
    ] {
        assert_eq!(
            verify(&c, "alice.jwt[0]", junk).await,
            Err(VerifyError::Malformed),
            "{junk:.20}"
        );
    }
}

#[tokio::test]
async fn rsa_ec_and_ed25519_keys_verify_with_their_pinned_algorithm_only() {
    let rsa = rsa_pair();
    let ec = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = rcgen_pair(&rcgen::PKCS_ED25519);
    let yaml = format!(
        "consumers:\n  - name: r\n    jwt:\n      - issuer: r\n        algorithm: RS256\n        public_key: |\n{}      - issuer: p\n        algorithm: PS256\n        public_key: |\n{}  - name: e\n    jwt:\n      - issuer: e\n        algorithm: ES256\n        public_key: |\n{}  - name: d\n    jwt:\n      - issuer: d\n        algorithm: EdDSA\n        public_key: |\n{}",
        indent(&rsa.public_pem),
        indent(&rsa.public_pem),
        indent(&ec.public_pem),
        indent(&ed.public_pem),
    );
    let c = credentials(&yaml);
    let claims = json!({ "exp": 2_000_000_000u64 });
    let rsa_key = EncodingKey::from_rsa_pem(rsa.private_pem.as_bytes()).expect("RSA key");
    let ec_key = EncodingKey::from_ec_pem(ec.private_pem.as_bytes()).expect("EC key");
    let ed_key = EncodingKey::from_ed_pem(ed.private_pem.as_bytes()).expect("Ed key");
    assert_eq!(
        verify(&c, "r.jwt[0]", &sign(Algorithm::RS256, &rsa_key, &claims)).await,
        Ok(())
    );
    assert_eq!(
        verify(&c, "r.jwt[1]", &sign(Algorithm::PS256, &rsa_key, &claims)).await,
        Ok(())
    );
    assert_eq!(
        verify(&c, "e.jwt[0]", &sign(Algorithm::ES256, &ec_key, &claims)).await,
        Ok(())
    );
    assert_eq!(
        verify(&c, "d.jwt[0]", &sign(Algorithm::EdDSA, &ed_key, &claims)).await,
        Ok(())
    );
    // RS/HS confusion: an HS256 token whose secret is the RSA public key PEM.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
        &claims,
    );
    assert_eq!(
        verify(&c, "r.jwt[0]", &confused).await,
        Err(VerifyError::AlgorithmMismatch)
    );
    // Same key, other RSA padding: the pinned one decides.
    assert_eq!(
        verify(&c, "r.jwt[0]", &sign(Algorithm::RS384, &rsa_key, &claims)).await,
        Err(VerifyError::AlgorithmMismatch)
    );
    // A token of another key with the right algorithm.
    let other = rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other_key = EncodingKey::from_ec_pem(other.private_pem.as_bytes()).expect("EC key");
    assert_eq!(
        verify(&c, "e.jwt[0]", &sign(Algorithm::ES256, &other_key, &claims)).await,
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn key_sets_keep_only_signature_keys_that_fit() {
    let set = json!({ "keys": [
        { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
        { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
        { "kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB" },
        { "kty": "RSA", "kid": "rs", "n": "AQAB", "e": "AQAB" },
        { "kty": "EC", "kid": "p384", "crv": "P-384", "x": "AQAB", "y": "AQAB" },
        { "kty": "weird", "kid": "w" },
    ]});
    let keys = jwks::parse_set_for_tests(set.to_string().as_bytes()).expect("parses");
    let kids: Vec<(&str, Vec<JwtAlgorithm>)> = keys
        .iter()
        .map(|(kid, fits)| (kid.as_str(), fits.clone()))
        .collect();
    assert_eq!(
        kids,
        [
            ("ps", vec![JwtAlgorithm::PS256]),
            (
                "rs",
                vec![
                    JwtAlgorithm::RS256,
                    JwtAlgorithm::RS384,
                    JwtAlgorithm::RS512,
                    JwtAlgorithm::PS256,
                    JwtAlgorithm::PS384,
                    JwtAlgorithm::PS512
                ]
            ),
            ("p384", vec![JwtAlgorithm::ES384]),
        ]
    );
    assert!(jwks::parse_set_for_tests(b"[]").is_err());
    assert!(jwks::parse_set_for_tests(b"nope").is_err());
}
