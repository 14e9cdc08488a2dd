//! Circuit breaker: a sans-io state machine. The clock is passed in (`now`), so it is tested
//! without sockets or sleeps; the proxy wraps one per target in a mutex.
//!
//! ```text
//!  Closed ──N consecutive failures──▶ Open ──cooldown elapsed──▶ HalfOpen (one probe)
//!    ▲                                  ▲                            │
//!    └────────── probe succeeds ────────┼──────── probe fails ───────┘
//! ```
//! Invariants: while Open nothing is admitted; in HalfOpen exactly one request (the probe) is in
//! flight; a probe that is abandoned (never recorded) frees its slot for the next probe.

use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state, as reported in metrics (`0` closed, `1` open, `2` half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; consecutive failures are counted.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// One probe request decides whether to close or re-open.
    HalfOpen,
}

impl BreakerState {
    /// Numeric value for the `ferrox_breaker_state` gauge.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// What the breaker says about a new request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it (circuit closed).
    Allowed,
    /// Send it as the single half-open probe; its outcome decides the circuit.
    Probe,
    /// Do not send it: the circuit is open (or a probe is already in flight).
    Rejected,
}

/// The result of a request, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered acceptably.
    Success,
    /// Connect error, timeout or 502/503/504.
    Failure,
}

/// The state machine.
#[derive(Clone, Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Inner,
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

impl Breaker {
    /// A closed breaker opening after `threshold` consecutive failures for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Inner::Closed { failures: 0 },
        }
    }

    /// The state at `now` (an elapsed cool-down reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Ask to send a request at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            Inner::Closed { .. } => Admission::Allowed,
            Inner::Open { until } if now < until => Admission::Rejected,
            Inner::Open { .. }
            | Inner::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = Inner::HalfOpen {
                    probe_in_flight: true,
                };
                Admission::Probe
            }
            Inner::HalfOpen {
                probe_in_flight: true,
            } => Admission::Rejected,
        }
    }

    /// Record the outcome of a request admitted as `admission`.
    pub fn record(&mut self, now: Instant, admission: Admission, outcome: Outcome) {
        match (self.state, admission, outcome) {
            (_, Admission::Rejected, _) => {}
            (Inner::Closed { .. }, Admission::Allowed, Outcome::Success) => {
                self.state = Inner::Closed { failures: 0 };
            }
            (Inner::Closed { failures }, Admission::Allowed, Outcome::Failure) => {
                let failures = failures + 1;
                self.state = if failures >= self.threshold {
                    Inner::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    Inner::Closed { failures }
                };
            }
            (Inner::HalfOpen { .. }, Admission::Probe, Outcome::Success) => {
                self.state = Inner::Closed { failures: 0 };
            }
            (Inner::HalfOpen { .. }, Admission::Probe, Outcome::Failure) => {
                self.state = Inner::Open {
                    until: now + self.cooldown,
                };
            }
            // A request admitted while closed that finishes after the circuit moved on
            // (e.g. it was slow and others opened the circuit) does not change the state.
            _ => {}
        }
    }

    /// The probe was abandoned without an outcome (client went away): let another probe go.
    pub fn release(&mut self, admission: Admission) {
        if admission == Admission::Probe
            && matches!(
                self.state,
                Inner::HalfOpen {
                    probe_in_flight: true
                }
            )
        {
            self.state = Inner::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn open_breaker(now: Instant) -> Breaker {
        let mut b = Breaker::new(5, COOLDOWN);
        for _ in 0..5 {
            let a = b.admit(now);
            assert_eq!(a, Admission::Allowed);
            b.record(now, a, Outcome::Failure);
        }
        b
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let now = Instant::now();
        let mut b = Breaker::new(5, COOLDOWN);
        for _ in 0..4 {
            let a = b.admit(now);
            b.record(now, a, Outcome::Failure);
        }
        let a = b.admit(now);
        b.record(now, a, Outcome::Success); // resets the count
        for _ in 0..4 {
            let a = b.admit(now);
            b.record(now, a, Outcome::Failure);
        }
        assert_eq!(b.state(now), BreakerState::Closed);
        let a = b.admit(now);
        b.record(now, a, Outcome::Failure);
        assert_eq!(b.state(now), BreakerState::Open);
        assert_eq!(b.admit(now), Admission::Rejected);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_cooldown_with_exactly_one_probe() {
        let start = Instant::now();
        let mut b = open_breaker(start);
        tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
        assert_eq!(b.admit(Instant::now()), Admission::Rejected);
        tokio::time::advance(Duration::from_millis(1)).await;
        let now = Instant::now();
        assert_eq!(b.state(now), BreakerState::HalfOpen);
        assert_eq!(b.admit(now), Admission::Probe);
        for _ in 0..10 {
            assert_eq!(
                b.admit(now),
                Admission::Rejected,
                "only one probe in flight"
            );
        }
        b.record(now, Admission::Probe, Outcome::Success);
        assert_eq!(b.state(now), BreakerState::Closed);
        assert_eq!(b.admit(now), Admission::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_full_cooldown() {
        let mut b = open_breaker(Instant::now());
        tokio::time::advance(COOLDOWN).await;
        let now = Instant::now();
        assert_eq!(b.admit(now), Admission::Probe);
        b.record(now, Admission::Probe, Outcome::Failure);
        assert_eq!(b.state(now), BreakerState::Open);
        tokio::time::advance(COOLDOWN - Duration::from_secs(1)).await;
        assert_eq!(b.admit(Instant::now()), Admission::Rejected);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(Instant::now()), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_probe_frees_the_slot() {
        let mut b = open_breaker(Instant::now());
        tokio::time::advance(COOLDOWN).await;
        let now = Instant::now();
        assert_eq!(b.admit(now), Admission::Probe);
        b.release(Admission::Probe);
        assert_eq!(b.admit(now), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_do_not_disturb_an_open_circuit() {
        let now = Instant::now();
        let mut b = Breaker::new(1, COOLDOWN);
        let slow = b.admit(now);
        let a = b.admit(now);
        b.record(now, a, Outcome::Failure);
        assert_eq!(b.state(now), BreakerState::Open);
        b.record(now, slow, Outcome::Success);
        assert_eq!(b.state(now), BreakerState::Open);
    }
}
