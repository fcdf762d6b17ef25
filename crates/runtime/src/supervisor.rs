//! The supervision both runtimes share: the table of instances, one supervisor task per
//! instance (readiness and liveness probes, restarts with backoff, crash-loop detection,
//! graceful stop) and usage sampling, written once over the small [`Driver`] trait that
//! says how an instance is started, probed, observed and ended (a host process group in
//! `process.rs`, a container in `docker.rs`).
//!
//! Architecture invariant: the supervisor is the only writer of an instance's process or
//! container state; `stop` only asks (a watch flag) and waits for it to finish. Dropping a
//! runtime aborts the supervisors but never ends an instance, exactly like a crash, so
//! `adopt` on a new runtime picks up where it left off.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::spec::{HealthCheck, InstanceSpec};
use crate::{InstanceState, InstanceStatus, RuntimeError, STABLE_AFTER, Usage};

/// Between the two samples the first [`Core::usage`] call of an instance takes.
const FIRST_SAMPLE_GAP: Duration = Duration::from_millis(250);

/// How an instance runs: what the shared supervisor needs from a runtime.
pub(crate) trait Driver: Send + Sync + 'static {
    /// A live process group or container of an instance.
    type Running: Running;

    /// Starts the instance's process or container. `restart` is `None` for a new instance
    /// (its directory is prepared anew) and says why otherwise (written into the log).
    fn launch(
        &self,
        spec: &Arc<InstanceSpec>,
        restarts: u32,
        restart: Option<&str>,
    ) -> impl Future<Output = Result<Self::Running, RuntimeError>> + Send;

    /// One health probe of the instance [`Running::target`] names; the error text ends up
    /// in `last_error`.
    fn probe(
        &self,
        target: &<Self::Running as Running>::Target,
        spec: &InstanceSpec,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Graceful end: SIGTERM, SIGKILL after `grace`, and wait (bounded) until it is gone.
    /// Returns a warning when it could not make sure (it goes into `last_error`).
    fn terminate(
        &self,
        running: Self::Running,
        grace: Duration,
    ) -> impl Future<Output = Option<String>> + Send;

    /// The main process exited: clears what is left of it (the rest of its group, the
    /// container).
    fn reap(&self, running: Self::Running) -> impl Future<Output = ()> + Send;

    /// The instance is over (it stopped or gave up): forgets its record; `stopped` also
    /// removes its directory.
    fn retire(&self, id: &str, stopped: bool) -> impl Future<Output = ()> + Send;

    /// Cumulative resource figures of a running instance, for [`Core::usage`].
    fn sample(
        &self,
        status: &InstanceStatus,
        pgid: Option<i32>,
    ) -> impl Future<Output = Option<RawUsage>> + Send;
}

/// A live process group or container.
pub(crate) trait Running: Send + 'static {
    /// What a probe needs to reach the instance (it is probed while it is being observed).
    type Target: Send + Sync + 'static;
    /// See [`Running::Target`].
    fn target(&self) -> Arc<Self::Target>;
    /// Pid of the main process (host pid, also for a container).
    fn pid(&self) -> Option<i32>;
    /// Process group to kill in an emergency (process runtime only).
    fn pgid(&self) -> Option<i32>;
    /// When the first probe may run.
    fn first_check(&self) -> Instant;
    /// Resolves on the next thing the supervisor must act on. Cancel-safe: it is polled in a
    /// `select!` and may be dropped and polled again.
    fn observe(&mut self) -> impl Future<Output = Observed> + Send;
}

/// What [`Running::observe`] reports.
pub(crate) enum Observed {
    /// The main process or container ended; `what` says how (it becomes `last_error`).
    Exited { code: Option<i32>, what: String },
    /// It can no longer be observed (the Docker daemon went away); it is taken out of
    /// traffic and observed again until it can be.
    Lost { reason: String },
    /// It can be observed again and still runs; probes resume.
    Regained,
}

/// Cumulative figures a driver reads for [`Core::usage`].
pub(crate) struct RawUsage {
    /// Identifies what was sampled (pid or container id): a different key means a restart,
    /// so earlier samples no longer apply.
    pub key: String,
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: u64,
    /// CPU time the whole host used so far and its CPU count, when the driver reads them
    /// (Docker's stats); rates are then computed like `docker stats`.
    pub system: Option<(u64, u32)>,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
}

/// A previous usage sample of an instance.
struct Sample {
    key: String,
    cpu_ns: u64,
    system: Option<(u64, u32)>,
    at: Instant,
}

