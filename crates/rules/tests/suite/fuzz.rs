//! Property tests: every parser survives arbitrary input without panicking, canonical text
//! round-trips, `next_transition` agrees with `is_active`, and the bounded flap detector agrees
//! with an unbounded reference model.

use jiff::civil::Weekday;
use proptest::prelude::*;
use sluice_rules::promtext;
use sluice_rules::{
    Aggregation, AlertState, CmpOp, Condition, FlapChange, FlapConfig, FlapDetector, Labels,
    MatchOp, Matcher, Metric, ProxyMetric, Recurrence, Silence, parse_matchers,
};

const CASES: u32 = 1000;

/// Text built from the characters the grammars care about, so that fuzzing reaches deep into
/// the parsers instead of failing on the first character.
fn grammarish() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[a-z_:.{}()=!~<>",\\ \t\n\r0-9eE+\-#äé]{0,60}"#)
        .expect("valid strategy regex")
}

fn label_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z_][a-zA-Z0-9_]{0,8}").expect("valid strategy regex")
}

fn metric_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z_:][a-zA-Z0-9_:]{0,10}").expect("valid strategy regex")
}

/// Values with the characters that need escaping, and non-ASCII.
fn label_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[a-z0-9 "\\\n\t.*,}{=é]{0,12}"#)
        .expect("valid strategy regex")
}

fn matcher() -> impl Strategy<Value = Matcher> {
    let op = prop_oneof![
        Just(MatchOp::Eq),
        Just(MatchOp::Ne),
        Just(MatchOp::Re),
        Just(MatchOp::NotRe)
    ];
    (label_name(), op, label_value()).prop_filter_map("value is not a valid regex", |(n, op, v)| {
        Matcher::new(n, op, v).ok()
    })
}

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        (metric_name(), proptest::collection::vec(matcher(), 0..3))
            .prop_map(|(name, matchers)| Metric::Scraped { name, matchers }),
    ]
}

fn counter_metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        3 => metric(),
        1 => Just(Metric::Proxy(ProxyMetric::Requests)),
        1 => Just(Metric::Proxy(ProxyMetric::Errors)),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
        (-1000i32..1000).prop_map(|v| f64::from(v) / 100.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    let op = prop_oneof![
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Eq),
        Just(CmpOp::Ne)
    ];
    let quantile = prop_oneof![
        (0u32..=1000).prop_map(|v| f64::from(v) / 1000.0),
        0.0..=1.0f64
    ];
    let query = prop_oneof![
        counter_metric().prop_map(|m| (m, Aggregation::Rate)),
        counter_metric().prop_map(|m| (m, Aggregation::Increase)),
        (counter_metric(), counter_metric())
            .prop_map(|(m, d)| (m, Aggregation::Ratio { denominator: d })),
        (
            prop_oneof![metric(), Just(Metric::Proxy(ProxyMetric::Latency))],
            quantile
        )
            .prop_map(|(m, q)| (m, Aggregation::Quantile(q))),
        metric().prop_map(|m| (m, Aggregation::Avg)),
        metric().prop_map(|m| (m, Aggregation::Max)),
        metric().prop_map(|m| (m, Aggregation::Min)),
        metric().prop_map(|m| (m, Aggregation::Last)),
    ];
    (query, op, number()).prop_map(|((metric, aggregation), op, threshold)| Condition {
        metric,
        aggregation,
        op,
        threshold,
    })
}

/// One metric family as the test renders it: name, type, and samples (suffix, labels, value).
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: &'static str,
    help: Option<String>,
    samples: Vec<(Labels, f64, Option<i64>)>,
}

