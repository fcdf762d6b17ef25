//! [`ProcessRuntime`]: instances as supervised host process groups.
//!
//! Layout under the root directory:
//!
//! ```text
//! root/instances/<id>/   the unpacked artifact (fresh for each new instance, reused by
//!                        restarts, removed at stop)
//! root/logs/<id>.log     stdout and stderr of every process of the instance (kept)
//! root/state/<id>.json   the state record while a process runs (see `state.rs`)
//! ```
//!
//! Each instance runs as `/bin/sh -c COMMAND` in a new session (so in its own process group)
//! with stdin at `/dev/null` and both output streams appended to its log file. Files rather
//! than pipes mean nothing breaks when the control plane dies: no SIGPIPE, no full pipe, the
//! log keeps growing. The shared supervisor (`supervisor.rs`) waits for the process (or
//! polls `/proc` for an adopted one), probes health, restarts with backoff and handles stop;
//! this module is its [`Driver`] for processes.
//!
//! Resource limits ([`crate::ResourceLimits`]) are not enforced for processes (no cgroups
//! here, and `RLIMIT_AS` would break runtimes that reserve address space); they are only
//! reported in [`crate::Usage`] so utilisation can be computed against them.
//!
//! Dropping the runtime aborts the supervisors but never signals a process, exactly like a
//! crash, so [`Runtime::adopt`] on a new runtime picks up where it left off.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::health::probe;
use crate::procfs;
use crate::session::new_session;
use crate::spec::{INSTANCE_TOKEN_VAR, InstanceSpec, PORT_VAR, is_id_byte};
use crate::state::{self, RECORD_FORMAT, Record};
use crate::supervisor::{
    Core, Driver, Observed, RawUsage, Running, blocking, check_port_free, exit_text, now_ms,
};
use crate::{AdoptOutcome, Adopted, InstanceStatus, Runtime, RuntimeError, Usage, validate_id};

/// How often an adopted process (not our child, so not waitable) is checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// How often a terminating process group is checked for being gone.
const GONE_POLL: Duration = Duration::from_millis(20);

/// How long to wait for a group to vanish after SIGKILL before giving up on it (a process
/// stuck in uninterruptible IO); the instance is reported stopped regardless.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Default `PATH` for instances that do not declare one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs instances as host process groups. See the module documentation for the layout.
///
/// Not `Clone`: share it as `Arc<ProcessRuntime>` (or `Arc<dyn Runtime>`). Dropping it
/// leaves the processes running, like a crash; use [`Runtime::stop`] or
/// [`ProcessRuntime::kill_all`] for a clean shutdown.
pub struct ProcessRuntime {
    inner: Arc<Core<ProcessDriver>>,
}

/// The directories under a runtime's root and its token prefix; shared with the Docker
/// runtime, which lays out instances and logs the same way.
pub(crate) struct Layout {
    pub instances_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub state_dir: PathBuf,
    pub token_prefix: String,
}

impl Layout {
    /// Checks `token_prefix` and creates `instances/`, `logs/` and `state/` under `root`.
    pub(crate) fn new(root: &Path, token_prefix: String) -> Result<Layout, RuntimeError> {
        let bad = |reason: &str| RuntimeError::InvalidTokenPrefix {
            prefix: token_prefix.clone(),
            reason: reason.to_owned(),
        };
        if !token_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("use printable ASCII without spaces"));
        }
        match token_prefix.bytes().last() {
            None => return Err(bad("it is empty")),
            Some(last) if is_id_byte(last) => {
                return Err(bad(
                    "it must end with a character that ids cannot contain, such as ':'",
                ));
            }
            Some(_) => {}
        }
        let layout = Layout {
            instances_dir: root.join("instances"),
            logs_dir: root.join("logs"),
            state_dir: root.join("state"),
            token_prefix,
        };
        for dir in [&layout.instances_dir, &layout.logs_dir, &layout.state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(layout)
    }

    /// `root/logs/<id>.log` for a valid id. An invalid id must not become a path outside
    /// the log directory, so it maps to `root/logs/.invalid`, which nothing ever writes.
    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        if validate_id(id).is_ok() {
            self.logs_dir.join(format!("{id}.log"))
        } else {
            self.logs_dir.join(".invalid")
        }
    }

    /// `root/instances/<id>`.
    pub(crate) fn instance_dir(&self, id: &str) -> PathBuf {
        self.instances_dir.join(id)
    }

    /// Removes `root/instances/<id>` (errors are ignored: it may be gone already).
    pub(crate) async fn remove_instance_dir(&self, id: &str) {
        if validate_id(id).is_err() {
            return;
        }
        let dir = self.instance_dir(id);
        let _ = blocking(move || std::fs::remove_dir_all(dir)).await;
    }
}

