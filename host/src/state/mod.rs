//! Shared state for filters: windowed counters and a TTL cache, in-process ([`LocalState`]) or in
//! Redis ([`RedisState`], shared by every instance using the same Redis and key prefix). Keys
//! arrive already namespaced by plugin and route (see `crate::plugin`), so filters cannot read
//! each other's.

mod redis_state;
mod response_cache;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use redis_state::{
    COUNTER_SCRIPT, MAX_TTL_MS, MAX_WINDOW_MS, RETRY_MS, RedisOptions, RedisState, cache_key,
    counter_key, display_target, parse_url, response_key,
};

pub use response_cache::{CachedResponse, LOCAL_RESPONSE_BYTES, LocalResponses};

use crate::config::StateOptionsConfig;

/// Where counters and cache live, as configured by `state`.
#[derive(Debug)]
pub enum StateStore {
    /// In this process.
    Local(LocalState),
    /// In Redis.
    Redis(RedisState),
}

/// What a `state` value names, checked without connecting.
pub fn check_state(state: &str) -> Result<(), String> {
    if state == "local" {
        return Ok(());
    }
    if state.contains("://") {
        return parse_url(state).map(drop);
    }
    Err(format!(
        "{state:?} is not a state store; use `local` or a redis:// URL"
    ))
}

impl Default for StateStore {
    fn default() -> Self {
        Self::Local(LocalState::default())
    }
}

impl StateStore {
    /// The store `state` names (`local` or a Redis URL) with `options`. A Redis store connects
    /// in the background (it is usable, failing, while Redis is down); call within a Tokio
    /// runtime.
    pub fn from_config(state: &str, options: &StateOptionsConfig) -> Result<Self, String> {
        check_state(state)?;
        if state == "local" {
            return Ok(Self::default());
        }
        RedisState::new(
            state,
            RedisOptions {
                timeout: options.timeout.0.max(Duration::from_millis(1)),
                key_prefix: options.key_prefix.clone(),
            },
        )
        .map(Self::Redis)
    }

