//! The stats hub behind the live dashboard.
//!
//! The request handler reports each finished request once with [`StatsHub::record`]: a push into
//! a bounded buffer behind a mutex held only for that push (no allocation under the lock while
//! the buffer has room, never a wait on I/O). A background task ([`spawn_ticker`]) swaps the
//! buffer out four times a second, folds the samples into per-second aggregates (requests/s,
//! p50/p99 from a small log-linear histogram, status classes per route and per upstream, filter
//! time and failures per plugin) and keeps the last [`RECENT`] requests with their explain data.
//! Counters the gateway already keeps exactly (rate-limited answers, cache lookups) are read
//! from the metrics, and breaker states and health from the current snapshot's targets. Once a
//! second one JSON update goes to every WebSocket subscriber.
//!
//! Beyond [`PENDING_CAP`] samples per quarter second, samples are dropped and counted (the
//! update says how many), so a flood never grows memory or slows requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::gateway::Gateway;
use crate::pipeline::FilterRecord;

/// Requests kept with their explain data.
pub const RECENT: usize = 500;
/// Samples buffered between two drains (a quarter second apart).
pub const PENDING_CAP: usize = 16_384;
/// Per-second updates kept for a new subscriber's charts.
pub const HISTORY: usize = 120;
const DRAIN_EVERY: Duration = Duration::from_millis(250);
const DRAINS_PER_TICK: u32 = 4;

/// One finished request, as the handler reports it (and as the explain view shows it).
#[derive(Debug, Serialize)]
pub struct Sample {
    /// Request id.
    pub id: Box<str>,
    /// Method.
    pub method: &'static str,
    /// Path as received (no query string).
    pub path: Box<str>,
    /// Matched route, if any.
    pub route: Option<Arc<str>>,
    /// The route's upstream, if a route matched.
    pub upstream: Option<Box<str>>,
    /// The last target tried.
    pub target: Option<String>,
    /// Final status.
    pub status: u16,
    /// Time to the response head, µs.
    pub micros: u64,
    /// Time waiting on the upstream (last attempt), µs.
    pub upstream_micros: Option<u64>,
    /// Upstream attempts.
    pub attempts: u32,
    /// `ferrox-error` of a gateway-made error answer.
    pub error: Option<Box<str>>,
    /// Each filter's part, in the order they ran: plugin, phase, decision (`continue`,
    /// `respond 401`, `failed (…)`, `skipped (tripped)`, `done`), µs and host services called.
    #[serde(serialize_with = "filter_steps")]
    pub filters: Vec<FilterRecord>,
}

fn filter_steps<S: serde::Serializer>(records: &[FilterRecord], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    let mut seq = s.serialize_seq(Some(records.len()))?;
    for r in records {
        struct Step<'a>(&'a FilterRecord);
        impl Serialize for Step<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("plugin", &*self.0.plugin)?;
                m.serialize_entry("phase", self.0.phase)?;
                m.serialize_entry("decision", &self.0.decision)?;
                m.serialize_entry("micros", &self.0.micros)?;
                m.serialize_entry("calls", &self.0.calls)?;
                m.end()
            }
        }
        seq.serialize_element(&Step(r))?;
    }
    seq.end()
}

/// A finished request as kept for the dashboard.
#[derive(Debug, Serialize)]
pub struct RecentRequest {
    /// Sequence number (increasing).
    pub seq: u64,
    /// When it finished, ms since the Unix epoch.
    pub at_ms: u64,
    /// The request.
    #[serde(flatten)]
    pub request: Sample,
}

