//! Runtime upstreams: targets with their breaker and health, load balancing, retry budget.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use tokio::time::Instant;

use super::client::{Pool, UpstreamClient, build_client};
use crate::breaker::{Admission, Breaker, BreakerState, Outcome};
use crate::config::{Balance, TargetAddr, UpstreamConfig, parse_target};
use crate::metrics::Metrics;

/// One target of an upstream.
#[derive(Debug)]
pub struct Target {
    /// Address and scheme.
    pub addr: TargetAddr,
    /// Label used in metrics (`host:port` or `https://host:port`).
    pub label: String,
    breaker: Mutex<Breaker>,
    /// Verdict of active health checks (true when none are configured).
    healthy: AtomicBool,
    /// Consecutive active check results, positive for successes, negative for failures.
    pub(crate) streak: AtomicI64,
    in_flight: AtomicUsize,
    /// Connections to this target.
    pub pool: Arc<Pool>,
    /// `Host` sent to this target (its authority), unless the upstream preserves the client's.
    pub host: Option<http::HeaderValue>,
    /// `ferrox_breaker_state{upstream,target}`, resolved once.
    breaker_gauge: prometheus::IntGauge,
}

impl Target {
    /// Whether active health checks consider this target up.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// The breaker state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state(Instant::now())
    }

    /// Requests in flight to this target.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A backend service at runtime.
#[derive(Debug)]
pub struct Upstream {
    /// The config it was built from (to reuse it, with its state, across reloads).
    pub config: UpstreamConfig,
    /// Targets, in config order.
    pub targets: Vec<Arc<Target>>,
    /// Pooled HTTP client for this upstream's targets.
    pub client: UpstreamClient,
    next: AtomicUsize,
    hash_header: Option<http::HeaderName>,
    budget: RetryBudget,
    /// `ferrox_upstream_duration_seconds{upstream}`, resolved once.
    pub duration: prometheus::Histogram,
}

/// Why no target could be picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickError {
    /// Every eligible target's circuit is open.
    CircuitOpen,
    /// Every target is marked down by active health checks.
    NoHealthyTarget,
}

/// A target chosen for one attempt. Dropping it without [`Lease::finish`] releases a half-open
/// probe slot, so an abandoned probe never wedges the breaker.
#[derive(Debug)]
pub struct Lease {
    /// The chosen target.
    pub target: Arc<Target>,
    /// Its index in the upstream.
    pub index: usize,
    admission: Admission,
    done: bool,
}

impl Lease {
    /// Record the attempt's outcome in the target's breaker.
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        let state = {
            let mut b = self.target.lock_breaker();
            let now = Instant::now();
            b.record(now, self.admission, outcome);
            b.state(now)
        };
        self.publish(state);
    }

    fn publish(&self, state: BreakerState) {
        self.target.breaker_gauge.set(state.as_gauge());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.target.lock_breaker().release(self.admission);
        }
    }
}

