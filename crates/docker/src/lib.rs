//! The Docker Engine API client sluice uses everywhere: image builds for pipeline steps,
//! containers for the Docker runtime and container steps, filesystem exports for the
//! vulnerability scanner.
//!
//! It speaks HTTP/1.1 to the daemon's unix socket (`DOCKER_HOST=unix://...` is honoured by
//! [`Docker::from_env`], the default is `/var/run/docker.sock`) with hyper, one connection per
//! request, against the fixed API version [`API_VERSION`] (1.41, Docker 20.10, the oldest
//! daemon sluice supports; newer daemons serve it too). It never runs the docker CLI.
//!
//! Why not bollard: bollard 0.21 speaks API 1.53 and needs a version negotiation round trip
//! before it can talk to Debian's dockerd 20.10 (API 1.41), its generated models crate is large
//! for the two-core machines sluice builds on, and its default request timeout also cuts long
//! streams (builds, followed logs, waits). The ~25 endpoints sluice needs fit in this crate.
//!
//! Every error names the socket and says what to do ([`DockerError`]); the daemon going away
//! in the middle of a call is an error, never a panic. [`testimage`] builds the busybox and
//! python images the tests run, by importing a root filesystem (no registry is reachable).
//!
//! Architecture invariant: this crate knows nothing of sluice's runtime, runner or store; it
//! maps the Engine API to plain Rust types and nothing more.

mod containers;
mod images;
pub mod testimage;
mod time;
mod transport;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use containers::{
    Bind, ContainerConfig, ContainerInfo, ContainerState, ContainerSummary, ExecState, LogChunk,
    LogOptions, LogStream, PortBinding, PublishedPort, Stats, cpu_cores_between,
};
pub use images::{BuildOptions, BuiltImage, ImageInfo};
pub use time::parse_rfc3339_ms;

/// The Engine API version every request is made with.
pub const API_VERSION: &str = "v1.41";

/// The socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default limit for a request until the daemon's answer starts (see
/// [`Docker::with_timeout`]).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream of byte chunks or log chunks coming from the daemon.
pub type ByteStream = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, DockerError>>;

/// A client of one Docker daemon. Cheap to clone; every request opens its own connection,
/// so a daemon restart between two calls is harmless.
#[derive(Clone, Debug)]
pub struct Docker {
    socket: PathBuf,
    timeout: Duration,
}

/// Errors of the Docker client. Messages are lower-case, name the daemon's socket when the
/// daemon is the problem, and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// Nothing answers on the socket.
    #[error(
        "cannot reach the docker daemon at {socket}: {source}; is dockerd running? start it with .ci/docker.sh (or set DOCKER_HOST=unix:///path/to/docker.sock)"
    )]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke while a request was under way (the daemon stopped or crashed).
    #[error(
        "the docker daemon at {socket} broke off {context}: {source}; is dockerd still running? start it with .ci/docker.sh"
    )]
    Connection {
        /// The socket path.
        socket: PathBuf,
        /// The request, e.g. `POST /containers/x/start`.
        context: String,
        /// What broke.
        #[source]
        source: std::io::Error,
    },
    /// The daemon did not start answering in time.
    #[error(
        "the docker daemon at {socket} did not answer {context} within {after:?}; is dockerd hung or overloaded? see its log (/tmp/sluice-dockerd.log under .ci/docker.sh)"
    )]
    Timeout {
        /// The socket path.
        socket: PathBuf,
        /// The request.
        context: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The daemon answered with an error status.
    #[error("docker {context} failed with status {status}: {message}")]
    Api {
        /// The request.
        context: String,
        /// HTTP status (404: no such container or image, 409: conflict, ...).
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// An image build failed; `output` holds the last lines the build printed, which
    /// include the failing step's own output.
    #[error("docker build failed: {message}\n--- last build output ---\n{output}")]
    Build {
        /// The daemon's error message, e.g. `The command '/bin/sh -c make' returned a
        /// non-zero code: 2`.
        message: String,
        /// The last lines of build output.
        output: String,
    },
    /// The daemon answered something this client cannot read.
    #[error("unexpected answer from the docker daemon to {context}: {reason}")]
    Protocol {
        /// The request.
        context: String,
        /// What was wrong.
        reason: String,
    },
    /// A local file operation (build context, root filesystem tar) failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error(
        "DOCKER_HOST={host:?} is not supported: sluice talks to the docker daemon over a unix socket; set DOCKER_HOST=unix:///var/run/docker.sock or unset it"
    )]
    UnsupportedHost {
        /// The value of `DOCKER_HOST`.
        host: String,
    },
    /// The caller passed something the API cannot take.
    #[error("invalid docker request: {0}")]
    Invalid(String),
}

