//! Service runtime for sluice: runs instances of a release and keeps them alive.
//!
//! An instance is one copy of a service: a release artifact unpacked into its own
//! directory, a start command, an assigned port (`PORT`) and declared environment
//! ([`InstanceSpec`]). A [`Runtime`] starts instances, supervises them (readiness and
//! liveness through a [`HealthPolicy`], restarts with backoff through a [`RestartPolicy`]),
//! stops them gracefully, reports their [`InstanceStatus`], and after a crash of the control
//! plane re-adopts the ones that are still running ([`Runtime::adopt`]).
//!
//! [`ProcessRuntime`] is the embedded driver: every instance is a host process group in its
//! own session, logging into a file, so it outlives the control plane. [`DockerRuntime`]
//! runs every instance as a container through the Docker Engine API (`sluice-docker`),
//! labelled so that a restarted control plane re-adopts it. Both share one supervision loop
//! (`supervisor.rs`), so health, restart, backoff, crash-loop and stop semantics are
//! identical; [`Runtime::usage`] reports CPU and memory for autoscaling.
//!
//! Architecture invariant: this crate knows nothing of the store, HTTP APIs, the spec
//! (`sluice.yml`) or deployment strategies. It receives plain [`InstanceSpec`]s and reports
//! plain statuses; the deploy controller decides what should run, the runtime only makes it
//! run and says how it is doing. It never blocks the async runtime: unpacking, state
//! records and `/proc` scans run on `spawn_blocking`.

mod docker;
mod health;
mod process;
mod procfs;
mod session;
mod spec;
mod state;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use docker::{APP_DIR, DockerRuntime, LABEL_RUNTIME, LABEL_SPEC, LABEL_TOKEN};
pub use health::http_status;
pub use process::ProcessRuntime;
pub use spec::{
    HealthCheck, HealthPolicy, INSTANCE_TOKEN_VAR, InstanceSpec, MAX_ID_LEN, MIN_MEMORY_BYTES,
    PORT_VAR, ResourceLimits, RestartPolicy, validate_id,
};

/// An instance that has stayed ready this long has its consecutive-restart count reset, so
/// an occasional crash of a long-running service never adds up to a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(120);

/// Where an instance is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstanceState {
    /// The process runs but has not passed its readiness checks (yet).
    Starting,
    /// Ready: passed `success_threshold` consecutive checks; may receive traffic.
    Ready,
    /// Was ready, then failed a check; out of traffic until it passes `success_threshold`
    /// checks again, restarted after `failure_threshold` consecutive failures.
    Unhealthy,
    /// The process exited or failed liveness; waiting out the backoff before consecutive
    /// restart number `attempt`.
    Restarting {
        /// 1-based consecutive restart number.
        attempt: u32,
    },
    /// Restarts exhausted (`max_restarts` consecutive restarts failed); no process runs.
    CrashLoop,
    /// The process exited and the policy says not to restart (`max_restarts` is 0); no
    /// process runs. `code` is `None` when it was killed by a signal or was adopted (a
    /// process we did not fork cannot be waited for).
    Exited {
        /// Exit code, when known.
        code: Option<i32>,
    },
    /// A stop was requested; the process group is being terminated.
    Stopping,
    /// Stopped by request; no process runs, the state record is gone, the log is kept.
    Stopped,
}

impl InstanceState {
    /// Whether a process of this instance may be running (or about to be restarted).
    pub fn is_active(&self) -> bool {
        !matches!(
            self,
            InstanceState::CrashLoop | InstanceState::Exited { .. } | InstanceState::Stopped
        )
    }
}

/// A snapshot of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Instance id.
    pub id: String,
    /// Service name from the spec.
    pub service: String,
    /// Environment name from the spec.
    pub env: String,
    /// Release version from the spec.
    pub version: String,
    /// Port the instance listens on.
    pub port: u16,
    /// Host pid of the main process while one runs: for a process, also its process group
    /// and session id; for a container, its init process.
    pub pid: Option<i32>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// Whether the instance should receive traffic right now (`state == Ready`).
    pub ready: bool,
    /// Restarts since the instance was started (adoption keeps the count).
    pub restarts: u32,
    /// When the current (or last) process started, epoch milliseconds.
    pub started_ms: i64,
    /// The most recent failure: a failed check, an exit, a restart that could not spawn.
    pub last_error: Option<String>,
    /// When the instance last became ready, epoch milliseconds; `None` while not ready.
    #[serde(default)]
    pub ready_since_ms: Option<i64>,
}

