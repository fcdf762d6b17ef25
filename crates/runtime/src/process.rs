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
//! log keeps growing. One supervisor task per instance waits for the process (or polls
//! `/proc` for an adopted one), probes health, restarts with backoff and handles stop.
//!
//! Architecture invariant: the supervisor is the only writer of an instance's process
//! state; [`ProcessRuntime::stop`] only asks (a watch flag) and waits for it to finish.
//! Dropping the runtime aborts the supervisors but never signals a process, exactly like a
//! crash, so [`Runtime::adopt`] on a new runtime picks up where it left off.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::health::probe;
use crate::procfs;
use crate::session::new_session;
use crate::spec::{HealthCheck, INSTANCE_TOKEN_VAR, InstanceSpec, PORT_VAR, is_id_byte};
use crate::state::{self, RECORD_FORMAT, Record};
use crate::{
    AdoptOutcome, Adopted, InstanceState, InstanceStatus, Runtime, RuntimeError, STABLE_AFTER,
    validate_id,
};

/// How often an adopted process (not our child, so not waitable) is checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// How often a terminating process group is checked for being gone.
const GONE_POLL: Duration = Duration::from_millis(20);

/// How long to wait for a group to vanish after SIGKILL before giving up on it (a process
/// stuck in uninterruptible IO); the instance is reported stopped regardless.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Default `PATH` for instances that do not declare one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs instances as host process groups. See the module documentation for the layout.
///
/// Not `Clone`: share it as `Arc<ProcessRuntime>` (or `Arc<dyn Runtime>`). Dropping it
/// leaves the processes running, like a crash; use [`Runtime::stop`] or
/// [`ProcessRuntime::kill_all`] for a clean shutdown.
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    instances_dir: PathBuf,
    logs_dir: PathBuf,
    state_dir: PathBuf,
    token_prefix: String,
    entries: Mutex<HashMap<String, Entry>>,
    changes: watch::Sender<u64>,
    next_gen: std::sync::atomic::AtomicU64,
}

/// The runtime's view of one instance.
struct Entry {
    /// Distinguishes this instance from an earlier one with the same id, so a late update
    /// of a finished supervisor never lands on its successor.
    generation: u64,
    status: InstanceStatus,
    /// Process group of the running process, for `kill_all`.
    pgid: Option<i32>,
    /// Set to true to ask the supervisor to stop.
    stop: watch::Sender<bool>,
    /// Becomes true (or its sender is dropped) once the supervisor is done.
    done: watch::Receiver<bool>,
    task: Option<AbortHandle>,
}

/// A running process of an instance.
struct Running {
    proc: Proc,
    pgid: i32,
    /// When the first health probe may run (`initial_delay` after the process started).
    first_check: Instant,
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

/// Why watching a running process ended. `stable` says the process stayed ready for
/// [`STABLE_AFTER`] at some point, which resets the consecutive-restart count.
enum End {
    Stop,
    Exited { code: Option<i32>, stable: bool },
    Unhealthy { reason: String, stable: bool },
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
        let inner = Inner {
            instances_dir: root.join("instances"),
            logs_dir: root.join("logs"),
            state_dir: root.join("state"),
            token_prefix,
            entries: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            next_gen: std::sync::atomic::AtomicU64::new(1),
        };
        for dir in [&inner.instances_dir, &inner.logs_dir, &inner.state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(ProcessRuntime {
            inner: Arc::new(inner),
        })
    }

