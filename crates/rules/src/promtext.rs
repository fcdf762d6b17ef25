//! A parser for the Prometheus text exposition format, version 0.0.4.
//!
//! The server scrapes a service's `/metrics` endpoint and hands the body here; the samples then
//! feed [`crate::rule::MetricStore`]. Supported:
//!
//! * `# HELP name text` (escapes `\\` and `\n`) and `# TYPE name counter|gauge|histogram|
//!   summary|untyped`; any other line starting with `#` is a comment;
//! * samples `name{label="value",...} value [timestamp_ms]`, with the label-value escapes
//!   `\\`, `\"` and `\n`, a trailing comma in the label list, and values `NaN`, `+Inf`, `-Inf`;
//! * histograms (`_bucket` samples need a numeric `le` label; `_sum`, `_count`) and summaries
//!   (samples of the family name need a numeric `quantile` label; `_sum`, `_count`);
//! * blank lines, blanks and tabs between tokens, and Windows (`\r\n`) line endings.
//!
//! Errors name the 1-based line and what is wrong. Input is bounded by [`Limits`] (samples,
//! labels per sample, line length) on top of the body-size cap the server applies, so a hostile
//! target cannot make one scrape use unbounded memory.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::Labels;
use crate::lex::{is_label_char, is_label_start, is_metric_char, is_metric_start, parse_float};

/// The type a `# TYPE` line declares for a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A monotonically increasing counter (resets to zero on restart).
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
    /// Pre-computed quantiles plus `_sum` and `_count`.
    Summary,
    /// No `# TYPE` line, or `untyped`.
    Untyped,
}

impl MetricType {
    /// The keyword used in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's metric name, including any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// The labels, including `le` or `quantile` where present.
    pub labels: Labels,
    /// The value; may be NaN or infinite.
    pub value: f64,
    /// The explicit timestamp, if the line had one (Unix epoch milliseconds).
    pub timestamp_ms: Option<i64>,
}

/// A parsed exposition: all samples in order, plus the declared types and help texts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Samples in the order they appeared.
    pub samples: Vec<Sample>,
    /// Declared family types by family name.
    pub types: BTreeMap<String, MetricType>,
    /// Help texts by family name, unescaped.
    pub help: BTreeMap<String, String>,
}

impl Exposition {
    /// The family a sample name belongs to and its type: `foo_bucket` belongs to histogram
    /// `foo` when `foo` is declared a histogram, and so on. Undeclared names are untyped.
    pub fn family_of<'a>(&'a self, sample_name: &'a str) -> (&'a str, MetricType) {
        family_of(&self.types, sample_name)
    }
}

/// Bounds applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most samples accepted in one exposition.
    pub max_samples: usize,
    /// Most labels on one sample.
    pub max_labels: usize,
    /// Longest line accepted, in bytes.
    pub max_line_bytes: usize,
}

impl Default for Limits {
    /// 100 000 samples, 64 labels per sample, 64 KiB per line.
    fn default() -> Self {
        Limits {
            max_samples: 100_000,
            max_labels: 64,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// Why an exposition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PromTextError {
    /// A line is malformed.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A [`Limits`] bound was exceeded.
    #[error(
        "line {line}: {message}; the target exposes too much, reduce its metrics or raise the limit"
    )]
    Limit {
        /// 1-based line number.
        line: usize,
        /// Which bound and its value.
        message: String,
    },
}

/// Parses an exposition with the default [`Limits`].
pub fn parse(text: &str) -> Result<Exposition, PromTextError> {
    parse_with_limits(text, &Limits::default())
}

