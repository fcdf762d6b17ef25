//! Alert rules over a service's metrics: the condition language, the sample store it is
//! evaluated against, and the Prometheus-like pending/firing state machine.
//!
//! # Conditions
//!
//! A condition is `query op threshold`, with `op` one of `>`, `>=`, `<`, `<=`, `==`, `!=`, and
//! a number (`0.05`, `1e-3`, `+Inf`) as threshold. Queries, evaluated over the rule's window:
//!
//! | query | meaning |
//! | --- | --- |
//! | `error_rate` | failed / all proxied requests (`ratio(proxy.errors, proxy.requests)`); no requests: no value |
//! | `request_rate` | proxied requests per second (`rate(proxy.requests)`) |
//! | `p99_latency`, `p50_latency`, `p999_latency` | latency quantile in seconds from the proxy histogram (`p` and 2-4 digits, read as `0.<digits>`) |
//! | `rate(m)`, `increase(m)` | per-second rate / increase of a counter |
//! | `ratio(a, b)` | increase of `a` divided by increase of `b` |
//! | `histogram_quantile(q, m)` | quantile of a histogram's observations in the window |
//! | `avg(m)`, `max(m)`, `min(m)`, `last(m)` | of a gauge's samples in the window |
//! | `m` | same as `last(m)` |
//!
//! `m` is a scraped metric name with optional matchers (`http_requests_total{code=~"5.."}`) or
//! one of the proxy's metrics `proxy.requests`, `proxy.errors` (counters) and `proxy.latency`
//! (histogram). A name with a dot can never collide with a Prometheus metric name.
//!
//! # State machine
//!
//! Like Prometheus: when the condition becomes true a rule goes `Pending(since)`; once it has
//! held for `for_ms` it goes `Firing(since)` and [`Rule::evaluate`] returns
//! [`RuleTransition::Fired`]. When it stops holding, a pending rule silently returns to
//! `Inactive` and a firing one returns [`RuleTransition::Resolved`]. `since` is when the
//! condition was first seen true; the firing time is the `now_ms` of the evaluation that
//! returned `Fired`. With `for_ms == 0` a rule fires on the first true evaluation.
//!
//! Missing data (no value: no samples, no requests for a ratio) counts as false: a pending rule
//! resets and a firing rule resolves. Alert on absence explicitly (e.g. `request_rate < 0.01`
//! with traffic you expect) rather than relying on missing data.

mod expr;
mod series;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::Labels;
use crate::lex::{format_float, is_label_name};
use crate::matcher::{Matcher, format_matchers};

pub use series::{
    DEFAULT_MAX_SAMPLES, DEFAULT_MAX_SERIES, Histogram, MetricStore, ProxySnapshot, Series,
    histogram_quantile,
};

/// Why a rule, condition or histogram is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The condition text is malformed at `column` (1-based, in characters).
    #[error("column {column}: {message}")]
    Syntax {
        /// 1-based character column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A rule field is invalid.
    #[error("rule `{rule}`: {message}")]
    InvalidRule {
        /// The rule's name (may be empty when that is the problem).
        rule: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A histogram snapshot is malformed.
    #[error("invalid histogram: {message}")]
    InvalidHistogram {
        /// What is wrong.
        message: String,
    },
}

/// A metric of the proxy itself, per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyMetric {
    /// `proxy.requests`: requests served (counter).
    Requests,
    /// `proxy.errors`: requests answered 5xx or not answered (counter).
    Errors,
    /// `proxy.latency`: request latency in seconds (histogram).
    Latency,
}

impl ProxyMetric {
    /// The name used in conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMetric::Requests => "proxy.requests",
            ProxyMetric::Errors => "proxy.errors",
            ProxyMetric::Latency => "proxy.latency",
        }
    }
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// One of the proxy's own metrics.
    Proxy(ProxyMetric),
    /// Series scraped from the service, selected by name and label matchers.
    Scraped {
        /// Metric (family) name.
        name: String,
        /// Label matchers; all must match.
        matchers: Vec<Matcher>,
    },
}

