//! Autoscaling of one service in one environment, as a pure state machine: the control plane
//! measures its instances and calls [`Autoscaler::observe`]; the answer is the number of
//! instances to run, with the figures behind it. No IO, no clock (time is given as epoch
//! milliseconds), and the state is serde JSON so a restarted server resumes it.
//!
//! The rules follow the Kubernetes HorizontalPodAutoscaler, with the cooldowns of ECS target
//! tracking:
//!
//! - **Recommendation.** Per metric, utilisation is usage divided by the reference (the
//!   instance's CPU limit, or one core; its memory limit), averaged over the ready instances:
//!   `recommended = ceil(ready × utilisation ÷ target)`. Within the tolerance band
//!   (default 10%) of the target the recommendation is the current count. The larger of the
//!   CPU and memory recommendations wins.
//! - **Unready and unmeasured instances** (HPA's rules): an instance that is not ready yet
//!   never counts as idle: it is left out, except when scaling out, where it counts as 0%
//!   (damping the scale-out, as it will take load soon). An instance without a usable sample
//!   counts as exactly on target when scaling in and as 0% when scaling out. If filling them
//!   in flips the direction, or lands inside the tolerance band, nothing changes.
//! - **Scale-out** happens at once, by at most `scale_up_step`, and not within `cooldown` of
//!   the previous scale-out (new instances need time to start and take load).
//! - **Scale-in** goes only down to the highest recommendation seen over the stabilisation
//!   window (so brief dips never shrink the fleet), and not within `cooldown` of any scale
//!   action. A scale-out may follow a scale-in at once: availability first, as in ECS.
//!   The first evaluation counts the current size as a recommendation, so a new (or
//!   re-created) autoscaler never scales in before one window has passed.
//! - **Bounds.** The result is always within `min..=max`; a current count outside the bounds
//!   is brought back into them at the next evaluation, whatever the samples and timers say.
//! - **Evaluation interval.** `observe` evaluates at most once per `interval_ms`; calls in
//!   between return `None` and change nothing, so the control plane may call it on every
//!   tick.
//!
//! `observe` returns a [`ScaleDecision`] when the count should change, and also when a
//! change is wanted but held back (by the cooldown, the stabilisation window or a bound): a
//! hold is reported once per reason until the wanted change goes away or happens, so the
//! event log explains why the fleet did not move without repeating it every interval.
//! Architecture invariant: no IO, no async, no clock; it knows nothing of runtimes or the spec.

use std::collections::VecDeque;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The tolerance of the Kubernetes HPA: no change while utilisation is within 10% of target.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// What the autoscaler aims for, and how fast it may move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalePolicy {
    /// Fewest instances, at least 1.
    pub min: u32,
    /// Most instances, at least `min`.
    pub max: u32,
    /// Target average CPU utilisation, in percent of `cpu_reference_cores`.
    pub cpu_target_percent: Option<f64>,
    /// Target average memory utilisation, in percent of `memory_reference_bytes`.
    pub memory_target_percent: Option<f64>,
    /// The CPU usage, in cores, that is 100% utilisation: the instance's CPU limit, or 1.0
    /// when it has none.
    pub cpu_reference_cores: f64,
    /// The memory usage, in bytes, that is 100% utilisation (the instance's memory limit);
    /// needed for a memory target.
    pub memory_reference_bytes: Option<u64>,
    /// Least time between two evaluations.
    pub interval_ms: u64,
    /// Least time between two scale-outs, and between any scale action and a scale-in.
    pub cooldown_ms: u64,
    /// Scale-in goes only down to the highest recommendation over this window.
    pub stabilization_ms: u64,
    /// Most instances added by one scale-out; `None`: up to the recommendation.
    pub scale_up_step: Option<u32>,
    /// Relative band around the target without action, 0 to below 1 (HPA: 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

