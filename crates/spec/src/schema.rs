//! The `sluice.yml` file format as typed structs, for the JSON Schema and the reference docs.
//!
//! The doc comments below ARE the user documentation: [`crate::json_schema`] and
//! [`crate::reference_markdown`] are generated from them. The parser does not deserialize
//! into these types (it walks a positioned tree so it can report every problem at once), so
//! the field-name lists here are shared with the validator and tests check that both agree.
//! Nothing here runs at parse time except the field-name constants.

// The structs are only used for their derived schema; their fields are never read.
#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Fields of the top level.
pub(crate) const CONFIG_FIELDS: &[&str] =
    &["project", "environments", "services", "alerts", "oncall"];
/// Fields of an environment.
pub(crate) const ENVIRONMENT_FIELDS: &[&str] = &["branch", "protected", "approvals", "wait_timer"];
/// Fields of a service.
pub(crate) const SERVICE_FIELDS: &[&str] = &["paths", "env", "steps", "deploy"];
/// Fields of a step.
pub(crate) const STEP_FIELDS: &[&str] = &[
    "run",
    "image",
    "build_image",
    "scan",
    "needs",
    "gate",
    "timeout",
    "retry",
    "env",
    "workdir",
    "junit",
    "artifacts",
    "cache",
    "secrets",
];
/// What a step does; exactly one is given.
pub(crate) const STEP_KINDS: &[&str] = &["run", "build_image", "scan"];
/// Fields of the long form of `build_image`.
pub(crate) const BUILD_IMAGE_FIELDS: &[&str] =
    &["context", "dockerfile", "args", "target", "labels"];
/// Fields of `scan`.
pub(crate) const SCAN_FIELDS: &[&str] = &["fail_on", "lockfiles", "image", "allow"];
/// Fields of an entry of `scan.allow`.
pub(crate) const ALLOW_FIELDS: &[&str] = &["id", "reason", "expires"];
/// Values of `scan.fail_on`, most severe first.
pub(crate) const FAIL_ON_VALUES: &[&str] = &["critical", "high", "medium", "low"];
/// Fields of the long form of `retry`.
pub(crate) const RETRY_FIELDS: &[&str] = &["max", "on", "delay"];
/// Fields of a cache entry.
pub(crate) const CACHE_FIELDS: &[&str] = &["paths", "key_files"];
/// Values of `retry.on`.
pub(crate) const RETRY_ON_VALUES: &[&str] = &["failure", "timeout"];
/// Fields of a service's `deploy`.
pub(crate) const DEPLOY_FIELDS: &[&str] = &[
    "start",
    "workdir",
    "runtime",
    "image",
    "resources",
    "replicas",
    "autoscale",
    "env",
    "secrets",
    "health",
    "stop_grace",
    "progress_deadline",
    "max_restarts",
    "request_timeout",
    "strategy",
    "environments",
];
/// Values of `deploy.runtime`.
pub(crate) const RUNTIME_VALUES: &[&str] = &["process", "docker"];
/// Fields of `deploy.resources`.
pub(crate) const RESOURCES_FIELDS: &[&str] = &["cpus", "memory"];
/// Fields of `autoscale`.
pub(crate) const AUTOSCALE_FIELDS: &[&str] = &[
    "min",
    "max",
    "cpu",
    "memory",
    "interval",
    "cooldown",
    "stabilization",
    "scale_up_step",
];
/// Fields of the long form of an entry of `deploy.secrets`.
pub(crate) const DEPLOY_SECRET_FIELDS: &[&str] = &["name", "file"];
/// Fields of one environment under `deploy.environments`.
pub(crate) const DEPLOY_ENVIRONMENT_FIELDS: &[&str] = &[
    "expose",
    "preview",
    "replicas",
    "autoscale",
    "env",
    "health",
    "strategy",
];
/// Fields of `health`.
pub(crate) const HEALTH_FIELDS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "expect",
    "timeout",
    "interval",
    "success_threshold",
    "failure_threshold",
    "initial_delay",
];
/// The kinds of health check; exactly one is given.
pub(crate) const HEALTH_KINDS: &[&str] = &["http", "tcp", "command"];
/// Names of the strategies.
pub(crate) const STRATEGY_NAMES: &[&str] = &["rolling", "blue_green", "canary"];
/// Fields of the `rolling` strategy.
pub(crate) const ROLLING_FIELDS: &[&str] = &["max_surge", "max_unavailable"];
/// Fields of the `blue_green` strategy.
pub(crate) const BLUE_GREEN_FIELDS: &[&str] = &["keep_warm", "preview", "auto_promote"];
/// Fields of the `canary` strategy.
pub(crate) const CANARY_FIELDS: &[&str] = &["steps", "analysis", "sticky"];
/// Fields of one canary step.
pub(crate) const CANARY_STEP_FIELDS: &[&str] = &["weight", "pause"];
/// Fields of the canary `analysis`.
pub(crate) const ANALYSIS_FIELDS: &[&str] = &[
    "max_error_rate",
    "max_latency",
    "quantile",
    "min_requests",
    "insufficient_traffic",
    "max_wait",
    "interval",
];
/// Values of `analysis.insufficient_traffic`.
pub(crate) const INSUFFICIENT_TRAFFIC_VALUES: &[&str] = &["wait", "pass", "fail"];
/// Fields of the canary `sticky` rule.
pub(crate) const STICKY_FIELDS: &[&str] = &["header", "cookie", "value"];

/// Fields of the `alerts` section.
pub(crate) const ALERTS_FIELDS: &[&str] = &[
    "group_by",
    "group_wait",
    "group_interval",
    "group_window",
    "escalation",
    "channels",
    "ticket",
    "rules",
    "rate_limit",
    "flapping",
];
/// Fields of `alerts.flapping`.
pub(crate) const FLAPPING_FIELDS: &[&str] = &["window", "changes"];
/// Fields of a notification channel (exactly one of [`CHANNEL_KINDS`]).
pub(crate) const CHANNEL_FIELDS: &[&str] = &["webhook", "slack", "email", "format", "secret"];
/// The kinds of channel.
pub(crate) const CHANNEL_KINDS: &[&str] = &["webhook", "slack", "email"];
/// Fields of the ticket webhook.
pub(crate) const TICKET_FIELDS: &[&str] = &["url", "format", "secret"];
/// Values of a webhook's `format`.
pub(crate) const WEBHOOK_FORMATS: &[&str] = &["sluice", "alertmanager"];
/// Fields of an alert rule.
pub(crate) const ALERT_RULE_FIELDS: &[&str] = &[
    "service",
    "env",
    "expr",
    "window",
    "for",
    "severity",
    "labels",
    "summary",
    "metrics_path",
];
/// Severity names.
pub(crate) const SEVERITY_VALUES: &[&str] = &["critical", "error", "warning", "info"];
/// Fields of the `oncall` section.
pub(crate) const ONCALL_FIELDS: &[&str] = &["schedules", "escalation"];
/// Fields of an escalation policy.
pub(crate) const ESCALATION_FIELDS: &[&str] = &["levels", "repeat"];
/// Fields of one escalation level.
pub(crate) const ESCALATION_LEVEL_FIELDS: &[&str] = &["notify", "after"];

