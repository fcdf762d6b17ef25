//! Validation of the container parts of `sluice.yml`: a step's kind (`run` with an optional
//! `image`, `build_image`, or `scan`), the checks across a service's steps (one image build
//! per service, a scan of the image waits for its build), and a deploy section's `runtime`,
//! `image` and `resources`.
//!
//! Like the rest of the validator it reports each problem at the offending token and keeps
//! going; nothing here knows how images are built, scanned or run.

use std::collections::{BTreeMap, HashSet};

use super::{Entry, Fields, Validator, is_env_name, list, normalize_relative};
use crate::image::ImageRef;
use crate::node::{Node, Pos, Value};
use crate::schema::{
    ALLOW_FIELDS, BUILD_IMAGE_FIELDS, FAIL_ON_VALUES, RESOURCES_FIELDS, RUNTIME_VALUES,
    SCAN_FIELDS, STEP_KINDS,
};
use crate::{
    AllowEntry, BuildImage, ContainerImage, Date, Resources, RuntimeSpec, ScanSpec, Step, StepKind,
    VulnSeverity,
};

/// Fewest CPUs an instance may be given (Docker's own lower limit).
const MIN_CPUS: f64 = 0.01;
/// Most CPUs an instance may be given.
const MAX_CPUS: f64 = 64.0;
/// Least memory (Docker refuses less than 6 MiB).
const MIN_MEMORY: u64 = 6 << 20;
/// Most memory; more is almost certainly a unit mistake.
const MAX_MEMORY: u64 = 1 << 40;
/// Fields of a `run` step that a `build_image` or `scan` step cannot have, with what to do.
const COMMAND_ONLY_FIELDS: &[(&str, &str)] = &[
    (
        "image",
        "`image` chooses where a `run` command runs; remove it",
    ),
    (
        "workdir",
        "paths of image builds are relative to the repository root; remove it",
    ),
    (
        "env",
        "no command of yours runs here; pass build arguments with `build_image.args`",
    ),
    (
        "secrets",
        "secrets are only given to `run` commands (a build argument would store them in the image's history)",
    ),
    ("junit", "only a `run` step writes test reports; remove it"),
    (
        "artifacts",
        "the image itself is the release of a `build_image` step; pack files from a `run` step",
    ),
    (
        "cache",
        "image builds keep their own layer cache; remove it",
    ),
];

/// The value node of `key` in a mapping node (its first occurrence), with its key node.
pub(super) fn field_node<'n>(node: &'n Node, key: &str) -> Option<(&'n Node, &'n Node)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// True if a mapping node has the key.
pub(super) fn has_key(node: &Node, key: &str) -> bool {
    field_node(node, key).is_some()
}

/// The name of the first step with a `build_image` key, read from the `steps` node.
pub(super) fn build_step_name(steps: &Node) -> Option<String> {
    let Value::Map(entries) = &steps.value else {
        return None;
    };
    entries.iter().find_map(|(name, step)| match &name.value {
        Value::Str(name) if has_key(step, "build_image") => Some(name.clone()),
        _ => None,
    })
}

