//! Validation of `autoscale` (at the service level of `deploy` and per environment): the
//! instance range, the CPU and memory targets, the timing of evaluations and scale actions,
//! and that a written `replicas` (the starting count) lies within the range.

use std::time::Duration;

use crate::Autoscale;
use crate::node::{Node, Pos, Value};
use crate::schema::AUTOSCALE_FIELDS;

use super::Validator;

/// Most instances (the same limit as `replicas`).
const MAX_INSTANCES: i128 = 64;
/// Default time between evaluations (the Kubernetes HPA's sync period).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default least time between two scale-outs, and before a scale-in.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// Default scale-in stabilisation window (the Kubernetes HPA's default).
const DEFAULT_STABILIZATION: Duration = Duration::from_secs(5 * 60);

/// Where a `replicas` value was written, for the check against the autoscale range.
#[derive(Clone, Copy)]
pub(super) struct WrittenReplicas {
    pub value: u32,
    pub pos: Pos,
    /// Written at the service level (so reported with its line when an environment's
    /// autoscale range excludes it).
    pub service_level: bool,
}

impl Validator<'_> {
    /// `autoscale:` settings; `Some(None)` for `autoscale: false` (only where `allow_off`).
    /// `memory_limit` says whether `deploy.resources.memory` is set (a memory target is
    /// relative to it).
    pub(super) fn autoscale(
        &mut self,
        node: &Node,
        anchor: Pos,
        path: &str,
        memory_limit: bool,
        allow_off: bool,
    ) -> Option<Option<Autoscale>> {
        match node.value {
            Value::Bool(false) if allow_off => return Some(None),
            Value::Bool(b) => {
                let hint = if allow_off {
                    "give the settings, e.g. `autoscale: {max: 10, cpu: 70%}`, or `false` to turn off the service's autoscaling here"
                } else {
                    "give the settings, e.g. `autoscale: {max: 10, cpu: 70%}`, or leave `autoscale` out"
                };
                self.error(
                    node.pos,
                    path,
                    format!(
                        "expected a mapping with `max` and a `cpu` or `memory` target, found `{b}`"
                    ),
                    Some(hint.into()),
                );
                return None;
            }
            _ => {}
        }
        let fields = self.fields(node, anchor, path, AUTOSCALE_FIELDS, &["max"])?;
        let sub = |f: &str| format!("{path}.{f}");
        let count = |this: &mut Self, field: &str| {
            fields.get(field).map(|n| {
                this.count(
                    n,
                    &format!("{path}.{field}"),
                    1..=MAX_INSTANCES,
                    "use 1 to 64 instances",
                )
            })
        };
        let min = count(self, "min").unwrap_or(Some(1));
        let max = count(self, "max").flatten();
        let scale_up_step = count(self, "scale_up_step").map_or(Some(None), |s| s.map(Some));
        let cpu = fields
            .get("cpu")
            .map_or(Some(None), |n| self.percent(n, &sub("cpu")).map(Some));
        let memory = match fields.entry("memory") {
            Some((key, value)) => {
                let p = self.percent(value, &sub("memory"));
                if p.is_some() && !memory_limit {
                    self.error(
                        key.pos,
                        &sub("memory"),
                        "a memory target needs `deploy.resources.memory`: utilisation is measured against it",
                        Some("add e.g. `resources: {memory: 256Mi}` to `deploy`, or remove `memory`".into()),
                    );
                    None
                } else {
                    p.map(Some)
                }
            }
            None => Some(None),
        };
        let duration = |this: &mut Self, field: &str, default: Duration, zero_ok: bool| {
            fields.get(field).map_or(Some(default), |n| {
                this.duration(n, &format!("{path}.{field}"), zero_ok)
            })
        };
        let interval = duration(self, "interval", DEFAULT_INTERVAL, false);
        let cooldown = duration(self, "cooldown", DEFAULT_COOLDOWN, true);
        let stabilization = duration(self, "stabilization", DEFAULT_STABILIZATION, true);
        let mut ok = true;
        if fields.get("cpu").is_none() && fields.get("memory").is_none() {
            self.error(
                anchor,
                path,
                "`autoscale` needs a `cpu` or `memory` target",
                Some("add e.g. `cpu: 70%` (average utilisation to keep the instances at)".into()),
            );
            ok = false;
        }
        let (min, max) = (min?, max?);
        if min > max {
            let pos = fields.get("min").map_or(anchor, |n| n.pos);
            self.error(
                pos,
                &sub("min"),
                format!("min {min} is above max {max}"),
                Some("`min` must not be above `max`".into()),
            );
            ok = false;
        }
        let settings = Autoscale {
            min,
            max,
            cpu_percent: cpu?,
            memory_percent: memory?,
            interval: interval?,
            cooldown: cooldown?,
            stabilization: stabilization?,
            scale_up_step: scale_up_step?,
        };
        ok.then_some(Some(settings))
    }

    /// A utilisation target: `70%` or `70`, 1 to 100.
    fn percent(&mut self, node: &Node, path: &str) -> Option<u32> {
        let what = path.rsplit('.').next().unwrap_or(path);
        let hint =
            "give the target average utilisation as a whole percentage from 1% to 100%, e.g. `70%`";
        let number = match &node.value {
            Value::Int(n) => Some(*n),
            Value::Str(s) => s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
                .and_then(|d| d.parse::<i128>().ok()),
            _ => None,
        };
        let text = node.scalar_text(self.source).unwrap_or_default();
        match number {
            Some(n) if (1..=100).contains(&n) => u32::try_from(n).ok(),
            Some(_) => {
                self.error(
                    node.pos,
                    path,
                    format!("{what} target {text} is out of range"),
                    Some(hint.into()),
                );
                None
            }
            None if matches!(node.value, Value::Seq(_) | Value::Map(_) | Value::Null) => {
                self.wrong_type(node, path, "a percentage such as `70%`");
                None
            }
            None => {
                self.error(
                    node.pos,
                    path,
                    format!("invalid {what} target `{text}`"),
                    Some(hint.into()),
                );
                None
            }
        }
    }

    /// With autoscaling, a written `replicas` is the starting count and must lie within
    /// `min..=max`. `anchor` is where a service-level value is reported for an environment
    /// (its `autoscale` or its key).
    pub(super) fn check_start_replicas(
        &mut self,
        replicas: WrittenReplicas,
        autoscale: &Autoscale,
        anchor: Pos,
        path: &str,
    ) -> bool {
        let (min, max) = (autoscale.min, autoscale.max);
        if (min..=max).contains(&replicas.value) {
            return true;
        }
        let n = replicas.value;
        if replicas.service_level && anchor != replicas.pos {
            self.error(
                anchor,
                path,
                format!(
                    "the service's replicas {n} (line {}) is outside the autoscale range {min} to {max}",
                    replicas.pos.line
                ),
                Some(format!(
                    "with autoscaling `replicas` is the starting count; set `replicas` from {min} to {max} in this environment"
                )),
            );
        } else {
            self.error(
                replicas.pos,
                path,
                format!("replicas {n} is outside the autoscale range {min} to {max}"),
                Some(format!(
                    "with autoscaling `replicas` is the starting count; use {min} to {max}, or leave it out to start at `min`"
                )),
            );
        }
        false
    }
}
