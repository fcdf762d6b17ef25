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
}

/// A deployment target fed by one branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// Name, e.g. `staging`.
    pub name: String,
    /// Pushes to this branch run pipelines for this environment.
    pub branch: String,
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
