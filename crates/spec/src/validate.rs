//! Turns the positioned YAML tree into the validated [`Config`], collecting every problem.
//!
//! Each check reports a [`Diagnostic`] with the position of the offending token and keeps
//! going, so one run shows all mistakes. The model is only built when nothing is wrong.
//! Architecture invariant: no IO and no knowledge of what the engine does with the model.
//! A service's `deploy` section is checked in the [`deploy`] submodule, its `autoscale` in
//! [`autoscale`], and the container parts (`image`, `build_image`, `scan`, `runtime`,
//! `resources`) in [`containers`].

mod alerts;
mod autoscale;
mod containers;
mod deploy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::node::{Node, Pos, Value};
use crate::schema::{
    CACHE_FIELDS, CONFIG_FIELDS, ENVIRONMENT_FIELDS, RETRY_FIELDS, SERVICE_FIELDS, STEP_FIELDS,
};
use crate::{Cache, Config, Diagnostic, Environment, Retry, Service, Step, StepKind};

/// Default step timeout.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest allowed timeout or retry delay.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Most extra attempts a step may have.
pub(crate) const MAX_RETRIES: i128 = 10;
/// Longest project, environment, service and step name.
const MAX_NAME_LEN: usize = 63;
/// Most approvals a protected environment may ask for.
const MAX_APPROVALS: i128 = 10;

/// Validation state: the source (for scalar spelling), the file name and what was found.
pub(crate) struct Validator<'a> {
    source: &'a str,
    file: &'a str,
    diags: Vec<Diagnostic>,
    /// Names of the top-level environments, once read; `None` when that section is missing
    /// or broken (then deploy environments are not checked against it).
    env_names: Option<Vec<String>>,
    /// Every `expose` and `preview` address seen so far, to report reuse.
    addresses: Vec<deploy::UsedAddress>,
}

/// The fields of one object, by name, with the key and value nodes of the first occurrence.
struct Fields<'n> {
    map: HashMap<String, (&'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.map.get(name).map(|(_, v)| *v)
    }

    /// The key and value nodes of a field.
    fn entry(&self, name: &str) -> Option<(&'n Node, &'n Node)> {
        self.map.get(name).copied()
    }
}

/// One entry of a map from names to things (environments, services, steps, env).
struct Entry<'n> {
    name: String,
    key: &'n Node,
    value: &'n Node,
}

/// A `needs` entry kept for the cycle check.
struct Need {
    target: usize,
    pos: Pos,
    field: String,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(source: &'a str, file: &'a str) -> Self {
        Validator {
            source,
            file,
            diags: Vec::new(),
            env_names: None,
            addresses: Vec::new(),
        }
    }