/// Parses an exposition with explicit [`Limits`].
pub fn parse_with_limits(text: &str, limits: &Limits) -> Result<Exposition, PromTextError> {
    let mut out = Exposition::default();
    // The line each sample came from, for errors found when checking families afterwards.
    let mut sample_lines = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        if raw.len() > limits.max_line_bytes {
            return Err(PromTextError::Limit {
                line: line_no,
                message: format!("line is longer than {} bytes", limits.max_line_bytes),
            });
        }
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let err = |message: String| PromTextError::Syntax {
            line: line_no,
            message,
        };
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut out).map_err(err)?;
            continue;
        }
        if out.samples.len() >= limits.max_samples {
            return Err(PromTextError::Limit {
                line: line_no,
                message: format!("more than {} samples", limits.max_samples),
            });
        }
        let sample = parse_sample(line, limits.max_labels).map_err(|e| match e {
            SampleError::Syntax(m) => err(m),
            SampleError::TooManyLabels => PromTextError::Limit {
                line: line_no,
                message: format!("more than {} labels on one sample", limits.max_labels),
            },
        })?;
        out.samples.push(sample);
        sample_lines.push(line_no);
    }
    for (sample, line) in out.samples.iter().zip(sample_lines) {
        check_family(&out.types, sample)
            .map_err(|message| PromTextError::Syntax { line, message })?;
    }
    Ok(out)
}

pub(crate) fn family_of<'a>(
    types: &'a BTreeMap<String, MetricType>,
    sample_name: &'a str,
) -> (&'a str, MetricType) {
    if let Some(t) = types.get(sample_name) {
        return (sample_name, *t);
    }
    for (suffix, allowed) in [
        ("_bucket", &[MetricType::Histogram][..]),
        ("_sum", &[MetricType::Histogram, MetricType::Summary][..]),
        ("_count", &[MetricType::Histogram, MetricType::Summary][..]),
    ] {
        if let Some(base) = sample_name.strip_suffix(suffix)
            && let Some((name, t)) = types.get_key_value(base)
            && allowed.contains(t)
        {
            return (name.as_str(), *t);
        }
    }
    (sample_name, MetricType::Untyped)
}

/// Checks the labels histogram buckets and summary quantiles must carry.
fn check_family(types: &BTreeMap<String, MetricType>, sample: &Sample) -> Result<(), String> {
    let (family, t) = family_of(types, &sample.name);
    let required = match t {
        MetricType::Histogram if sample.name.ends_with("_bucket") && family != sample.name => "le",
        MetricType::Summary if family == sample.name => "quantile",
        _ => return Ok(()),
    };
    match sample.labels.get(required) {
        None => Err(format!(
            "`{}` belongs to {} `{family}` and needs a `{required}` label",
            sample.name,
            t.as_str()
        )),
        Some(v) if parse_float(v).is_none_or(f64::is_nan) => Err(format!(
            "label `{required}` of `{}` must be a number or +Inf, got `{v}`",
            sample.name
        )),
        Some(_) => Ok(()),
    }
}

