//! The alert settings the engine loop works with: each project's grouping, channels and
//! on-call configuration (from the `sluice.yml` on its production branch) and the live
//! silences, compiled once per reload.
//!
//! A project's "production branch" is the branch of the last environment of its
//! `sluice.yml` (environments are listed in promotion order): the settings that page people
//! are the ones that reached production, not a developer's branch.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_incident::{AlertSignal, Env, Grouping};
use sluice_rules::{Matcher, Silence};
use sluice_spec::Config;

use crate::engine::{Engine, now_ms};

/// A silence ready to match.
struct LiveSilence {
    id: i64,
    project: Option<String>,
    silence: Silence,
}

/// Settings of every project plus the live silences.
pub struct AlertSettings {
    /// Every project that existed at load time, with or without a valid configuration.
    projects: std::collections::HashSet<String>,
    configs: HashMap<String, Arc<Config>>,
    groupings: HashMap<String, Grouping>,
    default_grouping: Grouping,
    silences: Vec<LiveSilence>,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The grouping of an `alerts` section.
pub fn grouping_of(a: &sluice_spec::Alerts) -> Grouping {
    Grouping {
        group_by: a.group_by.clone(),
        group_wait_ms: millis(a.group_wait),
        group_interval_ms: millis(a.group_interval),
        group_window_ms: millis(a.group_window),
    }
}

impl AlertSettings {
    /// Reads every project's settings and the live silences. Problems are logged and leave
    /// defaults: alerting must keep working when one project's file is broken.
    pub async fn load(engine: &Engine) -> AlertSettings {
        let mut out = AlertSettings {
            projects: std::collections::HashSet::new(),
            configs: HashMap::new(),
            groupings: HashMap::new(),
            default_grouping: grouping_of(&sluice_spec::Alerts::default()),
            silences: Vec::new(),
        };
        match engine.store.projects().await {
            Ok(projects) => {
                for p in projects {
                    out.projects.insert(p.name.clone());
                    if let Some(c) = engine.production_config(&p.name).await {
                        out.groupings.insert(p.name.clone(), grouping_of(&c.alerts));
                        out.configs.insert(p.name, c);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list projects for alert settings"),
        }
        match engine.store.live_silences(now_ms()).await {
            Ok(rows) => {
                for row in rows {
                    match compile_silence(&row) {
                        Ok(silence) => out.silences.push(LiveSilence {
                            id: row.id,
                            project: row.project,
                            silence,
                        }),
                        Err(e) => {
                            tracing::warn!(silence = row.id, error = %e, "stored silence skipped")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read silences"),
        }
        out
    }

    /// The grouping of a project (defaults when it has none).
    pub fn grouping_of(&self, project: &str) -> &Grouping {
        self.groupings
            .get(project)
            .unwrap_or(&self.default_grouping)
    }

    /// Each project's `alerts.rate_limit`.
    pub fn rate_limits(&self) -> HashMap<String, u32> {
        self.configs
            .iter()
            .map(|(p, c)| (p.clone(), c.alerts.rate_limit))
            .collect()
    }

    /// Whether the project existed when the settings were read.
    pub fn knows(&self, project: &str) -> bool {
        self.projects.contains(project)
    }

    /// The production configuration of a project, if it has a valid one.
    pub fn config(&self, project: &str) -> Option<&Arc<Config>> {
        self.configs.get(project)
    }
}

impl Engine {
    /// The `sluice.yml` of a project's production branch (the branch of its last
    /// environment), if it is valid.
    pub async fn production_config(&self, project: &str) -> Option<Arc<Config>> {
        let mirror = self.mirror_of(project).await.ok()?;
        let heads = self.store.branch_heads(project).await.ok()?;
        let mut any = None;
        for h in &heads {
            if let Ok((_, parsed)) = self.config_at(&mirror, project, &h.commit).await
                && let Ok(c) = parsed.as_ref()
            {
                any = Some(c.clone());
                break;
            }
        }
        let any = any?;
        let branch = any.environments.last().map(|e| e.branch.clone())?;
        let head = heads.iter().find(|h| h.branch == branch);
        match head {
            Some(h) => match self.config_at(&mirror, project, &h.commit).await {
                Ok((_, parsed)) => match parsed.as_ref() {
                    Ok(c) => Some(Arc::new(c.clone())),
                    Err(_) => Some(Arc::new(any)),
                },
                Err(_) => Some(Arc::new(any)),
            },
            None => Some(Arc::new(any)),
        }
    }
}

/// How far back stored overrides are read when resolving who is on call. An override that
/// ended within this time can still decide since when the current shift runs; older ones
/// cannot matter to "now", "next" or a page.
const OVERRIDE_LOOKBACK_MS: i64 = 31 * 86_400_000;

/// `schedules` with the stored overrides of their project merged in: each row goes into the
/// schedule it names, after any overrides the schedule already has and in the order they
/// were added, so a later override wins over an earlier one where they overlap.
/// Rows naming a schedule that is not (or no longer) in the file are left out.
pub fn with_overrides(
    schedules: &[sluice_oncall::Schedule],
    rows: &[sluice_store::OverrideRow],
) -> Vec<sluice_oncall::Schedule> {
    let mut out = schedules.to_vec();
    for row in rows {
        if let Some(s) = out.iter_mut().find(|s| s.name == row.schedule) {
            s.overrides.push(sluice_oncall::Override {
                user: row.user.clone(),
                start_ms: row.starts_ms,
                end_ms: row.ends_ms,
            });
        }
    }
    out
}

impl Engine {
    /// The on-call schedules of a project's production configuration with the overrides
    /// added through the API merged in ([`with_overrides`]), as of `now_ms`. When the
    /// overrides cannot be read, the file's schedules are used as they are (logged): paging
    /// someone beats paging nobody.
    pub async fn on_call_schedules(
        &self,
        project: &str,
        config: &Config,
        now_ms: i64,
    ) -> Vec<sluice_oncall::Schedule> {
        if config.oncall.schedules.is_empty() {
            return Vec::new();
        }
        let filter = sluice_store::OverrideFilter {
            project: Some(project.to_owned()),
            ends_after_ms: Some(now_ms.saturating_sub(OVERRIDE_LOOKBACK_MS)),
            limit: 10_000,
            ..sluice_store::OverrideFilter::default()
        };
        match self.store.overrides(&filter).await {
            Ok(rows) => with_overrides(&config.oncall.schedules, &rows),
            Err(e) => {
                tracing::warn!(project, error = %e, "cannot read on-call overrides; using the schedules without them");
                config.oncall.schedules.clone()
            }
        }
    }
}

/// A stored silence as a matcher set and time window.
pub fn compile_silence(row: &sluice_store::SilenceRow) -> Result<Silence, String> {
    let matchers: Vec<Matcher> =
        sluice_rules::parse_matchers(&row.matchers).map_err(|e| e.to_string())?;
    let recurrence = match &row.recurrence {
        Some(v) => Some(recurrence(v)?),
        None => None,
    };
    Silence::new(matchers, row.starts_ms, row.ends_ms, recurrence).map_err(|e| e.to_string())
}

/// A weekly window stored as `{"days": ["sunday"], "start": "02:00", "end": "04:00",
/// "time_zone": "Europe/Berlin"}` (days: full or three-letter English names).
pub fn recurrence(v: &serde_json::Value) -> Result<sluice_rules::Recurrence, String> {
    use jiff::civil::Weekday;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| format!("recurrence needs `{k}`"))
    };
    let mut days = Vec::new();
    for d in v
        .get("days")
        .and_then(|d| d.as_array())
        .ok_or("recurrence needs `days`, e.g. [\"sunday\"]")?
    {
        let name = d.as_str().unwrap_or_default().to_ascii_lowercase();
        let day = match name.get(..3).unwrap_or_default() {
            "mon" => Weekday::Monday,
            "tue" => Weekday::Tuesday,
            "wed" => Weekday::Wednesday,
            "thu" => Weekday::Thursday,
            "fri" => Weekday::Friday,
            "sat" => Weekday::Saturday,
            "sun" => Weekday::Sunday,
            _ => return Err(format!("unknown day `{d}`: use monday ... sunday")),
        };
        days.push(day);
    }
    sluice_rules::Recurrence::weekly(&days, text("start")?, text("end")?, text("time_zone")?)
        .map_err(|e| e.to_string())
}

/// The labels silences match against: the alert's own plus `project`, `service` and
/// `severity`.
pub fn match_labels(signal: &AlertSignal) -> sluice_alerts::Labels {
    let mut labels = signal.labels.clone();
    labels.insert("project".into(), signal.project.clone());
    labels.insert("service".into(), signal.service.clone());
    labels.insert("severity".into(), signal.severity.as_str().into());
    labels
}

impl Env for AlertSettings {
    fn grouping(&self, project: &str) -> &Grouping {
        self.grouping_of(project)
    }

    fn flapping(&self, project: &str) -> sluice_incident::FlapConfig {
        let f = self
            .config(project)
            .map(|c| c.alerts.flapping)
            .unwrap_or_default();
        sluice_incident::flap_config(
            millis(f.window),
            usize::try_from(f.changes).unwrap_or(usize::MAX),
        )
    }

    fn silenced(&self, signal: &AlertSignal, now_ms: i64) -> Option<i64> {
        if self.silences.is_empty() {
            return None;
        }
        let labels = match_labels(signal);
        self.silences
            .iter()
            .filter(|s| s.project.as_deref().is_none_or(|p| p == signal.project))
            .find(|s| s.silence.mutes(&labels, now_ms))
            .map(|s| s.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-01-05T09:00:00Z, a Monday: the layer's first handoff.
    const START: i64 = 1_767_603_600_000;

    fn schedule(name: &str) -> sluice_oncall::Schedule {
        sluice_oncall::Schedule {
            name: name.into(),
            time_zone: "UTC".into(),
            layers: vec![sluice_oncall::Layer {
                name: "weekly".into(),
                users: vec!["bob".into()],
                rotation: sluice_oncall::Rotation::Weekly,
                start: "2026-01-05T09:00".into(),
                restrictions: Vec::new(),
            }],
            overrides: vec![sluice_oncall::Override {
                user: "earlier".into(),
                start_ms: START + HOUR,
                end_ms: START + 10 * HOUR,
            }],
        }
    }

    fn row(id: i64, schedule: &str, user: &str, from: i64, to: i64) -> sluice_store::OverrideRow {
        sluice_store::OverrideRow {
            id,
            project: "shop".into(),
            schedule: schedule.into(),
            user: user.into(),
            starts_ms: from,
            ends_ms: to,
            created_by: "user:admin".into(),
            created_ms: 0,
        }
    }

    fn who(s: &sluice_oncall::Schedule, at: i64) -> Option<(String, Option<String>)> {
        let c = s.compile().ok()?.on_call_at(at)?;
        Some((c.user, c.layer))
    }

    #[test]
    fn stored_overrides_win_over_layers_and_earlier_overrides_in_the_order_added() {
        let rows = [
            row(1, "primary", "alice", START + 2 * HOUR, START + 6 * HOUR),
            row(2, "primary", "carol", START + 3 * HOUR, START + 4 * HOUR),
            row(3, "gone", "dan", START, START + 100 * HOUR),
        ];
        let merged = with_overrides(&[schedule("primary"), schedule("backup")], &rows);
        let primary = &merged[0];
        let at = |h: i64| who(primary, START + h * HOUR);
        assert_eq!(at(0), Some(("bob".into(), Some("weekly".into()))));
        assert_eq!(at(1), Some(("earlier".into(), None)));
        assert_eq!(at(2), Some(("alice".into(), None)));
        assert_eq!(at(3), Some(("carol".into(), None)));
        assert_eq!(at(5), Some(("alice".into(), None)));
        assert_eq!(at(6), Some(("earlier".into(), None)));
        assert_eq!(at(10), Some(("bob".into(), Some("weekly".into()))));
        // Another schedule is untouched, and a row naming a schedule the file no longer
        // has is left out.
        assert_eq!(merged[1], schedule("backup"));
        assert_eq!(merged.len(), 2);
        // The end is exclusive: at the override's end the layer is back.
        let only = with_overrides(
            &[schedule("primary")],
            &[row(
                1,
                "primary",
                "alice",
                START + 20 * HOUR,
                START + 21 * HOUR,
            )],
        );
        assert_eq!(
            who(&only[0], START + 21 * HOUR),
            Some(("bob".into(), Some("weekly".into())))
        );
    }
}