    /// All diagnostics so far, in file order.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| (d.line, d.column));
        self.diags
    }

    /// `value` (at `pos`, `path`) as what its keyword in `choices` stands for; otherwise an
    /// error `unknown {what} `value`` naming the nearest keyword, with `hint`.
    pub(crate) fn keyword<T: Copy>(
        &mut self,
        (pos, path): (Pos, &str),
        value: &str,
        what: &str,
        choices: &[(&str, T)],
        hint: String,
    ) -> Option<T> {
        if let Some((_, t)) = choices.iter().find(|(k, _)| *k == value) {
            return Some(*t);
        }
        let message = match suggest(value, choices.iter().map(|(k, _)| *k)) {
            Some(s) => format!("unknown {what} `{value}`, did you mean `{s}`?"),
            None => format!("unknown {what} `{value}`"),
        };
        self.error(pos, path, message, Some(hint));
        None
    }

    pub(crate) fn error(
        &mut self,
        pos: Pos,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            field: field.to_owned(),
            message: message.into(),
            hint,
        });
    }

    /// Validates the whole document.
    pub(crate) fn config(&mut self, root: &Node) -> Option<Config> {
        if !matches!(root.value, Value::Map(_)) {
            self.error(
                root.pos,
                "",
                format!(
                    "expected a mapping with `project`, `environments` and `services`, found {}",
                    root.value.kind()
                ),
                Some("start the file with `project: <name>`; see docs/sluice-yml.md".into()),
            );
            return None;
        }
        let fields = self.fields(
            root,
            Pos::START,
            "",
            CONFIG_FIELDS,
            &["project", "environments", "services"],
        )?;
        let project = fields.get("project").and_then(|n| self.project(n));
        let environments = fields
            .get("environments")
            .and_then(|n| self.environments(n));
        self.env_names = fields.get("environments").and_then(|n| match &n.value {
            Value::Map(items) if !items.is_empty() => Some(
                items
                    .iter()
                    .filter_map(|(k, _)| match &k.value {
                        Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        });
        let services = fields.get("services").and_then(|n| self.services(n));
        let alerts = match fields.entry("alerts") {
            Some((key, value)) => self.alerts(value, key.pos),
            None => Some(crate::Alerts::default()),
        };
        let oncall = match fields.entry("oncall") {
            Some((key, value)) => self.oncall(value, key.pos),
            None => Some(crate::OnCall::default()),
        };
        if let (Some(a), Some(o), Some(s)) = (&alerts, &oncall, &services) {
            self.check_alert_refs(&fields, a, o, s);
        }
        Some(Config {
            project: project?,
            environments: environments?,
            services: services?,
            alerts: alerts?,
            oncall: oncall?,
        })
    }

    fn project(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node, "project")?;
        match check_name(&name, NameKind::Project) {
            Ok(()) => Some(name),
            Err(why) => {
                self.error(
                    node.pos,
                    "project",
                    format!("invalid project name `{name}`: {why}"),
                    Some(
                        "use lower-case letters, digits and `-`, at most 63 characters, e.g. `shop`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn environments(&mut self, node: &Node) -> Option<Vec<Environment>> {
        let entries = self.named_entries(node, "environments", "environment")?;
        let mut ok = true;
        let mut envs = Vec::new();
        let mut branches: HashMap<String, String> = HashMap::new();
        for entry in &entries {
            let path = format!("environments.{}", entry.name);
            let Some(fields) = self.fields(
                entry.value,
                entry.key.pos,
                &path,
                ENVIRONMENT_FIELDS,
                &["branch"],
            ) else {
                ok = false;
                continue;
            };
            let Some(branch_node) = fields.get("branch") else {
                ok = false;
                continue;
            };
            let branch_path = format!("{path}.branch");
            let Some(branch) = self.string(branch_node, &branch_path) else {
                ok = false;
                continue;
            };
            if let Err(why) = check_branch(&branch) {
                self.error(
                    branch_node.pos,
                    &branch_path,
                    format!("invalid branch name `{branch}`: {why}"),
                    Some("give the branch name as git shows it, e.g. `main`".into()),
                );
                ok = false;
                continue;
            }
            if let Some(other) = branches.get(&branch) {
                self.error(
                    branch_node.pos,
                    &branch_path,
                    format!("branch `{branch}` already feeds environment `{other}`"),
                    Some("each environment needs its own branch".into()),
                );
                ok = false;
                continue;
            }
            branches.insert(branch.clone(), entry.name.clone());
            let protected = match fields.get("protected") {
                Some(n) => self.boolean(n, &format!("{path}.protected")),
                None => Some(false),
            };
            let approvals = match fields.get("approvals") {
                Some(n) => self.count(
                    n,
                    &format!("{path}.approvals"),
                    0..=MAX_APPROVALS,
                    "use 0 to 10 approvals",
                ),
                None => Some(0),
            };
            let wait_timer = match fields.get("wait_timer") {
                Some(n) => self.duration(n, &format!("{path}.wait_timer"), true),
                None => Some(Duration::ZERO),
            };
            let (Some(protected), Some(approvals), Some(wait_timer)) =
                (protected, approvals, wait_timer)
            else {
                ok = false;
                continue;
            };
            if !protected && (approvals > 0 || !wait_timer.is_zero()) {
                let field = if approvals > 0 {
                    "approvals"
                } else {
                    "wait_timer"
                };
                let pos = fields.get(field).map_or(entry.key.pos, |n| n.pos);
                self.error(
                    pos,
                    &format!("{path}.{field}"),
                    format!("{field} only applies to a protected environment"),
                    Some("add `protected: true` to this environment".into()),
                );
                ok = false;
                continue;
            }
            envs.push(Environment {
                name: entry.name.clone(),
                branch,
                protected,
                approvals,
                wait_timer,
            });
        }
        ok.then_some(envs)
    }

    fn services(&mut self, node: &Node) -> Option<Vec<Service>> {
        let entries = self.named_entries(node, "services", "service")?;
        let mut ok = true;
        let mut services = Vec::new();
        for entry in &entries {
            match self.service(entry) {
                Some(s) => services.push(s),
                None => ok = false,
            }
        }
        ok.then_some(services)
    }

    fn service(&mut self, entry: &Entry<'_>) -> Option<Service> {
        let path = format!("services.{}", entry.name);
        let fields = self.fields(
            entry.value,
            entry.key.pos,
            &path,
            SERVICE_FIELDS,
            &["steps"],
        )?;
        let paths = match fields.get("paths") {
            Some(n) => self.globs(n, &format!("{path}.paths")),
            None => Some(Vec::new()),
        };
        let env = match fields.get("env") {
            Some(n) => self.env(n, &format!("{path}.env")),
            None => Some(BTreeMap::new()),
        };
        let steps = fields
            .get("steps")
            .and_then(|n| self.steps(n, &path, env.as_ref()));
        // Read from the tree, so a broken step does not also break the deploy section.
        let build_step = fields.get("steps").and_then(containers::build_step_name);
        let deploy = match fields.entry("deploy") {
            Some((key, value)) => self
                .deploy(
                    value,
                    key.pos,
                    &format!("{path}.deploy"),
                    build_step.as_deref(),
                )
                .map(Some),
            None => Some(None),
        };
        Some(Service {
            name: entry.name.clone(),
            paths: paths?,
            steps: steps?,
            deploy: deploy?,
        })
    }

    fn steps(
        &mut self,
        node: &Node,
        service_path: &str,
        service_env: Option<&BTreeMap<String, String>>,
    ) -> Option<Vec<Step>> {
        let steps_path = format!("{service_path}.steps");
        let entries = self.named_entries(node, &steps_path, "step")?;
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut ok = true;
        let mut steps = Vec::new();
        let mut graph: Vec<Vec<Need>> = Vec::new();
        for entry in &entries {
            let mut needs = Vec::new();
            match self.step(entry, &steps_path, &names, service_env, &mut needs) {
                Some(step) => steps.push(step),
                None => ok = false,
            }
            graph.push(needs);
        }
        if !self.check_cycles(&names, &graph) {
            ok = false;
        }
        if !self.check_step_kinds(&entries, &steps_path, &mut steps) {
            ok = false;
        }
        ok.then_some(steps)
    }

    fn step(
        &mut self,
        entry: &Entry<'_>,
        steps_path: &str,
        names: &[&str],
        service_env: Option<&BTreeMap<String, String>>,
        needs_out: &mut Vec<Need>,
    ) -> Option<Step> {
        let path = format!("{steps_path}.{}", entry.name);
        // `run` is required unless the step is an image build or a scan.
        let other_kind = ["build_image", "scan"]
            .iter()
            .any(|k| containers::has_key(entry.value, k));
        let required: &[&'static str] = if other_kind { &[] } else { &["run"] };
        let fields = self.fields(entry.value, entry.key.pos, &path, STEP_FIELDS, required)?;
        let sub = |f: &str| format!("{path}.{f}");
        let mut ok = true;

        let run = fields.get("run").and_then(|n| {
            let run = self.string(n, &sub("run"))?;
            if run.trim().is_empty() {
                self.error(
                    n.pos,
                    &sub("run"),
                    "`run` is empty",
                    Some("give the shell command to run, e.g. `run: make test`".into()),
                );
                return None;
            }
            Some(run)
        });

        let mut needs = Vec::new();
        if let Some(n) = fields.get("needs") {
            let needs_path = sub("needs");
            match self.string_list(n, &needs_path) {
                Some(items) => {
                    let mut seen = HashSet::new();
                    for (i, (name, item)) in items.into_iter().enumerate() {
                        let item_path = format!("{needs_path}[{i}]");
                        if name == entry.name {
                            self.error(
                                item.pos,
                                &item_path,
                                format!("step `{name}` needs itself"),
                                Some("remove it from `needs`".into()),
                            );
                            ok = false;
                        } else if let Some(target) = names.iter().position(|s| *s == name) {
                            if seen.insert(target) {
                                needs_out.push(Need {
                                    target,
                                    pos: item.pos,
                                    field: item_path,
                                });
                                needs.push(name);
                            }
                        } else {
                            let others = names.iter().copied().filter(|s| *s != entry.name);
                            let message = match suggest(&name, others) {
                                Some(s) => format!("unknown step `{name}`, did you mean `{s}`?"),
                                None => format!("unknown step `{name}`"),
                            };
                            let hint = format!(
                                "`needs` names steps of the same service: {}",
                                list(names.iter().copied().filter(|s| *s != entry.name))
                            );
                            self.error(item.pos, &item_path, message, Some(hint));
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
        }

        let kind = self.step_kind(&fields, &path, run);
        let is_run = matches!(kind, Some(StepKind::Run { .. }));
        let gate = match fields.get("gate") {
            Some(n) => self.boolean(n, &sub("gate")).unwrap_or_else(|| {
                ok = false;
                false
            }),
            // A vulnerability scan exists to stop a release.
            None => matches!(kind, Some(StepKind::Scan(_))),
        };

        let timeout = match fields.get("timeout") {
            Some(n) => self.duration(n, &sub("timeout"), false).unwrap_or_else(|| {
                ok = false;
                DEFAULT_TIMEOUT
            }),
            None => DEFAULT_TIMEOUT,
        };

        let retry = match fields.get("retry") {
            Some(n) => self.retry(n, &sub("retry")).unwrap_or_else(|| {
                ok = false;
                Retry::default()
            }),
            None => Retry::default(),
        };

        // Build and scan steps run no command of the user's: the service's env does not apply.
        let mut env = if other_kind {
            BTreeMap::new()
        } else {
            service_env.cloned().unwrap_or_default()
        };
        if let Some(n) = fields.get("env") {
            match self.env(n, &sub("env")) {
                Some(own) => env.extend(own),
                None => ok = false,
            }
        }

        let workdir = match fields.get("workdir") {
            Some(n) => self
                .workdir(n, &sub("workdir"), "the repository", "the repository root")
                .unwrap_or_else(|| {
                    ok = false;
                    None
                }),
            None => None,
        };

        let mut globs = |this: &mut Self, f: &str| match fields.get(f) {
            Some(n) => this.globs(n, &sub(f)).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            }),
            None => Vec::new(),
        };
        let junit = globs(self, "junit");
        let artifacts = globs(self, "artifacts");

        let cache = match fields.get("cache") {
            Some(n) => self.caches(n, &sub("cache")).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            }),
            None => Vec::new(),
        };

        let secrets = match fields.get("secrets") {
            Some(n) => self.secrets(n, &sub("secrets")).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            }),
            None => Vec::new(),
        };

        let kind = kind?;
        if !is_run && !self.check_command_fields(&fields, &path, &kind) {
            ok = false;
        }
        ok.then(|| Step {
            name: entry.name.clone(),
            kind,
            needs,
            env,
            workdir,
            timeout,
            retry,
            gate,
            junit,
            artifacts,
            cache,
            secrets,
        })
    }

    /// Reports each cycle in `needs` once; returns false if there was one.
    fn check_cycles(&mut self, names: &[&str], graph: &[Vec<Need>]) -> bool {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; graph.len()];
        let mut found = false;
        for start in 0..graph.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative depth-first search: (node, index of the next edge to follow).
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let Some(edge) = graph[node].get(*next) else {
                    marks[node] = Mark::Done;
                    stack.pop();
                    continue;
                };
                *next += 1;
                match marks[edge.target] {
                    Mark::New => {
                        marks[edge.target] = Mark::Active;
                        stack.push((edge.target, 0));
                    }
                    Mark::Active => {
                        let from = stack
                            .iter()
                            .position(|(n, _)| *n == edge.target)
                            .unwrap_or(0);
                        let mut cycle: Vec<&str> =
                            stack[from..].iter().map(|(n, _)| names[*n]).collect();
                        cycle.push(names[edge.target]);
                        self.error(
                            edge.pos,
                            &edge.field,
                            format!("dependency cycle `{}`", cycle.join(" -> ")),
                            Some("remove one of these `needs` entries".into()),
                        );
                        found = true;
                    }
                    Mark::Done => {}
                }
            }
        }
        !found
    }

    /// `retry: 2` or `retry: {max: 2, on: [failure], delay: 1s}`.
    fn retry(&mut self, node: &Node, path: &str) -> Option<Retry> {
        match &node.value {
            Value::Int(_) => Some(Retry {
                max: self.retry_count(node, path)?,
                ..Retry::default()
            }),
            Value::Map(_) => {
                let fields = self.fields(node, node.pos, path, RETRY_FIELDS, &["max"])?;
                let mut retry = Retry::default();
                let on = fields
                    .get("on")
                    .and_then(|on| self.retry_on(on, &format!("{path}.on")));
                if let Some((on_failure, on_timeout)) = on {
                    retry.on_failure = on_failure;
                    retry.on_timeout = on_timeout;
                }
                // Every field is checked before giving up, so all problems show at once.
                let delay = fields
                    .get("delay")
                    .map(|d| self.duration(d, &format!("{path}.delay"), true));
                let max = fields
                    .get("max")
                    .map(|m| self.retry_count(m, &format!("{path}.max")));
                if let Some(delay) = delay {
                    retry.delay = delay?;
                }
                retry.max = max??;
                Some(retry)
            }
            _ => {
                self.wrong_type(
                    node,
                    path,
                    "a number of extra attempts or a mapping with `max`, `on` and `delay`",
                );
                None
            }
        }
    }

    /// `on: [failure, timeout]` as (on failure, on timeout).
    fn retry_on(&mut self, node: &Node, path: &str) -> Option<(bool, bool)> {
        let items = self.string_list(node, path)?;
        if items.is_empty() {
            self.error(
                node.pos,
                path,
                "`on` is empty",
                Some("list `failure`, `timeout` or both".into()),
            );
            return None;
        }
        let (mut on_failure, mut on_timeout) = (false, false);
        for (i, (value, item)) in items.into_iter().enumerate() {
            let on = self.keyword(
                (item.pos, &format!("{path}[{i}]")),
                &value,
                "retry condition",
                &[("failure", true), ("timeout", false)],
                "use `failure`, `timeout` or both".into(),
            );
            match on {
                Some(true) => on_failure = true,
                Some(false) => on_timeout = true,
                None => {}
            }
        }
        Some((on_failure, on_timeout))
    }

    fn retry_count(&mut self, node: &Node, path: &str) -> Option<u32> {
        match node.value {
            Value::Int(n) if (0..=MAX_RETRIES).contains(&n) => u32::try_from(n).ok(),
            Value::Int(n) => {
                self.error(
                    node.pos,
                    path,
                    format!("retry count {n} is out of range"),
                    Some(format!("use 0 to {MAX_RETRIES} extra attempts")),
                );
                None
            }
            _ => {
                self.wrong_type(node, path, "a number of extra attempts");
                None
            }
        }
    }

    fn caches(&mut self, node: &Node, path: &str) -> Option<Vec<Cache>> {
        let items = self.items(node, path, "a list of caches")?;
        let mut ok = true;
        let mut caches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(fields) = self.fields(item, item.pos, &item_path, CACHE_FIELDS, &["paths"])
            else {
                ok = false;
                continue;
            };
            let paths = fields.get("paths").and_then(|n| {
                let p = format!("{item_path}.paths");
                let dirs = self.string_list(n, &p)?;
                if dirs.is_empty() {
                    self.error(
                        n.pos,
                        &p,
                        "`paths` is empty",
                        Some("list at least one directory to keep between runs".into()),
                    );
                    return None;
                }
                let mut out = Vec::new();
                let mut good = true;
                for (j, (dir, dn)) in dirs.into_iter().enumerate() {
                    match normalize_relative(&dir) {
                        Ok(Some(d)) => out.push(d),
                        Ok(None) => {
                            self.error(
                                dn.pos,
                                &format!("{p}[{j}]"),
                                "cache directory is the repository root",
                                Some(
                                    "name a directory inside the repository, e.g. `node_modules`"
                                        .into(),
                                ),
                            );
                            good = false;
                        }
                        Err(why) => {
                            self.error(
                                dn.pos,
                                &format!("{p}[{j}]"),
                                format!("cache directory `{dir}` {why}"),
                                Some("give a directory relative to the repository root".into()),
                            );
                            good = false;
                        }
                    }
                }
                good.then_some(out)
            });
            let key_files = match fields.get("key_files") {
                Some(n) => self.globs(n, &format!("{item_path}.key_files")),
                None => Some(Vec::new()),
            };
            match (paths, key_files) {
                (Some(paths), Some(key_files)) => caches.push(Cache { paths, key_files }),
                _ => ok = false,
            }
        }
        ok.then_some(caches)
    }

    fn secrets(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.string_list(node, path)?;
        let mut ok = true;
        let mut out = Vec::new();
        for (i, (name, item)) in items.into_iter().enumerate() {
            if is_secret_name(&name) {
                out.push(name);
            } else {
                self.error(
                    item.pos,
                    &format!("{path}[{i}]"),
                    format!("invalid secret name `{name}`"),
                    Some(
                        "secret names are upper-case letters, digits and `_`, e.g. `NPM_TOKEN`"
                            .into(),
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// A map of names to scalar values (taken as written), each name checked by `check_key`,
    /// which gives (message, hint) when it is not allowed.
    pub(crate) fn scalar_map(
        &mut self,
        node: &Node,
        path: &str,
        check_key: impl Fn(&str) -> Result<(), (String, String)>,
    ) -> Option<BTreeMap<String, String>> {
        let entries = self.entries(node, path)?;
        let mut ok = true;
        let mut out = BTreeMap::new();
        for entry in entries {
            let item_path = format!("{path}.{}", entry.name);
            if let Err((message, hint)) = check_key(&entry.name) {
                self.error(entry.key.pos, &item_path, message, Some(hint));
                ok = false;
                continue;
            }
            match &entry.value.value {
                Value::Null => {
                    self.error(
                        entry.value.pos,
                        &item_path,
                        "expected a value, found nothing",
                        Some("write `\"\"` for an empty value".into()),
                    );
                    ok = false;
                }
                Value::Seq(_) | Value::Map(_) => {
                    self.wrong_type(entry.value, &item_path, "a string");
                    ok = false;
                }
                _ => {
                    if let Some(text) = entry.value.scalar_text(self.source) {
                        out.insert(entry.name, text);
                    }
                }
            }
        }
        ok.then_some(out)
    }

    fn env(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        self.scalar_map(node, path, |name| {
            if is_env_name(name) {
                Ok(())
            } else {
                Err((
                    format!("invalid environment variable name `{name}`"),
                    "use letters, digits and `_`, not starting with a digit, e.g. `RUST_LOG`"
                        .into(),
                ))
            }
        })
    }

    /// A list of glob patterns, each checked.
    fn globs(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.string_list(node, path)?;
        let mut ok = true;
        let mut out = Vec::new();
        for (i, (pattern, item)) in items.into_iter().enumerate() {
            match check_glob(&pattern) {
                Ok(()) => out.push(pattern),
                Err((why, hint)) => {
                    self.error(
                        item.pos,
                        &format!("{path}[{i}]"),
                        format!("invalid glob `{pattern}`: {why}"),
                        Some(hint),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn duration(&mut self, node: &Node, path: &str, zero_ok: bool) -> Option<Duration> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(n) => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a duration such as `10m`, found the number {n}"),
                    Some(format!("add a unit, e.g. `{n}s` or `{n}m`")),
                );
                return None;
            }
            _ => {
                self.wrong_type(node, path, "a duration such as `10m`");
                return None;
            }
        };
        let hint = Some("write a duration such as `90s`, `10m`, `1h30m` or `250ms`".to_owned());
        let Some(d) = parse_duration(&text) else {
            self.error(node.pos, path, format!("invalid duration `{text}`"), hint);
            return None;
        };
        if d.is_zero() && !zero_ok {
            self.error(node.pos, path, "duration must be more than zero", hint);
            return None;
        }
        if d > MAX_DURATION {
            self.error(
                node.pos,
                path,
                format!("duration `{text}` is longer than 24h"),
                Some("use at most `24h`".into()),
            );
            return None;
        }
        Some(d)
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// The items of a list (`expected` names it in the type error); nothing (`needs:`) is
    /// an empty list.
    fn items<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.wrong_type(node, path, expected);
                None
            }
        }
    }

    /// A list of strings; nothing (`needs:`) is an empty list.
    fn string_list<'n>(&mut self, node: &'n Node, path: &str) -> Option<Vec<(String, &'n Node)>> {
        let items = self.items(node, path, "a list")?;
        let mut ok = true;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &format!("{path}[{i}]")) {
                Some(s) => out.push((s, item)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = match (&node.value, node.scalar_text(self.source)) {
            (Value::Str(_), Some(text)) => format!("the string `{text}`"),
            (_, Some(text)) => format!("{} `{text}`", node.value.kind()),
            (v, None) => v.kind().to_owned(),
        };
        let hint = match (&node.value, node.scalar_text(self.source)) {
            (Value::Str(_), Some(text)) if expected == "a list" => {
                Some(format!("write a list: `[{text}]`"))
            }
            (Value::Int(_) | Value::Float(_) | Value::Bool(_), Some(text))
                if expected == "a string" =>
            {
                Some(format!("put it in quotes: `\"{text}\"`"))
            }
            _ => None,
        };
        self.error(
            node.pos,
            path,
            format!("expected {expected}, found {found}"),
            hint,
        );
    }

    /// The entries of a map from names to things, with duplicate keys reported (only the
    /// first occurrence is kept). Nothing (`env:`) is an empty map.
    fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Option<Vec<Entry<'n>>> {
        let items = match &node.value {
            Value::Map(items) => items,
            Value::Null => return Some(Vec::new()),
            _ => {
                self.wrong_type(node, path, "a mapping");
                return None;
            }
        };
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut out = Vec::new();
        for (key, value) in items {
            let Some(name) = self.key_name(key, path) else {
                continue;
            };
            if let Some(first) = seen.get(&name) {
                self.duplicate(key, path, &name, *first);
                continue;
            }
            seen.insert(name.clone(), key.pos);
            out.push(Entry { name, key, value });
        }
        Some(out)
    }

    /// Like [`Self::entries`] for environments, services and steps: at least one, and
    /// the names are checked. Entries with bad names are still returned so that their
    /// contents get checked too (the recorded diagnostic keeps the model from being built).
    fn named_entries<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &'static str,
    ) -> Option<Vec<Entry<'n>>> {
        let entries = self.entries(node, path)?;
        if entries.is_empty() {
            let last = path.rsplit('.').next().unwrap_or(path);
            self.error(
                node.pos,
                path,
                format!("`{last}` is empty"),
                Some(format!("define at least one {what}")),
            );
            return None;
        }
        for entry in &entries {
            if let Err(why) = check_name(&entry.name, NameKind::Entry) {
                self.error(
                    entry.key.pos,
                    &format!("{path}.{}", entry.name),
                    format!("invalid {what} name `{}`: {why}", entry.name),
                    Some(format!(
                        "use lower-case letters, digits, `_` and `-`, e.g. `{}`",
                        match what {
                            "environment" => "staging",
                            "service" => "api",
                            _ => "unit-tests",
                        }
                    )),
                );
            }
        }
        Some(entries)
    }

    /// The fields of an object: reports duplicate, unknown and missing fields. `anchor`
    /// is where a missing field is reported (the key naming the object).
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        anchor: Pos,
        path: &str,
        allowed: &[&'static str],
        required: &[&'static str],
    ) -> Option<Fields<'n>> {
        let items: &[(Node, Node)] = match &node.value {
            Value::Map(items) => items,
            // `lint:` with nothing after it reads as an empty object, so the user is told
            // what is missing rather than that null is not a mapping.
            Value::Null => &[],
            _ => {
                self.wrong_type(node, path, "a mapping");
                return None;
            }
        };
        let mut map: HashMap<String, (&'n Node, &'n Node)> = HashMap::new();
        let mut suggested = HashSet::new();
        for (key, value) in items {
            let Some(name) = self.key_name(key, path) else {
                continue;
            };
            if let Some((first, _)) = map.get(&name) {
                self.duplicate(key, path, &name, first.pos);
            } else if allowed.contains(&name.as_str()) {
                map.insert(name, (key, value));
            } else {
                self.unknown_field(key, path, &name, allowed, &mut suggested);
            }
        }
        for field in required {
            if !map.contains_key(*field) && !suggested.contains(field) {
                self.error(
                    anchor,
                    path,
                    format!("missing required field `{field}`"),
                    Some(missing_hint(path, field)),
                );
            }
        }
        // A broken object still yields its good fields, so their problems are reported
        // too; nothing is built from it because a diagnostic was recorded.
        Some(Fields { map })
    }

    fn unknown_field(
        &mut self,
        key: &Node,
        path: &str,
        name: &str,
        allowed: &[&'static str],
        suggested: &mut HashSet<&'static str>,
    ) {
        match suggest(name, allowed.iter().copied()) {
            Some(s) => {
                suggested.insert(s);
                self.error(
                    key.pos,
                    path,
                    format!("unknown field `{name}`, did you mean `{s}`?"),
                    None,
                );
            }
            None => self.error(
                key.pos,
                path,
                format!("unknown field `{name}`"),
                Some(format!("expected one of {}", list(allowed.iter().copied()))),
            ),
        }
    }

    fn duplicate(&mut self, key: &Node, path: &str, name: &str, first: Pos) {
        self.error(
            key.pos,
            path,
            format!("duplicate key `{name}`"),
            Some(format!(
                "the first `{name}` is on line {}; remove one of them",
                first.line
            )),
        );
    }

    fn key_name(&mut self, key: &Node, path: &str) -> Option<String> {
        match &key.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(_) | Value::Bool(_) | Value::Float(_) => key.scalar_text(self.source),
            other => {
                self.error(
                    key.pos,
                    path,
                    format!("expected a name as key, found {}", other.kind()),
                    None,
                );
                None
            }
        }
    }
}

fn missing_hint(path: &str, field: &str) -> String {
    match field {
        "project" => "add `project: <name>` at the top of the file".into(),
        "environments" if path.ends_with(".deploy") => {
            "add the environments to deploy to, e.g. `environments: {staging: {expose: 127.0.0.1:8080}}`".into()
        }
        "environments" => "add e.g. `environments: {staging: {branch: main}}`".into(),
        "start" => "add `start: <shell command>` that starts an instance listening on `$PORT`".into(),
        "expose" => "add the address the proxy listens on, e.g. `expose: 127.0.0.1:8080`".into(),
        "steps" if path.ends_with(".canary") => {
            "add e.g. `steps: [{weight: 10, pause: 1m}, {weight: 100}]`".into()
        }
        "weight" => "add `weight: <percent of traffic, 1 to 100>`".into(),
        "value" => "add the header or cookie value that selects the new release, e.g. `value: \"1\"`".into(),
        "services" => "add `services:` with at least one service and its steps".into(),
        "branch" => "add `branch: <branch name>`".into(),
        "steps" => "add `steps:` with at least one step".into(),
        "run" => "add `run: <shell command>`, or `build_image` or `scan` for an image build or a vulnerability scan".into(),
        "max" if path.ends_with(".autoscale") => {
            "add `max: <most instances, up to 64>`".into()
        }
        "max" => "add `max: <extra attempts>`".into(),
        "id" => "add `id: <advisory id>`, e.g. `id: RUSTSEC-2023-0071`".into(),
        "reason" => "add `reason: <why the finding is accepted>`".into(),
        "expires" => "add `expires: <YYYY-MM-DD>`, the last day the entry applies".into(),
        "paths" => "add `paths: [<directory>]`".into(),
        other => format!("add `{other}`"),
    }
}

/// What kind of name is checked.
#[derive(Clone, Copy)]
enum NameKind {
    /// `[a-z0-9][a-z0-9-]*`.
    Project,
    /// `[a-z0-9][a-z0-9_-]*`.
    Entry,
}

fn check_name(name: &str, kind: NameKind) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("it is empty".into());
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("it must start with a lower-case letter or a digit".into());
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (c == '_' && matches!(kind, NameKind::Entry))
    };
    match chars.find(|c| !allowed(*c)) {
        Some(c) => Err(format!("`{}` is not allowed", c.escape_default())),
        None => Ok(()),
    }
}

