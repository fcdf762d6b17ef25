//! What an instance is: [`InstanceSpec`] with its health and restart policies, and the
//! validation that runs before anything touches the disk or starts a process.
//!
//! Durations serialise as whole milliseconds (`"timeout_ms": 500`) so state records and API
//! payloads stay readable; the Rust side keeps [`Duration`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The environment variable that carries an instance's token (`<token_prefix><id>`) into
/// its processes, so a restarted control plane can tell its own processes from strangers.
pub const INSTANCE_TOKEN_VAR: &str = "SLUICE_INSTANCE_TOKEN";

/// The environment variable that carries [`InstanceSpec::port`].
pub const PORT_VAR: &str = "PORT";

/// Longest accepted instance id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// How readiness and liveness of an instance are probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthCheck {
    /// `GET path` on `127.0.0.1:PORT` over HTTP/1.1; healthy when the response status
    /// equals `expect_status` within `timeout`.
    Http {
        /// Request path; must start with `/` and contain no whitespace or control characters.
        path: String,
        /// The status code that means healthy, e.g. 200.
        expect_status: u16,
        /// Limit for connecting, sending and reading the status line.
        #[serde(rename = "timeout_ms", with = "millis")]
        timeout: Duration,
    },
    /// A TCP connect to `127.0.0.1:PORT` succeeds within `timeout`.
    Tcp {
        /// Limit for the connect.
        #[serde(rename = "timeout_ms", with = "millis")]
        timeout: Duration,
    },
    /// `sh -c run` in the instance's working directory, with the instance's environment,
    /// exits 0 within `timeout` (its whole process group is killed after the timeout).
    Command {
        /// Shell command line.
        run: String,
        /// Limit for the command.
        #[serde(rename = "timeout_ms", with = "millis")]
        timeout: Duration,
    },
    /// No probe: the instance is ready once it has been running for `initial_delay`, and
    /// only a process exit counts as a failure.
    None,
}

/// When an instance counts as ready, and when a ready instance counts as dead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    /// The probe.
    pub check: HealthCheck,
    /// Time between the starts of two probes; must be positive.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Readiness: this many consecutive successes make the instance ready (at least 1).
    pub success_threshold: u32,
    /// Liveness: once the instance was ready, this many consecutive failures get it killed
    /// and restarted (at least 1). Failures before the first readiness never restart it:
    /// a release that never becomes healthy is the deploy controller's call (its progress
    /// deadline), not the runtime's.
    pub failure_threshold: u32,
    /// Wait this long after the process started before the first probe.
    #[serde(rename = "initial_delay_ms", with = "millis")]
    pub initial_delay: Duration,
}

/// How a process that exited (or failed liveness) is restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// Consecutive restarts allowed; the next failure after that ends in
    /// [`crate::InstanceState::CrashLoop`] (or [`crate::InstanceState::Exited`] when this
    /// is 0, meaning "never restart"). The count starts again once the instance has stayed
    /// ready for [`crate::STABLE_AFTER`].
    pub max_restarts: u32,
    /// Wait before the first restart; each further consecutive restart waits twice as long.
    #[serde(rename = "backoff_initial_ms", with = "millis")]
    pub backoff_initial: Duration,
    /// Upper bound of the wait between restarts.
    #[serde(rename = "backoff_max_ms", with = "millis")]
    pub backoff_max: Duration,
}

impl RestartPolicy {
    /// The wait before consecutive restart number `attempt` (1-based):
    /// `backoff_initial * 2^(attempt-1)`, capped at `backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// Everything needed to run one instance of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Unique id; also the name of the instance's directory, log file and state record.
    /// Allowed: 1 to [`MAX_ID_LEN`] characters from `[a-z0-9-_.]`, not starting with `.`.
    pub id: String,
    /// Service name (informational; reported back in statuses).
    pub service: String,
    /// Environment name (informational).
    pub env: String,
    /// Release version (informational).
    pub version: String,
    /// The release artifact: a tar made by `sluice_runner::pack`, unpacked into the
    /// instance directory.
    pub artifact: PathBuf,
    /// Run as `sh -c COMMAND` in the unpacked directory (or [`InstanceSpec::workdir`]).
    pub command: String,
    /// Optional relative directory inside the unpacked artifact to run in.
    pub workdir: Option<String>,
    /// The port the instance must listen on (127.0.0.1), passed as `PORT`.
    pub port: u16,
    /// Declared environment. The process gets exactly these plus `PORT` and
    /// [`INSTANCE_TOKEN_VAR`], and `PATH`, `HOME` (the instance directory) and `LANG`
    /// when not declared; nothing is inherited from the control plane.
    pub env_vars: BTreeMap<String, String>,
    /// Readiness and liveness.
    pub health: HealthPolicy,
    /// Restarts.
    pub restart: RestartPolicy,
    /// On stop or liveness failure: SIGTERM to the process group, SIGKILL after this long.
    #[serde(rename = "stop_grace_ms", with = "millis")]
    pub stop_grace: Duration,
    /// Docker runtime only: run this image (`repo:tag` or an image id) instead of the
    /// runtime's base image with the unpacked artifact mounted. `command` then runs as
    /// `sh -c COMMAND` in it, or, when `command` is empty, the image's own entrypoint and
    /// command run. The process runtime refuses a spec with an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory limits: enforced by the Docker runtime, reported (not enforced) by
    /// the process runtime.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// Host directories a container sees at the same path (e.g. the instance's private
    /// secret files, which its start command reads); absolute. The process runtime runs on
    /// the host's filesystem and ignores them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<PathBuf>,
}