impl Upstream {
    /// Build the runtime upstream from a validated config.
    pub fn build(config: &UpstreamConfig, metrics: &Metrics) -> Result<Self, String> {
        let client = build_client(config)?;
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let addr = parse_target(t)?;
                let label = addr.to_string();
                let breaker_gauge = metrics
                    .breaker_state
                    .with_label_values(&[config.name.as_str(), label.as_str()]);
                breaker_gauge.set(0);
                metrics
                    .target_healthy
                    .with_label_values(&[config.name.as_str(), label.as_str()])
                    .set(1);
                Ok(Arc::new(Target {
                    pool: client.pool(&addr.scheme, &addr.authority),
                    host: http::HeaderValue::from_str(addr.authority.as_str()).ok(),
                    breaker_gauge,
                    addr,
                    label,
                    breaker: Mutex::new(Breaker::new(
                        config.circuit_breaker.failures,
                        config.circuit_breaker.cooldown.0,
                    )),
                    healthy: AtomicBool::new(true),
                    streak: AtomicI64::new(0),
                    in_flight: AtomicUsize::new(0),
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            client,
            targets,
            next: AtomicUsize::new(fastrand::usize(..1024)),
            hash_header: config
                .hash_header
                .as_deref()
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            budget: RetryBudget::new(config.retry_budget.ratio, config.retry_budget.min_per_sec),
            duration: metrics
                .upstream_duration
                .with_label_values(&[config.name.as_str()]),
            config: config.clone(),
        })
    }

    /// Name of the upstream.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Choose a target for a request, skipping `tried` targets, unhealthy targets and open
    /// circuits.
    pub fn pick(&self, headers: &HeaderMap, tried: &[usize]) -> Result<Lease, PickError> {
        let n = self.targets.len();
        let order = self.candidate_order(headers);
        let now = Instant::now();
        let mut saw_healthy = false;
        for i in order.take(n) {
            if tried.contains(&i) {
                continue;
            }
            let t = &self.targets[i];
            if !t.is_healthy() {
                continue;
            }
            saw_healthy = true;
            let (admission, state) = {
                let mut b = t.lock_breaker();
                let a = b.admit(now);
                (a, b.state(now))
            };
            if admission == Admission::Rejected {
                continue;
            }
            t.in_flight.fetch_add(1, Ordering::Relaxed);
            let lease = Lease {
                target: t.clone(),
                index: i,
                admission,
                done: false,
            };
            lease.publish(state);
            return Ok(lease);
        }
        Err(if saw_healthy {
            PickError::CircuitOpen
        } else {
            PickError::NoHealthyTarget
        })
    }

    /// Target indices in the order the balancing algorithm prefers them.
    fn candidate_order(&self, headers: &HeaderMap) -> Order {
        let n = self.targets.len();
        match self.config.balance {
            Balance::RoundRobin => self.rotation(n),
            Balance::LeastRequests => {
                let mut order: Vec<usize> = self.rotation(n).collect();
                // Stable sort keeps the round-robin rotation among equally loaded targets.
                order.sort_by_key(|&i| self.targets[i].in_flight());
                Order::List(order.into_iter())
            }
            Balance::Hash => {
                let key = self
                    .hash_header
                    .as_ref()
                    .and_then(|h| headers.get(h))
                    .map(|v| v.as_bytes());
                match key {
                    Some(key) => {
                        // Rendezvous hashing: each target scores hash(key, target); highest
                        // first. Removing a target only moves the keys it owned.
                        let mut scored: Vec<(u64, usize)> = (0..n)
                            .map(|i| {
                                let mut h = std::hash::DefaultHasher::new();
                                key.hash(&mut h);
                                self.targets[i].label.hash(&mut h);
                                (h.finish(), i)
                            })
                            .collect();
                        scored.sort_unstable_by(|a, b| b.cmp(a));
                        Order::List(
                            scored
                                .into_iter()
                                .map(|(_, i)| i)
                                .collect::<Vec<_>>()
                                .into_iter(),
                        )
                    }
                    None => self.rotation(n),
                }
            }
        }
    }

    fn rotation(&self, n: usize) -> Order {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        Order::Rotation { start, k: 0, n }
    }

    /// Count a request towards the retry budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Whether one more retry fits the budget (takes it if so).
    pub fn withdraw_retry(&self) -> bool {
        self.budget.withdraw()
    }
}

/// Target indices in preference order; a rotation needs no allocation.
enum Order {
    Rotation { start: usize, k: usize, n: usize },
    List(std::vec::IntoIter<usize>),
}

impl Iterator for Order {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Order::Rotation { start, k, n } => {
                if *k >= *n {
                    return None;
                }
                let i = (*start + *k) % *n;
                *k += 1;
                Some(i)
            }
            Order::List(it) => it.next(),
        }
    }
}

/// Token bucket for retries: each request deposits `ratio` tokens, each retry costs one, and
/// `min_per_sec` tokens are always granted per second. Balance is capped at 10 s worth.
#[derive(Debug)]
struct RetryBudget {
    milli_tokens: AtomicI64,
    deposit: i64,
    per_sec: i64,
    cap: i64,
    epoch: Instant,
    last_refill: AtomicU32,
}

impl RetryBudget {
    fn new(ratio: f64, min_per_sec: u32) -> Self {
        let per_sec = i64::from(min_per_sec) * 1000;
        let cap = (per_sec * 10).max(10_000);
        Self {
            milli_tokens: AtomicI64::new(per_sec.max(1000)),
            deposit: (ratio * 1000.0) as i64,
            per_sec,
            cap,
            epoch: Instant::now(),
            last_refill: AtomicU32::new(0),
        }
    }