/// Why an [`AutoscalePolicy`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoscaleError {
    /// `min` is 0 or above `max`.
    #[error("autoscale min is {min} and max is {max}; min must be at least 1 and not above max")]
    Bounds {
        /// The lower bound given.
        min: u32,
        /// The upper bound given.
        max: u32,
    },
    /// Neither a CPU nor a memory target.
    #[error("autoscale has no target; give a CPU or memory utilisation target")]
    NoTarget,
    /// A number outside its range.
    #[error("autoscale {field} is {value}; it must be {expected}")]
    OutOfRange {
        /// The field, e.g. `cpu_target_percent`.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A memory target without a reference.
    #[error(
        "autoscale has a memory target but no memory reference; give the instances' memory limit"
    )]
    NoMemoryReference,
    /// A scale-up step of 0 instances.
    #[error("autoscale scale_up_step is 0; allow at least 1 instance per scale-out, or no limit")]
    ZeroStep,
    /// A zero evaluation interval.
    #[error("autoscale interval_ms is 0; evaluate at most every few seconds (e.g. 15000)")]
    ZeroInterval,
}

impl AutoscalePolicy {
    /// Checks every rule the autoscaler relies on.
    pub fn validate(&self) -> Result<(), AutoscaleError> {
        if self.min == 0 || self.min > self.max {
            return Err(AutoscaleError::Bounds {
                min: self.min,
                max: self.max,
            });
        }
        if self.cpu_target_percent.is_none() && self.memory_target_percent.is_none() {
            return Err(AutoscaleError::NoTarget);
        }
        let positive = |field, value: f64, expected| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(AutoscaleError::OutOfRange {
                    field,
                    value,
                    expected,
                })
            }
        };
        if let Some(t) = self.cpu_target_percent {
            positive("cpu_target_percent", t, "a positive percentage (e.g. 70)")?;
        }
        if let Some(t) = self.memory_target_percent {
            positive(
                "memory_target_percent",
                t,
                "a positive percentage (e.g. 80)",
            )?;
            if self.memory_reference_bytes.is_none_or(|b| b == 0) {
                return Err(AutoscaleError::NoMemoryReference);
            }
        }
        positive(
            "cpu_reference_cores",
            self.cpu_reference_cores,
            "a positive number of cores (e.g. 0.5)",
        )?;
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return Err(AutoscaleError::OutOfRange {
                field: "tolerance",
                value: self.tolerance,
                expected: "at least 0 and below 1 (e.g. 0.1)",
            });
        }
        if self.interval_ms == 0 {
            return Err(AutoscaleError::ZeroInterval);
        }
        if self.scale_up_step == Some(0) {
            return Err(AutoscaleError::ZeroStep);
        }
        Ok(())
    }
}

/// One instance's measured usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// The instance's id (a sample per id counts; later duplicates are ignored).
    pub id: String,
    /// CPU in use, in cores (1.0 = one core busy), averaged since the previous sample. A
    /// value that is not a finite non-negative number counts as no sample.
    pub cpu_cores: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// The instance passes its readiness check (gets traffic). Starting instances are not
    /// ready; their usage is not taken as the fleet's.
    pub ready: bool,
}

/// The direction of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleAction {
    /// Start instances: `desired > current`.
    Out,
    /// Stop instances (drained first): `desired < current`.
    In,
    /// A change is wanted but held back by [`ScaleDecision::limited_by`]: `desired == current`.
    Hold,
    /// Utilisation is on target (within the tolerance): nothing to do. Only seen in
    /// [`Autoscaler::last_evaluation`]; `observe` never returns it.
    Steady,
}

/// The rule that limited a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The lower bound `min`.
    Min,
    /// The upper bound `max`.
    Max,
    /// Too soon after the previous scale action.
    Cooldown,
    /// A higher recommendation within the stabilisation window.
    Stabilization,
    /// `scale_up_step`.
    StepLimit,
}

impl Limit {
    /// The stable string form (`min`, `max`, `cooldown`, `stabilization`, `step_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Min => "min",
            Limit::Max => "max",
            Limit::Cooldown => "cooldown",
            Limit::Stabilization => "stabilization",
            Limit::StepLimit => "step_limit",
        }
    }
}

/// One metric's figures in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricFigures {
    /// Average utilisation over the ready, measured instances, in percent of the reference.
    pub utilization_percent: f64,
    /// The target, in percent.
    pub target_percent: f64,
    /// The instances this metric alone asks for.
    pub recommended: u32,
}

