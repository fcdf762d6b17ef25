//! Signals sluice raises itself: the alert rules of each project's `sluice.yml` and the
//! health of running instances outside deployments.
//!
//! One task ([`run`]) wakes every `rule_interval` (server configuration) and
//! - samples, per deployed (project, service, environment), the proxy's counters of that
//!   target (all versions, all listeners) and, for rules over the service's own metrics,
//!   scrapes the Prometheus text endpoint of every ready instance (labelled `instance`);
//! - evaluates each rule of the project's production `sluice.yml` (read like the incident
//!   settings, [`Engine::production_config`]) with `sluice-rules`: window, `for:` hold, and
//!   sends a trigger when it starts firing and a resolve when it stops (scope
//!   `rule:{project}`, key `{rule}/{service}/{env}`);
//! - looks at the instances of the serving release of every target that is not being
//!   deployed: one that stays unhealthy or crash-looping for more than [`HEALTH_GRACE`]
//!   evaluations raises `InstanceUnhealthy` / `InstanceCrashLoop` (scope `health:{project}`,
//!   key `{service}/{env}/{instance}`), resolved when it is healthy again or gone.
//!
//! Signals go through [`super::Incidents::accept`] like any sender's, so they are journalled,
//! deduplicated by (scope, key), grouped and notified by the same engine loop.
//!
//! Missing data never decides: a failed scrape or an unreadable proxy leaves a rule where it
//! was (no firing, no resolve), and a project whose configuration cannot be read keeps its
//! alerts as they are. Across a restart the firing state comes back from the open alerts in
//! the store: a restored rule alert counts as firing (a re-trigger would only repeat it) and
//! is resolved by the first evaluation that has data and finds the condition false, or once a
//! whole window has passed without data; a restored instance alert resolves when the
//! instance is seen healthy or has been gone for [`HEALTH_GRACE`] evaluations.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_incident::{Action, AlertSignal, Labels, Severity};
use sluice_proxy::{BUCKETS_MS, Stats};
use sluice_rules::{
    Aggregation, Exposition, Histogram, Metric, MetricStore, ProxySnapshot, Rule, RuleSpec,
    RuleState, RuleTransition,
};
use sluice_runtime::{InstanceState, InstanceStatus, Runtime};
use sluice_spec::{AlertRule, Config};
use sluice_store::{DeploymentFilter, Target};

use crate::engine::{Engine, now_ms};

/// Evaluations an instance must be seen unhealthy in a row before it alerts (it alerts on
/// the next one), and must be gone in a row before its alert resolves.
pub const HEALTH_GRACE: u32 = 2;
/// The shortest evaluation interval honoured, whatever the configuration says.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Largest metrics body read from an instance; a bigger one is a failed scrape.
const SCRAPE_MAX_BYTES: usize = 8 << 20;
/// Bodies larger than this are parsed on a blocking thread.
const PARSE_INLINE_BYTES: usize = 64 << 10;
/// Signals kept for a retry while the journal refuses them; the oldest go first beyond.
const OUTBOX_MAX: usize = 10_000;
/// Running deployments read per evaluation at most.
const RUNNING_MAX: i64 = 10_000;

/// (project, service, env).
type TargetKey = (String, String, String);
/// (project, rule, service, env).
type RuleKey = (String, String, String, String);
/// A target and, for stores fed by a scrape, the scraped path.
type StoreKey = (TargetKey, Option<String>);
/// (project, service, env, instance id).
type HealthKey = (String, String, String, String);
/// What one scrape round found per (target, path): each ready instance's exposition, or
/// `None` when there is no data (a scrape failed, or no instance was ready).
type Scraped = HashMap<(TargetKey, String), Option<Vec<(String, Exposition)>>>;

/// Runs the evaluations until the server shuts down.
pub async fn run(engine: Arc<Engine>) {
    let interval = engine.config.rule_interval.max(MIN_INTERVAL);
    let mut signals = Signals::restore(&engine, interval).await;
    let mut shutdown = engine.shutdown_signal();
    loop {
        // The first evaluation waits one interval, so the deploy controller has adopted the
        // instances of a previous server before their absence could mean anything.
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
        signals.evaluate(&engine).await;
    }
}