    /// `local`, or the Redis URL without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(_) => "local".into(),
            Self::Redis(r) => r.target().to_owned(),
        }
    }

    /// Add `delta` to `key` in the fixed window of `window_ms` containing now. A remote store
    /// gives up at `deadline` when it comes before the store's own timeout.
    pub async fn incr(
        &self,
        key: &str,
        delta: i64,
        window_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<CounterValue, String> {
        match self {
            Self::Local(l) => Ok(l.incr(key, delta, window_ms, now_ms())),
            Self::Redis(r) => r.incr(key, delta, window_ms, deadline).await,
        }
    }

    /// [`Self::incr`], also returning the previous window's count.
    pub async fn incr_sliding(
        &self,
        key: &str,
        delta: i64,
        window_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<SlidingValue, String> {
        match self {
            Self::Local(l) => Ok(l.incr_sliding(key, delta, window_ms, now_ms())),
            Self::Redis(r) => r.incr_sliding(key, delta, window_ms, deadline).await,
        }
    }

    /// The cached value for `key`, if any.
    pub async fn get(
        &self,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>, String> {
        match self {
            Self::Local(l) => Ok(l.get(key, now_ms())),
            Self::Redis(r) => r.get(key, deadline).await,
        }
    }

    /// Store `value` under `key` for `ttl_ms`.
    pub async fn set(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        match self {
            Self::Local(l) => {
                l.set(key, value, ttl_ms, now_ms());
                Ok(())
            }
            Self::Redis(r) => r.set(key, value, ttl_ms, deadline).await,
        }
    }

    /// The response-cache entry under `key`, if any and fresh.
    pub async fn get_response(
        &self,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<std::sync::Arc<CachedResponse>>, String> {
        match self {
            Self::Local(l) => Ok(l.responses.get(key, now_ms())),
            Self::Redis(r) => match r.get_response(key, deadline).await? {
                Some(bytes) => CachedResponse::decode(&bytes).map(|e| Some(std::sync::Arc::new(e))),
                None => Ok(None),
            },
        }
    }

    /// Keep `entry` under `key` for `ttl_ms`. In-process, an entry too large for the memory
    /// bound is an error.
    pub async fn put_response(
        &self,
        key: &str,
        entry: CachedResponse,
        ttl_ms: u64,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        match self {
            Self::Local(l) => {
                if l.responses.put(key, entry, ttl_ms, now_ms()) {
                    Ok(())
                } else {
                    Err("the response is too large for the in-process cache".into())
                }
            }
            Self::Redis(r) => r.set_response(key, entry.encode(), ttl_ms, deadline).await,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A counter's value after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterValue {
    /// Count in the current window.
    pub count: i64,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// A counter's current and previous windows after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingValue {
    /// Count in the current window.
    pub current: i64,
    /// Count in the previous window.
    pub previous: i64,
    /// Milliseconds elapsed in the current window.
    pub elapsed_ms: u64,
    /// Milliseconds until the current window ends.
    pub reset_ms: u64,
}

/// Fixed-window counter arithmetic: windows are aligned to multiples of their length since the
/// Unix epoch, so every instance computes the same window for the same instant.
pub fn window_start(now_ms: u64, window_ms: u64) -> u64 {
    let w = window_ms.max(1);
    now_ms - now_ms % w
}

/// In-process counters and cache.
#[derive(Debug, Default)]
pub struct LocalState {
    /// key → (current window start, current count, previous window's count)
    counters: Mutex<HashMap<String, (u64, i64, i64)>>,
    cache: Mutex<HashMap<String, (u64, Vec<u8>)>>,
    /// The response cache's entries.
    responses: LocalResponses,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

impl LocalState {
    /// Add `delta` to `key` in the fixed window of `window_ms` containing `now_ms`.
    pub fn incr(&self, key: &str, delta: i64, window_ms: u64, now_ms: u64) -> CounterValue {
        let s = self.incr_sliding(key, delta, window_ms, now_ms);
        CounterValue {
            count: s.current,
            reset_ms: s.reset_ms,
        }
    }

    /// [`Self::incr`], also returning the previous window's count.
    pub fn incr_sliding(&self, key: &str, delta: i64, window_ms: u64, now_ms: u64) -> SlidingValue {
        let window = window_ms.max(1);
        let start = window_start(now_ms, window);
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > SWEEP_AT {
            // Entries older than two windows carry nothing a caller can still see.
            map.retain(|_, (s, _, _)| *s + 2 * window > now_ms);
        }
        // Windows of different lengths are different counters, even when they start together.
        let entry = map
            .entry(format!("{key}\u{1f}{window}"))
            .or_insert((start, 0, 0));
        if entry.0 != start {
            let previous = if entry.0 + window == start {
                entry.1
            } else {
                0
            };
            *entry = (start, 0, previous);
        }
        entry.1 = entry.1.saturating_add(delta);
        SlidingValue {
            current: entry.1,
            previous: entry.2,
            elapsed_ms: now_ms - start,
            reset_ms: start + window - now_ms,
        }
    }

    /// The cached value for `key` at `now_ms`, if any.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Vec<u8>> {
        let map = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(expires, _)| *expires > now_ms)
            .map(|(_, v)| v.clone())
    }

    /// Store `value` for `ttl_ms`.
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: u64, now_ms: u64) {
        let mut map = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > SWEEP_AT {
            map.retain(|_, (expires, _)| *expires > now_ms);
        }
        map.insert(key.to_owned(), (now_ms.saturating_add(ttl_ms), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_are_aligned_and_reset() {
        let s = LocalState::default();
        assert_eq!(
            s.incr("k", 1, 1000, 10_250),
            CounterValue {
                count: 1,
                reset_ms: 750
            }
        );
        assert_eq!(s.incr("k", 2, 1000, 10_999).count, 3);
        assert_eq!(
            s.incr("k", 1, 1000, 11_000),
            CounterValue {
                count: 1,
                reset_ms: 1000
            }
        );
        assert_eq!(window_start(59_999, 60_000), 0);
    }

    #[test]
    fn sliding_windows_carry_the_previous_count() {
        let s = LocalState::default();
        s.incr_sliding("k", 5, 1000, 10_100);
        let v = s.incr_sliding("k", 1, 1000, 11_250);
        assert_eq!(
            (v.current, v.previous, v.elapsed_ms, v.reset_ms),
            (1, 5, 250, 750)
        );
        // A skipped window means nothing carries over.
        assert_eq!(s.incr_sliding("k", 1, 1000, 13_000).previous, 0);
    }

    #[test]
    fn windows_of_different_lengths_are_different_counters() {
        let s = LocalState::default();
        // At 3_600_000 a one-minute and a one-hour window start together.
        assert_eq!(s.incr("k", 3, 3_600_000, 3_600_000).count, 3);
        assert_eq!(s.incr("k", 1, 60_000, 3_600_000).count, 1);
        assert_eq!(s.incr("k", 1, 3_600_000, 3_600_001).count, 4);
    }

    #[test]
    fn cache_entries_expire() {
        let s = LocalState::default();
        s.set("a", b"v".to_vec(), 100, 1_000);
        assert_eq!(s.get("a", 1_099).as_deref(), Some(&b"v"[..]));
        assert_eq!(s.get("a", 1_100), None);
    }
}
