//! The validated model the rest of sluice consumes. Plain data: no positions, defaults
//! filled in, names checked. (The parser may use its own raw types with positions.)

use std::collections::BTreeMap;
use std::time::Duration;

/// A whole `sluice.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Project name: lower-case letters, digits and `-`.
    pub project: String,
    /// Environments in file order.
    pub environments: Vec<Environment>,
    /// Services in file order.
    pub services: Vec<Service>,
    /// Incident settings, channels and alert rules.
    pub alerts: crate::Alerts,
    /// On-call schedules and escalation policies.
    pub oncall: crate::OnCall,
}

/// A deployment target fed by one branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// Name, e.g. `staging`.
    pub name: String,
    /// Pushes to this branch run pipelines for this environment.
    pub branch: String,
    /// Deploy-type actions and secrets here need the releaser role (or this environment's own
    /// pipeline).
    pub protected: bool,
    /// Approvals by other people a manual deploy here needs (0 = none).
    pub approvals: u32,
    /// How long a manual deploy here waits after it was asked for.
    pub wait_timer: Duration,
}

/// One deployable unit of the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Name, unique in the file.
    pub name: String,
    /// Glob patterns (relative to the repository root) whose changes make this service run.
    /// Empty means the whole repository.
    pub paths: Vec<String>,
    /// Steps in file order.
    pub steps: Vec<Step>,
    /// How releases of the service run; `None` means it is built and released but never
    /// deployed.
    pub deploy: Option<Deploy>,
}

impl Config {
    /// The deploy settings of `service` in environment `env`, if the service exists, has a
    /// `deploy` section and is deployed to that environment.
    pub fn deploy_target(
        &self,
        service: &str,
        env: &str,
    ) -> Option<(&Service, &Deploy, &DeployTarget)> {
        let service = self.services.iter().find(|s| s.name == service)?;
        let deploy = service.deploy.as_ref()?;
        let target = deploy.targets.iter().find(|t| t.env == env)?;
        Some((service, deploy, target))
    }
}

/// One command in a service's pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Name, unique within the service.
    pub name: String,
    /// Shell command, run with `sh -c`.
    pub run: String,
    /// Steps of the same service that must succeed first.
    pub needs: Vec<String>,
    /// Extra environment variables (service-level ones merged in, step wins).
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the checkout root; None for the root.
    pub workdir: Option<String>,
    /// Kill the step's process group after this long.
    pub timeout: Duration,
    /// What to do when it fails.
    pub retry: Retry,
    /// A failed gate blocks the release.
    pub gate: bool,
    /// JUnit XML report paths (globs, relative to the checkout root).
    pub junit: Vec<String>,
    /// Paths (globs, relative to the checkout root) packed into the service's release.
    pub artifacts: Vec<String>,
    /// Directories kept between runs, keyed on the hash of some files.
    pub cache: Vec<Cache>,
    /// Names of server-side secrets to inject as environment variables.
    pub secrets: Vec<String>,
}

/// Retry policy of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Extra attempts after the first (0 = no retry).
    pub max: u32,
    /// Retry when the command exits non-zero.
    pub on_failure: bool,
    /// Retry when the command times out.
    pub on_timeout: bool,
    /// Wait between attempts.
    pub delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max: 0,
            on_failure: true,
            on_timeout: true,
            delay: Duration::ZERO,
        }
    }
}

/// A cached set of directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Directories (relative to the checkout root) restored before and saved after the step.
    pub paths: Vec<String>,
    /// Files whose contents form the cache key (globs); the key changes when any changes.
    pub key_files: Vec<String>,
}

/// How a service's releases run: one start command, and per environment where they listen
/// and how they are rolled out.
#[derive(Debug, Clone, PartialEq)]
pub struct Deploy {
    /// Shell command, run with `sh -c` inside the unpacked release artifact; the instance's
    /// port is passed as `PORT`.
    pub start: String,
    /// Directory inside the artifact to start in (normalized, relative); None for its root.
    pub workdir: Option<String>,
    /// Time between SIGTERM and SIGKILL when an instance is stopped.
    pub stop_grace: Duration,
    /// New instances must be ready within this time or the deployment rolls back.
    pub progress_deadline: Duration,
    /// Restarts of an instance (during a deployment) that count as a crash loop.
    pub max_restarts: u32,
    /// How long an instance may take to answer a request before the proxy answers 504.
    pub request_timeout: Duration,
    /// Secrets of every instance, resolved from the secret store for each environment when
    /// an instance starts; in file order, names unique.
    pub secrets: Vec<DeploySecret>,
    /// One target per environment the service is deployed to, in file order.
    pub targets: Vec<DeployTarget>,
}

/// A secret given to the instances of a deployed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySecret {
    /// The secret's name (upper-case letters, digits and `_`).
    pub name: String,
    /// `true`: the value is written to a file readable only by its owner and the
    /// environment variable `NAME_FILE` holds its path; `false`: `NAME` holds the value.
    pub file: bool,
}