fn check_branch(branch: &str) -> Result<(), String> {
    if branch.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = branch
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(*c))
    {
        return Err(format!("`{}` is not allowed", c.escape_default()));
    }
    if branch.starts_with('-') || branch.contains("..") || branch.ends_with('/') {
        return Err("git does not allow this name".into());
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Normalizes a path relative to the repository root (`./a/b/` becomes `a/b`); `None` is
/// the root itself. Errors say why the path does not stay inside the repository.
fn normalize_relative(path: &str) -> Result<Option<String>, String> {
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err("is absolute".to_owned());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("leaves the repository with `..`".to_owned()),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Checks a glob pattern: syntax, and that it stays inside the repository. The error is
/// (what is wrong, what to do).
fn check_glob(pattern: &str) -> Result<(), (String, String)> {
    if pattern.trim().is_empty() {
        return Err((
            "the pattern is empty".into(),
            "remove it or write a pattern such as `src/**`".into(),
        ));
    }
    if pattern.starts_with('/') {
        return Err((
            "it is absolute".into(),
            "patterns are relative to the repository root: drop the leading `/`".into(),
        ));
    }
    if pattern.split('/').any(|p| p == "..") {
        return Err((
            "it leaves the repository with `..`".into(),
            "patterns are relative to the repository root".into(),
        ));
    }
    crate::paths::compile(pattern).map(|_| ()).map_err(|e| {
        (
            e.kind().to_string(),
            "check the brackets and braces; `*` matches within a directory, `**` across directories"
                .into(),
        )
    })
}

/// Parses `90s`, `10m`, `1h30m`, `250ms`: one or more numbers, each with a unit.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number: u64 = text.get(start..i)?.parse().ok()?;
        let (unit_ms, len) = match bytes.get(i..) {
            Some([b'm', b's', ..]) => (1, 2),
            Some([b'h', ..]) => (3_600_000, 1),
            Some([b'm', ..]) => (60_000, 1),
            Some([b's', ..]) => (1_000, 1),
            _ => return None,
        };
        i += len;
        let millis = number.checked_mul(unit_ms)?;
        total = total.checked_add(Duration::from_millis(millis))?;
    }
    Some(total)
}