/// Log-linear latency histogram in µs: 8 sub-buckets per power of two, exact below 16 µs.
#[derive(Clone, Debug)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u32 = 8;
const OCTAVES: u32 = 34;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; (SUB * OCTAVES) as usize],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < u64::from(2 * SUB) {
            return us as usize;
        }
        let octave = 63 - us.leading_zeros(); // ≥ 4
        let shift = octave - SUB.trailing_zeros();
        let sub = ((us >> shift) as u32) - SUB; // 0..SUB
        let i = (octave - SUB.trailing_zeros() + 1) * SUB + sub;
        (i as usize).min((SUB * OCTAVES) as usize - 1)
    }

    /// The upper bound (µs) of bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u32;
        if i < 2 * SUB {
            return u64::from(i);
        }
        let group = i / SUB - 1; // octave - 3
        let sub = i % SUB;
        let shift = group;
        ((u64::from(SUB + sub) + 1) << shift) - 1
    }

    fn observe(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.total += 1;
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i));
            }
        }
        None
    }
}

/// Status classes of one second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Classes {
    #[serde(rename = "1xx")]
    c1: u64,
    #[serde(rename = "2xx")]
    c2: u64,
    #[serde(rename = "3xx")]
    c3: u64,
    #[serde(rename = "4xx")]
    c4: u64,
    #[serde(rename = "5xx")]
    c5: u64,
}

impl Classes {
    fn add(&mut self, status: u16) {
        match status / 100 {
            1 => self.c1 += 1,
            2 => self.c2 += 1,
            3 => self.c3 += 1,
            4 => self.c4 += 1,
            _ => self.c5 += 1,
        }
    }
}

#[derive(Default)]
struct Group {
    classes: Classes,
    latency: Histogram,
    upstream: Histogram,
}

#[derive(Default)]
struct PluginAcc {
    calls: u64,
    micros: u64,
    max_micros: u64,
    failures: u64,
    responded: u64,
}

/// What the current second has gathered so far.
#[derive(Default)]
struct Accumulator {
    all: Group,
    routes: HashMap<Arc<str>, Group>,
    upstreams: HashMap<Box<str>, Group>,
    plugins: HashMap<Arc<str>, PluginAcc>,
    dropped: u64,
}

impl Accumulator {
    fn add(&mut self, s: &Sample) {
        fn fold(g: &mut Group, s: &Sample) {
            g.classes.add(s.status);
            g.latency.observe(s.micros);
            if let Some(u) = s.upstream_micros {
                g.upstream.observe(u);
            }
        }
        fold(&mut self.all, s);
        if let Some(r) = &s.route {
            fold(self.routes.entry(r.clone()).or_default(), s);
        }
        if let Some(u) = &s.upstream {
            fold(self.upstreams.entry(u.clone()).or_default(), s);
        }
        for f in &s.filters {
            let p = self.plugins.entry(f.plugin.clone()).or_default();
            p.calls += 1;
            p.micros += f.micros;
            p.max_micros = p.max_micros.max(f.micros);
            if f.decision.starts_with("failed") || f.decision.starts_with("skipped") {
                p.failures += 1;
            }
            if f.decision.starts_with("respond") {
                p.responded += 1;
            }
        }
    }
}

/// Counts of one second for a route or an upstream.
#[derive(Debug, Serialize)]
pub struct GroupStats {
    /// Route or upstream name.
    pub name: String,
    /// The route's upstream (routes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Requests in this second.
    pub rps: u64,
    /// Status classes in this second.
    pub classes: Classes,
    /// Latency p50, µs.
    pub p50_us: Option<u64>,
    /// Latency p99, µs.
    pub p99_us: Option<u64>,
    /// Upstream time p99, µs.
    pub upstream_p99_us: Option<u64>,
    /// Breaker and health per target (upstreams only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStats>,
}

/// One target's state.
#[derive(Debug, Serialize)]
pub struct TargetStats {
    /// `host:port`.
    pub label: String,
    /// `closed`, `open` or `half-open`.
    pub breaker: &'static str,
    /// Active health check verdict.
    pub healthy: bool,
    /// Requests in flight.
    pub in_flight: usize,
}

/// Filter time and failures of one plugin in one second.
#[derive(Debug, Serialize)]
pub struct PluginStats {
    /// Plugin name.
    pub name: Arc<str>,
    /// Calls (request and response hooks).
    pub calls: u64,
    /// Mean µs per call.
    pub avg_us: u64,
    /// Slowest call, µs.
    pub max_us: u64,
    /// Failed or skipped calls.
    pub failures: u64,
    /// Request hooks that answered (e.g. 401, 429).
    pub responded: u64,
}