/// The field list of each object definition of the schema, by definition name (the top
/// level's is [`CONFIG_FIELDS`]); the reference lists their fields in this order.
pub(crate) const DEFINITION_FIELDS: &[(&str, &[&str])] = &[
    ("Environment", ENVIRONMENT_FIELDS),
    ("Service", SERVICE_FIELDS),
    ("Step", STEP_FIELDS),
    ("BuildImage", BUILD_IMAGE_FIELDS),
    ("Scan", SCAN_FIELDS),
    ("AllowEntry", ALLOW_FIELDS),
    ("Retry", RETRY_FIELDS),
    ("Cache", CACHE_FIELDS),
    ("Deploy", DEPLOY_FIELDS),
    ("DeploySecret", DEPLOY_SECRET_FIELDS),
    ("Resources", RESOURCES_FIELDS),
    ("Autoscale", AUTOSCALE_FIELDS),
    ("DeployEnvironment", DEPLOY_ENVIRONMENT_FIELDS),
    ("Health", HEALTH_FIELDS),
    ("Rolling", ROLLING_FIELDS),
    ("BlueGreen", BLUE_GREEN_FIELDS),
    ("Canary", CANARY_FIELDS),
    ("CanaryStep", CANARY_STEP_FIELDS),
    ("Analysis", ANALYSIS_FIELDS),
    ("Sticky", STICKY_FIELDS),
    ("Alerts", ALERTS_FIELDS),
    ("Flapping", FLAPPING_FIELDS),
    ("Channel", CHANNEL_FIELDS),
    ("Ticket", TICKET_FIELDS),
    ("AlertRule", ALERT_RULE_FIELDS),
    ("OnCall", ONCALL_FIELDS),
    ("Escalation", ESCALATION_FIELDS),
    ("EscalationLevel", ESCALATION_LEVEL_FIELDS),
    ("Schedule", SCHEDULE_FIELDS),
    ("Layer", LAYER_FIELDS),
    ("Restriction", RESTRICTION_FIELDS),
];

/// Fields of a schedule.
pub(crate) const SCHEDULE_FIELDS: &[&str] = &["time_zone", "layers"];
/// Fields of a schedule layer.
pub(crate) const LAYER_FIELDS: &[&str] = &["name", "users", "rotation", "start", "restrictions"];
/// Fields of a layer restriction.
pub(crate) const RESTRICTION_FIELDS: &[&str] = &["days", "start", "end"];

/// Names of projects.
pub(crate) const PROJECT_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]*$";
/// Names of environments, services and steps.
pub(crate) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// Environment variable names.
pub(crate) const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Secret names.
pub(crate) const SECRET_NAME_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Paths of a service's metrics endpoint: absolute, printable ASCII, no blanks or fragment.
pub(crate) const METRICS_PATH_PATTERN: &str = "^/[!-\"$-~]*$";
/// Durations such as `90s`, `10m`, `1h30m` or `250ms`.
pub(crate) const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";
/// Socket addresses: an IPv4 address or a bracketed IPv6 address, then `:port`.
pub(crate) const ADDRESS_PATTERN: &str = "^([0-9.]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$";
/// Docker image references: `[registry[:port]/]name[:tag][@sha256:digest]` (the full
/// grammar is checked by the parser).
pub(crate) const IMAGE_PATTERN: &str =
    "^[a-zA-Z0-9\\[][a-zA-Z0-9._/:\\[\\]-]*(@sha256:[a-f0-9]{64})?$";
/// Utilisation targets such as `70%` (or a bare number of percent).
pub(crate) const PERCENT_PATTERN: &str = "^[0-9]{1,3}%$";
/// Memory sizes such as `256Mi`, `1Gi` or `512M`.
pub(crate) const MEMORY_PATTERN: &str = "^[0-9]+(Ki|Mi|Gi|K|M|G)?$";
/// Dates such as `2026-12-31`.
pub(crate) const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
/// Build argument names.
pub(crate) const ARG_NAME_PATTERN: &str = ENV_NAME_PATTERN;
/// HTTP header and cookie names (RFC 9110 tokens).
pub(crate) const TOKEN_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// The desired state of one repository: which branches feed which environments, how each
/// service of the repository is built, tested and packed into a release, and how its
/// releases are deployed to each environment. The file is called `sluice.yml` and lives in
/// the repository root.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sluice.yml")]
pub(crate) struct SluiceYml {
    /// Name of the project: lower-case letters, digits and `-`, starting with a letter or
    /// digit, at most 63 characters.
    #[schemars(pattern(PROJECT_NAME_PATTERN), length(min = 1, max = 63))]
    pub project: String,
    /// Deployment targets by name (lower-case letters, digits, `_` and `-`), in the order
    /// a release is promoted through them. At least one.
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": NAME_PATTERN, "maxLength": 63}))]
    pub environments: BTreeMap<String, Environment>,
    /// The deployable units of the repository by name (lower-case letters, digits, `_` and
    /// `-`), in file order. At least one.
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": NAME_PATTERN, "maxLength": 63}))]
    pub services: BTreeMap<String, Service>,
    /// How this project's alerts group into incidents, where notifications go, and the alert
    /// rules over its services' metrics. Optional: without it, alerts group by service and
    /// are notified after 10s.
    #[serde(default)]
    #[schemars(with = "Alerts")]
    pub alerts: Option<Alerts>,
    /// On-call schedules and escalation policies: who is paged, in which order.
    #[serde(default)]
    #[schemars(with = "OnCall")]
    pub oncall: Option<OnCall>,
}

/// A deployment target fed by one branch.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Environment {
    /// The branch whose pushes run pipelines for this environment (not empty). Two
    /// environments cannot share a branch.
    #[schemars(length(min = 1))]
    pub branch: String,
    /// Only people with the `releaser` role may deploy, roll back, promote into or pause this
    /// environment, or read and write its secrets; a pipeline run on this environment's
    /// branch may deploy its own release there and read its secrets. Developers can still
    /// see it.
    #[serde(default)]
    pub protected: bool,
    /// How many people other than the one who asked must approve a manual deploy, rollback or
    /// promotion into this environment before it starts (`sluice approve`), 0 to 10. Needs
    /// `protected: true`. Deploys by the environment's own pipeline need no approval.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub approvals: u32,
    /// How long a manual deploy, rollback or promotion into this environment waits after it
    /// was asked for before it starts (a duration such as `10m`, at most `24h`; the approvals,
    /// if any, are needed as well). Needs `protected: true`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "0s"))]
    pub wait_timer: String,
}

