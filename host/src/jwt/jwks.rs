//! JSON Web Key Sets fetched from the operator's URLs and cached per URL.
//!
//! Behaviour (DESIGN §6, §9 — never fail open):
//! - the URL comes only from the config (`consumers[].jwt[].jwks_url`); tokens cannot name one;
//! - a running gateway fetches each set when a config using it is applied (waiting a bounded
//!   time, [`PREFETCH_WAIT`]), so the first requests find the keys;
//! - a token whose `kid` the cached set lacks triggers a refetch, at most once per the
//!   credential's `jwks_refetch_interval` per URL; the filter call waits for it only until its
//!   own deadline (the filter's `timeout` from the start of the call) and is refused if the key has not
//!   arrived by then — later requests find it. So a filter call never blocks on the network
//!   for longer than its deadline;
//! - a set older than [`STALE_FACTOR`] × the interval is refreshed in the background while the
//!   cached keys keep serving;
//! - a fetched set replaces the cached one (rotation: new keys appear, removed keys stop
//!   verifying); a failed fetch (endpoint down, bad JSON, HTTP error) keeps the cached keys;
//!   with nothing cached every token is refused;
//! - only signature keys fit: `kty` must match the pinned algorithm (RSA for RS*/PS*, EC with
//!   the algorithm's curve for ES*, OKP Ed25519 for EdDSA), `alg` and `use` must agree when
//!   given; symmetric (`oct`) keys are never taken from a set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};

use super::VerifyError;
use crate::config::JwtAlgorithm;
use crate::proxy::client::UpstreamClient;

/// Longest a fetch may take (connect, response, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest applying a config waits for its key sets' first fetch.
pub const PREFETCH_WAIT: Duration = Duration::from_secs(3);
/// Largest key set accepted.
const MAX_BODY: usize = 512 * 1024;
/// A set older than this many refetch intervals is refreshed in the background.
pub const STALE_FACTOR: u32 = 10;

/// Every key set the gateway knows, by URL; kept across config reloads so a reload does not
/// refetch (or lose) keys.
#[derive(Debug, Default)]
pub struct JwksCache {
    sources: Mutex<HashMap<String, Arc<JwksSource>>>,
}

impl JwksCache {
    /// The source for `url` (created on first use; the shortest refetch interval given wins).
    pub fn source(&self, url: &str, refetch_interval: Duration) -> Arc<JwksSource> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let source = sources
            .entry(url.to_owned())
            .or_insert_with(|| Arc::new(JwksSource::new(url, refetch_interval)));
        source
            .refetch_ms
            .fetch_min(millis(refetch_interval), Ordering::Relaxed);
        source.clone()
    }

    /// Forget the sets no credential uses any more.
    pub fn retain(&self, used: &[Arc<JwksSource>]) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, s| used.iter().any(|u| Arc::ptr_eq(u, s)));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One key set URL: its cached keys and fetch state.
