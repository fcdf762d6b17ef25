//! Validation of a service's `deploy` section: start command, instances, health checks,
//! strategies and the per-environment targets, resolved into [`Deploy`] with every default
//! filled in and every environment override applied.
//!
//! Like the rest of the validator it reports each problem at the offending token and keeps
//! going. Addresses are checked across the whole file (two services or environments cannot
//! share one), so the [`Validator`] remembers every address it has accepted.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use super::autoscale::WrittenReplicas;
use super::containers::field_node;
use super::{Entry, Validator, list, normalize_relative, suggest};
use crate::node::{Node, Pos, Value};
use crate::schema::{
    ANALYSIS_FIELDS, BLUE_GREEN_FIELDS, CANARY_FIELDS, CANARY_STEP_FIELDS,
    DEPLOY_ENVIRONMENT_FIELDS, DEPLOY_FIELDS, DEPLOY_SECRET_FIELDS, HEALTH_FIELDS, HEALTH_KINDS,
    ROLLING_FIELDS, STICKY_FIELDS, STRATEGY_NAMES,
};
use crate::{
    AnalysisSpec, Autoscale, CanaryStepSpec, ContainerImage, Deploy, DeploySecret, DeployTarget,
    Health, HealthCheckSpec, InsufficientTraffic, Resources, RuntimeSpec, StickySpec, StrategySpec,
};

/// Most instances of a service in one environment.
const MAX_REPLICAS: i128 = 64;
/// Highest health check threshold and restart count.
const MAX_COUNT: i128 = 100;
/// Default time between SIGTERM and SIGKILL.
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time for new instances to become ready.
const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(60);
/// Default crash-loop threshold.
const DEFAULT_MAX_RESTARTS: u32 = 3;
/// Default blue-green keep-warm window.
const DEFAULT_KEEP_WARM: Duration = Duration::from_secs(5 * 60);
/// An example port for hints when the file gives none.
const EXAMPLE_PORT: u16 = 8080;

/// An address taken by an `expose` or `preview`, for the uniqueness check.
pub(crate) struct UsedAddress {
    addr: SocketAddr,
    line: usize,
    field: String,
}

/// The service-level values every environment starts from.
struct Inherited {
    replicas: u32,
    /// `replicas` as written at the service level, if it was.
    written_replicas: Option<WrittenReplicas>,
    env: BTreeMap<String, String>,
    health: Health,
    strategy: StrategySpec,
    autoscale: Option<Autoscale>,
}

