//! The recursive-descent parser for rule conditions (grammar in the parent module's docs).
//!
//! Every error carries the 1-based column where the problem starts, including errors inside a
//! `{...}` matcher list, which is parsed by the matcher module on the same cursor.

use crate::lex::{Cursor, format_float, parse_float};
use crate::matcher::{MatcherError, parse_braced};

use super::{Aggregation, CmpOp, Condition, Metric, ProxyMetric, RuleError};

/// What kind of series a function reads; proxy metrics are checked against it.
#[derive(Clone, Copy)]
enum Want {
    Counter,
    Histogram,
    Gauge,
}

pub(super) fn parse_condition(text: &str) -> Result<Condition, RuleError> {
    let mut cur = Cursor::new(text);
    cur.skip_ws();
    let (metric, aggregation) = parse_query(&mut cur)?;
    cur.skip_ws();
    let op = parse_cmp(&mut cur)?;
    cur.skip_ws();
    let at = cur.pos();
    let threshold = parse_number(&mut cur, "a threshold")?;
    if threshold.is_nan() {
        return Err(err(
            &cur,
            at,
            "the threshold cannot be NaN: every comparison with NaN is false".to_string(),
        ));
    }
    cur.skip_ws();
    if let Some(c) = cur.peek() {
        return Err(err(
            &cur,
            cur.pos(),
            format!("unexpected `{c}` after the threshold; a condition is `query op number`"),
        ));
    }
    Ok(Condition {
        metric,
        aggregation,
        op,
        threshold,
    })
}

fn parse_query(cur: &mut Cursor<'_>) -> Result<(Metric, Aggregation), RuleError> {
    let saved = cur.clone();
    let start = cur.pos();
    if !cur.peek().is_some_and(is_ident_start) {
        return Err(err(
            cur,
            start,
            format!(
                "expected a query such as `error_rate`, `p99_latency` or `rate(metric)`, found {}",
                describe(cur.peek())
            ),
        ));
    }
    let ident = cur.take_while(is_ident_char);
    let after_ident = cur.pos();
    cur.skip_ws();
    let next = cur.peek();
    let shorthand = match ident {
        "error_rate" => Some((
            Metric::Proxy(ProxyMetric::Errors),
            Aggregation::Ratio {
                denominator: Metric::Proxy(ProxyMetric::Requests),
            },
        )),
        "request_rate" => Some((Metric::Proxy(ProxyMetric::Requests), Aggregation::Rate)),
        _ => match parse_latency_shorthand(ident) {
            Some(Ok(q)) => Some((
                Metric::Proxy(ProxyMetric::Latency),
                Aggregation::Quantile(q),
            )),
            Some(Err(message)) => return Err(err(cur, start, message)),
            None => None,
        },
    };
    if let Some(found) = shorthand {
        if matches!(next, Some('(' | '{')) {
            return Err(err(
                cur,
                after_ident,
                format!(
                    "`{ident}` takes no arguments or labels; write it alone, e.g. `{ident} > 1`"
                ),
            ));
        }
        return Ok(found);
    }
    if next != Some('(') {
        // A bare selector reads the newest value, like `last(...)`.
        *cur = saved;
        return Ok((parse_metric(cur, Want::Gauge)?, Aggregation::Last));
    }
    cur.bump();
    let result = match ident {
        "rate" => (parse_metric(cur, Want::Counter)?, Aggregation::Rate),
        "increase" => (parse_metric(cur, Want::Counter)?, Aggregation::Increase),
        "ratio" => {
            let numerator = parse_metric(cur, Want::Counter)?;
            expect_comma(cur, ident)?;
            let denominator = parse_metric(cur, Want::Counter)?;
            (numerator, Aggregation::Ratio { denominator })
        }
        "avg" => (parse_metric(cur, Want::Gauge)?, Aggregation::Avg),
        "max" => (parse_metric(cur, Want::Gauge)?, Aggregation::Max),
        "min" => (parse_metric(cur, Want::Gauge)?, Aggregation::Min),
        "last" => (parse_metric(cur, Want::Gauge)?, Aggregation::Last),
        "histogram_quantile" => {
            cur.skip_ws();
            let at = cur.pos();
            let q = parse_number(cur, "a quantile")?;
            if !(0.0..=1.0).contains(&q) {
                return Err(err(
                    cur,
                    at,
                    format!(
                        "quantile {} is out of range; use a number from 0 to 1, e.g. 0.99",
                        format_float(q)
                    ),
                ));
            }
            expect_comma(cur, ident)?;
            (
                parse_metric(cur, Want::Histogram)?,
                Aggregation::Quantile(q),
            )
        }
        _ => {
            return Err(err(
                cur,
                start,
                format!(
                    "unknown function `{ident}`; use rate, increase, ratio, histogram_quantile, avg, max, min or last"
                ),
            ));
        }
    };
    cur.skip_ws();
    if !cur.eat(')') {
        return Err(err(
            cur,
            cur.pos(),
            format!(
                "expected `)` to close `{ident}(`, found {}",
                describe(cur.peek())
            ),
        ));
    }
    Ok(result)
}

