//! The built-in `jwt-auth` filter through the running gateway, with real signed tokens: HS256
//! secrets, RSA and EC keys generated here, and a JWKS served by an in-process server. Each
//! classic pitfall is a test case; the key set's rotation, outage and refetch limit are
//! observed through the server's hit count; tokens never reach logs or metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::support::*;

const HS_SECRET: &str = "alice-jwt-secret";

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// One RSA key pair for the whole binary (RSA generation is slow): (private PEM, public PEM).
fn rsa_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        (
            key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
            key.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM"),
        )
    })
}

/// An EC P-256 key: the signing key and its JWK (with `kid`).
struct EcKey {
    signing: EncodingKey,
    public_pem: String,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    EcKey {
        signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC PEM"),
        public_pem: pair.public_key_pem(),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
    }
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
}

fn with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h
}

/// Claims of `iss` valid for ten minutes.
fn claims(iss: &str) -> Value {
    json!({ "iss": iss, "sub": "user-1", "exp": now() + 600 })
}

/// A key set server: serves `keys` (or 503 while `down`) and counts its hits.
struct Jwks {
    server: Upstream,
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
}

impl Jwks {
    async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let down = Arc::new(AtomicBool::new(false));
        let (k, d) = (keys.clone(), down.clone());
        let server = upstream(move |_req| {
            let (k, d) = (k.clone(), d.clone());
            async move {
                if d.load(Ordering::SeqCst) {
                    return text_response(StatusCode::SERVICE_UNAVAILABLE, "down");
                }
                let set = json!({ "keys": *k.lock().expect("keys lock") });
                json_response(StatusCode::OK, &set)
            }
        })
        .await;
        Self { server, keys, down }
    }
    fn url(&self) -> String {
        format!("http://{}/jwks", self.server.addr)
    }
    fn hits(&self) -> usize {
        self.server.hits()
    }
    fn set(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("keys lock") = keys;
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("          {l}\n")).collect()
}

/// Consumers: alice (HS256 secret), bob (RS256 PEM), carol (ES256 PEM, key id `carol-k1`),
/// dave (ES256 from the JWKS at `jwks`, refetch at most every second). Routes `/<name>`, each
/// with one jwt-auth filter configured with `config`.
fn doc(up: SocketAddr, carol_pem: &str, jwks: &str, routes: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "upstreams:\n{}consumers:\n  - name: alice\n    jwt: [{{ issuer: alice-app, algorithm: HS256, secret: {HS_SECRET} }}]\n  - name: bob\n    jwt:\n      - issuer: bob-app\n        algorithm: RS256\n        public_key: |\n{}  - name: carol\n    jwt:\n      - issuer: carol-app\n        key_id: carol-k1\n        algorithm: ES256\n        public_key: |\n{}  - name: dave\n    jwt: [{{ issuer: dave-app, algorithm: ES256, jwks_url: \"{jwks}\", jwks_refetch_interval: 1s }}]\nroutes:\n",
        upstream_yaml("u", &[up], ""),
        indent(&rsa_keys().1),
        indent(carol_pem),
    );
    for (name, config) in routes {
        yaml.push_str(&format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: u\n    filters:\n      - {{ plugin: jwt-auth, timeout: 2s, config: {config} }}\n"
        ));
    }
    yaml
}

const ROUTES: [(&str, &str); 4] = [
    ("jwt", "{}"),
    ("aud", "{ audiences: [api] }"),
    ("strict", "{ leeway: 0 }"),
    (
        "query",
        "{ query: jwt, claims_to_headers: { sub: x-jwt-sub } }",
    ),
];