impl Validator<'_> {
    /// A service's `deploy:`; `anchor` is the position of the `deploy` key. `build_step`
    /// names the service's `build_image` step, if it has one.
    pub(super) fn deploy(
        &mut self,
        node: &Node,
        anchor: Pos,
        path: &str,
        build_step: Option<&str>,
    ) -> Option<Deploy> {
        // Only a container of the service's own built image may do without `start` (the
        // image's command runs); everything else unpacks the release and runs `start`. (An
        // `image` next to a built one is reported by itself.)
        let runs_built_image = build_step.is_some()
            && field_node(node, "runtime")
                .is_some_and(|(_, v)| matches!(&v.value, Value::Str(r) if r == "docker"));
        let required: &[&'static str] = if runs_built_image {
            &["environments"]
        } else {
            &["start", "environments"]
        };
        let fields = self.fields(node, anchor, path, DEPLOY_FIELDS, required)?;
        let sub = |f: &str| format!("{path}.{f}");
        let start = match fields.get("start") {
            Some(n) => self
                .command(
                    n,
                    &sub("start"),
                    "give the command that starts an instance, e.g. `start: ./server`",
                )
                .map(Some),
            None if runs_built_image => Some(None),
            None => None,
        };
        let runtime = self.runtime(
            fields.get("runtime"),
            fields.entry("image"),
            path,
            build_step,
        );
        let resources = match fields.entry("resources") {
            Some((key, value)) => self.resources(value, key.pos, &sub("resources")),
            None => Some(Resources::default()),
        };
        if let (
            Some(RuntimeSpec::Docker {
                image: ContainerImage::Built { step },
            }),
            Some((key, _)),
        ) = (&runtime, fields.entry("workdir"))
        {
            self.error(
                key.pos,
                &sub("workdir"),
                format!("`workdir` is a directory of the release artifact, which the image built by step `{step}` does not use"),
                Some("remove it; the image's own `WORKDIR` applies".into()),
            );
        }
        let workdir = match fields.get("workdir") {
            Some(n) => self.workdir(
                n,
                &sub("workdir"),
                "the artifact",
                "the release artifact's root",
            ),
            None => Some(None),
        };
        let replicas = fields
            .get("replicas")
            .map_or(Some(1), |n| self.replicas(n, &sub("replicas")));
        let written_replicas =
            fields
                .get("replicas")
                .zip(replicas)
                .map(|(n, value)| WrittenReplicas {
                    value,
                    pos: n.pos,
                    service_level: true,
                });
        // Broken `resources` were reported; do not also report a memory target over them.
        let memory_limit = resources.is_none_or(|r| r.memory_bytes.is_some());
        let autoscale = match fields.entry("autoscale") {
            Some((key, value)) => {
                self.autoscale(value, key.pos, &sub("autoscale"), memory_limit, true)
            }
            None => Some(None),
        };
        // A bad starting count is reported here; the environments are still checked.
        let start_count_ok = match (&autoscale, written_replicas) {
            (Some(Some(a)), Some(written)) => {
                self.check_start_replicas(written, a, written.pos, &sub("replicas"))
            }
            _ => true,
        };
        let env = fields
            .get("env")
            .map_or(Some(BTreeMap::new()), |n| self.instance_env(n, &sub("env")));
        let secrets = fields.get("secrets").map_or(Some(Vec::new()), |n| {
            self.deploy_secrets(n, &sub("secrets"))
        });
        let health = match fields.entry("health") {
            Some((key, value)) => self.health(value, key.pos, &sub("health")),
            None => Some(Health::default()),
        };
        let stop_grace = fields
            .get("stop_grace")
            .map_or(Some(DEFAULT_STOP_GRACE), |n| {
                self.duration(n, &sub("stop_grace"), true)
            });
        let progress_deadline = fields
            .get("progress_deadline")
            .map_or(Some(DEFAULT_PROGRESS_DEADLINE), |n| {
                self.duration(n, &sub("progress_deadline"), false)
            });
        let request_timeout = fields
            .get("request_timeout")
            .map_or(Some(DEFAULT_REQUEST_TIMEOUT), |n| {
                self.duration(n, &sub("request_timeout"), false)
            });
        let max_restarts = fields
            .get("max_restarts")
            .map_or(Some(DEFAULT_MAX_RESTARTS), |n| {
                self.count(
                    n,
                    &sub("max_restarts"),
                    0..=MAX_COUNT,
                    "use 0 to 100 restarts",
                )
            });
        let strategy = fields
            .get("strategy")
            .map_or(Some(StrategySpec::default()), |n| {
                self.strategy(n, &sub("strategy"))
            });
        let inherited = match (replicas, env, health, strategy, &autoscale) {
            (Some(replicas), Some(env), Some(health), Some(strategy), Some(autoscale)) => {
                Some(Inherited {
                    replicas,
                    written_replicas,
                    env,
                    health,
                    strategy,
                    autoscale: autoscale.clone(),
                })
            }
            _ => None,
        };
        let targets = fields
            .get("environments")
            .and_then(|n| self.targets(n, &sub("environments"), inherited.as_ref(), memory_limit));
        let runtime = runtime?;
        let workdir = workdir?;
        if !start_count_ok {
            return None;
        }
        if matches!(
            runtime,
            RuntimeSpec::Docker {
                image: ContainerImage::Built { .. }
            }
        ) && workdir.is_some()
        {
            return None;
        }
        Some(Deploy {
            start: start?,
            workdir,
            runtime,
            resources: resources?,
            stop_grace: stop_grace?,
            progress_deadline: progress_deadline?,
            max_restarts: max_restarts?,
            request_timeout: request_timeout?,
            secrets: secrets?,
            targets: targets?,
        })
    }

    /// `deploy.secrets`: secret names, or `{name: NAME, file: true}`; each name once.
    fn deploy_secrets(&mut self, node: &Node, path: &str) -> Option<Vec<DeploySecret>> {
        let items = self.items(node, path, "a list")?;
        let mut ok = true;
        let mut secrets: Vec<DeploySecret> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let (name_node, name, file) = match &item.value {
                Value::Map(_) => {
                    let Some(fields) =
                        self.fields(item, item.pos, &item_path, DEPLOY_SECRET_FIELDS, &["name"])
                    else {
                        ok = false;
                        continue;
                    };
                    let file = fields.get("file").map_or(Some(false), |n| {
                        self.boolean(n, &format!("{item_path}.file"))
                    });
                    let Some(name_node) = fields.get("name") else {
                        ok = false;
                        continue;
                    };
                    let name = self.string(name_node, &format!("{item_path}.name"));
                    (name_node, name, file)
                }
                _ => (item, self.string(item, &item_path), Some(false)),
            };
            let (Some(name), Some(file)) = (name, file) else {
                ok = false;
                continue;
            };
            if !super::is_secret_name(&name) {
                self.error(
                    name_node.pos,
                    &item_path,
                    format!("invalid secret name `{name}`"),
                    Some(
                        "secret names are upper-case letters, digits and `_`, e.g. `DATABASE_URL`"
                            .into(),
                    ),
                );
                ok = false;
                continue;
            }
            if secrets.iter().any(|s| s.name == name) {
                self.error(
                    name_node.pos,
                    &item_path,
                    format!("secret `{name}` is listed twice"),
                    Some("list each secret once".into()),
                );
                ok = false;
                continue;
            }
            secrets.push(DeploySecret { name, file });
        }
        ok.then_some(secrets)
    }

    /// `deploy.environments`: one target per environment, with the overrides applied to
    /// `inherited` (`None` when the service-level values had errors: everything is still
    /// checked, nothing is built).
    fn targets(
        &mut self,
        node: &Node,
        path: &str,
        inherited: Option<&Inherited>,
        memory_limit: bool,
    ) -> Option<Vec<DeployTarget>> {
        let entries = self.entries(node, path)?;
        if entries.is_empty() {
            self.error(
                node.pos,
                path,
                "`environments` is empty",
                Some(
                    "list the environments the service is deployed to, e.g. `staging: {expose: 127.0.0.1:8080}`"
                        .into(),
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut targets = Vec::new();
        for entry in &entries {
            match self.target(entry, path, inherited, memory_limit) {
                Some(t) => targets.push(t),
                None => ok = false,
            }
        }
        (ok && inherited.is_some()).then_some(targets)
    }

    fn target(
        &mut self,
        entry: &Entry<'_>,
        environments_path: &str,
        inherited: Option<&Inherited>,
        memory_limit: bool,
    ) -> Option<DeployTarget> {
        let path = format!("{environments_path}.{}", entry.name);
        let sub = |f: &str| format!("{path}.{f}");
        let known = self.known_environment(entry, &path);
        let fields = self.fields(
            entry.value,
            entry.key.pos,
            &path,
            DEPLOY_ENVIRONMENT_FIELDS,
            &["expose"],
        )?;
        let expose = fields
            .get("expose")
            .and_then(|n| self.address(n, &sub("expose")));
        let preview = match fields.get("preview") {
            Some(n) => self.address(n, &sub("preview")).map(Some),
            None => Some(None),
        };
        let replicas = match fields.get("replicas") {
            Some(n) => self.replicas(n, &sub("replicas")).map(Some),
            None => Some(None),
        };
        let env = fields
            .get("env")
            .map_or(Some(BTreeMap::new()), |n| self.instance_env(n, &sub("env")));
        let health = match fields.entry("health") {
            Some((key, value)) => self.health(value, key.pos, &sub("health")).map(Some),
            None => Some(None),
        };
        let strategy = match fields.get("strategy") {
            Some(n) => self.strategy(n, &sub("strategy")).map(Some),
            None => Some(None),
        };
        // `None`: not given here (inherited); `Some(None)`: `autoscale: false`.
        let autoscale = match fields.entry("autoscale") {
            Some((key, value)) => self
                .autoscale(value, key.pos, &sub("autoscale"), memory_limit, true)
                .map(Some),
            None => Some(None),
        };
        let (inherited, expose, preview, replicas, env, health, strategy, autoscale) = match (
            inherited, expose, preview, replicas, env, health, strategy, autoscale,
        ) {
            (Some(i), Some(x), Some(p), Some(r), Some(e), Some(h), Some(s), Some(a)) => {
                (i, x, p, r, e, h, s, a)
            }
            _ => return None,
        };
        let own_autoscale = autoscale.is_some();
        let autoscale = autoscale.unwrap_or_else(|| inherited.autoscale.clone());
        let written = match (fields.get("replicas"), replicas) {
            (Some(n), Some(value)) => Some(WrittenReplicas {
                value,
                pos: n.pos,
                service_level: false,
            }),
            _ => inherited.written_replicas,
        };
        if let (Some(a), Some(w)) = (&autoscale, written) {
            // A service-level value against the service-level range was reported there.
            let checked_at_service = w.service_level && !own_autoscale;
            let anchor = fields
                .entry("autoscale")
                .map_or(entry.key.pos, |(k, _)| k.pos);
            if !checked_at_service && !self.check_start_replicas(w, a, anchor, &sub("replicas")) {
                return None;
            }
        }
        let strategy = strategy.unwrap_or_else(|| inherited.strategy.clone());
        if matches!(strategy, StrategySpec::BlueGreen { preview: true, .. }) && preview.is_none() {
            self.error(
                entry.key.pos,
                &path,
                "the blue_green strategy has `preview: true`, but there is no `preview` address",
                Some(
                    "add e.g. `preview: 127.0.0.1:9080` to this environment, or set `preview: false`"
                        .into(),
                ),
            );
            return None;
        }
        let mut env_vars = inherited.env.clone();
        env_vars.extend(env);
        // With autoscaling and no written `replicas`, the service starts at `min`.
        let replicas = match (&autoscale, written) {
            (Some(a), None) => a.min,
            _ => replicas.unwrap_or(inherited.replicas),
        };
        known.then(|| DeployTarget {
            env: entry.name.clone(),
            expose,
            preview,
            replicas,
            env_vars,
            health: health.unwrap_or_else(|| inherited.health.clone()),
            strategy,
            autoscale,
        })
    }

    /// Reports a deploy environment that is not defined at the top level.
    fn known_environment(&mut self, entry: &Entry<'_>, path: &str) -> bool {
        let Some(names) = self.env_names.clone() else {
            return true;
        };
        if names.contains(&entry.name) {
            return true;
        }
        // Besides typos, catch abbreviations such as `prod` for `production`.
        let abbreviated = || {
            names
                .iter()
                .find(|n| entry.name.len() >= 3 && n.starts_with(&entry.name))
                .map(String::as_str)
        };
        let message =
            match suggest(&entry.name, names.iter().map(String::as_str)).or_else(abbreviated) {
                Some(s) => format!("unknown environment `{}`, did you mean `{s}`?", entry.name),
                None => format!("unknown environment `{}`", entry.name),
            };
        self.error(
            entry.key.pos,
            path,
            message,
            Some(format!(
                "deploy only to environments defined under the top-level `environments`: {}",
                list(names.iter().map(String::as_str))
            )),
        );
        false
    }

    /// An `expose` or `preview` address, claimed for the whole file.
    fn address(&mut self, node: &Node, path: &str) -> Option<SocketAddr> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(n) => {
                let port = u16::try_from(*n)
                    .ok()
                    .filter(|p| *p != 0)
                    .unwrap_or(EXAMPLE_PORT);
                self.error(
                    node.pos,
                    path,
                    format!("expected an address such as `127.0.0.1:{port}`, found the number {n}"),
                    Some(format!(
                        "give an IP address and a port, e.g. `127.0.0.1:{port}`"
                    )),
                );
                return None;
            }
            _ => {
                self.wrong_type(node, path, "an address such as `127.0.0.1:8080`");
                return None;
            }
        };
        let addr = match text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => addr,
            Ok(addr) => {
                self.error(
                    node.pos,
                    path,
                    format!("invalid address `{text}`: port 0 is not allowed"),
                    Some(format!(
                        "give a fixed port from 1 to 65535, e.g. `{}`",
                        SocketAddr::new(addr.ip(), EXAMPLE_PORT)
                    )),
                );
                return None;
            }
            Err(_) => {
                let (why, example) = address_problem(&text);
                self.error(
                    node.pos,
                    path,
                    format!("invalid address `{text}`: {why}"),
                    Some(format!("give an IP address and a port, e.g. `{example}`")),
                );
                return None;
            }
        };
        let clash = self.addresses.iter().find(|used| {
            used.addr.port() == addr.port()
                && (used.addr.ip() == addr.ip()
                    || used.addr.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some(used) = clash {
            let (message, hint) = if used.addr == addr {
                (
                    format!(
                        "address `{addr}` is already used by `{}` on line {}",
                        used.field, used.line
                    ),
                    "every `expose` and `preview` address must be different; pick another port",
                )
            } else {
                (
                    format!(
                        "address `{addr}` overlaps `{}` of `{}` on line {}",
                        used.addr, used.field, used.line
                    ),
                    "`0.0.0.0` and `[::]` listen on every address, so their port cannot be used again; pick another port",
                )
            };
            self.error(node.pos, path, message, Some(hint.into()));
            return None;
        }
        self.addresses.push(UsedAddress {
            addr,
            line: node.pos.line,
            field: path.to_owned(),
        });
        Some(addr)
    }

    /// Instance environment variables; `PORT` is reserved.
    fn instance_env(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        if let Value::Map(items) = &node.value {
            for (key, _) in items {
                if matches!(&key.value, Value::Str(k) if k == "PORT") {
                    self.error(
                        key.pos,
                        &format!("{path}.PORT"),
                        "`PORT` is set by sluice",
                        Some("each instance gets its own port in `PORT`; remove it here".into()),
                    );
                    ok = false;
                }
            }
        }
        let env = self.env(node, path);
        env.filter(|_| ok)
    }

    /// A `workdir`: a directory inside `within` (`"the repository"` or `"the artifact"`,
    /// whose root is called `root` in the hint); `Some(None)` is the root itself.
    pub(super) fn workdir(
        &mut self,
        node: &Node,
        path: &str,
        within: &str,
        root: &str,
    ) -> Option<Option<String>> {
        let dir = self.string(node, path)?;
        match normalize_relative(&dir) {
            Ok(d) => Some(d),
            Err(why) => {
                let why = why.replace("the repository", within);
                self.error(
                    node.pos,
                    path,
                    format!("workdir `{dir}` {why}"),
                    Some(format!(
                        "give a directory relative to {root}, e.g. `services/api`"
                    )),
                );
                None
            }
        }
    }

    fn replicas(&mut self, node: &Node, path: &str) -> Option<u32> {
        self.count(node, path, 1..=MAX_REPLICAS, "use 1 to 64 instances")
    }

    /// A whole number in `range`, named by the last part of `path` in messages.
    pub(super) fn count(
        &mut self,
        node: &Node,
        path: &str,
        range: RangeInclusive<i128>,
        hint: &str,
    ) -> Option<u32> {
        let what = path.rsplit('.').next().unwrap_or(path);
        match node.value {
            Value::Int(n) if range.contains(&n) => u32::try_from(n).ok(),
            Value::Int(n) => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} {n} is out of range"),
                    Some(hint.to_owned()),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a whole number");
                None
            }
        }
    }

    /// A number between 0 and 1; `inclusive` says whether 0 and 1 themselves are allowed.
    fn fraction(&mut self, node: &Node, path: &str, inclusive: bool, hint: &str) -> Option<f64> {
        let what = path.rsplit('.').next().unwrap_or(path);
        let value = match node.value {
            Value::Int(n) => n as f64,
            Value::Float(f) => f,
            _ => {
                self.wrong_type(node, path, "a number between 0 and 1");
                return None;
            }
        };
        let fits = if inclusive {
            (0.0..=1.0).contains(&value)
        } else {
            value > 0.0 && value < 1.0
        };
        if fits {
            return Some(value);
        }
        let text = node.scalar_text(self.source).unwrap_or_default();
        self.error(
            node.pos,
            path,
            format!("{what} {text} is out of range"),
            Some(hint.to_owned()),
        );
        None
    }

    pub(super) fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, path, "`true` or `false`");
                None
            }
        }
    }

    /// A shell command that must not be empty.
    pub(super) fn command(&mut self, node: &Node, path: &str, hint: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.trim().is_empty() {
            let what = path.rsplit('.').next().unwrap_or(path);
            self.error(
                node.pos,
                path,
                format!("`{what}` is empty"),
                Some(hint.into()),
            );
            return None;
        }
        Some(text)
    }

    /// `health:`; `anchor` is the position of the `health` key.
    fn health(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<Health> {
        let fields = self.fields(node, anchor, path, HEALTH_FIELDS, &[])?;
        let sub = |f: &str| format!("{path}.{f}");
        let defaults = Health::default();
        let timeout = fields
            .get("timeout")
            .map_or(Some(defaults.check.timeout()), |n| {
                self.duration(n, &sub("timeout"), false)
            });
        let interval = fields.get("interval").map_or(Some(defaults.interval), |n| {
            self.duration(n, &sub("interval"), false)
        });
        let success_threshold =
            fields
                .get("success_threshold")
                .map_or(Some(defaults.success_threshold), |n| {
                    self.count(
                        n,
                        &sub("success_threshold"),
                        1..=MAX_COUNT,
                        "use 1 to 100 consecutive passes",
                    )
                });
        let failure_threshold =
            fields
                .get("failure_threshold")
                .map_or(Some(defaults.failure_threshold), |n| {
                    self.count(
                        n,
                        &sub("failure_threshold"),
                        1..=MAX_COUNT,
                        "use 1 to 100 consecutive failures",
                    )
                });
        let initial_delay = fields
            .get("initial_delay")
            .map_or(Some(defaults.initial_delay), |n| {
                self.duration(n, &sub("initial_delay"), true)
            });
        let expect = fields.entry("expect").map(|(key, value)| {
            let code = self
                .count(
                    value,
                    &sub("expect"),
                    100..=599,
                    "give an HTTP status code from 100 to 599, e.g. `200`",
                )
                .and_then(|c| u16::try_from(c).ok());
            (key, code)
        });

        // The kinds given, in file order.
        let mut kinds: Vec<(&str, &Node, &Node)> = HEALTH_KINDS
            .iter()
            .filter_map(|k| fields.entry(k).map(|(key, value)| (*k, key, value)))
            .collect();
        kinds.sort_by_key(|(_, key, _)| (key.pos.line, key.pos.column));
        let mut ok = true;
        for (kind, key, _) in kinds.iter().skip(1) {
            self.error(
                key.pos,
                &sub(kind),
                format!("`health` has both `{}` and `{kind}`", kinds[0].0),
                Some("a health check is one of `http`, `tcp` and `command`; keep one".into()),
            );
            ok = false;
        }
        let check = match kinds.first() {
            None => {
                self.error(
                    anchor,
                    path,
                    "`health` needs one of `http`, `tcp` or `command`",
                    Some(
                        "e.g. `http: /healthz` or `tcp: true`; leave `health` out for the default TCP check"
                            .into(),
                    ),
                );
                None
            }
            Some(("http", _, value)) => self.http_path(value, &sub("http")),
            Some(("tcp", _, value)) => self.tcp(value, &sub("tcp")),
            Some((_, _, value)) => self.command(
                value,
                &sub("command"),
                "give a command that exits 0 when the instance is healthy",
            ),
        };
        let kind = kinds.first().map(|(k, _, _)| *k);
        if let Some((key, _)) = &expect
            && kind.is_some_and(|k| k != "http")
        {
            self.error(
                key.pos,
                &sub("expect"),
                "`expect` only applies to `http` checks",
                Some("remove it, or check with `http: <path>`".into()),
            );
            ok = false;
        }
        let expect = match expect {
            Some((_, code)) => code?,
            None => 200,
        };
        let timeout = timeout?;
        let check = match (kind?, check?) {
            ("http", path) => HealthCheckSpec::Http {
                path,
                expect,
                timeout,
            },
            ("tcp", _) => HealthCheckSpec::Tcp { timeout },
            (_, run) => HealthCheckSpec::Command { run, timeout },
        };
        let health = Health {
            check,
            interval: interval?,
            success_threshold: success_threshold?,
            failure_threshold: failure_threshold?,
            initial_delay: initial_delay?,
        };
        ok.then_some(health)
    }

    /// `http: /healthz`.
    fn http_path(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        let why = if !text.starts_with('/') {
            "must start with `/`"
        } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            "must not contain spaces or control characters"
        } else {
            return Some(text);
        };
        let example = format!("/{}", text.trim().trim_start_matches('/'));
        let example = if example.len() > 1 && !example.contains(char::is_whitespace) {
            example
        } else {
            "/healthz".to_owned()
        };
        self.error(
            node.pos,
            path,
            format!("health check path `{text}` {why}"),
            Some(format!("write the request path, e.g. `http: {example}`")),
        );
        None
    }

    /// `tcp: true`; the stored value is unused.
    fn tcp(&mut self, node: &Node, path: &str) -> Option<String> {
        match self.boolean(node, path)? {
            true => Some(String::new()),
            false => {
                self.error(
                    node.pos,
                    path,
                    "`tcp: false` does not choose a check",
                    Some("write `tcp: true`, or check with `http` or `command` instead".into()),
                );
                None
            }
        }
    }

    /// `strategy:` in its short (a name) or long (`{name: {params}}`) form.
    fn strategy(&mut self, node: &Node, path: &str) -> Option<StrategySpec> {
        match &node.value {
            Value::Str(name) => match name.as_str() {
                "rolling" => Some(StrategySpec::default()),
                "blue_green" => Some(blue_green_default()),
                "canary" => {
                    self.error(
                        node.pos,
                        path,
                        "the `canary` strategy needs `steps`",
                        Some(
                            "write e.g. `strategy: {canary: {steps: [{weight: 10, pause: 1m}, {weight: 100}]}}`"
                                .into(),
                        ),
                    );
                    None
                }
                _ => {
                    self.unknown_strategy(node.pos, path, name);
                    None
                }
            },
            Value::Map(items) => {
                let Some((key, value)) = items.first() else {
                    self.error(
                        node.pos,
                        path,
                        "`strategy` is empty",
                        Some("name one strategy: `rolling`, `blue_green` or `canary`".into()),
                    );
                    return None;
                };
                let mut ok = true;
                for (extra, _) in &items[1..] {
                    self.error(
                        extra.pos,
                        path,
                        "`strategy` names more than one strategy",
                        Some(
                            "a deployment uses one strategy; keep one key under `strategy`".into(),
                        ),
                    );
                    ok = false;
                }
                let name = self.key_name(key, path)?;
                let sub = format!("{path}.{name}");
                let spec = match name.as_str() {
                    "rolling" => self.rolling(value, key.pos, &sub),
                    "blue_green" => self.blue_green(value, key.pos, &sub),
                    "canary" => self.canary(value, key.pos, &sub),
                    _ => {
                        self.unknown_strategy(key.pos, path, &name);
                        None
                    }
                };
                spec.filter(|_| ok)
            }
            _ => {
                self.wrong_type(
                    node,
                    path,
                    "a strategy name such as `rolling`, or a mapping such as `{canary: {steps: [...]}}`",
                );
                None
            }
        }
    }

    fn unknown_strategy(&mut self, pos: Pos, path: &str, name: &str) {
        let message = match suggest(name, STRATEGY_NAMES.iter().copied()) {
            Some(s) => format!("unknown strategy `{name}`, did you mean `{s}`?"),
            None => format!("unknown strategy `{name}`"),
        };
        self.error(
            pos,
            path,
            message,
            Some(format!("use {}", list(STRATEGY_NAMES.iter().copied()))),
        );
    }

    fn rolling(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<StrategySpec> {
        let fields = self.fields(node, anchor, path, ROLLING_FIELDS, &[])?;
        let one = |this: &mut Self, field: &str, default: u32| match fields.get(field) {
            Some(n) => this.count(
                n,
                &format!("{path}.{field}"),
                0..=MAX_REPLICAS,
                "use 0 to 64 instances",
            ),
            None => Some(default),
        };
        let max_surge = one(self, "max_surge", 1);
        let max_unavailable = one(self, "max_unavailable", 0);
        let (max_surge, max_unavailable) = (max_surge?, max_unavailable?);
        if max_surge == 0 && max_unavailable == 0 {
            // Point at the last of the two written, or at `rolling` if neither was.
            let pos = ["max_surge", "max_unavailable"]
                .iter()
                .filter_map(|f| fields.get(f).map(|n| n.pos))
                .max_by_key(|p| (p.line, p.column))
                .unwrap_or(anchor);
            self.error(
                pos,
                path,
                "`max_surge` and `max_unavailable` are both 0, so no instance could ever be replaced",
                Some(
                    "set `max_surge: 1` to start each new instance before stopping an old one, or `max_unavailable: 1` to stop one first"
                        .into(),
                ),
            );
            return None;
        }
        Some(StrategySpec::Rolling {
            max_surge,
            max_unavailable,
        })
    }

    fn blue_green(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<StrategySpec> {
        let fields = self.fields(node, anchor, path, BLUE_GREEN_FIELDS, &[])?;
        let keep_warm = fields
            .get("keep_warm")
            .map_or(Some(DEFAULT_KEEP_WARM), |n| {
                self.duration(n, &format!("{path}.keep_warm"), true)
            });
        let preview = fields
            .get("preview")
            .map_or(Some(false), |n| self.boolean(n, &format!("{path}.preview")));
        let auto_promote = fields.get("auto_promote").map_or(Some(true), |n| {
            self.boolean(n, &format!("{path}.auto_promote"))
        });
        Some(StrategySpec::BlueGreen {
            keep_warm: keep_warm?,
            preview: preview?,
            auto_promote: auto_promote?,
        })
    }

    fn canary(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<StrategySpec> {
        let fields = self.fields(node, anchor, path, CANARY_FIELDS, &["steps"])?;
        let steps = fields
            .get("steps")
            .and_then(|n| self.canary_steps(n, &format!("{path}.steps")));
        let analysis = match fields.entry("analysis") {
            Some((key, value)) => self.analysis(value, key.pos, &format!("{path}.analysis")),
            None => Some(AnalysisSpec::default()),
        };
        let sticky = match fields.entry("sticky") {
            Some((key, value)) => self
                .sticky(value, key.pos, &format!("{path}.sticky"))
                .map(Some),
            None => Some(None),
        };
        Some(StrategySpec::Canary {
            steps: steps?,
            analysis: analysis?,
            sticky: sticky?,
        })
    }

    fn canary_steps(&mut self, node: &Node, path: &str) -> Option<Vec<CanaryStepSpec>> {
        let items = self.items(node, path, "a list of steps")?;
        if items.is_empty() {
            self.error(
                node.pos,
                path,
                "`steps` is empty",
                Some(
                    "list at least one step, e.g. `[{weight: 10, pause: 1m}, {weight: 100}]`"
                        .into(),
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut steps = Vec::new();
        let mut highest: Option<u32> = None;
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(fields) =
                self.fields(item, item.pos, &item_path, CANARY_STEP_FIELDS, &["weight"])
            else {
                ok = false;
                continue;
            };
            let weight = fields.get("weight").and_then(|n| {
                let weight_path = format!("{item_path}.weight");
                let w = self.count(
                    n,
                    &weight_path,
                    1..=100,
                    "weights are percentages of traffic, 1 to 100",
                )?;
                if let Some(before) = highest.filter(|h| w <= *h) {
                    self.error(
                        n.pos,
                        &weight_path,
                        format!("weight {w} is not more than the previous step's {before}"),
                        Some(
                            "weights must increase from step to step, e.g. `10`, `50`, `100`"
                                .into(),
                        ),
                    );
                    return None;
                }
                highest = Some(w);
                Some(w)
            });
            let pause = fields.get("pause").map_or(Some(Duration::ZERO), |n| {
                self.duration(n, &format!("{item_path}.pause"), true)
            });
            match (weight, pause) {
                (Some(weight), Some(pause)) => steps.push(CanaryStepSpec { weight, pause }),
                _ => ok = false,
            }
        }
        ok.then_some(steps)
    }

    fn analysis(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<AnalysisSpec> {
        let fields = self.fields(node, anchor, path, ANALYSIS_FIELDS, &[])?;
        let sub = |f: &str| format!("{path}.{f}");
        let defaults = AnalysisSpec::default();
        let max_error_rate =
            fields
                .get("max_error_rate")
                .map_or(Some(defaults.max_error_rate), |n| {
                    self.fraction(
                        n,
                        &sub("max_error_rate"),
                        true,
                        "give a fraction from 0 to 1, e.g. `0.05` for 5%",
                    )
                });
        let max_latency = match fields.get("max_latency") {
            Some(n) => self.duration(n, &sub("max_latency"), false).map(Some),
            None => Some(None),
        };
        let quantile = fields.get("quantile").map_or(Some(defaults.quantile), |n| {
            self.fraction(
                n,
                &sub("quantile"),
                false,
                "give a fraction strictly between 0 and 1, e.g. `0.99` for the 99th percentile",
            )
        });
        let min_requests = fields
            .get("min_requests")
            .map_or(Some(defaults.min_requests), |n| match n.value {
                Value::Int(v) => u64::try_from(v).ok().or_else(|| {
                    self.error(
                        n.pos,
                        &sub("min_requests"),
                        format!("min_requests {v} is out of range"),
                        Some("give a number of requests, 0 or more".into()),
                    );
                    None
                }),
                _ => {
                    self.wrong_type(n, &sub("min_requests"), "a whole number");
                    None
                }
            });
        let insufficient_traffic = fields
            .get("insufficient_traffic")
            .map_or(Some(defaults.insufficient_traffic), |n| {
                self.insufficient_traffic(n, &sub("insufficient_traffic"))
            });
        let max_wait = fields.get("max_wait").map_or(Some(defaults.max_wait), |n| {
            self.duration(n, &sub("max_wait"), false)
        });
        let interval = fields.get("interval").map_or(Some(defaults.interval), |n| {
            self.duration(n, &sub("interval"), false)
        });
        Some(AnalysisSpec {
            max_error_rate: max_error_rate?,
            max_latency: max_latency?,
            quantile: quantile?,
            min_requests: min_requests?,
            insufficient_traffic: insufficient_traffic?,
            max_wait: max_wait?,
            interval: interval?,
        })
    }

    fn insufficient_traffic(&mut self, node: &Node, path: &str) -> Option<InsufficientTraffic> {
        let value = self.string(node, path)?;
        self.keyword(
            (node.pos, path),
            &value,
            "policy",
            &[
                ("wait", InsufficientTraffic::Wait),
                ("pass", InsufficientTraffic::Pass),
                ("fail", InsufficientTraffic::Fail),
            ],
            "use `wait`, `pass` or `fail`".into(),
        )
    }

    fn sticky(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<StickySpec> {
        let fields = self.fields(node, anchor, path, STICKY_FIELDS, &["value"])?;
        let name = |this: &mut Self, field: &str, example: &str| -> Option<Option<String>> {
            let Some(n) = fields.get(field) else {
                return Some(None);
            };
            let field_path = format!("{path}.{field}");
            let text = this.string(n, &field_path)?;
            if is_token(&text) {
                return Some(Some(text));
            }
            this.error(
                n.pos,
                &field_path,
                format!("invalid {field} name `{text}`"),
                Some(format!(
                    "use letters, digits and `-`, without spaces, e.g. `{example}`"
                )),
            );
            None
        };
        let header = name(self, "header", "X-Canary");
        let cookie = name(self, "cookie", "canary");
        let mut ok = true;
        match (fields.entry("header"), fields.entry("cookie")) {
            (Some((h, _)), Some((c, _))) => {
                let later = if (c.pos.line, c.pos.column) > (h.pos.line, h.pos.column) {
                    c
                } else {
                    h
                };
                self.error(
                    later.pos,
                    path,
                    "`header` and `cookie` are both set",
                    Some("sticky routing matches one of them; remove the other".into()),
                );
                ok = false;
            }
            (None, None) => {
                self.error(
                    anchor,
                    path,
                    "`sticky` needs `header` or `cookie`",
                    Some("e.g. `sticky: {header: X-Canary, value: \"1\"}`".into()),
                );
                ok = false;
            }
            _ => {}
        }
        let value = fields.get("value").and_then(|n| {
            let value_path = format!("{path}.value");
            let text = match &n.value {
                Value::Seq(_) | Value::Map(_) | Value::Null => {
                    self.wrong_type(n, &value_path, "a string");
                    return None;
                }
                _ => n.scalar_text(self.source)?,
            };
            if text.is_empty() || text.chars().any(char::is_control) {
                self.error(
                    n.pos,
                    &value_path,
                    "`value` must be a non-empty string without control characters",
                    Some("give the value that selects the new release, e.g. `\"1\"`".into()),
                );
                return None;
            }
            Some(text)
        });
        let (header, cookie, value) = (header?, cookie?, value?);
        ok.then_some(StickySpec {
            header,
            cookie,
            value,
        })
    }
}

fn blue_green_default() -> StrategySpec {
    StrategySpec::BlueGreen {
        keep_warm: DEFAULT_KEEP_WARM,
        preview: false,
        auto_promote: true,
    }
}

/// An HTTP token (RFC 9110): header and cookie names.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Why `text` is not a socket address, and an address to suggest instead.
fn address_problem(text: &str) -> (String, String) {
    let example = |port: u16| format!("127.0.0.1:{port}");
    let Some((host, port)) = text.rsplit_once(':') else {
        return match text.parse::<u16>() {
            Ok(p) if p != 0 => ("it has no IP address".into(), example(p)),
            _ => ("it has no port".into(), example(EXAMPLE_PORT)),
        };
    };
    let port_number = port.parse::<u16>().ok().filter(|p| *p != 0);
    let suggested = example(port_number.unwrap_or(EXAMPLE_PORT));
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare_host.is_empty() {
        return ("it has no IP address".into(), suggested);
    }
    let ipv6_unbracketed = host.contains(':') && !host.starts_with('[');
    if ipv6_unbracketed {
        // `::1:8080`: take the last `:` as the port's if that gives an address, else
        // the whole text as the address; quoted, as `[` would start a YAML list.
        let port = port_number.unwrap_or(EXAMPLE_PORT);
        let guess = [
            format!("[{bare_host}]:{port}"),
            format!("[{text}]:{EXAMPLE_PORT}"),
        ]
        .into_iter()
        .find(|g| g.parse::<SocketAddr>().is_ok())
        .unwrap_or_else(|| format!("[::1]:{EXAMPLE_PORT}"));
        return (
            "an IPv6 address must be in brackets".into(),
            format!("\"{guess}\""),
        );
    }
    if bare_host.parse::<IpAddr>().is_err() {
        return (
            format!("`{bare_host}` is not an IP address (host names are not resolved)"),
            suggested,
        );
    }
    (
        format!("the port `{port}` is not a number from 1 to 65535"),
        suggested,
    )
}
