//! The RustSec advisory layout (github.com/rustsec/advisory-db): one Markdown file per
//! advisory under `crates/<name>/RUSTSEC-YYYY-NNNN.md`, opening with TOML front matter in a
//! ```` ```toml ```` fence (`[advisory]`, `[versions]`, optional `[affected]`), then a `# Title`
//! and the description.
//!
//! Conversion to OSV follows what the RustSec tooling does when it exports the database to
//! OSV and when cargo-audit matches: the `patched` and `unaffected` semver requirements are
//! the unaffected ranges; each requirement becomes one interval (`^` and `~` expand to their
//! upper bounds with a `-0` pre-release, a bare `>`/`<` bound is exclusive); the intervals
//! must not overlap, and the gaps between them become `introduced`/`fixed` event pairs in one
//! `SEMVER` range, with `0.0.0-0` standing for "from the first version". A bound `> v` that
//! starts an unaffected interval ends the affected one just above `v` (`v` with its patch
//! increased and `-0`, or `v.0` appended to a pre-release), the lowest version above `v`.

use std::collections::BTreeMap;

use semver::{Comparator, Op, Prerelease, Version, VersionReq};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, line_of, one_line};
use crate::osv::{Advisory, Affected, Event, PackageRef, Range, Reference, SeverityEntry};

#[derive(Debug, Deserialize)]
struct FrontMatter {
    advisory: AdvisorySection,
    versions: VersionsSection,
    #[serde(default)]
    affected: Option<AffectedSection>,
}

#[derive(Debug, Deserialize)]
struct AdvisorySection {
    id: String,
    package: String,
    date: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    related: Vec<String>,
    #[serde(default)]
    cvss: Option<String>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VersionsSection {
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AffectedSection {
    #[serde(default)]
    arch: Vec<String>,
    #[serde(default)]
    os: Vec<String>,
    #[serde(default)]
    functions: BTreeMap<String, Vec<String>>,
}

/// Where a RustSec advisory file lives decides its ecosystem: `crates/` holds crates.io
/// crates; `rust/` holds the Rust toolchain's own components, which no lockfile lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `crates/<name>/...`: crates.io.
    Crates,
    /// `rust/<component>/...`: the toolchain (imported under the ecosystem `RustSec:rust`).
    Rust,
}

/// Parses one RustSec advisory file into OSV. `path` is only used in messages.
pub fn parse(text: &str, collection: Collection, path: &str) -> Result<Advisory, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(after_open) = text
        .strip_prefix("```toml\n")
        .or_else(|| text.strip_prefix("```toml\r\n"))
    else {
        return Err(Error::parse_at(
            path,
            1,
            "a RustSec advisory starts with a ```toml fence holding its front matter",
        ));
    };
    let open_len = text.len() - after_open.len();
    let close = after_open
        .match_indices("```")
        .find(|(i, _)| *i == 0 || after_open.as_bytes().get(i - 1) == Some(&b'\n'))
        .map(|(i, _)| i)
        .ok_or_else(|| {
            Error::parse(
                path,
                "the ```toml front matter is not closed with ``` on its own line",
            )
        })?;
    let toml_text = &after_open[..close];
    let body = after_open[close + 3..].trim_start_matches(['\r', '\n']);
    let front: FrontMatter = toml::from_str(toml_text).map_err(|e| Error::Parse {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(text, open_len + s.start)),
        field: None,
        message: format!("{}; fix the TOML front matter", one_line(e.message())),
    })?;
    let adv = &front.advisory;
    let field = |f: &str, m: String| Error::parse_field(path, f, m);

    let date = parse_date(&adv.date).ok_or_else(|| {
        field(
            "advisory.date",
            format!("`{}` is not a YYYY-MM-DD date", adv.date),
        )
    })?;
    let withdrawn = match &adv.withdrawn {
        Some(w) => Some(parse_date(w).ok_or_else(|| {
            field(
                "advisory.withdrawn",
                format!("`{w}` is not a YYYY-MM-DD date"),
            )
        })?),
        None => None,
    };
    let parse_reqs = |list: &[String], name: &str| -> Result<Vec<VersionReq>, Error> {
        list.iter()
            .enumerate()
            .map(|(i, r)| {
                VersionReq::parse(r).map_err(|e| {
                    field(
                        &format!("versions.{name}[{i}]"),
                        format!("`{r}` is not a semver requirement: {e}"),
                    )
                })
            })
            .collect()
    };
    let patched = parse_reqs(&front.versions.patched, "patched")?;
    let unaffected = parse_reqs(&front.versions.unaffected, "unaffected")?;
    let intervals = affected_intervals(&unaffected, &patched)
        .map_err(|m| field("versions", format!("{m}; fix the requirements")))?;

    let mut severity = Vec::new();
    if let Some(vector) = &adv.cvss {
        let kind = if vector.starts_with("CVSS:4.") {
            "CVSS_V4"
        } else {
            "CVSS_V3"
        };
        severity.push(SeverityEntry {
            kind: kind.into(),
            score: vector.clone(),
        });
    }
    let (summary, details) = split_body(body);
    let mut events = Vec::new();
    for (introduced, fixed) in &intervals {
        events.push(Event {
            introduced: Some(
                introduced
                    .as_ref()
                    .map_or_else(|| "0.0.0-0".to_owned(), Version::to_string),
            ),
            ..Event::default()
        });
        if let Some(f) = fixed {
            events.push(Event {
                fixed: Some(f.to_string()),
                ..Event::default()
            });
        }
    }
    let affected_section = front.affected.unwrap_or_default();
    let ecosystem = match collection {
        Collection::Crates => "crates.io",
        Collection::Rust => "RustSec:rust",
    };
    let mut references = Vec::new();
    if let Some(u) = &adv.url {
        references.push(Reference {
            kind: "REPORT".into(),
            url: u.clone(),
        });
    }
    for u in &adv.references {
        references.push(Reference {
            kind: "WEB".into(),
            url: u.clone(),
        });
    }
    references.push(Reference {
        kind: "ADVISORY".into(),
        url: format!("https://rustsec.org/advisories/{}.html", adv.id),
    });
    let advisory = Advisory {
        schema_version: None,
        id: adv.id.clone(),
        modified: None,
        published: Some(format!("{date}T12:00:00Z")),
        withdrawn: withdrawn.map(|w| format!("{w}T12:00:00Z")),
        aliases: adv.aliases.clone(),
        related: adv.related.clone(),
        summary,
        details,
        severity,
        affected: vec![Affected {
            package: Some(PackageRef {
                ecosystem: ecosystem.into(),
                name: adv.package.clone(),
                purl: (collection == Collection::Crates)
                    .then(|| format!("pkg:cargo/{}", adv.package)),
            }),
            severity: Vec::new(),
            ranges: vec![Range {
                kind: "SEMVER".into(),
                repo: None,
                events,
                database_specific: serde_json::Value::Null,
            }],
            versions: Vec::new(),
            ecosystem_specific: json!({
                "affects": {
                    "arch": affected_section.arch,
                    "os": affected_section.os,
                    "functions": affected_section.functions.keys().collect::<Vec<_>>(),
                }
            }),
            database_specific: json!({
                "categories": adv.categories,
                "keywords": adv.keywords,
                "cvss": adv.cvss,
                "informational": adv.informational,
                "source": adv.source,
            }),
        }],
        references,
        database_specific: json!({ "source": "rustsec" }),
    };
    advisory.validate(path)?;
    Ok(advisory)
}

