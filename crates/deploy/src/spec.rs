//! What a deployment is asked to do: the strategy, its parameters and the rollback limits.
//!
//! These types are plain data (serde) so a [`crate::Deployment`] can persist them with its
//! state. [`DeploySpec::validate`] is the only place that judges them; the state machine
//! relies on a validated spec and never panics on one that is not.

use serde::{Deserialize, Serialize};

/// How the candidate release replaces the stable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace instances in batches; traffic follows readiness.
    Rolling(RollingParams),
    /// Start a full green pool, switch all traffic at once, keep blue warm for a while.
    BlueGreen(BlueGreenParams),
    /// Shift traffic in weighted steps, judging the candidate's figures at each step.
    Canary(CanaryParams),
}

/// Rolling parameters, counted in instances (as Kubernetes' `maxSurge` / `maxUnavailable`).
///
/// The machine never asks for more than `replicas + max_surge` instances in total, and never
/// stops a ready instance if that could leave fewer than `replicas - max_unavailable` ready
/// instances (both versions counted). At least one of the two must be non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingParams {
    /// Instances allowed above `replicas` while replacing.
    pub max_surge: u32,
    /// Ready instances allowed below `replicas` while replacing.
    pub max_unavailable: u32,
}

/// Blue-green parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenParams {
    /// How long blue (the old stable pool) keeps running after the switch, so that a
    /// rollback inside this window is a traffic switch and needs no start. 0 stops blue at
    /// the switch.
    pub keep_warm_ms: u64,
    /// Expose green on the preview address while it starts and until it is promoted.
    pub preview: bool,
    /// Switch as soon as green is fully ready. When false and `preview` is set, the machine
    /// waits for a [`crate::Command::Promote`] before switching (without preview there is
    /// nothing to look at, so it switches when ready either way).
    pub auto_promote: bool,
}

/// Canary parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryParams {
    /// The steps, in order; weights must not decrease. The last step is usually 100; when it
    /// is not, passing it promotes the candidate to 100% all the same.
    pub steps: Vec<CanaryStep>,
    /// The thresholds every step is judged against.
    pub analysis: Analysis,
    /// A group of users always routed to the candidate while the steps run (weight 1..=99).
    pub sticky: Option<StickyGroup>,
}

/// One canary step: route `weight` percent of traffic to the candidate for `pause_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    /// Candidate share of requests, 1..=100.
    pub weight: u8,
    /// How long the step lasts before it is judged.
    pub pause_ms: u64,
}

/// Requests that carry this header or cookie value go to the candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StickyGroup {
    /// A request header, e.g. `x-canary: yes`.
    Header {
        /// Header name (case-insensitive on the wire).
        name: String,
        /// The exact value that selects the candidate.
        value: String,
    },
    /// A cookie, e.g. `beta=1`.
    Cookie {
        /// Cookie name.
        name: String,
        /// The exact value that selects the candidate.
        value: String,
    },
}

/// Thresholds a canary step is judged against, over the proxy's figures for the candidate
/// in the current analysis window (the window restarts at every step).
///
/// A window *fails* when the candidate's 5xx rate is above `max_error_rate`, or its latency
/// at `latency_quantile` is above `max_latency_ms`. Both are absolute thresholds; the stable
/// version's figures are recorded next to them for comparison but never decide.
/// A window with fewer than `min_requests` candidate requests cannot be judged and never
/// fails or passes on its figures; see [`InsufficientPolicy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Largest acceptable share of 5xx responses, 0.0..=1.0 (e.g. 0.05).
    pub max_error_rate: f64,
    /// Largest acceptable latency at `latency_quantile`, in milliseconds; `None` skips the
    /// latency check.
    pub max_latency_ms: Option<f64>,
    /// The quantile the proxy estimates (e.g. 0.99); recorded with the figures.
    pub latency_quantile: f64,
    /// Fewest candidate requests in a window for its figures to count.
    pub min_requests: u64,
    /// What to do when a step ends with too few requests to judge.
    pub insufficient_traffic: InsufficientPolicy,
    /// How long a step may be extended waiting for traffic (or for figures at all).
    pub max_wait_ms: u64,
    /// How often the figures are checked during a step (0: at every observation). A failing
    /// check rolls back at once, without waiting for the end of the step.
    pub interval_ms: u64,
}

/// What happens when a canary step ends with fewer than `min_requests` candidate requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsufficientPolicy {
    /// Pass the step at once (trust the candidate).
    Pass,
    /// Roll back at once.
    Fail,
    /// Extend the step until enough requests arrived (then judge them), for at most
    /// `max_wait_ms` after the step's end; then pass.
    WaitThenPass,
    /// As `WaitThenPass`, but roll back when the wait runs out.
    WaitThenFail,
}

