//! [`DockerRuntime`]: instances as containers, through the Docker Engine API.
//!
//! An instance is one container named `sluice-<prefix>-<hash>-<id>` (the token prefix made
//! name-safe, plus a hash of it so different prefixes never share names). Without
//! `spec.image` it runs the runtime's base image with the unpacked artifact (a fresh copy per
//! instance, under `root/instances/<id>` as in the process runtime) bind-mounted read-write
//! at [`APP_DIR`] and `sh -c COMMAND` in it, so the same `sluice.yml` runs on both runtimes;
//! with `spec.image` and an artifact, the artifact is mounted the same way into that image;
//! with `spec.image` and no artifact (an empty path) it runs that image as it is. Either way: published on `127.0.0.1:PORT` to the
//! same port inside (services must listen on all of the container's addresses, e.g.
//! `0.0.0.0:$PORT`, not on its loopback), `PORT` and the token in its environment, Docker's
//! init as PID 1 (so SIGTERM reaches the command), the spec's CPU and memory limits (no swap
//! on top), restart policy "no" (the shared supervisor restarts), and labels:
//! [`LABEL_RUNTIME`] (the token prefix, for listing), [`LABEL_TOKEN`], `sluice.instance`,
//! `sluice.service`, `sluice.env`, `sluice.version`, `sluice.restarts` and [`LABEL_SPEC`]
//! (the whole spec as JSON), so adoption needs no state file.
//!
//! Health checks: HTTP through the published port (with `health.rs`, as for processes);
//! TCP to the container's own address, because Docker's port proxy accepts connections on
//! the published port even when nothing listens inside; commands inside the container
//! (an exec of `sh -c RUN` in its working directory with its environment; Docker cannot
//! kill an exec, so one that overruns its timeout counts as failed and runs on until it ends
//! or the container stops).
//!
//! Each running container has two tasks: a watcher (`wait`, then `inspect` for the exit
//! code and OOM kill) and a log follower appending stdout and stderr to `log_path(id)`. When
//! the daemon cannot be reached the watcher reports the instance lost: it leaves traffic
//! (not ready) and is inspected again every [`OBSERVE_RETRY`] until the daemon answers,
//! without counting as a failure; a container that stopped meanwhile is then restarted as
//! usual. Log lines written at the moment the daemon went away may be lost or repeated.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use sluice_docker::{
    Bind, ContainerConfig, ContainerInfo, Docker, DockerError, LogOptions, PortBinding,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::health::probe;
use crate::process::{Layout, base_env, open_log, prepare_dir};
use crate::spec::{HealthCheck, INSTANCE_TOKEN_VAR, InstanceSpec, PORT_VAR};
use crate::supervisor::{Core, Driver, Observed, RawUsage, Running, blocking, check_port_free};
use crate::{AdoptOutcome, Adopted, InstanceStatus, Runtime, RuntimeError, Usage, validate_id};

/// Where the unpacked artifact is mounted in containers of the base image.
pub const APP_DIR: &str = "/app";

/// Label holding the runtime's token prefix: `adopt` and `kill_all` list by it.
pub const LABEL_RUNTIME: &str = "sluice.runtime";

/// Label holding the instance's token (`<token_prefix><id>`).
pub const LABEL_TOKEN: &str = "sluice.token";

/// Label holding the instance's spec as JSON.
pub const LABEL_SPEC: &str = "sluice.spec";

const LABEL_INSTANCE: &str = "sluice.instance";
const LABEL_SERVICE: &str = "sluice.service";
const LABEL_ENV: &str = "sluice.env";
const LABEL_VERSION: &str = "sluice.version";
const LABEL_RESTARTS: &str = "sluice.restarts";

/// How often a container that cannot be observed (daemon unreachable) is looked at again.
const OBSERVE_RETRY: Duration = Duration::from_millis(500);