    /// A counter bumped on every status change (see [`Runtime::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Kills everything at once, without grace: every supervised instance's process group
    /// and every process carrying this runtime's token prefix get SIGKILL; supervisors are
    /// aborted, state records removed, instances marked stopped. Returns the pids signalled.
    ///
    /// For shutdown paths and tests. Synchronous (it scans `/proc`); on a busy async
    /// runtime call it from `spawn_blocking`.
    pub fn kill_all(&self) -> Vec<i32> {
        let mut killed = Vec::new();
        {
            let mut entries = self.inner.lock();
            for (id, entry) in entries.iter_mut() {
                if let Some(task) = entry.task.take() {
                    task.abort();
                }
                if let Some(pgid) = entry.pgid.take() {
                    let pid = entry.status.pid.unwrap_or(pgid);
                    procfs::signal_group(pgid, pid, Signal::SIGKILL);
                    killed.push(pid);
                }
                let _ = state::remove(&self.inner.state_dir, id);
                entry.status.state = InstanceState::Stopped;
                entry.status.ready = false;
                entry.status.pid = None;
            }
        }
        self.inner.bump();
        // Rounds catch processes forked between a scan and the kill.
        for _ in 0..3 {
            let found = procfs::processes_with_token_prefix(&self.inner.token_prefix);
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
        for entry in self.inner.lock().values_mut() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        spec.validate()?;
        check_port_free(&spec.id, spec.port).await?;
        let id = spec.id.clone();
        let status = initial_status(&spec, None, 0, now_ms());
        let spec = Arc::new(spec);
        let Some(sup) = Supervisor::register(&self.inner, Arc::clone(&spec), status, None, 0)
        else {
            return Err(RuntimeError::AlreadyRunning { id });
        };
        let running = match spawn_process(&self.inner, &spec, 0, None).await {
            Ok(running) => running,
            Err(err) => {
                let mut entries = self.inner.lock();
                if entries
                    .get(&id)
                    .is_some_and(|e| e.generation == sup.generation)
                {
                    entries.remove(&id);
                }
                drop(entries);
                self.inner.bump();
                return Err(err);
            }
        };
        self.inner.attach(&id, sup.generation, &running, now_ms());
        sup.spawn(running);
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        enum Next {
            Nothing,
            Wait(watch::Receiver<bool>),
            Clean,
        }
        let next = {
            let mut entries = self.inner.lock();
            match entries.get_mut(id) {
                None => Next::Nothing,
                Some(entry) if entry.status.state.is_active() => {
                    entry.stop.send_replace(true);
                    Next::Wait(entry.done.clone())
                }
                Some(entry) if entry.status.state != InstanceState::Stopped => {
                    // Crash-looped or exited: no process, no record; only the label changes.
                    entry.status.state = InstanceState::Stopped;
                    Next::Clean
                }
                Some(_) => Next::Nothing,
            }
        };
        match next {
            Next::Nothing => {}
            Next::Wait(mut done) => {
                // A dropped sender means the supervisor is gone too.
                let _ = done.wait_for(|d| *d).await;
            }
            Next::Clean => {
                self.inner.bump();
                remove_instance_dir(&self.inner, id).await;
            }
        }
        Ok(())
    }

    fn forget(&self, id: &str) -> bool {
        let mut entries = self.inner.lock();
        if entries.get(id).is_some_and(|e| !e.status.state.is_active()) {
            entries.remove(id);
            drop(entries);
            self.inner.bump();
            true
        } else {
            false
        }
    }

    fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.inner.lock().get(id).map(|e| e.status.clone())
    }