/// Everything a deployment needs to know up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// Instances of the service when no deployment is running.
    pub replicas: u32,
    /// How the candidate replaces the stable release.
    pub strategy: Strategy,
    /// Candidate instances the machine asks for must be ready within this time, and a phase
    /// that waits on the runtime must make progress within it; see the crate docs.
    pub progress_deadline_ms: u64,
    /// Limit for both the candidate's failed starts and its restarts: one more rolls back.
    pub max_restarts: u32,
}

/// Why a [`DeploySpec`] cannot be deployed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Zero replicas.
    #[error("replicas is 0; a deployment needs at least 1 instance")]
    ZeroReplicas,
    /// Zero progress deadline.
    #[error("progress_deadline_ms is 0; give instances time to start (e.g. 60000)")]
    ZeroDeadline,
    /// Rolling with neither surge nor unavailability.
    #[error(
        "max_surge and max_unavailable are both 0, so no instance could ever be replaced; set one of them to at least 1"
    )]
    RollingCannotProgress,
    /// Canary without steps.
    #[error("canary has no steps; add at least one, e.g. weight 100")]
    NoCanarySteps,
    /// A canary weight outside 1..=100.
    #[error("canary step {step} has weight {weight}; weights must be 1 to 100")]
    StepWeight {
        /// Index of the step.
        step: usize,
        /// The weight given.
        weight: u8,
    },
    /// A canary weight below the one before it.
    #[error(
        "canary step {step} has weight {weight}, less than the {previous} before it; weights must not decrease"
    )]
    DecreasingWeight {
        /// Index of the step.
        step: usize,
        /// The weight given.
        weight: u8,
        /// The previous step's weight.
        previous: u8,
    },
    /// A number outside its range.
    #[error("{field} is {value}; it must be {expected}")]
    OutOfRange {
        /// The field, e.g. `analysis.max_error_rate`.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A sticky group without a name.
    #[error("the sticky group has an empty name; name the header or cookie that selects users")]
    EmptySticky,
}

impl DeploySpec {
    /// Checks every rule the state machine relies on.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.replicas == 0 {
            return Err(SpecError::ZeroReplicas);
        }
        if self.progress_deadline_ms == 0 {
            return Err(SpecError::ZeroDeadline);
        }
        match &self.strategy {
            Strategy::Rolling(p) => {
                if p.max_surge == 0 && p.max_unavailable == 0 {
                    return Err(SpecError::RollingCannotProgress);
                }
            }
            Strategy::BlueGreen(_) => {}
            Strategy::Canary(c) => c.validate()?,
        }
        Ok(())
    }
}

impl CanaryParams {
    fn validate(&self) -> Result<(), SpecError> {
        if self.steps.is_empty() {
            return Err(SpecError::NoCanarySteps);
        }
        let mut previous = 0u8;
        for (step, s) in self.steps.iter().enumerate() {
            if s.weight == 0 || s.weight > 100 {
                return Err(SpecError::StepWeight {
                    step,
                    weight: s.weight,
                });
            }
            if s.weight < previous {
                return Err(SpecError::DecreasingWeight {
                    step,
                    weight: s.weight,
                    previous,
                });
            }
            previous = s.weight;
        }
        let a = &self.analysis;
        if !(a.max_error_rate.is_finite() && (0.0..=1.0).contains(&a.max_error_rate)) {
            return Err(SpecError::OutOfRange {
                field: "analysis.max_error_rate",
                value: a.max_error_rate,
                expected: "between 0 and 1 (e.g. 0.05)",
            });
        }
        if !(a.latency_quantile.is_finite()
            && a.latency_quantile > 0.0
            && a.latency_quantile <= 1.0)
        {
            return Err(SpecError::OutOfRange {
                field: "analysis.latency_quantile",
                value: a.latency_quantile,
                expected: "above 0 and at most 1 (e.g. 0.99)",
            });
        }
        if let Some(l) = a.max_latency_ms
            && !(l.is_finite() && l > 0.0)
        {
            return Err(SpecError::OutOfRange {
                field: "analysis.max_latency_ms",
                value: l,
                expected: "a positive number of milliseconds",
            });
        }
        if let Some(StickyGroup::Header { name, .. } | StickyGroup::Cookie { name, .. }) =
            &self.sticky
            && name.trim().is_empty()
        {
            return Err(SpecError::EmptySticky);
        }
        Ok(())
    }
}
