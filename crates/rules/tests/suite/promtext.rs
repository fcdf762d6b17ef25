//! The Prometheus text format parser: a realistic exposition, escapes and special values,
//! line-numbered errors, and input limits.

use sluice_rules::promtext::{self, Limits, PromTextError};
use sluice_rules::{MetricType, Sample};

use crate::labels;

const EXPOSITION: &str = "\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000
http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem=\"division by zero\"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.05\"} 24054
http_request_duration_seconds_bucket{le=\"0.1\"} 33444
http_request_duration_seconds_bucket{le=\"+Inf\"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.01\"} 3102
rpc_duration_seconds{quantile=\"0.99\"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
\tindented_gauge{a=\"b\",} NaN
neg -Inf
";

#[test]
fn parses_a_full_exposition() {
    let e = promtext::parse(EXPOSITION).expect("valid");
    assert_eq!(e.samples.len(), 16);
    assert_eq!(
        e.samples[0],
        Sample {
            name: "http_requests_total".into(),
            labels: labels(&[("method", "post"), ("code", "200")]),
            value: 1027.0,
            timestamp_ms: Some(1_395_066_363_000),
        }
    );
    assert_eq!(e.samples[1].value, 3.0);
    assert_eq!(
        e.samples[2].labels,
        labels(&[
            ("path", r"C:\DIR\FILE.TXT"),
            ("error", "Cannot find file:\n\"FILE.TXT\"")
        ])
    );
    assert_eq!(e.samples[2].value, 1.458255915e9);
    assert_eq!(
        (e.samples[3].value, e.samples[3].timestamp_ms),
        (12.47, None)
    );
    assert_eq!(
        (e.samples[4].value, e.samples[4].timestamp_ms),
        (f64::INFINITY, Some(-3_982_045))
    );
    assert!(e.samples[14].value.is_nan());
    assert_eq!(e.samples[14].labels, labels(&[("a", "b")]));
    assert_eq!(e.samples[15].value, f64::NEG_INFINITY);

    assert_eq!(e.types["http_requests_total"], MetricType::Counter);
    assert_eq!(e.types["rpc_duration_seconds"], MetricType::Summary);
    assert_eq!(
        e.help["http_requests_total"],
        "The total number of HTTP requests."
    );
    assert_eq!(
        e.family_of("http_request_duration_seconds_bucket"),
        ("http_request_duration_seconds", MetricType::Histogram)
    );
    assert_eq!(
        e.family_of("rpc_duration_seconds_count"),
        ("rpc_duration_seconds", MetricType::Summary)
    );
    assert_eq!(
        e.family_of("rpc_duration_seconds_bucket"),
        ("rpc_duration_seconds_bucket", MetricType::Untyped)
    );
    assert_eq!(e.family_of("neg"), ("neg", MetricType::Untyped));
}

#[test]
fn windows_line_endings_and_help_escapes() {
    let text =
        "# HELP a Line one\\nwith \\\\ backslash\r\n# TYPE a gauge\r\na 1\r\n\r\na{x=\"y\"} 2\r\n";
    let e = promtext::parse(text).expect("valid");
    assert_eq!(e.samples.len(), 2);
    assert_eq!(e.help["a"], "Line one\nwith \\ backslash");
    assert_eq!(e.samples[1].labels, labels(&[("x", "y")]));
    // A bare `\r` inside a line is not a line ending: the value token is then invalid.
    assert!(promtext::parse("a 1\rb 2\n").is_err());
}

#[test]
fn other_comments_are_ignored() {
    let e =
        promtext::parse("#HELP a x\n# HELPER text\n#\n# EOF\n# TYPEa gauge\na 1\n").expect("valid");
    assert_eq!(e.samples.len(), 1);
    assert!(e.help.is_empty() && e.types.is_empty());
}

/// Asserts `text` fails on `line` with a message containing `needle`.
fn check_err(text: &str, line: usize, needle: &str) {
    match promtext::parse(text) {
        Err(PromTextError::Syntax { line: l, message }) => {
            assert_eq!(l, line, "line for {text:?} ({message})");
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} lacks {needle:?}"
            );
        }
        other => panic!("{text:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn errors_name_the_line_and_the_problem() {
    check_err("a 1\nb\n", 2, "has no value");
    check_err("a one\n", 1, "invalid value `one`");
    check_err("a 1 12.5\n", 1, "invalid timestamp");
    check_err("a 1 2 3\n", 1, "unexpected `3`");
    check_err("\n\n9a 1\n", 3, "expected a metric name");
    check_err("a{x=\"1\" 1\n", 1, "expected `,` or `}`");
    check_err("a{x=1} 1\n", 1, "must be in double quotes");
    check_err("a{x\"1\"} 1\n", 1, "expected `=`");
    check_err("a{x=\"1\\t\"} 1\n", 1, "invalid escape");
    check_err("a{x=\"1} 1\n", 1, "no closing");
    check_err("a{x=\"1\",x=\"2\"} 1\n", 1, "appears twice");
    check_err("a{-x=\"1\"} 1\n", 1, "expected a label name");
    check_err("a-b 1\n", 1, "must be followed by");
    check_err("# TYPE a gauge\n# TYPE a counter\n", 2, "second `# TYPE`");
    check_err("# HELP a x\n# HELP a y\n", 2, "second `# HELP`");
    check_err("# TYPE a gauges\n", 1, "unknown type `gauges`");
    check_err("# TYPE 1a gauge\n", 1, "needs a metric name");
    check_err("# TYPE h histogram\nh_bucket 1\n", 2, "needs a `le` label");
    check_err(
        "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
        2,
        "must be a number",
    );
    check_err("# TYPE s summary\ns 1\n", 2, "needs a `quantile` label");
    check_err("a{} 1\nb{ 1\n", 2, "expected a label name or `}`");
}

#[test]
fn limits_bound_the_work() {
    let small = Limits {
        max_samples: 2,
        max_labels: 2,
        max_line_bytes: 40,
    };
    let too_many = "a 1\nb 2\nc 3\n";
    assert!(matches!(
        promtext::parse_with_limits(too_many, &small),
        Err(PromTextError::Limit { line: 3, .. })
    ));
    let long = format!("a{{x=\"{}\"}} 1\n", "y".repeat(100));
    assert!(matches!(
        promtext::parse_with_limits(&long, &small),
        Err(PromTextError::Limit { line: 1, .. })
    ));
    let labels = "a{x=\"1\",y=\"2\",z=\"3\"} 1\n";
    let err = promtext::parse_with_limits(labels, &small).expect_err("too many labels");
    assert!(err.to_string().contains("more than 2 labels"), "{err}");
    assert!(promtext::parse_with_limits("a 1\nb 2\n", &small).is_ok());
}
