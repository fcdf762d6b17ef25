//! Dependency-free SVG charts for the DORA page: a bar chart, a line chart, and
//! [`dora_charts`] drawing the four metrics from a [`series`](crate::series).
//!
//! The output is a self-contained `<svg>` element to inline into HTML: a fixed `viewBox`
//! and no `width`/`height`, so it scales to its container; presentation attributes only (no
//! `style`, no scripts, no external references, no element ids that could clash between
//! several charts on one page), so it works under a strict Content-Security-Policy. Every
//! piece of text is XML-escaped, and characters XML cannot hold are replaced by U+FFFD, so a
//! title or label such as `<script>` is shown as text. Each bar and point carries a `<title>`
//! with its label and value, which browsers show on hover and screen readers read.
//! Non-finite values are drawn as missing; `None` in a line chart leaves a gap in the line.

use std::fmt::Write as _;

use crate::series::Point;
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, date_label, human_duration};

/// How the values of a chart are read and labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A count: `0`, `5`, `12`.
    Count,
    /// A ratio in `[0, 1]`, shown as a percentage: `12.5%`.
    Ratio,
    /// A duration in milliseconds, shown as in [`human_duration`]: `2h 5m`.
    DurationMs,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 48.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;
/// At most this many labels on the x axis (10-character dates must not overlap).
const MAX_X_LABELS: usize = 8;
/// Values are clamped to this magnitude so that every coordinate stays finite.
const MAX_ABS: f64 = 1e300;
const ACCENT: &str = "#3b6ea8";

/// A bar chart of `data` (label, value): one bar per item, in order.
pub fn bar_chart<L: AsRef<str>>(title: &str, data: &[(L, f64)], unit: Unit) -> String {
    let values: Vec<Option<f64>> = data.iter().map(|(_, v)| sanitize(Some(*v))).collect();
    let scale = Scale::of(values.iter().flatten().copied(), unit);
    let mut out = open(title, &scale, unit);
    let band = band(data.len());
    let zero = scale.y(0.0_f64.clamp(scale.lo, scale.hi));
    for (i, ((label, _), value)) in data.iter().zip(&values).enumerate() {
        let label = label.as_ref();
        let Some(v) = value else {
            continue;
        };
        let y = scale.y(*v);
        let (top, height) = if y <= zero {
            (y, zero - y)
        } else {
            (zero, y - zero)
        };
        let x = LEFT + band * i as f64 + band * 0.15;
        let _ = write!(
            out,
            r#"<rect x="{x:.2}" y="{top:.2}" width="{w:.2}" height="{height:.2}" fill="{ACCENT}"><title>{t}</title></rect>"#,
            w = band * 0.7,
            t = esc(&format!("{label}: {}", format_value(*v, unit))),
        );
    }
    x_labels(&mut out, data.iter().map(|(l, _)| l.as_ref()));
    close(out, values.iter().all(Option::is_none))
}

/// A line chart of `data` (label, value): points joined in order; `None` (or a non-finite
/// value) leaves a gap, and a point with no neighbour shows as a dot alone.
pub fn line_chart<L: AsRef<str>>(title: &str, data: &[(L, Option<f64>)], unit: Unit) -> String {
    let values: Vec<Option<f64>> = data.iter().map(|(_, v)| sanitize(*v)).collect();
    let scale = Scale::of(values.iter().flatten().copied(), unit);
    let mut out = open(title, &scale, unit);
    let band = band(data.len());
    let x_of = |i: usize| LEFT + band * (i as f64 + 0.5);

    let mut path = String::new();
    let mut pen_down = false;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => {
                let cmd = if pen_down { 'L' } else { 'M' };
                let _ = write!(path, "{cmd}{:.2} {:.2} ", x_of(i), scale.y(*v));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{ACCENT}" stroke-width="2" stroke-linejoin="round"/>"#,
            path.trim_end()
        );
    }
    for (i, ((label, _), value)) in data.iter().zip(&values).enumerate() {
        if let Some(v) = value {
            let _ = write!(
                out,
                r#"<circle cx="{:.2}" cy="{:.2}" r="3" fill="{ACCENT}"><title>{}</title></circle>"#,
                x_of(i),
                scale.y(*v),
                esc(&format!("{}: {}", label.as_ref(), format_value(*v, unit))),
            );
        }
    }
    x_labels(&mut out, data.iter().map(|(l, _)| l.as_ref()));
    close(out, values.iter().all(Option::is_none))
}

