//! `sluice-rules`: the pure decision logic behind sluice's monitoring and incident management.
//!
//! This crate answers four questions for the server, always from data the caller hands in:
//!
//! * does an alert's label set match a set of label matchers ([`matcher`]);
//! * is an alert muted by a silence or a recurring maintenance window ([`silence`]);
//! * is an alert flapping, i.e. changing state too often to be worth paging on ([`flapping`]);
//! * does an alert rule fire, given the metric samples collected for a service ([`rule`]),
//!   with a parser for the Prometheus text exposition format that feeds it ([`promtext`]).
//!
//! Architecture invariant: the crate is pure. It does no IO, reads no clock and no environment
//! variable, spawns nothing and keeps no global state. Time is always passed in as `now_ms`
//! (Unix epoch milliseconds); time zones come from the IANA database compiled into the binary,
//! never from the host's `/usr/share/zoneinfo`, so every answer is reproducible.
//!
//! What it deliberately does NOT do: scrape, store durably, schedule, notify, or define wire
//! formats (JSON/YAML shapes belong to the server and its API crate). It also does not try to be
//! PromQL: the rule language is a small fixed set of functions over one service's metrics.

pub mod flapping;
mod lex;
pub mod matcher;
pub mod promtext;
pub mod rule;
pub mod silence;

/// A set of labels, ordered by name so that formatting and comparison are deterministic.
pub type Labels = std::collections::BTreeMap<String, String>;

pub use flapping::{AlertState, FlapChange, FlapConfig, FlapConfigError, FlapDetector};
pub use matcher::{MatchOp, Matcher, MatcherError, format_matchers, parse_matchers};
pub use promtext::{Exposition, Limits, MetricType, PromTextError, Sample};
pub use rule::{
    Aggregation, CmpOp, Condition, Histogram, Metric, MetricStore, ProxyMetric, ProxySnapshot,
    Rule, RuleError, RuleSpec, RuleState, RuleTransition, Series, histogram_quantile,
};
pub use silence::{Recurrence, Silence, SilenceError, Weekly, parse_weekday};