/// The resolved deploy settings of one service in one environment (service-level values
/// with the environment's overrides applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DeployTarget {
    /// Environment name (one of [`Config::environments`]).
    pub env: String,
    /// Address the proxy listens on for this service in this environment.
    pub expose: std::net::SocketAddr,
    /// Address where a blue-green deployment shows the new release before the switch.
    pub preview: Option<std::net::SocketAddr>,
    /// Number of instances, 1 to 64.
    pub replicas: u32,
    /// Instance environment: the service-level `deploy.env` with the environment's `env`
    /// merged over it (`PORT` is not among them; the runtime sets it).
    pub env_vars: BTreeMap<String, String>,
    /// Readiness and liveness checks.
    pub health: Health,
    /// How a new release replaces the running one.
    pub strategy: StrategySpec,
}

/// Health checking of instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// What one check does.
    pub check: HealthCheckSpec,
    /// Time between checks.
    pub interval: Duration,
    /// Consecutive passes before an instance is ready (gets traffic).
    pub success_threshold: u32,
    /// Consecutive failures before a ready instance is restarted.
    pub failure_threshold: u32,
    /// Wait after start before the first check.
    pub initial_delay: Duration,
}

impl Default for Health {
    /// A TCP connect check every second with a 2 s timeout.
    fn default() -> Self {
        Health {
            check: HealthCheckSpec::Tcp {
                timeout: Duration::from_secs(2),
            },
            interval: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
            initial_delay: Duration::ZERO,
        }
    }
}

/// One health check.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheckSpec {
    /// `GET path` on the instance's port passes when the status is `expect`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Expected status code, 100 to 599.
        expect: u16,
        /// Time limit of one check.
        timeout: Duration,
    },
    /// A TCP connection to the instance's port passes.
    Tcp {
        /// Time limit of one check.
        timeout: Duration,
    },
    /// `sh -c run` in the instance's directory passes when it exits 0.
    Command {
        /// Shell command.
        run: String,
        /// Time limit of one check.
        timeout: Duration,
    },
}

impl HealthCheckSpec {
    /// The time limit of one check.
    pub fn timeout(&self) -> Duration {
        match self {
            HealthCheckSpec::Http { timeout, .. }
            | HealthCheckSpec::Tcp { timeout }
            | HealthCheckSpec::Command { timeout, .. } => *timeout,
        }
    }
}

/// A deployment strategy with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategySpec {
    /// Replace instances a few at a time. Never both zero.
    Rolling {
        /// Instances started above `replicas` at once.
        max_surge: u32,
        /// Instances below `replicas` that may be not ready at once.
        max_unavailable: u32,
    },
    /// Start a full new set, health-gate it, switch all traffic at once.
    BlueGreen {
        /// How long the old set keeps running after the switch (instant rollback window).
        keep_warm: Duration,
        /// Expose the new set on the environment's `preview` address before the switch.
        preview: bool,
        /// Switch as soon as the new set is healthy; false waits for a manual promote.
        auto_promote: bool,
    },
    /// Shift traffic in weighted steps, analysing the new release at each.
    Canary {
        /// Non-empty, weights strictly increasing within 1..=100. When the last weight is
        /// below 100, full promotion follows the last step implicitly.
        steps: Vec<CanaryStepSpec>,
        /// Thresholds the canary is judged by.
        analysis: AnalysisSpec,
        /// Requests that always go to the canary.
        sticky: Option<StickySpec>,
    },
}

impl Default for StrategySpec {
    /// Rolling, one extra instance at a time, never fewer ready than `replicas`.
    fn default() -> Self {
        StrategySpec::Rolling {
            max_surge: 1,
            max_unavailable: 0,
        }
    }
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryStepSpec {
    /// Percentage of traffic sent to the new release, 1 to 100.
    pub weight: u32,
    /// How long to hold (and analyse) at this weight before the next step.
    pub pause: Duration,
}

/// Canary analysis thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSpec {
    /// Highest acceptable share of 5xx responses, 0 to 1.
    pub max_error_rate: f64,
    /// Highest acceptable latency at `quantile`; None means latency is not judged.
    pub max_latency: Option<Duration>,
    /// The latency quantile judged, strictly between 0 and 1.
    pub quantile: f64,
    /// Fewest canary requests in a window to judge it.
    pub min_requests: u64,
    /// What happens when there are fewer than `min_requests`.
    pub insufficient_traffic: InsufficientTraffic,
    /// With [`InsufficientTraffic::Wait`]: longest extension of a step waiting for traffic.
    pub max_wait: Duration,
    /// Time between analysis runs.
    pub interval: Duration,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec {
            max_error_rate: 0.05,
            max_latency: None,
            quantile: 0.99,
            min_requests: 20,
            insufficient_traffic: InsufficientTraffic::Wait,
            max_wait: Duration::from_secs(5 * 60),
            interval: Duration::from_secs(5),
        }
    }
}

/// Policy when a canary gets too little traffic to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsufficientTraffic {
    /// Hold the step until enough requests arrive; fail after `max_wait`.
    Wait,
    /// Count the window as passing.
    Pass,
    /// Count the window as failing (roll back).
    Fail,
}

/// Requests matching this always go to the canary. Exactly one of `header` and `cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickySpec {
    /// Request header name.
    pub header: Option<String>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Value the header or cookie must have.
    pub value: String,
}