/// A rule applied to one target.
struct RuleSlot {
    rule: Rule,
    spec: AlertRule,
    /// Restored as firing after a restart and not yet evaluated with data.
    restored: bool,
}

/// The samples of one target (and scrape path).
struct StoreSlot {
    store: MetricStore,
    retention_ms: i64,
}

/// What is wrong with an instance, in increasing order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    Unhealthy,
    CrashLoop,
}

impl Problem {
    fn alertname(self) -> &'static str {
        match self {
            Problem::Unhealthy => "InstanceUnhealthy",
            Problem::CrashLoop => "InstanceCrashLoop",
        }
    }
}

/// How an instance looks at one evaluation.
enum Seen {
    /// Ready: any alert resolves.
    Healthy,
    /// Starting for the first time: nothing to say yet.
    Starting,
    /// Something is wrong.
    Bad(Problem),
}

fn classify(i: &InstanceStatus) -> Seen {
    match &i.state {
        InstanceState::Ready => Seen::Healthy,
        InstanceState::Starting if i.restarts == 0 => Seen::Starting,
        // Started again after a failure and not ready yet: still the same trouble.
        InstanceState::Starting
        | InstanceState::Unhealthy
        | InstanceState::Restarting { .. }
        | InstanceState::Exited { .. } => Seen::Bad(Problem::Unhealthy),
        InstanceState::CrashLoop => Seen::Bad(Problem::CrashLoop),
        InstanceState::Stopping | InstanceState::Stopped => Seen::Starting,
    }
}

/// An instance's alert state.
#[derive(Default)]
struct HealthSlot {
    /// Evaluations in a row it was seen bad.
    bad: u32,
    /// Evaluations in a row it was not listed.
    absent: u32,
    /// The problem alerted, while the alert is open.
    firing: Option<Problem>,
}

