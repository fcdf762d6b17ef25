//! Bounded in-memory sample series and the window functions rules evaluate over them.
//!
//! A [`Series`] keeps timestamped samples of one time series, oldest first, evicting samples
//! older than its retention (set to the longest rule window) and never holding more than a
//! fixed number. Window functions look at the samples with `now - window < t <= now`.
//!
//! Counter functions ([`Series::increase`], [`Series::rate`]) handle counter resets like
//! Prometheus: when a value drops, the counter is taken to have restarted from zero, so the
//! increase across the drop is the new value. Unlike Prometheus they do **not** extrapolate to
//! the window edges: `increase` is the increase between the first and last sample in the
//! window, and `rate` divides it by the time between those samples. Results are therefore exact
//! for the samples seen (an integer counter gives an integer increase), at the cost of reading
//! slightly low when samples are sparse relative to the window.
//!
//! [`MetricStore`] holds everything sampled for one service: the proxy's own request, error
//! and latency metrics and the series scraped from the service's `/metrics`.

use std::collections::{BTreeMap, VecDeque};

use crate::Labels;
use crate::matcher::Matcher;
use crate::promtext::{Exposition, MetricType};
use crate::rule::{Aggregation, Metric, ProxyMetric, RuleError};

/// Default cap on samples per series (one sample every 15 s for over 17 hours).
pub const DEFAULT_MAX_SAMPLES: usize = 4096;
/// Default cap on the number of scraped series per store.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// A cumulative histogram snapshot: bucket upper bounds (`le`, in the metric's unit, seconds for
/// latency) with cumulative counts, plus sum and count. Always ends with a `+Inf` bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// Builds a snapshot from `(le, cumulative count)` pairs in any order. Bounds must not be
    /// NaN or repeated. When no `+Inf` bucket is given, one is added with `count`.
    pub fn new(mut buckets: Vec<(f64, f64)>, sum: f64, count: f64) -> Result<Histogram, RuleError> {
        if buckets.iter().any(|(le, _)| le.is_nan()) {
            return Err(RuleError::InvalidHistogram {
                message: "a bucket bound (le) is NaN; use numbers or +Inf".to_string(),
            });
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(w) = buckets.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(RuleError::InvalidHistogram {
                message: format!(
                    "bucket bound le={} appears twice; each bound must be unique",
                    w[0].0
                ),
            });
        }
        if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
            buckets.push((f64::INFINITY, count));
        }
        Ok(Histogram {
            buckets,
            sum,
            count,
        })
    }

    /// `(le, cumulative count)` pairs in ascending `le` order, ending with `+Inf`.
    pub fn buckets(&self) -> &[(f64, f64)] {
        &self.buckets
    }

    /// Sum of all observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> f64 {
        self.count
    }

    fn same_layout(&self, other: &Histogram) -> bool {
        self.buckets.len() == other.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&other.buckets)
                .all(|(a, b)| a.0 == b.0)
    }
}

/// The `q`-quantile of cumulative `(le, count)` buckets with Prometheus `histogram_quantile`
/// semantics: buckets sorted by `le` ending in `+Inf`, counts made monotonic, linear
/// interpolation inside the bucket holding the rank (the lowest bucket starts at 0 when its
/// bound is positive), and the highest finite bound when the rank falls in the `+Inf` bucket.
///
/// Returns `None` when there is nothing to compute: no observations, fewer than two buckets,
/// no `+Inf` bucket, or `q` is NaN. `q < 0` gives `-Inf` and `q > 1` gives `+Inf`, as in
/// Prometheus. One deviation: when the rank is 0 and the first bucket is empty, the result is
/// the bucket's lower bound instead of NaN.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    if buckets.len() < 2 || buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
        return None;
    }
    let mut counts: Vec<f64> = Vec::with_capacity(buckets.len());
    let mut running = 0.0_f64;
    for &(_, c) in buckets {
        // Non-finite or decreasing counts (from mixing layouts or float noise) are clamped.
        if c.is_finite() && c > running {
            running = c;
        }
        counts.push(running);
    }
    let observations = *counts.last()?;
    if observations <= 0.0 {
        return None;
    }
    let rank = q * observations;
    let b = counts.iter().position(|&c| c >= rank)?;
    let last = buckets.len() - 1;
    if b == last {
        return Some(buckets[last - 1].0);
    }
    let upper = buckets[b].0;
    if b == 0 && upper <= 0.0 {
        return Some(upper);
    }
    let (lower, in_bucket, rank_in_bucket) = if b == 0 {
        (0.0, counts[0], rank)
    } else {
        (
            buckets[b - 1].0,
            counts[b] - counts[b - 1],
            rank - counts[b - 1],
        )
    };
    if in_bucket <= 0.0 {
        return Some(lower);
    }
    Some(lower + (upper - lower) * (rank_in_bucket / in_bucket))
}

