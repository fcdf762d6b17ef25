//! Rule conditions (parser tables, canonical text, positioned errors) and the rule state
//! machine (hold time, reset, missing data).

use sluice_rules::{
    Aggregation, CmpOp, Condition, Metric, ProxyMetric, Rule, RuleError, RuleSpec, RuleState,
    RuleTransition,
};

use crate::labels;

/// Parses `input` and checks its canonical text; the canonical text must parse to the same.
fn check(input: &str, canonical: &str) -> Condition {
    let c = Condition::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    assert_eq!(c.to_string(), canonical, "input {input:?}");
    assert_eq!(Condition::parse(canonical).expect("canonical parses"), c);
    c
}

fn check_err(input: &str, column: usize, needle: &str) {
    match Condition::parse(input) {
        Err(RuleError::Syntax { column: c, message }) => {
            assert_eq!(c, column, "column for {input:?} ({message})");
            assert!(
                message.contains(needle),
                "{input:?}: {message:?} lacks {needle:?}"
            );
        }
        other => panic!("{input:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn parses_the_shorthands() {
    let c = check("error_rate > 0.05", "error_rate > 0.05");
    assert_eq!(c.metric, Metric::Proxy(ProxyMetric::Errors));
    assert_eq!(
        c.aggregation,
        Aggregation::Ratio {
            denominator: Metric::Proxy(ProxyMetric::Requests)
        }
    );
    assert_eq!((c.op, c.threshold), (CmpOp::Gt, 0.05));

    let c = check("p99_latency>0.5", "p99_latency > 0.5");
    assert_eq!(c.aggregation, Aggregation::Quantile(0.99));
    assert_eq!(
        check("p50_latency > 1", "p50_latency > 1").aggregation,
        Aggregation::Quantile(0.5)
    );
    assert_eq!(
        check("p999_latency >= 2", "p999_latency >= 2").aggregation,
        Aggregation::Quantile(0.999)
    );
    assert_eq!(
        check("p05_latency < 1", "p05_latency < 1").aggregation,
        Aggregation::Quantile(0.05)
    );
    let c = check("request_rate < 1", "request_rate < 1");
    assert_eq!(
        (c.metric, c.aggregation),
        (Metric::Proxy(ProxyMetric::Requests), Aggregation::Rate)
    );
}

#[test]
fn parses_functions_and_selectors() {
    for (input, canonical) in [
        (
            r#"rate(http_requests_total{code=~"5.."}) > 2"#,
            r#"rate(http_requests_total{code=~"5.."}) > 2"#,
        ),
        ("rate( x { a = b } ) > 2", r#"rate(x{a="b"}) > 2"#),
        (
            "increase(deploys_failed_total) >= 1",
            "increase(deploys_failed_total) >= 1",
        ),
        ("avg(queue_depth) > 100", "avg(queue_depth) > 100"),
        ("max(queue_depth) == 0", "max(queue_depth) == 0"),
        ("min(up) != 1", "min(up) != 1"),
        ("queue_depth > 100", "last(queue_depth) > 100"),
        ("last(rate) > 1", "last(rate) > 1"),
        ("rate > 1", "last(rate) > 1"),
        (
            "histogram_quantile(0.95, http_request_duration_seconds) > 0.3",
            "histogram_quantile(0.95, http_request_duration_seconds) > 0.3",
        ),
        (
            "histogram_quantile(0.99, proxy.latency) > 1",
            "p99_latency > 1",
        ),
        (
            "histogram_quantile(0.12345, proxy.latency) > 1",
            "histogram_quantile(0.12345, proxy.latency) > 1",
        ),
        (
            "histogram_quantile(1, proxy.latency) > 1",
            "histogram_quantile(1, proxy.latency) > 1",
        ),
        (
            "ratio(proxy.errors, proxy.requests) > 0.1",
            "error_rate > 0.1",
        ),
        (
            "ratio(proxy.requests, proxy.errors) > 0.1",
            "ratio(proxy.requests, proxy.errors) > 0.1",
        ),
        (
            r#"ratio(req_total{code=~"5.."}, req_total) > 0.01"#,
            r#"ratio(req_total{code=~"5.."}, req_total) > 0.01"#,
        ),
        ("rate(proxy.errors) > 1e-3", "rate(proxy.errors) > 0.001"),
        ("job:errors:rate5m > -Inf", "last(job:errors:rate5m) > -Inf"),
        ("up < +inf", "last(up) < +Inf"),
        ("  error_rate   >=   .5  ", "error_rate >= 0.5"),
    ] {
        check(input, canonical);
    }
}

#[test]
fn errors_name_the_column_and_the_problem() {
    check_err("", 1, "expected a query");
    check_err("error_rate", 11, "expected a comparison");
    check_err("error_rate = 1", 12, "use `==`");
    check_err("error_rate > ", 14, "expected a threshold");
    check_err("error_rate > 5m", 14, "found `5m`");
    check_err("error_rate > NaN", 14, "cannot be NaN");
    check_err("error_rate > 1 and", 16, "after the threshold");
    check_err("error_rate{a=b} > 1", 11, "takes no arguments or labels");
    check_err("p100_latency > 1", 1, "not a latency percentile");
    check_err("p9_latency > 1", 1, "not a latency percentile");
    check_err("sum(x) > 1", 1, "unknown function `sum`");
    check_err("rate(x > 1", 8, "expected `)`");
    check_err("rate() > 1", 6, "expected a metric name");
    check_err("rate(proxy.latency) > 1", 6, "is a histogram");
    check_err("avg(proxy.requests) > 1", 5, "not a gauge");
    check_err("proxy.errors > 1", 1, "not a gauge");
    check_err(
        "histogram_quantile(0.9, proxy.requests) > 1",
        25,
        "not a histogram",
    );
    check_err("histogram_quantile(1.5, x) > 1", 20, "out of range");
    check_err("histogram_quantile(0.5 x) > 1", 24, "expected `,`");
    check_err("rate(proxy.errors{a=b}) > 1", 18, "has no labels");
    check_err("rate(proxy.foo) > 1", 6, "unknown metric `proxy.foo`");
    check_err(r#"rate(x{code=~"(") > 1"#, 14, "invalid regex");
    check_err(r#"rate(x{code="5xx") > 1"#, 18, "expected `,` or `}`");
    check_err(r#"rate(x{code="5xx""#, 7, "never closed");
    check_err("ratio(a) > 1", 8, "expected `,`");
}

fn spec(expr: &str, for_ms: i64) -> RuleSpec {
    RuleSpec {
        name: "HighErrorRate".to_string(),
        expr: expr.to_string(),
        window_ms: 300_000,
        for_ms,
        severity: "critical".to_string(),
        labels: labels(&[("team", "core")]),
    }
}

#[test]
fn rule_specs_are_validated() {
    let ok = Rule::new(spec("error_rate > 0.05", 0)).expect("valid");
    assert_eq!(ok.name(), "HighErrorRate");
    assert_eq!(ok.severity(), "critical");
    assert_eq!(ok.window_ms(), 300_000);
    assert_eq!(ok.labels(), &labels(&[("team", "core")]));
    assert_eq!(ok.state(), RuleState::Inactive);

    let bad = |s: RuleSpec, needle: &str| {
        let e = Rule::new(s).expect_err("invalid");
        assert!(matches!(e, RuleError::InvalidRule { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    };
    bad(
        RuleSpec {
            name: " ".into(),
            ..spec("error_rate > 1", 0)
        },
        "needs a name",
    );
    bad(spec("error_rate >", 0), "column 13");
    bad(
        RuleSpec {
            window_ms: 0,
            ..spec("error_rate > 1", 0)
        },
        "window must be positive",
    );
    bad(spec("error_rate > 1", -1), "for must be zero or positive");
    bad(
        RuleSpec {
            severity: String::new(),
            ..spec("error_rate > 1", 0)
        },
        "severity",
    );
    bad(
        RuleSpec {
            labels: labels(&[("bad-name", "x")]),
            ..spec("error_rate > 1", 0)
        },
        "invalid label name `bad-name`",
    );
}

#[test]
fn for_zero_fires_on_the_first_true_evaluation() {
    let mut r = Rule::new(spec("error_rate > 0.05", 0)).expect("valid");
    assert_eq!(r.evaluate(Some(0.01), 1_000), None);
    assert_eq!(
        r.evaluate(Some(0.10), 2_000),
        Some(RuleTransition::Fired {
            value: 0.10,
            since: 2_000
        })
    );
    assert_eq!(r.state(), RuleState::Firing(2_000));
    assert_eq!(r.evaluate(Some(0.20), 3_000), None);
    assert_eq!(
        r.evaluate(Some(0.05), 4_000),
        Some(RuleTransition::Resolved { value: Some(0.05) })
    );
    assert_eq!(r.state(), RuleState::Inactive);
}

#[test]
fn for_holds_the_rule_pending_until_it_elapses() {
    let mut r = Rule::new(spec("error_rate > 0.05", 60_000)).expect("valid");
    assert_eq!(r.evaluate(Some(0.1), 0), None);
    assert_eq!(r.state(), RuleState::Pending(0));
    assert_eq!(r.evaluate(Some(0.1), 59_999), None);
    assert_eq!(r.state(), RuleState::Pending(0));
    assert_eq!(
        r.evaluate(Some(0.2), 60_000),
        Some(RuleTransition::Fired {
            value: 0.2,
            since: 0
        })
    );
    assert_eq!(r.state(), RuleState::Firing(0));
}

#[test]
fn a_false_evaluation_resets_the_hold() {
    let mut r = Rule::new(spec("error_rate > 0.05", 60_000)).expect("valid");
    r.evaluate(Some(0.1), 0);
    assert_eq!(r.evaluate(Some(0.01), 30_000), None);
    assert_eq!(r.state(), RuleState::Inactive);
    r.evaluate(Some(0.1), 40_000);
    assert_eq!(
        r.evaluate(Some(0.1), 60_000),
        None,
        "the hold restarted at 40 s"
    );
    assert_eq!(
        r.evaluate(Some(0.1), 100_000),
        Some(RuleTransition::Fired {
            value: 0.1,
            since: 40_000
        })
    );
}

#[test]
fn missing_data_counts_as_false() {
    let mut r = Rule::new(spec("error_rate > 0.05", 60_000)).expect("valid");
    r.evaluate(Some(0.1), 0);
    assert_eq!(r.evaluate(None, 30_000), None);
    assert_eq!(r.state(), RuleState::Inactive);

    let mut r = Rule::new(spec("error_rate > 0.05", 0)).expect("valid");
    assert!(matches!(
        r.evaluate(Some(0.1), 0),
        Some(RuleTransition::Fired { .. })
    ));
    assert_eq!(
        r.evaluate(None, 10_000),
        Some(RuleTransition::Resolved { value: None })
    );
    assert_eq!(r.evaluate(None, 20_000), None);
    // NaN never satisfies a comparison.
    assert_eq!(r.evaluate(Some(f64::NAN), 30_000), None);
    assert_eq!(r.state(), RuleState::Inactive);
}

#[test]
fn restored_state_continues_the_hold() {
    let mut r = Rule::new(spec("request_rate < 1", 60_000)).expect("valid");
    r.restore_state(RuleState::Pending(10_000));
    assert_eq!(
        r.evaluate(Some(0.5), 70_000),
        Some(RuleTransition::Fired {
            value: 0.5,
            since: 10_000
        })
    );
    r.restore_state(RuleState::Firing(10_000));
    assert_eq!(
        r.evaluate(Some(0.5), 80_000),
        None,
        "no second notification"
    );
}

#[test]
fn comparison_operators() {
    for (op, value, expect) in [
        (">", 2.0, true),
        (">", 1.0, false),
        (">=", 1.0, true),
        ("<", 0.5, true),
        ("<=", 1.0, true),
        ("<=", 1.5, false),
        ("==", 1.0, true),
        ("==", 1.5, false),
        ("!=", 1.5, true),
        ("!=", 1.0, false),
    ] {
        let c = Condition::parse(&format!("queue_depth {op} 1")).expect("valid");
        assert_eq!(c.holds(value), expect, "{value} {op} 1");
        assert!(!c.holds(f64::NAN), "NaN {op} 1");
    }
}

#[test]
fn conditions_say_whether_they_need_a_scrape() {
    for (expr, scraped) in [
        ("error_rate > 0.05", false),
        ("p99_latency > 0.5", false),
        ("rate(proxy.requests) < 1", false),
        ("queue_depth > 10", true),
        (r#"rate(http_requests_total{code=~"5.."}) > 2"#, true),
        ("histogram_quantile(0.9, request_seconds) > 1", true),
        // A ratio reads a scrape when either side is scraped.
        ("ratio(jobs_failed_total, proxy.requests) > 0.1", true),
        ("ratio(proxy.errors, jobs_total) > 0.1", true),
    ] {
        let c = Condition::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        assert_eq!(c.reads_scraped(), scraped, "{expr}");
    }
}