/// One per-second update.
#[derive(Debug, Serialize)]
pub struct Tick {
    /// End of the second, ms since the Unix epoch.
    pub t: u64,
    /// Requests in the second.
    pub rps: u64,
    /// Latency p50, µs.
    pub p50_us: Option<u64>,
    /// Latency p99, µs.
    pub p99_us: Option<u64>,
    /// Status classes.
    pub classes: Classes,
    /// Per route (every configured route, busiest first).
    pub routes: Vec<GroupStats>,
    /// Per upstream, with breaker state per target.
    pub upstreams: Vec<GroupStats>,
    /// Per plugin.
    pub plugins: Vec<PluginStats>,
    /// Requests refused with 429 by a filter in this second (`ferrox_rate_limited_total`).
    pub rate_limited: u64,
    /// Since start.
    pub rate_limited_total: u64,
    /// Cache lookups in this second by result (`ferrox_cache_lookups_total`).
    pub cache: BTreeMap<String, u64>,
    /// Cache lookups since start by result.
    pub cache_total: BTreeMap<String, u64>,
    /// Requests since start (seen by the hub).
    pub requests_total: u64,
    /// Samples dropped in this second because the buffer was full.
    pub dropped: u64,
    /// Requests that finished in this second, with explain data (at most [`RECENT`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Arc<RecentRequest>>,
}

struct Pending {
    samples: Vec<(u64, Sample)>,
    dropped: u64,
}

struct Kept {
    recent: VecDeque<Arc<RecentRequest>>,
    history: VecDeque<Arc<str>>,
}

/// Collects finished requests and publishes per-second updates.
pub struct StatsHub {
    pending: Mutex<Pending>,
    kept: Mutex<Kept>,
    updates: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for StatsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsHub")
    }
}

impl Default for StatsHub {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StatsHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            pending: Mutex::new(Pending {
                samples: Vec::with_capacity(1024),
                dropped: 0,
            }),
            kept: Mutex::new(Kept {
                recent: VecDeque::with_capacity(RECENT),
                history: VecDeque::with_capacity(HISTORY),
            }),
            updates: broadcast::channel(8).0,
        }
    }

    /// Report a finished request. Never blocks beyond a short uncontended lock; drops (and
    /// counts) the sample when the buffer is full.
    pub fn record(&self, sample: Sample) {
        let at = now_ms();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.samples.len() < PENDING_CAP {
            p.samples.push((at, sample));
        } else {
            p.dropped += 1;
        }
    }

    /// Per-second updates (JSON), for one subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.updates.subscribe()
    }

    /// The first message for a new subscriber: recent requests and the last updates.
    pub fn hello(&self) -> String {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let recent: Vec<&RecentRequest> = kept.recent.iter().map(|r| &**r).collect();
        let history: Vec<&str> = kept.history.iter().map(|h| &**h).collect();
        // The history entries are JSON already: splice them in rather than re-parse.
        let recent_json = serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into());
        format!(
            "{{\"type\":\"hello\",\"recent\":{recent_json},\"history\":[{}]}}",
            history.join(",")
        )
    }

    /// The requests kept (oldest first).
    pub fn recent(&self) -> Vec<Arc<RecentRequest>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.recent.iter().cloned().collect()
    }

    fn drain(&self, spare: &mut Vec<(u64, Sample)>) -> u64 {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut p.samples, spare);
        std::mem::take(&mut p.dropped)
    }
}

/// Baselines of the exact counters read from the metrics.
#[derive(Default)]
struct Baseline {
    rate_limited: u64,
    cache: BTreeMap<String, u64>,
}

fn counter_sum(c: &impl Collector, by_label: Option<&str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for family in c.collect() {
        for m in family.get_metric() {
            let key = by_label
                .and_then(|l| {
                    m.get_label()
                        .iter()
                        .find(|p| p.name() == l)
                        .map(|p| p.value().to_owned())
                })
                .unwrap_or_default();
            *out.entry(key).or_insert(0) += m.get_counter().get_value() as u64;
        }
    }
    out
}

