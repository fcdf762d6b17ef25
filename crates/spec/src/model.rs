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

impl Service {
    /// The service's `build_image` step, if it has one (at most one): its image is the
    /// service's release image.
    pub fn build_step(&self) -> Option<(&Step, &BuildImage)> {
        self.steps.iter().find_map(|s| match &s.kind {
            StepKind::BuildImage(b) => Some((s, b)),
            _ => None,
        })
    }
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

/// One step in a service's pipeline: a shell command (on the host or in a container), an
/// image build, or a vulnerability scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Name, unique within the service.
    pub name: String,
    /// What the step does.
    pub kind: StepKind,
    /// Steps of the same service that must succeed first.
    pub needs: Vec<String>,
    /// Extra environment variables (service-level ones merged in, step wins). Always empty
    /// for `build_image` and `scan` steps, which run no command of the user's.
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the checkout root; None for the root (and always None
    /// for `build_image` and `scan` steps).
    pub workdir: Option<String>,
    /// Kill the step's process group (or stop its container, build or scan) after this long.
    pub timeout: Duration,
    /// What to do when it fails.
    pub retry: Retry,
    /// A failed gate blocks the release. `scan` steps are gates unless `gate: false`.
    pub gate: bool,
    /// JUnit XML report paths (globs, relative to the checkout root); `run` steps only.
    pub junit: Vec<String>,
    /// Paths (globs, relative to the checkout root) packed into the service's release;
    /// `run` steps only.
    pub artifacts: Vec<String>,
    /// Directories kept between runs, keyed on the hash of some files; `run` steps only.
    pub cache: Vec<Cache>,
    /// Names of server-side secrets to inject as environment variables; `run` steps only.
    pub secrets: Vec<String>,
}

impl Step {
    /// The shell command of a `run` step; `None` for image builds and scans.
    pub fn command(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Run { run, .. } => Some(run),
            StepKind::BuildImage(_) | StepKind::Scan(_) => None,
        }
    }

    /// The image a `run` step runs in; `None` when it runs on the host (or is no `run` step).
    pub fn image(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Run { image, .. } => image.as_deref(),
            StepKind::BuildImage(_) | StepKind::Scan(_) => None,
        }
    }
}

/// What a step does; exactly one of `run`, `build_image` and `scan` in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// `sh -c run` in the checkout (in `workdir`). With `image`, inside a container of that
    /// image, with the checkout mounted as the container's working directory (like GitLab's
    /// docker executor).
    Run {
        /// The shell command, not empty.
        run: String,
        /// A Docker image reference, syntax-checked (`[registry[:port]/]name[:tag][@sha256:…]`).
        image: Option<String>,
    },
    /// Build a Docker image through the Docker Engine; it becomes the service's release image
    /// (a service has at most one such step).
    BuildImage(BuildImage),
    /// Scan the checkout's lockfiles and/or the service's built image for known
    /// vulnerabilities; fails at or above `fail_on`.
    Scan(ScanSpec),
}

/// A Docker image build (`build_image:`), named as in Docker Compose's `build:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildImage {
    /// The build context, a directory relative to the checkout root (normalized); `None`
    /// for the root.
    pub context: Option<String>,
    /// The Dockerfile, relative to the context (normalized, inside it); default `Dockerfile`.
    pub dockerfile: String,
    /// Build arguments (`ARG`), values as written.
    pub args: BTreeMap<String, String>,
    /// The stage of a multi-stage Dockerfile to build; `None` for the last one.
    pub target: Option<String>,
    /// Labels of the image. Keys starting with `sluice.` are reserved for sluice's own.
    pub labels: BTreeMap<String, String>,
}

impl BuildImage {
    /// The Dockerfile's path relative to the checkout root.
    pub fn dockerfile_path(&self) -> String {
        match &self.context {
            Some(c) => format!("{c}/{}", self.dockerfile),
            None => self.dockerfile.clone(),
        }
    }
}

/// A vulnerability gate (`scan:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSpec {
    /// Findings at or above this severity fail the step.
    pub fail_on: VulnSeverity,
    /// Scan the lockfiles found in the checkout.
    pub lockfiles: bool,
    /// Scan the packages inside the image built by the service's `build_image` step
    /// ([`Service::build_step`]); resolved: true only when that step exists, and then the
    /// scan step needs it (directly or transitively).
    pub image: bool,
    /// Accepted findings, in file order; ids unique.
    pub allow: Vec<AllowEntry>,
}

