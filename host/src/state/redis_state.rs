//! The Redis state store: counters and cache shared by every gateway instance configured with
//! the same Redis and the same key prefix.
//!
//! - **One connection per instance**, multiplexed (requests are pipelined on it) and managed:
//!   a dropped connection is re-established in the background. Operations never wait for a
//!   connection longer than their timeout.
//! - **One round trip per counter update**: a Lua script (`EVALSHA`, loaded again by itself
//!   after a Redis restart) reads Redis's own clock (`TIME`), aligns the window to a multiple of
//!   its length since the Unix epoch, `INCRBY`s the window's key and sets it to expire two
//!   windows after the window started (`PEXPIREAT`); for a sliding window it also reads the
//!   previous window's key. Taking the time from Redis means every instance agrees on the
//!   window even when their clocks disagree.
//! - **Keys**: `<prefix>c:<key>:<window ms>:<window start ms>` for counters, `<prefix>v:<key>` for cache
//!   entries (`SET … PX <ttl>`), where `<key>` is the filter's key as namespaced by the gateway.
//! - **Failure is cheap**: every operation has a timeout (`state_options.timeout`, default
//!   50 ms). After a connection error, or after failures lasting over a second, operations fail
//!   at once for [`RETRY_MS`] instead of waiting, then one is let through to try again; a
//!   connection that stays broken is replaced. Failures are `Err(String)` to the filter, which
//!   applies its own policy (the rate limiter's `fail_open` / `fail_closed`). Losing and
//!   regaining Redis is logged once each, not per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};
use redis::{Client, ConnectionAddr, ErrorKind, RedisResult, Script, ServerErrorKind};

use super::{CounterValue, SlidingValue};

/// The counter update, run atomically by Redis.
///
/// `KEYS[1]`: `<prefix>c:<key>` (`:<window>:<window start>` is appended here); `ARGV[1]`: the delta;
/// `ARGV[2]`: the window in ms; `ARGV[3]`: `1` to also read the previous window.
/// Returns `{count, previous (0 unless asked), elapsed ms, ms until the window ends}`.
/// Lua numbers are doubles: exact for millisecond timestamps and for windows up to
/// [`MAX_WINDOW_MS`]; `string.format('%d')` writes the window start without an exponent.
pub const COUNTER_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = now - (now % window)
local base = KEYS[1] .. ':' .. string.format('%d', window) .. ':'
local key = base .. string.format('%d', start)
local count = redis.call('INCRBY', key, ARGV[1])
redis.call('PEXPIREAT', key, start + 2 * window)
local previous = 0
if ARGV[3] == '1' then
  previous = tonumber(redis.call('GET', base .. string.format('%d', start - window)) or '0')
end
return {count, previous, now - start, start + window - now}
";

/// Longest window the store accepts (about 34 years); longer ones are shortened to it.
pub const MAX_WINDOW_MS: u64 = 1 << 40;
/// Longest cache TTL the store accepts; longer ones are shortened to it.
pub const MAX_TTL_MS: u64 = 1 << 40;
// The script computes in doubles: timestamps (until 2100), window ends and TTLs stay exact.
const _: () = assert!(4_102_444_800_000 + 2 * MAX_WINDOW_MS < 1 << 53 && MAX_TTL_MS < 1 << 53);
/// How long operations fail at once after a connection error before one tries again.
pub const RETRY_MS: u64 = 200;
/// Failures lasting this long mark Redis as down (gating operations) even without a
/// connection error (e.g. only timeouts).
const DOWN_AFTER_MS: u64 = 1_000;
/// While Redis stays down, the connection is replaced at most this often (a connection stuck
/// on a dead peer, a failed handshake, a primary that became a replica).
const REBUILD_EVERY_MS: u64 = 5_000;
/// Limit of one connection attempt (TCP connect and handshake), in the background.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of a Redis state store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Limit of each operation.
    pub timeout: Duration,
    /// Prepended to every key.
    pub key_prefix: String,
}

/// Parse a `redis://` (or `redis+unix://`) URL. TLS (`rediss://`) is refused: this build has
/// no TLS client for Redis. The error never repeats the URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<Client, String> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "redis" | "redis+unix" => {}
        "rediss" | "valkeys" => {
            return Err(
                "TLS to Redis (rediss://) is not supported by this build; use redis:// \
                 on a trusted network, or a local TLS tunnel to Redis"
                    .into(),
            );
        }
        _ => {
            return Err(
                "not a Redis URL; use redis://[user:password@]host[:port][/db] or \
                 redis+unix:///path/to/redis.sock[?db=N]"
                    .into(),
            );
        }
    }
    Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))
}