struct Ticker {
    acc: Accumulator,
    seq: u64,
    total: u64,
    base: Baseline,
    spare: Vec<(u64, Sample)>,
}

impl Ticker {
    fn new(gw: &Gateway) -> Self {
        let mut t = Self {
            acc: Accumulator::default(),
            seq: 0,
            total: 0,
            base: Baseline::default(),
            spare: Vec::with_capacity(1024),
        };
        t.exact(gw);
        t
    }

    /// Fold what the handler reported since the last drain.
    fn drain(&mut self, hub: &StatsHub, fresh: &mut Vec<Arc<RecentRequest>>) {
        self.acc.dropped += hub.drain(&mut self.spare);
        // At most the last RECENT samples stay in the recent list (older entries go first):
        // the others are counted and dropped without being wrapped for it.
        let keep_from = self.spare.len().saturating_sub(RECENT);
        for (i, (at_ms, s)) in self.spare.drain(..).enumerate() {
            self.acc.add(&s);
            self.seq += 1;
            self.total += 1;
            if i < keep_from {
                continue;
            }
            let r = Arc::new(RecentRequest {
                seq: self.seq,
                at_ms,
                request: s,
            });
            fresh.push(r);
        }
        if fresh.len() > RECENT {
            fresh.drain(..fresh.len() - RECENT);
        }
    }

    /// This second's deltas of the exact counters, and their totals.
    fn exact(&mut self, gw: &Gateway) -> (u64, u64, BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let rl_total: u64 = counter_sum(&gw.metrics.rate_limited, None).values().sum();
        let cache_total = counter_sum(&gw.metrics.cache_lookups, Some("result"));
        let rl = rl_total.saturating_sub(self.base.rate_limited);
        let cache = cache_total
            .iter()
            .map(|(k, v)| {
                let before = self.base.cache.get(k).copied().unwrap_or(0);
                (k.clone(), v.saturating_sub(before))
            })
            .collect();
        self.base.rate_limited = rl_total;
        self.base.cache = cache_total.clone();
        (rl, rl_total, cache, cache_total)
    }

    fn tick(&mut self, gw: &Gateway, recent: Vec<Arc<RecentRequest>>) -> Tick {
        let acc = std::mem::take(&mut self.acc);
        let (rate_limited, rate_limited_total, cache, cache_total) = self.exact(gw);
        let snap = gw.snapshot();
        let group = |name: String, upstream: Option<String>, g: Option<&Group>| {
            let empty = Group::default();
            let g = g.unwrap_or(&empty);
            GroupStats {
                name,
                upstream,
                rps: g.latency.total,
                classes: g.classes.clone(),
                p50_us: g.latency.quantile(0.5),
                p99_us: g.latency.quantile(0.99),
                upstream_p99_us: g.upstream.quantile(0.99),
                targets: Vec::new(),
            }
        };
        let mut routes: Vec<GroupStats> = snap
            .config
            .routes
            .iter()
            .map(|r| {
                group(
                    r.name.clone(),
                    Some(r.upstream.clone()),
                    acc.routes.get(r.name.as_str()),
                )
            })
            .collect();
        routes.sort_by(|a, b| b.rps.cmp(&a.rps).then_with(|| a.name.cmp(&b.name)));
        let mut upstreams: Vec<GroupStats> = snap
            .upstreams
            .iter()
            .map(|(name, u)| {
                let mut g = group(name.clone(), None, acc.upstreams.get(name.as_str()));
                g.targets = u
                    .targets
                    .iter()
                    .map(|t| TargetStats {
                        label: t.label.clone(),
                        breaker: match t.breaker_state() {
                            crate::breaker::BreakerState::Closed => "closed",
                            crate::breaker::BreakerState::Open => "open",
                            crate::breaker::BreakerState::HalfOpen => "half-open",
                        },
                        healthy: t.is_healthy(),
                        in_flight: t.in_flight(),
                    })
                    .collect();
                g
            })
            .collect();
        upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        let mut plugins: Vec<PluginStats> = acc
            .plugins
            .into_iter()
            .map(|(name, p)| PluginStats {
                name,
                calls: p.calls,
                avg_us: p.micros.checked_div(p.calls).unwrap_or(0),
                max_us: p.max_micros,
                failures: p.failures,
                responded: p.responded,
            })
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        Tick {
            t: now_ms(),
            rps: acc.all.latency.total,
            p50_us: acc.all.latency.quantile(0.5),
            p99_us: acc.all.latency.quantile(0.99),
            classes: acc.all.classes,
            routes,
            upstreams,
            plugins,
            rate_limited,
            rate_limited_total,
            cache,
            cache_total,
            requests_total: self.total,
            dropped: acc.dropped,
            recent,
        }
    }
}

