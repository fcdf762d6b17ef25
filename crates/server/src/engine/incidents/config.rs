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