fn parse_date(s: &str) -> Option<String> {
    s.trim()
        .parse::<crate::date::Date>()
        .ok()
        .map(|d| d.to_string())
}

/// Title (first `# ` heading) and the rest.
fn split_body(body: &str) -> (Option<String>, Option<String>) {
    let mut lines = body.lines();
    let mut title = None;
    let mut rest = Vec::new();
    for line in lines.by_ref() {
        if title.is_none() {
            if let Some(t) = line.strip_prefix("# ") {
                title = Some(t.trim().to_owned());
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
        }
        rest.push(line);
    }
    let details = rest.join("\n").trim().to_owned();
    (title, (!details.is_empty()).then_some(details))
}

/// A bound of an unaffected interval.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Unbounded,
    Exclusive(Version),
    Inclusive(Version),
}

impl Bound {
    fn version(&self) -> Option<&Version> {
        match self {
            Bound::Unbounded => None,
            Bound::Exclusive(v) | Bound::Inclusive(v) => Some(v),
        }
    }
}

/// `start <= end` for interval bounds (equal only when both inclusive).
fn bounds_ordered(start: &Bound, end: &Bound) -> bool {
    match (start.version(), end.version()) {
        (None, _) | (_, None) => true,
        (Some(s), Some(e)) if s < e => true,
        _ => matches!((start, end), (Bound::Inclusive(s), Bound::Inclusive(e)) if s == e),
    }
}