fn family() -> impl Strategy<Value = Family> {
    let kind = prop_oneof![
        Just("counter"),
        Just("gauge"),
        Just("untyped"),
        Just("histogram")
    ];
    let labels = proptest::collection::btree_map(
        label_name().prop_filter("le is reserved for buckets", |n| n != "le"),
        label_value(),
        0..3,
    );
    let value = prop_oneof![number(), Just(f64::NAN)];
    let sample = (labels, value, proptest::option::of(any::<i64>()));
    (
        metric_name(),
        kind,
        proptest::option::of(proptest::string::string_regex(r"[a-zA-Z \\\n.]{0,20}").expect("re")),
        proptest::collection::vec(sample, 1..4),
    )
        .prop_map(|(name, kind, help, samples)| Family {
            name,
            kind,
            help,
            samples,
        })
}

fn quote(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:e}")
    }
}

/// Renders families as an exposition and returns the samples a parser must find, in order.
fn render(families: &[Family]) -> (String, Vec<promtext::Sample>) {
    let mut text = String::new();
    let mut expect = Vec::new();
    for f in families {
        if let Some(h) = &f.help {
            text.push_str(&format!(
                "# HELP {} {}\n",
                f.name,
                h.replace('\\', r"\\").replace('\n', r"\n")
            ));
        }
        text.push_str(&format!("# TYPE {} {}\r\n", f.name, f.kind));
        for (i, (labels, value, ts)) in f.samples.iter().enumerate() {
            let (name, labels) = if f.kind == "histogram" {
                let mut l = labels.clone();
                l.insert("le".into(), render_value(i as f64 * 0.5));
                (format!("{}_bucket", f.name), l)
            } else {
                (f.name.clone(), labels.clone())
            };
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", quote(v)))
                .collect();
            let ts_text = ts.map_or(String::new(), |t| format!(" {t}"));
            text.push_str(&format!(
                "{name}{{{}}}\t{}{ts_text}\n",
                body.join(","),
                render_value(*value)
            ));
            expect.push(promtext::Sample {
                name,
                labels,
                value: *value,
                timestamp_ms: *ts,
            });
        }
        text.push('\n');
    }
    (text, expect)
}

