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
pub(crate) const CONFIG_FIELDS: &[&str] = &["project", "environments", "services"];
/// Fields of an environment.
pub(crate) const ENVIRONMENT_FIELDS: &[&str] = &["branch"];
/// Fields of a service.
pub(crate) const SERVICE_FIELDS: &[&str] = &["paths", "env", "steps"];
/// Fields of a step.
pub(crate) const STEP_FIELDS: &[&str] = &[
    "run",
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
/// Fields of the long form of `retry`.
pub(crate) const RETRY_FIELDS: &[&str] = &["max", "on", "delay"];
/// Fields of a cache entry.
pub(crate) const CACHE_FIELDS: &[&str] = &["paths", "key_files"];
/// Values of `retry.on`.
pub(crate) const RETRY_ON_VALUES: &[&str] = &["failure", "timeout"];

/// Names of projects.
pub(crate) const PROJECT_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]*$";
/// Names of environments, services and steps.
pub(crate) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// Environment variable names.
pub(crate) const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Secret names.
pub(crate) const SECRET_NAME_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Durations such as `90s`, `10m`, `1h30m` or `250ms`.
pub(crate) const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// The desired state of one repository: which branches feed which environments, and how
/// each service of the repository is built, tested and packed into a release. The file
/// is called `sluice.yml` and lives in the repository root.
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
}

/// A deployment target fed by one branch.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Environment {
    /// The branch whose pushes run pipelines for this environment (not empty). Two
    /// environments cannot share a branch.
    #[schemars(length(min = 1))]
    pub branch: String,
}

/// One deployable unit of the repository and the pipeline that builds it.
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

/// One command of a service's pipeline.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    /// The shell command, run with `sh -c` in the checkout. Must not be empty. A non-zero
    /// exit status fails the step.
    #[schemars(length(min = 1))]
    pub run: String,
    /// Names of steps of the same service that must succeed before this one starts. No
    /// cycles, and a step cannot need itself.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub needs: Vec<String>,
    /// A gate: when this step fails, no release is created from the pipeline.
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
    /// letters, digits and `_`, not starting with a digit.
    #[serde(default)]
    #[schemars(extend("default" = {}, "propertyNames" = {"pattern": ENV_NAME_PATTERN}))]
    pub env: BTreeMap<String, EnvValue>,
    /// Working directory, relative to the repository root; must not be absolute or leave
    /// the checkout with `..`. Absent means the repository root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    /// Glob patterns of JUnit XML reports the step writes; their test results are shown
    /// with the step.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub junit: Vec<String>,
    /// Glob patterns of files packed into the service's immutable release.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub artifacts: Vec<String>,
    /// Directories kept between runs of the step.
    #[serde(default)]
    #[schemars(extend("default" = []))]
    pub cache: Vec<Cache>,
    /// Names of server-side secrets to inject as environment variables of the same name
    /// (upper-case letters, digits and `_`). Their values never appear in logs.
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
        assert_eq!(properties(&defs["Environment"]), sorted(ENVIRONMENT_FIELDS));
        assert_eq!(properties(&defs["Service"]), sorted(SERVICE_FIELDS));
        assert_eq!(properties(&defs["Step"]), sorted(STEP_FIELDS));
        assert_eq!(properties(&defs["Retry"]), sorted(RETRY_FIELDS));
        assert_eq!(properties(&defs["Cache"]), sorted(CACHE_FIELDS));
        let on: Vec<&str> = defs["RetryOn"]["oneOf"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v["const"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(on, RETRY_ON_VALUES);
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
