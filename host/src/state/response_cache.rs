//! Stored responses of the response cache: the entry ([`CachedResponse`], with a compact binary
//! form for Redis) and the in-process store ([`LocalResponses`]): sharded, with expiry and a
//! memory bound enforced by evicting the least recently used entries of a shard.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Shards of the in-process store (each with its own lock and LRU order).
const SHARDS: usize = 8;
/// Memory the in-process store may use for responses, all shards together. An entry larger
/// than one shard's share (8 MiB) is not kept.
pub const LOCAL_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Bookkeeping counted per entry on top of its key, headers and body.
const ENTRY_OVERHEAD: usize = 128;
/// First bytes of an encoded entry (format version 1).
const MAGIC: &[u8; 4] = b"FXR1";

/// A response kept by the response cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResponse {
    /// When it was stored (ms since the Unix epoch).
    pub stored_at_ms: u64,
    /// The `Age` (seconds) the upstream gave it.
    pub age_s: u64,
    /// Status code.
    pub status: u16,
    /// Headers as the filter marked them storable (without `Age` and `X-Cache-Status`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl CachedResponse {
    /// Bytes it accounts for in memory.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 16)
            .sum();
        self.body.len() + headers + ENTRY_OVERHEAD
    }

    /// Its `Age` at `now_ms`, in whole seconds.
    pub fn age_at(&self, now_ms: u64) -> u64 {
        self.age_s
            .saturating_add(now_ms.saturating_sub(self.stored_at_ms) / 1000)
    }

    /// The binary form stored in Redis: magic, stored-at, age, status, headers (count, then
    /// length-prefixed names and values), body; integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.stored_at_ms.to_be_bytes());
        out.extend_from_slice(&self.age_s.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            for part in [name.as_str().as_bytes(), value.as_bytes()] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Read [`Self::encode`]'s form back.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err("not a cached response (unknown format)".into());
        }
        let stored_at_ms = u64::from_be_bytes(r.array()?);
        let age_s = u64::from_be_bytes(r.array()?);
        let status = u16::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?);
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let name = r.part()?;
            let value = r.part()?;
            let name = HeaderName::from_bytes(name).map_err(|_| "bad header name")?;
            let value = HeaderValue::from_bytes(value).map_err(|_| "bad header value")?;
            headers.append(name, value);
        }
        Ok(Self {
            stored_at_ms,
            age_s,
            status,
            headers,
            body: Bytes::copy_from_slice(r.0),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cached response is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn part(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }
}

/// In-process stored responses: sharded by key, each shard bounded to its share of
/// [`LOCAL_RESPONSE_BYTES`] and evicting its least recently used entries to make room.
#[derive(Debug)]
pub struct LocalResponses {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    shard_budget: usize,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<String, Slot>,
    /// Use tick → key, oldest first.
    order: BTreeMap<u64, String>,
    bytes: usize,
    tick: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Arc<CachedResponse>,
    expires_at_ms: u64,
    tick: u64,
    size: usize,
}

impl Default for LocalResponses {
    fn default() -> Self {
        Self::with_budget(LOCAL_RESPONSE_BYTES)
    }
}

impl LocalResponses {
    /// A store using at most `bytes` (split evenly between shards).
    pub fn with_budget(bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shard_budget: bytes / SHARDS,
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry under `key` at `now_ms`, if present and fresh (it becomes the most recently
    /// used of its shard).
    pub fn get(&self, key: &str, now_ms: u64) -> Option<Arc<CachedResponse>> {
        let mut shard = self.shard(key);
        let (expired, old_tick) = {
            let slot = shard.entries.get(key)?;
            (slot.expires_at_ms <= now_ms, slot.tick)
        };
        if expired {
            shard.remove(key);
            return None;
        }
        shard.tick += 1;
        let tick = shard.tick;
        shard.order.remove(&old_tick);
        shard.order.insert(tick, key.to_owned());
        let slot = shard.entries.get_mut(key)?;
        slot.tick = tick;
        Some(slot.entry.clone())
    }

    /// Keep `entry` under `key` until `now_ms + ttl_ms`, evicting least recently used entries
    /// to stay within the budget. Returns `false` when the entry alone exceeds a shard's share.
    pub fn put(&self, key: &str, entry: CachedResponse, ttl_ms: u64, now_ms: u64) -> bool {
        let size = entry.size() + key.len();
        if size > self.shard_budget {
            return false;
        }
        let mut shard = self.shard(key);
        shard.remove(key);
        while shard.bytes + size > self.shard_budget {
            let Some((_, oldest)) = shard.order.pop_first() else {
                break;
            };
            if let Some(slot) = shard.entries.remove(&oldest) {
                shard.bytes -= slot.size;
            }
        }
        shard.tick += 1;
        let tick = shard.tick;
        shard.order.insert(tick, key.to_owned());
        shard.bytes += size;
        shard.entries.insert(
            key.to_owned(),
            Slot {
                entry: Arc::new(entry),
                expires_at_ms: now_ms.saturating_add(ttl_ms),
                tick,
                size,
            },
        );
        true
    }

    /// Bytes accounted for, all shards together.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bytes)
            .sum()
    }
}

impl Shard {
    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.entries.remove(key) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> CachedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        CachedResponse {
            stored_at_ms: 1_000,
            age_s: 3,
            status: 203,
            headers,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn entries_round_trip_through_the_binary_form() {
        let e = entry("hello");
        let encoded = e.encode();
        assert_eq!(CachedResponse::decode(&encoded), Ok(e));
        assert!(
            CachedResponse::decode(&encoded[..encoded.len() - 5]).is_ok_and(|d| d.body.is_empty())
        );
        assert!(CachedResponse::decode(&encoded[..20]).is_err());
        assert!(CachedResponse::decode(b"XXXX").is_err());
    }

    #[test]
    fn age_counts_time_in_the_cache() {
        let e = entry("x");
        assert_eq!(e.age_at(1_000), 3);
        assert_eq!(e.age_at(3_999), 5);
        assert_eq!(e.age_at(0), 3);
    }

    #[test]
    fn entries_expire() {
        let s = LocalResponses::default();
        assert!(s.put("k", entry("v"), 100, 1_000));
        assert!(s.get("k", 1_099).is_some());
        assert!(s.get("k", 1_100).is_none());
        assert_eq!(s.bytes(), 0, "an expired entry is dropped when found");
    }

    #[test]
    fn the_least_recently_used_entries_make_room() {
        let one = entry(&"x".repeat(1000)).size() + 4;
        // Room for three entries per shard; all keys below land in one shard or another, so
        // use a single-shard view: a budget of 3 entries × SHARDS.
        let s = LocalResponses::with_budget(3 * one * SHARDS);
        let keys: Vec<String> = (0..200).map(|i| format!("k{i:03}")).collect();
        // Find four keys in the same shard.
        let first = s.hasher.hash_one(&keys[0]) % SHARDS as u64;
        let same: Vec<&String> = keys
            .iter()
            .filter(|k| s.hasher.hash_one(k.as_str()) % SHARDS as u64 == first)
            .take(4)
            .collect();
        assert_eq!(same.len(), 4);
        let body = "x".repeat(1000);
        for k in &same[..3] {
            assert!(s.put(k, entry(&body), 60_000, 0));
        }
        assert!(
            s.get(same[0], 1).is_some(),
            "k0 is now the most recently used"
        );
        assert!(s.put(same[3], entry(&body), 60_000, 2));
        assert!(
            s.get(same[1], 3).is_none(),
            "the least recently used was evicted"
        );
        for k in [same[0], same[2], same[3]] {
            assert!(s.get(k, 4).is_some(), "{k} kept");
        }
        assert!(s.bytes() <= 3 * one);
    }

    #[test]
    fn an_entry_larger_than_a_shard_is_refused() {
        let s = LocalResponses::with_budget(SHARDS * 512);
        assert!(!s.put("big", entry(&"x".repeat(600)), 1_000, 0));
        assert!(s.get("big", 1).is_none());
    }
}
