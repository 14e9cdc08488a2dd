//! The in-memory gateway services: one per thread, so every test (each runs on its own thread
//! under the standard harness) starts with a fresh one.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::counters::Counter;
use crate::log::Level;

/// Where the harness clock starts: 2023-11-14T22:13:20Z, in milliseconds since the Unix epoch.
pub const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

/// The largest value the gateway's cache takes.
const MAX_CACHE_VALUE: usize = 8 * 1024 * 1024;

/// One line a filter logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

#[derive(Debug)]
struct Host {
    now_ms: u64,
    /// key → (window start, count).
    counters: HashMap<String, (u64, i64, i64)>,
    /// key → (expires at, value).
    cache: HashMap<String, (u64, Vec<u8>)>,
    counters_error: Option<String>,
    cache_error: Option<String>,
    keys: HashMap<String, String>,
    logs: Vec<LogRecord>,
    metric_counters: HashMap<String, u64>,
    metric_histograms: HashMap<String, Vec<f64>>,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            now_ms: DEFAULT_NOW_MS,
            counters: HashMap::new(),
            cache: HashMap::new(),
            counters_error: None,
            cache_error: None,
            keys: HashMap::new(),
            logs: Vec::new(),
            metric_counters: HashMap::new(),
            metric_histograms: HashMap::new(),
        }
    }
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

fn with_host<R>(f: impl FnOnce(&mut Host) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Forget everything: counters, cache, keys, JWT credentials, logs, metrics, injected errors; the clock goes
/// back to [`DEFAULT_NOW_MS`]. Only needed when tests share a thread.
pub fn reset() {
    with_host(|h| *h = Host::default());
    super::jwt::reset();
    super::response_cache::clear();
}

/// The injected state-store error, if any (the response cache fails with it too).
pub(crate) fn cache_error() -> Option<String> {
    with_host(|h| h.cache_error.clone())
}

/// Set the clock.
pub fn set_now_ms(now_ms: u64) {
    with_host(|h| h.now_ms = now_ms);
}

/// Move the clock forward.
pub fn advance_ms(ms: u64) {
    with_host(|h| h.now_ms += ms);
}

/// Make [`credentials::consumer_for_key`](crate::credentials::consumer_for_key) know `key` as
/// belonging to `consumer`.
pub fn add_key(key: &str, consumer: &str) {
    with_host(|h| h.keys.insert(key.to_owned(), consumer.to_owned()));
}

/// Make [`counters::incr`](crate::counters::incr) fail with `error` (e.g. to test a policy
/// for a state store that is down), or work again with `None`.
pub fn set_counters_error(error: Option<&str>) {
    with_host(|h| h.counters_error = error.map(str::to_owned));
}

/// Make [`cache::get`](crate::cache::get) and [`cache::set`](crate::cache::set) fail with
/// `error`, or work again with `None`.
pub fn set_cache_error(error: Option<&str>) {
    with_host(|h| h.cache_error = error.map(str::to_owned));
}

/// Every line logged so far, oldest first.
pub fn logs() -> Vec<LogRecord> {
    with_host(|h| h.logs.clone())
}

/// The value of metrics counter `name` (0 if never added to).
pub fn metric_counter(name: &str) -> u64 {
    with_host(|h| h.metric_counters.get(name).copied().unwrap_or(0))
}

/// Every value observed in metrics histogram `name`, in order.
pub fn metric_histogram(name: &str) -> Vec<f64> {
    with_host(|h| h.metric_histograms.get(name).cloned().unwrap_or_default())
}

// The services as the SDK's modules call them.

pub(crate) fn log(level: Level, message: &str) {
    // Shown by the test harness when a test fails.
    eprintln!("[filter {level}] {message}");
    with_host(|h| {
        h.logs.push(LogRecord {
            level,
            message: message.to_owned(),
        });
    });
}

pub(crate) fn now_ms() -> u64 {
    with_host(|h| h.now_ms)
}

pub(crate) fn incr(key: &str, delta: i64, window_ms: u64) -> Result<Counter, String> {
    incr_sliding(key, delta, window_ms).map(|s| Counter {
        count: s.current,
        reset_ms: s.reset_ms,
    })
}

pub(crate) fn incr_sliding(
    key: &str,
    delta: i64,
    window_ms: u64,
) -> Result<crate::counters::Sliding, String> {
    with_host(|h| {
        if let Some(e) = &h.counters_error {
            return Err(e.clone());
        }
        // Same arithmetic as the gateway's local store.
        let window = window_ms.max(1);
        let start = h.now_ms - h.now_ms % window;
        let entry = h.counters.entry(key.to_owned()).or_insert((start, 0, 0));
        if entry.0 != start {
            let previous = if entry.0 + window == start {
                entry.1
            } else {
                0
            };
            *entry = (start, 0, previous);
        }
        entry.1 += delta;
        Ok(crate::counters::Sliding {
            current: entry.1,
            previous: entry.2,
            elapsed_ms: h.now_ms - start,
            reset_ms: start + window - h.now_ms,
        })
    })
}

pub(crate) fn cache_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    with_host(|h| {
        if let Some(e) = &h.cache_error {
            return Err(e.clone());
        }
        Ok(h.cache
            .get(key)
            .filter(|(expires, _)| *expires > h.now_ms)
            .map(|(_, value)| value.clone()))
    })
}

pub(crate) fn cache_set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), String> {
    with_host(|h| {
        if let Some(e) = &h.cache_error {
            return Err(e.clone());
        }
        if value.len() > MAX_CACHE_VALUE {
            return Err("cache values are limited to 8 MiB".to_owned());
        }
        let expires = h.now_ms.saturating_add(ttl_ms);
        h.cache.insert(key.to_owned(), (expires, value.to_vec()));
        Ok(())
    })
}

pub(crate) fn consumer_for_key(key: &str) -> Option<String> {
    with_host(|h| h.keys.get(key).cloned())
}

pub(crate) fn counter_add(name: &str, value: u64) {
    with_host(|h| *h.metric_counters.entry(name.to_owned()).or_default() += value);
}

pub(crate) fn histogram_observe(name: &str, value: f64) {
    with_host(|h| {
        h.metric_histograms
            .entry(name.to_owned())
            .or_default()
            .push(value);
    });
}