/// Resource limits of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPUs the instance may use (e.g. 0.5 or 2); `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory the instance may use, bytes (at least [`MIN_MEMORY_BYTES`]); `None` is
    /// unlimited. A container that exceeds it is OOM-killed and restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// [`InstanceSpec::validate`] refuses NaN and infinite CPU limits, so equality is total.
impl Eq for ResourceLimits {}

/// The smallest memory limit accepted (Docker refuses less than 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// Checks an instance id: `[a-z0-9-_.]`, 1 to [`MAX_ID_LEN`] bytes, no leading `.` (which
/// also rules out `.` and `..`). Ids become file names, so anything else is refused.
pub fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let bad = |reason: &str| RuntimeError::InvalidId {
        id: id.to_owned(),
        reason: reason.to_owned(),
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(bad("it is longer than 128 characters"));
    }
    if id.starts_with('.') {
        return Err(bad("it starts with '.'"));
    }
    if !id.bytes().all(is_id_byte) {
        return Err(bad(
            "only lower-case letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    Ok(())
}

/// Whether `b` may appear in an instance id.
pub(crate) fn is_id_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
}

impl InstanceSpec {
    /// Whether the release artifact is unpacked and mounted into the instance: always without
    /// an image; with an image only when an artifact is named (a named image as the
    /// environment the artifact runs in), not for an image that is the release itself (an
    /// empty `artifact` path).
    pub fn mounts_artifact(&self) -> bool {
        self.image.is_none() || !self.artifact.as_os_str().is_empty()
    }

    /// Validates everything that can be checked without touching the disk: the id, the
    /// command, the working directory, the environment, the health and restart policies.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        validate_id(&self.id)?;
        let bad = |field: &str, reason: String| RuntimeError::InvalidSpec {
            id: self.id.clone(),
            field: field.to_owned(),
            reason,
        };
        if self.command.trim().is_empty() && self.image.is_none() {
            return Err(bad("command", "it is empty".to_owned()));
        }
        if let Some(image) = &self.image
            && (image.trim().is_empty()
                || image
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()))
        {
            return Err(bad(
                "image",
                format!("{image:?} is not an image reference; use repo:tag or an image id"),
            ));
        }
        if let Some(m) = self.mounts.iter().find(|m| !m.is_absolute()) {
            return Err(bad(
                "mounts",
                format!("{} is not an absolute path", m.display()),
            ));
        }
        if let Some(cpus) = self.limits.cpus
            && !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0)
        {
            return Err(bad(
                "limits.cpus",
                format!("{cpus} is not a CPU count; use a positive number such as 0.5 or 2"),
            ));
        }
        if let Some(bytes) = self.limits.memory_bytes
            && !(MIN_MEMORY_BYTES..=i64::MAX as u64).contains(&bytes)
        {
            return Err(bad(
                "limits.memory_bytes",
                format!("{bytes} bytes is below the minimum of {MIN_MEMORY_BYTES} (6 MiB)"),
            ));
        }
        if self.command.contains('\0') {
            return Err(bad("command", "it contains a NUL byte".to_owned()));
        }
        if self.port == 0 {
            return Err(bad(
                "port",
                "port 0 cannot be health-checked; pick a free port (see free_port)".to_owned(),
            ));
        }
        if let Some(dir) = &self.workdir {
            relative_inside(dir).map_err(|reason| bad("workdir", reason))?;
        }
        for (name, value) in &self.env_vars {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(bad(
                    "env_vars",
                    format!("{name:?} is not a valid variable name"),
                ));
            }
            if value.contains('\0') {
                return Err(bad(
                    "env_vars",
                    format!("the value of {name} has a NUL byte"),
                ));
            }
            if name == PORT_VAR || name == INSTANCE_TOKEN_VAR {
                return Err(bad(
                    "env_vars",
                    format!("{name} is set by the runtime; remove it from env_vars"),
                ));
            }
        }
        let health = &self.health;
        if health.interval.is_zero() {
            return Err(bad("health.interval", "it must be positive".to_owned()));
        }
        if health.success_threshold == 0 {
            return Err(bad(
                "health.success_threshold",
                "it must be at least 1".to_owned(),
            ));
        }
        if health.failure_threshold == 0 {
            return Err(bad(
                "health.failure_threshold",
                "it must be at least 1".to_owned(),
            ));
        }
        match &health.check {
            HealthCheck::Http {
                path,
                expect_status,
                timeout,
            } => {
                if !path.starts_with('/')
                    || path
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                {
                    return Err(bad(
                        "health.check.path",
                        format!(
                            "{path:?} must start with '/' and contain no spaces or control characters"
                        ),
                    ));
                }
                if !(100..=599).contains(expect_status) {
                    return Err(bad(
                        "health.check.expect_status",
                        format!("{expect_status} is not an HTTP status code"),
                    ));
                }
                positive(timeout).map_err(|r| bad("health.check.timeout", r))?;
            }
            HealthCheck::Tcp { timeout } => {
                positive(timeout).map_err(|r| bad("health.check.timeout", r))?;
            }
            HealthCheck::Command { run, timeout } => {
                if run.trim().is_empty() || run.contains('\0') {
                    return Err(bad(
                        "health.check.run",
                        "it is empty or has a NUL byte".to_owned(),
                    ));
                }
                positive(timeout).map_err(|r| bad("health.check.timeout", r))?;
            }
            HealthCheck::None => {}
        }
        if self.restart.backoff_max < self.restart.backoff_initial {
            return Err(bad(
                "restart.backoff_max",
                "it is smaller than restart.backoff_initial".to_owned(),
            ));
        }
        Ok(())
    }

    /// The token put into the instance's environment as [`INSTANCE_TOKEN_VAR`].
    pub(crate) fn token(&self, token_prefix: &str) -> String {
        format!("{token_prefix}{}", self.id)
    }
}