/// The table of instances and what both runtimes do with it.
pub(crate) struct Core<D: Driver> {
    pub driver: D,
    entries: Mutex<HashMap<String, Entry>>,
    changes: watch::Sender<u64>,
    next_gen: AtomicU64,
    samples: Mutex<HashMap<String, Sample>>,
}

/// The runtime's view of one instance.
pub(crate) struct Entry {
    /// Distinguishes this instance from an earlier one with the same id, so a late update
    /// of a finished supervisor never lands on its successor.
    generation: u64,
    pub status: InstanceStatus,
    pub spec: Arc<InstanceSpec>,
    /// Process group of the running process, for `kill_all`.
    pub pgid: Option<i32>,
    /// Set to true to ask the supervisor to stop.
    stop: watch::Sender<bool>,
    /// Becomes true (or its sender is dropped) once the supervisor is done.
    done: watch::Receiver<bool>,
    task: Option<AbortHandle>,
}

/// Why watching a running instance ended. `stable` says it stayed ready for
/// [`STABLE_AFTER`] at some point, which resets the consecutive-restart count.
enum End {
    Stop,
    Exited {
        code: Option<i32>,
        what: Option<String>,
        stable: bool,
    },
    Unhealthy {
        reason: String,
        stable: bool,
    },
}

impl<D: Driver> Core<D> {
    pub(crate) fn new(driver: D) -> Core<D> {
        Core {
            driver,
            entries: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            next_gen: AtomicU64::new(1),
            samples: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn is_active(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|e| e.status.state.is_active())
    }

    /// Starts a validated spec whose port was checked: registers it, launches it and hands
    /// it to a supervisor.
    pub(crate) async fn start(self: &Arc<Self>, spec: InstanceSpec) -> Result<(), RuntimeError> {
        let id = spec.id.clone();
        let status = initial_status(&spec, None, 0, now_ms());
        let spec = Arc::new(spec);
        let Some(sup) = Supervisor::register(self, Arc::clone(&spec), status, None, 0) else {
            return Err(RuntimeError::AlreadyRunning { id });
        };
        let running = match self.driver.launch(&spec, 0, None).await {
            Ok(running) => running,
            Err(err) => {
                let mut entries = self.lock();
                if entries
                    .get(&id)
                    .is_some_and(|e| e.generation == sup.generation)
                {
                    entries.remove(&id);
                }
                drop(entries);
                self.bump();
                return Err(err);
            }
        };
        self.attach(&id, sup.generation, &running, now_ms());
        sup.spawn(running);
        Ok(())
    }

    /// Supervises an instance a previous control plane started, without restarting it.
    /// Returns false when an instance with this id is already active here.
    pub(crate) fn adopt_running(
        self: &Arc<Self>,
        spec: InstanceSpec,
        running: D::Running,
        restarts: u32,
        started_ms: i64,
    ) -> bool {
        let status = initial_status(&spec, running.pid(), restarts, started_ms);
        let Some(sup) =
            Supervisor::register(self, Arc::new(spec), status, running.pgid(), restarts)
        else {
            return false;
        };
        sup.spawn(running);
        true
    }

    /// See [`crate::Runtime::stop`].
    pub(crate) async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        enum Next {
            Nothing,
            Wait(watch::Receiver<bool>),
            Clean,
        }
        let next = {
            let mut entries = self.lock();
            match entries.get_mut(id) {
                None => Next::Nothing,
                Some(entry) if entry.status.state.is_active() => {
                    entry.stop.send_replace(true);
                    Next::Wait(entry.done.clone())
                }
                Some(entry) if entry.status.state != InstanceState::Stopped => {
                    // Crash-looped or exited: nothing runs, no record; only the label changes.
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
                self.bump();
                self.driver.retire(id, true).await;
            }
        }
        Ok(())
    }

    /// See [`crate::Runtime::forget`].
    pub(crate) fn forget(&self, id: &str) -> bool {
        let mut entries = self.lock();
        if entries.get(id).is_some_and(|e| !e.status.state.is_active()) {
            entries.remove(id);
            drop(entries);
            self.bump();
            true
        } else {
            false
        }
    }

    pub(crate) fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.lock().get(id).map(|e| e.status.clone())
    }

