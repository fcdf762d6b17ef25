//! Judging one analysis window against the thresholds: a pure function from figures to a
//! verdict, with the figures that justify it.

use serde_json::{Value, json};

use crate::observe::{VersionWindow, WindowStats};
use crate::output::Reason;
use crate::spec::Analysis;

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough requests and every threshold held.
    Pass {
        /// The figures judged.
        figures: Value,
    },
    /// A threshold was crossed (error rate is checked before latency).
    Fail {
        /// Which threshold, with its figures.
        reason: Reason,
        /// The figures judged.
        figures: Value,
    },
    /// The window cannot be judged: fewer than `min_requests` candidate requests, no figures
    /// at all, or no latency estimate while a latency threshold is set.
    Insufficient {
        /// Candidate requests seen (0 without figures).
        requests: u64,
        /// The figures available.
        figures: Value,
    },
}

/// Judges `stats` (the current window's figures, if any) against `analysis`.
///
/// Order: too few requests (or no figures) → `Insufficient`; then error rate above
/// `max_error_rate` → `Fail`; then, when `max_latency_ms` is set, no latency estimate →
/// `Insufficient` and latency above it → `Fail`; otherwise `Pass`. Thresholds are strict:
/// a rate exactly at the threshold passes.
pub fn evaluate(analysis: &Analysis, stats: Option<&WindowStats>) -> Verdict {
    let Some(stats) = stats else {
        return Verdict::Insufficient {
            requests: 0,
            figures: json!({
                "requests": 0,
                "min_requests": analysis.min_requests,
                "figures": "unavailable",
            }),
        };
    };
    let c = &stats.candidate;
    let requests = c.requests;
    // A proxy never reports more errors than requests; clamp rather than trust it.
    let errors = c.errors.min(requests);
    let error_rate = rate(errors, requests);
    let latency = clean_latency(c);
    let mut figures = json!({
        "requests": requests,
        "errors": errors,
        "error_rate": error_rate,
        "latency_ms": latency,
        "quantile": analysis.latency_quantile,
        "max_error_rate": analysis.max_error_rate,
        "max_latency_ms": analysis.max_latency_ms,
        "min_requests": analysis.min_requests,
        "stable": version_figures(&stats.stable),
    });
    if requests < analysis.min_requests || requests == 0 {
        return Verdict::Insufficient { requests, figures };
    }
    if error_rate > analysis.max_error_rate {
        set(&mut figures, "failed", json!("error_rate"));
        set(&mut figures, "threshold", json!(analysis.max_error_rate));
        return Verdict::Fail {
            reason: Reason::ErrorRate {
                error_rate,
                threshold: analysis.max_error_rate,
                requests,
                errors,
            },
            figures,
        };
    }
    if let Some(max) = analysis.max_latency_ms {
        let Some(latency_ms) = latency else {
            return Verdict::Insufficient { requests, figures };
        };
        if latency_ms > max {
            set(&mut figures, "failed", json!("latency"));
            set(&mut figures, "threshold", json!(max));
            return Verdict::Fail {
                reason: Reason::Latency {
                    latency_ms,
                    threshold_ms: max,
                    quantile: analysis.latency_quantile,
                    requests,
                },
                figures,
            };
        }
    }
    Verdict::Pass { figures }
}

fn rate(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        // Precision loss above 2^53 requests is irrelevant for a rate.
        errors as f64 / requests as f64
    }
}

fn clean_latency(v: &VersionWindow) -> Option<f64> {
    v.latency_ms_at_quantile
        .filter(|l| l.is_finite() && *l >= 0.0)
}

fn version_figures(v: &VersionWindow) -> Value {
    let errors = v.errors.min(v.requests);
    json!({
        "requests": v.requests,
        "errors": errors,
        "error_rate": rate(errors, v.requests),
        "latency_ms": clean_latency(v),
    })
}

fn set(figures: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = figures {
        map.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InsufficientPolicy;

    fn analysis() -> Analysis {
        Analysis {
            max_error_rate: 0.05,
            max_latency_ms: Some(300.0),
            latency_quantile: 0.99,
            min_requests: 100,
            insufficient_traffic: InsufficientPolicy::Fail,
            max_wait_ms: 0,
            interval_ms: 1000,
        }
    }

    fn stats(requests: u64, errors: u64, latency: Option<f64>) -> WindowStats {
        WindowStats {
            window: 1,
            candidate: VersionWindow {
                requests,
                errors,
                latency_ms_at_quantile: latency,
            },
            stable: VersionWindow {
                requests: 1000,
                errors: 1,
                latency_ms_at_quantile: Some(20.0),
            },
        }
    }

    #[test]
    fn verdicts_table() {
        let a = analysis();
        // (requests, errors, latency, expected kind)
        let table: &[(u64, u64, Option<f64>, &str)] = &[
            (0, 0, None, "insufficient"),
            (99, 99, Some(1000.0), "insufficient"),
            (100, 5, Some(300.0), "pass"),
            (100, 6, Some(10.0), "error_rate"),
            (412, 87, Some(10.0), "error_rate"),
            (100, 0, Some(300.5), "latency"),
            (100, 50, Some(900.0), "error_rate"),
            (100, 0, None, "insufficient"),
            (100, 0, Some(f64::NAN), "insufficient"),
            (100, 0, Some(-1.0), "insufficient"),
            (100, 0, Some(f64::INFINITY), "insufficient"),
            (100, 500, Some(1.0), "error_rate"),
        ];
        for &(requests, errors, latency, want) in table {
            let got = match evaluate(&a, Some(&stats(requests, errors, latency))) {
                Verdict::Pass { .. } => "pass",
                Verdict::Insufficient { .. } => "insufficient",
                Verdict::Fail { reason, .. } => reason.as_str(),
            };
            assert_eq!(
                got, want,
                "{requests} requests, {errors} errors, {latency:?}"
            );
        }
        assert!(matches!(
            evaluate(&a, None),
            Verdict::Insufficient { requests: 0, .. }
        ));
    }

    #[test]
    fn failure_carries_figures() {
        let v = evaluate(&analysis(), Some(&stats(412, 87, Some(10.0))));
        let Verdict::Fail { reason, figures } = v else {
            panic!("expected a failure, got {v:?}");
        };
        assert_eq!(
            reason,
            Reason::ErrorRate {
                error_rate: 87.0 / 412.0,
                threshold: 0.05,
                requests: 412,
                errors: 87
            }
        );
        assert_eq!(figures["requests"], 412);
        assert_eq!(figures["threshold"], 0.05);
        assert_eq!(figures["failed"], "error_rate");
        assert_eq!(figures["stable"]["requests"], 1000);
        assert_eq!(
            reason.to_string(),
            "error rate 21.12% over 412 requests is above 5.00%"
        );
    }

    #[test]
    fn no_latency_threshold_ignores_latency() {
        let mut a = analysis();
        a.max_latency_ms = None;
        assert!(matches!(
            evaluate(&a, Some(&stats(100, 0, None))),
            Verdict::Pass { .. }
        ));
    }
}