fn same_sample(a: &promtext::Sample, b: &promtext::Sample) -> bool {
    a.name == b.name
        && a.labels == b.labels
        && a.timestamp_ms == b.timestamp_ms
        && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn matcher_parser_never_panics(s in any::<String>(), g in grammarish()) {
        let _ = parse_matchers(&s);
        let _ = parse_matchers(&g);
        let _ = g.parse::<Matcher>();
    }

    #[test]
    fn matcher_display_round_trips(ms in proptest::collection::vec(matcher(), 0..4), v in label_value()) {
        let text = sluice_rules::format_matchers(&ms);
        let back = parse_matchers(&text).expect("canonical text parses");
        prop_assert_eq!(&back, &ms);
        for (a, b) in ms.iter().zip(&back) {
            prop_assert_eq!(a.matches_value(&v), b.matches_value(&v));
        }
    }

    #[test]
    fn condition_parser_never_panics(s in any::<String>(), g in grammarish()) {
        let _ = Condition::parse(&s);
        let _ = Condition::parse(&g);
        let _ = Condition::parse(&format!("rate(x{{{g}}}) > 1"));
        let _ = Condition::parse(&format!("histogram_quantile({g}"));
    }

    #[test]
    fn condition_display_round_trips(c in condition()) {
        let text = c.to_string();
        let back = Condition::parse(&text);
        prop_assert_eq!(back, Ok(c), "text {:?}", text);
    }

    #[test]
    fn promtext_parser_never_panics(s in any::<String>(), g in grammarish()) {
        let _ = promtext::parse(&s);
        let _ = promtext::parse(&g);
        let _ = promtext::parse(&format!("# TYPE h histogram\nh_bucket{{{g}}} 1\n"));
    }

    #[test]
    fn promtext_round_trips(families in proptest::collection::vec(family(), 1..4)) {
        // Family names must be unique for `# TYPE` lines; skip generated duplicates.
        let mut names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        prop_assume!(names.len() == families.len());
        let (text, expect) = render(&families);
        let parsed = promtext::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
        let parsed = parsed.expect("checked");
        prop_assert_eq!(parsed.samples.len(), expect.len());
        for (a, b) in parsed.samples.iter().zip(&expect) {
            prop_assert!(same_sample(a, b), "{:?} != {:?}\n{}", a, b, text);
        }
        for f in &families {
            prop_assert_eq!(parsed.types[&f.name].as_str(), f.kind);
            // Blanks around a help text are not significant in the format.
            let help = f.help.as_deref().map(|h| h.trim_matches(' '));
            prop_assert_eq!(parsed.help.get(&f.name).map(String::as_str), help);
        }
    }

    #[test]
    fn next_transition_agrees_with_is_active(
        day_bits in 1u8..128,
        start in (0i8..24, 0i8..60),
        end in (0i8..24, 0i8..60),
        zone in prop_oneof![Just("Europe/Berlin"), Just("America/New_York"), Just("Australia/Lord_Howe"), Just("UTC")],
        // 2024-01-01 to 2026-01-01, with the silence's range somewhere inside.
        now in 1_704_067_200_000i64..1_767_225_600_000,
        range in (1_704_067_200_000i64..1_767_225_600_000, 1i64..20_000_000_000),
    ) {
        let all = [Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday,
            Weekday::Friday, Weekday::Saturday, Weekday::Sunday];
        let days: Vec<Weekday> = all.iter().enumerate()
            .filter(|(i, _)| day_bits & (1 << i) != 0).map(|(_, d)| *d).collect();
        let rec = Recurrence::weekly(
            &days,
            &format!("{:02}:{:02}", start.0, start.1),
            &format!("{:02}:{:02}", end.0, end.1),
            zone,
        ).expect("valid recurrence");
        let m = parse_matchers("a=\"b\"").expect("valid");
        let s = Silence::new(m, range.0, range.0 + range.1, Some(rec)).expect("valid");
        let active = s.is_active(now);
        match s.next_transition(now) {
            Some(t) => {
                prop_assert!(t > now);
                prop_assert_ne!(s.is_active(t), active, "state must change at {}", t);
                prop_assert_eq!(s.is_active(t - 1), active, "state must hold until {}", t);
                // And at a few points in between.
                for k in 1..8 {
                    let p = now + (t - now) / 8 * k;
                    prop_assert_eq!(s.is_active(p), active, "changed early at {}", p);
                }
            }
            None => {
                // Never changes again: sample the rest of the range.
                for k in 1..8 {
                    let p = now + 3_600_000 * 7 * k;
                    prop_assert_eq!(s.is_active(p), active, "changed at {}", p);
                }
            }
        }
    }

    #[test]
    fn bounded_flap_detector_matches_an_unbounded_model(
        steps in proptest::collection::vec((0i64..400_000, any::<bool>(), any::<bool>()), 1..200),
        enter in 2usize..6,
        leave_gap in 1usize..3,
    ) {
        let leave = enter.saturating_sub(leave_gap);
        let window = 600_000;
        let config = FlapConfig::new(window, enter, leave).expect("valid");
        let mut d = FlapDetector::new(config);
        let (mut all, mut last, mut flapping, mut now) = (Vec::new(), None, false, 0i64);
        for (dt, firing, is_tick) in steps {
            now += dt;
            let got = if is_tick {
                d.tick(now)
            } else {
                let state = if firing { AlertState::Firing } else { AlertState::Resolved };
                if last != Some(state) {
                    last = Some(state);
                    all.push(now);
                }
                d.record(state, now)
            };
            let count = all.iter().filter(|&&t| now - t < window).count();
            let expect = if !flapping && count >= enter {
                flapping = true;
                FlapChange::Started
            } else if flapping && count <= leave {
                flapping = false;
                FlapChange::Stopped
            } else {
                FlapChange::None
            };
            prop_assert_eq!(got, expect, "at {} with {} changes in the window", now, count);
            prop_assert_eq!(d.is_flapping(), flapping);
        }
    }
}