/// How long to wait for a container to stop after SIGKILL, and for its removal.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long the log follower of an ended container may take to write its last lines.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// Runs instances as containers. See the module documentation.
///
/// Not `Clone`: share it as `Arc<DockerRuntime>` or `Arc<dyn Runtime>`. Dropping it leaves
/// the containers running, like a crash; [`Runtime::adopt`] on a new runtime with the same
/// token prefix picks them up.
pub struct DockerRuntime {
    inner: Arc<Core<DockerDriver>>,
}

struct DockerDriver {
    docker: Docker,
    layout: Layout,
    base_image: String,
    name_prefix: String,
}

/// A running container of an instance.
struct DockerRunning {
    pid: Option<i32>,
    first_check: Instant,
    target: Arc<DockerTarget>,
    events: mpsc::UnboundedReceiver<Observed>,
    _watcher: AbortOnDrop,
    logs: Option<JoinHandle<()>>,
}

/// What probes need.
struct DockerTarget {
    /// Container id.
    container: String,
    /// Its address on the bridge network.
    ip: Option<IpAddr>,
    /// Working directory inside it.
    workdir: Option<String>,
}

/// Aborts a task when dropped (a supervisor that is aborted drops its `DockerRunning`).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for DockerRunning {
    fn drop(&mut self) {
        if let Some(logs) = self.logs.take() {
            logs.abort();
        }
    }
}

impl Running for DockerRunning {
    type Target = DockerTarget;

    fn target(&self) -> Arc<DockerTarget> {
        Arc::clone(&self.target)
    }

    fn pid(&self) -> Option<i32> {
        self.pid
    }

    fn pgid(&self) -> Option<i32> {
        None
    }

    fn first_check(&self) -> Instant {
        self.first_check
    }

    async fn observe(&mut self) -> Observed {
        match self.events.recv().await {
            Some(event) => event,
            None => Observed::Exited {
                code: None,
                what: "the container watcher ended unexpectedly".to_owned(),
            },
        }
    }
}

impl DockerRuntime {
    /// Creates a runtime talking to `docker`, rooted at `root` (`instances/` and `logs/`
    /// under it), with `token_prefix` as for [`crate::ProcessRuntime::new`] (it also tells
    /// this runtime's containers from others'), running specs without an image in
    /// `base_image` (which needs `/bin/sh` and whatever the services' commands use). Talks
    /// to the daemon only when used; [`DockerRuntime::check`] asks it at once.
    pub fn new(
        docker: Docker,
        root: PathBuf,
        token_prefix: String,
        base_image: String,
    ) -> Result<DockerRuntime, RuntimeError> {
        let layout = Layout::new(&root, token_prefix)?;
        let name_prefix = name_prefix(&layout.token_prefix);
        Ok(DockerRuntime {
            inner: Arc::new(Core::new(DockerDriver {
                docker,
                layout,
                base_image,
                name_prefix,
            })),
        })
    }

    /// Whether the daemon answers and the base image exists; the error says what to do.
    pub async fn check(&self) -> Result<(), RuntimeError> {
        let driver = &self.inner.driver;
        let err = |action| {
            move |source| RuntimeError::Docker {
                id: "*".into(),
                action,
                source,
            }
        };
        driver
            .docker
            .ping()
            .await
            .map_err(err("reach the daemon"))?;
        driver
            .docker
            .inspect_image(&driver.base_image)
            .await
            .map_err(err("find the base image"))?;
        Ok(())
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.inner.driver.docker
    }

    /// The name of the container of instance `id`.
    pub fn container_name(&self, id: &str) -> String {
        self.inner.driver.container_name(id)
    }

