//! Sample series and window functions: counter resets, eviction, gauges, ratios, histogram
//! quantiles checked against values worked out by hand, and the per-service metric store.

use sluice_rules::promtext;
use sluice_rules::rule::{MetricStore, ProxySnapshot};
use sluice_rules::{
    Condition, Histogram, Rule, RuleSpec, RuleTransition, Series, histogram_quantile,
};

const S: i64 = 1_000;

fn counter(points: &[(i64, f64)]) -> Series<f64> {
    let mut s = Series::new(3_600 * S, 1_000);
    for &(t, v) in points {
        assert!(s.push(t * S, v));
    }
    s
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn increase_and_rate_handle_counter_resets() {
    // 10 -> 20 (+10), reset to 5 (+5), 5 -> 15 (+10): 25 over 30 s.
    let s = counter(&[(0, 10.0), (10, 20.0), (20, 5.0), (30, 15.0)]);
    assert_eq!(s.increase(60 * S, 30 * S), Some(25.0));
    assert!(close(s.rate(60 * S, 30 * S), 25.0 / 30.0));
    // A reset to exactly zero, then no growth.
    let s = counter(&[(0, 7.0), (5, 0.0), (10, 0.0)]);
    assert_eq!(s.increase(60 * S, 10 * S), Some(0.0));
}

#[test]
fn the_window_excludes_its_start_and_the_future() {
    let s = counter(&[(0, 0.0), (10, 10.0), (20, 30.0), (30, 60.0)]);
    // Window (10 s, 30 s]: samples at 20 and 30 only.
    assert_eq!(s.increase(20 * S, 30 * S), Some(30.0));
    // Window (0, 20 s] evaluated at 20 s: samples at 10 and 20, not the later one.
    assert_eq!(s.increase(20 * S, 20 * S), Some(20.0));
    assert!(close(s.rate(20 * S, 20 * S), 2.0));
    // One sample in the window: no value.
    assert_eq!(s.increase(5 * S, 30 * S), None);
    assert_eq!(s.rate(5 * S, 30 * S), None);
    assert_eq!(Series::<f64>::new(S, 10).rate(S, S), None);
}

#[test]
fn push_rejects_out_of_order_and_replaces_same_time() {
    let mut s = Series::new(100 * S, 10);
    assert!(s.push(10 * S, 1.0));
    assert!(!s.push(5 * S, 2.0));
    assert!(s.push(10 * S, 3.0));
    assert_eq!(s.len(), 1);
    assert_eq!(s.last(100 * S, 10 * S), Some(3.0));
}

#[test]
fn samples_are_evicted_by_age_and_count() {
    let mut s = Series::new(60 * S, 5);
    for t in 0..100 {
        s.push(t * S, t as f64);
    }
    assert_eq!(s.len(), 5, "capped by count");
    let mut s = Series::new(60 * S, 1_000);
    for t in 0..100 {
        s.push(t * S, t as f64);
    }
    // Kept: t > 99 - 60, i.e. 40..=99.
    assert_eq!(s.len(), 60);
    assert_eq!(s.min(3_600 * S, 99 * S), Some(40.0));
    s.evict(200 * S);
    assert!(s.is_empty());
}

#[test]
fn gauge_functions_skip_nan() {
    let s = counter(&[(0, 4.0), (10, f64::NAN), (20, 1.0), (30, 7.0)]);
    let w = 60 * S;
    assert!(close(s.avg(w, 30 * S), 4.0));
    assert_eq!(s.max(w, 30 * S), Some(7.0));
    assert_eq!(s.min(w, 30 * S), Some(1.0));
    assert_eq!(s.last(w, 30 * S), Some(7.0));
    assert_eq!(s.last(w, 15 * S), Some(4.0));
    assert_eq!(s.avg(5 * S, 100 * S), None);
}

/// The histogram used by the hand-computed quantiles: bounds 0.1, 0.5, 1 and +Inf seconds.
fn hist(counts: [f64; 4]) -> Histogram {
    let b = vec![
        (0.1, counts[0]),
        (0.5, counts[1]),
        (1.0, counts[2]),
        (f64::INFINITY, counts[3]),
    ];
    Histogram::new(b, 0.0, counts[3]).expect("valid")
}

#[test]
fn quantiles_match_hand_computed_values() {
    let mut s = Series::new(3_600 * S, 100);
    s.push(0, hist([0.0, 0.0, 0.0, 0.0]));
    s.push(60 * S, hist([10.0, 60.0, 90.0, 100.0]));
    let q = |q: f64| s.quantile(q, 120 * S, 60 * S);
    // rank 5 in the first bucket [0, 0.1] holding 10: 0.1 * 5/10.
    assert!(close(q(0.05), 0.05));
    // rank 50 in (0.1, 0.5] holding 50 with 10 below: 0.1 + 0.4 * 40/50.
    assert!(close(q(0.5), 0.42));
    // rank 90 is exactly the top of (0.5, 1]: 0.5 + 0.5 * 30/30.
    assert!(close(q(0.9), 1.0));
    // rank 95 falls in +Inf: the highest finite bound.
    assert!(close(q(0.95), 1.0));
    assert!(close(q(0.0), 0.0));
}

#[test]
fn quantiles_use_bucket_increases_over_the_window_across_a_reset() {
    let mut s = Series::new(3_600 * S, 100);
    s.push(0, hist([100.0, 100.0, 100.0, 100.0])); // history before the window: all fast
    s.push(60 * S, hist([100.0, 100.0, 100.0, 100.0]));
    s.push(120 * S, hist([100.0, 100.0, 150.0, 200.0])); // +50 in (0.5,1], +50 in +Inf
    s.push(180 * S, hist([0.0, 20.0, 20.0, 20.0])); // restart: 20 in (0.1, 0.5]
    // Over (30 s, 180 s]: increases 0, 20, 70, 120 (cumulative).
    let inc = s.bucket_increase(150 * S, 180 * S).expect("data");
    let counts: Vec<f64> = inc.iter().map(|b| b.1).collect();
    assert_eq!(counts, vec![0.0, 20.0, 70.0, 120.0]);
    // Median: rank 60 in (0.5, 1] holding 50 with 20 below: 0.5 + 0.5 * 40/50.
    assert!(close(s.quantile(0.5, 150 * S, 180 * S), 0.9));
    // No observations in a window without growth: no value.
    assert_eq!(s.quantile(0.5, 70 * S, 60 * S), None);
}

#[test]
fn histogram_quantile_follows_prometheus_edge_cases() {
    let b = [(0.1, 10.0), (0.5, 60.0), (f64::INFINITY, 60.0)];
    assert_eq!(histogram_quantile(-0.1, &b), Some(f64::NEG_INFINITY));
    assert_eq!(histogram_quantile(1.1, &b), Some(f64::INFINITY));
    assert_eq!(histogram_quantile(f64::NAN, &b), None);
    assert_eq!(
        histogram_quantile(0.5, &[(0.1, 1.0), (0.5, 2.0)]),
        None,
        "no +Inf bucket"
    );
    assert_eq!(
        histogram_quantile(0.5, &[(f64::INFINITY, 3.0)]),
        None,
        "one bucket"
    );
    assert_eq!(
        histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
        None,
        "empty"
    );
    // q = 1 with the top in a finite bucket: rank 60 is reached at 0.5.
    assert!(close(histogram_quantile(1.0, &b), 0.5));
    // A first bucket with a negative bound returns that bound.
    assert_eq!(
        histogram_quantile(0.1, &[(-1.0, 5.0), (0.0, 10.0), (f64::INFINITY, 10.0)]),
        Some(-1.0)
    );
    // Non-monotonic counts are clamped: (1, 5) after (0.5, 8) counts as 8.
    let messy = [(0.5, 8.0), (1.0, 5.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
    // rank 9 in (1, 2] holding 2 with 8 below: 1 + 1 * 1/2.
    assert!(close(histogram_quantile(0.9, &messy), 1.5));
}

#[test]
fn histograms_are_validated_and_completed() {
    let h = Histogram::new(vec![(1.0, 3.0), (0.5, 1.0)], 2.0, 4.0).expect("valid");
    assert_eq!(h.buckets(), &[(0.5, 1.0), (1.0, 3.0), (f64::INFINITY, 4.0)]);
    assert!(Histogram::new(vec![(f64::NAN, 1.0)], 0.0, 1.0).is_err());
    assert!(Histogram::new(vec![(1.0, 1.0), (1.0, 2.0)], 0.0, 2.0).is_err());
}

fn proxy(requests: f64, errors: f64, fast: f64, total: f64) -> ProxySnapshot {
    ProxySnapshot {
        requests_total: requests,
        errors_total: errors,
        latency: Histogram::new(vec![(0.25, fast), (1.0, total)], 0.0, total).expect("valid"),
    }
}

#[test]
fn proxy_metrics_drive_error_rate_request_rate_and_latency() {
    let mut store = MetricStore::new(600 * S);
    store.push_proxy(0, proxy(1_000.0, 10.0, 900.0, 1_000.0));
    store.push_proxy(60 * S, proxy(1_600.0, 70.0, 1_200.0, 1_600.0));
    let value = |expr: &str| {
        Condition::parse(expr)
            .expect("valid")
            .value(&store, 300 * S, 60 * S)
    };
    assert!(close(value("error_rate > 0"), 60.0 / 600.0));
    assert!(close(value("request_rate > 0"), 10.0));
    assert!(close(value("rate(proxy.errors) > 0"), 1.0));
    assert!(close(value("increase(proxy.requests) > 0"), 600.0));
    // 300 of 600 requests took <= 0.25 s: the median is the top of the first bucket, and p90
    // (rank 540, 240 into (0.25, 1] holding 300) is 0.25 + 0.75 * 240/300.
    assert!(close(value("p50_latency > 0"), 0.25));
    assert!(close(value("p90_latency > 0"), 0.85));

    // No requests in the window: no error rate (not zero, not infinity).
    let mut idle = MetricStore::new(600 * S);
    idle.push_proxy(0, proxy(5.0, 1.0, 5.0, 5.0));
    idle.push_proxy(60 * S, proxy(5.0, 1.0, 5.0, 5.0));
    let c = Condition::parse("error_rate > 0.05").expect("valid");
    assert_eq!(c.value(&idle, 300 * S, 60 * S), None);
}

#[test]
fn a_rule_fires_and_resolves_from_the_store() {
    let mut rule = Rule::new(RuleSpec {
        name: "Errors".into(),
        expr: "error_rate > 0.05".into(),
        window_ms: 120 * S,
        for_ms: 60 * S,
        severity: "page".into(),
        labels: Default::default(),
    })
    .expect("valid");
    let mut store = MetricStore::new(rule.window_ms());
    let mut requests = 0.0;
    let mut errors = 0.0;
    let mut fired_at = None;
    let mut resolved_at = None;
    for minute in 0..10 {
        // Minutes 2 to 5 fail 20% of 100 requests; the others fail none.
        requests += 100.0;
        if (2..=5).contains(&minute) {
            errors += 20.0;
        }
        let now = minute * 60 * S;
        store.push_proxy(now, proxy(requests, errors, requests, requests));
        match rule.evaluate_store(&store, now) {
            Some(RuleTransition::Fired { since, .. }) => fired_at = Some((now, since)),
            Some(RuleTransition::Resolved { .. }) => resolved_at = Some(now),
            None => {}
        }
    }
    // The window at minute m is (m - 2 min, m]: the samples of minutes m-1 and m. True from
    // minute 2 (20 of 100 failed), held for 60 s: fires at minute 3, active since minute 2.
    assert_eq!(fired_at, Some((3 * 60 * S, 2 * 60 * S)));
    // Between minutes 5 and 6 no request failed: resolves at minute 6.
    assert_eq!(resolved_at, Some(6 * 60 * S));
}

const SCRAPE: &str = "\
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 1000
http_requests_total{code=\"500\"} 10
http_requests_total{code=\"503\"} 5
# TYPE queue_depth gauge
queue_depth{queue=\"a\"} 3
queue_depth{queue=\"b\"} 4
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.1\"} 0
http_request_duration_seconds_bucket{le=\"0.5\"} 0
http_request_duration_seconds_bucket{le=\"+Inf\"} 0
http_request_duration_seconds_sum 0
http_request_duration_seconds_count 0
";

fn scrape_two() -> MetricStore {
    let mut store = MetricStore::new(600 * S);
    let first = promtext::parse(SCRAPE).expect("valid");
    assert_eq!(store.ingest(&first, 0), 0);
    let second = SCRAPE
        .replace("{code=\"200\"} 1000", "{code=\"200\"} 1600")
        .replace("{code=\"500\"} 10", "{code=\"500\"} 40")
        .replace("{code=\"503\"} 5", "{code=\"503\"} 35")
        .replace("{queue=\"a\"} 3", "{queue=\"a\"} 5")
        .replace("{le=\"0.1\"} 0", "{le=\"0.1\"} 40")
        .replace("{le=\"0.5\"} 0", "{le=\"0.5\"} 80")
        .replace("{le=\"+Inf\"} 0", "{le=\"+Inf\"} 100")
        .replace("_count 0", "_count 100");
    let second = promtext::parse(&second).expect("valid");
    assert_eq!(store.ingest(&second, 60 * S), 0);
    store
}

#[test]
fn scraped_selectors_aggregate_matching_series() {
    let store = scrape_two();
    let value = |expr: &str| {
        Condition::parse(expr)
            .expect("valid")
            .value(&store, 300 * S, 60 * S)
    };
    // 5xx: (40-10) + (35-5) = 60 over 60 s.
    assert!(close(
        value(r#"rate(http_requests_total{code=~"5.."}) > 0"#),
        1.0
    ));
    assert!(close(
        value(r#"increase(http_requests_total{code="200"}) > 0"#),
        600.0
    ));
    // 60 of 660 requests.
    assert!(close(
        value(r#"ratio(http_requests_total{code=~"5.."}, http_requests_total) > 0"#),
        60.0 / 660.0
    ));
    // A numerator with no series (no 4xx yet) is zero, not missing.
    assert_eq!(
        value(r#"ratio(http_requests_total{code=~"4.."}, http_requests_total) > 0"#),
        Some(0.0)
    );
    // Gauges: last adds up the queues (5 + 4); avg/max/min span all samples (3, 4, 5, 4).
    assert_eq!(value("queue_depth > 0"), Some(9.0));
    assert_eq!(value(r#"last(queue_depth{queue="a"}) > 0"#), Some(5.0));
    assert!(close(value("avg(queue_depth) > 0"), 4.0));
    assert_eq!(value("max(queue_depth) > 0"), Some(5.0));
    assert_eq!(value("min(queue_depth) > 0"), Some(3.0));
    // Histogram from the scrape: rank 50 in (0.1, 0.5] holding 40 with 40 below:
    // 0.1 + 0.4 * 10/40 = 0.2.
    assert!(close(
        value("histogram_quantile(0.5, http_request_duration_seconds) > 0"),
        0.2
    ));
    // _count is also kept as a plain series.
    assert!(close(
        value("increase(http_request_duration_seconds_count) > 0"),
        100.0
    ));
    assert_eq!(value("rate(no_such_metric) > 0"), None);
}

#[test]
fn the_store_is_bounded_and_evicts() {
    let mut store = MetricStore::with_limits(60 * S, 10, 3);
    let text = "a{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"3\"} 1\na{x=\"4\"} 1\na{x=\"5\"} 1\n";
    let refused = store.ingest(&promtext::parse(text).expect("valid"), 0);
    assert_eq!((store.series_count(), refused), (3, 2));
    store.evict(120 * S);
    assert_eq!(store.series_count(), 0);
}

#[test]
fn ratio_of_two_counters() {
    let errors = counter(&[(0, 5.0), (60, 11.0)]);
    let requests = counter(&[(0, 100.0), (60, 160.0)]);
    assert!(close(errors.ratio(&requests, 120 * S, 60 * S), 0.1));
    // No requests in the window: no value.
    let idle = counter(&[(0, 100.0), (60, 100.0)]);
    assert_eq!(errors.ratio(&idle, 120 * S, 60 * S), None);
    // Requests restarted from zero: the increase counts from the restart.
    let restarted = counter(&[(0, 100.0), (60, 30.0)]);
    assert!(close(errors.ratio(&restarted, 120 * S, 60 * S), 6.0 / 30.0));
    assert_eq!(errors.ratio(&counter(&[(60, 1.0)]), 120 * S, 60 * S), None);
}

#[test]
fn future_timestamps_from_a_target_cannot_block_later_samples() {
    let mut store = MetricStore::new(600 * S);
    let far_future = "c 1 99999999999999\n";
    store.ingest(&promtext::parse(far_future).expect("valid"), 0);
    store.ingest(&promtext::parse("c 4\n").expect("valid"), 60 * S);
    let c = Condition::parse("increase(c) > 0").expect("valid");
    assert_eq!(c.value(&store, 300 * S, 60 * S), Some(3.0));
}

#[test]
fn series_of_a_gone_instance_can_be_dropped() {
    let mut store = MetricStore::new(600 * S);
    let text = "queue_depth{instance=\"a\"} 3\nqueue_depth{instance=\"b\"} 4\n";
    store.ingest(&promtext::parse(text).expect("valid"), 0);
    store.push_proxy(0, proxy(1.0, 0.0, 1.0, 1.0));
    let depth = Condition::parse("queue_depth > 0").expect("valid");
    assert_eq!(depth.value(&store, 300 * S, 0), Some(7.0));
    store.retain_scraped(|_, labels| labels.get("instance").map(String::as_str) != Some("b"));
    assert_eq!(store.series_count(), 1);
    assert_eq!(depth.value(&store, 300 * S, 0), Some(3.0));
    // The proxy's own series stay.
    store.push_proxy(60 * S, proxy(11.0, 0.0, 11.0, 11.0));
    let requests = Condition::parse("increase(proxy.requests) > 0").expect("valid");
    assert_eq!(requests.value(&store, 300 * S, 60 * S), Some(10.0));
}
