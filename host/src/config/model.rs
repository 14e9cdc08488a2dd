//! The declarative configuration document, exactly as written in the YAML file.
//!
//! These `*Config` types are parsed input: they are validated by [`super::validate`] and then
//! built into runtime types (`crate::snapshot`). Every field is documented here; the docs become
//! the JSON Schema (`ferrox config schema`) and the reference in `docs/configuration.md`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Dur};

/// The whole gateway configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the proxy listens on (`host:port`). Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// TLS for the proxy listener; when set, the listener speaks HTTPS with HTTP/2 and HTTP/1.1
    /// negotiated by ALPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The admin listener (`/health`, `/metrics`, admin API).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where shared state (counters, cache) lives: `local` (in-process, the default) or a
    /// Redis URL, `redis://[user:password@]host[:port][/db]` or
    /// `redis+unix:///path/to/redis.sock[?db=N]` (no TLS: `rediss://` is refused). With Redis,
    /// every instance using the same Redis and `state_options.key_prefix` shares counters and
    /// cache.
    #[serde(default = "default_state")]
    pub state: String,
    /// How the gateway uses a Redis state store (ignored with `state: local`).
    #[serde(default)]
    pub state_options: StateOptionsConfig,
    /// Limits and timeouts of the downstream (client-facing) HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Backend services and their targets.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes: which requests go to which upstream, through which filters.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// API consumers and their credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerConfig>,
    /// Custom filter plugins (WebAssembly components) and the host services granted to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginConfig>,
    /// PostgreSQL config store, `postgres://user[:password]@host[:port]/database` (or
    /// `--database-url` / `FERROX_DATABASE_URL`). When set, upstreams, routes, consumers and
    /// plugins live in the database (this file seeds an empty one) and every instance on it
    /// follows changes; the other settings here stay this instance's own. Never written back
    /// out (it may carry a password).
    #[serde(default, skip_serializing)]
    pub database_url: Option<String>,
    /// Request logs written to PostgreSQL (only with `database_url`).
    #[serde(default, skip_serializing_if = "RequestLogsConfig::is_default")]
    pub request_logs: RequestLogsConfig,
    /// Distributed tracing: each request's spans (the request, each filter call, the upstream
    /// call) exported over OTLP/HTTP. Absent (the default): no span is made. This instance's
    /// own setting, read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
}

/// Span export over OTLP/HTTP (protobuf) to an OpenTelemetry Collector, Jaeger, Tempo or any
/// OTLP receiver. Spans are queued in memory and sent in batches; when the queue is full, or a
/// batch cannot be delivered, they are dropped and counted (`ferrox_trace_dropped_total`),
/// never waited for.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of the OTLP/HTTP receiver, `http://host:port` or `https://host:port` (an
    /// optional path prefix is kept); spans are POSTed to `<otlp_endpoint>/v1/traces`. The
    /// OpenTelemetry Collector listens on port 4318.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans. Default `ferrox`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces (requests without a `traceparent`) that are recorded, 0.0 to 1.0.
    /// A request with a `traceparent` follows its sampled flag. Default 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Extra headers sent with each export (e.g. an API key of a hosted backend). Values are
    /// redacted in the admin API's export; `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`k=v,k2=v2`)
    /// keeps them out of the file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Limit of one export, retries included. 1ms to 60s; default 10s.
    #[serde(default = "default_export_timeout")]
    pub timeout: Dur,
    /// Finished requests waiting to be exported; beyond it new ones are dropped.
    /// 1 to 1000000; default 4096.
    #[serde(default = "default_trace_queue")]
    pub queue: usize,
    /// Most requests per export (each gives 1 + filter calls + 1 spans). 1 to 10000;
    /// default 256.
    #[serde(default = "default_trace_batch")]
    pub batch: usize,
    /// A partial batch is sent after this long. 1ms to 60s; default 1s.
    #[serde(default = "default_trace_flush")]
    pub flush_interval: Dur,
}