    fn list(&self) -> Vec<InstanceStatus> {
        let mut all: Vec<InstanceStatus> = self
            .inner
            .lock()
            .values()
            .map(|e| e.status.clone())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    async fn adopt(&self) -> Result<Vec<Adopted>, RuntimeError> {
        let dir = self.inner.state_dir.clone();
        let found = blocking(move || state::read_all(&dir)).await??;
        let mut report = Vec::new();
        for item in found {
            match item {
                state::Found::Unreadable { id, reason } => {
                    let dir = self.inner.state_dir.clone();
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
        let prefix = self.inner.token_prefix.clone();
        let strays = blocking(move || procfs::processes_with_token_prefix(&prefix)).await?;
        let mut seen = std::collections::BTreeSet::new();
        for (pid, token) in strays {
            let Some(id) = token.strip_prefix(&self.inner.token_prefix) else {
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
        log_path(&self.inner, id)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        ProcessRuntime::subscribe(self)
    }
}

impl ProcessRuntime {
    /// Adopts or buries the instance of one state record.
    async fn adopt_record(&self, record: Record) -> Result<Option<Adopted>, RuntimeError> {
        let spec = record.spec;
        let id = spec.id.clone();
        if spec.validate().is_err() {
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
        let token = spec.token(&self.inner.token_prefix);
        let (pid, starttime) = (record.pid, record.proc_start);
        let alive = blocking(move || {
            procfs::is_running(pid, starttime) && procfs::token_of(pid).is_some_and(|t| t == token)
        })
        .await?;
        if !alive {
            // Leftovers of the group (a background child that outlived the shell) carry
            // the exact token; nothing else is touched.
            let token = spec.token(&self.inner.token_prefix);
            let dir = self.inner.state_dir.clone();
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
        let running = Running {
            proc: Proc::Adopted { pid, starttime },
            pgid,
            first_check,
        };
        let status = initial_status(&spec, Some(pid), record.restarts, record.started_ms);
        let spec = Arc::new(spec);
        let Some(sup) = Supervisor::register(
            &self.inner,
            Arc::clone(&spec),
            status,
            Some(pgid),
            record.restarts,
        ) else {
            // Started by a concurrent `start` in the meantime; that one wins.
            return Ok(None);
        };
        sup.spawn(running);
        tracing::info!(instance = %id, pid, "adopted a running instance");
        Ok(Some(Adopted {
            id,
            pid: Some(pid),
            outcome: AdoptOutcome::Running,
            spec: Some((*spec).clone()),
        }))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn next_generation(&self) -> u64 {
        self.next_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn is_active(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|e| e.status.state.is_active())
    }

    /// Applies `change` to the status of instance `id` if it is still generation
    /// `generation`, and wakes subscribers when anything changed.
    fn update(&self, id: &str, generation: u64, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(id).filter(|e| e.generation == generation) else {
            return;
        };
        let before = (entry.status.clone(), entry.pgid);
        change(entry);
        let ready = entry.status.state == InstanceState::Ready;
        if ready && !entry.status.ready {
            entry.status.ready_since_ms = Some(now_ms());
        } else if !ready {
            entry.status.ready_since_ms = None;
        }
        entry.status.ready = ready;
        let changed = before != (entry.status.clone(), entry.pgid);
        drop(entries);
        if changed {
            self.bump();
        }
    }

    /// Records that `running` is the current process of instance `id`.
    fn attach(&self, id: &str, generation: u64, running: &Running, started_ms: i64) {
        let pid = running.proc.pid();
        let pgid = running.pgid;
        self.update(id, generation, |e| {
            e.status.pid = Some(pid);
            e.status.started_ms = started_ms;
            e.status.state = InstanceState::Starting;
            e.pgid = Some(pgid);
        });
    }

    fn set_task(&self, id: &str, generation: u64, task: AbortHandle) {
        let mut entries = self.lock();
        match entries.get_mut(id).filter(|e| e.generation == generation) {
            Some(entry) => entry.task = Some(task),
            // Already replaced; nothing must keep running for it.
            None => task.abort(),
        }
    }
}

/// One supervisor task per instance.
struct Supervisor {
    inner: Arc<Inner>,
    generation: u64,
    spec: Arc<InstanceSpec>,
    stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
    restarts: u32,
}

impl Supervisor {
    /// Lists a new generation of instance `spec.id` with `status`, unless an active one is
    /// listed; returns the supervisor to [`Supervisor::spawn`] once a process runs.
    fn register(
        inner: &Arc<Inner>,
        spec: Arc<InstanceSpec>,
        status: InstanceStatus,
        pgid: Option<i32>,
        restarts: u32,
    ) -> Option<Supervisor> {
        let generation = inner.next_generation();
        let (stop_tx, stop) = watch::channel(false);
        let (done, done_rx) = watch::channel(false);
        {
            let mut entries = inner.lock();
            if entries
                .get(&spec.id)
                .is_some_and(|e| e.status.state.is_active())
            {
                return None;
            }
            entries.insert(
                spec.id.clone(),
                Entry {
                    generation,
                    status,
                    pgid,
                    stop: stop_tx,
                    done: done_rx,
                    task: None,
                },
            );
        }
        inner.bump();
        Some(Supervisor {
            inner: Arc::clone(inner),
            generation,
            spec,
            stop,
            done,
            restarts,
        })
    }

    /// Supervises `running` (and its successors) in a task of its own.
    fn spawn(self, running: Running) {
        let inner = Arc::clone(&self.inner);
        let (id, generation) = (self.spec.id.clone(), self.generation);
        let task = tokio::spawn(self.run(running));
        inner.set_task(&id, generation, task.abort_handle());
    }

    async fn run(mut self, running: Running) {
        let mut current = Some(running);
        let id = self.spec.id.clone();
        let mut consecutive = 0u32;
        // Why the next process is started; written into the log as its start marker.
        let mut reason = String::new();
        loop {
            let end = match current.as_mut() {
                Some(running) => self.watch(running).await,
                None => End::Exited {
                    code: None,
                    stable: false,
                },
            };
            let mut exit_code = None;
            match end {
                End::Stop => {
                    if let Some(running) = current.take() {
                        self.set(|e| e.status.state = InstanceState::Stopping);
                        terminate(running, self.spec.stop_grace).await;
                    }
                    remove_instance_dir(&self.inner, &id).await;
                    self.finish(InstanceState::Stopped).await;
                    return;
                }
                End::Exited { code, stable } => {
                    if let Some(mut running) = current.take() {
                        // Whatever the shell left behind in its group goes with it.
                        procfs::signal_group(running.pgid, 0, Signal::SIGKILL);
                        wait_gone(&mut running, Instant::now() + KILL_WAIT).await;
                        let what = match code {
                            Some(c) => format!("the process exited with code {c}"),
                            None => "the process exited (killed by a signal, or adopted so its code is unknown)".to_owned(),
                        };
                        reason.clone_from(&what);
                        self.set(|e| {
                            e.status.last_error = Some(what);
                            e.status.pid = None;
                            e.pgid = None;
                        });
                    }
                    if stable {
                        consecutive = 0;
                    }
                    exit_code = code;
                }
                End::Unhealthy {
                    reason: why,
                    stable,
                } => {
                    if let Some(running) = current.take() {
                        let what = format!("liveness failed: {why}");
                        reason.clone_from(&what);
                        self.set(|e| e.status.last_error = Some(what));
                        terminate(running, self.spec.stop_grace).await;
                        self.set(|e| {
                            e.status.pid = None;
                            e.pgid = None;
                        });
                    }
                    if stable {
                        consecutive = 0;
                    }
                }
            }
            if consecutive >= self.spec.restart.max_restarts {
                let last = if self.spec.restart.max_restarts == 0 {
                    InstanceState::Exited { code: exit_code }
                } else {
                    InstanceState::CrashLoop
                };
                tracing::warn!(instance = %id, restarts = self.restarts, "instance gave up: {last:?}");
                self.finish(last).await;
                return;
            }
            consecutive += 1;
            self.restarts += 1;
            let restarts = self.restarts;
            self.set(|e| {
                e.status.state = InstanceState::Restarting {
                    attempt: consecutive,
                };
                e.status.restarts = restarts;
            });
            let backoff = self.spec.restart.backoff(consecutive);
            tokio::select! {
                biased;
                () = stop_requested(&mut self.stop) => {
                    remove_instance_dir(&self.inner, &id).await;
                    self.finish(InstanceState::Stopped).await;
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            let note = format!("restart {consecutive} after {reason}");
            match spawn_process(&self.inner, &self.spec, self.restarts, Some(&note)).await {
                Ok(running) => {
                    self.inner.attach(&id, self.generation, &running, now_ms());
                    current = Some(running);
                }
                Err(err) => {
                    let text = err.to_string();
                    reason.clone_from(&text);
                    self.set(|e| e.status.last_error = Some(text));
                }
            }
        }
    }

    /// Probes health while the process runs; returns on stop, exit or failed liveness.
    async fn watch(&mut self, running: &mut Running) -> End {
        let spec = Arc::clone(&self.spec);
        let policy = &spec.health;
        let workdir = instance_workdir(&self.inner, &spec);
        let env = instance_env(&self.inner, &spec);
        let mut successes = 0u32;
        let mut failures = 0u32;
        let mut ready_since: Option<Instant> = None;
        let mut was_ready = false;
        let mut stable = false;
        let mut next = running.first_check;
        let is_stable = |since: Option<Instant>| since.is_some_and(|s| s.elapsed() >= STABLE_AFTER);
        loop {
            let (started, result) = tokio::select! {
                biased;
                () = stop_requested(&mut self.stop) => return End::Stop,
                code = running.proc.exited() => {
                    let stable = stable || is_stable(ready_since);
                    return End::Exited { code, stable };
                }
                probed = async {
                    tokio::time::sleep_until(next).await;
                    let started = Instant::now();
                    (started, probe(&policy.check, spec.port, &workdir, &env).await)
                } => probed,
            };
            if policy.check == HealthCheck::None {
                if ready_since.is_none() {
                    ready_since = Some(Instant::now());
                    self.set(|e| e.status.state = InstanceState::Ready);
                }
                // Nothing to probe: only exit or stop end this.
                next = Instant::now() + Duration::from_secs(3600);
                continue;
            }
            next = started + policy.interval;
            match result {
                Ok(()) => {
                    failures = 0;
                    successes = successes.saturating_add(1);
                    if ready_since.is_none() && successes >= policy.success_threshold {
                        ready_since = Some(Instant::now());
                        was_ready = true;
                        self.set(|e| e.status.state = InstanceState::Ready);
                    }
                }
                Err(reason) => {
                    successes = 0;
                    failures = failures.saturating_add(1);
                    if was_ready {
                        stable = stable || is_stable(ready_since);
                        ready_since = None;
                        let text = reason.clone();
                        self.set(|e| {
                            e.status.state = InstanceState::Unhealthy;
                            e.status.last_error = Some(text);
                        });
                        if failures >= policy.failure_threshold {
                            return End::Unhealthy { reason, stable };
                        }
                    } else {
                        self.set(|e| e.status.last_error = Some(reason));
                    }
                }
            }
        }
    }

    fn set(&self, change: impl FnOnce(&mut Entry)) {
        self.inner.update(&self.spec.id, self.generation, change);
    }

    /// Final state: no process, record removed, stop waiters released.
    async fn finish(&self, state: InstanceState) {
        let dir = self.inner.state_dir.clone();
        let id = self.spec.id.clone();
        if let Ok(Err(err)) = blocking(move || state::remove(&dir, &id)).await {
            tracing::warn!(instance = %self.spec.id, "{err}");
        }
        self.set(|e| {
            e.status.state = state;
            e.status.pid = None;
            e.pgid = None;
            e.task = None;
        });
        self.done.send_replace(true);
    }
}

/// Resolves once a stop was requested; never if the requester went away.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGTERM to the group, SIGKILL after `grace`, then wait (bounded) until it is gone.
async fn terminate(mut running: Running, grace: Duration) {
    let pid = running.proc.pid();
    procfs::signal_group(running.pgid, pid, Signal::SIGTERM);
    if wait_gone(&mut running, Instant::now() + grace).await {
        return;
    }
    procfs::signal_group(running.pgid, pid, Signal::SIGKILL);
    if !wait_gone(&mut running, Instant::now() + KILL_WAIT).await {
        tracing::warn!(
            pid,
            pgid = running.pgid,
            "process group still present {KILL_WAIT:?} after SIGKILL"
        );
    }
}

/// Polls until the main process and every other member of its group are gone (zombies
/// count as gone) or `deadline` passes. Returns whether they are gone.
async fn wait_gone(running: &mut Running, deadline: Instant) -> bool {
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
    inner: &Arc<Inner>,
    spec: &Arc<InstanceSpec>,
    restarts: u32,
    restart: Option<&str>,
) -> Result<Running, RuntimeError> {
    let dir = inner.instances_dir.join(&spec.id);
    let workdir = instance_workdir(inner, spec);
    let log = log_path(inner, &spec.id);
    let prepared = {
        let (spec, dir, workdir) = (Arc::clone(spec), dir.clone(), workdir.clone());
        let restart = restart.map(str::to_owned);
        blocking(move || prepare(&spec, &dir, &workdir, &log, restart.as_deref())).await??
    };
    let (stdout, stderr) = prepared;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .env_clear()
        .envs(instance_env(inner, spec))
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
    let state_dir = inner.state_dir.clone();
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
    Ok(Running {
        proc: Proc::Owned { child, pid },
        pgid: pid,
        first_check: Instant::now() + spec.health.initial_delay,
    })
}

/// Synchronous part of [`spawn_process`]: the directory and the log file handles.
fn prepare(
    spec: &InstanceSpec,
    dir: &Path,
    workdir: &Path,
    log: &Path,
    restart: Option<&str>,
) -> Result<(File, File), RuntimeError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io {
            action,
            path,
            source,
        }
    };
    if restart.is_none() || !dir.is_dir() {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("clear the instance directory", dir)(e)),
        }
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        sluice_runner::unpack(&spec.artifact, dir).map_err(|source| RuntimeError::Artifact {
            id: spec.id.clone(),
            source,
        })?;
    }
    if !workdir.is_dir() {
        return Err(RuntimeError::Workdir {
            id: spec.id.clone(),
            workdir: spec.workdir.clone().unwrap_or_default(),
        });
    }
    let mut out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("open the log file", log))?;
    let marker = format!(
        "--- sluice: starting instance {} (service {}, version {}){} at {} ms ---\n",
        spec.id,
        spec.service,
        spec.version,
        restart.map(|r| format!(", {r}")).unwrap_or_default(),
        now_ms()
    );
    out.write_all(marker.as_bytes())
        .map_err(io("write the log file", log))?;
    let err = out.try_clone().map_err(io("open the log file", log))?;
    Ok((out, err))
}

/// The complete environment of an instance's processes (and its command probes).
fn instance_env(inner: &Inner, spec: &InstanceSpec) -> BTreeMap<String, String> {
    let mut env = spec.env_vars.clone();
    env.insert(PORT_VAR.to_owned(), spec.port.to_string());
    env.insert(
        INSTANCE_TOKEN_VAR.to_owned(),
        spec.token(&inner.token_prefix),
    );
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.entry("HOME".to_owned()).or_insert_with(|| {
        inner
            .instances_dir
            .join(&spec.id)
            .to_string_lossy()
            .into_owned()
    });
    env.entry("LANG".to_owned())
        .or_insert_with(|| "C.UTF-8".to_owned());
    env
}

fn instance_workdir(inner: &Inner, spec: &InstanceSpec) -> PathBuf {
    let dir = inner.instances_dir.join(&spec.id);
    match &spec.workdir {
        Some(sub) => dir.join(sub),
        None => dir,
    }
}

/// `root/logs/<id>.log` for a valid id. An invalid id must not become a path outside the
/// log directory, so it maps to `root/logs/.invalid`, which nothing ever writes.
fn log_path(inner: &Inner, id: &str) -> PathBuf {
    if validate_id(id).is_ok() {
        inner.logs_dir.join(format!("{id}.log"))
    } else {
        inner.logs_dir.join(".invalid")
    }
}

async fn remove_instance_dir(inner: &Inner, id: &str) {
    if validate_id(id).is_err() {
        return;
    }
    let dir = inner.instances_dir.join(id);
    let _ = blocking(move || std::fs::remove_dir_all(dir)).await;
}

fn initial_status(
    spec: &InstanceSpec,
    pid: Option<i32>,
    restarts: u32,
    started_ms: i64,
) -> InstanceStatus {
    InstanceStatus {
        id: spec.id.clone(),
        service: spec.service.clone(),
        env: spec.env.clone(),
        version: spec.version.clone(),
        port: spec.port,
        pid,
        state: InstanceState::Starting,
        ready: false,
        restarts,
        started_ms,
        last_error: None,
        ready_since_ms: None,
    }
}

/// Refuses a port something already listens on. `SO_REUSEADDR` makes connections in
/// TIME_WAIT (from a previous instance) not count, exactly as for servers that set it.
async fn check_port_free(id: &str, port: u16) -> Result<(), RuntimeError> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|source| RuntimeError::Io {
        action: "create a socket to check",
        path: PathBuf::from(format!("127.0.0.1:{port}")),
        source,
    })?;
    let _ = socket.set_reuseaddr(true);
    match socket.bind(([127, 0, 0, 1], port).into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(RuntimeError::PortInUse {
            id: id.to_owned(),
            port,
        }),
        Err(source) => Err(RuntimeError::Io {
            action: "bind to check",
            path: PathBuf::from(format!("127.0.0.1:{port}")),
            source,
        }),
    }
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::Internal(format!("a blocking task failed: {e}")))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