pub struct JwksSource {
    url: String,
    refetch_ms: AtomicU64,
    state: Mutex<FetchState>,
    /// Bumped after every fetch attempt; waiters watch it.
    attempts: tokio::sync::watch::Sender<u64>,
    client: OnceLock<Result<UpstreamClient, String>>,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct FetchState {
    keys: Arc<Vec<SetKey>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch started.
    started_at: Option<Instant>,
    in_flight: bool,
}

/// A usable key of a set.
struct SetKey {
    kid: Option<String>,
    fits: Vec<JwtAlgorithm>,
    key: Arc<DecodingKey>,
}

impl JwksSource {
    fn new(url: &str, refetch_interval: Duration) -> Self {
        Self {
            url: url.to_owned(),
            refetch_ms: AtomicU64::new(millis(refetch_interval)),
            state: Mutex::new(FetchState::default()),
            attempts: tokio::sync::watch::Sender::new(0),
            client: OnceLock::new(),
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.refetch_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key for a token with `kid` (without one: the set's only key that fits) under
    /// `algorithm`. A miss starts a refetch when the interval allows and waits for it until
    /// `deadline` (at most [`FETCH_TIMEOUT`]).
    pub async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        algorithm: JwtAlgorithm,
        deadline: Option<Instant>,
    ) -> Result<Arc<DecodingKey>, VerifyError> {
        let mut waited = false;
        loop {
            let now = Instant::now();
            let (found, fetched, may_fetch, in_flight, stale) = {
                let st = self.lock();
                let interval = self.interval();
                let may_fetch = !st.in_flight && st.started_at.is_none_or(|t| now - t >= interval);
                let stale = st
                    .fetched_at
                    .is_none_or(|t| now - t >= interval * STALE_FACTOR);
                (
                    find(&st.keys, kid, algorithm),
                    st.fetched_at.is_some(),
                    may_fetch,
                    st.in_flight,
                    stale,
                )
            };
            if let Some(key) = found {
                if stale && may_fetch {
                    self.start_fetch();
                }
                return Ok(key);
            }
            let miss = if fetched {
                VerifyError::UnknownKey
            } else {
                VerifyError::KeysUnavailable
            };
            if waited || !(may_fetch || in_flight) {
                return Err(miss);
            }
            let mut seen = self.attempts.subscribe();
            seen.mark_unchanged();
            if may_fetch && !self.start_fetch() {
                return Err(miss);
            }
            let limit = Instant::now() + FETCH_TIMEOUT;
            let until = deadline.map_or(limit, |d| d.min(limit));
            if tokio::time::timeout_at(until.into(), seen.changed())
                .await
                .is_err()
            {
                return Err(miss);
            }
            waited = true;
        }
    }

    /// Fetch the set now unless it is fetched already or being fetched, and wait for that
    /// (bounded by `wait`). Used when a config is applied.
    pub async fn prefetch(self: &Arc<Self>, wait: Duration) {
        let mut seen = self.attempts.subscribe();
        seen.mark_unchanged();
        let pending = {
            let st = self.lock();
            st.fetched_at.is_none()
        };
        if pending && (self.start_fetch() || self.lock().in_flight) {
            let _ = tokio::time::timeout(wait, seen.changed()).await;
        }
    }

    /// Start a background fetch unless one is running; `false` when none could start (no
    /// runtime, or one is already in flight).
    fn start_fetch(self: &Arc<Self>) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        {
            let mut st = self.lock();
            if st.in_flight {
                return false;
            }
            st.in_flight = true;
            st.started_at = Some(Instant::now());
        }
        let this = self.clone();
        runtime.spawn(async move {
            let result = tokio::time::timeout(FETCH_TIMEOUT, this.fetch())
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
            {
                let mut st = this.lock();
                st.in_flight = false;
                match result {
                    Ok(keys) => {
                        tracing::info!(url = %this.url, keys = keys.len(), "JWKS fetched");
                        st.keys = Arc::new(keys);
                        st.fetched_at = Some(Instant::now());
                    }
                    Err(error) => {
                        tracing::warn!(url = %this.url, %error, cached = st.keys.len(), "JWKS fetch failed; cached keys kept");
                    }
                }
            }
            this.attempts.send_modify(|n| *n += 1);
        });
        true
    }

    async fn fetch(&self) -> Result<Vec<SetKey>, String> {
        let client = self
            .client
            .get_or_init(|| client_for(&self.url))
            .as_ref()
            .map_err(Clone::clone)?;
        let uri: http::Uri = self.url.parse().map_err(|_| "invalid URL".to_owned())?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let request = http::Request::get(uri)
            .header(http::header::HOST, host)
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .header(http::header::USER_AGENT, "ferrox-jwks")
            .body(crate::body::empty())
            .map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| format!("{e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        parse_set(&body)
    }
}

/// A client for one URL, built like an upstream's (rustls with the system roots for https).
fn client_for(url: &str) -> Result<UpstreamClient, String> {
    let uri: http::Uri = url.parse().map_err(|_| "invalid URL".to_owned())?;
    let target = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    let cfg: crate::config::UpstreamConfig = serde_json::from_value(
        serde_json::json!({ "name": "jwks", "targets": [target], "protocol": "http1" }),
    )
    .map_err(|e| e.to_string())?;
    crate::proxy::client::build_client(&cfg)
}

/// Parse a JWK Set, keeping the keys usable for signatures (others are skipped, not fatal).
fn parse_set(body: &[u8]) -> Result<Vec<SetKey>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(serde_json::Value::as_array) else {
        return Err("no `keys` array".to_owned());
    };
    let mut out = Vec::new();
    for raw in keys {
        if raw.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        let mut fits = fitting_algorithms(&jwk.algorithm);
        if let Some(alg) = raw.get("alg").and_then(serde_json::Value::as_str) {
            fits.retain(|a| a.name() == alg);
        }
        if fits.is_empty() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(SetKey {
            kid: jwk.common.key_id.clone(),
            fits,
            key: Arc::new(key),
        });
    }
    Ok(out)
}

/// The pinned algorithms a key type can serve (never HMAC).
fn fitting_algorithms(params: &AlgorithmParameters) -> Vec<JwtAlgorithm> {
    use JwtAlgorithm::*;
    match params {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![EdDSA],
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => vec![],
    }
}

fn find(keys: &[SetKey], kid: Option<&str>, algorithm: JwtAlgorithm) -> Option<Arc<DecodingKey>> {
    let mut fitting = keys.iter().filter(|k| k.fits.contains(&algorithm));
    match kid {
        Some(kid) => fitting
            .find(|k| k.kid.as_deref() == Some(kid))
            .map(|k| k.key.clone()),
        None => {
            let first = fitting.next()?;
            fitting.next().is_none().then(|| first.key.clone())
        }
    }
}

/// `(kid, fitting algorithms)` of each key [`parse_set`] keeps.
#[cfg(test)]
pub(super) fn parse_set_for_tests(body: &[u8]) -> Result<Vec<(String, Vec<JwtAlgorithm>)>, String> {
    Ok(parse_set(body)?
        .into_iter()
        .map(|k| (k.kid.unwrap_or_default(), k.fits))
        .collect())
}
