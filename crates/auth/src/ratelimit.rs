//! Login rate limiting: failures counted per key (use both `user:<name>` and `addr:<ip>`)
//! lock the key with exponential backoff.
//!
//! Rules, with [`LimiterConfig::default`] values: [`max_failures`](LimiterConfig) (5)
//! failures within [`window_ms`](LimiterConfig) (15 min) lock the key for
//! `base_lockout_ms · 2^k` (1 min, 2, 4, … capped at 1 h), `k` being how many times the key was
//! locked before. Locking restarts the failure count. The window is fixed, opened by the first failure
//! in it. A success resets the key entirely; so does a quiet period (no failure for a whole
//! window, and any lock over), after which the entry is dropped. Failures reported while the key is locked are not counted (the caller should
//! not have tried), so a locked key is not locked for longer.
//!
//! Memory: at most [`max_entries`](LimiterConfig) keys (default 100 000, a few MB). When a
//! new key arrives at the cap, expired entries are dropped first; if none are, the entry
//! seen least recently that is not locked goes (a locked one only if all are locked). Both are
//! O(n) scans, paid only at the cap and small next to one Argon2 verification. Not
//! thread-safe by itself: the server keeps it behind a mutex.

use std::collections::HashMap;

/// How long to wait before trying again, in milliseconds (for a `Retry-After` header,
/// round up to seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfterMs(pub i64);

impl std::fmt::Display for RetryAfterMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = (self.0 + 999) / 1000;
        write!(f, "too many failed logins: try again in {secs} s")
    }
}

/// Tuning of a [`LoginLimiter`]; see the module docs for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures within the window that lock the key (default 5).
    pub max_failures: u32,
    /// The window failures are counted in (default 15 min).
    pub window_ms: i64,
    /// The first lockout (default 1 min); each further one doubles.
    pub base_lockout_ms: i64,
    /// The longest lockout (default 1 h).
    pub max_lockout_ms: i64,
    /// Most keys kept at once (default 100 000).
    pub max_entries: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            max_failures: 5,
            window_ms: 15 * 60_000,
            base_lockout_ms: 60_000,
            max_lockout_ms: 60 * 60_000,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since `window_start` (a fixed window opened by the first failure; reset on
    /// lock).
    failures: u32,
    window_start: i64,
    /// Lockouts so far, for the backoff exponent.
    lockouts: u32,
    locked_until: i64,
    /// Time of the last failure.
    last_seen: i64,
}

impl Entry {
    fn expired(&self, now_ms: i64, window_ms: i64) -> bool {
        now_ms
            >= self
                .locked_until
                .max(self.last_seen)
                .saturating_add(window_ms)
    }
}

/// Counts failed logins per key and locks keys; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct LoginLimiter {
    config: LimiterConfig,
    entries: HashMap<String, Entry>,
}

impl LoginLimiter {
    /// A limiter with the given tuning.
    pub fn new(config: LimiterConfig) -> Self {
        LoginLimiter {
            config,
            entries: HashMap::new(),
        }
    }