/// Where a client connects, without credentials (for logs and errors).
pub fn display_target(client: &Client) -> String {
    let info = client.get_connection_info();
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Unix(path) => format!("redis+unix://{}?db={db}", path.display()),
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("redis://[{host}]:{port}/{db}")
            } else {
                format!("redis://{host}:{port}/{db}")
            }
        }
        #[allow(unreachable_patterns)]
        other => format!("redis://{other}/{db}"),
    }
}

/// Whether an error is Redis answering (the store works; the operation was refused), as
/// opposed to Redis being unreachable or unable to serve.
fn redis_answered(e: &redis::RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(kind) => !matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
        ),
        ErrorKind::Extension | ErrorKind::UnexpectedReturnType => true,
        _ => false,
    }
}

/// The key of a counter's window: `<prefix>c:<key>:<window ms>:<window start ms>`. The window
/// length is part of the name: windows of different lengths can start at the same instant.
pub fn counter_key(prefix: &str, key: &str, window_ms: u64, window_start_ms: u64) -> String {
    format!(
        "{}:{window_ms}:{window_start_ms}",
        counter_base(prefix, key)
    )
}

/// What the script appends the window start to.
fn counter_base(prefix: &str, key: &str) -> String {
    format!("{prefix}c:{key}")
}

/// The key of a cache entry: `<prefix>v:<key>`.
pub fn cache_key(prefix: &str, key: &str) -> String {
    format!("{prefix}v:{key}")
}

/// The key of a response-cache entry: `<prefix>r:<key>`.
pub fn response_key(prefix: &str, key: &str) -> String {
    format!("{prefix}r:{key}")
}