fn parse_metric(cur: &mut Cursor<'_>, want: Want) -> Result<Metric, RuleError> {
    cur.skip_ws();
    let start = cur.pos();
    if !cur.peek().is_some_and(is_ident_start) {
        return Err(err(
            cur,
            start,
            format!("expected a metric name, found {}", describe(cur.peek())),
        ));
    }
    let name = cur.take_while(is_ident_char);
    if name.contains('.') {
        let proxy = match name {
            "proxy.requests" => ProxyMetric::Requests,
            "proxy.errors" => ProxyMetric::Errors,
            "proxy.latency" => ProxyMetric::Latency,
            _ => {
                return Err(err(
                    cur,
                    start,
                    format!(
                        "unknown metric `{name}`: metric names cannot contain `.`, and the proxy's metrics are proxy.requests, proxy.errors and proxy.latency"
                    ),
                ));
            }
        };
        check_proxy_kind(cur, start, proxy, want)?;
        let before_ws = cur.clone();
        cur.skip_ws();
        if cur.peek() == Some('{') {
            return Err(err(
                cur,
                cur.pos(),
                format!("`{name}` has no labels (it is per service); remove the `{{...}}`"),
            ));
        }
        *cur = before_ws;
        return Ok(Metric::Proxy(proxy));
    }
    let name = name.to_string();
    let before_ws = cur.clone();
    cur.skip_ws();
    if cur.peek() != Some('{') {
        *cur = before_ws;
        return Ok(Metric::Scraped {
            name,
            matchers: Vec::new(),
        });
    }
    let matchers = parse_braced(cur).map_err(|e| from_matcher_error(cur, e))?;
    Ok(Metric::Scraped { name, matchers })
}

fn check_proxy_kind(
    cur: &Cursor<'_>,
    at: usize,
    proxy: ProxyMetric,
    want: Want,
) -> Result<(), RuleError> {
    let name = proxy.as_str();
    let message = match (want, proxy) {
        (Want::Counter, ProxyMetric::Requests | ProxyMetric::Errors)
        | (Want::Histogram, ProxyMetric::Latency) => return Ok(()),
        (Want::Counter, ProxyMetric::Latency) => {
            format!("`{name}` is a histogram; use histogram_quantile(0.99, {name}) or p99_latency")
        }
        (Want::Histogram, _) => format!(
            "`{name}` is a counter, not a histogram; use proxy.latency or a scraped histogram"
        ),
        (Want::Gauge, ProxyMetric::Latency) => format!(
            "`{name}` is a histogram, not a gauge; use histogram_quantile(0.99, {name}) or p99_latency"
        ),
        (Want::Gauge, _) => {
            format!("`{name}` is a counter, not a gauge; use rate({name}) or increase({name})")
        }
    };
    Err(err(cur, at, message))
}