/// Everything the task remembers between evaluations.
struct Signals {
    interval_ms: i64,
    started_ms: i64,
    http: reqwest::Client,
    rules: HashMap<RuleKey, RuleSlot>,
    /// Rule alerts open at start whose rule has not been seen yet: when they started.
    restored: HashMap<RuleKey, i64>,
    stores: HashMap<StoreKey, StoreSlot>,
    health: HashMap<HealthKey, HealthSlot>,
    /// Scrapes failing now (logged once when they start failing).
    failing: HashSet<(TargetKey, String)>,
    outbox: Vec<AlertSignal>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Signals {
    /// Starts from the open rule and instance alerts of the store.
    async fn restore(engine: &Engine, interval: Duration) -> Signals {
        let mut s = Signals {
            interval_ms: millis(interval),
            started_ms: now_ms(),
            http: reqwest::Client::builder()
                .timeout(interval.clamp(Duration::from_secs(1), Duration::from_secs(5)))
                .build()
                .unwrap_or_default(),
            rules: HashMap::new(),
            restored: HashMap::new(),
            stores: HashMap::new(),
            health: HashMap::new(),
            failing: HashSet::new(),
            outbox: Vec::new(),
        };
        let open = match engine.store.open_alerts().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "alert rules start without the open alerts");
                Vec::new()
            }
        };
        for a in open {
            let parts: Vec<&str> = a.dedup_key.splitn(3, '/').collect();
            let [first, second, third] = parts[..] else {
                continue;
            };
            if let Some(project) = a.scope.strip_prefix("rule:") {
                let key = (project.into(), first.into(), second.into(), third.into());
                s.restored.insert(key, a.starts_ms);
            } else if let Some(project) = a.scope.strip_prefix("health:") {
                let problem = match a.labels.get("alertname").map(String::as_str) {
                    Some("InstanceCrashLoop") => Problem::CrashLoop,
                    _ => Problem::Unhealthy,
                };
                let key = (project.into(), first.into(), second.into(), third.into());
                s.health.insert(
                    key,
                    HealthSlot {
                        bad: HEALTH_GRACE + 1,
                        absent: 0,
                        firing: Some(problem),
                    },
                );
            }
        }
        s
    }

    /// One evaluation of everything.
    async fn evaluate(&mut self, engine: &Engine) {
        let targets = match engine.store.targets(None).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "alert rules skipped an evaluation: cannot read targets");
                return;
            }
        };
        let configs = self.configs(engine, &targets).await;
        self.evaluate_rules(engine, &targets, &configs).await;
        self.evaluate_health(engine, &targets, &configs).await;
        self.flush(engine).await;
    }

    /// The production configuration of every project with targets or alerts; `None` for
    /// one that cannot be read now (its alerts stay as they are).
    async fn configs(
        &self,
        engine: &Engine,
        targets: &[Target],
    ) -> HashMap<String, Option<Arc<Config>>> {
        let projects: BTreeSet<&str> = targets
            .iter()
            .map(|t| t.project.as_str())
            .chain(self.rules.keys().map(|k| k.0.as_str()))
            .chain(self.restored.keys().map(|k| k.0.as_str()))
            .collect();
        let mut out = HashMap::new();
        for p in projects {
            out.insert(p.to_owned(), engine.production_config(p).await);
        }
        out
    }

    async fn evaluate_rules(
        &mut self,
        engine: &Engine,
        targets: &[Target],
        configs: &HashMap<String, Option<Arc<Config>>>,
    ) {
        let now = now_ms();
        // Which rule applies to which target now.
        let mut wanted: HashMap<RuleKey, &AlertRule> = HashMap::new();
        for (project, config) in configs {
            let Some(config) = config else { continue };
            for rule in &config.alerts.rules {
                for t in targets.iter().filter(|t| {
                    t.project == *project
                        && t.service == rule.service
                        && rule.env.as_ref().is_none_or(|e| *e == t.env)
                }) {
                    let key = (
                        project.clone(),
                        rule.name.clone(),
                        t.service.clone(),
                        t.env.clone(),
                    );
                    wanted.insert(key, rule);
                }
            }
        }
        let unreadable = |project: &str| configs.get(project).is_none_or(|c| c.is_none());
        // Rules (or targets) that went away resolve what they had raised.
        let gone: Vec<RuleKey> = self
            .rules
            .keys()
            .filter(|k| !wanted.contains_key(*k) && !unreadable(&k.0))
            .cloned()
            .collect();
        for key in gone {
            if let Some(slot) = self.rules.remove(&key)
                && matches!(slot.rule.state(), RuleState::Firing(_))
            {
                self.outbox
                    .push(rule_signal(&key, &slot, Action::Resolve, None, now));
            }
        }
        // Open alerts of rules that no longer exist resolve too.
        let orphans: Vec<RuleKey> = self
            .restored
            .keys()
            .filter(|k| !wanted.contains_key(*k) && !unreadable(&k.0))
            .cloned()
            .collect();
        for key in orphans {
            self.restored.remove(&key);
            self.outbox.push(AlertSignal {
                scope: format!("rule:{}", key.0),
                key: format!("{}/{}/{}", key.1, key.2, key.3),
                action: Action::Resolve,
                project: key.0.clone(),
                service: key.2.clone(),
                source: "rule".into(),
                summary: format!("{}: the rule no longer applies", key.1),
                severity: Severity::Info,
                labels: Labels::new(),
                details: json!({ "reason": "the rule or its target was removed" }),
                starts_ms: now,
                rule: Some(key.1.clone()),
            });
        }
        // New and changed rules; a changed rule keeps its state.
        for (key, spec) in &wanted {
            if self.rules.get(key).is_some_and(|s| s.spec == **spec) {
                continue;
            }
            let mut rule = match Rule::new(rule_spec(spec)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(project = %key.0, error = %e, "alert rule skipped");
                    continue;
                }
            };
            let mut restored = false;
            if let Some(old) = self.rules.get(key) {
                rule.restore_state(old.rule.state());
                restored = old.restored;
            } else if let Some(since) = self.restored.remove(key) {
                rule.restore_state(RuleState::Firing(since));
                restored = true;
            }
            self.rules.insert(
                key.clone(),
                RuleSlot {
                    rule,
                    spec: (*spec).clone(),
                    restored,
                },
            );
        }

        // Sample what the rules read.
        let mut retention: HashMap<StoreKey, i64> = HashMap::new();
        for (key, slot) in &self.rules {
            let window = slot.rule.window_ms().saturating_add(2 * self.interval_ms);
            let r = retention.entry(store_key(key, slot)).or_default();
            *r = (*r).max(window);
        }
        self.stores.retain(|k, _| retention.contains_key(k));
        let targets_read: BTreeSet<&TargetKey> = retention.keys().map(|(t, _)| t).collect();
        let mut proxy: HashMap<TargetKey, Option<ProxySnapshot>> = HashMap::new();
        for t in targets_read {
            let snapshot = match engine.fleet.target_stats(&t.0, &t.1, &t.2).await {
                Ok(stats) => proxy_snapshot(&stats),
                Err(e) => {
                    tracing::debug!(project = %t.0, service = %t.1, env = %t.2, error = %e, "proxy counters unavailable");
                    None
                }
            };
            proxy.insert(t.clone(), snapshot);
        }
        let scrapes: Vec<(TargetKey, String)> = retention
            .keys()
            .filter_map(|(t, p)| p.clone().map(|p| (t.clone(), p)))
            .collect();
        let scraped = self.scrape_all(engine, scrapes).await;
        let now = now_ms();
        for (key, retention_ms) in retention {
            let slot = self.stores.entry(key.clone()).or_insert_with(|| StoreSlot {
                store: MetricStore::new(retention_ms),
                retention_ms,
            });
            if slot.retention_ms < retention_ms {
                // A longer window than before: start over with room for it.
                *slot = StoreSlot {
                    store: MetricStore::new(retention_ms),
                    retention_ms,
                };
            }
            if let Some(Some(snapshot)) = proxy.get(&key.0) {
                slot.store.push_proxy(now, snapshot.clone());
            }
            if let Some(path) = &key.1
                && let Some(Some(instances)) = scraped.get(&(key.0.clone(), path.clone()))
            {
                let live: HashSet<&str> = instances.iter().map(|(id, _)| id.as_str()).collect();
                slot.store.retain_scraped(|_, labels| {
                    labels
                        .get("instance")
                        .is_some_and(|i| live.contains(i.as_str()))
                });
                for (_, exposition) in instances {
                    slot.store.ingest(exposition, now);
                }
            }
            slot.store.evict(now);
        }

        // Evaluate.
        let mut keys: Vec<RuleKey> = self.rules.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(slot) = self.rules.get_mut(&key) else {
                continue;
            };
            let skey = store_key(&key, slot);
            let target = &skey.0;
            let condition = slot.rule.condition();
            let proxy_ok = !reads_proxy(&condition.metric, &condition.aggregation)
                || proxy.get(target).is_some_and(Option::is_some);
            let scrape_ok = skey.1.as_ref().is_none_or(|p| {
                scraped
                    .get(&(target.clone(), p.clone()))
                    .is_some_and(Option::is_some)
            });
            if !proxy_ok || !scrape_ok {
                continue; // no data: no firing, no resolve
            }
            let Some(store) = self.stores.get(&skey) else {
                continue;
            };
            let value = slot.rule.value(&store.store, now);
            if slot.restored {
                let warmed_up = now - self.started_ms
                    >= slot.rule.window_ms().saturating_add(2 * self.interval_ms);
                if value.is_none() && !warmed_up {
                    continue;
                }
                slot.restored = false;
            }
            match slot.rule.evaluate(value, now) {
                Some(RuleTransition::Fired { value, since }) => {
                    let s = rule_signal(&key, slot, Action::Trigger, Some(value), since);
                    tracing::info!(project = %key.0, rule = %key.1, service = %key.2, env = %key.3, value, "alert rule fired");
                    self.outbox.push(s);
                }
                Some(RuleTransition::Resolved { value }) => {
                    let s = rule_signal(&key, slot, Action::Resolve, value, now);
                    tracing::info!(project = %key.0, rule = %key.1, service = %key.2, env = %key.3, "alert rule resolved");
                    self.outbox.push(s);
                }
                None => {}
            }
        }
    }

    /// Scrapes every ready instance of each (target, path); `None` for a pair whose scrape
    /// failed on any instance or that has no ready instance (no data).
    async fn scrape_all(&mut self, engine: &Engine, wanted: Vec<(TargetKey, String)>) -> Scraped {
        let list = engine.fleet.runtime.list();
        let mut jobs = Vec::new();
        for (t, path) in &wanted {
            let prefix = format!("{}.{}.{}.v", t.0, t.1, t.2);
            for i in list.iter().filter(|i| i.id.starts_with(&prefix) && i.ready) {
                let (http, t, path, id, port) = (
                    self.http.clone(),
                    t.clone(),
                    path.clone(),
                    i.id.clone(),
                    i.port,
                );
                jobs.push(async move {
                    let r = scrape(&http, port, &path).await;
                    ((t, path), id, r)
                });
            }
        }
        let mut out: Scraped = wanted.into_iter().map(|k| (k, None)).collect();
        let mut failed: HashMap<(TargetKey, String), String> = HashMap::new();
        for (k, id, r) in futures_util::future::join_all(jobs).await {
            match r {
                Ok(mut e) => {
                    for s in &mut e.samples {
                        if let Some(v) = s.labels.remove("instance") {
                            s.labels.insert("exported_instance".into(), v);
                        }
                        s.labels.insert("instance".into(), id.clone());
                    }
                    if let Some(slot) = out.get_mut(&k) {
                        slot.get_or_insert_with(Vec::new).push((id, e));
                    }
                }
                Err(e) => {
                    failed.insert(k, format!("instance {id}: {e}"));
                }
            }
        }
        for (k, error) in failed {
            out.insert(k.clone(), None);
            if self.failing.insert(k.clone()) {
                tracing::warn!(project = %k.0.0, service = %k.0.1, env = %k.0.2, path = %k.1, %error,
                    "scraping metrics failed; the rules over them wait for data");
            }
        }
        for (k, v) in &out {
            if v.is_some() && self.failing.remove(k) {
                tracing::info!(project = %k.0.0, service = %k.0.1, env = %k.0.2, path = %k.1, "scraping metrics works again");
            }
        }
        out
    }

    async fn evaluate_health(
        &mut self,
        engine: &Engine,
        targets: &[Target],
        configs: &HashMap<String, Option<Arc<Config>>>,
    ) {
        let running = match engine
            .store
            .deployments(&DeploymentFilter {
                running: true,
                limit: RUNNING_MAX,
                ..Default::default()
            })
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "instance health skipped: cannot read deployments");
                return;
            }
        };
        let deploying: HashSet<TargetKey> = running
            .into_iter()
            .map(|d| (d.project, d.service, d.env))
            .collect();
        let list = engine.fleet.runtime.list();
        let now = now_ms();
        let mut seen: HashSet<HealthKey> = HashSet::new();
        for t in targets {
            let tk = (t.project.clone(), t.service.clone(), t.env.clone());
            if deploying.contains(&tk) {
                continue;
            }
            let Some(live) = t.stable_version else {
                continue;
            };
            let production = configs
                .get(&t.project)
                .and_then(Option::as_ref)
                .and_then(|c| c.environments.last())
                .is_some_and(|e| e.name == t.env);
            let prefix = format!("{}.{}.{}.v{live}.", t.project, t.service, t.env);
            for i in list.iter().filter(|i| {
                i.id.starts_with(&prefix)
                    && !matches!(i.state, InstanceState::Stopping | InstanceState::Stopped)
            }) {
                let key = (
                    t.project.clone(),
                    t.service.clone(),
                    t.env.clone(),
                    i.id.clone(),
                );
                seen.insert(key.clone());
                let slot = self.health.entry(key.clone()).or_default();
                slot.absent = 0;
                match classify(i) {
                    Seen::Healthy => {
                        slot.bad = 0;
                        if let Some(p) = slot.firing.take() {
                            let s =
                                health_signal(&key, p, Action::Resolve, Some(i), production, now);
                            self.outbox.push(s);
                        }
                    }
                    Seen::Starting => {}
                    Seen::Bad(problem) => {
                        slot.bad = slot.bad.saturating_add(1);
                        let worse = slot.firing.is_none_or(|f| problem > f);
                        if slot.bad > HEALTH_GRACE && worse {
                            slot.firing = Some(problem);
                            let s = health_signal(
                                &key,
                                problem,
                                Action::Trigger,
                                Some(i),
                                production,
                                now,
                            );
                            tracing::info!(instance = %i.id, alert = problem.alertname(), "instance alert raised");
                            self.outbox.push(s);
                        }
                    }
                }
            }
        }
        // Instances no longer listed (outside deployments) resolve after the grace.
        let mut resolved = Vec::new();
        self.health.retain(|key, slot| {
            let target = (key.0.clone(), key.1.clone(), key.2.clone());
            if seen.contains(key) || deploying.contains(&target) {
                return true;
            }
            let Some(problem) = slot.firing else {
                return false;
            };
            slot.absent += 1;
            if slot.absent > HEALTH_GRACE {
                resolved.push((key.clone(), problem));
                return false;
            }
            true
        });
        for (key, problem) in resolved {
            let production = configs
                .get(&key.0)
                .and_then(Option::as_ref)
                .and_then(|c| c.environments.last())
                .is_some_and(|e| e.name == key.2);
            self.outbox.push(health_signal(
                &key,
                problem,
                Action::Resolve,
                None,
                production,
                now,
            ));
        }
    }

    /// Journals what was raised; kept for the next evaluation if the journal refuses.
    async fn flush(&mut self, engine: &Engine) {
        if self.outbox.is_empty() {
            return;
        }
        match engine.incidents.accept(&self.outbox).await {
            Ok(_) => self.outbox.clear(),
            Err(e) => {
                tracing::warn!(error = %e, signals = self.outbox.len(), "alert signals not journalled; retrying");
                if self.outbox.len() > OUTBOX_MAX {
                    let extra = self.outbox.len() - OUTBOX_MAX;
                    self.outbox.drain(..extra);
                }
            }
        }
    }
}