/// A bounded series of timestamped samples, oldest first.
#[derive(Debug, Clone)]
pub struct Series<T> {
    samples: VecDeque<(i64, T)>,
    retention_ms: i64,
    max_samples: usize,
}

impl<T> Series<T> {
    /// An empty series keeping samples for `retention_ms` (at least 1 ms) and at most
    /// `max_samples` of them (at least 2, the minimum any window function needs).
    pub fn new(retention_ms: i64, max_samples: usize) -> Series<T> {
        Series {
            samples: VecDeque::new(),
            retention_ms: retention_ms.max(1),
            max_samples: max_samples.max(2),
        }
    }

    /// Appends a sample. A sample at the same time as the newest replaces it; one older than the
    /// newest is dropped (returns `false`). Then evicts samples past the retention relative to
    /// this sample, and the oldest ones beyond the size cap.
    pub fn push(&mut self, t_ms: i64, value: T) -> bool {
        match self.samples.back_mut() {
            Some(last) if last.0 == t_ms => {
                last.1 = value;
                return true;
            }
            Some(last) if last.0 > t_ms => return false,
            _ => self.samples.push_back((t_ms, value)),
        }
        self.evict(t_ms);
        while self.samples.len() > self.max_samples {
            self.samples.pop_front();
        }
        true
    }

    /// Drops samples with `t <= now - retention`.
    pub fn evict(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        while self.samples.front().is_some_and(|(t, _)| *t <= cutoff) {
            self.samples.pop_front();
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Time of the newest sample.
    pub fn latest_ms(&self) -> Option<i64> {
        self.samples.back().map(|(t, _)| *t)
    }

    /// Samples with `now - window < t <= now`, oldest first.
    pub fn window(&self, window_ms: i64, now_ms: i64) -> impl Iterator<Item = &(i64, T)> {
        let cutoff = now_ms.saturating_sub(window_ms);
        let start = self.samples.partition_point(|(t, _)| *t <= cutoff);
        self.samples
            .range(start..)
            .take_while(move |(t, _)| *t <= now_ms)
    }
}

impl Series<f64> {
    /// Increase of a counter over the window, with reset handling; `None` with fewer than two
    /// (non-NaN) samples in the window.
    pub fn increase(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        self.counter_span(window_ms, now_ms).map(|(inc, _)| inc)
    }

    /// Per-second rate of a counter over the window: the increase divided by the seconds
    /// between the first and last sample in the window.
    pub fn rate(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        let (inc, span_ms) = self.counter_span(window_ms, now_ms)?;
        (span_ms > 0).then(|| inc / (span_ms as f64 / 1000.0))
    }

    /// Increase of this counter divided by the increase of `denominator` over the window
    /// (e.g. errors / requests). `None` when either lacks two samples in the window or the
    /// denominator did not grow: no requests means no error rate, not zero or infinity.
    pub fn ratio(&self, denominator: &Series<f64>, window_ms: i64, now_ms: i64) -> Option<f64> {
        let den = denominator.increase(window_ms, now_ms)?;
        let num = self.increase(window_ms, now_ms)?;
        (den > 0.0).then(|| num / den)
    }

    /// Mean of the (non-NaN) samples in the window.
    pub fn avg(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        let (sum, n) = self
            .values(window_ms, now_ms)
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / n as f64)
    }

    /// Largest (non-NaN) sample in the window.
    pub fn max(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        self.values(window_ms, now_ms).reduce(f64::max)
    }

    /// Smallest (non-NaN) sample in the window.
    pub fn min(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        self.values(window_ms, now_ms).reduce(f64::min)
    }

    /// Newest (non-NaN) sample in the window.
    pub fn last(&self, window_ms: i64, now_ms: i64) -> Option<f64> {
        self.values(window_ms, now_ms).last()
    }

    fn values(&self, window_ms: i64, now_ms: i64) -> impl Iterator<Item = f64> {
        self.window(window_ms, now_ms)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_nan())
    }