fn default_service_name() -> String {
    "ferrox".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_export_timeout() -> Dur {
    Dur::secs(10)
}
fn default_trace_queue() -> usize {
    4096
}
fn default_trace_batch() -> usize {
    256
}
fn default_trace_flush() -> Dur {
    Dur::secs(1)
}

/// Request logs in PostgreSQL: one row per request, queued in memory and inserted in batches;
/// when the queue is full, entries are dropped and counted (`ferrox_request_log_dropped_total`),
/// never waited for.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLogsConfig {
    /// Write request logs (when a database is configured). Default true.
    pub enabled: bool,
    /// Rows older than this are deleted (checked every minute). Default 7d.
    pub retention: Dur,
    /// Entries waiting to be written; beyond it new ones are dropped. Default 10000.
    pub queue: usize,
    /// Most rows per insert. Default 500.
    pub batch: usize,
    /// A partial batch is written after this long. Default 200ms.
    pub flush_interval: Dur,
}

impl Default for RequestLogsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: Dur::secs(7 * 24 * 3600),
            queue: 10_000,
            batch: 500,
            flush_interval: Dur::millis(200),
        }
    }
}

impl RequestLogsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_state() -> String {
    "local".into()
}

/// Options of a Redis state store.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateOptionsConfig {
    /// Limit of each Redis operation (a counter update, a cache read or write). Past it the
    /// operation fails and the filter applies its store-failure policy (the rate limiter's
    /// `fail_open` / `fail_closed`), so a dead Redis costs at most this per call. 1ms to 10s;
    /// default 50ms.
    pub timeout: Dur,
    /// Prepended to every key the gateway writes to Redis. Instances that share counters and
    /// cache use the same prefix; different prefixes keep gateways (or other users of the same
    /// Redis database) apart. At most 128 bytes; default `ferrox:`.
    pub key_prefix: String,
}

impl Default for StateOptionsConfig {
    fn default() -> Self {
        Self {
            timeout: Dur::millis(50),
            key_prefix: "ferrox:".into(),
        }
    }
}

/// Certificate and key (PEM files) for a TLS listener.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Path to the PEM certificate chain.
    pub cert: String,
    /// Path to the PEM private key.
    pub key: String,
}

/// The admin listener.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:9080`. A non-loopback address requires
    /// a token.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token required by every admin call except `/health`. Prefer `FERROX_ADMIN_TOKEN`.
    /// When absent, a random token is generated at start and printed once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// How often this instance reports in (`GET /instances`, the dashboard's Instances panel):
    /// with `database_url`, an upsert of its row in `gateway_instances`; an instance not seen
    /// for 3 × its interval is shown as down. 100ms to 5m; default 5s.
    #[serde(
        default = "default_heartbeat_interval",
        skip_serializing_if = "is_default_heartbeat_interval"
    )]
    pub heartbeat_interval: Dur,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
            heartbeat_interval: default_heartbeat_interval(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9080".into()
}

fn default_heartbeat_interval() -> Dur {
    Dur::secs(5)
}

fn is_default_heartbeat_interval(d: &Dur) -> bool {
    *d == default_heartbeat_interval()
}

/// Limits and timeouts of the client-facing server (DESIGN §9 defaults).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time allowed for a client to send a request's headers (408 after it).
    pub header_read_timeout: Dur,
    /// Longest pause allowed between two chunks of a request body (408 after it).
    pub body_idle_timeout: Dur,
    /// How long an idle HTTP/1.1 keep-alive connection (no request in progress) stays open.
    pub keepalive_timeout: Dur,
    /// Largest request header section (431 beyond it).
    pub max_header_bytes: ByteSize,
    /// Most request header fields (431 beyond it).
    pub max_headers: usize,
    /// Concurrent HTTP/2 streams allowed per connection.
    pub max_concurrent_streams: u32,
    /// Accept cleartext HTTP/2 with prior knowledge (h2c) on a plain listener.
    pub h2c: bool,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Dur,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `X-Forwarded-Proto` are trusted. Others are
    /// replaced by what the gateway sees.
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Name of the header carrying the request id (kept when valid, generated otherwise).
    pub request_id_header: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Dur::secs(10),
            body_idle_timeout: Dur::secs(30),
            keepalive_timeout: Dur::secs(75),
            max_header_bytes: ByteSize(64 * 1024),
            max_headers: 100,
            max_concurrent_streams: 100,
            h2c: true,
            drain_timeout: Dur::secs(30),
            trusted_proxies: Vec::new(),
            request_id_header: "x-request-id".into(),
        }
    }
}