/// One deployable unit of the repository, the pipeline that builds it and, optionally, how
/// its releases run.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Service {
    /// Glob patterns, relative to the repository root, whose changes make this service's
    /// pipeline run (monorepo change detection). `*` does not cross `/`, `**` does; a
    /// pattern naming a directory (such as `services/api`) covers everything under it.
    /// Empty or absent means the whole repository.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub paths: Vec<String>,
    /// Environment variables set for every step of the service; a step's own `env` wins.
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ENV_NAME_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// The steps of the pipeline by name (lower-case letters, digits, `_` and `-`). Steps
    /// run in parallel unless ordered with `needs`. At least one.
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": NAME_PATTERN, "maxLength": 63}))]
    pub steps: BTreeMap<String, Step>,
    /// How the service's releases are deployed. A service without `deploy` is built and
    /// released but never deployed.
    #[serde(default)]
    #[schemars(with = "Deploy")]
    pub deploy: Option<Deploy>,
}

/// A value of an environment variable. Numbers and booleans are accepted and passed on as
/// written (`1.50` stays `1.50`, `yes` stays `yes`).
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum EnvValue {
    /// Any string.
    String(String),
    /// A number, passed on as written.
    Number(f64),
    /// A boolean, passed on as written.
    Bool(bool),
}

/// One step of a service's pipeline. A step does exactly one of three things: runs a shell
/// command (`run`, optionally inside a container of `image`), builds the service's Docker
/// image (`build_image`), or scans for known vulnerabilities (`scan`). A `build_image` or
/// `scan` step takes only `needs`, `gate`, `timeout` and `retry` besides.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["run"]}, {"required": ["build_image"]}, {"required": ["scan"]}]))]
pub(crate) struct Step {
    /// The shell command, run with `sh -c` in the checkout. Must not be empty. A non-zero
    /// exit status fails the step.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(length(min = 1))]
    pub run: String,
    /// Run `run` inside a container of this Docker image instead of on the host, like
    /// GitLab's docker executor: the checkout is mounted into the container as its working
    /// directory (in `workdir`), the step's `env` and `secrets` are its environment, and
    /// its output and exit status are the step's. A reference
    /// `[registry[:port]/]name[:tag][@sha256:<64 hex>]`, e.g. `node:22`,
    /// `ghcr.io/acme/tools:1.4` or `rust:1.88@sha256:…`. The image must already be on the
    /// Docker host (sluice does not pull images). Absent: the command runs on the host.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(IMAGE_PATTERN))]
    pub image: String,
    /// Build a Docker image through the Docker Engine, instead of `run`: the service's release
    /// image (a service has at most one such step), labelled with the commit and the run,
    /// tagged `sluice/<project>-<service>:<commit>`, and recorded (image id and tag) on the
    /// release; it is not pushed to a registry. The build output is the step's
    /// log. Give the build context directory, or the long form.
    #[serde(default)]
    #[schemars(with = "BuildImageForm")]
    pub build_image: Option<BuildImageForm>,
    /// Scan for known vulnerabilities, instead of `run`: the checkout's lockfiles and the
    /// packages in the image the service builds, against the server's advisory database.
    /// Findings at or above `fail_on` fail the step; it is a gate unless `gate: false`, so
    /// no release is made. The report (package, installed version, advisory, severity,
    /// fixed version) is shown with the run and stored on the release.
    #[serde(default)]
    #[schemars(with = "Scan")]
    pub scan: Option<Scan>,
    /// Names of steps of the same service that must succeed before this one starts. No
    /// cycles, and a step cannot need itself.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub needs: Vec<String>,
    /// A gate: when this step fails, no release is created from the pipeline. Default
    /// `true` for `scan` steps, `false` for the others.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub gate: bool,
    /// How long the step may run before its process group is killed and the step counts as
    /// timed out: a duration such as `90s`, `10m`, `1h30m` or `250ms`, more than zero and at
    /// most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "30m"))]
    pub timeout: String,
    /// Extra attempts when the step fails: a number of extra attempts (`retry: 2`, which
    /// retries on failures and timeouts without delay) or the long form.
    #[serde(default)]
    #[schemars(extend("default" = 0))]
    pub retry: RetryForm,
    /// Environment variables for the step, merged over the service's `env`. Names are
    /// letters, digits and `_`, not starting with a digit. `run` steps only (the service's
    /// `env` does not apply to `build_image` and `scan` steps).
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ENV_NAME_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// Working directory, relative to the repository root; must not be absolute or leave
    /// the checkout with `..`. Absent means the repository root. `run` steps only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    /// Glob patterns of JUnit XML reports the step writes; their test results are shown
    /// with the step. `run` steps only.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub junit: Vec<String>,
    /// Glob patterns of files packed into the service's immutable release. `run` steps only.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub artifacts: Vec<String>,
    /// Directories kept between runs of the step. `run` steps only.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub cache: Vec<Cache>,
    /// Names of secrets to inject as environment variables of the same name (upper-case
    /// letters, digits and `_`). Each is looked up when the step starts: the value set for
    /// the run's environment (`sluice secrets set PROJECT NAME --env ENV`, only for
    /// pipelines of that environment's branch), else the project-wide value, else the
    /// server configuration's `secrets`; a missing one fails the step. Their values never
    /// appear in logs. `run` steps only.
    #[serde(default)]
    #[schemars(extend("default" = []), inner(pattern(SECRET_NAME_PATTERN)))]
    pub secrets: Vec<String>,
}

/// Either the number of extra attempts or the full retry policy.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RetryForm {
    /// Short form: the number of extra attempts (0 to 10), on failures and timeouts.
    #[schemars(extend("minimum" = 0, "maximum" = 10))]
    Short(u32),
    /// Long form.
    Long(Retry),
}

impl Default for RetryForm {
    fn default() -> Self {
        RetryForm::Short(0)
    }
}

/// The long form of a retry policy.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retry {
    /// Extra attempts after the first one, 0 to 10.
    #[schemars(range(min = 0, max = 10))]
    pub max: u32,
    /// What to retry: `failure` (non-zero exit status), `timeout`, or both. At least one.
    #[schemars(extend("default" = ["failure", "timeout"], "minItems" = 1))]
    #[serde(default)]
    pub on: Vec<RetryOn>,
    /// How long to wait between attempts, a duration such as `1s` (at most `24h`).
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "0s"))]
    pub delay: String,
}