/// The closest allowed word, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, c), c))
        .filter(|(d, c)| *d <= (c.chars().count().min(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbouring characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// `a`, `b`, `c` for messages.
fn list<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("90s"), Some(ms(90_000)));
        assert_eq!(parse_duration("10m"), Some(ms(600_000)));
        assert_eq!(parse_duration("1h30m"), Some(ms(5_400_000)));
        assert_eq!(parse_duration("250ms"), Some(ms(250)));
        assert_eq!(parse_duration("1m30s500ms"), Some(ms(90_500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "10",
            "m",
            "10x",
            "1.5h",
            " 10m",
            "10m ",
            "-1s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("nedds", STEP_FIELDS.iter().copied()), Some("needs"));
        assert_eq!(suggest("Run", STEP_FIELDS.iter().copied()), Some("run"));
        assert_eq!(
            suggest("enviroments", CONFIG_FIELDS.iter().copied()),
            Some("environments")
        );
        assert_eq!(
            suggest("tiemout", STEP_FIELDS.iter().copied()),
            Some("timeout")
        );
        assert_eq!(suggest("tags", STEP_FIELDS.iter().copied()), None);
        assert_eq!(
            suggest("build-image", STEP_FIELDS.iter().copied()),
            Some("build_image")
        );
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn names() {
        assert!(check_name("shop-2", NameKind::Project).is_ok());
        assert!(check_name("shop_2", NameKind::Project).is_err());
        assert!(check_name("api_v2", NameKind::Entry).is_ok());
        assert!(check_name("-api", NameKind::Entry).is_err());
        assert!(check_name("Api", NameKind::Entry).is_err());
        assert!(check_name(&"a".repeat(64), NameKind::Project).is_err());
        assert!(is_env_name("_X1") && !is_env_name("1X") && !is_env_name("A-B"));
        assert!(is_secret_name("NPM_TOKEN") && !is_secret_name("npm_token"));
        assert!(check_branch("release/1.2").is_ok());
        assert!(check_branch("a b").is_err() && check_branch("a..b").is_err());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            normalize_relative("./services/api/"),
            Ok(Some("services/api".into()))
        );
        assert_eq!(normalize_relative("."), Ok(None));
        assert!(normalize_relative("/etc").is_err());
        assert!(normalize_relative("a/../../b").is_err());
        assert!(normalize_relative("C:/x").is_err());
    }
}