/// How the samples in the window become one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Per-second increase of a counter.
    Rate,
    /// Increase of a counter.
    Increase,
    /// Increase of the metric divided by the increase of `denominator`.
    Ratio {
        /// The counter to divide by.
        denominator: Metric,
    },
    /// Quantile (0..=1) of a histogram's observations.
    Quantile(f64),
    /// Mean of a gauge.
    Avg,
    /// Maximum of a gauge.
    Max,
    /// Minimum of a gauge.
    Min,
    /// Newest value of a gauge.
    Last,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    /// Applies the comparison; any comparison with NaN is false.
    pub fn compare(self, value: f64, threshold: f64) -> bool {
        if value.is_nan() || threshold.is_nan() {
            return false;
        }
        match self {
            CmpOp::Gt => value > threshold,
            CmpOp::Ge => value >= threshold,
            CmpOp::Lt => value < threshold,
            CmpOp::Le => value <= threshold,
            CmpOp::Eq => value == threshold,
            CmpOp::Ne => value != threshold,
        }
    }
}

/// A parsed condition: `aggregation(metric) op threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// What is read.
    pub metric: Metric,
    /// How the window's samples become one value.
    pub aggregation: Aggregation,
    /// The comparison.
    pub op: CmpOp,
    /// The threshold (never NaN when parsed).
    pub threshold: f64,
}

impl Condition {
    /// Parses condition text; errors carry the 1-based column.
    pub fn parse(text: &str) -> Result<Condition, RuleError> {
        expr::parse_condition(text)
    }

    /// Whether `value` satisfies the condition.
    pub fn holds(&self, value: f64) -> bool {
        self.op.compare(value, self.threshold)
    }

    /// The query's value over the window ending at `now_ms`, or `None` without data.
    pub fn value(&self, store: &MetricStore, window_ms: i64, now_ms: i64) -> Option<f64> {
        store.value(&self.metric, &self.aggregation, window_ms, now_ms)
    }

    /// Whether the condition reads a metric scraped from the service (its own or, for
    /// `ratio`, the denominator's), so the caller knows whether a scrape must feed it.
    pub fn reads_scraped(&self) -> bool {
        let scraped = |m: &Metric| matches!(m, Metric::Scraped { .. });
        scraped(&self.metric)
            || matches!(&self.aggregation, Aggregation::Ratio { denominator } if scraped(denominator))
    }
}

impl FromStr for Condition {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Condition::parse(s)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Proxy(p) => f.write_str(p.as_str()),
            Metric::Scraped { name, matchers } if matchers.is_empty() => f.write_str(name),
            Metric::Scraped { name, matchers } => write!(f, "{name}{}", format_matchers(matchers)),
        }
    }
}

impl fmt::Display for Condition {
    /// Writes the canonical text, which parses back to an equal condition.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Aggregation as A;
        use ProxyMetric as P;
        let m = &self.metric;
        match &self.aggregation {
            A::Ratio {
                denominator: Metric::Proxy(P::Requests),
            } if *m == Metric::Proxy(P::Errors) => f.write_str("error_rate")?,
            A::Rate if *m == Metric::Proxy(P::Requests) => f.write_str("request_rate")?,
            A::Quantile(q) => match (m, expr::latency_shorthand(*q)) {
                (Metric::Proxy(P::Latency), Some(short)) => f.write_str(&short)?,
                _ => write!(f, "histogram_quantile({}, {m})", format_float(*q))?,
            },
            A::Rate => write!(f, "rate({m})")?,
            A::Increase => write!(f, "increase({m})")?,
            A::Ratio { denominator } => write!(f, "ratio({m}, {denominator})")?,
            A::Avg => write!(f, "avg({m})")?,
            A::Max => write!(f, "max({m})")?,
            A::Min => write!(f, "min({m})")?,
            A::Last => write!(f, "last({m})")?,
        }
        write!(f, " {} {}", self.op.as_str(), format_float(self.threshold))
    }
}

/// A rule as configured (e.g. from YAML), before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSpec {
    /// Rule name, used as the alert name.
    pub name: String,
    /// Condition text, e.g. `error_rate > 0.05`.
    pub expr: String,
    /// Evaluation window in milliseconds (> 0).
    pub window_ms: i64,
    /// How long the condition must hold before firing, in milliseconds (>= 0).
    pub for_ms: i64,
    /// Severity passed on to notifications, e.g. `critical`.
    pub severity: String,
    /// Extra labels attached to the alert.
    pub labels: Labels,
}

/// Where a rule is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuleState {
    /// The condition does not hold.
    #[default]
    Inactive,
    /// The condition holds since the given time, not yet for `for_ms`.
    Pending(i64),
    /// The condition holds since the given time, for at least `for_ms`: the alert fires.
    Firing(i64),
}