/// Run the hub's drain/aggregate loop for `gw` until the gateway is dropped.
pub fn spawn_ticker(gw: Weak<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = match gw.upgrade() {
            Some(g) => Ticker::new(&g),
            None => return,
        };
        let mut interval = tokio::time::interval(DRAIN_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drains = 0;
        let mut fresh = Vec::new();
        loop {
            interval.tick().await;
            let Some(gw) = gw.upgrade() else { return };
            let hub = &gw.stats;
            ticker.drain(hub, &mut fresh);
            drains += 1;
            if drains < DRAINS_PER_TICK {
                continue;
            }
            drains = 0;
            let recent = std::mem::take(&mut fresh);
            let tick = ticker.tick(&gw, recent);
            // The full update (with the second's requests) is encoded only when a dashboard
            // is connected; the kept requests and the charts' history are updated regardless.
            let json: Option<Arc<str>> = if hub.updates.receiver_count() > 0 {
                match serde_json::to_string(&tick) {
                    Ok(j) => Some(j.into()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot encode dashboard update");
                        continue;
                    }
                }
            } else {
                None
            };
            {
                let mut kept = hub.kept.lock().unwrap_or_else(|e| e.into_inner());
                for r in &tick.recent {
                    if kept.recent.len() == RECENT {
                        kept.recent.pop_front();
                    }
                    kept.recent.push_back(r.clone());
                }
                // History holds the charts' numbers only; recent requests are kept apart.
                let mut light = tick;
                light.recent = Vec::new();
                if let Ok(j) = serde_json::to_string(&light) {
                    if kept.history.len() == HISTORY {
                        kept.history.pop_front();
                    }
                    kept.history.push_back(j.into());
                }
            }
            if let Some(json) = json {
                let _ = hub.updates.send(json);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in [
            0u64, 1, 7, 15, 16, 17, 31, 100, 999, 12_345, 1_000_000, 60_000_000,
        ] {
            let i = Histogram::index(us);
            assert!(i >= last, "index of {us} went back");
            last = i;
            let upper = Histogram::upper(i);
            assert!(upper >= us, "{us} above its bucket's bound {upper}");
            // Within 12.5 % above 16 µs.
            assert!(upper as f64 <= (us as f64) * 1.125 + 1.0, "{us} → {upper}");
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for _ in 0..98 {
            h.observe(100);
        }
        h.observe(5_000);
        h.observe(5_000);
        let p50 = h.quantile(0.5).expect("p50");
        let p99 = h.quantile(0.99).expect("p99");
        assert!((100..=112).contains(&p50), "p50 {p50}");
        assert!((5_000..=5_625).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn full_buffer_drops_and_counts() {
        let hub = StatsHub::new();
        let sample = || Sample {
            id: "r".into(),
            method: "GET",
            path: "/".into(),
            route: None,
            upstream: None,
            target: None,
            status: 200,
            micros: 10,
            upstream_micros: None,
            attempts: 0,
            error: None,
            filters: Vec::new(),
        };
        for _ in 0..PENDING_CAP + 3 {
            hub.record(sample());
        }
        let mut spare = Vec::new();
        assert_eq!(hub.drain(&mut spare), 3);
        assert_eq!(spare.len(), PENDING_CAP);
    }
}