    fn add(&self, amount: i64) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + amount).min(self.cap))
            });
    }

    fn refill(&self) {
        let sec = self.epoch.elapsed().as_secs() as u32;
        let last = self.last_refill.load(Ordering::Relaxed);
        if sec > last
            && self
                .last_refill
                .compare_exchange(last, sec, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.add(self.per_sec * i64::from(sec - last));
        }
    }

    fn deposit(&self) {
        self.refill();
        self.add(self.deposit);
    }

    fn withdraw(&self) -> bool {
        self.refill();
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= 1000).then_some(t - 1000)
            })
            .is_ok()
    }
}

/// Whether a response status counts as a failure for the breaker.
pub fn outcome_of_status(status: http::StatusCode) -> Outcome {
    match status.as_u16() {
        502..=504 => Outcome::Failure,
        _ => Outcome::Success,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn upstream(yaml: &str) -> Upstream {
        let cfg = parse_yaml(yaml).expect("yaml");
        Upstream::build(&cfg.upstreams[0], &Metrics::new()).expect("builds")
    }

    #[tokio::test]
    async fn round_robin_cycles_through_targets() {
        let u = upstream("upstreams: [{ name: u, targets: [a:1, b:1, c:1] }]");
        let picks: Vec<usize> = (0..6)
            .map(|_| u.pick(&HeaderMap::new(), &[]).expect("pick").index)
            .collect();
        assert_eq!(
            picks[0..3]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3
        );
        assert_eq!(picks[0..3], picks[3..6]);
    }

    #[tokio::test]
    async fn least_requests_prefers_idle_targets() {
        let u = upstream("upstreams: [{ name: u, targets: [a:1, b:1], balance: least_requests }]");
        let first = u.pick(&HeaderMap::new(), &[]).expect("pick");
        for _ in 0..5 {
            let other = u.pick(&HeaderMap::new(), &[]).expect("pick");
            assert_ne!(other.index, first.index);
        }
    }

    #[tokio::test]
    async fn hash_is_sticky_and_skips_excluded_targets() {
        let u = upstream(
            "upstreams: [{ name: u, targets: [a:1, b:1, c:1], balance: hash, hash_header: x-user }]",
        );
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().expect("v"));
        let first = u.pick(&h, &[]).expect("pick").index;
        for _ in 0..5 {
            assert_eq!(u.pick(&h, &[]).expect("pick").index, first);
        }
        assert_ne!(u.pick(&h, &[first]).expect("pick").index, first);
    }

    #[tokio::test]
    async fn open_circuits_and_unhealthy_targets_are_skipped() {
        let u = upstream(
            "upstreams: [{ name: u, targets: [a:1, b:1], circuit_breaker: { failures: 1, cooldown: 60s } }]",
        );
        let lease = u.pick(&HeaderMap::new(), &[]).expect("pick");
        let bad = lease.index;
        lease.finish(Outcome::Failure);
        for _ in 0..4 {
            assert_ne!(u.pick(&HeaderMap::new(), &[]).expect("pick").index, bad);
        }
        let other = 1 - bad;
        u.targets[other].set_healthy(false);
        assert_eq!(
            u.pick(&HeaderMap::new(), &[]).expect_err("open + down"),
            PickError::CircuitOpen
        );
        u.targets[bad].set_healthy(false);
        assert_eq!(
            u.pick(&HeaderMap::new(), &[]).expect_err("all down"),
            PickError::NoHealthyTarget
        );
        u.targets[bad].set_healthy(true);
        u.targets[other].set_healthy(true);
        let l = u.pick(&HeaderMap::new(), &[]).expect("pick");
        l.finish(Outcome::Failure);
        assert_eq!(
            u.pick(&HeaderMap::new(), &[]).expect_err("all open"),
            PickError::CircuitOpen
        );
    }

    #[tokio::test]
    async fn retry_budget_caps_retries() {
        let b = RetryBudget::new(0.1, 0);
        assert!(b.withdraw(), "starts with one token");
        assert!(!b.withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