/// The four DORA charts of a [`series`](crate::series), labelled by the buckets' UTC start
/// dates: `("deployments", bars)`, `("lead_time", line)`, `("change_failure_rate", line)`,
/// `("recovery_time", line)`.
pub fn dora_charts(points: &[Point]) -> Vec<(&'static str, String)> {
    let label = |p: &Point| date_label(p.start_ms);
    let line = |f: fn(&Point) -> Option<f64>| -> Vec<(String, Option<f64>)> {
        points.iter().map(|p| (label(p), f(p))).collect()
    };
    let deployments: Vec<(String, f64)> = points
        .iter()
        .map(|p| (label(p), p.deployments as f64))
        .collect();
    vec![
        (
            "deployments",
            bar_chart("Deployments to production", &deployments, Unit::Count),
        ),
        (
            "lead_time",
            line_chart(
                "Change lead time (median)",
                &line(|p| p.lead_time_median_ms.map(|v| v as f64)),
                Unit::DurationMs,
            ),
        ),
        (
            "change_failure_rate",
            line_chart(
                "Change failure rate",
                &line(|p| p.change_failure_rate),
                Unit::Ratio,
            ),
        ),
        (
            "recovery_time",
            line_chart(
                "Failed deployment recovery time (median)",
                &line(|p| p.recovery_median_ms.map(|v| v as f64)),
                Unit::DurationMs,
            ),
        ),
    ]
}

/// Escapes text for XML content and attribute values; characters XML 1.0 cannot hold
/// (control characters other than tab and newlines, U+FFFE, U+FFFF) become U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn sanitize(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
        .map(|v| v.clamp(-MAX_ABS, MAX_ABS))
}

fn band(n: usize) -> f64 {
    PLOT_W / n.max(1) as f64
}

/// The y axis: its range and tick values.
struct Scale {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn of(values: impl Iterator<Item = f64>, unit: Unit) -> Scale {
        let (mut lo, mut hi) =
            values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= lo {
            hi = lo
                + match unit {
                    Unit::Count | Unit::Ratio => 1.0,
                    Unit::DurationMs => HOUR_MS as f64,
                };
        }
        let step = nice_step((hi - lo) / 5.0, unit);
        let (t_lo, t_hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let n = ((t_hi - t_lo) / step).round();
        let ticks = if n.is_finite() && (1.0..=50.0).contains(&n) && t_lo < t_hi {
            (lo, hi) = (t_lo, t_hi);
            (0..=n as usize).map(|i| t_lo + step * i as f64).collect()
        } else {
            vec![lo, hi]
        };
        Scale { lo, hi, ticks }
    }