    /// `(increase, ms between first and last sample)` over the window.
    fn counter_span(&self, window_ms: i64, now_ms: i64) -> Option<(f64, i64)> {
        let mut it = self.window(window_ms, now_ms).filter(|(_, v)| !v.is_nan());
        let &(first_t, first_v) = it.next()?;
        let (mut prev, mut last_t, mut increase, mut n) = (first_v, first_t, 0.0, 1usize);
        for &(t, v) in it {
            increase += if v >= prev { v - prev } else { v };
            prev = v;
            last_t = t;
            n += 1;
        }
        (n >= 2).then_some((increase, last_t.saturating_sub(first_t)))
    }
}

impl Series<Histogram> {
    /// Increase of each bucket over the window as `(le, increase)` pairs. Only the newest run
    /// of samples with the bucket layout of the newest sample is used; if any bucket drops
    /// between two samples the histogram is taken to have reset, as a whole.
    pub fn bucket_increase(&self, window_ms: i64, now_ms: i64) -> Option<Vec<(f64, f64)>> {
        let samples: Vec<&Histogram> = self.window(window_ms, now_ms).map(|(_, h)| h).collect();
        let newest = *samples.last()?;
        let run_start = samples
            .iter()
            .rposition(|h| !h.same_layout(newest))
            .map_or(0, |i| i + 1);
        let run = &samples[run_start..];
        if run.len() < 2 {
            return None;
        }
        let mut inc = vec![0.0; newest.buckets.len()];
        for pair in run.windows(2) {
            let (prev, cur) = (pair[0], pair[1]);
            let reset = prev
                .buckets
                .iter()
                .zip(&cur.buckets)
                .any(|(p, c)| c.1 < p.1);
            for (i, (p, c)) in prev.buckets.iter().zip(&cur.buckets).enumerate() {
                let delta = if reset { c.1 } else { c.1 - p.1 };
                if delta.is_finite() {
                    inc[i] += delta;
                }
            }
        }
        Some(newest.buckets.iter().map(|b| b.0).zip(inc).collect())
    }

    /// The `q`-quantile of the observations made within the window (see
    /// [`histogram_quantile`]); `None` when no observation was made.
    pub fn quantile(&self, q: f64, window_ms: i64, now_ms: i64) -> Option<f64> {
        histogram_quantile(q, &self.bucket_increase(window_ms, now_ms)?)
    }
}

/// The key of a scraped series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    labels: Labels,
}

/// The per-sample counters the proxy reports for a service at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySnapshot {
    /// Requests served since the proxy started (a counter).
    pub requests_total: f64,
    /// Requests that failed (5xx or no response) since the proxy started (a counter).
    pub errors_total: f64,
    /// Latency histogram in seconds (cumulative since the proxy started).
    pub latency: Histogram,
}

/// Everything sampled for one service, bounded in samples per series and number of series.
///
/// A selector matching several scraped series is aggregated into one value, as a per-service
/// alert needs: counter increases and rates, and histogram bucket increases, are added up
/// across series; `avg`/`max`/`min` run over the samples of all matching series together;
/// `last` adds up each series' newest value (e.g. the total queue depth over all queues).
#[derive(Debug, Clone)]
pub struct MetricStore {
    retention_ms: i64,
    max_samples: usize,
    max_series: usize,
    requests: Series<f64>,
    errors: Series<f64>,
    latency: Series<Histogram>,
    scalars: BTreeMap<SeriesKey, Series<f64>>,
    histograms: BTreeMap<SeriesKey, Series<Histogram>>,
}

impl MetricStore {
    /// A store keeping `retention_ms` of history (use the longest rule window) with the default
    /// caps ([`DEFAULT_MAX_SAMPLES`] per series, [`DEFAULT_MAX_SERIES`] scraped series).
    pub fn new(retention_ms: i64) -> MetricStore {
        MetricStore::with_limits(retention_ms, DEFAULT_MAX_SAMPLES, DEFAULT_MAX_SERIES)
    }

    /// A store with explicit caps.
    pub fn with_limits(retention_ms: i64, max_samples: usize, max_series: usize) -> MetricStore {
        MetricStore {
            retention_ms,
            max_samples,
            max_series,
            requests: Series::new(retention_ms, max_samples),
            errors: Series::new(retention_ms, max_samples),
            latency: Series::new(retention_ms, max_samples),
            scalars: BTreeMap::new(),
            histograms: BTreeMap::new(),
        }
    }

