//! A pure token-bucket rate limiter keyed by routing key, with bounded memory.
//!
//! Each key has a bucket of `burst` tokens that refills at `per_minute` tokens per minute;
//! an event spends one token. Time is passed in, so the limiter is deterministic and the
//! server decides where the clock comes from. Arithmetic is in integers: one token is
//! 60 000 units and a bucket gains `per_minute` units per elapsed millisecond, so there is
//! no rounding drift.
//!
//! Memory is bounded by `max_keys`. When a new key arrives and the table is full, buckets
//! that have refilled completely are dropped first (a full bucket behaves exactly like a
//! missing one, so nothing is lost); if none has, the least recently used bucket is
//! evicted, which gives that key a fresh burst.

use std::collections::HashMap;
use std::num::NonZeroU32;

/// Units in one token.
const UNITS_PER_TOKEN: u64 = 60_000;

/// Default bound on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// How long to wait before the next event from a key would be allowed, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryAfterMs(pub u64);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    last_ms: i64,
}

/// A token bucket per key. Not thread-safe by itself: wrap it in a mutex if shared.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: u64,
    capacity: u64,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` events per minute per key on average, with bursts
    /// of up to `burst` events, tracking at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        RateLimiter {
            per_minute: u64::from(per_minute.get()),
            capacity: u64::from(burst.get()) * UNITS_PER_TOKEN,
            max_keys: DEFAULT_MAX_KEYS,
            buckets: HashMap::new(),
        }
    }

    /// Changes the bound on tracked keys (at least one).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// How many keys are tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Spends one token of `key` at `now_ms`, or says how long to wait.
    ///
    /// A clock that goes backwards is treated as standing still.
    pub fn check(&mut self, key: &str, now_ms: i64) -> Result<(), RetryAfterMs> {
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max_keys {
                self.evict(now_ms);
            }
            self.buckets.insert(
                key.to_owned(),
                Bucket {
                    units: self.capacity,
                    last_ms: now_ms,
                },
            );
        }
        let (per_minute, capacity) = (self.per_minute, self.capacity);
        let Some(bucket) = self.buckets.get_mut(key) else {
            return Ok(());
        };
        refill(bucket, now_ms, per_minute, capacity);
        if bucket.units >= UNITS_PER_TOKEN {
            bucket.units -= UNITS_PER_TOKEN;
            Ok(())
        } else {
            let missing = UNITS_PER_TOKEN - bucket.units;
            Err(RetryAfterMs(missing.div_ceil(per_minute)))
        }
    }

    fn evict(&mut self, now_ms: i64) {
        let (per_minute, capacity) = (self.per_minute, self.capacity);
        self.buckets.retain(|_, bucket| {
            let mut probe = *bucket;
            refill(&mut probe, now_ms, per_minute, capacity);
            probe.units < capacity
        });
        if self.buckets.len() >= self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, bucket)| bucket.last_ms)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.buckets.remove(&oldest);
            }
        }
    }
}

fn refill(bucket: &mut Bucket, now_ms: i64, per_minute: u64, capacity: u64) {
    if now_ms <= bucket.last_ms {
        return;
    }
    let elapsed = u64::try_from(now_ms.saturating_sub(bucket.last_ms)).unwrap_or(u64::MAX);
    let gained = elapsed.saturating_mul(per_minute);
    bucket.units = bucket.units.saturating_add(gained).min(capacity);
    bucket.last_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn allows_a_burst_then_throttles() {
        let mut limiter = RateLimiter::new(nz(60), nz(3));
        for _ in 0..3 {
            assert_eq!(limiter.check("k", 0), Ok(()));
        }
        // 60 per minute = one token per second.
        assert_eq!(limiter.check("k", 0), Err(RetryAfterMs(1_000)));
        assert_eq!(limiter.check("k", 400), Err(RetryAfterMs(600)));
        assert_eq!(limiter.check("k", 1_000), Ok(()));
        assert!(limiter.check("k", 1_000).is_err());
    }

    #[test]
    fn keys_are_independent() {
        let mut limiter = RateLimiter::new(nz(1), nz(1));
        assert!(limiter.check("a", 0).is_ok());
        assert!(limiter.check("a", 0).is_err());
        assert!(limiter.check("b", 0).is_ok());
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let mut limiter = RateLimiter::new(nz(120), nz(2));
        assert!(limiter.check("k", 0).is_ok());
        assert!(limiter.check("k", 0).is_ok());
        // An hour later only `burst` tokens are available, not 120 * 60.
        let later = 3_600_000;
        assert!(limiter.check("k", later).is_ok());
        assert!(limiter.check("k", later).is_ok());
        assert_eq!(limiter.check("k", later), Err(RetryAfterMs(500)));
    }

    #[test]
    fn clock_going_backwards_does_not_mint_tokens() {
        let mut limiter = RateLimiter::new(nz(60), nz(1));
        assert!(limiter.check("k", 10_000).is_ok());
        assert!(limiter.check("k", 0).is_err());
        assert!(limiter.check("k", 10_500).is_err());
        assert!(limiter.check("k", 11_000).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let mut limiter = RateLimiter::new(nz(1), nz(1)).with_max_keys(4);
        for i in 0..100 {
            let _ = limiter.check(&format!("key-{i}"), i);
            assert!(limiter.len() <= 4);
        }
        assert!(!limiter.is_empty());
    }

    #[test]
    fn idle_full_buckets_are_evicted_before_busy_ones() {
        let mut limiter = RateLimiter::new(nz(60), nz(1)).with_max_keys(2);
        assert!(limiter.check("idle", 0).is_ok());
        assert!(limiter.check("busy", 59_500).is_ok());
        // At 60 s "idle" has refilled and "busy" (half a token) has not: "idle" goes.
        assert!(limiter.check("new", 60_000).is_ok());
        assert_eq!(limiter.len(), 2);
        assert!(limiter.check("busy", 60_000).is_err());
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let mut limiter = RateLimiter::new(nz(u32::MAX), nz(u32::MAX));
        assert!(limiter.check("k", i64::MIN).is_ok());
        assert!(limiter.check("k", i64::MAX).is_ok());
        assert!(limiter.check("k", 0).is_ok());
    }
}