/// A change worth notifying about, returned by [`Rule::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleTransition {
    /// The rule started firing.
    Fired {
        /// The value that made it fire.
        value: f64,
        /// When the condition was first seen true.
        since: i64,
    },
    /// The rule stopped firing.
    Resolved {
        /// The value at resolution; `None` when data was missing.
        value: Option<f64>,
    },
}

/// A validated rule with its evaluation state.
#[derive(Debug, Clone)]
pub struct Rule {
    name: String,
    condition: Condition,
    window_ms: i64,
    for_ms: i64,
    severity: String,
    labels: Labels,
    state: RuleState,
}

impl Rule {
    /// Validates a spec: non-empty name and severity, a parsable condition, `window_ms > 0`,
    /// `for_ms >= 0`, and valid label names.
    pub fn new(spec: RuleSpec) -> Result<Rule, RuleError> {
        let invalid = |message: String| RuleError::InvalidRule {
            rule: spec.name.clone(),
            message,
        };
        if spec.name.trim().is_empty() {
            return Err(invalid("the rule needs a name".to_string()));
        }
        let condition = Condition::parse(&spec.expr)
            .map_err(|e| invalid(format!("in condition `{}`: {e}", spec.expr)))?;
        if spec.window_ms <= 0 {
            return Err(invalid(format!(
                "window must be positive, got {} ms; use e.g. 300000 for 5 minutes",
                spec.window_ms
            )));
        }
        if spec.for_ms < 0 {
            return Err(invalid(format!(
                "for must be zero or positive, got {} ms",
                spec.for_ms
            )));
        }
        if spec.severity.trim().is_empty() {
            return Err(invalid(
                "the rule needs a severity, e.g. `critical` or `warning`".to_string(),
            ));
        }
        if let Some(bad) = spec.labels.keys().find(|k| !is_label_name(k)) {
            return Err(invalid(format!(
                "invalid label name `{bad}`; use letters, digits and `_`, not starting with a digit"
            )));
        }
        Ok(Rule {
            name: spec.name,
            condition,
            window_ms: spec.window_ms,
            for_ms: spec.for_ms,
            severity: spec.severity,
            labels: spec.labels,
            state: RuleState::Inactive,
        })
    }

    /// The rule name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed condition.
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// The evaluation window.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// The hold time before firing.
    pub fn for_ms(&self) -> i64 {
        self.for_ms
    }

    /// The severity.
    pub fn severity(&self) -> &str {
        &self.severity
    }

    /// The extra labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The current state.
    pub fn state(&self) -> RuleState {
        self.state
    }

    /// Restores a state saved before a restart, so a pending or firing rule neither restarts
    /// its hold time nor re-notifies.
    pub fn restore_state(&mut self, state: RuleState) {
        self.state = state;
    }

    /// The condition's value over this rule's window from `store`.
    pub fn value(&self, store: &MetricStore, now_ms: i64) -> Option<f64> {
        self.condition.value(store, self.window_ms, now_ms)
    }

    /// Advances the state machine with the latest value (`None`: no data, counts as false).
    pub fn evaluate(&mut self, value: Option<f64>, now_ms: i64) -> Option<RuleTransition> {
        let holding = value.filter(|v| self.condition.holds(*v));
        match (self.state, holding) {
            (RuleState::Inactive, Some(v)) => {
                if self.for_ms == 0 {
                    self.state = RuleState::Firing(now_ms);
                    Some(RuleTransition::Fired {
                        value: v,
                        since: now_ms,
                    })
                } else {
                    self.state = RuleState::Pending(now_ms);
                    None
                }
            }
            (RuleState::Pending(since), Some(v)) => {
                if now_ms.saturating_sub(since) >= self.for_ms {
                    self.state = RuleState::Firing(since);
                    Some(RuleTransition::Fired { value: v, since })
                } else {
                    None
                }
            }
            (RuleState::Firing(_), Some(_)) | (RuleState::Inactive, None) => None,
            (RuleState::Pending(_), None) => {
                self.state = RuleState::Inactive;
                None
            }
            (RuleState::Firing(_), None) => {
                self.state = RuleState::Inactive;
                Some(RuleTransition::Resolved { value })
            }
        }
    }

    /// Reads the value from `store` and evaluates it.
    pub fn evaluate_store(&mut self, store: &MetricStore, now_ms: i64) -> Option<RuleTransition> {
        let value = self.value(store, now_ms);
        self.evaluate(value, now_ms)
    }
}