/// A decision with the figures behind it; record it as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// When it was taken.
    pub at_ms: u64,
    /// Out, in, or hold.
    pub action: ScaleAction,
    /// Instances before.
    pub current: u32,
    /// What the metrics ask for (the larger of CPU and memory), before any limit; the
    /// current count when the count was only brought back within bounds.
    pub recommended: u32,
    /// Instances to run now (`current` for a hold).
    pub desired: u32,
    /// The rule that limited `desired` (or held it), if any.
    pub limited_by: Option<Limit>,
    /// The highest recommendation over the stabilisation window (what a scale-in may go
    /// down to), when the metrics asked for fewer instances.
    pub stabilized: Option<u32>,
    /// CPU figures, when there is a CPU target and samples.
    pub cpu: Option<MetricFigures>,
    /// Memory figures, when there is a memory target and samples.
    pub memory: Option<MetricFigures>,
    /// Ready instances with a sample.
    pub ready: u32,
    /// Samples of instances that are not ready (starting).
    pub not_ready: u32,
    /// Instances of `current` without a usable sample.
    pub missing: u32,
    /// The decision in a sentence.
    pub reason: String,
}

impl ScaleDecision {
    /// The event kind: `autoscale.scaled_out`, `autoscale.scaled_in`, `autoscale.held` or
    /// `autoscale.steady`.
    pub fn kind(&self) -> &'static str {
        match self.action {
            ScaleAction::Out => "autoscale.scaled_out",
            ScaleAction::In => "autoscale.scaled_in",
            ScaleAction::Hold => "autoscale.held",
            ScaleAction::Steady => "autoscale.steady",
        }
    }
}

/// A recommendation kept for the stabilisation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Recommendation {
    at_ms: u64,
    replicas: u32,
}

/// The autoscaler of one service in one environment. Serde JSON round trips it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Autoscaler {
    policy: AutoscalePolicy,
    /// The latest time seen (time never moves back).
    now_ms: Option<u64>,
    /// No evaluation before this time.
    next_eval_ms: Option<u64>,
    /// Recommendations of the stabilisation window, as a sliding-window maximum: times
    /// increase and values strictly decrease from front to back, so the front is the
    /// window's highest and the deque holds at most `max + 1` entries.
    window: VecDeque<Recommendation>,
    last_scale_out_ms: Option<u64>,
    last_scale_in_ms: Option<u64>,
    /// The hold reported last, so it is not repeated every interval.
    reported_hold: Option<(ScaleAction, Limit)>,
    /// The latest evaluation, whatever its outcome.
    last: Option<ScaleDecision>,
}

/// What the samples say, per metric.
struct Measured {
    ready: u32,
    not_ready: u32,
    missing: u32,
    cpu: Option<MetricFigures>,
    memory: Option<MetricFigures>,
}

impl Autoscaler {
    /// An autoscaler with no history: the first [`Autoscaler::observe`] evaluates at once.
    pub fn new(policy: AutoscalePolicy) -> Result<Self, AutoscaleError> {
        policy.validate()?;
        Ok(Autoscaler {
            policy,
            now_ms: None,
            next_eval_ms: None,
            window: VecDeque::new(),
            last_scale_out_ms: None,
            last_scale_in_ms: None,
            reported_hold: None,
            last: None,
        })
    }

    /// The policy in effect.
    pub fn policy(&self) -> &AutoscalePolicy {
        &self.policy
    }

    /// Replaces the policy (a changed `sluice.yml`), keeping the window and the timers.
    pub fn set_policy(&mut self, policy: AutoscalePolicy) -> Result<(), AutoscaleError> {
        policy.validate()?;
        self.policy = policy;
        self.reported_hold = None;
        Ok(())
    }

    /// The latest evaluation (also when it changed nothing), for status pages.
    pub fn last_evaluation(&self) -> Option<&ScaleDecision> {
        self.last.as_ref()
    }