async fn bearer(gw: &Gw, path: &str, token: &str) -> Resp {
    get_with(
        &gw.url(path),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// Assert a `401` with `message` whose challenge carries `error`, and no token in it.
fn assert_401(r: &Resp, message: &str, error: &str, token: &str) {
    assert_eq!(
        r.status,
        401,
        "{message}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({ "error": "unauthorized", "message": message })
    );
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"ferrox\"")
            && challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    assert!(!token.is_empty());
    assert!(!format!("{:?} {:?}", r.headers, r.body).contains(token));
}

struct Setup {
    up: Upstream,
    gw: Gw,
    carol: EcKey,
    dave: EcKey,
    jwks: Jwks,
}

async fn setup() -> Setup {
    let up = echo_upstream().await;
    let carol = ec_key("carol-k1");
    let dave = ec_key("k1");
    let jwks = Jwks::start(vec![dave.jwk.clone()]).await;
    let gw = gateway(&doc(up.addr, &carol.public_pem, &jwks.url(), &ROUTES)).await;
    Setup {
        up,
        gw,
        carol,
        dave,
        jwks,
    }
}

#[tokio::test]
async fn valid_tokens_of_each_kind_name_the_consumer_and_are_not_forwarded() {
    let s = setup().await;
    let (rsa_private, _) = rsa_keys();
    let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).expect("RSA PEM");
    let cases = [
        ("alice", hs256(&claims("alice-app"))),
        (
            "bob",
            sign(Header::new(Algorithm::RS256), &claims("bob-app"), &rsa),
        ),
        (
            "carol",
            sign(
                with_kid(Algorithm::ES256, "carol-k1"),
                &claims("carol-app"),
                &s.carol.signing,
            ),
        ),
        (
            "dave",
            sign(
                with_kid(Algorithm::ES256, "k1"),
                &claims("dave-app"),
                &s.dave.signing,
            ),
        ),
    ];
    for (consumer, token) in &cases {
        let r = get_with(
            &s.gw.url("/jwt/x"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-consumer-name", "mallory"),
            ],
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{consumer}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let seen = r.json();
        assert_eq!(seen["headers"]["x-consumer-name"], *consumer);
        assert!(seen["headers"].get("authorization").is_none(), "{seen}");
        assert!(!seen.to_string().contains(token.as_str()));
    }
    // Query parameter (configured on /query), removed before proxying; a claim as a header.
    let token = &cases[0].1;
    let r = get(&s.gw.url(&format!("/query?a=1&jwt={token}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], "a=1");
    assert_eq!(r.json()["headers"]["x-jwt-sub"], "user-1");
    assert_eq!(s.up.hits(), 5);
    // The key set was fetched once, when the config was applied.
    assert_eq!(s.jwks.hits(), 1);
}

#[tokio::test]
async fn every_classic_pitfall_is_refused() {
    let s = setup().await;
    let gw = &s.gw;
    let (_, rsa_public) = rsa_keys();
    let t = now();
    let alice_key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let good = hs256(&claims("alice-app"));
    // Tampered payload with the original signature.
    let tampered = {
        let (header, rest) = good.split_once('.').expect("parts");
        let (_, signature) = rest.split_once('.').expect("parts");
        let admin = json!({ "iss": "alice-app", "sub": "admin", "exp": t + 600 });
        format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(admin.to_string())
        )
    };
    // jku / x5u: an attacker's key set is never fetched nor used.
    let evil = ec_key("k1");
    let evil_jwks = Jwks::start(vec![evil.jwk.clone()]).await;
    let mut evil_header = with_kid(Algorithm::ES256, "k1");
    evil_header.jku = Some(evil_jwks.url());
    evil_header.x5u = Some(evil_jwks.url());

    // (what, route, token, message)
    let cases = [
        (
            "alg none",
            "/jwt",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims("alice-app").to_string())
            ),
            "unsigned tokens are not accepted",
        ),
        (
            "RS/HS confusion: HS256 with bob's RSA public key PEM as the secret",
            "/jwt",
            sign(
                Header::new(Algorithm::HS256),
                &claims("bob-app"),
                &EncodingKey::from_secret(rsa_public.as_bytes()),
            ),
            "the token's algorithm is not accepted",
        ),
        (
            "another algorithm than the pinned one, right secret",
            "/jwt",
            sign(
                Header::new(Algorithm::HS384),
                &claims("alice-app"),
                &alice_key,
            ),
            "the token's algorithm is not accepted",
        ),
        (
            "expired beyond the leeway",
            "/jwt",
            hs256(&json!({ "iss": "alice-app", "exp": t - 120 })),
            "the token has expired",
        ),
        (
            "no exp",
            "/jwt",
            hs256(&json!({ "iss": "alice-app" })),
            "the token has no expiry (exp)",
        ),
        (
            "nbf in the future",
            "/jwt",
            hs256(&json!({ "iss": "alice-app", "exp": t + 600, "nbf": t + 300 })),
            "the token is not valid yet",
        ),
        (
            "expired 20 s ago with leeway 0",
            "/strict",
            hs256(&json!({ "iss": "alice-app", "exp": t - 20 })),
            "the token has expired",
        ),
        (
            "unknown issuer",
            "/jwt",
            hs256(&claims("mallory-app")),
            "the token's issuer or key id is not known",
        ),
        (
            "carol's kid with another issuer",
            "/jwt",
            sign(
                with_kid(Algorithm::ES256, "carol-k1"),
                &claims("alice-app"),
                &s.carol.signing,
            ),
            "the token's issuer is not accepted",
        ),
        (
            "no aud where one is required",
            "/aud",
            good.clone(),
            "the token's audience is not accepted",
        ),
        (
            "wrong aud",
            "/aud",
            hs256(&json!({ "iss": "alice-app", "exp": t + 600, "aud": "billing" })),
            "the token's audience is not accepted",
        ),
        (
            "unknown kid (carol's issuer only has a credential with key id)",
            "/jwt",
            sign(
                with_kid(Algorithm::ES256, "carol-k2"),
                &claims("carol-app"),
                &s.carol.signing,
            ),
            "the token's issuer or key id is not known",
        ),
        (
            "tampered payload",
            "/jwt",
            tampered,
            "the token's signature is not valid",
        ),
        (
            "jku/x5u to the attacker's key set",
            "/jwt",
            sign(evil_header, &claims("dave-app"), &evil.signing),
            "the token's signature is not valid",
        ),
    ];
    for (what, route, token, message) in &cases {
        let r = bearer(gw, route, token).await;
        assert_eq!(r.status, 401, "{what}");
        assert_401(&r, message, "invalid_token", token);
    }
    assert_eq!(evil_jwks.hits(), 0, "the token's jku/x5u was followed");

    // Two tokens: the header twice, or header and query.
    let bearer_good = format!("Bearer {good}");
    let twice = get_with(
        &gw.url("/jwt"),
        &[
            ("authorization", &bearer_good),
            ("authorization", &bearer_good),
        ],
    )
    .await;
    assert_401(
        &twice,
        "more than one token in the request",
        "invalid_request",
        &good,
    );
    let both = get_with(
        &gw.url(&format!("/query?jwt={good}")),
        &[("authorization", &bearer_good)],
    )
    .await;
    assert_401(
        &both,
        "more than one token in the request",
        "invalid_request",
        &good,
    );

    // The controls pass: leeway honoured, an accepted audience.
    let recent = hs256(&json!({ "iss": "alice-app", "exp": t - 20 }));
    assert_eq!(bearer(gw, "/jwt", &recent).await.status, 200);
    let api = hs256(&json!({ "iss": "alice-app", "exp": t + 600, "aud": ["x", "api"] }));
    assert_eq!(bearer(gw, "/aud", &api).await.status, 200);
    // Nothing refused reached the upstream.
    assert_eq!(s.up.hits(), 2);
}

#[tokio::test]
async fn jwks_rotation_outage_and_refetch_limit() {
    let s = setup().await;
    let gw = &s.gw;
    let token = |key: &EcKey, kid: &str| {
        sign(
            with_kid(Algorithm::ES256, kid),
            &claims("dave-app"),
            &key.signing,
        )
    };
    let k1 = token(&s.dave, "k1");
    assert_eq!(bearer(gw, "/jwt", &k1).await.status, 200);
    assert_eq!(s.jwks.hits(), 1, "fetched when the config was applied");

    // Rotation: k2 appears; a token naming it makes the gateway refetch (the interval since
    // the first fetch has passed) and pass.
    let second = ec_key("k2");
    s.jwks.set(vec![s.dave.jwk.clone(), second.jwk.clone()]);
    let k2 = token(&second, "k2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(bearer(gw, "/jwt", &k2).await.status, 200);
    assert_eq!(s.jwks.hits(), 2);

    // Unknown kids right after: refused, and no more fetches within the interval.
    let stranger = ec_key("k9");
    let k9 = token(&stranger, "k9");
    for _ in 0..5 {
        assert_401(
            &bearer(gw, "/jwt", &k9).await,
            "the token's issuer or key id is not known",
            "invalid_token",
            &k9,
        );
    }
    assert_eq!(s.jwks.hits(), 2, "refetches are rate-limited");

    // Outage: the refetch fails, the cached keys keep working, unknown kids stay refused.
    s.jwks.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_401(
        &bearer(gw, "/jwt", &k9).await,
        "the token's issuer or key id is not known",
        "invalid_token",
        &k9,
    );
    assert_eq!(s.jwks.hits(), 3, "one refetch attempt");
    assert_eq!(bearer(gw, "/jwt", &k1).await.status, 200);
    assert_eq!(bearer(gw, "/jwt", &k2).await.status, 200);
    assert_401(
        &bearer(gw, "/jwt", &k9).await,
        "the token's issuer or key id is not known",
        "invalid_token",
        &k9,
    );
    assert_eq!(s.jwks.hits(), 3);

    // Back up with k1 removed: after the next refetch k1 no longer verifies.
    s.jwks.down.store(false, Ordering::SeqCst);
    s.jwks.set(vec![second.jwk.clone()]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_401(
        &bearer(gw, "/jwt", &k9).await,
        "the token's issuer or key id is not known",
        "invalid_token",
        &k9,
    );
    assert_eq!(s.jwks.hits(), 4);
    assert_401(
        &bearer(gw, "/jwt", &k1).await,
        "the token's issuer or key id is not known",
        "invalid_token",
        &k1,
    );
    assert_eq!(bearer(gw, "/jwt", &k2).await.status, 200);
}

#[tokio::test]
async fn a_key_set_never_fetched_refuses_every_token() {
    let up = echo_upstream().await;
    let carol = ec_key("carol-k1");
    let dave = ec_key("k1");
    // Nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let gw = gateway(&doc(
        up.addr,
        &carol.public_pem,
        &format!("http://{closed}/jwks"),
        &ROUTES,
    ))
    .await;
    let t = sign(
        with_kid(Algorithm::ES256, "k1"),
        &claims("dave-app"),
        &dave.signing,
    );
    assert_401(
        &bearer(&gw, "/jwt", &t).await,
        "the token cannot be verified now",
        "invalid_token",
        &t,
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn tokens_never_reach_metrics_or_logs() {
    let capture = crate::builtin_key_auth::global_capture();
    let s = setup().await;
    let good = hs256(&claims("alice-app"));
    let bad = hs256(&json!({ "iss": "alice-app", "exp": now() - 3600 }));
    assert_eq!(bearer(&s.gw, "/jwt", &good).await.status, 200);
    assert_eq!(bearer(&s.gw, "/jwt", &bad).await.status, 401);
    assert_eq!(bearer(&s.gw, "/jwt", "junk.junk.junk").await.status, 401);
    let m = s.gw.metrics().await;
    let count = |name: &str| {
        metric_value(
            &m,
            &format!("ferrox_plugin_counter_total{{name=\"{name}\",plugin=\"jwt-auth\"}}"),
        )
    };
    assert_eq!(count("auth_success"), Some(1.0), "{m}");
    assert_eq!(count("auth_failure"), Some(2.0), "{m}");
    let lines = capture.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ferrox::filter") && l.contains("authenticated consumer alice")),
        "{lines:#?}"
    );
    for text in lines.iter().chain([&m]) {
        for token in [&good, &bad] {
            let (_, signature) = token.rsplit_once('.').expect("parts");
            assert!(!text.contains(signature), "token in {text}");
        }
    }
}

#[test]
fn bad_credentials_are_config_errors_with_paths() {
    let yaml = "upstreams: [{ name: u, targets: [\"127.0.0.1:9\"] }]\nconsumers:\n  - name: a\n    jwt:\n      - { issuer: a, algorithm: HS256, secret: s }\n      - { issuer: b, algorithm: RS256, public_key: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n\" }\n      - { issuer: c, algorithm: HS256, public_key: x }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: u, filters: [{ plugin: jwt-auth, on_error: open }] }\n";
    let err = ferrox_host::config::load_str(yaml, &Default::default()).expect_err("refused");
    let issues: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    for expected in [
        "consumers[0].jwt[1].public_key: not a valid PEM RSA public key",
        "consumers[0].jwt[2].public_key: HS256 is keyed by `secret`; a public key is never used as an HMAC secret",
        "routes[0].filters[0].on_error: authentication filters always fail closed; remove `on_error: open`",
    ] {
        assert!(
            issues.iter().any(|i| i == expected),
            "{expected:?} not in {issues:#?}"
        );
    }
    let none = "consumers: [{ name: a, jwt: [{ issuer: a, algorithm: none, secret: s }] }]";
    assert!(ferrox_host::config::load_str(none, &Default::default()).is_err());
}