fn expect_comma(cur: &mut Cursor<'_>, func: &str) -> Result<(), RuleError> {
    cur.skip_ws();
    if cur.eat(',') {
        return Ok(());
    }
    Err(err(
        cur,
        cur.pos(),
        format!(
            "expected `,` between the arguments of `{func}`, found {}",
            describe(cur.peek())
        ),
    ))
}

fn parse_cmp(cur: &mut Cursor<'_>) -> Result<CmpOp, RuleError> {
    let at = cur.pos();
    for (text, op) in [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ] {
        if cur.eat_str(text) {
            return Ok(op);
        }
    }
    let hint = if cur.peek() == Some('=') {
        "; use `==` to test equality"
    } else {
        ""
    };
    Err(err(
        cur,
        at,
        format!(
            "expected a comparison (>, >=, <, <=, ==, !=) after the query, found {}{hint}",
            describe(cur.peek())
        ),
    ))
}

/// Parses a number token: digits, `.`, exponent, optional sign, or `NaN`/`Inf`.
fn parse_number(cur: &mut Cursor<'_>, what: &str) -> Result<f64, RuleError> {
    let start = cur.pos();
    if matches!(cur.peek(), Some('+' | '-')) {
        cur.bump();
    }
    let body = cur.take_while(|c| c.is_ascii_alphanumeric() || c == '.');
    if body.ends_with(['e', 'E'])
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && matches!(cur.peek(), Some('+' | '-'))
        && cur.peek2().is_some_and(|c| c.is_ascii_digit())
    {
        cur.bump();
        cur.take_while(|c| c.is_ascii_digit());
    }
    let text = cur.slice(start, cur.pos());
    parse_float(text).ok_or_else(|| {
        let found = if text.is_empty() {
            describe(cur.peek())
        } else {
            format!("`{text}`")
        };
        err(
            cur,
            start,
            format!("expected {what} (a number such as 0.05, 1e-3 or +Inf), found {found}"),
        )
    })
}

/// `p<digits>_latency` → `0.<digits>`. `None` if `ident` is not of that shape at all.
fn parse_latency_shorthand(ident: &str) -> Option<Result<f64, String>> {
    let digits = ident.strip_prefix('p')?.strip_suffix("_latency")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let invalid = || {
        format!(
            "`{ident}` is not a latency percentile; write p and 2 to 4 digits (p50_latency, p99_latency, p999_latency) or histogram_quantile(q, proxy.latency)"
        )
    };
    // `p100` or `p990` would read as 0.100 and 0.990: refuse rather than surprise.
    if !(2..=4).contains(&digits.len()) || (digits.len() > 2 && digits.ends_with('0')) {
        return Some(Err(invalid()));
    }
    Some(format!("0.{digits}").parse::<f64>().map_err(|_| invalid()))
}

/// The `pNN_latency` spelling of quantile `q`, when there is one that parses back to `q`.
pub(super) fn latency_shorthand(q: f64) -> Option<String> {
    if !(q > 0.0 && q < 1.0) {
        return None;
    }
    let text = format_float(q);
    let digits = text.strip_prefix("0.")?;
    let digits = if digits.len() == 1 {
        format!("{digits}0")
    } else {
        digits.to_string()
    };
    let ident = format!("p{digits}_latency");
    match parse_latency_shorthand(&ident) {
        Some(Ok(v)) if v == q => Some(ident),
        _ => None,
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'
}

fn from_matcher_error(cur: &Cursor<'_>, e: MatcherError) -> RuleError {
    match e {
        MatcherError::Syntax { column, message } => RuleError::Syntax { column, message },
        other => RuleError::Syntax {
            column: cur.column(),
            message: other.to_string(),
        },
    }
}

fn err(cur: &Cursor<'_>, at: usize, message: String) -> RuleError {
    RuleError::Syntax {
        column: cur.column_of(at),
        message,
    }
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "the end of the text".to_string(),
        Some(c) => format!("`{c}`"),
    }
}