fn comparator_version(c: &Comparator) -> Version {
    Version {
        major: c.major,
        minor: c.minor.unwrap_or(0),
        patch: c.patch.unwrap_or(0),
        pre: c.pre.clone(),
        build: semver::BuildMetadata::EMPTY,
    }
}

fn lowest_pre() -> Prerelease {
    Prerelease::new("0").unwrap_or(Prerelease::EMPTY)
}

/// One requirement as an unaffected interval.
fn interval(req: &VersionReq) -> Result<(Bound, Bound), String> {
    if req.comparators.len() > 2 {
        return Err(format!("`{req}` has more than two comparators"));
    }
    let (mut start, mut end) = (Bound::Unbounded, Bound::Unbounded);
    let alone = req.comparators.len() == 1;
    for c in &req.comparators {
        let v = comparator_version(c);
        match c.op {
            Op::Greater | Op::GreaterEq => {
                if start != Bound::Unbounded {
                    return Err(format!("`{req}` has two lower bounds"));
                }
                start = if c.op == Op::Greater {
                    Bound::Exclusive(v)
                } else {
                    Bound::Inclusive(v)
                };
            }
            Op::Less | Op::LessEq => {
                if end != Bound::Unbounded {
                    return Err(format!("`{req}` has two upper bounds"));
                }
                end = if c.op == Op::Less {
                    Bound::Exclusive(v)
                } else {
                    Bound::Inclusive(v)
                };
            }
            Op::Exact if alone => {
                start = Bound::Inclusive(v.clone());
                end = Bound::Inclusive(v);
            }
            Op::Caret if alone => {
                let mut upper = if c.major == 0 {
                    match (c.minor, c.patch) {
                        (Some(0), Some(p)) => Version::new(0, 0, p.saturating_add(1)),
                        (Some(m), _) => Version::new(0, m.saturating_add(1), 0),
                        (None, _) => Version::new(1, 0, 0),
                    }
                } else {
                    Version::new(c.major.saturating_add(1), 0, 0)
                };
                upper.pre = lowest_pre();
                start = Bound::Inclusive(v);
                end = Bound::Exclusive(upper);
            }
            Op::Tilde if alone => {
                let mut upper = match c.minor {
                    None => Version::new(c.major.saturating_add(1), 0, 0),
                    Some(m) => Version::new(c.major, m.saturating_add(1), 0),
                };
                upper.pre = lowest_pre();
                start = Bound::Inclusive(v);
                end = Bound::Exclusive(upper);
            }
            Op::Exact | Op::Caret | Op::Tilde => {
                return Err(format!(
                    "`{req}`: `=`, `^` and `~` define both bounds and must stand alone"
                ));
            }
            _ => return Err(format!("`{req}` uses an operator RustSec does not support")),
        }
    }
    if !bounds_ordered(&start, &end) {
        return Err(format!("`{req}` is an empty range"));
    }
    Ok((start, end))
}

/// The lowest version above `v`.
fn increment(v: &Version) -> Version {
    let mut v = v.clone();
    v.build = semver::BuildMetadata::EMPTY;
    if v.pre.is_empty() {
        v.patch = v.patch.saturating_add(1);
        v.pre = lowest_pre();
    } else {
        v.pre = Prerelease::new(&format!("{}.0", v.pre)).unwrap_or(v.pre.clone());
    }
    v
}

/// An affected interval `[introduced, fixed)`; `None` is unbounded.
type Interval = (Option<Version>, Option<Version>);