/// A backend service: a set of targets, how to balance, check and protect them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Targets as `host:port` (plain HTTP) or `http://host:port` / `https://host:port`.
    pub targets: Vec<String>,
    /// How a target is chosen for each request.
    #[serde(default)]
    pub balance: Balance,
    /// For `balance: hash`: the request header whose value picks the target (consistent
    /// hashing; requests without it are spread round robin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// Active health checks; without them only passive health (the circuit breaker) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// Per-target circuit breaker (also the passive health check).
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
    /// Timeouts towards this upstream.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// How many times an idempotent request without a body is retried on another target when
    /// no response was received. Default 1.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Caps retries to a fraction of requests so retries cannot multiply an outage.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Protocol towards targets: `auto` (HTTP/1.1, or HTTP/2 when TLS ALPN offers it), `http1`,
    /// or `http2` (also cleartext h2c with prior knowledge).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Send the client's `Host` header upstream instead of the target's authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// TLS settings for `https://` targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsConfig>,
}

fn default_retries() -> u32 {
    1
}

/// Load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight.
    LeastRequests,
    /// Consistent (rendezvous) hashing on `hash_header`.
    Hash,
}

/// Protocol spoken to targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, or HTTP/2 when negotiated by TLS ALPN.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (h2c prior knowledge on plain targets).
    Http2,
}

/// TLS towards `https://` targets.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Extra CA certificates (PEM file) trusted for targets, besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Server name to verify instead of the target host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Active health check.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested with GET on each target.
    pub path: String,
    /// Time between two checks of a target.
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
    /// A check slower than this fails.
    #[serde(default = "default_hc_timeout")]
    pub timeout: Dur,
    /// Consecutive successes that bring an unhealthy target back.
    #[serde(default = "default_healthy")]
    pub healthy: u32,
    /// Consecutive failures that mark a target unhealthy.
    #[serde(default = "default_unhealthy")]
    pub unhealthy: u32,
}

fn default_hc_interval() -> Dur {
    Dur::secs(5)
}
fn default_hc_timeout() -> Dur {
    Dur::secs(2)
}
fn default_healthy() -> u32 {
    2
}
fn default_unhealthy() -> u32 {
    3
}

/// Circuit breaker settings (per target).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures (connect errors, timeouts, 502/503/504) that open the circuit.
    pub failures: u32,
    /// How long the circuit stays open before one probe request is let through.
    pub cooldown: Dur,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Dur::secs(30),
        }
    }
}

/// Timeouts towards an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Establishing a connection (TCP + TLS) to a target (502 after it).
    pub connect: Dur,
    /// From sending the request to receiving the response headers (504 after it).
    pub request: Dur,
    /// Longest pause between two chunks of the response body; also how long an unused pooled
    /// connection is kept.
    pub idle: Dur,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect: Dur::secs(2),
            request: Dur::secs(30),
            idle: Dur::secs(60),
        }
    }
}

/// Retry budget: retries allowed are `min_per_sec` plus `ratio` × requests.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Fraction of requests that may be retried (0.0–1.0).
    pub ratio: f64,
    /// Retries always allowed per second, whatever the traffic.
    pub min_per_sec: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
        }
    }
}

/// A route: a request matcher, the upstream it goes to, and its filter pipeline.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name (used in metrics, logs and the admin API).
    pub name: String,
    /// Which requests this route takes.
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// Name of the upstream requests are sent to.
    pub upstream: String,
    /// Remove the matched `path_prefix` before forwarding (`/api/users/7` → `/7`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched prefix (or exact path) with this path before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Largest request body accepted (413 beyond it). Default 10MiB.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Allow WebSocket upgrades on this route.
    #[serde(default)]
    pub websocket: bool,
    /// Accept percent-encoded `/` and `\` (`%2F`, `%5C`) in the path (400 otherwise).
    #[serde(default)]
    pub allow_encoded_slashes: bool,
    /// Filters run on each request, in this order (responses in reverse order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterConfig>,
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(10)
}