    /// A counter bumped on every status change (see [`Runtime::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.subscribe()
    }

    /// See [`Runtime::kill_all`]: removes (with SIGKILL) every container labelled with this
    /// runtime's token prefix. Blocks until the daemon answered (at most about 10 s per
    /// call; a daemon that cannot be reached is logged and leaves the containers alone).
    pub fn kill_all(&self) -> Vec<i32> {
        self.inner.abandon_all();
        let docker = self
            .inner
            .driver
            .docker
            .clone()
            .with_timeout(Duration::from_secs(10));
        let filter = format!("{LABEL_RUNTIME}={}", self.inner.driver.layout.token_prefix);
        // Drop and other synchronous callers cannot await, and blocking on the caller's
        // runtime would deadlock; a thread with its own small runtime does the calls.
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            Some(rt.block_on(async move {
                let mut pids = Vec::new();
                let list = match docker.list_containers(&[&filter]).await {
                    Ok(list) => list,
                    Err(e) => {
                        tracing::warn!("kill_all could not list containers: {e}");
                        return pids;
                    }
                };
                for c in list {
                    if let Ok(info) = docker.inspect_container(&c.id).await
                        && info.state.pid > 0
                    {
                        pids.push(i32::try_from(info.state.pid).unwrap_or(0));
                    }
                    if let Err(e) = docker.remove_container(&c.id, true).await
                        && !e.is_not_found()
                    {
                        tracing::warn!(container = %c.name, "kill_all could not remove: {e}");
                    }
                }
                pids
            }))
        });
        let mut pids = worker.join().ok().flatten().unwrap_or_default();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for DockerRuntime {
    /// Aborts the supervisors (and with them the watchers and log followers) and leaves
    /// every container running, as a crash would.
    fn drop(&mut self) {
        self.inner.abort_supervisors();
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        spec.validate()?;
        check_port_free(&spec.id, spec.port).await?;
        self.inner.start(spec).await
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.stop(id).await
    }

    fn forget(&self, id: &str) -> bool {
        self.inner.forget(id)
    }

    fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.inner.status(id)
    }

    fn list(&self) -> Vec<InstanceStatus> {
        self.inner.list()
    }

    async fn adopt(&self) -> Result<Vec<Adopted>, RuntimeError> {
        let driver = &self.inner.driver;
        let prefix = &driver.layout.token_prefix;
        let filter = format!("{LABEL_RUNTIME}={prefix}");
        let found = driver
            .docker
            .list_containers(&[&filter])
            .await
            .map_err(|source| RuntimeError::Docker {
                id: "*".into(),
                action: "list its containers",
                source,
            })?;
        let mut report = Vec::new();
        for c in found {
            let id = c
                .labels
                .get(LABEL_TOKEN)
                .and_then(|t| t.strip_prefix(prefix.as_str()))
                .filter(|id| validate_id(id).is_ok())
                .map(str::to_owned);
            let spec = c
                .labels
                .get(LABEL_SPEC)
                .and_then(|json| serde_json::from_str::<InstanceSpec>(json).ok())
                .filter(|s| s.validate().is_ok() && Some(&s.id) == id.as_ref());
            let (Some(id), Some(spec)) = (id, spec) else {
                // Ours by label, but nothing says how to supervise it.
                let pid = driver.running_pid(&c.id).await;
                driver.remove(&c.id, &c.name).await;
                tracing::warn!(container = %c.name, "removed a stray container without a valid spec label");
                report.push(Adopted {
                    id: c.name,
                    pid,
                    outcome: AdoptOutcome::StrayKilled,
                    spec: None,
                });
                continue;
            };
            if self.inner.is_active(&id) {
                continue;
            }
            let info = if c.state == "running" {
                driver.docker.inspect_container(&c.id).await.ok()
            } else {
                None
            };
            let Some(info) = info.filter(|i| i.state.running) else {
                driver.remove(&c.id, &c.name).await;
                tracing::info!(instance = %id, container = %c.name, "container is not running; removed");
                report.push(Adopted {
                    id,
                    pid: None,
                    outcome: AdoptOutcome::Dead,
                    spec: Some(spec),
                });
                continue;
            };
            let restarts = c
                .labels
                .get(LABEL_RESTARTS)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let started_ms = info
                .state
                .started_ms
                .unwrap_or_else(crate::supervisor::now_ms);
            let since_start =
                u64::try_from(crate::supervisor::now_ms().saturating_sub(started_ms)).unwrap_or(0);
            let first_check = Instant::now()
                + spec
                    .health
                    .initial_delay
                    .saturating_sub(Duration::from_millis(since_start));
            // Follow the log from where the previous control plane stopped writing it.
            let log = driver.layout.log_path(&id);
            let since = tokio::fs::metadata(&log)
                .await
                .and_then(|m| m.modified())
                .ok();
            let running = driver.running(&info, &spec, first_check, since);
            let pid = running.pid;
            if !self
                .inner
                .adopt_running(spec.clone(), running, restarts, started_ms)
            {
                continue;
            }
            tracing::info!(instance = %id, container = %c.name, "adopted a running container");
            report.push(Adopted {
                id,
                pid,
                outcome: AdoptOutcome::Running,
                spec: Some(spec),
            });
        }
        Ok(report)
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.inner.driver.layout.log_path(id)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        DockerRuntime::subscribe(self)
    }

    async fn usage(&self, id: &str) -> Option<Usage> {
        self.inner.usage(id).await
    }

    fn kill_all(&self) -> Vec<i32> {
        DockerRuntime::kill_all(self)
    }
}