/// The store a rule reads: its target, plus the scraped path when it reads scraped metrics.
fn store_key(key: &RuleKey, slot: &RuleSlot) -> StoreKey {
    let target = (key.0.clone(), key.2.clone(), key.3.clone());
    let path = slot
        .rule
        .condition()
        .reads_scraped()
        .then(|| slot.spec.metrics_path.clone());
    (target, path)
}

/// Whether a condition reads one of the proxy's metrics.
fn reads_proxy(metric: &Metric, aggregation: &Aggregation) -> bool {
    matches!(metric, Metric::Proxy(_))
        || matches!(
            aggregation,
            Aggregation::Ratio {
                denominator: Metric::Proxy(_)
            }
        )
}

fn rule_spec(r: &AlertRule) -> RuleSpec {
    RuleSpec {
        name: r.name.clone(),
        expr: r.expr.clone(),
        window_ms: millis(r.window),
        for_ms: millis(r.hold),
        severity: r.severity.clone(),
        labels: r.labels.clone(),
    }
}

/// A value as people read it: a few significant digits.
fn show(v: f64) -> String {
    if v.is_finite() && v.fract() != 0.0 {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        v.to_string()
    }
}

/// The signal of a rule: a trigger when it fires (with the value that made it fire and when
/// the condition started to hold), a resolve when it stops.
fn rule_signal(
    key: &RuleKey,
    slot: &RuleSlot,
    action: Action,
    value: Option<f64>,
    starts_ms: i64,
) -> AlertSignal {
    let (project, name, service, env) = key;
    let spec = &slot.spec;
    let mut labels: Labels = spec.labels.clone();
    labels.insert("alertname".into(), name.clone());
    labels.insert("service".into(), service.clone());
    labels.insert("env".into(), env.clone());
    let measured = value.map_or_else(|| "no data".to_owned(), show);
    let summary = spec
        .summary
        .clone()
        .unwrap_or_else(|| format!("{name}: {} (value {measured})", spec.expr));
    let condition = slot.rule.condition();
    AlertSignal {
        scope: format!("rule:{project}"),
        key: format!("{name}/{service}/{env}"),
        action,
        project: project.clone(),
        service: service.clone(),
        source: "rule".into(),
        summary,
        severity: spec.severity.parse().unwrap_or(Severity::Warning),
        labels,
        details: json!({
            "expr": spec.expr,
            "value": value,
            "op": condition.op.as_str(),
            "threshold": condition.threshold,
            "window_ms": slot.rule.window_ms(),
            "for_ms": slot.rule.for_ms(),
            "metrics_path": condition.reads_scraped().then_some(&spec.metrics_path),
        }),
        starts_ms,
        rule: Some(name.clone()),
    }
}