/// Severity of a vulnerability, ordered `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VulnSeverity {
    /// Low.
    Low,
    /// Medium (CVSS 4.0 to 6.9).
    Medium,
    /// High (CVSS 7.0 to 8.9).
    High,
    /// Critical (CVSS 9.0 and above).
    Critical,
}

impl VulnSeverity {
    /// The name used in `sluice.yml` (`low`, `medium`, `high`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            VulnSeverity::Low => "low",
            VulnSeverity::Medium => "medium",
            VulnSeverity::High => "high",
            VulnSeverity::Critical => "critical",
        }
    }
}

/// An accepted advisory: findings with this id do not fail the scan until `expires` has
/// passed (the entry is valid through that whole day, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// The advisory id as the database names it, e.g. `RUSTSEC-2023-0071` or `GHSA-…`;
    /// an alias (e.g. a `CVE-…` id) of the advisory matches too if the scanner knows it.
    pub id: String,
    /// Why it is accepted, not empty.
    pub reason: String,
    /// The last day the entry applies.
    pub expires: Date,
}

/// A calendar date (proleptic Gregorian, no time zone); ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 1970 to 9999.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31 (valid for the month).
    pub day: u8,
}

impl Date {
    /// The date if it exists (years 1970 to 9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1970..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Date {
            year,
            month,
            day,
        })
    }

    /// Days since 1970-01-01 (that day is 0), for comparing with a clock:
    /// `now_ms / 86_400_000`.
    pub fn days_since_unix_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
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
    /// port is passed as `PORT`. `None` only with [`ContainerImage::Built`], where the
    /// image's own entrypoint and command run.
    pub start: Option<String>,
    /// Directory inside the artifact to start in (normalized, relative); None for its root
    /// (always None with [`ContainerImage::Built`]).
    pub workdir: Option<String>,
    /// What instances run as: processes or containers.
    pub runtime: RuntimeSpec,
    /// CPU and memory of each instance.
    pub resources: Resources,
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
    /// Scale the number of instances on CPU and memory utilisation; `None`: always
    /// `replicas`. With autoscaling, `replicas` is the starting count (within min..=max).
    pub autoscale: Option<Autoscale>,
}

/// What a service's instances run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSpec {
    /// A process group on the host: the release artifact unpacked, `start` run in it.
    Process,
    /// A Docker container per instance, published on a loopback port behind the proxy.
    Docker {
        /// The image the containers run.
        image: ContainerImage,
    },
}

/// The image of a service's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerImage {
    /// The image built by the service's `build_image` step (the release's image); the
    /// release artifact is not used.
    Built {
        /// Name of that step.
        step: String,
    },
    /// `deploy.image`: the release artifact is mounted into a container of this image as
    /// its working directory and `start` runs there.
    Named(String),
    /// No `deploy.image` and no `build_image` step: as [`ContainerImage::Named`] with the
    /// server's configured base image.
    ServerDefault,
}

/// Resources of one instance. With the Docker runtime they are the container's limits;
/// the process runtime does not enforce them. Autoscaling measures utilisation against them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// CPUs (cores), 0.01 to 64; `None`: no limit.
    pub cpus: Option<f64>,
    /// Memory in bytes, 6 MiB to 1 TiB; `None`: no limit.
    pub memory_bytes: Option<u64>,
}

/// Autoscaling of one service in one environment (like Kubernetes' HorizontalPodAutoscaler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autoscale {
    /// Fewest instances, 1 to 64.
    pub min: u32,
    /// Most instances, `min` to 64.
    pub max: u32,
    /// Target average CPU utilisation in percent (1 to 100) of `resources.cpus`, or of one
    /// core when no `cpus` is set.
    pub cpu_percent: Option<u32>,
    /// Target average memory utilisation in percent (1 to 100) of `resources.memory`
    /// (which must be set). At least one of `cpu_percent` and `memory_percent` is set.
    pub memory_percent: Option<u32>,
    /// How often utilisation is evaluated.
    pub interval: Duration,
    /// Least time between two scale-outs, and between any scale action and a scale-in.
    pub cooldown: Duration,
    /// Scale-in goes only down to the highest recommendation of this window.
    pub stabilization: Duration,
    /// Most instances added by one scale-out; `None`: up to the recommendation.
    pub scale_up_step: Option<u32>,
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
