//! The route table (what the control plane hands the proxy) and its compiled, lock-free form
//! (what the hot path reads): a weighted schedule over groups, round robin inside a group, and
//! sticky rules that pin chosen users to one version.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::header::{COOKIE, HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

use crate::ProxyError;
use crate::pool::BackendPool;
use crate::stats::VersionCounters;

/// One version's backends and its share of traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The version these backends run, e.g. `v7`; the key of the per-version counters.
    pub version: String,
    /// Relative share of the weighted traffic; 0 sends this group nothing but sticky traffic.
    pub weight: u32,
    /// The backends, chosen round robin.
    #[serde(default)]
    pub backends: Vec<SocketAddr>,
}

/// Route a chosen group of users to one version: a request whose header `header` equals `value`
/// (or whose cookie `cookie` equals `value`) goes to `version` regardless of weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyRule {
    /// Request header to compare (case-insensitive name, exact value).
    #[serde(default)]
    pub header: Option<String>,
    /// Cookie name to compare (exact name and value).
    #[serde(default)]
    pub cookie: Option<String>,
    /// The value that selects the rule.
    pub value: String,
    /// The version (a group's `version`) matching requests go to.
    pub version: String,
}

/// Everything the proxy needs for one listener; replaced atomically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// The versions and their weights.
    pub groups: Vec<Group>,
    /// Sticky rules, checked in order before the weights.
    #[serde(default)]
    pub sticky: Vec<StickyRule>,
    /// How long connections to removed backends may stay busy before they are closed.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// How long a backend may take to answer a request (response headers) before the client
    /// gets a 504 and it counts as a 5xx of that version; 0 waits for ever.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
}

fn default_drain_timeout_ms() -> u64 {
    10_000
}

/// The default upstream timeout: one minute.
pub fn default_upstream_timeout_ms() -> u64 {
    60_000
}

impl RouteTable {
    /// A table sending all traffic to `backends` as version `version`.
    pub fn single(version: impl Into<String>, backends: Vec<SocketAddr>) -> RouteTable {
        RouteTable {
            groups: vec![Group {
                version: version.into(),
                weight: 1,
                backends,
            }],
            sticky: Vec::new(),
            drain_timeout_ms: default_drain_timeout_ms(),
            upstream_timeout_ms: default_upstream_timeout_ms(),
        }
    }

    /// Checks the table: versions are non-empty and unique, every sticky rule names exactly one
    /// of header or cookie, a valid header name, and a version that has a group.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |msg: String| Err(ProxyError::InvalidTable(msg));
        let mut seen = HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            if g.version.is_empty() {
                return bad(format!("groups[{i}].version is empty; name the version"));
            }
            if !seen.insert(g.version.as_str()) {
                return bad(format!(
                    "groups[{i}].version `{}` appears twice; merge the groups",
                    g.version
                ));
            }
        }
        for (i, r) in self.sticky.iter().enumerate() {
            match (&r.header, &r.cookie) {
                (Some(h), None) => {
                    if HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return bad(format!(
                            "sticky[{i}].header `{h}` is not a valid header name"
                        ));
                    }
                }
                (None, Some(c)) if !c.is_empty() => {}
                _ => {
                    return bad(format!(
                        "sticky[{i}] must set exactly one of `header` or `cookie`"
                    ));
                }
            }
            if !seen.contains(r.version.as_str()) {
                return bad(format!(
                    "sticky[{i}].version `{}` has no group; add the group or fix the name",
                    r.version
                ));
            }
        }
        Ok(())
    }
}

/// A group as the hot path sees it: counters and backend pools resolved, a round-robin cursor.
pub(crate) struct CompiledGroup {
    pub(crate) counters: Arc<VersionCounters>,
    pub(crate) backends: Vec<Arc<BackendPool>>,
    cursor: AtomicUsize,
}