    pub(crate) fn list(&self) -> Vec<InstanceStatus> {
        let mut all: Vec<InstanceStatus> = self.lock().values().map(|e| e.status.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// See [`crate::Runtime::usage`]: the driver's cumulative figures turned into a rate
    /// since the previous sample (for the first one, over [`FIRST_SAMPLE_GAP`]).
    pub(crate) async fn usage(&self, id: &str) -> Option<Usage> {
        let (status, pgid, spec) = {
            let entries = self.lock();
            let e = entries.get(id)?;
            (e.status.clone(), e.pgid, Arc::clone(&e.spec))
        };
        status.pid?;
        let mut raw = self.driver.sample(&status, pgid).await?;
        let mut now = Instant::now();
        let previous = {
            let samples = self.lock_samples();
            samples
                .get(id)
                .filter(|p| p.key == raw.key)
                .map(|p| (p.cpu_ns, p.system, p.at))
        };
        // The first sample of an instance has nothing to compare with, and "since it
        // started" is skewed by start-up work counted before the recorded start time: a
        // second sample a moment later gives a real rate.
        let previous = match previous {
            Some(p) => p,
            None => {
                let first = (raw.cpu_ns, raw.system, now);
                tokio::time::sleep(FIRST_SAMPLE_GAP).await;
                raw = self.driver.sample(&status, pgid).await?;
                now = Instant::now();
                first
            }
        };
        let (cpu_before, system_before, at_before) = previous;
        let used = raw.cpu_ns.saturating_sub(cpu_before) as f64;
        let cpu_cores = match (system_before, raw.system) {
            (Some((before, _)), Some((after, cpus))) if after > before => {
                used / (after - before) as f64 * f64::from(cpus.max(1))
            }
            _ => {
                let wall = now.saturating_duration_since(at_before).as_nanos() as f64;
                if wall > 0.0 { used / wall } else { 0.0 }
            }
        };
        self.lock_samples().insert(
            id.to_owned(),
            Sample {
                key: raw.key,
                cpu_ns: raw.cpu_ns,
                system: raw.system,
                at: now,
            },
        );
        Some(Usage {
            cpu_cores,
            memory_bytes: raw.memory_bytes,
            cpu_limit: spec.limits.cpus,
            memory_limit: spec.limits.memory_bytes,
            sampled_ms: now_ms(),
        })
    }

    fn lock_samples(&self) -> MutexGuard<'_, HashMap<String, Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// For `kill_all`: aborts every supervisor and marks every instance stopped; returns
    /// `(id, pid, pgid)` of every instance (pid and pgid of what ran, if anything).
    pub(crate) fn abandon_all(&self) -> Vec<(String, Option<i32>, Option<i32>)> {
        let mut out = Vec::new();
        {
            let mut entries = self.lock();
            for (id, entry) in entries.iter_mut() {
                if let Some(task) = entry.task.take() {
                    task.abort();
                }
                out.push((id.clone(), entry.status.pid, entry.pgid.take()));
                entry.status.state = InstanceState::Stopped;
                entry.status.ready = false;
                entry.status.pid = None;
            }
        }
        self.bump();
        out
    }

    /// Aborts every supervisor without touching instances (a runtime being dropped).
    pub(crate) fn abort_supervisors(&self) {
        for entry in self.lock().values_mut() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
    }

    fn next_generation(&self) -> u64 {
        self.next_gen.fetch_add(1, Ordering::Relaxed)
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
    fn attach(&self, id: &str, generation: u64, running: &D::Running, started_ms: i64) {
        let pid = running.pid();
        let pgid = running.pgid();
        self.update(id, generation, |e| {
            e.status.pid = pid;
            e.status.started_ms = started_ms;
            e.status.state = InstanceState::Starting;
            e.pgid = pgid;
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
struct Supervisor<D: Driver> {
    core: Arc<Core<D>>,
    generation: u64,
    spec: Arc<InstanceSpec>,
    stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
    restarts: u32,
}

impl<D: Driver> Supervisor<D> {
    /// Lists a new generation of instance `spec.id` with `status`, unless an active one is
    /// listed; returns the supervisor to [`Supervisor::spawn`] once something runs.
    fn register(
        core: &Arc<Core<D>>,
        spec: Arc<InstanceSpec>,
        status: InstanceStatus,
        pgid: Option<i32>,
        restarts: u32,
    ) -> Option<Supervisor<D>> {
        let generation = core.next_generation();
        let (stop_tx, stop) = watch::channel(false);
        let (done, done_rx) = watch::channel(false);
        {
            let mut entries = core.lock();
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
                    spec: Arc::clone(&spec),
                    pgid,
                    stop: stop_tx,
                    done: done_rx,
                    task: None,
                },
            );
        }
        core.bump();
        Some(Supervisor {
            core: Arc::clone(core),
            generation,
            spec,
            stop,
            done,
            restarts,
        })
    }

    /// Supervises `running` (and its successors) in a task of its own.
    fn spawn(self, running: D::Running) {
        let core = Arc::clone(&self.core);
        let (id, generation) = (self.spec.id.clone(), self.generation);
        let task = tokio::spawn(self.run(running));
        core.set_task(&id, generation, task.abort_handle());
    }

    async fn run(mut self, running: D::Running) {
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
                    what: None,
                    stable: false,
                },
            };
            let mut exit_code = None;
            match end {
                End::Stop => {
                    if let Some(running) = current.take() {
                        self.set(|e| e.status.state = InstanceState::Stopping);
                        if let Some(warning) = self
                            .core
                            .driver
                            .terminate(running, self.spec.stop_grace)
                            .await
                        {
                            self.set(|e| e.status.last_error = Some(warning));
                        }
                    }
                    self.core.driver.retire(&id, true).await;
                    self.finish(InstanceState::Stopped);
                    return;
                }
                End::Exited { code, what, stable } => {
                    if let Some(running) = current.take() {
                        // Whatever the instance left behind goes with it.
                        self.core.driver.reap(running).await;
                        let what = what.unwrap_or_else(|| exit_text(code));
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
                        let warning = self
                            .core
                            .driver
                            .terminate(running, self.spec.stop_grace)
                            .await;
                        self.set(|e| {
                            if warning.is_some() {
                                e.status.last_error = warning;
                            }
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
                self.core.driver.retire(&id, false).await;
                self.finish(last);
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
                    self.core.driver.retire(&id, true).await;
                    self.finish(InstanceState::Stopped);
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            let note = format!("restart {consecutive} after {reason}");
            match self
                .core
                .driver
                .launch(&self.spec, self.restarts, Some(&note))
                .await
            {
                Ok(running) => {
                    self.core.attach(&id, self.generation, &running, now_ms());
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

    /// Probes health while the instance runs; returns on stop, exit or failed liveness.
    async fn watch(&mut self, running: &mut D::Running) -> End {
        let spec = Arc::clone(&self.spec);
        let policy = &spec.health;
        let mut successes = 0u32;
        let mut failures = 0u32;
        let mut ready_since: Option<Instant> = None;
        let mut was_ready = false;
        let mut stable = false;
        // False while the instance cannot be observed: no probes, not ready.
        let mut observable = true;
        let mut next = running.first_check();
        let target = running.target();
        let is_stable = |since: Option<Instant>| since.is_some_and(|s| s.elapsed() >= STABLE_AFTER);
        loop {
            let driver = &self.core.driver;
            let (started, result) = tokio::select! {
                biased;
                () = stop_requested(&mut self.stop) => return End::Stop,
                event = running.observe() => match event {
                    Observed::Exited { code, what } => {
                        let stable = stable || is_stable(ready_since);
                        return End::Exited { code, what: Some(what), stable };
                    }
                    Observed::Lost { reason } => {
                        observable = false;
                        successes = 0;
                        if ready_since.is_some() {
                            stable = stable || is_stable(ready_since);
                            ready_since = None;
                            self.set(|e| {
                                e.status.state = InstanceState::Unhealthy;
                                e.status.last_error = Some(reason);
                            });
                        } else {
                            self.set(|e| e.status.last_error = Some(reason));
                        }
                        continue;
                    }
                    Observed::Regained => {
                        observable = true;
                        next = Instant::now();
                        continue;
                    }
                },
                probed = async {
                    tokio::time::sleep_until(next).await;
                    let started = Instant::now();
                    (started, driver.probe(&target, &spec).await)
                }, if observable => probed,
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
        self.core.update(&self.spec.id, self.generation, change);
    }

    /// Final state: nothing runs, stop waiters released.
    fn finish(&self, state: InstanceState) {
        self.set(|e| {
            e.status.state = state;
            e.status.pid = None;
            e.pgid = None;
            e.task = None;
        });
        self.done.send_replace(true);
    }
}

/// The `last_error` of an exit a driver did not describe.
pub(crate) fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("the process exited with code {c}"),
        None => {
            "the process exited (killed by a signal, or adopted so its code is unknown)".to_owned()
        }
    }
}

/// Resolves once a stop was requested; never if the requester went away.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn initial_status(
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
pub(crate) async fn check_port_free(id: &str, port: u16) -> Result<(), RuntimeError> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|source| RuntimeError::Io {
        action: "create a socket to check",
        path: format!("127.0.0.1:{port}").into(),
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
            path: format!("127.0.0.1:{port}").into(),
            source,
        }),
    }
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::Internal(format!("a blocking task failed: {e}")))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