/// The signal of an instance's health.
fn health_signal(
    key: &HealthKey,
    problem: Problem,
    action: Action,
    status: Option<&InstanceStatus>,
    production: bool,
    now: i64,
) -> AlertSignal {
    let (project, service, env, id) = key;
    let mut labels = Labels::new();
    labels.insert("alertname".into(), problem.alertname().into());
    labels.insert("service".into(), service.clone());
    labels.insert("env".into(), env.clone());
    labels.insert("instance".into(), id.clone());
    if let Some(i) = status {
        labels.insert("version".into(), i.version.clone());
    }
    let error = status
        .and_then(|i| i.last_error.clone())
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    let summary = match (problem, action) {
        (_, Action::Resolve) if status.is_none() => {
            format!("instance {id} of {service} in {env} is gone")
        }
        (_, Action::Resolve) => format!("instance {id} of {service} in {env} is healthy again"),
        (Problem::Unhealthy, _) => {
            format!("instance {id} of {service} in {env} is unhealthy{error}")
        }
        (Problem::CrashLoop, _) => format!(
            "instance {id} of {service} in {env} is crash-looping after {} restarts{error}",
            status.map_or(0, |i| i.restarts)
        ),
    };
    let severity = match (problem, production) {
        (Problem::CrashLoop, true) => Severity::Critical,
        (Problem::CrashLoop, false) | (Problem::Unhealthy, true) => Severity::Error,
        (Problem::Unhealthy, false) => Severity::Warning,
    };
    AlertSignal {
        scope: format!("health:{project}"),
        key: format!("{service}/{env}/{id}"),
        action,
        project: project.clone(),
        service: service.clone(),
        source: "sluice".into(),
        summary,
        severity,
        labels,
        details: json!({
            "instance": id,
            "state": status.map(|i| &i.state),
            "restarts": status.map(|i| i.restarts),
            "last_error": status.and_then(|i| i.last_error.as_deref()),
            "version": status.map(|i| &i.version),
        }),
        starts_ms: now,
        rule: None,
    }
}