/// Parses the part of a comment line after `#`.
fn parse_comment(comment: &str, out: &mut Exposition) -> Result<(), String> {
    let mut rest = comment.trim_start_matches([' ', '\t']);
    if rest.len() == comment.len() {
        return Ok(()); // `#HELP` without a blank is an ordinary comment.
    }
    let keyword = if let Some(r) = rest.strip_prefix("HELP") {
        rest = r;
        "HELP"
    } else if let Some(r) = rest.strip_prefix("TYPE") {
        rest = r;
        "TYPE"
    } else {
        return Ok(());
    };
    let after = rest.trim_start_matches([' ', '\t']);
    if after.len() == rest.len() && !rest.is_empty() {
        return Ok(()); // e.g. `# HELPER`: a comment.
    }
    let name_len = after.find([' ', '\t']).unwrap_or(after.len());
    let (name, tail) = after.split_at(name_len);
    if !is_metric_name_str(name) {
        return Err(format!(
            "`# {keyword}` needs a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), found `{name}`"
        ));
    }
    let tail = tail.trim_start_matches([' ', '\t']);
    if keyword == "HELP" {
        if out.help.contains_key(name) {
            return Err(format!("second `# HELP` line for `{name}`; keep only one"));
        }
        out.help.insert(name.to_string(), unescape_help(tail));
        return Ok(());
    }
    let t = match tail.trim_end_matches([' ', '\t']) {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" => MetricType::Untyped,
        other => {
            return Err(format!(
                "unknown type `{other}` for `{name}`; use counter, gauge, histogram, summary or untyped"
            ));
        }
    };
    if out.types.contains_key(name) {
        return Err(format!("second `# TYPE` line for `{name}`; keep only one"));
    }
    out.types.insert(name.to_string(), t);
    Ok(())
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

enum SampleError {
    Syntax(String),
    TooManyLabels,
}

impl From<String> for SampleError {
    fn from(m: String) -> Self {
        SampleError::Syntax(m)
    }
}

/// Parses one sample line (already trimmed, not a comment).
fn parse_sample(line: &str, max_labels: usize) -> Result<Sample, SampleError> {
    let name_end = match line.chars().next() {
        Some(c) if is_metric_start(c) => line
            .char_indices()
            .find(|&(_, c)| !is_metric_char(c))
            .map_or(line.len(), |(i, _)| i),
        _ => {
            let found = line.chars().next().map_or(String::new(), |c| c.to_string());
            return Err(format!(
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) at the start of the line, found `{found}`"
            )
            .into());
        }
    };
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    let after_name = rest.trim_start_matches([' ', '\t']);
    if let Some(inner) = after_name.strip_prefix('{') {
        rest = parse_labels(inner, name, &mut labels, max_labels)?;
    } else if rest.len() == after_name.len() && !rest.is_empty() {
        let found = rest.chars().next().map_or(String::new(), |c| c.to_string());
        return Err(format!(
            "metric name `{name}` must be followed by `{{` or a blank, found `{found}`"
        )
        .into());
    }
    let mut tokens = rest.split([' ', '\t']).filter(|t| !t.is_empty());
    let value_text = tokens.next().ok_or_else(|| {
        format!("sample `{name}` has no value; add one after the name and labels")
    })?;
    let value = parse_float(value_text).ok_or_else(|| {
        format!("invalid value `{value_text}` for `{name}`; use a number, NaN, +Inf or -Inf")
    })?;
    let timestamp_ms = match tokens.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            format!(
                "invalid timestamp `{t}` for `{name}`; use integer milliseconds since the epoch"
            )
        })?),
    };
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected `{extra}` after the timestamp of `{name}`").into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses labels after `{` and returns the text after the closing `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    metric: &str,
    labels: &mut Labels,
    max_labels: usize,
) -> Result<&'a str, SampleError> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_len = match s.chars().next() {
            Some(c) if is_label_start(c) => s
                .char_indices()
                .find(|&(_, c)| !is_label_char(c))
                .map_or(s.len(), |(i, _)| i),
            Some(c) => {
                return Err(format!(
                    "expected a label name or `}}` in the labels of `{metric}`, found `{c}`"
                )
                .into());
            }
            None => {
                return Err(format!("the labels of `{metric}` are not closed with `}}`").into());
            }
        };
        let label = &s[..name_len];
        s = s[name_len..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after label `{label}` of `{metric}`"))?;
        s = s.trim_start_matches([' ', '\t']);
        s = s.strip_prefix('"').ok_or_else(|| {
            format!("the value of label `{label}` of `{metric}` must be in double quotes")
        })?;
        let (value, rest) =
            parse_label_value(s).map_err(|m| format!("label `{label}` of `{metric}`: {m}"))?;
        if labels.contains_key(label) {
            return Err(format!("label `{label}` appears twice on `{metric}`").into());
        }
        if labels.len() >= max_labels {
            return Err(SampleError::TooManyLabels);
        }
        labels.insert(label.to_string(), value);
        s = rest.trim_start_matches([' ', '\t']);
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            let found = s
                .chars()
                .next()
                .map_or("the end of the line".to_string(), |c| format!("`{c}`"));
            return Err(format!(
                "expected `,` or `}}` after label `{label}` of `{metric}`, found {found}"
            )
            .into());
        }
    }
}

/// Parses a label value after its opening quote; returns it and the text after the closing one.
fn parse_label_value(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => {
                    return Err(format!(
                        "invalid escape `\\{other}`; only \\\\, \\\" and \\n are allowed"
                    ));
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("the value has no closing `\"`".to_string())
}

fn is_metric_name_str(name: &str) -> bool {
    crate::lex::is_metric_name(name)
}
