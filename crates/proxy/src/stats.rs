//! Per-version traffic counters: lock-free atomics on the hot path, serialisable snapshots
//! (`Stats`, `VersionStats`) for the control plane, which computes windows by differencing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets in milliseconds; a last bucket catches everything else.
pub const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
const NBUCKETS: usize = BUCKETS_MS.len() + 1;
/// [`BUCKETS_MS`] in microseconds, for the hot path (integer compare).
const BUCKETS_US: [u64; BUCKETS_MS.len()] = {
    let mut us = [0; BUCKETS_MS.len()];
    let mut i = 0;
    while i < us.len() {
        us[i] = (BUCKETS_MS[i] * 1000.0) as u64;
        i += 1;
    }
    us
};

/// Live counters of one version. Shared by every table that names the version.
#[derive(Default, Debug)]
pub(crate) struct VersionCounters {
    requests: AtomicU64,
    class: [AtomicU64; 4],
    connect_failures: AtomicU64,
    retries: AtomicU64,
    buckets: [AtomicU64; NBUCKETS],
    latency_sum_us: AtomicU64,
}

impl VersionCounters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a response with `status` whose headers took `latency`.
    pub(crate) fn response(&self, status: u16, latency: Duration) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 0, // 1xx other than 101 never reaches here; count 101 as a success
        };
        if let Some(c) = self.class.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(NBUCKETS - 1);
        if let Some(b) = self.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> VersionStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VersionStats {
            requests: get(&self.requests),
            responses_2xx: get(&self.class[0]),
            responses_3xx: get(&self.class[1]),
            responses_4xx: get(&self.class[2]),
            responses_5xx: get(&self.class[3]),
            connect_failures: get(&self.connect_failures),
            retries: get(&self.retries),
            latency_buckets: self.buckets.iter().map(get).collect(),
            latency_sum_ms: get(&self.latency_sum_us) as f64 / 1000.0,
        }
    }
}

/// Cumulative counters of one version since the proxy started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// Requests routed to this version (a retried request counts once, for the first version).
    pub requests: u64,
    /// Responses with a 2xx status (and 101 upgrades).
    pub responses_2xx: u64,
    /// Responses with a 3xx status.
    pub responses_3xx: u64,
    /// Responses with a 4xx status.
    pub responses_4xx: u64,
    /// Responses with a 5xx status, including the proxy's own 502s for this version.
    pub responses_5xx: u64,
    /// Attempts whose connection to a backend could not be made or failed before the request
    /// was sent.
    pub connect_failures: u64,
    /// Attempts repeated on another connection or backend after such a failure.
    pub retries: u64,
    /// Counts of the time to response headers per bucket; bucket `i` holds latencies up to
    /// `BUCKETS_MS[i]` ms, the last one everything slower.
    pub latency_buckets: Vec<u64>,
    /// Sum of all recorded latencies in milliseconds.
    pub latency_sum_ms: f64,
}

impl VersionStats {
    /// Responses of every class.
    pub fn responses(&self) -> u64 {
        self.responses_2xx + self.responses_3xx + self.responses_4xx + self.responses_5xx
    }

    /// The `q` quantile (0..=1) of the time to response headers in ms, interpolated linearly
    /// inside its bucket; the open last bucket reports its lower bound. `None` without data.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, count) in self.latency_buckets.iter().enumerate() {
            let upto = below + count;
            if *count > 0 && upto as f64 >= rank {
                let lower = if i == 0 {
                    0.0
                } else {
                    BUCKETS_MS.get(i - 1).copied().unwrap_or(0.0)
                };
                let Some(upper) = BUCKETS_MS.get(i).copied() else {
                    return Some(lower);
                };
                let frac = ((rank - below as f64) / *count as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * frac);
            }
            below = upto;
        }
        BUCKETS_MS.last().copied()
    }

    /// Share of responses that were 5xx, or `None` when there were no responses.
    pub fn error_rate(&self) -> Option<f64> {
        match self.responses() {
            0 => None,
            n => Some(self.responses_5xx as f64 / n as f64),
        }
    }

    /// The counts accumulated since the snapshot `earlier` (saturating at zero).
    pub fn since(&self, earlier: &VersionStats) -> VersionStats {
        VersionStats {
            requests: self.requests.saturating_sub(earlier.requests),
            responses_2xx: self.responses_2xx.saturating_sub(earlier.responses_2xx),
            responses_3xx: self.responses_3xx.saturating_sub(earlier.responses_3xx),
            responses_4xx: self.responses_4xx.saturating_sub(earlier.responses_4xx),
            responses_5xx: self.responses_5xx.saturating_sub(earlier.responses_5xx),
            connect_failures: self
                .connect_failures
                .saturating_sub(earlier.connect_failures),
            retries: self.retries.saturating_sub(earlier.retries),
            latency_buckets: self
                .latency_buckets
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    c.saturating_sub(earlier.latency_buckets.get(i).copied().unwrap_or(0))
                })
                .collect(),
            latency_sum_ms: (self.latency_sum_ms - earlier.latency_sum_ms).max(0.0),
        }
    }
}

/// Counters of one listener since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per version, keyed by the group's `version`; versions stay after they leave the table.
    pub versions: BTreeMap<String, VersionStats>,
    /// Requests answered 502 because no group could take them (no backends at all).
    pub unrouted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(latencies_ms: &[u64]) -> VersionStats {
        let c = VersionCounters::default();
        for ms in latencies_ms {
            c.request();
            c.response(200, Duration::from_millis(*ms));
        }
        c.snapshot()
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        // 100 requests: 90 in (0,1] ms, 10 in (250,500] ms.
        let mut l = vec![1; 90];
        l.extend([400; 10]);
        let s = stats(&l);
        assert_eq!(s.latency_buckets.len(), 13);
        assert_eq!(s.requests, 100);
        let p50 = s.quantile_ms(0.5).unwrap();
        assert!(p50 > 0.0 && p50 <= 1.0, "{p50}");
        let p95 = s.quantile_ms(0.95).unwrap();
        assert!(p95 > 250.0 && p95 <= 500.0, "{p95}");
        assert_eq!(s.quantile_ms(1.0), Some(500.0));
        assert_eq!(stats(&[9000]).quantile_ms(0.99), Some(5000.0));
        assert_eq!(stats(&[]).quantile_ms(0.5), None);
        assert_eq!(s.quantile_ms(1.5), None);
    }

    #[test]
    fn error_rate_and_difference() {
        let c = VersionCounters::default();
        for status in [200, 200, 302, 404, 502] {
            c.request();
            c.response(status, Duration::from_micros(10));
        }
        let a = c.snapshot();
        assert_eq!(a.error_rate(), Some(0.2));
        c.request();
        c.response(503, Duration::from_millis(30));
        c.retry();
        let b = c.snapshot();
        let d = b.since(&a);
        assert_eq!(d.requests, 1);
        assert_eq!(d.responses_5xx, 1);
        assert_eq!(d.retries, 1);
        assert_eq!(d.error_rate(), Some(1.0));
        assert_eq!(d.latency_buckets.iter().sum::<u64>(), 1);
        assert_eq!(d.latency_buckets[5], 1); // (25, 50] ms
        assert_eq!(VersionStats::default().error_rate(), None);
    }
}