/// A kind of failure that can be retried.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RetryOn {
    /// The command exited with a non-zero status.
    Failure,
    /// The command ran longer than `timeout`.
    Timeout,
}

/// The build context directory, or the full build settings.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum BuildImageForm {
    /// Short form: the build context, a directory relative to the repository root (`.` for
    /// the root), with its `Dockerfile`.
    Context(String),
    /// Long form.
    Long(BuildImage),
}

/// A Docker image build, named as in Docker Compose's `build`. Layers are cached by the
/// Docker Engine between runs. The image is not pushed to a registry.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildImage {
    /// The build context: a directory relative to the repository root, sent to the Docker
    /// Engine; must not be absolute or leave the repository with `..`.
    #[serde(default)]
    #[schemars(extend("default" = "."))]
    pub context: String,
    /// The Dockerfile, relative to `context` and inside it.
    #[serde(default)]
    #[schemars(extend("default" = "Dockerfile"))]
    pub dockerfile: String,
    /// Build arguments (`ARG` in the Dockerfile) by name: letters, digits and `_`, not
    /// starting with a digit. Values are passed as written. They are stored in the image's
    /// history, so never pass secrets here.
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ARG_NAME_PATTERN}))]
    pub args: BTreeMap<String, EnvValue>,
    /// The stage of a multi-stage Dockerfile to build (`FROM … AS <target>`). Absent: the
    /// last stage.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern("^[A-Za-z][A-Za-z0-9_.-]*$"))]
    pub target: String,
    /// Labels of the image, e.g. `org.opencontainers.image.source`. Keys have no spaces or
    /// `=`; keys starting with `sluice.` are reserved for the labels sluice sets itself (the
    /// commit and the release).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub labels: BTreeMap<String, EnvValue>,
}

/// A vulnerability scan. Lockfiles are found anywhere in the checkout (`Cargo.lock`,
/// `package-lock.json`, `requirements.txt`, `poetry.lock`, `go.sum`); in an image, the
/// installed Debian and Alpine packages and the lockfiles found in it are scanned.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scan {
    /// The least severity that fails the step: `critical`, `high`, `medium` or `low`.
    #[serde(default)]
    #[schemars(extend("default" = "high"))]
    pub fail_on: FailOn,
    /// Scan the lockfiles of the checkout.
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub lockfiles: bool,
    /// Scan the packages inside the image built by the service's `build_image` step. The
    /// default is `true` when the service has such a step, and then this step must need it
    /// (directly or through other steps) so the image exists when it runs; `true` without
    /// such a step is an error. A scan with `lockfiles: false` needs an image to scan.
    #[serde(default, skip_serializing_if = "no_default")]
    pub image: bool,
    /// Accepted findings: each names an advisory, says why, and expires.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub allow: Vec<AllowEntry>,
}

/// A severity of vulnerability findings.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FailOn {
    /// Only critical findings fail.
    Critical,
    /// High and critical findings fail.
    #[default]
    High,
    /// Medium, high and critical findings fail.
    Medium,
    /// Every finding with a severity fails.
    Low,
}

/// An accepted advisory: its findings do not fail the scan (they are still reported) until
/// the end of `expires` (UTC); after that they count again.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowEntry {
    /// The advisory id as the database names it, e.g. `RUSTSEC-2023-0071`,
    /// `GHSA-xxxx-xxxx-xxxx` or a `CVE-` alias. No spaces; each id once.
    #[schemars(length(min = 1))]
    pub id: String,
    /// Why the finding is accepted (not empty); shown in the report.
    #[schemars(length(min = 1))]
    pub reason: String,
    /// The last day the entry applies, `YYYY-MM-DD`.
    #[schemars(pattern(DATE_PATTERN))]
    pub expires: String,
}

/// A set of directories restored before the step and saved after it succeeds.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cache {
    /// Directories, relative to the repository root, to keep between runs. At least one.
    #[schemars(length(min = 1))]
    pub paths: Vec<String>,
    /// Glob patterns of files whose contents form the cache key: when any of them changes,
    /// the cache starts empty.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub key_files: Vec<String>,
}