    /// Evaluates the samples if `interval_ms` has passed since the last evaluation.
    /// `current_replicas` is the count the control plane maintains now; `samples` are the
    /// measured instances of the serving release (one per instance; an instance without a
    /// measurement is simply left out). Returns a decision when the count should change, or
    /// when a wanted change is held back for a new reason; apply `desired` when it differs
    /// from `current`.
    pub fn observe(
        &mut self,
        now_ms: u64,
        samples: &[InstanceUsage],
        current_replicas: u32,
    ) -> Option<ScaleDecision> {
        let now = now_ms.max(self.now_ms.unwrap_or(0));
        self.now_ms = Some(now);
        if self.next_eval_ms.is_some_and(|next| now < next) {
            return None;
        }
        self.next_eval_ms = Some(now.saturating_add(self.policy.interval_ms));
        let (min, max) = (self.policy.min, self.policy.max);
        let current = current_replicas;
        if self.window.is_empty() && self.last.is_none() {
            // Whoever sized the fleet had a reason: no scale-in before one full window.
            self.remember(now, current);
        }

        // A count outside the bounds (a changed policy, a manual change) is corrected first.
        if !(min..=max).contains(&current) {
            let (desired, limit) = if current < min {
                (min, Limit::Min)
            } else {
                (max, Limit::Max)
            };
            let reason = format!(
                "{current} instances are {} {} {}; scaling to {desired}",
                if current < min { "below" } else { "above" },
                limit.as_str(),
                desired
            );
            let mut decision = self.decision(now, current, current, desired, Some(limit), None);
            decision.reason = reason;
            return self.finish(decision);
        }

        let measured = self.measure(samples, current);
        let Some(recommended) = [measured.cpu, measured.memory]
            .iter()
            .flatten()
            .map(|m| m.recommended)
            .max()
        else {
            // Nothing measured: no opinion, and nothing recorded in the window.
            return None;
        };
        self.remember(now, recommended.min(max));
        let stabilized = self.window.front().map_or(recommended, |r| r.replicas);

        let cooldown = self.policy.cooldown_ms;
        let within = |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) < cooldown);
        let (desired, limit) = if recommended > current {
            let mut desired = recommended;
            let mut limit = None;
            if let Some(step) = self.policy.scale_up_step
                && desired > current.saturating_add(step)
            {
                desired = current.saturating_add(step);
                limit = Some(Limit::StepLimit);
            }
            if desired > max {
                desired = max;
                limit = Some(Limit::Max);
            }
            if desired > current && within(self.last_scale_out_ms) {
                (current, Some(Limit::Cooldown))
            } else {
                (desired, limit)
            }
        } else if recommended < current {
            let (mut desired, mut limit) = if stabilized > recommended {
                (stabilized.min(current), Some(Limit::Stabilization))
            } else {
                (recommended, None)
            };
            if desired < min {
                desired = min;
                limit = Some(Limit::Min);
            }
            let last_action = self.last_scale_out_ms.max(self.last_scale_in_ms);
            if desired < current && within(last_action) {
                (current, Some(Limit::Cooldown))
            } else {
                (desired, limit)
            }
        } else {
            (current, None)
        };
        let mut decision =
            self.decision(now, current, recommended, desired, limit, Some(&measured));
        if recommended < current {
            decision.stabilized = Some(stabilized);
        }
        decision.reason = self.reason(&decision);
        self.finish(decision)
    }

    /// Records the decision as the latest evaluation, updates the timers and the reported
    /// hold, and says whether to return it.
    fn finish(&mut self, decision: ScaleDecision) -> Option<ScaleDecision> {
        let report = match decision.action {
            ScaleAction::Out => {
                self.last_scale_out_ms = Some(decision.at_ms);
                self.reported_hold = None;
                true
            }
            ScaleAction::In => {
                self.last_scale_in_ms = Some(decision.at_ms);
                self.reported_hold = None;
                true
            }
            ScaleAction::Hold => {
                let direction = if decision.recommended > decision.current {
                    ScaleAction::Out
                } else {
                    ScaleAction::In
                };
                let hold = decision.limited_by.map(|l| (direction, l));
                let new = hold != self.reported_hold;
                self.reported_hold = hold;
                new
            }
            ScaleAction::Steady => {
                self.reported_hold = None;
                false
            }
        };
        self.last = Some(decision.clone());
        report.then_some(decision)
    }

    /// Adds a recommendation to the sliding-window maximum and drops what left the window.
    fn remember(&mut self, now: u64, replicas: u32) {
        let window = self.policy.stabilization_ms;
        while self
            .window
            .front()
            .is_some_and(|r| r.at_ms.saturating_add(window) <= now)
        {
            self.window.pop_front();
        }
        while self.window.back().is_some_and(|r| r.replicas <= replicas) {
            self.window.pop_back();
        }
        self.window.push_back(Recommendation {
            at_ms: now,
            replicas,
        });
    }

    fn decision(
        &self,
        now: u64,
        current: u32,
        recommended: u32,
        desired: u32,
        limited_by: Option<Limit>,
        measured: Option<&Measured>,
    ) -> ScaleDecision {
        let action = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => ScaleAction::Out,
            std::cmp::Ordering::Less => ScaleAction::In,
            std::cmp::Ordering::Equal if recommended != current => ScaleAction::Hold,
            std::cmp::Ordering::Equal => ScaleAction::Steady,
        };
        ScaleDecision {
            at_ms: now,
            action,
            current,
            recommended,
            desired,
            limited_by: if action == ScaleAction::Steady {
                None
            } else {
                limited_by
            },
            stabilized: None,
            cpu: measured.and_then(|m| m.cpu),
            memory: measured.and_then(|m| m.memory),
            ready: measured.map_or(0, |m| m.ready),
            not_ready: measured.map_or(0, |m| m.not_ready),
            missing: measured.map_or(0, |m| m.missing),
            reason: String::new(),
        }
    }

    /// Utilisation and recommendation per metric.
    fn measure(&self, samples: &[InstanceUsage], current: u32) -> Measured {
        let mut seen = std::collections::HashSet::new();
        let samples: Vec<&InstanceUsage> = samples
            .iter()
            .filter(|s| seen.insert(s.id.as_str()))
            .collect();
        let missing_base = current.saturating_sub(u32::try_from(samples.len()).unwrap_or(u32::MAX));
        let not_ready = samples.iter().filter(|s| !s.ready).count();
        let p = &self.policy;
        let cpu = p.cpu_target_percent.and_then(|target| {
            let values = samples.iter().filter(|s| s.ready).map(|s| {
                (s.cpu_cores.is_finite() && s.cpu_cores >= 0.0)
                    .then(|| s.cpu_cores / p.cpu_reference_cores)
            });
            recommend(
                values,
                not_ready,
                missing_base,
                target,
                p.tolerance,
                current,
            )
        });
        let memory = p
            .memory_target_percent
            .zip(p.memory_reference_bytes)
            .and_then(|(target, reference)| {
                let values = samples
                    .iter()
                    .filter(|s| s.ready)
                    .map(|s| Some(s.memory_bytes as f64 / reference as f64));
                recommend(
                    values,
                    not_ready,
                    missing_base,
                    target,
                    p.tolerance,
                    current,
                )
            });
        let ready = samples.iter().filter(|s| s.ready).count();
        Measured {
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            not_ready: u32::try_from(not_ready).unwrap_or(u32::MAX),
            missing: missing_base,
            cpu,
            memory,
        }
    }

    fn reason(&self, d: &ScaleDecision) -> String {
        let mut text = String::new();
        let metrics: Vec<String> = [("cpu", d.cpu), ("memory", d.memory)]
            .into_iter()
            .filter_map(|(name, m)| {
                m.map(|m| {
                    format!(
                        "{name} {:.0}% (target {:.0}%)",
                        m.utilization_percent, m.target_percent
                    )
                })
            })
            .collect();
        let _ = write!(
            text,
            "{} over {} ready instance{}",
            metrics.join(" and "),
            d.ready,
            if d.ready == 1 { "" } else { "s" }
        );
        if d.not_ready > 0 || d.missing > 0 {
            let _ = write!(
                text,
                " ({} starting, {} unmeasured)",
                d.not_ready, d.missing
            );
        }
        let p = &self.policy;
        let need = |n: u32| format!("need {n}");
        let _ = match (d.action, d.limited_by) {
            (ScaleAction::Steady, _) => write!(text, ": on target with {}", d.current),
            (ScaleAction::Out, limit) => {
                let why = match limit {
                    Some(Limit::StepLimit) => format!(
                        " (at most {} more at once)",
                        p.scale_up_step.unwrap_or_default()
                    ),
                    Some(Limit::Max) => format!(" (max {})", p.max),
                    _ => String::new(),
                };
                write!(
                    text,
                    ": {}; scaling out {} -> {}{why}",
                    need(d.recommended),
                    d.current,
                    d.desired
                )
            }
            (ScaleAction::In, limit) => {
                let why = match limit {
                    Some(Limit::Stabilization) => format!(
                        " ({} were needed within the last {})",
                        d.desired,
                        secs(p.stabilization_ms)
                    ),
                    Some(Limit::Min) => format!(" (min {})", p.min),
                    _ => String::new(),
                };
                write!(
                    text,
                    ": {}; scaling in {} -> {}{why}",
                    need(d.recommended),
                    d.current,
                    d.desired
                )
            }
            (ScaleAction::Hold, limit) => {
                let why = match limit {
                    Some(Limit::Cooldown) => {
                        let last = if d.recommended > d.current {
                            self.last_scale_out_ms
                        } else {
                            self.last_scale_out_ms.max(self.last_scale_in_ms)
                        };
                        let left = last.map_or(0, |t| {
                            t.saturating_add(p.cooldown_ms).saturating_sub(d.at_ms)
                        });
                        format!("the cooldown ends in {}", secs(left))
                    }
                    Some(Limit::Stabilization) => format!(
                        "{} were needed within the last {}",
                        d.stabilized.unwrap_or(d.current),
                        secs(p.stabilization_ms)
                    ),
                    Some(Limit::Min) => format!("already at min {}", p.min),
                    Some(Limit::Max) => format!("already at max {}", p.max),
                    Some(Limit::StepLimit) | None => String::new(),
                };
                write!(
                    text,
                    ": {}; holding {}: {why}",
                    need(d.recommended),
                    d.current
                )
            }
        };
        text
    }
}

