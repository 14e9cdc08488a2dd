//! Criterion benchmarks of JWT verification (the `crypto` host service) and of the built-in
//! `jwt-auth` filter:
//!
//! - `jwt_verify/hs256`, `jwt_verify/rs256`: the gateway's native verification of one token
//!   (header check, key lookup, signature: `jsonwebtoken` on ring), as `crypto.verify-jwt`
//!   runs it, without the Wasm boundary;
//! - `jwt_auth/hs256`, `jwt_auth/rs256`: one `on_request` of the built-in `jwt-auth` filter
//!   on a warm instance (token from `Authorization: Bearer`, header and claims decoded in the
//!   guest, credential lookup and verification through the host, claims checked, consumer
//!   set, token removed), 8-header request plus the token.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ferrox_bench::{pool_settings, request};
use ferrox_host::config::parse_yaml;
use ferrox_host::jwt::JwtCredentials;
use ferrox_host::metrics::Metrics;
use ferrox_host::plugin::host::{Credentials, Services};
use ferrox_host::plugin::{FilterPool, Flow, Isolation, Plugin};
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use tokio::runtime::Runtime;

const SECRET: &str = "bench-jwt-secret-of-32-bytes-len";

struct Fixture {
    rt: Runtime,
    services: Arc<Services>,
    hs256: String,
    rs256: String,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let private_pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM");
        let indented: String = public_pem
            .lines()
            .map(|l| format!("          {l}\n"))
            .collect();
        let yaml = format!(
            "consumers:\n  - name: alice\n    jwt: [{{ issuer: alice-app, algorithm: HS256, secret: {SECRET} }}]\n  - name: bob\n    jwt:\n      - issuer: bob-app\n        algorithm: RS256\n        public_key: |\n{indented}"
        );
        let config = parse_yaml(&yaml).expect("bench config");
        let services = Services::new(Metrics::new());
        let mut credentials = Credentials::default();
        credentials.jwt =
            JwtCredentials::build(&config.consumers, &services.jwks).expect("credentials");
        services.credentials.store(Arc::new(credentials));
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 3600;
        let claims = |iss: &str| serde_json::json!({ "iss": iss, "sub": "user-1", "exp": exp });
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("alice-app"),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("HS256 token");
        let rs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims("bob-app"),
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA PEM"),
        )
        .expect("RS256 token");
        Self {
            rt,
            services,
            hs256,
            rs256,
        }
    }

    fn pool(&self) -> FilterPool {
        let (bytes, grants) = ferrox_host::builtin::get("jwt-auth").expect("built-in jwt-auth");
        let grants: Vec<String> = grants.iter().map(|g| (*g).to_owned()).collect();
        let plugin: Arc<Plugin> = Plugin::load("jwt-auth", bytes, &grants).expect("loads");
        self.rt
            .block_on(FilterPool::new(
                plugin,
                "{}".into(),
                "bench".into(),
                self.services.clone(),
                pool_settings(Isolation::Pooled),
            ))
            .unwrap_or_else(|e| panic!("jwt-auth pool: {e}"))
    }
}

/// Time `iters` native verifications of `token` by credential `id`.
fn time_verify(fx: &Fixture, id: &str, token: &str, iters: u64) -> Duration {
    let credentials = fx.services.credentials.load_full();
    fx.rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let r = credentials
                .jwt
                .verify(id, None, black_box(token), None)
                .await;
            assert_eq!(r, Ok(()));
        }
        start.elapsed()
    })
}

/// Time `iters` filter calls on a request bearing `token`; each call gets the header back
/// (the filter removes it).
fn time_filter(fx: &Fixture, pool: &FilterPool, token: &str, iters: u64) -> Duration {
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    let mut req = Some(request());
    fx.rt.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            if let Some(r) = req.as_mut() {
                r.headers.insert("authorization", bearer.clone());
                r.consumer = None;
            }
            let start = Instant::now();
            let outcome = pool.on_request(&mut req).await;
            total += start.elapsed();
            assert!(
                matches!(outcome.result, Ok(Flow::Continue)),
                "jwt-auth refused: {:?}",
                outcome.result
            );
        }
        total
    })
}

fn main() {
    let fx = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("jwt_verify");
    group.bench_function("hs256", |b| {
        b.iter_custom(|iters| time_verify(&fx, "alice.jwt[0]", &fx.hs256, iters));
    });
    group.bench_function("rs256", |b| {
        b.iter_custom(|iters| time_verify(&fx, "bob.jwt[0]", &fx.rs256, iters));
    });
    group.finish();
    let pool = fx.pool();
    let mut group = c.benchmark_group("jwt_auth");
    group.bench_function("hs256", |b| {
        b.iter_custom(|iters| time_filter(&fx, &pool, &fx.hs256, iters));
    });
    group.bench_function("rs256", |b| {
        b.iter_custom(|iters| time_filter(&fx, &pool, &fx.rs256, iters));
    });
    group.finish();
    c.final_summary();
}