/// The proxy counters of a target, all versions and listeners added up, as the rules read
/// them; `None` without a listener.
fn proxy_snapshot(stats: &[Stats]) -> Option<ProxySnapshot> {
    if stats.is_empty() {
        return None;
    }
    let mut requests = 0u64;
    let mut errors = 0u64;
    let mut buckets = vec![0u64; BUCKETS_MS.len() + 1];
    let mut sum_ms = 0.0;
    for s in stats {
        // Requests no release could take are answered 502: failed requests of the service.
        requests += s.unrouted;
        errors += s.unrouted;
        for v in s.versions.values() {
            requests += v.responses();
            errors += v.responses_5xx;
            sum_ms += v.latency_sum_ms;
            for (slot, c) in buckets.iter_mut().zip(&v.latency_buckets) {
                *slot += c;
            }
        }
    }
    let mut cumulative = 0u64;
    let mut pairs = Vec::with_capacity(buckets.len());
    for (i, c) in buckets.iter().enumerate() {
        cumulative += c;
        let le = BUCKETS_MS.get(i).map_or(f64::INFINITY, |ms| ms / 1000.0);
        pairs.push((le, cumulative as f64));
    }
    let latency = Histogram::new(pairs, sum_ms / 1000.0, cumulative as f64).ok()?;
    Some(ProxySnapshot {
        requests_total: requests as f64,
        errors_total: errors as f64,
        latency,
    })
}

