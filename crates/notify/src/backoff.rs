//! Retry spacing for failed deliveries. Pure: the server owns the retry loop, the clock
//! and the random source, and asks this type how long to wait.

use serde::{Deserialize, Serialize};

/// Exponential backoff with a cap and an attempt limit.
///
/// The delay after the `k`-th failed attempt (1-based) is
/// `min(max_ms, initial_ms * factor^(k-1))`, then jittered into `[d/2, d]` by the caller's
/// jitter value (so retries of many notifications do not all fire at once, yet never come
/// faster than half the planned delay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt, in milliseconds.
    pub initial_ms: u64,
    /// Growth per attempt; values below 1 (or not finite) count as 1.
    pub factor: f64,
    /// Upper bound for any delay, in milliseconds.
    pub max_ms: u64,
    /// Total attempts including the first; after this many failures, give up.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 30 s, 60 s, 2 min, 4 min, ... capped at 15 min, 8 attempts in all (about 40 min).
    fn default() -> Self {
        Backoff {
            initial_ms: 30_000,
            factor: 2.0,
            max_ms: 15 * 60_000,
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// How long to wait after attempt number `attempt` (1-based; 0 counts as 1) failed,
    /// or `None` when that was the last allowed attempt. `jitter` in `[0, 1]` (clamped;
    /// NaN counts as 1) picks the point in `[d/2, d]`: 0 gives `d/2`, 1 gives `d`.
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Option<u64> {
        let attempt = attempt.max(1);
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let exp = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        // f64 keeps this overflow-free; `as u64` saturates, so huge values become u64::MAX
        // before the cap applies.
        let planned = (self.initial_ms as f64 * factor.powi(exp)).min(self.max_ms as f64);
        let full = (planned as u64).min(self.max_ms);
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let half = full / 2;
        Some(
            half.saturating_add(((full - half) as f64 * jitter) as u64)
                .min(full),
        )
    }

    /// The schedule with no jitter (`jitter = 1`): the delays between attempts, at most
    /// the first 1000 (for display and docs).
    pub fn schedule(&self) -> Vec<u64> {
        (1..self.max_attempts)
            .take(1000)
            .map_while(|a| self.delay_after(a, 1.0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_gives_up() {
        let b = Backoff {
            initial_ms: 1000,
            factor: 2.0,
            max_ms: 10_000,
            max_attempts: 6,
        };
        assert_eq!(b.schedule(), vec![1000, 2000, 4000, 8000, 10_000]);
        assert_eq!(b.delay_after(5, 1.0), Some(10_000));
        assert_eq!(b.delay_after(6, 1.0), None);
        assert_eq!(b.delay_after(0, 1.0), b.delay_after(1, 1.0));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let b = Backoff {
            initial_ms: 1000,
            factor: 3.0,
            max_ms: 60_000,
            max_attempts: 10,
        };
        assert_eq!(b.delay_after(2, 0.0), Some(1500));
        assert_eq!(b.delay_after(2, 0.5), Some(2250));
        assert_eq!(b.delay_after(2, 1.0), Some(3000));
        assert_eq!(b.delay_after(2, 7.0), Some(3000));
        assert_eq!(b.delay_after(2, -1.0), Some(1500));
        assert_eq!(b.delay_after(2, f64::NAN), Some(3000));
    }

    #[test]
    fn odd_settings_do_not_overflow_or_shrink() {
        let b = Backoff {
            initial_ms: u64::MAX,
            factor: f64::INFINITY,
            max_ms: u64::MAX,
            max_attempts: u32::MAX,
        };
        assert_eq!(b.delay_after(u32::MAX - 1, 1.0), Some(u64::MAX));
        let shrinking = Backoff {
            initial_ms: 100,
            factor: 0.1,
            max_ms: 1000,
            max_attempts: 4,
        };
        assert_eq!(shrinking.schedule(), vec![100, 100, 100]);
        let single = Backoff {
            max_attempts: 1,
            ..Backoff::default()
        };
        assert_eq!(single.delay_after(1, 0.5), None);
        assert_eq!(Backoff::default().schedule().len(), 7);
    }
}