/// HPA's recommendation for one metric. `values` are the ready instances' utilisations
/// (fractions of the reference; `None` for an unusable sample, which counts as missing),
/// `not_ready` the samples of starting instances, `missing` the instances without a sample,
/// `target_percent` the target. `None` when no ready instance has a usable sample.
fn recommend(
    values: impl Iterator<Item = Option<f64>>,
    not_ready: usize,
    missing: u32,
    target_percent: f64,
    tolerance: f64,
    current: u32,
) -> Option<MetricFigures> {
    let target = target_percent / 100.0;
    let (mut sum, mut count, mut missing) = (0.0, 0usize, missing as usize);
    for v in values {
        match v {
            Some(v) => {
                sum += v;
                count += 1;
            }
            None => missing += 1,
        }
    }
    if count == 0 {
        return None;
    }
    let utilisation = sum / count as f64;
    let ratio = utilisation / target;
    let figures = |recommended: u32| MetricFigures {
        utilization_percent: utilisation * 100.0,
        target_percent,
        recommended,
    };
    let scale_up_with_unready = not_ready > 0 && ratio > 1.0;
    if !scale_up_with_unready && missing == 0 {
        if (ratio - 1.0).abs() <= tolerance {
            return Some(figures(current));
        }
        return Some(figures(ceil_u32(ratio * count as f64)));
    }
    // Fill in the unknowns against the direction of the change (HPA's rebalancing).
    let mut filled_sum = sum;
    let mut filled_count = count + missing;
    if ratio < 1.0 {
        filled_sum += missing as f64 * target;
    }
    if scale_up_with_unready {
        filled_count += not_ready;
    }
    let new_ratio = filled_sum / filled_count as f64 / target;
    if (new_ratio - 1.0).abs() <= tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Some(figures(current));
    }
    let recommended = ceil_u32(new_ratio * filled_count as f64);
    if (new_ratio < 1.0 && recommended > current) || (new_ratio > 1.0 && recommended < current) {
        return Some(figures(current));
    }
    Some(figures(recommended))
}

/// `ceil` into a `u32`, saturating (huge or non-finite figures never panic).
fn ceil_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u32::MAX as f64 {
        u32::MAX
    } else {
        x.ceil() as u32
    }
}

/// `90s`, `1.5s`.
fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