    /// The y coordinate of `v`.
    fn y(&self, v: f64) -> f64 {
        TOP + PLOT_H * (self.hi - v) / (self.hi - self.lo)
    }
}

/// A step of 1, 2 or 5 times a power of ten (whole for counts), or a round duration, at
/// least `raw`.
fn nice_step(raw: f64, unit: Unit) -> f64 {
    const DURATIONS: [i64; 24] = [
        SECOND_MS,
        2 * SECOND_MS,
        5 * SECOND_MS,
        10 * SECOND_MS,
        15 * SECOND_MS,
        30 * SECOND_MS,
        MINUTE_MS,
        2 * MINUTE_MS,
        5 * MINUTE_MS,
        10 * MINUTE_MS,
        15 * MINUTE_MS,
        30 * MINUTE_MS,
        HOUR_MS,
        2 * HOUR_MS,
        3 * HOUR_MS,
        6 * HOUR_MS,
        12 * HOUR_MS,
        DAY_MS,
        2 * DAY_MS,
        7 * DAY_MS,
        14 * DAY_MS,
        30 * DAY_MS,
        90 * DAY_MS,
        180 * DAY_MS,
    ];
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    if unit == Unit::DurationMs
        && let Some(step) = DURATIONS.iter().map(|&d| d as f64).find(|&d| d >= raw)
    {
        return step;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let step = magnitude
        * if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
    match unit {
        Unit::Count => step.max(1.0),
        Unit::Ratio | Unit::DurationMs => step,
    }
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => {
            if v.abs() >= 1e15 {
                format!("{v:.3e}")
            } else if (v - v.round()).abs() < 1e-9 {
                format!("{}", v.round() as i64)
            } else {
                trim_zeros(format!("{v:.2}"))
            }
        }
        Unit::Ratio => {
            let pct = v * 100.0;
            if pct.abs() >= 1e15 {
                format!("{pct:.3e}%")
            } else {
                format!("{}%", trim_zeros(format!("{pct:.1}")))
            }
        }
        // `as` saturates, so huge values read as the longest duration instead of panicking.
        Unit::DurationMs => human_duration(v.round() as i64),
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// The root element, the title, the grid with y tick labels and the axes.
fn open(title: &str, scale: &Scale, unit: Unit) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" font-family="system-ui, sans-serif" font-size="11" fill="#333"><title>{t}</title><text x="{LEFT}" y="24" font-size="14" font-weight="600">{short}</text>"##,
        t = esc(title),
        short = esc(&shorten(title, 80)),
    );
    for &tick in &scale.ticks {
        let y = scale.y(tick);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{x2}" y2="{y:.2}" stroke="#e4e4e4"/><text x="{lx}" y="{ty:.2}" text-anchor="end">{label}</text>"##,
            x2 = WIDTH - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            label = esc(&format_value(tick, unit)),
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#888"/><line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#888"/>"##,
        bottom = TOP + PLOT_H,
        right = WIDTH - RIGHT,
    );
    out
}

/// Tick marks and labels under the x axis, thinned to at most [`MAX_X_LABELS`].
fn x_labels<'a>(out: &mut String, labels: impl ExactSizeIterator<Item = &'a str>) {
    let n = labels.len();
    let band = band(n);
    let every = n.div_ceil(MAX_X_LABELS).max(1);
    let bottom = TOP + PLOT_H;
    for (i, label) in labels.enumerate().filter(|(i, _)| i % every == 0) {
        let x = LEFT + band * (i as f64 + 0.5);
        let _ = write!(
            out,
            r##"<line x1="{x:.2}" y1="{bottom}" x2="{x:.2}" y2="{tick}" stroke="#888"/><text x="{x:.2}" y="{ty}" text-anchor="middle">{label}</text>"##,
            tick = bottom + 4.0,
            ty = bottom + 18.0,
            label = esc(&shorten(label, 12)),
        );
    }
}

/// Closes the root element, with a "no data" note when nothing was drawn.
fn close(mut out: String, empty: bool) -> String {
    if empty {
        let _ = write!(
            out,
            r##"<text x="{x}" y="{y}" text-anchor="middle" fill="#888">no data</text>"##,
            x = LEFT + PLOT_W / 2.0,
            y = TOP + PLOT_H / 2.0,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_invalid_characters() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}c\nd"), "a\u{FFFD}b\u{FFFD}c\nd");
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.3, Unit::Count), 1.0);
        assert_eq!(nice_step(3.0, Unit::Count), 5.0);
        assert_eq!(nice_step(130.0, Unit::Count), 200.0);
        assert_eq!(nice_step(0.07, Unit::Ratio), 0.1);
        assert_eq!(
            nice_step(40.0 * MINUTE_MS as f64, Unit::DurationMs),
            HOUR_MS as f64
        );
        let scale = Scale::of([0.0, 7.0].into_iter(), Unit::Count);
        assert_eq!(scale.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!((scale.lo, scale.hi), (0.0, 8.0));
    }

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(format_value(3.0, Unit::Count), "3");
        assert_eq!(format_value(2.5, Unit::Count), "2.5");
        assert_eq!(format_value(0.125, Unit::Ratio), "12.5%");
        assert_eq!(format_value(0.2, Unit::Ratio), "20%");
        assert_eq!(format_value(7_500_000.0, Unit::DurationMs), "2h 5m");
    }
}