impl Validator<'_> {
    /// What a step does: exactly one of `run`, `build_image` and `scan`. `run` is the
    /// already checked command, `None` if it is missing or was reported.
    pub(super) fn step_kind(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        run: Option<String>,
    ) -> Option<StepKind> {
        let mut kinds: Vec<(&str, &Node, &Node)> = STEP_KINDS
            .iter()
            .filter_map(|k| fields.entry(k).map(|(key, value)| (*k, key, value)))
            .collect();
        kinds.sort_by_key(|(_, key, _)| (key.pos.line, key.pos.column));
        let mut ok = true;
        for (kind, key, _) in kinds.iter().skip(1) {
            self.error(
                key.pos,
                &format!("{path}.{kind}"),
                format!("the step has both `{}` and `{kind}`", kinds[0].0),
                Some(
                    "a step runs a command (`run`), builds an image (`build_image`) or scans for vulnerabilities (`scan`); split it into two steps"
                        .into(),
                ),
            );
            ok = false;
        }
        // A missing `run` was reported as a missing required field.
        let (kind, key, value) = kinds.first().copied()?;
        let sub = format!("{path}.{kind}");
        let built = match kind {
            "run" => {
                let image = match fields.get("image") {
                    Some(n) => self.image_ref(n, &format!("{path}.image")).map(Some),
                    None => Some(None),
                };
                match (run, image) {
                    (Some(run), Some(image)) => Some(StepKind::Run { run, image }),
                    _ => None,
                }
            }
            "build_image" => self
                .build_image(value, key.pos, &sub)
                .map(StepKind::BuildImage),
            _ => self.scan(value, key.pos, &sub).map(StepKind::Scan),
        };
        built.filter(|_| ok)
    }

    /// Reports the fields of a `build_image` or `scan` step that only a `run` step has.
    pub(super) fn check_command_fields(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        kind: &StepKind,
    ) -> bool {
        let name = match kind {
            StepKind::BuildImage(_) => "build_image",
            StepKind::Scan(_) => "scan",
            StepKind::Run { .. } => return true,
        };
        let mut ok = true;
        let mut present: Vec<(&Node, &str, &str)> = COMMAND_ONLY_FIELDS
            .iter()
            .filter_map(|(f, hint)| fields.entry(f).map(|(key, _)| (key, *f, *hint)))
            .collect();
        present.sort_by_key(|(key, _, _)| (key.pos.line, key.pos.column));
        for (key, field, hint) in present {
            let hint = match (field, name) {
                ("artifacts", "scan") => {
                    "a scan produces a report, not release files; pack files from a `run` step"
                }
                ("image", "scan") => {
                    "a scan checks the image of the service's `build_image` step; choose that with `scan: {image: true}`"
                }
                _ => hint,
            };
            self.error(
                key.pos,
                &format!("{path}.{field}"),
                format!("`{field}` does not apply to a `{name}` step"),
                Some(hint.into()),
            );
            ok = false;
        }
        ok
    }

    /// The checks across a service's steps: at most one `build_image` step, and what a
    /// `scan` step scans (resolving its `image` default). `steps` holds the steps that were
    /// valid on their own.
    pub(super) fn check_step_kinds(
        &mut self,
        entries: &[Entry<'_>],
        steps_path: &str,
        steps: &mut [Step],
    ) -> bool {
        let mut ok = true;
        let builds: Vec<(&Entry<'_>, &Node)> = entries
            .iter()
            .filter_map(|e| field_node(e.value, "build_image").map(|(key, _)| (e, key)))
            .collect();
        for (entry, key) in builds.iter().skip(1) {
            self.error(
                key.pos,
                &format!("{steps_path}.{}.build_image", entry.name),
                format!(
                    "the service already builds its image in step `{}`",
                    builds[0].0.name
                ),
                Some(
                    "a service has one release image; build other images in a service of their own"
                        .into(),
                ),
            );
            ok = false;
        }
        let build = builds.first().map(|(e, _)| e.name.as_str());
        let complete = steps.len() == entries.len();
        for entry in entries {
            let Some((scan_key, scan)) = field_node(entry.value, "scan") else {
                continue;
            };
            let path = format!("{steps_path}.{}", entry.name);
            let explicit = field_node(scan, "image").and_then(|(_, v)| match v.value {
                Value::Bool(b) => Some((b, v.pos)),
                _ => None,
            });
            let image = match (explicit, build) {
                (Some((true, pos)), None) => {
                    self.error(
                        pos,
                        &format!("{path}.scan.image"),
                        "`image: true`, but the service has no `build_image` step",
                        Some(
                            "add a step with `build_image`, or remove `image` to scan the lockfiles only"
                                .into(),
                        ),
                    );
                    ok = false;
                    continue;
                }
                (Some((false, _)), _) | (None, None) => false,
                (Some((true, _)), Some(_)) | (None, Some(_)) => true,
            };
            if image
                && let Some(build) = build
                && complete
                && !needs_transitively(steps, &entry.name, build)
            {
                let pos = field_node(entry.value, "needs").map_or(scan_key.pos, |(k, _)| k.pos);
                self.error(
                    pos,
                    &path,
                    format!(
                        "the scan checks the image built by step `{build}` but does not wait for it"
                    ),
                    Some(format!(
                        "add `{build}` to `needs`, or set `image: false` to scan the lockfiles only"
                    )),
                );
                ok = false;
            }
            let Some(step) = steps.iter_mut().find(|s| s.name == entry.name) else {
                continue;
            };
            if let StepKind::Scan(spec) = &mut step.kind {
                spec.image = image;
                if !spec.lockfiles && !image {
                    let what = if build.is_some() {
                        "`lockfiles` and `image` are both false"
                    } else {
                        "`lockfiles` is false and the service builds no image"
                    };
                    self.error(
                        scan_key.pos,
                        &format!("{path}.scan"),
                        format!("the scan has nothing to scan: {what}"),
                        Some("set `lockfiles: true`, or remove the step".into()),
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    /// A Docker image reference.
    pub(super) fn image_ref(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        match ImageRef::parse(&text) {
            Ok(_) => Some(text),
            Err(why) => {
                self.error(
                    node.pos,
                    path,
                    format!("invalid image reference `{text}`: {why}"),
                    Some(
                        "write `[registry[:port]/]name[:tag][@sha256:<digest>]`, e.g. `node:22`, `ghcr.io/acme/tools:1.4` or `alpine@sha256:<64 hex digits>`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// `build_image:` in its short (the context directory) or long form.
    fn build_image(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<BuildImage> {
        if let Value::Str(_) = node.value {
            let context = self.relative_dir(node, path, "context")?;
            return Some(BuildImage {
                context,
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
                target: None,
                labels: BTreeMap::new(),
            });
        }
        let fields = self.fields(node, anchor, path, BUILD_IMAGE_FIELDS, &[])?;
        let sub = |f: &str| format!("{path}.{f}");
        let context = match fields.get("context") {
            Some(n) => self.relative_dir(n, &sub("context"), "context"),
            None => Some(None),
        };
        let dockerfile = match fields.get("dockerfile") {
            Some(n) => self.dockerfile(n, &sub("dockerfile")),
            None => Some("Dockerfile".to_owned()),
        };
        let args = match fields.get("args") {
            Some(n) => self.scalar_map(n, &sub("args"), |k| {
                is_env_name(k).then_some(()).ok_or_else(|| {
                    (
                        format!("invalid build argument name `{k}`"),
                        "use letters, digits and `_`, not starting with a digit, as `ARG` in the Dockerfile, e.g. `RUST_VERSION`".to_owned(),
                    )
                })
            }),
            None => Some(BTreeMap::new()),
        };
        let target = match fields.get("target") {
            Some(n) => self.stage(n, &sub("target")).map(Some),
            None => Some(None),
        };
        let labels = match fields.get("labels") {
            Some(n) => self.scalar_map(n, &sub("labels"), check_label_key),
            None => Some(BTreeMap::new()),
        };
        Some(BuildImage {
            context: context?,
            dockerfile: dockerfile?,
            args: args?,
            target: target?,
            labels: labels?,
        })
    }

    /// A directory relative to the repository root; `Some(None)` is the root.
    fn relative_dir(&mut self, node: &Node, path: &str, what: &str) -> Option<Option<String>> {
        let dir = self.string(node, path)?;
        match normalize_relative(&dir) {
            Ok(d) => Some(d),
            Err(why) => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} `{dir}` {why}"),
                    Some(
                        "give a directory relative to the repository root, e.g. `services/api`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// The Dockerfile, relative to the build context and inside it.
    fn dockerfile(&mut self, node: &Node, path: &str) -> Option<String> {
        let file = self.string(node, path)?;
        let hint = Some(
            "give the Dockerfile's path relative to `context`, e.g. `Dockerfile` or `docker/api.Dockerfile`"
                .to_owned(),
        );
        match normalize_relative(&file) {
            Ok(Some(f)) if !file.ends_with('/') => Some(f),
            Ok(_) => {
                self.error(
                    node.pos,
                    path,
                    format!("dockerfile `{file}` names a directory, not a file"),
                    hint,
                );
                None
            }
            Err(why) => {
                let why = why.replace("the repository", "the build context");
                self.error(node.pos, path, format!("dockerfile `{file}` {why}"), hint);
                None
            }
        }
    }

    /// A build stage name (`FROM … AS name`).
    fn stage(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.string(node, path)?;
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if valid {
            return Some(name);
        }
        self.error(
            node.pos,
            path,
            format!("invalid target stage `{name}`"),
            Some(
                "name a stage of the Dockerfile (`FROM … AS <name>`): a letter, then letters, digits, `_`, `.` and `-`, e.g. `runtime`"
                    .into(),
            ),
        );
        None
    }

    /// `scan:`; `image` is resolved later, across the service's steps.
    fn scan(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<ScanSpec> {
        let fields = self.fields(node, anchor, path, SCAN_FIELDS, &[])?;
        let sub = |f: &str| format!("{path}.{f}");
        let fail_on = match fields.get("fail_on") {
            Some(n) => self.severity(n, &sub("fail_on")),
            None => Some(VulnSeverity::High),
        };
        let lockfiles = fields
            .get("lockfiles")
            .map_or(Some(true), |n| self.boolean(n, &sub("lockfiles")));
        let image = fields
            .get("image")
            .map_or(Some(false), |n| self.boolean(n, &sub("image")));
        let allow = match fields.get("allow") {
            Some(n) => self.allow_entries(n, &sub("allow")),
            None => Some(Vec::new()),
        };
        Some(ScanSpec {
            fail_on: fail_on?,
            lockfiles: lockfiles?,
            image: image?,
            allow: allow?,
        })
    }

    fn severity(&mut self, node: &Node, path: &str) -> Option<VulnSeverity> {
        let value = self.string(node, path)?;
        self.keyword(
            (node.pos, path),
            &value,
            "severity",
            &[
                ("critical", VulnSeverity::Critical),
                ("high", VulnSeverity::High),
                ("medium", VulnSeverity::Medium),
                ("low", VulnSeverity::Low),
            ],
            format!("use {}", list(FAIL_ON_VALUES.iter().copied())),
        )
    }

    /// `allow:` entries, each with an advisory id, a reason and an expiry date; ids unique.
    fn allow_entries(&mut self, node: &Node, path: &str) -> Option<Vec<AllowEntry>> {
        let items = self.items(node, path, "a list of accepted advisories")?;
        let mut ok = true;
        let mut out: Vec<AllowEntry> = Vec::new();
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(fields) = self.fields(
                item,
                item.pos,
                &item_path,
                ALLOW_FIELDS,
                &["id", "reason", "expires"],
            ) else {
                ok = false;
                continue;
            };
            let sub = |f: &str| format!("{item_path}.{f}");
            let id = fields.get("id").and_then(|n| {
                let id = self.string(n, &sub("id"))?;
                if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    self.error(
                        n.pos,
                        &sub("id"),
                        format!("invalid advisory id `{id}`"),
                        Some(
                            "give the advisory's id as the database names it, e.g. `RUSTSEC-2023-0071` or `GHSA-xxxx-xxxx-xxxx`"
                                .into(),
                        ),
                    );
                    return None;
                }
                if !seen.insert(id.clone()) {
                    self.error(
                        n.pos,
                        &sub("id"),
                        format!("advisory `{id}` is allowed twice"),
                        Some("list each advisory once".into()),
                    );
                    return None;
                }
                Some(id)
            });
            let reason = fields.get("reason").and_then(|n| {
                let reason = self.string(n, &sub("reason"))?;
                if reason.trim().is_empty() {
                    self.error(
                        n.pos,
                        &sub("reason"),
                        "`reason` is empty",
                        Some(
                            "say why the finding is accepted, e.g. `the vulnerable function is never called`"
                                .into(),
                        ),
                    );
                    return None;
                }
                Some(reason.trim().to_owned())
            });
            let expires = fields
                .get("expires")
                .and_then(|n| self.date(n, &sub("expires")));
            match (id, reason, expires) {
                (Some(id), Some(reason), Some(expires)) => out.push(AllowEntry {
                    id,
                    reason,
                    expires,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A date written `YYYY-MM-DD`.
    fn date(&mut self, node: &Node, path: &str) -> Option<Date> {
        let hint = Some(
            "write the last day the entry applies as `YYYY-MM-DD`, e.g. `2026-12-31`".to_owned(),
        );
        let Value::Str(text) = &node.value else {
            let found = node.scalar_text(self.source).unwrap_or_default();
            self.error(
                node.pos,
                path,
                format!("expected a date such as `2026-12-31`, found `{found}`"),
                hint,
            );
            return None;
        };
        match parse_date(text) {
            Some(d) => Some(d),
            None => {
                self.error(node.pos, path, format!("invalid date `{text}`"), hint);
                None
            }
        }
    }

    /// `deploy.runtime`.
    pub(super) fn runtime_name(&mut self, node: &Node, path: &str) -> Option<bool> {
        let value = self.string(node, path)?;
        self.keyword(
            (node.pos, path),
            &value,
            "runtime",
            &[("process", false), ("docker", true)],
            format!("use {}", list(RUNTIME_VALUES.iter().copied())),
        )
    }

    /// `deploy.runtime` and `deploy.image` resolved with the service's image build, if any.
    /// `image` is the (key, value) of `deploy.image`.
    pub(super) fn runtime(
        &mut self,
        runtime: Option<&Node>,
        image: Option<(&Node, &Node)>,
        path: &str,
        build_step: Option<&str>,
    ) -> Option<RuntimeSpec> {
        let docker = match runtime {
            Some(n) => self.runtime_name(n, &format!("{path}.runtime")),
            None => Some(false),
        };
        let named = match image {
            Some((_, value)) => self.image_ref(value, &format!("{path}.image")).map(Some),
            None => Some(None),
        };
        let (docker, named) = (docker?, named?);
        if let Some((key, _)) = image {
            if !docker {
                self.error(
                    key.pos,
                    &format!("{path}.image"),
                    "`image` needs `runtime: docker`",
                    Some(
                        "add `runtime: docker` to run instances as containers of this image, or remove `image` to run the release as processes"
                            .into(),
                    ),
                );
                return None;
            }
            if let Some(step) = build_step {
                self.error(
                    key.pos,
                    &format!("{path}.image"),
                    format!("the service builds its own image in step `{step}`, which `image` would replace"),
                    Some("remove `image` to run the built image".into()),
                );
                return None;
            }
        }
        if !docker {
            return Some(RuntimeSpec::Process);
        }
        let image = match (named, build_step) {
            (Some(named), _) => ContainerImage::Named(named),
            (None, Some(step)) => ContainerImage::Built {
                step: step.to_owned(),
            },
            (None, None) => ContainerImage::ServerDefault,
        };
        Some(RuntimeSpec::Docker { image })
    }

    /// `deploy.resources`.
    pub(super) fn resources(&mut self, node: &Node, anchor: Pos, path: &str) -> Option<Resources> {
        let fields = self.fields(node, anchor, path, RESOURCES_FIELDS, &[])?;
        let cpus = match fields.get("cpus") {
            Some(n) => self.cpus(n, &format!("{path}.cpus")).map(Some),
            None => Some(None),
        };
        let memory_bytes = match fields.get("memory") {
            Some(n) => self.memory(n, &format!("{path}.memory")).map(Some),
            None => Some(None),
        };
        Some(Resources {
            cpus: cpus?,
            memory_bytes: memory_bytes?,
        })
    }

    fn cpus(&mut self, node: &Node, path: &str) -> Option<f64> {
        let value = match node.value {
            Value::Int(n) => n as f64,
            Value::Float(f) => f,
            _ => {
                self.wrong_type(node, path, "a number of CPUs such as `0.5` or `2`");
                return None;
            }
        };
        if value.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&value) {
            return Some(value);
        }
        let text = node.scalar_text(self.source).unwrap_or_default();
        self.error(
            node.pos,
            path,
            format!("cpus {text} is out of range"),
            Some("give 0.01 to 64 CPUs, e.g. `0.5` for half a core".into()),
        );
        None
    }

    fn memory(&mut self, node: &Node, path: &str) -> Option<u64> {
        let hint = "write a whole number with a unit, e.g. `256Mi` or `1Gi` (`Ki`, `Mi`, `Gi` are powers of 1024; `K`, `M`, `G` of 1000)";
        let bytes = match &node.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => parse_memory(s),
            _ => {
                self.wrong_type(node, path, "a memory size such as `256Mi`");
                return None;
            }
        };
        let text = node.scalar_text(self.source).unwrap_or_default();
        match bytes {
            Some(b) if (MIN_MEMORY..=MAX_MEMORY).contains(&b) => Some(b),
            Some(_) => {
                self.error(
                    node.pos,
                    path,
                    format!("memory `{text}` is out of range"),
                    Some(
                        "give 6Mi to 1024Gi, e.g. `256Mi`; a number without a unit is bytes".into(),
                    ),
                );
                None
            }
            None => {
                self.error(
                    node.pos,
                    path,
                    format!("invalid memory size `{text}`"),
                    Some(hint.into()),
                );
                None
            }
        }
    }
}

/// True if step `from` needs step `to`, directly or through other steps.
fn needs_transitively(steps: &[Step], from: &str, to: &str) -> bool {
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(name) = stack.pop() {
        if !seen.insert(name) {
            continue;
        }
        let Some(step) = steps.iter().find(|s| s.name == name) else {
            continue;
        };
        for need in &step.needs {
            if need == to {
                return true;
            }
            stack.push(need);
        }
    }
    false
}

/// Docker label keys: printable, no blanks or `=`; `sluice.` is reserved.
fn check_label_key(key: &str) -> Result<(), (String, String)> {
    if key.starts_with("sluice.") {
        return Err((
            format!("label `{key}` is reserved"),
            "sluice sets the labels starting with `sluice.` itself (commit, release); choose another key, e.g. `org.opencontainers.image.source`".into(),
        ));
    }
    if key.is_empty()
        || key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=')
    {
        return Err((
            format!("invalid label key `{key}`"),
            "use a key without spaces or `=`, e.g. `org.opencontainers.image.source`".into(),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD`, exactly.
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|s| s.iter().all(u8::is_ascii_digit))
            .and_then(|_| text.get(r)?.parse::<u16>().ok())
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let month = u8::try_from(digits(5..7)?).ok()?;
    let day = u8::try_from(digits(8..10)?).ok()?;
    Date::new(digits(0..4)?, month, day)
}

/// `256Mi`, `1Gi`, `512M`, `1048576`: a whole number with an optional unit.
pub(crate) fn parse_memory(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let d = parse_date("2026-12-31").unwrap();
        assert_eq!(d.to_string(), "2026-12-31");
        assert_eq!(parse_date("1970-01-01").unwrap().days_since_unix_epoch(), 0);
        assert_eq!(
            parse_date("2024-03-01").unwrap().days_since_unix_epoch(),
            19_783
        );
        assert!(parse_date("2024-02-29").is_some());
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "+026-01-01",
            "1969-12-31",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert!(parse_date("2026-01-02") > parse_date("2026-01-01"));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("256Mi"), Some(256 << 20));
        assert_eq!(parse_memory("1Gi"), Some(1 << 30));
        assert_eq!(parse_memory("512M"), Some(512_000_000));
        assert_eq!(parse_memory("64Ki"), Some(65_536));
        assert_eq!(parse_memory("7000000"), Some(7_000_000));
        for bad in [
            "",
            "Mi",
            "1.5Gi",
            "256mi",
            "256 Mi",
            "-1Mi",
            "1Ti",
            "99999999999999999999",
        ] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }
}