/// How a service's releases run. Each instance is the release artifact unpacked into its
/// own directory and started with `start` (as a process, or in a container with
/// `runtime: docker`); sluice assigns it a port (passed as `PORT`) and its traffic proxy
/// listens on each environment's `expose` address, forwarding to the ready instances.
/// `replicas`, `autoscale`, `env`, `health` and `strategy` set here apply to every
/// environment unless the environment overrides them.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deploy {
    /// The start command, run with `sh -c` inside the unpacked release artifact (in
    /// `workdir`). It must listen on the port given in the `PORT` environment variable and
    /// stop cleanly on SIGTERM. Must not be empty. Required, except with `runtime: docker`
    /// running the service's built image: there, absent runs the image's own entrypoint and
    /// command, and given it replaces them (`sh -c` inside the container, which then needs
    /// a shell).
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(length(min = 1))]
    pub start: String,
    /// Directory inside the artifact to start in, relative; must not be absolute or leave
    /// the artifact with `..`. Absent means the artifact's root. Not with the service's
    /// built image (its own `WORKDIR` applies).
    #[serde(default, skip_serializing_if = "no_default")]
    pub workdir: String,
    /// What an instance is. `process`: a process group on the server's host, running the
    /// unpacked release. `docker`: a Docker container, published on a loopback port behind
    /// the proxy, with `resources` as its limits and labels that let a restarted server
    /// adopt it. Its image is the one built by the service's `build_image` step (the release
    /// artifact is then not used); otherwise `image`, or without it the server's configured
    /// base image, with the release artifact mounted as the container's working directory
    /// and `start` run there.
    #[serde(default)]
    #[schemars(extend("default" = "process"))]
    pub runtime: Runtime,
    /// With `runtime: docker` and no `build_image` step: the image the release runs in, a
    /// reference such as `python:3.12-slim` (see the step's `image`). Absent: the server's
    /// base image. Not allowed with `runtime: process`, nor when the service builds its own
    /// image.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(IMAGE_PATTERN))]
    pub image: String,
    /// CPU and memory of each instance: the container's limits with `runtime: docker` (the
    /// process runtime does not enforce them); autoscaling measures utilisation against them.
    #[serde(default)]
    #[schemars(with = "Resources")]
    pub resources: Option<Resources>,
    /// Number of instances, 1 to 64. With `autoscale`, the number to start with, within
    /// its `min` to `max` (absent: `min`).
    #[serde(default)]
    #[schemars(range(min = 1, max = 64), extend("default" = 1))]
    pub replicas: u32,
    /// Scale the number of instances on CPU and memory utilisation, in every environment
    /// that does not override it. `false` is the same as leaving it out.
    #[serde(default)]
    #[schemars(with = "AutoscaleForm")]
    pub autoscale: Option<AutoscaleForm>,
    /// Environment variables of every instance. Names are letters, digits and `_`, not
    /// starting with a digit; `PORT` is set by sluice and cannot be given.
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ENV_NAME_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// Secrets of every instance, from the secret store (`sluice secrets set`): in each
    /// environment the value set for that environment, else the project-wide one. An entry
    /// is a name (upper-case letters, digits and `_`), passed as the environment variable of
    /// that name, or the long form `{name: NAME, file: true}`. Names are unique. Values never
    /// appear in logs. A deployment whose secrets are missing (or whose server is sealed)
    /// fails before its instances start, and the serving release keeps serving.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub secrets: Vec<DeploySecretForm>,
    /// How instances are checked. Absent means `{tcp: true}` with the defaults of
    /// [Health](#health).
    #[serde(default)]
    #[schemars(with = "Health", extend("default" = {"tcp": true}))]
    pub health: Option<Health>,
    /// How long a stopping instance gets between SIGTERM and SIGKILL (to its whole process
    /// group), at most `24h`; `0s` kills at once.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "10s"))]
    pub stop_grace: String,
    /// New instances must be ready within this time, or the deployment fails and rolls
    /// back. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "60s"))]
    pub progress_deadline: String,
    /// How many times a new instance may exit during a deployment before it counts as
    /// crash-looping and the deployment rolls back, 0 to 100. Outside deployments, exited
    /// instances are restarted with backoff.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100), extend("default" = 3))]
    pub max_restarts: u32,
    /// How long an instance may take to answer a request (until its response headers) before
    /// the proxy answers 504 and counts a 5xx of that release, so a hanging release shows up in
    /// the canary analysis. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "30s"))]
    pub request_timeout: String,
    /// How a new release replaces the running one.
    #[serde(default)]
    #[schemars(with = "StrategyForm", extend("default" = "rolling"))]
    pub strategy: Option<StrategyForm>,
    /// The environments the service is deployed to, by name; each must be defined in the
    /// top-level `environments`. A successful pipeline on an environment's branch deploys
    /// its release there. At least one.
    #[schemars(extend("minProperties" = 1))]
    pub environments: BTreeMap<String, DeployEnvironment>,
}

/// What a service's instances run as.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Runtime {
    /// A process group on the server's host.
    #[default]
    Process,
    /// A Docker container.
    Docker,
}

/// CPU and memory of one instance.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resources {
    /// CPUs (cores) an instance may use, 0.01 to 64, e.g. `0.5` (Docker's `--cpus`). Absent:
    /// no limit, and CPU utilisation is measured against one core.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(range(min = 0.01, max = 64))]
    pub cpus: f64,
    /// Memory an instance may use, 6Mi to 1024Gi: a whole number with a unit, `Ki`, `Mi`,
    /// `Gi` (powers of 1024) or `K`, `M`, `G` (powers of 1000), e.g. `256Mi`; a number without
    /// a unit is bytes. A container above it is killed (and restarted). Absent: no limit.
    #[serde(default)]
    #[schemars(with = "MemoryForm")]
    pub memory: Option<MemoryForm>,
}

/// A memory size.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum MemoryForm {
    /// With a unit, e.g. `256Mi`.
    #[schemars(extend("pattern" = MEMORY_PATTERN))]
    Text(String),
    /// Bytes.
    Bytes(u64),
}

/// Autoscaling settings, or `false` to turn off the service-level autoscaling in an
/// environment.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum AutoscaleForm {
    /// No autoscaling: `replicas` instances.
    #[schemars(extend("const" = false))]
    Off(bool),
    /// The settings.
    Settings(Autoscale),
}

/// Autoscaling, like Kubernetes' HorizontalPodAutoscaler: every `interval`, the average
/// utilisation of the ready instances gives the instances needed,
/// `ceil(instances × utilisation ÷ target)` (for CPU and memory each; the larger wins).
/// Within 10% of the target nothing changes. More instances start at once (at most
/// `scale_up_step`, then not again for `cooldown`); fewer only down to the highest number
/// needed over the last `stabilization`, and not within `cooldown` of any scale action, so a
/// short dip never shrinks the fleet. Always within `min` to `max`. Starting instances do
/// not count as idle, and instances without a measurement count against the change (as
/// busy when scaling in, as idle when scaling out). New instances get traffic once ready;
/// removed ones are drained first. Each decision is recorded as an event with its figures.
/// Nothing is scaled while a deployment runs.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Autoscale {
    /// Fewest instances, 1 to 64.
    #[serde(default)]
    #[schemars(range(min = 1, max = 64), extend("default" = 1))]
    pub min: u32,
    /// Most instances, `min` to 64.
    #[schemars(range(min = 1, max = 64))]
    pub max: u32,
    /// Target average CPU utilisation of the ready instances, `1%` to `100%` of
    /// `resources.cpus` (or of one core when `cpus` is not set). Give `cpu`, `memory` or
    /// both.
    #[serde(default)]
    #[schemars(with = "Percent")]
    pub cpu: Option<Percent>,
    /// Target average memory utilisation of the ready instances, `1%` to `100%` of
    /// `resources.memory`, which must be set.
    #[serde(default)]
    #[schemars(with = "Percent")]
    pub memory: Option<Percent>,
    /// How often utilisation is measured and judged; more than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "15s"))]
    pub interval: String,
    /// Least time between two scale-outs (new instances need time to start and take load
    /// before they show in the figures), and between any scale action and a scale-in. A
    /// scale-out may follow a scale-in at once. At most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "60s"))]
    pub cooldown: String,
    /// Scale-in goes only down to the highest number of instances needed over this window
    /// (Kubernetes' `scaleDown.stabilizationWindowSeconds`). At most `24h`; `0s` scales in as
    /// soon as fewer are needed.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5m"))]
    pub stabilization: String,
    /// Most instances one scale-out adds, 1 to 64. Absent: as many as needed.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(range(min = 1, max = 64))]
    pub scale_up_step: u32,
}

/// A percentage, e.g. `70%`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum Percent {
    /// With the `%` sign, e.g. `70%`.
    #[schemars(extend("pattern" = PERCENT_PATTERN))]
    Text(String),
    /// A number of percent, 1 to 100.
    #[schemars(extend("minimum" = 1, "maximum" = 100))]
    Number(u32),
}