    /// Records the proxy's counters for the service at `now_ms`.
    pub fn push_proxy(&mut self, now_ms: i64, snapshot: ProxySnapshot) {
        self.requests.push(now_ms, snapshot.requests_total);
        self.errors.push(now_ms, snapshot.errors_total);
        self.latency.push(now_ms, snapshot.latency);
    }

    /// Records a scrape of the service's `/metrics`. Samples without an explicit timestamp, or
    /// with one later than `now_ms`, are stamped `now_ms`. Histogram families are assembled from their `_bucket` samples (their
    /// `_sum` and `_count` are also kept as plain series, so `rate(x_count)` works). Returns how
    /// many new series were refused because the store already holds its maximum.
    pub fn ingest(&mut self, exposition: &Exposition, now_ms: i64) -> usize {
        struct Parts {
            buckets: Vec<(f64, f64)>,
            sum: Option<f64>,
            count: Option<f64>,
            t: i64,
        }
        let limits = self.limits();
        let mut refused = 0;
        let mut parts: BTreeMap<SeriesKey, Parts> = BTreeMap::new();
        for sample in &exposition.samples {
            // A timestamp from the future would make every later sample look out of order.
            let t = sample
                .timestamp_ms
                .filter(|t| *t <= now_ms)
                .unwrap_or(now_ms);
            let (family, kind) = exposition.family_of(&sample.name);
            if kind == MetricType::Histogram && family != sample.name {
                let mut labels = sample.labels.clone();
                let le = labels.remove("le");
                let key = SeriesKey {
                    name: family.to_string(),
                    labels,
                };
                let entry = parts.entry(key).or_insert(Parts {
                    buckets: Vec::new(),
                    sum: None,
                    count: None,
                    t,
                });
                entry.t = entry.t.max(t);
                match sample.name.strip_prefix(family) {
                    Some("_bucket") => {
                        if let Some(le) = le.as_deref().and_then(crate::lex::parse_float) {
                            entry.buckets.push((le, sample.value));
                        }
                        continue;
                    }
                    Some("_sum") => entry.sum = Some(sample.value),
                    Some("_count") => entry.count = Some(sample.value),
                    _ => {}
                }
            }
            let key = SeriesKey {
                name: sample.name.clone(),
                labels: sample.labels.clone(),
            };
            let others = self.histograms.len();
            if !push_keyed(&mut self.scalars, key, t, sample.value, limits, others) {
                refused += 1;
            }
        }
        for (key, p) in parts {
            let has_inf = p.buckets.iter().any(|(le, _)| *le == f64::INFINITY);
            let count = match (p.count, has_inf) {
                (Some(c), _) => c,
                (None, true) => p
                    .buckets
                    .iter()
                    .find(|(le, _)| *le == f64::INFINITY)
                    .map_or(0.0, |b| b.1),
                (None, false) => continue, // no way to know the total: skip this histogram
            };
            if p.buckets.is_empty() {
                continue;
            }
            let Ok(h) = Histogram::new(p.buckets, p.sum.unwrap_or(f64::NAN), count) else {
                continue;
            };
            let others = self.scalars.len();
            if !push_keyed(&mut self.histograms, key, p.t, h, limits, others) {
                refused += 1;
            }
        }
        refused
    }

    /// Drops samples older than the retention and series left empty.
    pub fn evict(&mut self, now_ms: i64) {
        self.requests.evict(now_ms);
        self.errors.evict(now_ms);
        self.latency.evict(now_ms);
        self.scalars.retain(|_, s| {
            s.evict(now_ms);
            !s.is_empty()
        });
        self.histograms.retain(|_, s| {
            s.evict(now_ms);
            !s.is_empty()
        });
    }

    /// Keeps only the scraped series for which `keep(name, labels)` is true, e.g. to drop the
    /// series of an instance that is gone so that its last values stop counting. The proxy's
    /// own series are not affected.
    pub fn retain_scraped(&mut self, mut keep: impl FnMut(&str, &Labels) -> bool) {
        self.scalars.retain(|k, _| keep(&k.name, &k.labels));
        self.histograms.retain(|k, _| keep(&k.name, &k.labels));
    }

    /// Number of scraped series held (plain and histogram).
    pub fn series_count(&self) -> usize {
        self.scalars.len() + self.histograms.len()
    }