/// CPU and memory figures of one running instance ([`Runtime::usage`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU cores used, averaged since the previous sample of this instance: 0.5 is half a
    /// core busy. The first call for an instance (or after a restart) takes two samples a
    /// quarter of a second apart.
    pub cpu_cores: f64,
    /// Memory in use, bytes: resident memory of the process group, or a container's memory
    /// without its reclaimable page cache (as `docker stats` shows it).
    pub memory_bytes: u64,
    /// The instance's CPU limit, if it has one (`ResourceLimits::cpus`).
    pub cpu_limit: Option<f64>,
    /// The instance's memory limit, if it has one (`ResourceLimits::memory_bytes`).
    pub memory_limit: Option<u64>,
    /// When the sample was taken, epoch milliseconds.
    pub sampled_ms: i64,
}

/// What [`Runtime::adopt`] found for one state record or stray process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adopted {
    /// Instance id (for a stray process: its token minus the runtime's prefix; for a stray
    /// container: its name).
    pub id: String,
    /// The recorded or found pid.
    pub pid: Option<i32>,
    /// What happened to it.
    pub outcome: AdoptOutcome,
    /// The spec from the record (absent for stray processes and unreadable records).
    pub spec: Option<InstanceSpec>,
}

/// The fate of one instance found by [`Runtime::adopt`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AdoptOutcome {
    /// Still running with our token: supervised again, without a restart.
    Running,
    /// The recorded process is gone (or its pid now belongs to another process); the
    /// record was removed and any leftover processes carrying its token were killed. For
    /// Docker: the labelled container was not running; it was removed.
    Dead,
    /// A process carrying this runtime's token but without a state record (the control
    /// plane died between spawning it and recording it): killed. For Docker: a container
    /// with this runtime's label but no valid token or spec label: removed.
    StrayKilled,
    /// The record could not be read; it was renamed to `<id>.json.bad` for inspection.
    Unreadable {
        /// Why it could not be used.
        reason: String,
    },
}

/// Errors of the runtime. Messages are lower-case and say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An instance id that cannot be used as a file name.
    #[error(
        "invalid instance id {id:?}: {reason}; use 1-128 characters from [a-z0-9-_.], not starting with '.'"
    )]
    InvalidId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of the spec is unusable.
    #[error("invalid spec for instance {id}: {field}: {reason}")]
    InvalidSpec {
        /// Instance id.
        id: String,
        /// Field path, e.g. `health.check.path`.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The token prefix given to [`ProcessRuntime::new`] is unusable.
    #[error("invalid token prefix {prefix:?}: {reason}")]
    InvalidTokenPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An instance with this id is already running; stop it first or pick another id.
    #[error("instance {id} is already running; stop it first or use another id")]
    AlreadyRunning {
        /// Instance id.
        id: String,
    },
    /// Something already listens on the port.
    #[error(
        "port {port} for instance {id} is already in use; pick a free port (free_port) or stop what listens there"
    )]
    PortInUse {
        /// Instance id.
        id: String,
        /// The port.
        port: u16,
    },
    /// The artifact could not be unpacked.
    #[error("could not unpack the artifact of instance {id}: {source}")]
    Artifact {
        /// Instance id.
        id: String,
        /// The underlying error.
        #[source]
        source: sluice_runner::ArtifactError,
    },
    /// The working directory named in the spec is not a directory of the artifact.
    #[error(
        "workdir {workdir:?} of instance {id} is not a directory inside the unpacked artifact; fix `workdir` or the artifact"
    )]
    Workdir {
        /// Instance id.
        id: String,
        /// The workdir as given.
        workdir: String,
    },
    /// The operating system refused to start the process.
    #[error(
        "could not start instance {id} with /bin/sh: {source}; check that /bin/sh exists and the environment is valid"
    )]
    Spawn {
        /// Instance id.
        id: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A filesystem operation failed.
    #[error(
        "could not {action} {path}: {source}; check that the directory exists and is writable by sluice"
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Docker daemon refused or could not be reached; the message of `source` says
    /// which daemon and what to do.
    #[error("docker could not {action} for instance {id}: {source}")]
    Docker {
        /// Instance id (`*` for calls about all instances, such as adoption).
        id: String,
        /// What was being done, e.g. `create the container`.
        action: &'static str,
        /// The client's error.
        #[source]
        source: sluice_docker::DockerError,
    },
    /// A blocking task failed (it panicked or the runtime is shutting down).
    #[error("internal error in the runtime: {0}")]
    Internal(String),
}