/// A secret of a deployed service: its name, or the long form.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum DeploySecretForm {
    /// Short form: the secret's name; the instances get its value in the environment
    /// variable of that name.
    #[schemars(extend("pattern" = SECRET_NAME_PATTERN))]
    Name(String),
    /// Long form.
    Long(DeploySecret),
}

/// The long form of a deployed service's secret.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeploySecret {
    /// The secret's name (upper-case letters, digits and `_`).
    #[schemars(pattern(SECRET_NAME_PATTERN))]
    pub name: String,
    /// Write the value to a file readable only by the server's user, outside the release
    /// directory, and set the environment variable `NAME_FILE` to its path, instead of
    /// setting `NAME` to the value (for certificates, keys and other multi-line values).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub file: bool,
}

/// The deployment of a service in one environment. `replicas`, `autoscale`, `health` and
/// `strategy` given here replace the service-level ones (an `autoscale`, `health` or
/// `strategy` here replaces the service's as a whole); `env` is merged over the
/// service-level `env`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployEnvironment {
    /// The address the traffic proxy listens on for this service in this environment: an IP
    /// address and a port 1 to 65535, e.g. `127.0.0.1:8080` (IPv6 in brackets and quotes:
    /// `"[::1]:8080"`). No two services or environments may share an address, and
    /// `0.0.0.0:P` takes port P on every address.
    #[schemars(pattern(ADDRESS_PATTERN))]
    pub expose: String,
    /// A second address where a `blue_green` deployment with `preview: true` serves the new
    /// release before the switch. Same format as `expose`, and it must differ from every
    /// other address.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(ADDRESS_PATTERN))]
    pub preview: String,
    /// Number of instances in this environment, 1 to 64. Absent means the service's
    /// `replicas`. With autoscaling, the number to start with, within `min` to `max`.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(range(min = 1, max = 64))]
    pub replicas: u32,
    /// Autoscaling in this environment, replacing the service's `autoscale` as a whole;
    /// `false` turns the service's autoscaling off here.
    #[serde(default)]
    #[schemars(with = "AutoscaleForm")]
    pub autoscale: Option<AutoscaleForm>,
    /// Environment variables of the instances in this environment, merged over the
    /// service-level `env` (these win).
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ENV_NAME_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// Health checking in this environment, replacing the service's `health` as a whole.
    #[serde(default)]
    #[schemars(with = "Health")]
    pub health: Option<Health>,
    /// The strategy in this environment, replacing the service's `strategy`.
    #[serde(default)]
    #[schemars(with = "StrategyForm")]
    pub strategy: Option<StrategyForm>,
}

/// Health checks of instances. Give exactly one of `http`, `tcp: true` and `command`. An
/// instance is ready (gets traffic) after `success_threshold` consecutive passes, and a
/// ready instance is restarted after `failure_threshold` consecutive failures.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["http"]}, {"required": ["tcp"]}, {"required": ["command"]}]))]
pub(crate) struct Health {
    /// An HTTP check: `GET` of this path (starting with `/`, e.g. `/healthz`) on the
    /// instance's port passes when the response status is `expect`.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern("^/[^\\s]*$"))]
    pub http: String,
    /// A TCP check: connecting to the instance's port passes. Only `true` is allowed.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(extend("const" = true))]
    pub tcp: bool,
    /// A command check: `sh -c` of this command in the instance's directory (with the same
    /// environment, including `PORT`) passes when it exits 0. Must not be empty.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(length(min = 1))]
    pub command: String,
    /// The status code an `http` check expects, 100 to 599. Only for `http` checks.
    #[serde(default)]
    #[schemars(range(min = 100, max = 599), extend("default" = 200))]
    pub expect: u16,
    /// Time limit of one check; longer counts as a failure. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "2s"))]
    pub timeout: String,
    /// Time between checks. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "1s"))]
    pub interval: String,
    /// Readiness: consecutive passes before an instance gets traffic, 1 to 100.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100), extend("default" = 1))]
    pub success_threshold: u32,
    /// Liveness: consecutive failures before a ready instance is restarted, 1 to 100.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100), extend("default" = 3))]
    pub failure_threshold: u32,
    /// Wait after an instance starts before its first check, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "0s"))]
    pub initial_delay: String,
}

/// A deployment strategy: a name for the defaults, or a mapping with exactly one strategy
/// name as key and its parameters as value, e.g. `{rolling: {max_surge: 2}}`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum StrategyForm {
    /// Short form: `rolling` or `blue_green` with default parameters. (`canary` needs its
    /// `steps`, so it only has the long form.)
    Name(StrategyName),
    /// Long form: one strategy with parameters.
    Params(Strategy),
}

/// A strategy that can be named without parameters.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StrategyName {
    /// Rolling with `max_surge: 1`, `max_unavailable: 0`.
    Rolling,
    /// Blue-green with `keep_warm: 5m`, `preview: false`, `auto_promote: true`.
    BlueGreen,
}

/// One strategy with its parameters.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Strategy {
    /// Replace instances a few at a time.
    Rolling(Rolling),
    /// Start a complete new set next to the old one and switch all traffic at once.
    BlueGreen(BlueGreen),
    /// Shift traffic to the new release in weighted steps, judging it at each step.
    Canary(Canary),
}

/// Rolling: new instances are started and old ones stopped a few at a time, each new one
/// getting traffic once ready. `max_surge` and `max_unavailable` cannot both be 0 (no
/// instance could ever be replaced).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rolling {
    /// How many instances may run above `replicas` during the deployment, 0 to 64.
    #[serde(default)]
    #[schemars(range(min = 0, max = 64), extend("default" = 1))]
    pub max_surge: u32,
    /// How many of `replicas` may be unready at once during the deployment, 0 to 64.
    #[serde(default)]
    #[schemars(range(min = 0, max = 64), extend("default" = 0))]
    pub max_unavailable: u32,
}

/// Blue-green: the new release (green) is started in full next to the running one (blue);
/// once every green instance is ready, all new requests switch to green at once and blue
/// is drained.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlueGreen {
    /// How long blue keeps running after the switch, so a rollback is instant; at most
    /// `24h`, `0s` stops it once drained.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5m"))]
    pub keep_warm: String,
    /// Serve green on the environment's `preview` address before the switch (which then
    /// must be set).
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub preview: bool,
    /// Switch as soon as green is ready; `false` waits for `sluice promote` or the UI.
    #[serde(default)]
    #[schemars(extend("default" = true))]
    pub auto_promote: bool,
}

