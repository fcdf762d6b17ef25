//! Where a target's traffic listener lives: inside the server process, or in the standalone
//! proxy daemon (`sluice proxy-daemon`) that keeps serving while the server is down.
//!
//! The controller talks to both through [`Listener`]; the daemon is reached through its admin
//! API on loopback. The daemon is started on first need and found again after a server
//! restart through `DATA_DIR/proxy/daemon.json` (its pid and admin address); its routes live in
//! its own state file, so a restarted daemon comes back with them too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sluice_proxy::{Proxy, RouteTable, Stats};

use super::EngineError;

/// One target's listener.
#[derive(Clone)]
pub enum Listener {
    /// In this process.
    Local(Proxy),
    /// In the proxy daemon, under `name`.
    Remote {
        /// The daemon's admin API.
        admin: SocketAddr,
        /// Listener name in the daemon.
        name: String,
        /// HTTP client for the admin API.
        http: reqwest::Client,
    },
}

fn remote_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("proxy daemon: {what}: {e}"))
}

impl Listener {
    /// Replaces the route table atomically.
    pub async fn set_table(&self, table: RouteTable) -> Result<(), EngineError> {
        match self {
            Listener::Local(p) => {
                p.set_table(table);
                Ok(())
            }
            Listener::Remote { admin, name, .. } => sluice_proxy::switch(*admin, name, &table)
                .await
                .map_err(|e| remote_err("switch", e)),
        }
    }

    /// The current route table.
    pub async fn table(&self) -> Result<RouteTable, EngineError> {
        match self {
            Listener::Local(p) => Ok(p.table()),
            Listener::Remote { admin, name, http } => http
                .get(format!("http://{admin}/listeners/{name}/table"))
                .send()
                .await
                .map_err(|e| remote_err("read table", e))?
                .json()
                .await
                .map_err(|e| remote_err("read table", e)),
        }
    }

    /// The per-version counters.
    pub async fn stats(&self) -> Result<Stats, EngineError> {
        match self {
            Listener::Local(p) => Ok(p.stats()),
            Listener::Remote { admin, name, http } => http
                .get(format!("http://{admin}/listeners/{name}/stats"))
                .send()
                .await
                .map_err(|e| remote_err("read stats", e))?
                .json()
                .await
                .map_err(|e| remote_err("read stats", e)),
        }
    }

    /// Stops the listener.
    pub async fn shutdown(self) {
        match self {
            Listener::Local(p) => p.shutdown(Duration::from_millis(500)).await,
            Listener::Remote { admin, name, http } => {
                let _ = http
                    .delete(format!("http://{admin}/listeners/{name}"))
                    .send()
                    .await;
            }
        }
    }
}

/// The standalone proxy daemon of a data directory.
pub struct Daemon {
    bin: PathBuf,
    dir: PathBuf,
    admin: tokio::sync::Mutex<Option<SocketAddr>>,
    http: reqwest::Client,
}

impl Daemon {
    /// A daemon run from `bin` (the `sluice` binary) with its files under `dir`.
    pub fn new(bin: PathBuf, dir: PathBuf) -> Daemon {
        Daemon {
            bin,
            dir,
            admin: tokio::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn ready_file(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    async fn healthy(&self, admin: SocketAddr) -> bool {
        matches!(
            self.http.get(format!("http://{admin}/healthz")).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    /// The admin address of a running daemon, starting one if none answers.
    pub async fn admin(&self) -> Result<SocketAddr, EngineError> {
        let mut cached = self.admin.lock().await;
        if let Some(a) = *cached
            && self.healthy(a).await
        {
            return Ok(a);
        }
        if let Some(a) = read_ready(&self.ready_file())
            && self.healthy(a).await
        {
            *cached = Some(a);
            return Ok(a);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| remote_err("create its directory", e))?;
        let _ = std::fs::remove_file(self.ready_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .map_err(|e| remote_err("open its log", e))?;
        let log2 = log.try_clone().map_err(|e| remote_err("open its log", e))?;
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("proxy-daemon")
            .arg("--state")
            .arg(self.dir.join("state.json"))
            .arg("--ready")
            .arg(self.ready_file())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a signal to the server's group does not take traffic down.
            .process_group(0)
            .spawn()
            .map_err(|e| remote_err(&format!("start {}", self.bin.display()), e))?;
        // Reap it if it exits while this server runs.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(a) = read_ready(&self.ready_file())
                && self.healthy(a).await
            {
                *cached = Some(a);
                return Ok(a);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(remote_err(
                    "start",
                    format!(
                        "not ready after 10 s; see {}",
                        self.dir.join("daemon.log").display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Supervision: `Ok(true)` if the daemon this server used stopped answering and a new one
    /// was started (it restores its listeners and routes from its state file); `Ok(false)` if
    /// it is fine or was never needed.
    pub async fn revive(&self) -> Result<bool, EngineError> {
        let Some(admin) = *self.admin.lock().await else {
            return Ok(false);
        };
        if self.healthy(admin).await {
            return Ok(false);
        }
        // Forget the dead one so `admin` goes straight to the ready file and a new daemon.
        *self.admin.lock().await = None;
        self.admin().await?;
        Ok(true)
    }

    /// A listener in the daemon (created, or the existing one after a server restart).
    pub async fn listener(
        &self,
        name: &str,
        listen: SocketAddr,
        initial: RouteTable,
    ) -> Result<Listener, EngineError> {
        let admin = self.admin().await?;
        let existing = self
            .http
            .get(format!("http://{admin}/listeners/{name}"))
            .send()
            .await
            .map_err(|e| remote_err("look up a listener", e))?;
        if !existing.status().is_success() {
            let r = self
                .http
                .post(format!("http://{admin}/listeners"))
                .json(&json!({ "name": name, "listen": listen, "table": initial }))
                .send()
                .await
                .map_err(|e| remote_err("add a listener", e))?;
            if !r.status().is_success() {
                let body = r.text().await.unwrap_or_default();
                return Err(EngineError::BadRequest {
                    message: format!("cannot listen on {listen}: {}", body.trim()),
                    hint: Some("another process uses that address; change `expose` in sluice.yml or free it".into()),
                });
            }
        }
        Ok(Listener::Remote {
            admin,
            name: name.to_string(),
            http: self.http.clone(),
        })
    }

    /// The pid of the daemon, if one was started for this data directory.
    pub fn pid(dir: &Path) -> Option<i32> {
        let text = std::fs::read_to_string(dir.join("daemon.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
    }
}

fn read_ready(path: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["admin"].as_str()?.parse().ok()
}