/// A driver that runs service instances (processes today, containers in #5).
///
/// Implementations supervise every started instance until it is stopped: readiness and
/// liveness per its [`HealthPolicy`], restarts per its [`RestartPolicy`]. Status changes
/// bump the counter returned by [`Runtime::subscribe`].
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Starts an instance and supervises it (health, restarts) until stopped. Returns once
    /// the process was spawned (not ready); readiness shows in [`Runtime::status`].
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError>;

    /// Graceful stop: SIGTERM (or the driver's equivalent), a hard kill after the spec's
    /// `stop_grace`, and waits until nothing of the instance runs. Unknown id: `Ok`
    /// (idempotent). The instance stays listed as [`InstanceState::Stopped`] until
    /// [`Runtime::forget`] or a new start with the same id.
    async fn stop(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes a no-longer-active instance (stopped, crash-looped, exited) from the list.
    /// Returns whether it was removed; an active instance is left alone (stop it first).
    fn forget(&self, id: &str) -> bool;

    /// The current status of an instance, if the runtime knows it.
    fn status(&self, id: &str) -> Option<InstanceStatus>;

    /// Statuses of all known instances, sorted by id.
    fn list(&self) -> Vec<InstanceStatus>;

    /// Re-attaches to instances a previous (crashed) control plane started, from the state
    /// directory: live ones (pid alive and carrying this instance's token) are supervised
    /// again without a restart; dead ones are reported and their records removed; stray
    /// processes with this runtime's token but no record are killed. Returns what it found.
    /// (The Docker runtime reads the same from its containers' labels instead of a state
    /// directory.)
    ///
    /// Meant for start-up, before new instances are started; calling it again is harmless
    /// (instances already supervised are skipped).
    async fn adopt(&self) -> Result<Vec<Adopted>, RuntimeError>;

    /// Path of the instance's combined stdout/stderr log file.
    fn log_path(&self, id: &str) -> PathBuf;

    /// A counter bumped on every status change, so callers can wake on readiness changes
    /// instead of polling.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// CPU and memory of a running instance (for autoscaling): from `/proc` for a process
    /// group, from the stats API for a container. `None` when the instance is unknown, not
    /// running, or cannot be sampled right now. Each call is a sample; `cpu_cores` is
    /// averaged since the previous call for the same instance.
    async fn usage(&self, id: &str) -> Option<Usage>;

    /// Emergency stop without grace: every instance of this runtime (supervised or found
    /// by its token) is killed, supervisors are aborted, instances are marked stopped.
    /// Returns the host pids killed. Synchronous (usable from `Drop`); it blocks for the
    /// scan or the daemon's answers, so call it from `spawn_blocking` on a busy runtime.
    fn kill_all(&self) -> Vec<i32>;
}

/// Returns a port that was free on 127.0.0.1 a moment ago (bind to port 0, read, release).
///
/// Another process may take it before it is used; [`Runtime::start`] checks again and
/// fails with [`RuntimeError::PortInUse`] rather than starting an instance that cannot bind.
pub fn free_port() -> Result<u16, RuntimeError> {
    let io = |source| RuntimeError::Io {
        action: "bind a free port on",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