/// Conditions a request must meet; all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Path prefix, matched on segment boundaries (`/api` matches `/api` and `/api/x`, not
    /// `/apix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Host names (`api.example.com` or `*.example.com`); any of them matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Single host name, same as `hosts: [NAME]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Methods accepted (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers that must be present with exactly this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// One filter of a route's pipeline.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Built-in plugin name or the name of a plugin declared under `plugins`.
    pub plugin: String,
    /// The filter's own configuration, validated by the filter.
    #[serde(default)]
    pub config: serde_json::Value,
    /// What a failing filter does: `closed` (503, the default) or `open` (skipped). Auth
    /// filters are always closed.
    #[serde(default)]
    pub on_error: OnErrorConfig,
    /// `pooled` (warm instances reused, the default) or `request` (a fresh instance per
    /// request, for untrusted multi-tenant filters).
    #[serde(default)]
    pub isolation: IsolationConfig,
    /// Deadline of one filter call. Default 5ms.
    #[serde(default = "default_filter_timeout")]
    pub timeout: Dur,
    /// Memory cap of one filter instance. Default 16MiB.
    #[serde(default = "default_filter_memory")]
    pub memory: ByteSize,
}

fn default_filter_timeout() -> Dur {
    Dur::millis(5)
}
fn default_filter_memory() -> ByteSize {
    ByteSize::mib(16)
}

/// Failure policy of a filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorConfig {
    /// Answer 503 with `ferrox-error: filter`.
    #[default]
    Closed,
    /// Skip the filter and count it.
    Open,
}

/// Instance isolation of a filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationConfig {
    /// Warm instances reused across requests.
    #[default]
    Pooled,
    /// A fresh instance for every request.
    Request,
}

/// A consumer of the API and its credentials.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique name.
    pub name: String,
    /// API keys: plaintext (hashed on load) or `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// JWT credentials, used by the `jwt-auth` filter: each names the issuer whose tokens
    /// identify this consumer, the one algorithm accepted, and the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtCredentialConfig>,
}

/// A JWT credential of a consumer: tokens from `issuer` (and, when set, with header `kid` equal
/// to `key_id`), signed with `algorithm` by the key given as exactly one of `secret`,
/// `public_key` or `jwks_url`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtCredentialConfig {
    /// The `iss` claim of this consumer's tokens.
    pub issuer: String,
    /// The `kid` header of this credential's tokens. Unique across all credentials; a token
    /// whose `kid` names a credential uses it, other tokens are matched by `issuer` to the
    /// issuer's credential without `key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The one signature algorithm accepted for this credential (`none` does not exist).
    pub algorithm: JwtAlgorithm,
    /// HMAC secret for `HS256` / `HS384` / `HS512` (its UTF-8 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// PEM public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY` for RSA) for the `RS*`,
    /// `PS*`, `ES*` and `EdDSA` algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// URL of a JSON Web Key Set (`http://` or `https://`) holding the issuer's public keys;
    /// the key is chosen by the token's `kid`. Fetched by the gateway and cached; never taken
    /// from a token (`jku` / `x5u` are ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// With `jwks_url`: a token naming a `kid` the cached set lacks triggers a refetch at
    /// most once per this interval (the set is also refreshed in the background when older
    /// than 10 times this). 1s to 1h; default 30s.
    #[serde(
        default = "default_jwks_refetch",
        skip_serializing_if = "is_default_jwks_refetch"
    )]
    pub jwks_refetch_interval: Dur,
}

fn default_jwks_refetch() -> Dur {
    Dur::secs(30)
}
fn is_default_jwks_refetch(d: &Dur) -> bool {
    *d == default_jwks_refetch()
}

/// A JWS signature algorithm (RFC 7518), pinned per credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (`secret`).
    HS256,
    /// HMAC with SHA-384 (`secret`).
    HS384,
    /// HMAC with SHA-512 (`secret`).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA `public_key` or `jwks_url`).
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
    /// ECDSA with P-256 and SHA-256 (EC `public_key` or `jwks_url`).
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// Ed25519 (Ed25519 `public_key` or `jwks_url`).
    EdDSA,
}

impl JwtAlgorithm {
    /// The name used in JOSE headers and in the config (`HS256`, …).
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

    /// An HMAC algorithm (keyed by a shared secret).
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// A custom filter plugin.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name routes use in `filters[].plugin`.
    pub name: String,
    /// Path to the `.wasm` component.
    pub path: String,
    /// Host services the plugin may import (`log`, `clock`, `counters`, `cache`, …).
    #[serde(default)]
    pub grants: Vec<String>,
}