impl CompiledGroup {
    /// The next backend in round-robin order, or `None` for an empty group.
    pub(crate) fn next_backend(&self) -> Option<&Arc<BackendPool>> {
        match self.backends.len() {
            0 => None,
            1 => self.backends.first(),
            n => self
                .backends
                .get(self.cursor.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

enum StickyKey {
    Header(HeaderName),
    Cookie(String),
}

struct CompiledSticky {
    key: StickyKey,
    value: String,
    group: usize,
}

/// A route table compiled for the hot path. Immutable apart from its atomic cursors.
pub(crate) struct Compiled {
    pub(crate) table: RouteTable,
    pub(crate) groups: Vec<CompiledGroup>,
    sticky: Vec<CompiledSticky>,
    /// Group indices in smooth-weighted-round-robin order; one full cycle is exact.
    schedule: Vec<u16>,
    cursor: AtomicUsize,
}

/// Largest schedule kept; bigger weight sums are scaled down to this (proportions within 1/65536).
const MAX_SCHEDULE: u64 = 1 << 16;

impl Compiled {
    /// Compiles `table`, resolving pools and counters through the callbacks. Lenient: invalid
    /// sticky rules are skipped (callers validate first), groups past 65535 are ignored.
    pub(crate) fn new(
        table: RouteTable,
        mut pool: impl FnMut(SocketAddr) -> Arc<BackendPool>,
        mut counters: impl FnMut(&str) -> Arc<VersionCounters>,
    ) -> Compiled {
        let groups: Vec<CompiledGroup> = table
            .groups
            .iter()
            .take(u16::MAX as usize)
            .map(|g| CompiledGroup {
                counters: counters(&g.version),
                backends: g.backends.iter().map(|a| pool(*a)).collect(),
                cursor: AtomicUsize::new(0),
            })
            .collect();
        let sticky = table
            .sticky
            .iter()
            .filter_map(|r| {
                let group = table
                    .groups
                    .iter()
                    .take(groups.len())
                    .position(|g| g.version == r.version)?;
                let key = match (&r.header, &r.cookie) {
                    (Some(h), _) => StickyKey::Header(HeaderName::from_bytes(h.as_bytes()).ok()?),
                    (None, Some(c)) => StickyKey::Cookie(c.clone()),
                    (None, None) => return None,
                };
                Some(CompiledSticky {
                    key,
                    value: r.value.clone(),
                    group,
                })
            })
            .collect();
        // Groups without backends get no share: their weight would only produce 502s.
        let weights: Vec<u64> = table
            .groups
            .iter()
            .take(groups.len())
            .map(|g| {
                if g.backends.is_empty() {
                    0
                } else {
                    u64::from(g.weight)
                }
            })
            .collect();
        let schedule = smooth_schedule(&weights);
        Compiled {
            table,
            groups,
            sticky,
            schedule,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Chooses the group for a request: the first matching sticky rule whose group has
    /// backends, else the next slot of the weighted schedule. `None` when nothing can serve.
    pub(crate) fn choose(&self, headers: &HeaderMap) -> Option<usize> {
        for rule in &self.sticky {
            let hit = match &rule.key {
                StickyKey::Header(name) => headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.as_bytes() == rule.value.as_bytes()),
                StickyKey::Cookie(name) => headers
                    .get_all(COOKIE)
                    .iter()
                    .any(|v| cookie_matches(v.as_bytes(), name.as_bytes(), rule.value.as_bytes())),
            };
            if hit
                && self
                    .groups
                    .get(rule.group)
                    .is_some_and(|g| !g.backends.is_empty())
            {
                return Some(rule.group);
            }
        }
        self.weighted()
    }

    /// The next group of the weighted schedule.
    fn weighted(&self) -> Option<usize> {
        match self.schedule.len() {
            0 => None,
            n => {
                let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                self.schedule.get(slot).map(|g| usize::from(*g))
            }
        }
    }
}

/// True if the `Cookie` header value `header` holds `name=value`.
fn cookie_matches(header: &[u8], name: &[u8], value: &[u8]) -> bool {
    header.split(|b| *b == b';').any(|pair| {
        let pair = pair.trim_ascii();
        match pair.iter().position(|b| *b == b'=') {
            Some(eq) => {
                pair.get(..eq).map(<[u8]>::trim_ascii) == Some(name)
                    && pair
                        .get(eq + 1..)
                        .map(|v| v.trim_ascii().trim_ascii_start())
                        .map(|v| {
                            v.strip_prefix(b"\"")
                                .and_then(|v| v.strip_suffix(b"\""))
                                .unwrap_or(v)
                        })
                        == Some(value)
            }
            None => false,
        }
    })
}

/// One cycle of smooth weighted round robin (nginx's algorithm) over `weights`, reduced by
/// their greatest common divisor. Over the cycle each group appears exactly `weight` times,
/// spread as evenly as possible; zero weights never appear.
fn smooth_schedule(weights: &[u64]) -> Vec<u16> {
    let mut w: Vec<u64> = weights.to_vec();
    let g = w.iter().copied().filter(|x| *x > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    w.iter_mut().for_each(|x| *x /= g);
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        // Keep every non-zero weight non-zero; proportions stay within one slot in 65536.
        w.iter_mut().for_each(|x| {
            if *x > 0 {
                *x = (*x * MAX_SCHEDULE / total).max(1);
            }
        });
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0usize;
        for (i, wi) in w.iter().enumerate() {
            if let Some(c) = current.get_mut(i) {
                *c += *wi as i64;
            }
            if current.get(i) > current.get(best) {
                best = i;
            }
        }
        if let Some(c) = current.get_mut(best) {
            *c -= total;
        }
        out.push(best as u16);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &[u16], g: u16) -> usize {
        s.iter().filter(|x| **x == g).count()
    }

    #[test]
    fn schedule_is_exact_and_reduced() {
        let s = smooth_schedule(&[90, 10]);
        assert_eq!(s.len(), 10);
        assert_eq!(count(&s, 0), 9);
        assert_eq!(count(&s, 1), 1);
        let s = smooth_schedule(&[100, 0]);
        assert_eq!(s, vec![0]);
        assert!(smooth_schedule(&[0, 0]).is_empty());
        assert!(smooth_schedule(&[]).is_empty());
        let s = smooth_schedule(&[5, 3, 2]);
        assert_eq!((count(&s, 0), count(&s, 1), count(&s, 2)), (5, 3, 2));
    }

    #[test]
    fn schedule_is_smooth() {
        // 1 in 4 for the canary, never two canary slots in a row.
        let s = smooth_schedule(&[3, 1]);
        assert_eq!(count(&s, 1), 1);
        let s = smooth_schedule(&[1, 1]);
        assert_eq!(s, vec![0, 1]);
    }

    #[test]
    fn huge_weights_are_scaled_but_keep_zeroes_and_non_zeroes() {
        let s = smooth_schedule(&[u32::MAX as u64, 1, 0]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 2);
        assert_eq!(count(&s, 1), 1);
        assert_eq!(count(&s, 2), 0);
    }

    #[test]
    fn cookies_match_by_exact_name_and_value() {
        assert!(cookie_matches(b"a=1; beta=yes; c=3", b"beta", b"yes"));
        assert!(cookie_matches(b"beta=\"yes\"", b"beta", b"yes"));
        assert!(!cookie_matches(b"xbeta=yes", b"beta", b"yes"));
        assert!(!cookie_matches(b"beta=yess", b"beta", b"yes"));
        assert!(!cookie_matches(b"beta", b"beta", b"yes"));
        assert!(!cookie_matches(b"", b"beta", b"yes"));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut t = RouteTable::single("v1", vec![]);
        assert!(t.validate().is_ok());
        t.groups.push(t.groups[0].clone());
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        t.groups.pop();
        t.sticky.push(StickyRule {
            header: Some("x-beta".into()),
            cookie: Some("beta".into()),
            value: "1".into(),
            version: "v1".into(),
        });
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        t.sticky[0].cookie = None;
        assert!(t.validate().is_ok());
        t.sticky[0].version = "v9".into();
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("has no group")
        );
        t.sticky[0].version = "v1".into();
        t.sticky[0].header = Some("bad header".into());
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("not a valid header")
        );
    }

    #[test]
    fn table_json_defaults() {
        let t: RouteTable = serde_json::from_str(
            r#"{"groups":[{"version":"v1","weight":1,"backends":["127.0.0.1:1"]}]}"#,
        )
        .unwrap();
        assert_eq!(t.drain_timeout_ms, 10_000);
        assert!(t.sticky.is_empty());
        assert!(serde_json::from_str::<RouteTable>(r#"{"groups":[],"bogus":1}"#).is_err());
    }
}