    /// The value of `aggregation` over `metric` for the window ending at `now_ms`, or `None`
    /// when there is no data (see [`MetricStore`] for how several series are combined).
    pub fn value(
        &self,
        metric: &Metric,
        aggregation: &Aggregation,
        window_ms: i64,
        now_ms: i64,
    ) -> Option<f64> {
        let w = window_ms;
        let scalars = || self.scalar_series(metric);
        match aggregation {
            Aggregation::Rate => sum_some(scalars().map(|s| s.rate(w, now_ms))),
            Aggregation::Increase => sum_some(scalars().map(|s| s.increase(w, now_ms))),
            Aggregation::Ratio { denominator } => {
                let den = sum_some(
                    self.scalar_series(denominator)
                        .map(|s| s.increase(w, now_ms)),
                )?;
                // A numerator with no series yet (e.g. no 5xx ever exposed) means zero.
                let num = sum_some(scalars().map(|s| s.increase(w, now_ms))).unwrap_or(0.0);
                (den > 0.0).then(|| num / den)
            }
            Aggregation::Quantile(q) => {
                let mut total: Vec<(f64, f64)> = Vec::new();
                for s in self.histogram_series(metric) {
                    for (le, inc) in s.bucket_increase(w, now_ms).unwrap_or_default() {
                        match total.iter_mut().find(|(l, _)| *l == le) {
                            Some(slot) => slot.1 += inc,
                            None => total.push((le, inc)),
                        }
                    }
                }
                total.sort_by(|a, b| a.0.total_cmp(&b.0));
                histogram_quantile(*q, &total)
            }
            Aggregation::Avg => {
                let (sum, n) = scalars()
                    .flat_map(|s| s.values(w, now_ms))
                    .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                (n > 0).then(|| sum / n as f64)
            }
            Aggregation::Max => scalars().filter_map(|s| s.max(w, now_ms)).reduce(f64::max),
            Aggregation::Min => scalars().filter_map(|s| s.min(w, now_ms)).reduce(f64::min),
            Aggregation::Last => sum_some(scalars().map(|s| s.last(w, now_ms))),
        }
    }

    fn limits(&self) -> (i64, usize, usize) {
        (self.retention_ms, self.max_samples, self.max_series)
    }

    fn scalar_series<'a>(
        &'a self,
        metric: &'a Metric,
    ) -> Box<dyn Iterator<Item = &'a Series<f64>> + 'a> {
        match metric {
            Metric::Proxy(ProxyMetric::Requests) => Box::new(std::iter::once(&self.requests)),
            Metric::Proxy(ProxyMetric::Errors) => Box::new(std::iter::once(&self.errors)),
            Metric::Proxy(ProxyMetric::Latency) => Box::new(std::iter::empty()),
            Metric::Scraped { name, matchers } => Box::new(select(&self.scalars, name, matchers)),
        }
    }

    fn histogram_series<'a>(
        &'a self,
        metric: &'a Metric,
    ) -> Box<dyn Iterator<Item = &'a Series<Histogram>> + 'a> {
        match metric {
            Metric::Proxy(ProxyMetric::Latency) => Box::new(std::iter::once(&self.latency)),
            Metric::Proxy(_) => Box::new(std::iter::empty()),
            Metric::Scraped { name, matchers } => {
                Box::new(select(&self.histograms, name, matchers))
            }
        }
    }
}

/// Series named `name` whose labels match all `matchers`.
fn select<'a, T>(
    map: &'a BTreeMap<SeriesKey, Series<T>>,
    name: &'a str,
    matchers: &'a [Matcher],
) -> impl Iterator<Item = &'a Series<T>> + 'a {
    let from = SeriesKey {
        name: name.to_string(),
        labels: Labels::new(),
    };
    map.range(from..)
        .take_while(move |(k, _)| k.name == name)
        .filter(move |(k, _)| matchers.iter().all(|m| m.matches(&k.labels)))
        .map(|(_, s)| s)
}

/// Pushes into the series for `key`, creating it unless the store already holds `max_series`
/// series (counting `other_series` held in the other map).
fn push_keyed<T>(
    map: &mut BTreeMap<SeriesKey, Series<T>>,
    key: SeriesKey,
    t: i64,
    value: T,
    (retention_ms, max_samples, max_series): (i64, usize, usize),
    other_series: usize,
) -> bool {
    if let Some(s) = map.get_mut(&key) {
        s.push(t, value);
        return true;
    }
    if map.len().saturating_add(other_series) >= max_series {
        return false;
    }
    let mut s = Series::new(retention_ms, max_samples);
    s.push(t, value);
    map.insert(key, s);
    true
}

/// Adds up the present values; `None` when none is present.
fn sum_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}