impl DockerDriver {
    fn container_name(&self, id: &str) -> String {
        format!("{}{id}", self.name_prefix)
    }

    /// The host pid of a running container, if it runs.
    async fn running_pid(&self, container: &str) -> Option<i32> {
        let info = self.docker.inspect_container(container).await.ok()?;
        i32::try_from(info.state.pid).ok().filter(|p| *p > 0)
    }

    /// Force-removes a container; failures other than "already gone" are logged.
    async fn remove(&self, container: &str, name: &str) -> bool {
        match self.docker.remove_container(container, true).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = %name, "could not remove the container: {e}");
                false
            }
        }
    }

    /// A [`DockerRunning`] for a container that runs: its watcher and log follower start.
    fn running(
        &self,
        info: &ContainerInfo,
        spec: &InstanceSpec,
        first_check: Instant,
        since: Option<SystemTime>,
    ) -> DockerRunning {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = tokio::spawn(watch_container(self.docker.clone(), info.id.clone(), tx));
        let logs = tokio::spawn(follow_logs(
            self.docker.clone(),
            info.id.clone(),
            self.layout.log_path(&spec.id),
            since,
        ));
        DockerRunning {
            pid: i32::try_from(info.state.pid).ok().filter(|p| *p > 0),
            first_check,
            target: Arc::new(DockerTarget {
                container: info.id.clone(),
                ip: info.ip_address.as_deref().and_then(|a| a.parse().ok()),
                workdir: container_workdir(spec),
            }),
            events,
            _watcher: AbortOnDrop(watcher),
            logs: Some(logs),
        }
    }

    /// Lets the log follower write the container's last lines (bounded).
    async fn drain_logs(running: &mut DockerRunning) {
        if let Some(mut logs) = running.logs.take()
            && tokio::time::timeout(LOG_DRAIN, &mut logs).await.is_err()
        {
            logs.abort();
        }
    }
}

impl Driver for DockerDriver {
    type Running = DockerRunning;

