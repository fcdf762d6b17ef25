//! The integration test suite of `sluice-rules`, one binary (faster to link) with a module per
//! area: matchers, silences, flapping, rules and series, the Prometheus text parser, and the
//! property-based fuzzing of every parser.

mod flapping;
mod fuzz;
mod matcher;
mod promtext;
mod rule;
mod series;
mod silence;

use sluice_rules::Labels;

/// Builds a label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Unix milliseconds of an RFC 3339 UTC instant, e.g. `2025-06-01T00:30:00Z`.
pub fn ts(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .expect("test timestamp")
        .as_millisecond()
}