/// The process [`Driver`].
struct ProcessDriver {
    layout: Layout,
}

/// A running process group of an instance.
struct ProcessRunning {
    proc: Proc,
    pgid: i32,
    /// When the first health probe may run (`initial_delay` after the process started).
    first_check: Instant,
    target: Arc<ProbeTarget>,
}

/// Where command probes run, with which environment.
struct ProbeTarget {
    workdir: PathBuf,
    env: BTreeMap<String, String>,
}

enum Proc {
    /// Our child: exit is observed with `wait`.
    Owned { child: Child, pid: i32 },
    /// Started by an earlier control plane: exit is observed by polling `/proc`.
    Adopted { pid: i32, starttime: Option<u64> },
}

impl Proc {
    fn pid(&self) -> i32 {
        match self {
            Proc::Owned { pid, .. } | Proc::Adopted { pid, .. } => *pid,
        }
    }

    /// Resolves when the main process has exited, with its exit code when known.
    /// Cancel-safe: it can be polled again after being dropped in a `select!`.
    async fn exited(&mut self) -> Option<i32> {
        match self {
            Proc::Owned { child, .. } => child.wait().await.ok().and_then(|s| s.code()),
            Proc::Adopted { pid, starttime } => loop {
                if !procfs::is_running(*pid, *starttime) {
                    return None;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }

    /// Whether the main process is gone, reaping it if it is our child.
    fn gone(&mut self) -> bool {
        match self {
            Proc::Owned { child, .. } => !matches!(child.try_wait(), Ok(None)),
            Proc::Adopted { pid, starttime } => !procfs::is_running(*pid, *starttime),
        }
    }
}

impl Running for ProcessRunning {
    type Target = ProbeTarget;

    fn target(&self) -> Arc<ProbeTarget> {
        Arc::clone(&self.target)
    }

    fn pid(&self) -> Option<i32> {
        Some(self.proc.pid())
    }

    fn pgid(&self) -> Option<i32> {
        Some(self.pgid)
    }

    fn first_check(&self) -> Instant {
        self.first_check
    }

    async fn observe(&mut self) -> Observed {
        let code = self.proc.exited().await;
        Observed::Exited {
            code,
            what: exit_text(code),
        }
    }
}

impl ProcessRuntime {
    /// Creates a runtime rooted at `root` (`instances/`, `logs/` and `state/` are created
    /// under it). Starts nothing; call [`Runtime::adopt`] to pick up instances of a previous
    /// run.
    ///
    /// `token_prefix` identifies this data directory: every instance process carries
    /// `SLUICE_INSTANCE_TOKEN=<token_prefix><id>`, and only processes with this prefix are
    /// ever adopted or killed. It must be non-empty, printable ASCII without spaces, and end
    /// with a character that cannot occur in an id (for example `:`), so that no other
    /// runtime's tokens can look like ours (`a:` never matches the tokens of `a:b:`).
    pub fn new(root: PathBuf, token_prefix: String) -> Result<ProcessRuntime, RuntimeError> {
        let layout = Layout::new(&root, token_prefix)?;
        Ok(ProcessRuntime {
            inner: Arc::new(Core::new(ProcessDriver { layout })),
        })
    }

    /// A counter bumped on every status change (see [`Runtime::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.subscribe()
    }

    /// Kills everything at once, without grace: every supervised instance's process group
    /// and every process carrying this runtime's token prefix get SIGKILL; supervisors are
    /// aborted, state records removed, instances marked stopped. Returns the pids signalled.
    ///
    /// For shutdown paths and tests. Synchronous (it scans `/proc`); on a busy async
    /// runtime call it from `spawn_blocking`.
    pub fn kill_all(&self) -> Vec<i32> {
        let layout = &self.inner.driver.layout;
        let mut killed = Vec::new();
        for (id, pid, pgid) in self.inner.abandon_all() {
            if let Some(pgid) = pgid {
                let pid = pid.unwrap_or(pgid);
                procfs::signal_group(pgid, pid, Signal::SIGKILL);
                killed.push(pid);
            }
            let _ = state::remove(&layout.state_dir, &id);
        }
        // Rounds catch processes forked between a scan and the kill.
        for _ in 0..3 {
            let found = procfs::processes_with_token_prefix(&layout.token_prefix);
            if found.is_empty() {
                break;
            }
            for (pid, _) in found {
                procfs::kill_with_group(pid);
                killed.push(pid);
            }
        }
        killed.sort_unstable();
        killed.dedup();
        killed
    }
}

impl Drop for ProcessRuntime {
    /// Aborts the supervisors and leaves every process running, as a crash would.
    fn drop(&mut self) {
        self.inner.abort_supervisors();
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        spec.validate()?;
        if spec.image.is_some() {
            return Err(RuntimeError::InvalidSpec {
                id: spec.id.clone(),
                field: "image".into(),
                reason: "the process runtime runs unpacked artifacts, not images; remove `image` or run sluice with the docker runtime".into(),
            });
        }
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
        let layout = &self.inner.driver.layout;
        let dir = layout.state_dir.clone();
        let found = blocking(move || state::read_all(&dir)).await??;
        let mut report = Vec::new();
        for item in found {
            match item {
                state::Found::Unreadable { id, reason } => {
                    let dir = layout.state_dir.clone();
                    let name = id.clone();
                    let _ = blocking(move || {
                        let from = state::record_path(&dir, &name);
                        std::fs::rename(&from, dir.join(format!("{name}.json.bad")))
                    })
                    .await;
                    tracing::warn!(instance = %id, %reason, "unreadable state record set aside");
                    report.push(Adopted {
                        id,
                        pid: None,
                        outcome: AdoptOutcome::Unreadable { reason },
                        spec: None,
                    });
                }
                state::Found::Record(record) => {
                    if let Some(adopted) = self.adopt_record(*record).await? {
                        report.push(adopted);
                    }
                }
            }
        }
        // Processes with our token but no record: the control plane died between spawning
        // and recording them. Nobody supervises them, so they go.
        let prefix = layout.token_prefix.clone();
        let strays = blocking(move || procfs::processes_with_token_prefix(&prefix)).await?;
        let mut seen = std::collections::BTreeSet::new();
        for (pid, token) in strays {
            let Some(id) = token.strip_prefix(&layout.token_prefix) else {
                continue;
            };
            if validate_id(id).is_err() || self.inner.is_active(id) {
                continue;
            }
            procfs::kill_with_group(pid);
            tracing::warn!(instance = %id, pid, "killed a stray instance process");
            if seen.insert(id.to_owned()) {
                report.push(Adopted {
                    id: id.to_owned(),
                    pid: Some(pid),
                    outcome: AdoptOutcome::StrayKilled,
                    spec: None,
                });
            }
        }
        Ok(report)
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.inner.driver.layout.log_path(id)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        ProcessRuntime::subscribe(self)
    }

    async fn usage(&self, id: &str) -> Option<Usage> {
        self.inner.usage(id).await
    }

    fn kill_all(&self) -> Vec<i32> {
        ProcessRuntime::kill_all(self)
    }
}

impl ProcessRuntime {
    /// Adopts or buries the instance of one state record.
    async fn adopt_record(&self, record: Record) -> Result<Option<Adopted>, RuntimeError> {
        let layout = &self.inner.driver.layout;
        let spec = record.spec;
        let id = spec.id.clone();
        if spec.validate().is_err() || spec.image.is_some() {
            return Ok(Some(Adopted {
                id: id.clone(),
                pid: Some(record.pid),
                outcome: AdoptOutcome::Unreadable {
                    reason: format!("the recorded spec of {id} is not valid"),
                },
                spec: Some(spec),
            }));
        }
        if self.inner.is_active(&id) {
            // Already supervised by this runtime (adopt called twice, or started anew).
            return Ok(None);
        }
        let token = spec.token(&layout.token_prefix);
        let (pid, starttime) = (record.pid, record.proc_start);
        let alive = blocking(move || {
            procfs::is_running(pid, starttime) && procfs::token_of(pid).is_some_and(|t| t == token)
        })
        .await?;
        if !alive {
            // Leftovers of the group (a background child that outlived the shell) carry
            // the exact token; nothing else is touched.
            let token = spec.token(&layout.token_prefix);
            let dir = layout.state_dir.clone();
            let rid = id.clone();
            blocking(move || {
                for (pid, found) in procfs::processes_with_token_prefix(&token) {
                    if found == token {
                        procfs::kill_with_group(pid);
                    }
                }
                state::remove(&dir, &rid)
            })
            .await??;
            tracing::info!(instance = %id, pid, "recorded instance is gone; record removed");
            return Ok(Some(Adopted {
                id,
                pid: Some(pid),
                outcome: AdoptOutcome::Dead,
                spec: Some(spec),
            }));
        }
        let pgid = procfs::stat(pid).map_or(record.pgid, |s| s.pgrp);
        let since_start = u64::try_from(now_ms().saturating_sub(record.started_ms)).unwrap_or(0);
        let first_check = Instant::now()
            + spec
                .health
                .initial_delay
                .saturating_sub(Duration::from_millis(since_start));
        let running = ProcessRunning {
            proc: Proc::Adopted { pid, starttime },
            pgid,
            first_check,
            target: Arc::new(ProbeTarget {
                workdir: instance_workdir(layout, &spec),
                env: instance_env(layout, &spec),
            }),
        };
        let adopted = spec.clone();
        if !self
            .inner
            .adopt_running(spec, running, record.restarts, record.started_ms)
        {
            // Started by a concurrent `start` in the meantime; that one wins.
            return Ok(None);
        }
        tracing::info!(instance = %id, pid, "adopted a running instance");
        Ok(Some(Adopted {
            id,
            pid: Some(pid),
            outcome: AdoptOutcome::Running,
            spec: Some(adopted),
        }))
    }
}

impl Driver for ProcessDriver {
    type Running = ProcessRunning;

    async fn launch(
        &self,
        spec: &Arc<InstanceSpec>,
        restarts: u32,
        restart: Option<&str>,
    ) -> Result<ProcessRunning, RuntimeError> {
        spawn_process(&self.layout, spec, restarts, restart).await
    }

    async fn probe(&self, target: &ProbeTarget, spec: &InstanceSpec) -> Result<(), String> {
        probe(&spec.health.check, spec.port, &target.workdir, &target.env).await
    }

    async fn terminate(&self, running: ProcessRunning, grace: Duration) -> Option<String> {
        terminate(running, grace).await
    }

    async fn reap(&self, mut running: ProcessRunning) {
        // Whatever the shell left behind in its group goes with it.
        procfs::signal_group(running.pgid, 0, Signal::SIGKILL);
        wait_gone(&mut running, Instant::now() + KILL_WAIT).await;
    }

    async fn retire(&self, id: &str, stopped: bool) {
        if stopped {
            self.layout.remove_instance_dir(id).await;
        }
        let dir = self.layout.state_dir.clone();
        let rid = id.to_owned();
        if let Ok(Err(err)) = blocking(move || state::remove(&dir, &rid)).await {
            tracing::warn!(instance = %id, "{err}");
        }
    }

    async fn sample(&self, status: &InstanceStatus, pgid: Option<i32>) -> Option<RawUsage> {
        let pgid = pgid?;
        let (cpu_ns, memory_bytes) = blocking(move || procfs::group_usage(pgid)).await.ok()??;
        Some(RawUsage {
            key: format!("{}", status.pid.unwrap_or(pgid)),
            cpu_ns,
            system: None,
            memory_bytes,
        })
    }
}

/// SIGTERM to the group, SIGKILL after `grace`, then wait (bounded) until it is gone.
async fn terminate(mut running: ProcessRunning, grace: Duration) -> Option<String> {
    let pid = running.proc.pid();
    procfs::signal_group(running.pgid, pid, Signal::SIGTERM);
    if wait_gone(&mut running, Instant::now() + grace).await {
        return None;
    }
    procfs::signal_group(running.pgid, pid, Signal::SIGKILL);
    if wait_gone(&mut running, Instant::now() + KILL_WAIT).await {
        return None;
    }
    tracing::warn!(
        pid,
        pgid = running.pgid,
        "process group still present {KILL_WAIT:?} after SIGKILL"
    );
    Some(format!(
        "process group {} was still present {KILL_WAIT:?} after SIGKILL (stuck in the kernel?)",
        running.pgid
    ))
}

/// Polls until the main process and every other member of its group are gone (zombies
/// count as gone) or `deadline` passes. Returns whether they are gone.
async fn wait_gone(running: &mut ProcessRunning, deadline: Instant) -> bool {
    loop {
        let main_gone = running.proc.gone();
        let pgid = running.pgid;
        let group_gone = main_gone
            && blocking(move || !procfs::group_alive(pgid))
                .await
                .unwrap_or(false);
        if group_gone {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(GONE_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Prepares the directory, opens the log, spawns the process in a new session and writes
/// the state record. `restart` is `None` for a new instance (the artifact is unpacked
/// anew) and says why otherwise (the directory is reused).
async fn spawn_process(
    layout: &Layout,
    spec: &Arc<InstanceSpec>,
    restarts: u32,
    restart: Option<&str>,
) -> Result<ProcessRunning, RuntimeError> {
    let dir = layout.instance_dir(&spec.id);
    let workdir = instance_workdir(layout, spec);
    let log = layout.log_path(&spec.id);
    let prepared = {
        let (spec, dir, workdir) = (Arc::clone(spec), dir.clone(), workdir.clone());
        let restart = restart.map(str::to_owned);
        blocking(move || {
            prepare_dir(&spec, &dir, Some(&workdir), restart.is_some())?;
            open_log(&spec, &log, restart.as_deref())
        })
        .await??
    };
    let (stdout, stderr) = prepared;
    let env = instance_env(layout, spec);
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .env_clear()
        .envs(&env)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(false);
    new_session(&mut command);
    let child = command.spawn().map_err(|source| RuntimeError::Spawn {
        id: spec.id.clone(),
        source,
    })?;
    // With setsid in the child, pid = pgid = sid. A pid is only absent after reaping,
    // which cannot have happened yet.
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let started_ms = now_ms();
    let record = Record {
        format: RECORD_FORMAT,
        spec: (**spec).clone(),
        pid,
        pgid: pid,
        proc_start: procfs::stat(pid).map(|s| s.starttime),
        started_ms,
        restarts,
    };
    let state_dir = layout.state_dir.clone();
    let written = blocking(move || state::write(&state_dir, &record)).await;
    let failure = match written {
        Ok(Ok(())) => None,
        Ok(Err(err)) | Err(err) => Some(err),
    };
    if let Some(err) = failure {
        // Unrecorded processes cannot be adopted after a crash; better not to run it.
        procfs::signal_group(pid, pid, Signal::SIGKILL);
        return Err(err);
    }
    tracing::info!(instance = %spec.id, pid, restarts, "instance process started");
    Ok(ProcessRunning {
        proc: Proc::Owned { child, pid },
        pgid: pid,
        first_check: Instant::now() + spec.health.initial_delay,
        target: Arc::new(ProbeTarget { workdir, env }),
    })
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io {
        action,
        path,
        source,
    }
}

/// Prepares the instance directory `dir`: for a new instance (`reuse` false, or the
/// directory is missing) the artifact is unpacked into it anew. Checks that `workdir`, when
/// given, is a directory. Synchronous.
pub(crate) fn prepare_dir(
    spec: &InstanceSpec,
    dir: &Path,
    workdir: Option<&Path>,
    reuse: bool,
) -> Result<(), RuntimeError> {
    if !reuse || !dir.is_dir() {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("clear the instance directory", dir)(e)),
        }
        std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        sluice_runner::unpack(&spec.artifact, dir).map_err(|source| RuntimeError::Artifact {
            id: spec.id.clone(),
            source,
        })?;
    }
    if workdir.is_some_and(|w| !w.is_dir()) {
        return Err(RuntimeError::Workdir {
            id: spec.id.clone(),
            workdir: spec.workdir.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// Opens the log file for appending and writes the start marker (with `restart`, the
/// reason of a restart). Returns two handles for stdout and stderr. Synchronous.
pub(crate) fn open_log(
    spec: &InstanceSpec,
    log: &Path,
    restart: Option<&str>,
) -> Result<(File, File), RuntimeError> {
    let mut out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_error("open the log file", log))?;
    let marker = format!(
        "--- sluice: starting instance {} (service {}, version {}){} at {} ms ---\n",
        spec.id,
        spec.service,
        spec.version,
        restart.map(|r| format!(", {r}")).unwrap_or_default(),
        now_ms()
    );
    out.write_all(marker.as_bytes())
        .map_err(io_error("write the log file", log))?;
    let err = out
        .try_clone()
        .map_err(io_error("open the log file", log))?;
    Ok((out, err))
}

/// The complete environment of an instance's processes (and its command probes).
fn instance_env(layout: &Layout, spec: &InstanceSpec) -> BTreeMap<String, String> {
    let home = layout.instance_dir(&spec.id).to_string_lossy().into_owned();
    base_env(spec, &layout.token_prefix, &home)
}

/// `env_vars`, `PORT`, the token, and `PATH`, `HOME` (= `home`) and `LANG` when not
/// declared.
pub(crate) fn base_env(
    spec: &InstanceSpec,
    token_prefix: &str,
    home: &str,
) -> BTreeMap<String, String> {
    let mut env = spec.env_vars.clone();
    env.insert(PORT_VAR.to_owned(), spec.port.to_string());
    env.insert(INSTANCE_TOKEN_VAR.to_owned(), spec.token(token_prefix));
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.entry("HOME".to_owned())
        .or_insert_with(|| home.to_owned());
    env.entry("LANG".to_owned())
        .or_insert_with(|| "C.UTF-8".to_owned());
    env
}

fn instance_workdir(layout: &Layout, spec: &InstanceSpec) -> PathBuf {
    let dir = layout.instance_dir(&spec.id);
    match &spec.workdir {
        Some(sub) => dir.join(sub),
        None => dir,
    }
}