    async fn launch(
        &self,
        spec: &Arc<InstanceSpec>,
        restarts: u32,
        restart: Option<&str>,
    ) -> Result<DockerRunning, RuntimeError> {
        let id = spec.id.clone();
        let docker_err = |action: &'static str| {
            let id = id.clone();
            move |source| RuntimeError::Docker { id, action, source }
        };
        let name = self.container_name(&spec.id);
        let mut binds = Vec::new();
        let mounted = spec.mounts_artifact();
        let image = match (&spec.image, mounted) {
            (Some(image), false) => image.clone(),
            (image, _) => {
                let dir = self.layout.instance_dir(&spec.id);
                let host_workdir = match &spec.workdir {
                    Some(sub) => dir.join(sub),
                    None => dir.clone(),
                };
                let (s, d) = (Arc::clone(spec), dir.clone());
                let reuse = restart.is_some();
                blocking(move || prepare_dir(&s, &d, Some(&host_workdir), reuse)).await??;
                binds.push(Bind {
                    host: dir,
                    container: APP_DIR.to_owned(),
                    read_only: false,
                });
                image.clone().unwrap_or_else(|| self.base_image.clone())
            }
        };
        binds.extend(spec.mounts.iter().map(|m| Bind {
            host: m.clone(),
            container: m.display().to_string(),
            read_only: false,
        }));
        let log = self.layout.log_path(&spec.id);
        let (s, note) = (Arc::clone(spec), restart.map(str::to_owned));
        blocking(move || open_log(&s, &log, note.as_deref()).map(drop)).await??;
        // A container of this name is a leftover (a control plane that died before
        // removing it); this instance replaces it.
        match self.docker.remove_container(&name, true).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(docker_err("remove a leftover container")(e)),
        }
        let env = match mounted {
            true => base_env(spec, &self.layout.token_prefix, APP_DIR),
            false => {
                let mut env = spec.env_vars.clone();
                env.insert(PORT_VAR.to_owned(), spec.port.to_string());
                env.insert(
                    INSTANCE_TOKEN_VAR.to_owned(),
                    spec.token(&self.layout.token_prefix),
                );
                env
            }
        };
        let spec_json = serde_json::to_string(&**spec).map_err(|e| RuntimeError::InvalidSpec {
            id: spec.id.clone(),
            field: "spec".into(),
            reason: format!("it cannot be encoded as JSON: {e}"),
        })?;
        let labels = BTreeMap::from([
            (LABEL_RUNTIME.to_owned(), self.layout.token_prefix.clone()),
            (
                LABEL_TOKEN.to_owned(),
                spec.token(&self.layout.token_prefix),
            ),
            (LABEL_INSTANCE.to_owned(), spec.id.clone()),
            (LABEL_SERVICE.to_owned(), spec.service.clone()),
            (LABEL_ENV.to_owned(), spec.env.clone()),
            (LABEL_VERSION.to_owned(), spec.version.clone()),
            (LABEL_RESTARTS.to_owned(), restarts.to_string()),
            (LABEL_SPEC.to_owned(), spec_json),
        ]);
        let shell = !spec.command.trim().is_empty();
        let config = ContainerConfig {
            name: Some(name.clone()),
            image,
            entrypoint: shell.then(|| vec!["/bin/sh".to_owned(), "-c".to_owned()]),
            cmd: shell.then(|| vec![spec.command.clone()]),
            env,
            working_dir: container_workdir(spec),
            labels,
            binds,
            ports: vec![PortBinding {
                container_port: spec.port,
                host_port: spec.port,
            }],
            nano_cpus: spec.limits.cpus.map(|c| (c * 1e9).round() as i64),
            memory_bytes: spec
                .limits
                .memory_bytes
                .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            init: true,
        };
        let container = self
            .docker
            .create_container(&config)
            .await
            .map_err(docker_err("create the container"))?;
        let started = async {
            self.docker
                .start_container(&container)
                .await
                .map_err(docker_err("start the container"))?;
            self.docker
                .inspect_container(&container)
                .await
                .map_err(docker_err("inspect the container"))
        };
        let info = match started.await {
            Ok(info) => info,
            Err(err) => {
                self.remove(&container, &name).await;
                return Err(err);
            }
        };
        tracing::info!(instance = %spec.id, container = %name, pid = info.state.pid, restarts, "instance container started");
        let first_check = Instant::now() + spec.health.initial_delay;
        Ok(self.running(&info, spec, first_check, None))
    }

    async fn probe(&self, target: &DockerTarget, spec: &InstanceSpec) -> Result<(), String> {
        match &spec.health.check {
            HealthCheck::Tcp { timeout } => {
                let ip = target.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
                match tokio::time::timeout(*timeout, TcpStream::connect((ip, spec.port))).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(format!(
                        "health check could not connect to port {} of the container: {err}",
                        spec.port
                    )),
                    Err(_) => Err(format!(
                        "health check connect to port {} of the container timed out after {timeout:?}",
                        spec.port
                    )),
                }
            }
            HealthCheck::Command { run, timeout } => {
                let cmd = ["/bin/sh".to_owned(), "-c".to_owned(), run.clone()];
                match self
                    .docker
                    .exec_status(&target.container, &cmd, target.workdir.as_deref(), *timeout)
                    .await
                {
                    Ok(Some(0)) => Ok(()),
                    Ok(Some(code)) => {
                        Err(format!("health check command failed: exit status: {code}"))
                    }
                    Ok(None) => Err(format!("health check command timed out after {timeout:?}")),
                    Err(e) => Err(format!(
                        "health check command could not run in the container: {e}"
                    )),
                }
            }
            check => {
                probe(
                    check,
                    spec.port,
                    std::path::Path::new("/"),
                    &BTreeMap::new(),
                )
                .await
            }
        }
    }

    async fn terminate(&self, mut running: DockerRunning, grace: Duration) -> Option<String> {
        let container = running.target.container.clone();
        let mut warning = None;
        let mut gone = false;
        for (signal, wait) in [("SIGTERM", grace), ("SIGKILL", KILL_WAIT)] {
            match self.docker.kill_container(&container, signal).await {
                Ok(()) => {}
                // 404: removed; 409: not running.
                Err(DockerError::Api {
                    status: 404 | 409, ..
                }) => {
                    gone = true;
                    break;
                }
                Err(e) => warning = Some(format!("could not send {signal} to the container: {e}")),
            }
            if wait_exited(&mut running.events, wait).await {
                gone = true;
                break;
            }
        }
        DockerDriver::drain_logs(&mut running).await;
        // Removal also kills what may still run; retried while the daemon is away.
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            match self.docker.remove_container(&container, true).await {
                Ok(()) => return None,
                Err(e) if e.is_not_found() => return None,
                Err(e) if Instant::now() >= deadline => {
                    let what = if gone { "stopped" } else { "may still run" };
                    return Some(warning.unwrap_or_else(|| {
                        format!("could not remove the container (it {what}): {e}; it is removed when the instance is started again, or by `docker rm -f {container}`")
                    }));
                }
                Err(_) => tokio::time::sleep(OBSERVE_RETRY).await,
            }
        }
    }

    async fn reap(&self, mut running: DockerRunning) {
        DockerDriver::drain_logs(&mut running).await;
        let container = running.target.container.clone();
        self.remove(&container, &container).await;
    }

    async fn retire(&self, id: &str, stopped: bool) {
        if stopped {
            self.layout.remove_instance_dir(id).await;
        }
    }

    async fn sample(&self, status: &InstanceStatus, _pgid: Option<i32>) -> Option<RawUsage> {
        let stats = self
            .docker
            .stats_sample(&self.container_name(&status.id))
            .await
            .ok()?;
        Some(RawUsage {
            key: format!("{}", status.pid.unwrap_or(0)),
            cpu_ns: stats.cpu_total_ns,
            system: (stats.system_cpu_ns > 0).then_some((stats.system_cpu_ns, stats.online_cpus)),
            memory_bytes: stats.memory_usage_bytes,
        })
    }
}