/// `GET http://127.0.0.1:{port}{path}`, parsed as Prometheus text.
async fn scrape(http: &reqwest::Client, port: u16, path: &str) -> Result<Exposition, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut resp = http
        .get(&url)
        .header("accept", "text/plain;version=0.0.4")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > SCRAPE_MAX_BYTES {
            return Err(format!(
                "{url} sent more than {} MiB of metrics",
                SCRAPE_MAX_BYTES >> 20
            ));
        }
    }
    let text = String::from_utf8(body).map_err(|_| format!("{url} sent text that is not UTF-8"))?;
    let big = text.len() > PARSE_INLINE_BYTES;
    let parse = move || sluice_rules::promtext::parse(&text).map_err(|e| e.to_string());
    let parsed = if big {
        // Parsing megabytes takes milliseconds: not on the async threads.
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| format!("parsing stopped: {e}"))?
    } else {
        parse()
    };
    parsed.map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proxy::VersionStats;

    fn version(ok: u64, failed: u64, buckets: &[(usize, u64)]) -> VersionStats {
        let mut latency_buckets = vec![0; BUCKETS_MS.len() + 1];
        for (i, c) in buckets {
            latency_buckets[*i] = *c;
        }
        VersionStats {
            requests: ok + failed,
            responses_2xx: ok,
            responses_5xx: failed,
            latency_buckets,
            ..Default::default()
        }
    }

    #[test]
    fn proxy_counters_add_up_versions_listeners_and_unrouted_requests() {
        let mut a = Stats::default();
        a.versions
            .insert("v1".into(), version(90, 10, &[(0, 60), (6, 40)]));
        a.versions.insert("v2".into(), version(45, 5, &[(6, 50)]));
        a.unrouted = 3;
        let mut b = Stats::default();
        b.versions.insert("v2".into(), version(7, 0, &[(12, 7)]));
        let s = proxy_snapshot(&[a, b]).unwrap();
        assert_eq!(s.requests_total, 160.0);
        assert_eq!(s.errors_total, 18.0);
        // Cumulative, in seconds: 60 within 1 ms, 150 within 100 ms, all 157 below +Inf.
        let buckets = s.latency.buckets();
        assert_eq!(buckets.first(), Some(&(0.001, 60.0)));
        assert_eq!(buckets[6], (0.1, 150.0));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 157.0)));
        assert_eq!(proxy_snapshot(&[]), None);
    }

    fn instance(state: InstanceState, restarts: u32) -> InstanceStatus {
        InstanceStatus {
            id: "shop.web.production.v1.0".into(),
            service: "web".into(),
            env: "production".into(),
            version: "v1".into(),
            port: 1,
            pid: None,
            ready: state == InstanceState::Ready,
            state,
            restarts,
            started_ms: 0,
            last_error: None,
            ready_since_ms: None,
        }
    }

    #[test]
    fn instance_states_map_to_problems() {
        let seen = |state, restarts| match classify(&instance(state, restarts)) {
            Seen::Healthy => "healthy",
            Seen::Starting => "starting",
            Seen::Bad(Problem::Unhealthy) => "unhealthy",
            Seen::Bad(Problem::CrashLoop) => "crash loop",
        };
        assert_eq!(seen(InstanceState::Ready, 3), "healthy");
        assert_eq!(seen(InstanceState::Starting, 0), "starting");
        assert_eq!(seen(InstanceState::Starting, 2), "unhealthy");
        assert_eq!(seen(InstanceState::Unhealthy, 0), "unhealthy");
        assert_eq!(
            seen(InstanceState::Restarting { attempt: 1 }, 1),
            "unhealthy"
        );
        assert_eq!(
            seen(InstanceState::Exited { code: Some(1) }, 0),
            "unhealthy"
        );
        assert_eq!(seen(InstanceState::CrashLoop, 5), "crash loop");
    }
}