impl DockerError {
    /// Whether the daemon answered 404 (no such container, image or exec).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Api { status: 404, .. })
    }

    /// Whether the daemon itself could not be reached or stopped answering (as opposed to
    /// answering with an error): worth retrying later.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. }
                | DockerError::Connection { .. }
                | DockerError::Timeout { .. }
        )
    }
}

impl Docker {
    /// A client of the daemon listening on the unix socket `socket`. Connects lazily.
    pub fn new(socket: impl Into<PathBuf>) -> Docker {
        Docker {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client of the daemon named by `DOCKER_HOST` (`unix:///path`), or of
    /// [`DEFAULT_SOCKET`] when it is unset or empty. Other schemes (`tcp://`, `ssh://`) are
    /// refused.
    pub fn from_env() -> Result<Docker, DockerError> {
        Docker::from_host(std::env::var("DOCKER_HOST").ok().as_deref())
    }

    /// Like [`Docker::from_env`] with the value of `DOCKER_HOST` given.
    pub fn from_host(host: Option<&str>) -> Result<Docker, DockerError> {
        match host.map(str::trim).filter(|h| !h.is_empty()) {
            None => Ok(Docker::new(DEFAULT_SOCKET)),
            Some(h) => match h.strip_prefix("unix://") {
                Some(path) if path.starts_with('/') => Ok(Docker::new(path)),
                _ => Err(DockerError::UnsupportedHost { host: h.to_owned() }),
            },
        }
    }

    /// The same client with another limit for each request until the daemon's answer
    /// starts (default 60 s). Streams (build output, followed logs, waits, exports) are not
    /// limited once they have started.
    pub fn with_timeout(mut self, timeout: Duration) -> Docker {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /_ping`: whether the daemon answers.
    pub async fn ping(&self) -> Result<(), DockerError> {
        let body = self
            .call(transport::Call::get("/_ping").unversioned())
            .await?;
        if body.as_ref() == b"OK" {
            Ok(())
        } else {
            Err(DockerError::Protocol {
                context: "GET /_ping".into(),
                reason: format!("expected OK, got {:?}", String::from_utf8_lossy(&body)),
            })
        }
    }

    /// `GET /version`: the daemon's version and API version.
    pub async fn version(&self) -> Result<Version, DockerError> {
        self.call_json(transport::Call::get("/version")).await
    }
}

/// What `GET /version` reports.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Version {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    #[serde(rename = "Version")]
    pub version: String,
    /// Newest API version the daemon speaks, e.g. `1.41`.
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    /// Oldest API version it still speaks.
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: String,
    /// Operating system, e.g. `linux`.
    #[serde(rename = "Os", default)]
    pub os: String,
    /// Architecture, e.g. `amd64`.
    #[serde(rename = "Arch", default)]
    pub arch: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_is_parsed() {
        assert_eq!(
            Docker::from_host(None).unwrap().socket(),
            Path::new(DEFAULT_SOCKET)
        );
        assert_eq!(
            Docker::from_host(Some("")).unwrap().socket(),
            Path::new(DEFAULT_SOCKET)
        );
        assert_eq!(
            Docker::from_host(Some("unix:///run/user/1/docker.sock"))
                .unwrap()
                .socket(),
            Path::new("/run/user/1/docker.sock")
        );
        for bad in ["tcp://127.0.0.1:2375", "ssh://host", "unix://relative"] {
            let err = Docker::from_host(Some(bad)).unwrap_err();
            assert!(matches!(err, DockerError::UnsupportedHost { .. }), "{bad}");
            assert!(err.to_string().contains("unix socket"), "{err}");
        }
    }
}