    /// `Ok(())` if `key` may try to log in now, else how long it must wait. Check every key
    /// of a request (user and IP) before verifying the password.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), RetryAfterMs> {
        match self.entries.get(key) {
            Some(e) if e.locked_until > now_ms => Err(RetryAfterMs(e.locked_until - now_ms)),
            _ => Ok(()),
        }
    }

    /// Records a failed login for `key`; returns the lockout if this failure started one.
    pub fn record_failure(&mut self, key: &str, now_ms: i64) -> Option<RetryAfterMs> {
        let cfg = self.config;
        if let Some(e) = self.entries.get(key)
            && e.expired(now_ms, cfg.window_ms)
        {
            self.entries.remove(key);
        }
        if !self.entries.contains_key(key) {
            self.make_room(now_ms);
        }
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            window_start: now_ms,
            lockouts: 0,
            locked_until: i64::MIN,
            last_seen: now_ms,
        });
        e.last_seen = now_ms;
        if e.locked_until > now_ms {
            return None;
        }
        if now_ms.saturating_sub(e.window_start) >= cfg.window_ms {
            e.failures = 0;
            e.window_start = now_ms;
        }
        e.failures += 1;
        if e.failures < cfg.max_failures {
            return None;
        }
        let lockout = cfg
            .base_lockout_ms
            .saturating_mul(1i64 << e.lockouts.min(40))
            .min(cfg.max_lockout_ms);
        e.lockouts = e.lockouts.saturating_add(1);
        e.failures = 0;
        e.window_start = now_ms;
        e.locked_until = now_ms.saturating_add(lockout);
        Some(RetryAfterMs(lockout))
    }

    /// Records a successful login for `key`: forgets its failures and backoff.
    pub fn record_success(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every expired entry (optional housekeeping, e.g. once a minute).
    pub fn sweep(&mut self, now_ms: i64) {
        let window = self.config.window_ms;
        self.entries.retain(|_, e| !e.expired(now_ms, window));
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, now_ms: i64) {
        if self.entries.len() < self.config.max_entries.max(1) {
            return;
        }
        self.sweep(now_ms);
        if self.entries.len() < self.config.max_entries.max(1) {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.locked_until > now_ms, e.last_seen))
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn fail_n(l: &mut LoginLimiter, key: &str, n: u32, now: i64) -> Option<RetryAfterMs> {
        (0..n).map(|_| l.record_failure(key, now)).last().flatten()
    }

    #[test]
    fn lockout_after_five_failures_in_window() {
        let mut l = LoginLimiter::default();
        assert_eq!(fail_n(&mut l, "user:alice", 4, 0), None);
        assert_eq!(l.check("user:alice", 0), Ok(()));
        assert_eq!(l.record_failure("user:alice", 10), Some(RetryAfterMs(MIN)));
        assert_eq!(l.check("user:alice", 10), Err(RetryAfterMs(MIN)));
        assert_eq!(l.check("user:alice", 10 + MIN - 1), Err(RetryAfterMs(1)));
        assert_eq!(l.check("user:alice", 10 + MIN), Ok(()));
        assert_eq!(l.check("ip:1.2.3.4", 10), Ok(()), "keys are independent");
        assert!(RetryAfterMs(1).to_string().contains("try again in 1 s"));
    }

    #[test]
    fn failures_spread_beyond_window_do_not_lock() {
        let mut l = LoginLimiter::default();
        for i in 0..20 {
            assert_eq!(l.record_failure("k", i * 4 * MIN), None, "failure {i}");
        }
        assert_eq!(l.check("k", 80 * MIN), Ok(()));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut l = LoginLimiter::default();
        let mut now = 0;
        let mut seen = vec![];
        for _ in 0..9 {
            let lock = fail_n(&mut l, "k", 5, now).map(|r| r.0);
            seen.push(lock.unwrap_or(0) / MIN);
            now += lock.unwrap_or(0);
            // Failures while locked do not count or extend the lock.
            assert_eq!(l.record_failure("k", now - 1), None);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn success_and_quiet_period_reset() {
        let mut l = LoginLimiter::default();
        fail_n(&mut l, "k", 5, 0);
        l.record_success("k");
        assert_eq!(l.check("k", 0), Ok(()));
        assert_eq!(
            fail_n(&mut l, "k", 5, 0),
            Some(RetryAfterMs(MIN)),
            "backoff reset"
        );
        // Lock ends at 1 min; a window later the entry is forgotten, backoff too.
        let later = MIN + 15 * MIN;
        assert_eq!(fail_n(&mut l, "k", 5, later), Some(RetryAfterMs(MIN)));
        fail_n(&mut l, "k", 4, later + MIN);
        l.record_success("k");
        assert!(l.is_empty());
    }

    #[test]
    fn memory_is_capped() {
        let cfg = LimiterConfig {
            max_entries: 100,
            ..LimiterConfig::default()
        };
        let mut l = LoginLimiter::new(cfg);
        fail_n(&mut l, "user:victim", 5, 0); // locked until 1 min
        for i in 0..1000 {
            l.record_failure(&format!("ip:10.0.{}.{}", i / 256, i % 256), 1 + i);
            assert!(l.len() <= 100);
        }
        assert!(
            l.check("user:victim", 1000).is_err(),
            "locked entries evicted last"
        );
        // Everything expires after the window: sweeping empties the map.
        l.sweep(MIN + 16 * MIN + 1000);
        assert!(l.is_empty());
    }
}