/// Waits until the watcher reports an exit, at most `limit`. Lost and regained
/// observations in between are skipped.
async fn wait_exited(events: &mut mpsc::UnboundedReceiver<Observed>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Observed::Exited { .. })) => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// The working directory inside the container.
fn container_workdir(spec: &InstanceSpec) -> Option<String> {
    match (spec.mounts_artifact(), &spec.workdir) {
        (true, Some(sub)) => Some(format!("{APP_DIR}/{sub}")),
        (true, None) => Some(APP_DIR.to_owned()),
        (false, Some(sub)) => Some(format!("/{sub}")),
        (false, None) => None,
    }
}

/// `sluice-<prefix made name-safe>-<hash of prefix>-`: container names allow only
/// `[a-zA-Z0-9_.-]`, so the hash keeps prefixes that differ only in other characters apart.
fn name_prefix(token_prefix: &str) -> String {
    let safe: String = token_prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // FNV-1a: stable across builds and platforms, which std's hasher is not.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token_prefix.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sluice-{}-{:08x}-", safe.trim_matches('-'), hash >> 32)
}

/// What the container's end looks like to the supervisor.
fn exited(info: &ContainerInfo) -> Observed {
    let code = i32::try_from(info.state.exit_code).ok();
    let what = if info.state.oom_killed {
        format!(
            "the container was OOM-killed: it used more than its memory limit of {} bytes (exit code {})",
            info.memory_bytes, info.state.exit_code
        )
    } else if !info.state.error.is_empty() {
        format!(
            "the container failed: {} (exit code {})",
            info.state.error, info.state.exit_code
        )
    } else {
        format!("the container exited with code {}", info.state.exit_code)
    };
    Observed::Exited { code, what }
}

