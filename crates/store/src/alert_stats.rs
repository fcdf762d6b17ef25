//! Noise figures per alert rule, so people can tune thresholds: how many alerts a rule
//! raised over a period, how many incidents they made, how many resolved by themselves
//! within minutes of opening (a threshold that trips on blips), how many of their incidents
//! someone acknowledged (whether anyone acted), how many flapped, and how long they lasted.
//!
//! A rule is a sluice alert rule's name when the alert has one, else the alert's `alertname`
//! label (Alertmanager, Prometheus), else its source (e.g. `pagerduty`), per project. The
//! figures are read from the alert and incident rows as the engine wrote them; definitions
//! are in `docs/incidents.md` ("Noise by rule").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::rows::{Arg, SqlBuilder};
use crate::{Backend, Result, Store};

/// Which alerts the noise figures cover.
#[derive(Debug, Clone, Default)]
pub struct NoiseFilter {
    /// Only these projects (None: all).
    pub projects: Option<Vec<String>>,
    /// Alerts opened at or after this time (Unix ms).
    pub since_ms: i64,
    /// An alert that resolved by itself at most this long after it opened counts as
    /// auto-resolved quickly.
    pub quick_ms: i64,
}

/// The noise figures of one rule of one project. Shares are fractions from 0 to 1; a share
/// or ratio with nothing to divide by is None.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleNoise {
    /// Project.
    pub project: String,
    /// The rule: its name, else the `alertname` label, else the source.
    pub rule: String,
    /// Alerts opened in the period (silenced and flapping ones included).
    pub alerts: i64,
    /// Of them, muted by a silence when they opened or still.
    pub silenced: i64,
    /// Distinct incidents those alerts joined.
    pub incidents: i64,
    /// Alerts that joined an incident per incident.
    pub alerts_per_incident: Option<f64>,
    /// Alerts resolved by their source (not by hand) within `quick_ms` of opening.
    pub auto_resolved_quickly: i64,
    /// `auto_resolved_quickly / alerts`.
    pub auto_resolved_share: Option<f64>,
    /// Of the incidents, those someone acknowledged.
    pub acknowledged: i64,
    /// `acknowledged / incidents`.
    pub acknowledged_share: Option<f64>,
    /// Alerts marked flapping at some point.
    pub flapping: i64,
    /// `flapping / alerts`.
    pub flapping_share: Option<f64>,
    /// Alerts resolved so far (by their source or by hand).
    pub resolved: i64,
    /// Median time from an alert's opening to its resolve, over the resolved ones.
    pub median_resolve_ms: Option<i64>,
}

/// One rule's figures while they are being added up.
#[derive(Default)]
struct Tally {
    alerts: i64,
    silenced: i64,
    in_incidents: i64,
    incidents: BTreeSet<i64>,
    acknowledged: BTreeSet<i64>,
    quick: i64,
    flapping: i64,
    durations: Vec<i64>,
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The median of `values` (sorted here); the mean of the middle two for an even count.
fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(values[n / 2 - 1].midpoint(values[n / 2])),
    }
}

impl Store {
    /// The noise figures of every rule with alerts in the filter's period, the noisiest
    /// (most alerts) first, then by project and rule.
    pub async fn alert_noise(&self, f: &NoiseFilter) -> Result<Vec<RuleNoise>> {
        // The `alertname` label, read inside the database so no label map crosses the wire.
        let alertname = match self.inner.backend {
            Backend::Sqlite => "json_extract(a.labels, '$.alertname')",
            Backend::Postgres => "(CAST(a.labels AS jsonb) ->> 'alertname')",
        };
        let mut q = SqlBuilder::new(&format!(
            "SELECT a.project, COALESCE(a.rule, NULLIF({alertname}, ''), a.source) AS rule_key, \
             a.incident_id, a.status, a.silenced, a.flapping, a.created_ms, a.resolved_ms, \
             i.acked_ms AS incident_acked_ms, i.resolved_ms AS incident_resolved_ms, \
             i.resolved_by AS incident_resolved_by \
             FROM alerts a LEFT JOIN incidents i ON i.id = a.incident_id \
             WHERE a.created_ms >= "
        ));
        q.arg(Arg::Int(f.since_ms));
        if let Some(ps) = &f.projects {
            if ps.is_empty() {
                return Ok(Vec::new());
            }
            q.push(" AND a.project IN (");
            for (i, p) in ps.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.arg(Arg::Text(p.clone()));
            }
            q.push(")");
        }
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
        for row in &rows {
            let project: String = row.try_get("project")?;
            let rule: String = row.try_get("rule_key")?;
            let incident: Option<i64> = row.try_get("incident_id")?;
            let status: String = row.try_get("status")?;
            let created: i64 = row.try_get("created_ms")?;
            let resolved: Option<i64> = row.try_get("resolved_ms")?;
            let t = tallies.entry((project, rule)).or_default();
            t.alerts += 1;
            t.silenced += i64::from(row.try_get::<i64, _>("silenced")? != 0);
            t.flapping += i64::from(row.try_get::<i64, _>("flapping")? != 0);
            if let Some(id) = incident {
                t.in_incidents += 1;
                t.incidents.insert(id);
                if row
                    .try_get::<Option<i64>, _>("incident_acked_ms")?
                    .is_some()
                {
                    t.acknowledged.insert(id);
                }
            }
            // An open alert's `resolved_ms` is a resolve held while it flaps: not yet.
            let Some(resolved) = resolved.filter(|_| status == "resolved") else {
                continue;
            };
            let lasted = resolved.saturating_sub(created);
            t.durations.push(lasted);
            // Resolved by hand: its incident was resolved by someone at that very moment
            // (resolving an incident resolves its open alerts with it).
            let by_hand = row
                .try_get::<Option<String>, _>("incident_resolved_by")?
                .is_some()
                && row.try_get::<Option<i64>, _>("incident_resolved_ms")? == Some(resolved);
            if !by_hand && lasted <= f.quick_ms {
                t.quick += 1;
            }
        }
        let mut out: Vec<RuleNoise> = tallies
            .into_iter()
            .map(|((project, rule), mut t)| {
                let incidents = i64::try_from(t.incidents.len()).unwrap_or(i64::MAX);
                let acknowledged = i64::try_from(t.acknowledged.len()).unwrap_or(i64::MAX);
                RuleNoise {
                    project,
                    rule,
                    alerts: t.alerts,
                    silenced: t.silenced,
                    incidents,
                    alerts_per_incident: share(t.in_incidents, incidents),
                    auto_resolved_quickly: t.quick,
                    auto_resolved_share: share(t.quick, t.alerts),
                    acknowledged,
                    acknowledged_share: share(acknowledged, incidents),
                    flapping: t.flapping,
                    flapping_share: share(t.flapping, t.alerts),
                    resolved: i64::try_from(t.durations.len()).unwrap_or(i64::MAX),
                    median_resolve_ms: median(&mut t.durations),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.alerts
                .cmp(&a.alerts)
                .then_with(|| a.project.cmp(&b.project))
                .then_with(|| a.rule.cmp(&b.rule))
        });
        Ok(out)
    }
}