/// Counters and cache in Redis. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct RedisState {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    conn: ArcSwap<ConnectionManager>,
    script: Script,
    prefix: String,
    timeout: Duration,
    target: String,
    epoch: Instant,
    /// Operations before this instant (ms since `epoch`) fail at once.
    retry_at: AtomicU64,
    /// When the current run of failures began (0: the last operation worked).
    failing_since: AtomicU64,
    last_rebuild: AtomicU64,
    reachable: AtomicBool,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("target", &self.inner.target)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// A store for `url` (see [`parse_url`]). Connects in the background: this returns at once
    /// and works while Redis is down (operations fail until it answers). Must be called within
    /// a Tokio runtime.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, String> {
        let client = parse_url(url)?;
        // Keepalive probes and TCP_USER_TIMEOUT end a connection to a peer that vanished
        // (so the manager reconnects) instead of leaving requests unanswered on it.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(10))
            .with_interval(Duration::from_secs(5));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let keepalive = keepalive.with_retries(3);
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let tcp = tcp.set_user_timeout(Duration::from_secs(10));
        let info = client.get_connection_info().clone().set_tcp_settings(tcp);
        let client = Client::open(info).map_err(|e| format!("invalid Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            // One attempt per reconnection: the next operation after a failed one starts
            // another, so a Redis that comes back is found within RETRY_MS.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Operations are bounded by `timeout` here, around the whole call.
            .set_response_timeout(None);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
        let target = display_target(&client);
        let inner = Arc::new(Inner {
            client,
            config,
            conn: ArcSwap::from_pointee(conn),
            script: Script::new(COUNTER_SCRIPT),
            prefix: options.key_prefix,
            timeout: options.timeout,
            target,
            epoch: Instant::now(),
            retry_at: AtomicU64::new(0),
            failing_since: AtomicU64::new(0),
            last_rebuild: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
        });
        tracing::info!(
            target: "ferrox::state",
            redis = %inner.target,
            key_prefix = %inner.prefix,
            timeout_ms = inner.timeout.as_millis() as u64,
            "state store: Redis (counters and cache shared by every instance with this Redis and key prefix)"
        );
        tokio::spawn(inner.clone().probe());
        Ok(Self { inner })
    }

    /// Where this store connects, without credentials.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The key of `key`'s counter in the window starting at `window_start_ms`.
    pub fn counter_key(&self, key: &str, window_ms: u64, window_start_ms: u64) -> String {
        counter_key(&self.inner.prefix, key, window_ms, window_start_ms)
    }

    /// The key of `key`'s cache entry.
    pub fn cache_key(&self, key: &str) -> String {
        cache_key(&self.inner.prefix, key)
    }

    /// Add `delta` to `key` in the current fixed window of `window_ms` (on Redis's clock).
    /// Gives up at the store's timeout, or at `deadline` if that comes first.
    pub async fn incr(
        &self,
        key: &str,
        delta: i64,
        window_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<CounterValue, String> {
        let [count, _, _, reset] = self.counter(key, delta, window_ms, false, deadline).await?;
        Ok(CounterValue {
            count,
            reset_ms: non_negative(reset),
        })
    }

    /// [`Self::incr`], also returning the previous window's count.
    pub async fn incr_sliding(
        &self,
        key: &str,
        delta: i64,
        window_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<SlidingValue, String> {
        let [current, previous, elapsed, reset] =
            self.counter(key, delta, window_ms, true, deadline).await?;
        Ok(SlidingValue {
            current,
            previous,
            elapsed_ms: non_negative(elapsed),
            reset_ms: non_negative(reset),
        })
    }

    async fn counter(
        &self,
        key: &str,
        delta: i64,
        window_ms: u64,
        sliding: bool,
        deadline: Option<Instant>,
    ) -> Result<[i64; 4], String> {
        let base = counter_base(&self.inner.prefix, key);
        let window = window_ms.clamp(1, MAX_WINDOW_MS);
        let script = &self.inner.script;
        let values: Vec<i64> = self
            .run(deadline, |mut conn| async move {
                let mut call = script.prepare_invoke();
                call.key(base)
                    .arg(delta)
                    .arg(window)
                    .arg(if sliding { "1" } else { "0" });
                call.invoke_async(&mut conn).await
            })
            .await?;
        values
            .try_into()
            .map_err(|v: Vec<i64>| format!("unexpected answer from the counter script: {v:?}"))
    }

    /// The cached value for `key`, if any.
    pub async fn get(
        &self,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, String> {
        self.get_at(self.cache_key(key), deadline).await
    }

    /// The response-cache entry stored under `key` (encoded), if any.
    pub async fn get_response(
        &self,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, String> {
        self.get_at(response_key(&self.inner.prefix, key), deadline)
            .await
    }

    /// Store an encoded response-cache entry under `key` for `ttl_ms`.
    pub async fn set_response(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        self.set_at(
            response_key(&self.inner.prefix, key),
            value,
            ttl_ms,
            deadline,
        )
        .await
    }

    async fn get_at(
        &self,
        key: String,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, String> {
        self.run(deadline, |mut conn| async move {
            redis::cmd("GET").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// Store `value` for `ttl_ms` (a TTL of 0 removes the entry).
    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        self.set_at(self.cache_key(key), value, ttl_ms, deadline)
            .await
    }

    async fn set_at(
        &self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        self.run(deadline, |mut conn| async move {
            if ttl_ms == 0 {
                redis::cmd("DEL").arg(key).query_async(&mut conn).await
            } else {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms.min(MAX_TTL_MS))
                    .query_async(&mut conn)
                    .await
            }
        })
        .await
    }

    /// Run one operation within the store's timeout (or until `deadline`, if sooner), keeping
    /// track of Redis's health.
    async fn run<T, F, Fut>(&self, deadline: Option<Instant>, op: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        let now = inner.clock();
        if now < inner.retry_at.load(Ordering::Relaxed) {
            return Err(format!(
                "the Redis state store at {} is unavailable (reconnecting)",
                inner.target
            ));
        }
        let within = match deadline {
            Some(d) => inner
                .timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => inner.timeout,
        };
        if within.is_zero() {
            return Err(
                "no time left for the Redis state store before the filter's deadline".into(),
            );
        }
        let conn = ConnectionManager::clone(&inner.conn.load());
        match tokio::time::timeout(within, op(conn)).await {
            Ok(Ok(v)) => {
                inner.answered();
                Ok(v)
            }
            Ok(Err(e)) if redis_answered(&e) => {
                inner.answered();
                Err(format!("Redis state store: {e}"))
            }
            Ok(Err(e)) => {
                let why = e.to_string();
                inner.failed(now, true, &why);
                Err(format!("Redis state store at {}: {why}", inner.target))
            }
            Err(_) => {
                let why = format!("no answer within {} ms", within.as_millis());
                inner.failed(now, false, &why);
                Err(format!("Redis state store at {}: {why}", inner.target))
            }
        }
    }
}

impl Inner {
    /// Milliseconds since this store was made, plus one (0 means "never").
    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn answered(&self) {
        self.failing_since.store(0, Ordering::Relaxed);
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(target: "ferrox::state", redis = %self.target, "the Redis state store answers again");
        }
    }

    /// Record a failure at `now`; `connection` says Redis could not be reached at all (as
    /// opposed to a timeout, which may be a passing slowness).
    fn failed(self: &Arc<Self>, now: u64, connection: bool, why: &str) {
        let since =
            match self
                .failing_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => now,
                Err(since) => since,
            };
        let lasting = now.saturating_sub(since) >= DOWN_AFTER_MS;
        if connection || lasting {
            self.retry_at.fetch_max(now + RETRY_MS, Ordering::Relaxed);
            if self.reachable.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    target: "ferrox::state",
                    redis = %self.target,
                    error = why,
                    "the Redis state store is unreachable; counters and cache fail (filters apply their store-failure policy) until it answers"
                );
            }
        }
        let last = self.last_rebuild.load(Ordering::Relaxed);
        if lasting
            && now.saturating_sub(last) >= REBUILD_EVERY_MS
            && self
                .last_rebuild
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            {
                Ok(conn) => {
                    tracing::debug!(target: "ferrox::state", redis = %self.target, "replacing the Redis connection");
                    self.conn.store(Arc::new(conn));
                    tokio::spawn(self.clone().probe());
                }
                Err(e) => {
                    tracing::warn!(target: "ferrox::state", redis = %self.target, error = %e, "cannot replace the Redis connection");
                }
            }
        }
    }

    /// Connect now (rather than on the first request) and load the counter script.
    async fn probe(self: Arc<Self>) {
        let conn = ConnectionManager::clone(&self.conn.load());
        let script = &self.script;
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT + self.timeout, async move {
            let mut conn = conn;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            script.prepare_invoke().load_async(&mut conn).await
        })
        .await;
        let now = self.clock();
        match attempt {
            Ok(Ok(_)) => self.answered(),
            Ok(Err(e)) if redis_answered(&e) => self.answered(),
            Ok(Err(e)) => self.failed(now, true, &e.to_string()),
            Err(_) => self.failed(now, true, "no answer to PING"),
        }
    }
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_by_prefix_kind_key_and_window_start() {
        assert_eq!(
            counter_key(
                "ferrox:",
                "rate-limit\u{1f}r\u{1f}ip:1.2.3.4",
                60_000,
                1_700_000_040_000
            ),
            "ferrox:c:rate-limit\u{1f}r\u{1f}ip:1.2.3.4:60000:1700000040000"
        );
        assert_eq!(
            counter_key("p:", "k", 1000, 0),
            format!("{}:1000:0", counter_base("p:", "k"))
        );
        assert_eq!(
            cache_key("ferrox:", "a\u{1f}b\u{1f}k"),
            "ferrox:v:a\u{1f}b\u{1f}k"
        );
        // The window and its start are always the last two `:`-separated parts and only
        // digits, so a key containing `:` and digits cannot collide with another key's window.
        let a = counter_key("p:", "x:5", 10, 10);
        let b = counter_key("p:", "x", 5, 10);
        assert_ne!(a, b);
    }

    #[test]
    fn urls_are_parsed_and_shown_without_credentials() {
        let c = parse_url("redis://user:s3cret@10.0.0.5:6380/2").expect("valid");
        assert_eq!(display_target(&c), "redis://10.0.0.5:6380/2");
        let c = parse_url("redis://127.0.0.1").expect("valid");
        assert_eq!(display_target(&c), "redis://127.0.0.1:6379/0");
        let c = parse_url("redis://[::1]:6379").expect("valid");
        assert_eq!(display_target(&c), "redis://[::1]:6379/0");
        let c = parse_url("redis+unix:///run/redis.sock?db=3").expect("valid");
        assert_eq!(display_target(&c), "redis+unix:///run/redis.sock?db=3");

        let e = parse_url("rediss://h:6379").expect_err("no TLS");
        assert!(e.contains("TLS"), "{e}");
        let e = parse_url("http://h").expect_err("not redis");
        assert!(e.contains("redis://"), "{e}");
        let e = parse_url("redis://:pw@h:6379/notadb").expect_err("bad db");
        assert!(e.contains("database"), "{e}");
        assert!(!e.contains("pw"), "the password is not repeated: {e}");
        let e = parse_url("redis://").expect_err("no host");
        assert!(e.starts_with("invalid Redis URL"), "{e}");
    }

    #[test]
    fn only_real_answers_count_as_redis_working() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!redis_answered(&refused));
        let loading =
            redis::RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(!redis_answered(&loading));
        let overflow = redis::RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "increment or decrement would overflow",
        ));
        assert!(redis_answered(&overflow));
    }
}