/// Canary: traffic moves to the new release in steps; at each step the proxy's counts for
/// the new release are judged against `analysis`, and a failed judgement returns all
/// traffic to the running release (rollback).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Canary {
    /// The steps, at least one. Weights strictly increase from step to step, within 1 to
    /// 100. When the last weight is below 100, the new release gets 100% after the last
    /// step passes (the final promotion is implicit).
    #[schemars(length(min = 1))]
    pub steps: Vec<CanaryStep>,
    /// The thresholds the new release is judged by.
    #[serde(default)]
    #[schemars(with = "Analysis")]
    pub analysis: Option<Analysis>,
    /// Requests that always go to the new release (for "release to a small group first"),
    /// whatever the step's weight.
    #[serde(default)]
    #[schemars(with = "Sticky")]
    pub sticky: Option<Sticky>,
}

/// One canary step.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanaryStep {
    /// Percentage of requests sent to the new release, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: u32,
    /// How long to stay at this weight, judging the new release, before the next step; at
    /// most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "0s"))]
    pub pause: String,
}

/// Canary analysis: every `interval`, the new release's requests since the step began are
/// judged; a failed judgement rolls back.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Analysis {
    /// Highest acceptable share of 5xx responses (and failed connections), 0 to 1.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1), extend("default" = 0.05))]
    pub max_error_rate: f64,
    /// Highest acceptable response latency at `quantile`, more than zero, at most `24h`.
    /// Absent means latency is not judged.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_latency: String,
    /// The latency quantile judged against `max_latency`, strictly between 0 and 1 (0.99
    /// is p99).
    #[serde(default)]
    #[schemars(extend("default" = 0.99, "exclusiveMinimum" = 0, "exclusiveMaximum" = 1))]
    pub quantile: f64,
    /// The fewest requests to the new release needed to judge it.
    #[serde(default)]
    #[schemars(extend("default" = 20))]
    pub min_requests: u64,
    /// What happens while there are fewer than `min_requests`.
    #[serde(default)]
    #[schemars(extend("default" = "wait"))]
    pub insufficient_traffic: InsufficientTraffic,
    /// With `insufficient_traffic: wait`: the longest a step is extended waiting for
    /// traffic before the canary fails. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5m"))]
    pub max_wait: String,
    /// Time between judgements. More than zero, at most `24h`.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5s"))]
    pub interval: String,
}

/// The policy when a canary gets too little traffic to judge.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InsufficientTraffic {
    /// Hold the step until `min_requests` arrive, at most `max_wait`; then fail.
    #[default]
    Wait,
    /// Judge the window as passed.
    Pass,
    /// Judge the window as failed (roll back).
    Fail,
}

/// Requests carrying this header or cookie value always go to the new release. Give
/// exactly one of `header` and `cookie`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sticky {
    /// Name of a request header, e.g. `X-Canary`.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(TOKEN_PATTERN))]
    pub header: String,
    /// Name of a cookie, e.g. `canary`.
    #[serde(default, skip_serializing_if = "no_default")]
    #[schemars(pattern(TOKEN_PATTERN))]
    pub cookie: String,
    /// The value that selects the new release (not empty); numbers and booleans are taken
    /// as written.
    pub value: EnvValue,
}

/// Marks a `#[serde(default)]` field whose absence means "not set" or "inherited" rather
/// than a value, so the schema and the reference show no default for it.
fn no_default<T>(_: &T) -> bool {
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn properties(schema: &Value) -> Vec<String> {
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    }

    /// The validator's field lists and the documented fields must be the same.
    #[test]
    fn validator_fields_match_the_schema() {
        let schema = crate::docs::schema_value();
        let defs = &schema["$defs"];
        assert_eq!(properties(&schema), sorted(CONFIG_FIELDS));
        for (name, fields) in DEFINITION_FIELDS {
            assert_eq!(properties(&defs[*name]), sorted(fields), "{name}");
        }
        let consts = |def: &Value| -> Vec<String> {
            def["oneOf"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v["const"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(consts(&defs["RetryOn"]), RETRY_ON_VALUES);
        assert_eq!(consts(&defs["FailOn"]), FAIL_ON_VALUES);
        assert_eq!(consts(&defs["Runtime"]), RUNTIME_VALUES);
        let kinds: Vec<String> = defs["Step"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|alt| alt["required"][0].as_str().map(str::to_owned))
            .collect();
        assert_eq!(kinds, STEP_KINDS);
        assert_eq!(
            consts(&defs["InsufficientTraffic"]),
            INSUFFICIENT_TRAFFIC_VALUES
        );
        let mut long: Vec<String> = defs["Strategy"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(properties)
            .collect();
        long.sort();
        assert_eq!(long, sorted(STRATEGY_NAMES));
        assert_eq!(consts(&defs["StrategyName"]), ["rolling", "blue_green"]);
    }

    /// What the parser accepts, the typed schema structs accept too (and the reverse for
    /// unknown fields), so the schema describes the real format.
    #[test]
    fn schema_types_accept_what_the_parser_accepts() {
        let example = crate::docs::EXAMPLE;
        assert!(crate::parse(example, "f").is_ok());
        let typed = |text: &str| {
            let options = serde_saphyr::options! { strict_booleans: true };
            serde_saphyr::from_str_with_options::<SluiceYml>(text, options)
        };
        let typed_example = typed(example).unwrap();
        assert_eq!(typed_example.project, "shop");
        let bad = example.replace("needs: [lint]", "nedds: [lint]");
        assert!(crate::parse(&bad, "f").is_err());
        assert!(typed(&bad).is_err());
    }
}

/// Incident settings of the project.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Alerts {
    /// Label names whose values, besides the service, put alerts into the same incident
    /// (e.g. `[alertname]`). Alerts of one service with the same values of these labels
    /// group into one incident.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub group_by: Vec<String>,
    /// How long after an incident opens its first notification waits, so that alerts that
    /// arrive together are sent together (`0s` notifies at once).
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "10s"))]
    pub group_wait: String,
    /// Least time between two notifications about alerts joining an open incident (sent to
    /// channels; people are paged again only when the severity rises).
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5m"))]
    pub group_interval: String,
    /// An alert joins the open incident of its group only if that incident's last alert
    /// came at most this long ago; otherwise it opens a new incident.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "1h"))]
    pub group_window: String,
    /// The escalation policy (a name under `oncall.escalation`) that pages people when an
    /// incident of this project is notified.
    #[serde(default)]
    pub escalation: Option<String>,
    /// Channels that receive every notification of this project's incidents, by name.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub channels: BTreeMap<String, Channel>,
    /// Where the record of a resolved incident (a Markdown postmortem draft and the JSON
    /// timeline) is posted, e.g. a ticket system's webhook.
    #[serde(default)]
    pub ticket: Option<Ticket>,
    /// Alert rules over the services' metrics, by name (the alert's `alertname`).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub rules: BTreeMap<String, AlertRule>,
    /// Events per minute the PagerDuty-compatible endpoint accepts per routing key; more are
    /// answered 429, as PagerDuty does.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000000), extend("default" = 600))]
    pub rate_limit: u32,
    /// When an alert counts as flapping: changing state (firing, resolved) too often. A
    /// flapping alert's incident was notified once and hears nothing more from it; its
    /// resolves wait (the alert and its incident stay open) until it has been stable for the
    /// window. See docs/incidents.md.
    #[serde(default)]
    pub flapping: Option<Flapping>,
}