/// The affected intervals `[introduced, fixed)` between the unaffected ones.
fn affected_intervals(
    unaffected: &[VersionReq],
    patched: &[VersionReq],
) -> Result<Vec<Interval>, String> {
    let mut safe = Vec::new();
    for r in unaffected.iter().chain(patched) {
        safe.push(interval(r)?);
    }
    if safe.is_empty() {
        return Ok(vec![(None, None)]);
    }
    for (i, a) in safe.iter().enumerate() {
        for b in &safe[i + 1..] {
            if bounds_ordered(&a.0, &b.1) && bounds_ordered(&b.0, &a.1) {
                return Err("the patched and unaffected ranges overlap".into());
            }
        }
    }
    safe.sort_by(|a, b| match (a.0.version(), b.0.version()) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Less,
        (_, None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    });
    let mut out = Vec::new();
    match &safe[0].0 {
        Bound::Unbounded => {}
        Bound::Exclusive(v) => out.push((None, Some(increment(v)))),
        Bound::Inclusive(v) => out.push((None, Some(v.clone()))),
    }
    for w in safe.windows(2) {
        let start = match &w[0].1 {
            Bound::Unbounded => return Err("an unbounded range is followed by another".into()),
            Bound::Exclusive(v) => v.clone(),
            Bound::Inclusive(v) => increment(v),
        };
        let end = match &w[1].0 {
            Bound::Unbounded => return Err("an unbounded range follows another".into()),
            Bound::Exclusive(v) => increment(v),
            Bound::Inclusive(v) => v.clone(),
        };
        out.push((Some(start), Some(end)));
    }
    match &safe[safe.len() - 1].1 {
        Bound::Unbounded => {}
        Bound::Exclusive(v) => out.push((Some(v.clone()), None)),
        Bound::Inclusive(v) => out.push((Some(increment(v)), None)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystem::Ecosystem;
    use crate::range::is_affected;

    const SMALLVEC: &str = "```toml\n[advisory]\nid = \"RUSTSEC-2018-0003\"\npackage = \"smallvec\"\naliases = [\"CVE-2018-20991\"]\ncvss = \"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"\ndate = \"2018-07-19\"\n\n[versions]\npatched = [\">= 0.6.3\", \"^0.3.4\", \"^0.4.5\", \"^0.5.1\"]\nunaffected = [\"< 0.3.2\"]\n```\n\n# Possible double free\n\nDetails here.\n";

    fn affected(a: &Advisory, v: &str) -> bool {
        is_affected(v, &a.affected[0], &Ecosystem::CratesIo).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn converts_like_the_rustsec_osv_export() {
        let a = parse(SMALLVEC, Collection::Crates, "x.md").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.summary.as_deref(), Some("Possible double free"));
        assert_eq!(a.details.as_deref(), Some("Details here."));
        let events: Vec<(&str, &str)> = a.affected[0].ranges[0]
            .events
            .iter()
            .map(Event::single)
            .collect();
        assert_eq!(
            events,
            [
                ("introduced", "0.3.2"),
                ("fixed", "0.3.4"),
                ("introduced", "0.4.0-0"),
                ("fixed", "0.4.5"),
                ("introduced", "0.5.0-0"),
                ("fixed", "0.5.1"),
                ("introduced", "0.6.0-0"),
                ("fixed", "0.6.3")
            ]
        );
        assert!(affected(&a, "0.3.3") && !affected(&a, "0.3.1") && !affected(&a, "0.6.3"));
    }

    #[test]
    fn no_patched_versions_means_every_version() {
        let text = SMALLVEC
            .replace("patched = [\">= 0.6.3\", \"^0.3.4\", \"^0.4.5\", \"^0.5.1\"]\nunaffected = [\"< 0.3.2\"]", "patched = []")
            .replace("cvss = ", "informational = \"unmaintained\"\n#");
        let a = parse(&text, Collection::Crates, "x.md").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.informational(), Some("unmaintained"));
        assert!(affected(&a, "0.0.1") && affected(&a, "99.0.0"));
    }

    #[test]
    fn exclusive_lower_bound_and_tilde() {
        let text = SMALLVEC.replace(
            "patched = [\">= 0.6.3\", \"^0.3.4\", \"^0.4.5\", \"^0.5.1\"]\nunaffected = [\"< 0.3.2\"]",
            "patched = [\"> 1.2.3\", \"~0.9.5\"]",
        );
        let a = parse(&text, Collection::Crates, "x.md").unwrap_or_else(|e| panic!("{e}"));
        assert!(affected(&a, "1.2.3") && !affected(&a, "1.2.4"));
        assert!(affected(&a, "0.9.4") && !affected(&a, "0.9.9") && affected(&a, "0.10.0"));
    }

    #[test]
    fn errors_name_the_line_or_field() {
        let msg = |t: &str| {
            parse(t, Collection::Crates, "crates/x/RUSTSEC-1.md")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(msg("# no front matter").contains(":1: a RustSec advisory starts"));
        let bad_toml = SMALLVEC.replace("date = \"2018-07-19\"", "date = ");
        assert!(
            msg(&bad_toml).starts_with("crates/x/RUSTSEC-1.md:7: "),
            "{}",
            msg(&bad_toml)
        );
        let bad_req = SMALLVEC.replace("^0.3.4", "banana");
        assert!(
            msg(&bad_req).contains("field `versions.patched[1]`"),
            "{}",
            msg(&bad_req)
        );
        let overlap = SMALLVEC.replace("< 0.3.2", "< 0.7.0");
        assert!(msg(&overlap).contains("overlap"), "{}", msg(&overlap));
        assert!(msg(&SMALLVEC.replace("\n```\n\n#", "\n\n#")).contains("not closed"));
    }
}
