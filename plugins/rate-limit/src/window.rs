//! What a counter update means for one limit: exceeded or not, how much is left, and when the
//! next request would be admitted. Pure arithmetic, no host calls.

use ferrox_sdk::counters::Sliding;

/// A counter's state after this request's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hit {
    /// Fixed window: the count including this request, and milliseconds until the window ends.
    Fixed {
        /// Count in the current window.
        count: i64,
        /// Milliseconds until the window resets.
        reset_ms: u64,
    },
    /// Sliding window: the two fixed windows it is estimated from.
    Sliding(Sliding),
}

impl Hit {
    /// Whether the request that made this update goes over `requests` per `window_ms`.
    pub fn exceeds(&self, requests: u64, window_ms: u64) -> bool {
        match self {
            Self::Fixed { count, .. } => *count > requests as i64,
            Self::Sliding(s) => s.estimate(window_ms) > requests as f64,
        }
    }

    /// The state as if the request had not been counted (it was refused and taken back).
    #[must_use]
    pub fn without_this_request(self) -> Self {
        match self {
            Self::Fixed { count, reset_ms } => Self::Fixed {
                count: count - 1,
                reset_ms,
            },
            Self::Sliding(s) => Self::Sliding(Sliding {
                current: s.current - 1,
                ..s
            }),
        }
    }

    /// Milliseconds until the current fixed window ends.
    pub fn reset_ms(&self) -> u64 {
        match self {
            Self::Fixed { reset_ms, .. } => *reset_ms,
            Self::Sliding(s) => s.reset_ms,
        }
    }

    /// How this state stands against `requests` per `window_ms`.
    pub fn standing(&self, requests: u64, window_ms: u64) -> Standing {
        let remaining = match self {
            Self::Fixed { count, .. } => (requests as i64).saturating_sub(*count).max(0) as u64,
            Self::Sliding(s) => (requests as f64 - s.estimate(window_ms)).floor().max(0.0) as u64,
        };
        let wait_ms = if remaining > 0 {
            0
        } else {
            match self {
                Self::Fixed { reset_ms, .. } => *reset_ms,
                Self::Sliding(s) => sliding_wait_ms(s, requests, window_ms),
            }
        };
        let until_ms = if remaining > 0 {
            self.reset_ms()
        } else {
            wait_ms
        };
        Standing {
            remaining,
            wait_ms,
            reset_s: until_ms.div_ceil(1000),
        }
    }
}

/// One limit's numbers for the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests still admitted now (`r`).
    pub remaining: u64,
    /// Milliseconds until one more request would be admitted (0 when `remaining > 0`).
    pub wait_ms: u64,
    /// Seconds for `t`: until the window resets, or, with nothing left, until one more request
    /// would be admitted (the same as `Retry-After`).
    pub reset_s: u64,
}

/// Milliseconds from now until the sliding estimate leaves room for one more request, assuming
/// no other request arrives meanwhile.
///
/// With `p` the previous window's count, `c` the current one, `e` the time elapsed in the
/// current window and `W` the window, a request at `e + d` is admitted when
/// `p·(W − e − d)/W + c + 1 ≤ N` (within this window) or, once the window has rolled over,
/// `c·(W − e')/W + 1 ≤ N` with `e' = e + d − W`.
fn sliding_wait_ms(s: &Sliding, requests: u64, window_ms: u64) -> u64 {
    let n = requests as f64;
    let w = window_ms.max(1) as f64;
    let e = s.elapsed_ms.min(window_ms) as f64;
    let (p, c) = (s.previous.max(0) as f64, s.current.max(0) as f64);
    let left = w - e;
    // Room the previous window's weight must shrink to within the current window.
    let budget = n - c - 1.0;
    let d = if budget >= 0.0 {
        if p * left / w <= budget || p == 0.0 {
            0.0
        } else {
            left - budget * w / p
        }
    } else {
        // The current window alone is full: wait for it to become the previous one and for its
        // weight to shrink enough (a count of zero would already have left room).
        let budget = n - 1.0;
        left + (w - budget * w / c).max(0.0)
    };
    (d.ceil().max(0.0) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliding(current: i64, previous: i64, elapsed_ms: u64, window_ms: u64) -> Hit {
        Hit::Sliding(Sliding {
            current,
            previous,
            elapsed_ms,
            reset_ms: window_ms - elapsed_ms,
        })
    }

    #[test]
    fn fixed_standing() {
        let hit = Hit::Fixed {
            count: 2,
            reset_ms: 1_500,
        };
        assert!(!hit.exceeds(3, 60_000));
        assert_eq!(
            hit.standing(3, 60_000),
            Standing {
                remaining: 1,
                wait_ms: 0,
                reset_s: 2
            }
        );
        let full = Hit::Fixed {
            count: 4,
            reset_ms: 30_001,
        };
        assert!(full.exceeds(3, 60_000));
        let back = full.without_this_request();
        assert_eq!(
            back,
            Hit::Fixed {
                count: 3,
                reset_ms: 30_001
            }
        );
        assert_eq!(
            back.standing(3, 60_000),
            Standing {
                remaining: 0,
                wait_ms: 30_001,
                reset_s: 31
            }
        );
    }

    #[test]
    fn sliding_estimate_and_wait() {
        // 10 per second; the previous second was full, a quarter of this one has passed:
        // 10 × 0.75 + 2 = 9.5 → this request is admitted, nothing more is.
        let hit = sliding(2, 10, 250, 1_000);
        assert!(!hit.exceeds(10, 1_000));
        let s = hit.standing(10, 1_000);
        assert_eq!(s.remaining, 0);
        // One more needs 10 × (750 − d)/1000 + 3 ≤ 10 → d ≥ 50 ms.
        assert_eq!(s.wait_ms, 50);
        assert_eq!(s.reset_s, 1);
        // A third request would make 10.5.
        assert!(sliding(3, 10, 250, 1_000).exceeds(10, 1_000));

        // Room left: floor(10 − (4 × 0.5 + 3)) = 5.
        let s = sliding(3, 4, 500, 1_000).standing(10, 1_000);
        assert_eq!(
            s,
            Standing {
                remaining: 5,
                wait_ms: 0,
                reset_s: 1
            }
        );

        // The current window alone is over the limit: wait until it is the previous one and
        // weighs little enough: 12 × (1000 − e')/1000 + 1 ≤ 10 → e' ≥ 250; 600 + 250.
        let s = sliding(12, 0, 400, 1_000).standing(10, 1_000);
        assert_eq!((s.remaining, s.wait_ms, s.reset_s), (0, 850, 1));

        // A limit of one: the previous request must have slid out entirely.
        let s = sliding(1, 0, 100, 60_000).standing(1, 60_000);
        assert_eq!((s.remaining, s.wait_ms, s.reset_s), (0, 119_900, 120));
    }
}