fn disappeared(container: &str) -> Observed {
    Observed::Exited {
        code: None,
        what: format!("the container {container} disappeared (removed outside sluice)"),
    }
}

/// Reports the container's end (or its loss and recovery while the daemon is away).
async fn watch_container(docker: Docker, container: String, tx: mpsc::UnboundedSender<Observed>) {
    // Lost: the daemon did not answer; then it is polled every OBSERVE_RETRY instead of
    // waited on.
    let mut lost = false;
    loop {
        let result = if lost {
            tokio::time::sleep(OBSERVE_RETRY).await;
            docker.inspect_container(&container).await
        } else {
            match docker.wait_container(&container).await {
                Ok(_) => docker.inspect_container(&container).await,
                Err(e) => Err(e),
            }
        };
        match result {
            // Running: back after a loss, or woke without an exit (a restarted daemon);
            // either way, wait again.
            Ok(info) if info.state.running => {
                if lost {
                    lost = false;
                    let _ = tx.send(Observed::Regained);
                }
            }
            Ok(info) => {
                let _ = tx.send(exited(&info));
                return;
            }
            Err(e) if e.is_not_found() => {
                let _ = tx.send(disappeared(&container));
                return;
            }
            Err(e) => {
                if !lost {
                    lost = true;
                    let _ = tx.send(Observed::Lost {
                        reason: format!("cannot observe the container: {e}"),
                    });
                }
            }
        }
    }
}

/// Appends the container's stdout and stderr to `path` until the container stops; resumes
/// after a broken connection from the time of the last chunk.
async fn follow_logs(docker: Docker, container: String, path: PathBuf, since: Option<SystemTime>) {
    let mut since = since;
    loop {
        let options = LogOptions {
            follow: true,
            since,
            tail: None,
        };
        let mut stream = match docker.logs(&container, &options).await {
            Ok(stream) => stream,
            Err(e) if e.is_not_found() => return,
            Err(_) => {
                tokio::time::sleep(OBSERVE_RETRY).await;
                continue;
            }
        };
        let mut file = match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
        {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(log = %path.display(), "cannot open the instance log: {e}");
                return;
            }
        };
        let mut broken = false;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    since = Some(SystemTime::now());
                    if file.write_all(&chunk.data).await.is_err() || file.flush().await.is_err() {
                        tracing::warn!(log = %path.display(), "cannot write the instance log");
                        return;
                    }
                }
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if !broken {
            return;
        }
        tokio::time::sleep(OBSERVE_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_safe_and_distinct() {
        let a = name_prefix("test-adopt:");
        assert!(a.starts_with("sluice-test-adopt-"), "{a}");
        assert!(a.ends_with('-'));
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        );
        assert_ne!(name_prefix("a:"), name_prefix("a/"));
        assert_eq!(name_prefix("a:"), name_prefix("a:"));
    }
}