/// Flap detection settings.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Flapping {
    /// The window state changes are counted in; a flapping alert stops flapping once it has
    /// not changed state for this long.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "10m"))]
    pub window: String,
    /// State changes within the window at which an alert is flapping (an alert's opening
    /// counts as one: 4 is two fire/resolve cycles).
    #[serde(default)]
    #[schemars(range(min = 2, max = 1000), extend("default" = 4))]
    pub changes: u32,
}

/// A notification channel: exactly one of `webhook`, `slack` and `email`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Channel {
    /// POST a JSON body to this http(s) URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The name of the secret holding a Slack-compatible incoming-webhook URL.
    #[serde(default)]
    #[schemars(pattern(SECRET_NAME_PATTERN))]
    pub slack: Option<String>,
    /// Email these addresses (through the server's SMTP settings).
    #[serde(default)]
    pub email: Option<Vec<String>>,
    /// For `webhook`: `sluice` (sluice's own JSON, the default) or `alertmanager`
    /// (Alertmanager's webhook format, version 4).
    #[serde(default)]
    #[schemars(extend("enum" = ["sluice", "alertmanager"], "default" = "sluice"))]
    pub format: Option<String>,
    /// For `webhook`: the secret whose value signs the body (`X-Sluice-Signature`,
    /// HMAC-SHA256).
    #[serde(default)]
    #[schemars(pattern(SECRET_NAME_PATTERN))]
    pub secret: Option<String>,
}

/// The ticket webhook that receives a resolved incident's record.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ticket {
    /// The http(s) URL to POST to.
    pub url: String,
    /// `sluice` (the default) or `alertmanager`.
    #[serde(default)]
    #[schemars(extend("enum" = ["sluice", "alertmanager"], "default" = "sluice"))]
    pub format: Option<String>,
    /// The secret whose value signs the body.
    #[serde(default)]
    #[schemars(pattern(SECRET_NAME_PATTERN))]
    pub secret: Option<String>,
}

/// An alert rule over a service's metrics: the alert fires when `expr` holds for `for`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertRule {
    /// The service whose metrics are watched.
    pub service: String,
    /// The environment watched; absent: every environment the service is deployed to.
    #[serde(default)]
    pub env: Option<String>,
    /// The condition: a metric, a comparison and a threshold. Proxy metrics:
    /// `error_rate`, `request_rate`, `p50_latency`, `p90_latency`, `p95_latency`,
    /// `p99_latency` (seconds); the service's own Prometheus metrics through
    /// `rate(NAME{matchers})`, `avg(NAME)`, `max(NAME)`, `min(NAME)`, `last(NAME)` and
    /// `histogram_quantile(Q, NAME)`. E.g. `error_rate > 0.05`.
    pub expr: String,
    /// The window the metric is computed over.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "5m"))]
    pub window: String,
    /// How long the condition must hold before the alert fires (`0s`: at once).
    #[serde(default, rename = "for")]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "0s"))]
    pub hold: String,
    /// `critical`, `error`, `warning` or `info`.
    #[serde(default)]
    #[schemars(extend("enum" = ["critical", "error", "warning", "info"], "default" = "warning"))]
    pub severity: Option<String>,
    /// Extra labels of the alert (used by `group_by` and silences).
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub labels: BTreeMap<String, String>,
    /// The alert's summary line; absent: the rule's name and expression.
    #[serde(default)]
    pub summary: Option<String>,
    /// For expressions over the service's own metrics: the path of its Prometheus text
    /// endpoint, scraped on every ready instance at each evaluation (by default
    /// `http://127.0.0.1:PORT/metrics`). A failed scrape is no data: the alert neither fires
    /// nor resolves on it.
    #[serde(default)]
    #[schemars(pattern(METRICS_PATH_PATTERN), extend("default" = "/metrics"))]
    pub metrics_path: Option<String>,
}

/// On-call schedules and escalation policies.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnCall {
    /// Schedules by name.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub schedules: BTreeMap<String, Schedule>,
    /// Escalation policies by name.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub escalation: BTreeMap<String, Escalation>,
}

/// Who is on call when: layers of rotations, read in a named time zone.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Schedule {
    /// The IANA time zone the layers' start times and restrictions are read in, e.g.
    /// `Europe/Berlin`. Daily and weekly handoffs keep their local time across
    /// daylight-saving changes.
    pub time_zone: String,
    /// Layers from bottom to top: a higher layer wins wherever it has someone on call.
    pub layers: Vec<Layer>,
}

/// One rotation of users.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Layer {
    /// Name, unique in the schedule.
    pub name: String,
    /// Users in rotation order; the first is on call from `start`.
    pub users: Vec<String>,
    /// `daily`, `weekly`, or `{hours: N}` for a rotation of N hours of elapsed time.
    pub rotation: serde_json::Value,
    /// The first handoff, local time in the schedule's zone, e.g. `2026-01-05T09:00`.
    pub start: String,
    /// Windows in which the layer is active (e.g. weekdays 09:00-17:00); absent: always.
    #[serde(default)]
    pub restrictions: Vec<Restriction>,
}

/// A local time-of-day window.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Restriction {
    /// Days on which it opens (`monday` ... `sunday`); absent: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Opening time, `HH:MM`.
    pub start: String,
    /// Closing time, `HH:MM` (earlier than `start`: the next day).
    pub end: String,
}

/// An escalation policy: levels paged in order until someone acknowledges.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Escalation {
    /// Levels, 1 to 20.
    pub levels: Vec<EscalationLevel>,
    /// How many more times the whole policy runs after its last level (0 to 100).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100), extend("default" = 0))]
    pub repeat: u32,
}

/// One escalation level.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscalationLevel {
    /// Who is paged: `user:NAME` or `schedule:NAME` (whoever is on call then).
    pub notify: Vec<String>,
    /// How long to wait for an acknowledgement before the next level.
    #[serde(default)]
    #[schemars(pattern(DURATION_PATTERN), extend("default" = "15m"))]
    pub after: String,
}