fn positive(d: &Duration) -> Result<(), String> {
    if d.is_zero() {
        Err("it must be positive".to_owned())
    } else {
        Ok(())
    }
}

/// Accepts a relative path made only of normal components (no `..`, no root, no `.` tricks).
fn relative_inside(dir: &str) -> Result<(), String> {
    if dir.is_empty() || dir.contains('\0') {
        return Err("it is empty or has a NUL byte".to_owned());
    }
    let path = Path::new(dir);
    if path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(())
    } else {
        Err(format!(
            "{dir:?} must be a relative path inside the artifact without '..'"
        ))
    }
}

/// Serde helper: [`Duration`] as whole milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> InstanceSpec {
        InstanceSpec {
            id: "web-1".into(),
            service: "web".into(),
            env: "staging".into(),
            version: "3".into(),
            artifact: PathBuf::from("/tmp/a.tar"),
            command: "exec sleep 100".into(),
            workdir: None,
            port: 8080,
            env_vars: BTreeMap::new(),
            health: HealthPolicy {
                check: HealthCheck::Http {
                    path: "/healthz".into(),
                    expect_status: 200,
                    timeout: Duration::from_millis(500),
                },
                interval: Duration::from_millis(100),
                success_threshold: 1,
                failure_threshold: 3,
                initial_delay: Duration::ZERO,
            },
            restart: RestartPolicy {
                max_restarts: 3,
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
            },
            stop_grace: Duration::from_secs(5),
            image: None,
            limits: ResourceLimits::default(),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "web-1", "web_1.v2", "0"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", "A", "a b", "a\0", ".hidden", &long,
        ] {
            assert!(
                matches!(validate_id(bad), Err(RuntimeError::InvalidId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(sample().validate().is_ok());
        let mut s = sample();
        s.workdir = Some("../up".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.workdir = Some("sub/dir".into());
        assert!(s.validate().is_ok());
        let mut s = sample();
        s.env_vars.insert("PORT".into(), "1".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.health.check = HealthCheck::Http {
            path: "/a b".into(),
            expect_status: 200,
            timeout: Duration::from_secs(1),
        };
        assert!(s.validate().is_err());
        let mut s = sample();
        s.health.success_threshold = 0;
        assert!(s.validate().is_err());
        // An empty command is fine only with an image (its own command runs).
        let mut s = sample();
        s.command = String::new();
        assert!(s.validate().is_err());
        s.image = Some("shop/web:v1".into());
        assert!(s.validate().is_ok());
        s.image = Some("has space".into());
        assert!(s.validate().is_err());
        for (cpus, ok) in [(0.5, true), (0.0, false), (-1.0, false), (f64::NAN, false)] {
            let mut s = sample();
            s.limits.cpus = Some(cpus);
            assert_eq!(s.validate().is_ok(), ok, "{cpus}");
        }
        let mut s = sample();
        s.limits.memory_bytes = Some(1 << 20);
        assert!(s.validate().is_err());
        s.limits.memory_bytes = Some(64 << 20);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = sample().restart;
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(6), Duration::from_secs(2));
        assert_eq!(p.backoff(40), Duration::from_secs(2));
    }

    #[test]
    fn specs_round_trip_through_json() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"timeout_ms\":500"), "{json}");
        let back: InstanceSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(!json.contains("image"), "absent fields stay out: {json}");
        // Records written before images and limits existed still load.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("limits");
        let back: InstanceSpec = serde_json::from_value(old).unwrap();
        assert_eq!(back, s);
        let mut s = sample();
        s.image = Some("shop/web:v1".into());
        s.limits = ResourceLimits {
            cpus: Some(1.5),
            memory_bytes: Some(128 << 20),
        };
        let back: InstanceSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
