//! Server configuration: read once, up front, validated before anything binds or starts.
//!
//! Sources, later ones winning: built-in defaults, an optional YAML file
//! (`--config`, default `DATA_DIR/server.yml` if it exists), then command-line flags
//! (which the binary maps from `SLUICE_*` environment variables too). Unknown fields in the
//! file are errors with `file:line:column`, like `sluice.yml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What to do with runs that were in progress when the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptedPolicy {
    /// Mark the run interrupted and start a new run of the same commit once (default).
    /// A run that was itself such a re-run is only marked interrupted, never re-run again.
    Rerun,
    /// Mark the run interrupted and leave it.
    Fail,
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the SQLite database, mirrors, workspaces, artifacts and caches live.
    pub data_dir: PathBuf,
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// Database URL; None for SQLite in the data directory.
    pub database: Option<String>,
    /// Default poll interval for new projects.
    pub poll_interval: Duration,
    /// Most steps running at once, across all runs.
    pub max_parallel_steps: usize,
    /// Grace period between SIGTERM and SIGKILL for a step's process group.
    pub kill_grace: Duration,
    /// Recovery policy for runs interrupted by a crash or restart.
    pub interrupted_runs: InterruptedPolicy,
    /// Artifacts kept per service; older releases' artifact files are deleted (0 = keep all).
    pub keep_artifacts: usize,
    /// Server-side secrets: name -> value. Injected into steps that ask for them by name and
    /// masked in every log line.
    pub secrets: BTreeMap<String, String>,
    /// The URL people and webhooks reach this server at (used in printed links).
    pub public_url: Option<String>,
    /// The `sluice` binary to run the proxy daemon with; `None` keeps the traffic listeners
    /// inside the server process (tests, the demo). `sluice server` sets it to itself, so
    /// exposed services keep answering while the server restarts.
    pub proxy_bin: Option<PathBuf>,
    /// How often the audit trail's head is signed (also when nothing happened), so that a
    /// deleted tail or a stopped server shows as a gap (`sluice audit verify`).
    pub checkpoint_interval: Duration,
    /// An API token for the first admin, applied on the very first start only (when the
    /// store has no users): lets automation (CI, the demo, tests) start a server it can
    /// talk to without a person completing setup. Must be a well-formed `slc_a_…` token.
    /// Without it the first start prints a one-time setup token instead; there is never a
    /// default password.
    pub admin_token: Option<String>,
    /// The key-encryption key of the secret store, as a file; `None` uses `SLUICE_KEK` if
    /// set, else `DATA_DIR/secret.key` (generated on first use). Without an available key
    /// the server starts sealed; see `sluice unseal`.
    pub kek_file: Option<PathBuf>,
    /// The mail server email notifications go through; `None`: email channels record that
    /// nothing was sent.
    pub smtp: Option<sluice_notify::SmtpConfig>,
    /// How often alert rules, scrapes and instance health are evaluated (tests shorten it).
    pub rule_interval: Duration,
    /// The Docker Engine's unix socket (image builds, container steps, the Docker runtime);
    /// `None`: `DOCKER_HOST` (`unix://PATH`) if set, else `/var/run/docker.sock`.
    pub docker_socket: Option<PathBuf>,
    /// The image containers of the Docker runtime run in when a service deploys its release
    /// artifact rather than an image of its own (`deploy.runtime: docker` without a
    /// `build_image` step or `deploy.image`); it needs `/bin/sh` and what the start command uses.
    pub base_image: Option<String>,
    /// The advisory database (`sluice advisories import --db DIR`) that `scan` steps read;
    /// `None`: `DATA_DIR/advisories`.
    pub advisory_db: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            database: None,
            poll_interval: Duration::from_secs(5),
            max_parallel_steps: 4,
            kill_grace: Duration::from_secs(5),
            interrupted_runs: InterruptedPolicy::Rerun,
            keep_artifacts: 20,
            secrets: BTreeMap::new(),
            public_url: None,
            proxy_bin: None,
            checkpoint_interval: Duration::from_secs(60),
            admin_token: None,
            kek_file: None,
            smtp: None,
            rule_interval: Duration::from_secs(10),
            docker_socket: None,
            base_image: None,
            advisory_db: None,
        }
    }

    /// The database URL in use.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("sluice.db").display()),
        }
    }

    /// The base URL for links.
    pub fn base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// Applies a YAML configuration file on top of this configuration.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.apply_yaml(&text, &path.display().to_string())
    }

    /// Applies YAML text (named `file` in messages) on top of this configuration.
    pub fn apply_yaml(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| ConfigError::Invalid {
            file: file.to_string(),
            reason,
        };
        if let Some(l) = raw.listen {
            self.listen = l.parse().map_err(|_| {
                invalid(format!(
                    "listen: `{l}` is not an address like 127.0.0.1:7878"
                ))
            })?;
        }
        if let Some(d) = raw.database {
            self.database = Some(d);
        }
        if let Some(p) = raw.poll_interval {
            self.poll_interval =
                parse_duration(&p).map_err(|e| invalid(format!("poll_interval: {e}")))?;
        }
        if let Some(n) = raw.max_parallel_steps {
            self.max_parallel_steps = n;
        }
        if let Some(g) = raw.kill_grace {
            self.kill_grace =
                parse_duration(&g).map_err(|e| invalid(format!("kill_grace: {e}")))?;
        }
        if let Some(p) = raw.interrupted_runs {
            self.interrupted_runs = p;
        }
        if let Some(k) = raw.keep_artifacts {
            self.keep_artifacts = k;
        }
        if let Some(u) = raw.public_url {
            self.public_url = Some(u);
        }
        if let Some(k) = raw.kek_file {
            self.kek_file = Some(k);
        }
        if let Some(s) = raw.smtp {
            self.smtp = Some(s);
        }
        self.secrets.extend(raw.secrets);
        Ok(())
    }

    /// Checks everything that can be checked before binding a port.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| {
            Err(ConfigError::Invalid {
                file: "server configuration".into(),
                reason,
            })
        };
        if self.max_parallel_steps == 0 || self.max_parallel_steps > 256 {
            return bad(format!(
                "max_parallel_steps must be between 1 and 256, got {}",
                self.max_parallel_steps
            ));
        }
        if self.poll_interval < Duration::from_millis(100) {
            return bad("poll_interval must be at least 100ms".into());
        }
        if let Some(db) = &self.database {
            let ok = db.starts_with("sqlite:")
                || db.starts_with("postgres://")
                || db.starts_with("postgresql://");
            if !ok {
                return bad(format!(
                    "database `{db}` is not a sqlite:// or postgres:// URL"
                ));
            }
        }
        if let Some(t) = &self.admin_token
            && sluice_auth::TokenKind::of(t) != Some(sluice_auth::TokenKind::Api)
        {
            return bad(
                "the admin token (SLUICE_ADMIN_TOKEN) must be `slc_a_` followed by 43 characters \
                 of A-Z a-z 0-9 - _ (32 random bytes in base64url); make one with \
                 `sluice tokens generate`"
                    .into(),
            );
        }
        for (name, value) in &self.secrets {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return bad(format!(
                    "secret name `{name}` must look like an environment variable name (A-Z, 0-9, _)"
                ));
            }
            if value.len() < 4 {
                return bad(format!(
                    "secret `{name}` is shorter than 4 characters; so short a value cannot be masked in logs without masking ordinary text"
                ));
            }
        }
        Ok(())
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A value is wrong.
    #[error("{file}: {reason}")]
    Invalid {
        /// Where.
        file: String,
        /// What.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<String>,
    database: Option<String>,
    poll_interval: Option<String>,
    max_parallel_steps: Option<usize>,
    kill_grace: Option<String>,
    interrupted_runs: Option<InterruptedPolicy>,
    keep_artifacts: Option<usize>,
    public_url: Option<String>,
    kek_file: Option<PathBuf>,
    smtp: Option<sluice_notify::SmtpConfig>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// Parses durations like `250ms`, `5s`, `10m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. `5s` or `10m`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration; write e.g. `5s` or `10m`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "`{s}` has an unknown unit `{unit}`; use ms, s, m or h"
                ));
            }
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn file_overrides_and_rejects_unknown_fields() {
        let mut c = ServerConfig::new("/tmp/x");
        c.apply_yaml(
            "listen: 127.0.0.1:9000\nsecrets:\n  TOKEN: abcdef\n",
            "server.yml",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.secrets["TOKEN"], "abcdef");
        let err = c.apply_yaml("lisen: x\n", "server.yml").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        c.secrets.insert("X".into(), "ab".into());
        assert!(c.validate().is_err());
    }
}
