//! Integration tests of both runtimes with real processes, real containers (the Docker
//! daemon of this machine), real sockets on 127.0.0.1 and real artifacts: readiness through
//! each probe kind, crash loops with backoff, liveness restarts, graceful and forced stops,
//! logs, the environment, limits and usage figures, and re-adoption after a dropped or
//! SIGKILLed control plane.
//!
//! Every behaviour is one generic `async fn case(fx: Fixture)`; [`both!`] turns it into a
//! `case::process` and a `case::docker` test, so both runtimes are held to the same
//! assertions. Where the runtimes differ by design (how an instance's record is kept, what
//! `adopt` can say about a dead container's pid, limits enforcement), the fixture answers for
//! its kind. Docker tests fail when env `CI` is set and no daemon answers; otherwise they
//! print a note and pass without running. Each fixture removes what its runtimes started
//! (processes and containers, by token prefix) when it is dropped, also after a failure.
//!
//! Test services are small `python3` and `sh` programs packed into artifacts with
//! `sluice_runner::pack`; in Docker they run in the python test image of `sluice-docker`.
//! Waits are bounded: they wake on the runtime's change counter or poll with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_docker::{ContainerConfig, Docker, testimage};
use sluice_runtime::{
    AdoptOutcome, DockerRuntime, HealthCheck, HealthPolicy, InstanceSpec, InstanceState,
    InstanceStatus, LABEL_RUNTIME, LABEL_SPEC, LABEL_TOKEN, ProcessRuntime, ResourceLimits,
    RestartPolicy, Runtime, RuntimeError, free_port, http_status,
};
use tokio::io::AsyncBufReadExt as _;
use tokio::time::Instant;

/// A tiny HTTP service: `/health` answers 500 while a file `sick` exists (the service
/// deletes it when it starts, so a restart heals it), `/pid` answers its pid. It listens on
/// all addresses, as a service in a container must.
const SERVER_PY: &str = r#"
import http.server, os
if os.path.exists("sick"):
    os.remove("sick")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code = 500 if os.path.exists("sick") else 200
        elif self.path == "/pid":
            code = 200
        else:
            code = 404
        body = (str(os.getpid()) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

const WAIT: Duration = Duration::from_secs(30);

/// Which runtime a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Process,
    Docker,
}

/// Generates `$case::process` and `$case::docker` from `async fn $case(fx: Fixture)`.
macro_rules! both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn process() {
                if let Some(fx) = super::Fixture::new(super::Kind::Process, stringify!($case)).await {
                    super::$case(fx).await;
                }
            }

            #[tokio::test]
            async fn docker() {
                if let Some(fx) = super::Fixture::new(super::Kind::Docker, stringify!($case)).await {
                    super::$case(fx).await;
                }
            }
        }
    )*};
}

both!(
    http_check_gates_readiness_and_stop_ends_everything,
    tcp_and_command_checks_and_workdir,
    a_service_that_exits_at_once_crash_loops_after_backoff,
    a_service_that_never_becomes_healthy_stays_not_ready,
    liveness_failures_after_ready_restart_the_instance,
    stop_escalates_to_sigkill_when_sigterm_is_ignored,
    stdout_and_stderr_go_to_the_log_file,
    bad_input_is_refused,
    adopt_after_a_dropped_runtime_reattaches_without_restart,
    adoption_leaves_other_data_directories_alone,
    adopt_kills_strays,
    adoption_survives_a_sigkilled_control_plane,
    limits_are_applied_and_reported,
    usage_follows_a_cpu_burning_instance,
);

/// The Docker daemon, or `None` (after a note) when there is none and CI is not set.
async fn docker_or_skip() -> Option<Docker> {
    sluice_docker::testimage::daemon_or_skip().await
}

struct Fixture {
    kind: Kind,
    dir: tempfile::TempDir,
    rt: Box<dyn Runtime>,
    artifact: PathBuf,
    prefix: String,
    /// Docker only: the client and the base image (the python test image).
    docker: Option<(Docker, String)>,
    /// Every token prefix a runtime of this test used: cleaned up on drop.
    prefixes: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    async fn new(kind: Kind, name: &str) -> Option<Fixture> {
        let docker = match kind {
            Kind::Process => None,
            Kind::Docker => {
                let docker = docker_or_skip().await?;
                let image = testimage::python(&docker).await.unwrap();
                Some((docker, image))
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let artifact = make_artifact(dir.path(), &[("server.py", SERVER_PY)]);
        // Unique per test process and kind: containers and /proc are shared by parallel
        // runs and by the two variants of a case.
        let tag = match kind {
            Kind::Process => 'p',
            Kind::Docker => 'd',
        };
        let prefix = format!("t{}{tag}-{}:", std::process::id(), name.replace('_', "-"));
        let rt = runtime_of(kind, docker.as_ref(), &dir.path().join("rt"), &prefix).unwrap();
        Some(Fixture {
            kind,
            rt,
            dir,
            artifact,
            prefix: prefix.clone(),
            docker,
            prefixes: Arc::new(Mutex::new(vec![prefix])),
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("rt")
    }

    /// A runtime of this fixture's kind at `root` with `prefix`; cleaned up with the fixture.
    fn runtime_at(&self, root: &Path, prefix: &str) -> Result<Box<dyn Runtime>, RuntimeError> {
        self.prefixes.lock().unwrap().push(prefix.to_owned());
        runtime_of(self.kind, self.docker.as_ref(), root, prefix)
    }

    /// Another runtime over the same root and prefix: a restarted control plane.
    fn runtime(&self) -> Box<dyn Runtime> {
        self.runtime_at(&self.root(), &self.prefix).unwrap()
    }

    fn http_spec(&self, id: &str) -> InstanceSpec {
        http_spec(id, &self.artifact)
    }

    fn docker(&self) -> &Docker {
        &self.docker.as_ref().expect("a docker fixture").0
    }

    fn container_name(&self, prefix: &str, id: &str) -> String {
        DockerRuntime::new(
            self.docker().clone(),
            self.dir.path().join("names"),
            prefix.to_owned(),
            String::new(),
        )
        .unwrap()
        .container_name(id)
    }

    /// The ids the runtime keeps a record of: state files for processes, containers (any
    /// state) for Docker.
    async fn records(&self) -> Vec<String> {
        let mut ids: Vec<String> = match self.kind {
            Kind::Process => std::fs::read_dir(self.root().join("state"))
                .unwrap()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".json").map(str::to_owned)
                })
                .collect(),
            Kind::Docker => self
                .docker()
                .list_containers(&[&format!("{LABEL_RUNTIME}={}", self.prefix)])
                .await
                .unwrap()
                .into_iter()
                .filter_map(|c| {
                    c.labels
                        .get(LABEL_TOKEN)?
                        .strip_prefix(&self.prefix)
                        .map(str::to_owned)
                })
                .collect(),
        };
        ids.sort();
        ids
    }

    async fn has_record(&self, id: &str) -> bool {
        self.records().await.iter().any(|r| r == id)
    }

    /// Kills an instance's main process from outside, as a crash or an operator would.
    fn kill_from_outside(&self, pid: i32) {
        match self.kind {
            Kind::Process => kill_group(pid),
            // The container's init; the container ends with it.
            Kind::Docker => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Waits until the instance whose main process is `pid` is gone, also for the daemon.
    async fn wait_dead(&self, id: &str, pid: i32) {
        poll_until("the instance to die", || !alive(pid)).await;
        if self.kind == Kind::Docker {
            let name = self.container_name(&self.prefix, id);
            let deadline = Instant::now() + WAIT;
            while self
                .docker()
                .inspect_container(&name)
                .await
                .is_ok_and(|i| i.state.running)
            {
                assert!(Instant::now() < deadline, "docker still says {name} runs");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Leaves an instance running with this runtime's token but nothing that says how to
    /// supervise it (no state record; a container without a spec label). Returns its pid.
    async fn make_stray(&self, id: &str) -> i32 {
        match self.kind {
            Kind::Process => {
                let old = self.runtime();
                let s = spec(id, &self.artifact, "exec sleep 600", HealthCheck::None);
                old.start(s).await.unwrap();
                let pid = wait_ready(old.as_ref(), id).await.pid.unwrap();
                // Ready without a health check means spawned: wait until the shell has
                // exec'd `sleep`, as a process in the middle of exec shows an empty
                // environment in /proc.
                poll_until("the instance to exec sleep", || {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
                .await;
                drop(old);
                // The crash happened before the record was written.
                std::fs::remove_file(self.root().join(format!("state/{id}.json"))).unwrap();
                pid
            }
            Kind::Docker => {
                let (docker, image) = self.docker.as_ref().unwrap();
                let labels = BTreeMap::from([
                    (LABEL_RUNTIME.to_owned(), self.prefix.clone()),
                    (LABEL_TOKEN.to_owned(), format!("{}{id}", self.prefix)),
                    (LABEL_SPEC.to_owned(), "{ not a spec".to_owned()),
                ]);
                let container = docker
                    .create_container(&ContainerConfig {
                        name: Some(self.container_name(&self.prefix, id)),
                        image: image.clone(),
                        cmd: Some(vec!["sleep".into(), "600".into()]),
                        labels,
                        init: true,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                docker.start_container(&container).await.unwrap();
                let info = docker.inspect_container(&container).await.unwrap();
                i32::try_from(info.state.pid).unwrap()
            }
        }
    }
}

fn runtime_of(
    kind: Kind,
    docker: Option<&(Docker, String)>,
    root: &Path,
    prefix: &str,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    Ok(match kind {
        Kind::Process => Box::new(ProcessRuntime::new(root.to_path_buf(), prefix.to_owned())?),
        Kind::Docker => {
            let (docker, image) = docker.expect("a docker fixture");
            Box::new(DockerRuntime::new(
                docker.clone(),
                root.to_path_buf(),
                prefix.to_owned(),
                image.clone(),
            )?)
        }
    })
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left running dies with it: a fresh runtime per prefix
        // kills everything carrying it (processes by token, containers by label).
        self.rt.kill_all();
        let scratch = self.dir.path().join("cleanup");
        let prefixes = self.prefixes.lock().unwrap().clone();
        for prefix in prefixes {
            if let Ok(rt) = runtime_of(self.kind, self.docker.as_ref(), &scratch, &prefix) {
                rt.kill_all();
            }
        }
    }
}

/// [`SERVER_PY`] from `artifact`, ready when `/health` answers 200.
fn http_spec(id: &str, artifact: &Path) -> InstanceSpec {
    spec(
        id,
        artifact,
        "exec python3 server.py",
        HealthCheck::Http {
            path: "/health".into(),
            expect_status: 200,
            timeout: Duration::from_secs(1),
        },
    )
}

/// Packs `files` (name, content) into an artifact tar under `base`.
fn make_artifact(base: &Path, files: &[(&str, &str)]) -> PathBuf {
    let src = base.join(format!("src-{}", files.len()));
    for (name, content) in files {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    sluice_runner::pack(&src, &["**".to_owned()], &base.join("artifacts"))
        .unwrap()
        .path
}

fn spec(id: &str, artifact: &Path, command: &str, check: HealthCheck) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        service: "web".into(),
        env: "test".into(),
        version: "1".into(),
        artifact: artifact.to_path_buf(),
        command: command.into(),
        workdir: None,
        port: free_port().unwrap(),
        env_vars: BTreeMap::new(),
        health: HealthPolicy {
            check,
            interval: Duration::from_millis(50),
            success_threshold: 1,
            failure_threshold: 3,
            initial_delay: Duration::ZERO,
        },
        restart: RestartPolicy {
            max_restarts: 3,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
        },
        stop_grace: Duration::from_secs(5),
        image: None,
        limits: ResourceLimits::default(),
        mounts: Vec::new(),
    }
}

/// Waits (woken by the change counter, bounded by [`WAIT`]) until `pred` holds.
async fn wait_for(
    rt: &dyn Runtime,
    id: &str,
    what: &str,
    pred: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let mut changes = rt.subscribe();
    let deadline = Instant::now() + WAIT;
    loop {
        changes.borrow_and_update();
        if let Some(status) = rt.status(id)
            && pred(&status)
        {
            return status;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for {id} to be {what}: {:?}",
                rt.status(id)
            );
        }
    }
}

async fn wait_ready(rt: &dyn Runtime, id: &str) -> InstanceStatus {
    wait_for(rt, id, "ready", |s| {
        s.ready && s.state == InstanceState::Ready
    })
    .await
}

/// Polls `cond` every 20 ms until it holds or [`WAIT`] passes.
async fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a service wrote (`echo $! > FILE`) into `file`, once the whole line is there.
async fn pid_file(file: &Path) -> i32 {
    poll_until("a whole line in the pid file", || {
        std::fs::read_to_string(file).is_ok_and(|t| t.ends_with('\n'))
    })
    .await;
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned));
        !matches!(state.as_deref(), Some("Z" | "X") | None)
    })
}

fn environ(pid: i32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            let text = String::from_utf8_lossy(v).into_owned();
            let (k, val) = text.split_once('=')?;
            Some((k.to_owned(), val.to_owned()))
        })
        .collect()
}

fn kill_group(pid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

async fn http_check_gates_readiness_and_stop_ends_everything(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut spec = fx.http_spec("web-1");
    spec.env_vars
        .insert("GREETING".into(), "hello world".into());
    let port = spec.port;
    rt.start(spec.clone()).await.unwrap();
    let status = wait_ready(rt, "web-1").await;
    let pid = status.pid.unwrap();
    assert_eq!(status.port, port);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.service, "web");
    assert_eq!(
        http_status(port, "/health", Duration::from_secs(1)).await,
        Ok(200)
    );
    let token = format!("{}web-1", fx.prefix);

    match fx.kind {
        Kind::Process => {
            let env = environ(pid);
            let keys: Vec<&str> = env.keys().map(String::as_str).collect();
            // `sh` adds PWD for the program it runs; everything else is ours.
            assert_eq!(
                keys,
                [
                    "GREETING",
                    "HOME",
                    "LANG",
                    "PATH",
                    "PORT",
                    "PWD",
                    "SLUICE_INSTANCE_TOKEN"
                ],
                "nothing of the control plane's environment may leak: {env:?}"
            );
            assert_eq!(env["GREETING"], "hello world");
            assert_eq!(env["PORT"], port.to_string());
            assert_eq!(env["SLUICE_INSTANCE_TOKEN"], token);
            assert_eq!(
                Path::new(&env["HOME"]),
                fx.root().join("instances/web-1").as_path()
            );
            // Its own session and process group, so the control plane's signals never
            // reach it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            assert_eq!(fields[2], pid.to_string(), "pgid");
            assert_eq!(fields[3], pid.to_string(), "session id");
        }
        Kind::Docker => {
            let name = fx.container_name(&fx.prefix, "web-1");
            let info = fx.docker().inspect_container(&name).await.unwrap();
            assert_eq!(i32::try_from(info.state.pid).unwrap(), pid);
            assert_eq!(info.labels[LABEL_TOKEN], token);
            assert_eq!(info.labels[LABEL_RUNTIME], fx.prefix);
            assert_eq!(info.labels["sluice.instance"], "web-1");
            assert_eq!(info.labels["sluice.service"], "web");
            let recorded: InstanceSpec = serde_json::from_str(&info.labels[LABEL_SPEC]).unwrap();
            assert_eq!(recorded, spec);
            for var in [
                "GREETING=hello world".to_owned(),
                format!("PORT={port}"),
                format!("SLUICE_INSTANCE_TOKEN={token}"),
                "HOME=/app".to_owned(),
            ] {
                assert!(info.env.contains(&var), "{var} in {:?}", info.env);
            }
            assert_eq!(info.restart_policy, "no");
            assert_eq!(info.ports.len(), 1, "{:?}", info.ports);
            assert_eq!(
                (info.ports[0].host_ip.as_str(), info.ports[0].host_port),
                ("127.0.0.1", port),
                "published on loopback only"
            );
        }
    }

    assert!(fx.has_record("web-1").await);
    assert_eq!(rt.list().len(), 1);
    rt.stop("web-1").await.unwrap();
    assert!(!alive(pid));
    assert!(!fx.has_record("web-1").await);
    assert_eq!(rt.status("web-1").unwrap().state, InstanceState::Stopped);
    assert!(!fx.root().join("instances/web-1").exists());
    assert!(rt.log_path("web-1").is_file(), "the log is kept");
    // Idempotent, and unknown ids are fine.
    rt.stop("web-1").await.unwrap();
    rt.stop("nobody").await.unwrap();
}

async fn tcp_and_command_checks_and_workdir(fx: Fixture) {
    let rt = fx.rt.as_ref();
    // Ready only once the server listens: the TCP check must not be fooled by a port proxy.
    let tcp = spec(
        "tcp",
        &fx.artifact,
        "sleep 0.5; exec python3 -m http.server \"$PORT\" --bind 0.0.0.0",
        HealthCheck::Tcp {
            timeout: Duration::from_secs(1),
        },
    );
    let tcp_port = tcp.port;
    rt.start(tcp).await.unwrap();

    // The command check passes only once the service has created `ready.flag` in its
    // working directory, a sub-directory of the artifact.
    let artifact = make_artifact(
        fx.dir.path(),
        &[(
            "app/run.sh",
            "sleep 0.3\ntouch ready.flag\nexec sleep 600\n",
        )],
    );
    let mut cmd = spec(
        "cmd",
        &artifact,
        "exec sh run.sh",
        HealthCheck::Command {
            run: "test -f ready.flag && test \"$PORT\" -gt 0".into(),
            timeout: Duration::from_secs(2),
        },
    );
    cmd.workdir = Some("app".into());
    rt.start(cmd).await.unwrap();
    let early = rt.status("cmd").unwrap();
    assert!(!early.ready, "not ready before the flag exists: {early:?}");

    wait_ready(rt, "tcp").await;
    assert_eq!(
        http_status(tcp_port, "/", Duration::from_secs(2)).await,
        Ok(200),
        "ready means it serves"
    );
    let cmd = wait_ready(rt, "cmd").await;
    assert_eq!(cmd.restarts, 0);
    assert!(fx.root().join("instances/cmd/app/ready.flag").is_file());

    rt.stop("tcp").await.unwrap();
    rt.stop("cmd").await.unwrap();
}

async fn a_service_that_exits_at_once_crash_loops_after_backoff(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut s = spec("boom", &fx.artifact, "echo boom; exit 3", HealthCheck::None);
    s.restart = RestartPolicy {
        max_restarts: 3,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(250),
    };
    let started = Instant::now();
    let mut changes = rt.subscribe();
    rt.start(s).await.unwrap();

    // Record the states seen on the way, woken by the change counter.
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        changes.borrow_and_update();
        let status = rt.status("boom").unwrap();
        if seen.last() != Some(&status.state) {
            seen.push(status.state.clone());
        }
        if status.state == InstanceState::CrashLoop {
            break;
        }
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .expect("crash loop not reached in time")
            .unwrap();
    }
    let elapsed = started.elapsed();
    // Backoffs 100 + 200 + 250 (capped) ms.
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    for attempt in 1..=3 {
        assert!(
            seen.contains(&InstanceState::Restarting { attempt }),
            "{seen:?}"
        );
    }
    let status = rt.status("boom").unwrap();
    assert_eq!(status.restarts, 3);
    assert_eq!(status.pid, None);
    assert!(!status.ready);
    assert!(
        status.last_error.as_deref().unwrap().contains("code 3"),
        "{status:?}"
    );
    let log = std::fs::read_to_string(rt.log_path("boom")).unwrap();
    assert_eq!(log.matches("boom\n").count(), 4, "{log}");
    assert!(!fx.has_record("boom").await);

    // max_restarts 0 means "never restart": the instance ends as Exited with its code.
    let mut once = spec("once", &fx.artifact, "exit 7", HealthCheck::None);
    once.restart.max_restarts = 0;
    rt.start(once).await.unwrap();
    let status = wait_for(rt, "once", "exited", |s| !s.state.is_active()).await;
    assert_eq!(status.state, InstanceState::Exited { code: Some(7) });
    assert_eq!(status.restarts, 0);

    // Stop of an instance that gave up is fine, and forget removes it.
    rt.stop("boom").await.unwrap();
    assert_eq!(rt.status("boom").unwrap().state, InstanceState::Stopped);
    assert!(rt.forget("boom"));
    assert!(rt.status("boom").is_none());
}

async fn a_service_that_never_becomes_healthy_stays_not_ready(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut s = fx.http_spec("never");
    s.health.check = HealthCheck::Http {
        path: "/missing".into(),
        expect_status: 200,
        timeout: Duration::from_secs(1),
    };
    rt.start(s).await.unwrap();
    let status = wait_for(rt, "never", "probed", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("404"))
    })
    .await;
    let pid = status.pid.unwrap();
    // An observation window of ~10 probe intervals: it keeps running, is never ready and
    // is never restarted (that is the deploy controller's progress deadline's call).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = rt.status("never").unwrap();
    assert_eq!(status.state, InstanceState::Starting);
    assert!(!status.ready);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.pid, Some(pid));
    assert!(alive(pid));
    rt.stop("never").await.unwrap();
}

async fn liveness_failures_after_ready_restart_the_instance(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut s = fx.http_spec("live");
    s.health.failure_threshold = 2;
    rt.start(s).await.unwrap();
    let first = wait_ready(rt, "live").await;
    let first_pid = first.pid.unwrap();

    std::fs::write(fx.root().join("instances/live/sick"), "").unwrap();
    let status = wait_for(rt, "live", "restarted and ready", |s| {
        s.restarts == 1 && s.state == InstanceState::Ready
    })
    .await;
    assert_ne!(status.pid, Some(first_pid));
    assert!(!alive(first_pid));
    assert_eq!(fx.records().await, ["live"], "one record, no leftover");
    let log = std::fs::read_to_string(rt.log_path("live")).unwrap();
    assert_eq!(log.matches("listening on").count(), 2, "{log}");
    assert!(
        log.contains("after liveness failed: health check GET /health answered 500"),
        "the restart marker says why: {log}"
    );
    rt.stop("live").await.unwrap();
}

/// Process only: a background child of the shell dies with the group.
#[tokio::test]
async fn stop_terminates_the_whole_group_within_the_grace_period() {
    let fx = Fixture::new(Kind::Process, "group").await.unwrap();
    let rt = fx.rt.as_ref();
    let mut s = fx.http_spec("group");
    s.command = "sleep 600 & echo $! > bg.pid; exec python3 server.py".into();
    s.stop_grace = Duration::from_secs(10);
    rt.start(s).await.unwrap();
    let pid = wait_ready(rt, "group").await.pid.unwrap();
    let bg = pid_file(&fx.root().join("instances/group/bg.pid")).await;
    assert!(alive(bg));

    let started = Instant::now();
    let changes = rt.subscribe();
    rt.stop("group").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM should suffice"
    );
    assert!(changes.has_changed().unwrap());
    assert!(!alive(pid), "main process");
    assert!(!alive(bg), "background child");
    let status = rt.status("group").unwrap();
    assert_eq!(status.state, InstanceState::Stopped);
    assert_eq!(status.pid, None);
    assert!(!fx.root().join("state/group.json").exists());
}

async fn stop_escalates_to_sigkill_when_sigterm_is_ignored(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut s = spec(
        "stubborn",
        &fx.artifact,
        "trap '' TERM; sleep 600 & echo $! > bg.pid; wait",
        HealthCheck::None,
    );
    s.stop_grace = Duration::from_millis(300);
    rt.start(s).await.unwrap();
    let pid = wait_ready(rt, "stubborn").await.pid.unwrap();
    let bg = pid_file(&fx.root().join("instances/stubborn/bg.pid")).await;

    let started = Instant::now();
    rt.stop("stubborn").await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!alive(pid));
    if fx.kind == Kind::Process {
        // In a container the file holds a pid of the container's namespace; the container
        // is gone, and everything in it with it.
        assert!(!alive(bg));
    }
    assert!(!fx.has_record("stubborn").await);
    assert_eq!(rt.status("stubborn").unwrap().state, InstanceState::Stopped);
}

async fn stdout_and_stderr_go_to_the_log_file(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let s = spec(
        "talk",
        &fx.artifact,
        "echo to-stdout; echo to-stderr >&2; exec sleep 600",
        HealthCheck::None,
    );
    rt.start(s).await.unwrap();
    let log = rt.log_path("talk");
    assert_eq!(log, fx.root().join("logs/talk.log"));
    poll_until("both lines in the log", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("to-stdout\n") && t.contains("to-stderr\n"))
    })
    .await;
    rt.stop("talk").await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("--- sluice: starting instance talk"),
        "{text}"
    );
    assert_eq!(text.matches("to-stdout\n").count(), 1, "{text}");
}

async fn bad_input_is_refused(fx: Fixture) {
    let rt = fx.rt.as_ref();
    for id in ["../evil", "a/b", "..", ".", "", "Upper", "x y", ".hidden"] {
        let s = spec(id, &fx.artifact, "true", HealthCheck::None);
        let err = rt.start(s).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::InvalidId { .. }),
            "{id:?}: {err}"
        );
        assert!(
            rt.log_path(id).starts_with(fx.root().join("logs")),
            "{id:?}"
        );
    }
    assert!(!fx.dir.path().join("evil").exists());
    assert!(!fx.root().join("evil").exists());
    assert!(rt.list().is_empty());

    let mut s = spec("w", &fx.artifact, "true", HealthCheck::None);
    s.workdir = Some("../../etc".into());
    assert!(matches!(
        rt.start(s).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));

    // A workdir that is not in the artifact.
    let mut s = spec("w2", &fx.artifact, "true", HealthCheck::None);
    s.workdir = Some("nope".into());
    assert!(matches!(
        rt.start(s).await,
        Err(RuntimeError::Workdir { .. })
    ));
    assert!(rt.status("w2").is_none());

    // A missing artifact.
    let s = spec(
        "noart",
        &fx.dir.path().join("missing.tar"),
        "true",
        HealthCheck::None,
    );
    let err = rt.start(s).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Artifact { .. }), "{err}");

    // A port something already listens on.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mut s = fx.http_spec("busy");
    s.port = listener.local_addr().unwrap().port();
    let err = rt.start(s).await.unwrap_err();
    assert!(matches!(err, RuntimeError::PortInUse { .. }), "{err}");

    // Limits that cannot be applied.
    let mut s = spec("lim", &fx.artifact, "true", HealthCheck::None);
    s.limits.cpus = Some(0.0);
    let err = rt.start(s).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err}");

    // An image: only containers can run one.
    let mut s = spec("img", &fx.artifact, "true", HealthCheck::None);
    s.image = Some("sluice-test-does-not-exist:1".into());
    let err = rt.start(s).await.unwrap_err();
    match fx.kind {
        Kind::Process => {
            assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{err}");
            assert!(err.to_string().contains("docker runtime"), "{err}");
        }
        Kind::Docker => {
            assert!(matches!(err, RuntimeError::Docker { .. }), "{err}");
            assert!(
                err.to_string().contains("sluice-test-does-not-exist"),
                "{err}"
            );
        }
    }
    assert!(rt.status("img").is_none());

    // The same id twice.
    let s = spec("twice", &fx.artifact, "exec sleep 600", HealthCheck::None);
    rt.start(s.clone()).await.unwrap();
    let mut again = s;
    again.port = free_port().unwrap();
    let err = rt.start(again).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyRunning { .. }), "{err}");
    rt.stop("twice").await.unwrap();

    // Token prefixes must not be confusable with ids.
    for prefix in ["", "abc", "has space:"] {
        assert!(matches!(
            fx.runtime_at(&fx.dir.path().join("other"), prefix),
            Err(RuntimeError::InvalidTokenPrefix { .. })
        ));
    }
}

#[tokio::test]
async fn free_port_gives_a_bindable_port() {
    let port = free_port().unwrap();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

async fn adopt_after_a_dropped_runtime_reattaches_without_restart(fx: Fixture) {
    let live = fx.http_spec("live");
    let port = live.port;
    let dead = spec("dead", &fx.artifact, "exec sleep 600", HealthCheck::None);
    let old = fx.runtime();
    old.start(live).await.unwrap();
    old.start(dead).await.unwrap();
    let pid = wait_ready(old.as_ref(), "live").await.pid.unwrap();
    let dead_pid = wait_ready(old.as_ref(), "dead").await.pid.unwrap();
    // A crash: the runtime goes away without stopping anything.
    drop(old);
    assert!(alive(pid), "dropping the runtime must not kill instances");
    assert!(alive(dead_pid));
    fx.kill_from_outside(dead_pid);
    fx.wait_dead("dead", dead_pid).await;

    let rt = fx.rt.as_ref();
    let mut found = rt.adopt().await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].id, "dead");
    assert_eq!(found[0].outcome, AdoptOutcome::Dead);
    // A state record remembers the pid; a stopped container no longer has one.
    let reported = match fx.kind {
        Kind::Process => Some(dead_pid),
        Kind::Docker => None,
    };
    assert_eq!(found[0].pid, reported);
    assert_eq!(found[1].id, "live");
    assert_eq!(found[1].outcome, AdoptOutcome::Running);
    assert_eq!(found[1].pid, Some(pid));
    assert_eq!(found[1].spec.as_ref().unwrap().port, port);
    assert_eq!(fx.records().await, ["live"], "the dead one is cleared");
    assert!(rt.status("dead").is_none());

    let status = wait_ready(rt, "live").await;
    assert_eq!(status.pid, Some(pid), "same process, no restart");
    assert_eq!(status.restarts, 0);
    assert_eq!(
        http_status(port, "/health", Duration::from_secs(1)).await,
        Ok(200)
    );
    // Adopting again (or from a third control plane's view) finds nothing new.
    assert!(rt.adopt().await.unwrap().is_empty());
    assert_eq!(fx.records().await, ["live"], "no duplicate");

    // The adopted instance is supervised: liveness failure restarts it.
    std::fs::write(fx.root().join("instances/live/sick"), "").unwrap();
    let status = wait_for(rt, "live", "restarted", |s| {
        s.restarts == 1 && s.state == InstanceState::Ready
    })
    .await;
    assert_ne!(status.pid, Some(pid));
    assert!(!alive(pid));
    assert_eq!(fx.records().await, ["live"]);
    rt.stop("live").await.unwrap();
}

async fn adoption_leaves_other_data_directories_alone(fx: Fixture) {
    let other_dir = tempfile::tempdir().unwrap();
    let other_prefix = format!("{}-other:", fx.prefix.trim_end_matches(':'));
    let other = fx.runtime_at(other_dir.path(), &other_prefix).unwrap();
    let s = spec("web", &fx.artifact, "exec sleep 600", HealthCheck::None);
    other.start(s).await.unwrap();
    let pid = wait_ready(other.as_ref(), "web").await.pid.unwrap();

    let found = if fx.kind == Kind::Process {
        // Our state directory claims that pid (a recycled pid, a copied directory): the
        // token does not match ours, so it is reported dead and left running.
        std::fs::copy(
            other_dir.path().join("state/web.json"),
            fx.root().join("state/web.json"),
        )
        .unwrap();
        std::fs::write(fx.root().join("state/junk.json"), "{ not json").unwrap();
        let mut found = fx.rt.adopt().await.unwrap();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(matches!(found[0].outcome, AdoptOutcome::Unreadable { .. }));
        assert!(fx.root().join("state/junk.json.bad").is_file());
        assert_eq!(found[1].outcome, AdoptOutcome::Dead);
        Vec::new()
    } else {
        fx.rt.adopt().await.unwrap()
    };
    assert!(
        found.is_empty(),
        "another prefix's instances are not ours: {found:?}"
    );
    assert!(alive(pid), "another data directory's instance must survive");
    assert!(fx.rt.kill_all().is_empty());
    assert!(alive(pid));

    // Its own runtime's kill_all does kill it.
    let killed = other.kill_all();
    assert!(killed.contains(&pid), "{killed:?}");
    poll_until("the other instance to die", || !alive(pid)).await;
}

async fn adopt_kills_strays(fx: Fixture) {
    let pid = fx.make_stray("lost").await;
    assert!(alive(pid));
    let found = fx.rt.adopt().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].outcome, AdoptOutcome::StrayKilled);
    assert_eq!(found[0].pid, Some(pid));
    poll_until("the stray to die", || !alive(pid)).await;
    assert!(fx.records().await.is_empty());
    assert!(fx.rt.status("lost").is_none());
}

async fn limits_are_applied_and_reported(fx: Fixture) {
    let rt = fx.rt.as_ref();
    let mut s = spec("capped", &fx.artifact, "exec sleep 600", HealthCheck::None);
    s.limits = ResourceLimits {
        cpus: Some(0.5),
        memory_bytes: Some(64 << 20),
    };
    rt.start(s).await.unwrap();
    wait_ready(rt, "capped").await;
    let usage = rt.usage("capped").await.unwrap();
    assert_eq!(usage.cpu_limit, Some(0.5));
    assert_eq!(usage.memory_limit, Some(64 << 20));
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(rt.usage("nobody").await.is_none());

    if fx.kind == Kind::Process {
        // Processes report limits but do not enforce them (documented).
        rt.stop("capped").await.unwrap();
        return;
    }
    let info = fx
        .docker()
        .inspect_container(&fx.container_name(&fx.prefix, "capped"))
        .await
        .unwrap();
    assert_eq!(info.nano_cpus, 500_000_000);
    assert_eq!(info.memory_bytes, 64 << 20);
    assert_eq!(
        info.memory_swap_bytes,
        64 << 20,
        "no swap on top of the limit"
    );
    rt.stop("capped").await.unwrap();

    // A memory hog is OOM-killed by the kernel and restarted by the supervisor.
    let mut hog = spec(
        "hog",
        &fx.artifact,
        "echo hogging; exec python3 -c 'x = b\"\\x01\" * (256 << 20); print(len(x))'",
        HealthCheck::None,
    );
    hog.limits.memory_bytes = Some(48 << 20);
    rt.start(hog).await.unwrap();
    let status = wait_for(rt, "hog", "OOM-killed and restarted", |s| {
        s.restarts >= 1
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("OOM-killed"))
    })
    .await;
    assert!(
        status.last_error.as_deref().unwrap().contains("50331648"),
        "the message names the limit: {status:?}"
    );
    rt.stop("hog").await.unwrap();
}

async fn usage_follows_a_cpu_burning_instance(fx: Fixture) {
    let rt = fx.rt.as_ref();
    // Idle until a file `burn` appears in its directory, then one busy shell loop.
    let s = spec(
        "burner",
        &fx.artifact,
        "while [ ! -f burn ]; do sleep 0.05; done; while :; do :; done",
        HealthCheck::None,
    );
    rt.start(s).await.unwrap();
    wait_ready(rt, "burner").await;
    let idle = rt.usage("burner").await.unwrap();
    assert!(idle.memory_bytes > 0, "{idle:?}");
    assert!(idle.sampled_ms > 0);
    assert_eq!(idle.cpu_limit, None);

    std::fs::write(fx.root().join("instances/burner/burn"), "").unwrap();
    // Samples every 200 ms until one shows the loop (a core minus what others on this
    // machine take), bounded.
    let deadline = Instant::now() + WAIT;
    let busy = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let u = rt.usage("burner").await.unwrap();
        if u.cpu_cores > 0.3 {
            break u;
        }
        assert!(
            Instant::now() < deadline,
            "the CPU figure never rose: {u:?}"
        );
    };
    assert!(busy.sampled_ms > idle.sampled_ms);
    assert!(idle.cpu_cores < busy.cpu_cores, "{idle:?} then {busy:?}");
    assert!(
        busy.cpu_cores < 2.5,
        "at most the machine's cores: {busy:?}"
    );
    rt.stop("burner").await.unwrap();
    assert!(rt.usage("burner").await.is_none(), "nothing runs");
}

const HELPER_ROOT: &str = "SLUICE_RUNTIME_TEST_HELPER_ROOT";
const HELPER_ARTIFACT: &str = "SLUICE_RUNTIME_TEST_HELPER_ARTIFACT";
const HELPER_PREFIX: &str = "SLUICE_RUNTIME_TEST_HELPER_PREFIX";
const HELPER_KIND: &str = "SLUICE_RUNTIME_TEST_HELPER_KIND";

/// Not a test on its own: when re-executed by `adoption_survives_a_sigkilled_control_plane`
/// with [`HELPER_ROOT`] set, this plays a control plane that starts an instance, reports it,
/// and waits to be SIGKILLed.
#[tokio::test]
async fn control_plane_helper() {
    let (Some(root), Some(artifact), Some(prefix), Some(kind)) = (
        std::env::var_os(HELPER_ROOT),
        std::env::var_os(HELPER_ARTIFACT),
        std::env::var(HELPER_PREFIX).ok(),
        std::env::var(HELPER_KIND).ok(),
    ) else {
        return;
    };
    let (kind, docker) = if kind == "docker" {
        let docker = Docker::from_env().unwrap();
        let image = testimage::python(&docker).await.unwrap();
        (Kind::Docker, Some((docker, image)))
    } else {
        (Kind::Process, None)
    };
    let rt = runtime_of(kind, docker.as_ref(), Path::new(&root), &prefix).unwrap();
    let s = http_spec("web", Path::new(&artifact));
    let port = s.port;
    rt.start(s).await.unwrap();
    let pid = wait_ready(rt.as_ref(), "web").await.pid.unwrap();
    println!("READY {pid} {port}");
    std::future::pending::<()>().await;
}

async fn adoption_survives_a_sigkilled_control_plane(fx: Fixture) {
    let mut helper = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_plane_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER_ROOT, fx.root())
        .env(HELPER_ARTIFACT, &fx.artifact)
        .env(HELPER_PREFIX, &fx.prefix)
        .env(
            HELPER_KIND,
            match fx.kind {
                Kind::Process => "process",
                Kind::Docker => "docker",
            },
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest may have printed the test name on the same line.
            if let Some((_, rest)) = line.split_once("READY ") {
                return rest.to_owned();
            }
        }
        panic!("the helper control plane ended without reporting");
    })
    .await
    .expect("the helper control plane did not report in time");
    let (pid, port) = ready.split_once(' ').unwrap();
    let pid: i32 = pid.parse().unwrap();
    let port: u16 = port.parse().unwrap();

    // kill -9 of the control plane.
    helper.kill().await.unwrap();
    assert!(
        alive(pid),
        "the instance must outlive a SIGKILLed control plane"
    );
    assert_eq!(
        http_status(port, "/health", Duration::from_secs(1)).await,
        Ok(200)
    );

    let rt = fx.rt.as_ref();
    let found = rt.adopt().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].outcome, AdoptOutcome::Running);
    assert_eq!(found[0].pid, Some(pid));
    let status = wait_ready(rt, "web").await;
    assert_eq!(status.pid, Some(pid));
    assert_eq!(status.restarts, 0);
    assert_eq!(fx.records().await, ["web"]);

    // The log kept what the killed control plane's instance printed.
    let log = std::fs::read_to_string(rt.log_path("web")).unwrap();
    assert!(log.contains("listening on"), "{log}");

    // An adopted instance is not our child: stop must still see it go.
    rt.stop("web").await.unwrap();
    assert!(!alive(pid));
    assert!(fx.records().await.is_empty());
}

mod docker_only {
    //! What only the Docker runtime has: a daemon that is missing, or goes away and comes
    //! back while instances run.

    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sluice_docker::Docker;
    use sluice_runtime::{DockerRuntime, HealthCheck, InstanceState, Runtime, RuntimeError};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::task::JoinHandle;

    use super::{Fixture, Kind, alive, http_status, spec, wait_for, wait_ready};

    #[tokio::test]
    async fn a_missing_daemon_gives_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("no-daemon.sock");
        let rt = DockerRuntime::new(
            Docker::new(&socket),
            dir.path().join("rt"),
            "t-missing:".into(),
            "sluice-test-python:any".into(),
        )
        .unwrap();
        let artifact = super::make_artifact(dir.path(), &[("a.txt", "a")]);
        let err = rt
            .start(spec("web", &artifact, "exec sleep 600", HealthCheck::None))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Docker { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("is dockerd running"), "{text}");
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(rt.status("web").is_none(), "nothing half-started");
        let err = rt.adopt().await.unwrap_err();
        assert!(err.to_string().contains("is dockerd running"), "{err}");
        assert!(rt.check().await.is_err());
        assert!(rt.usage("web").await.is_none());
        assert!(rt.kill_all().is_empty());
    }

    /// A unix socket proxy in front of the real daemon that can be cut and restored: the
    /// daemon "going away" without stopping the containers.
    struct Switch {
        path: PathBuf,
        down: Arc<AtomicBool>,
        conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
        accept: JoinHandle<()>,
    }

    impl Switch {
        fn start(path: PathBuf, upstream: PathBuf) -> Switch {
            let listener = UnixListener::bind(&path).unwrap();
            let down = Arc::new(AtomicBool::new(false));
            let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
            let (d, c) = (Arc::clone(&down), Arc::clone(&conns));
            let accept = tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if d.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection close
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = UnixStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    c.lock().unwrap().push(task);
                }
            });
            Switch {
                path,
                down,
                conns,
                accept,
            }
        }

        /// Cuts every open connection and refuses new ones.
        fn cut(&self) {
            self.down.store(true, Ordering::SeqCst);
            for task in self.conns.lock().unwrap().drain(..) {
                task.abort();
            }
        }

        fn restore(&self) {
            self.down.store(false, Ordering::SeqCst);
        }
    }

    impl Drop for Switch {
        fn drop(&mut self) {
            self.accept.abort();
            self.cut();
        }
    }

    #[tokio::test]
    async fn an_instance_of_an_image_runs_the_images_own_command_or_the_specs() {
        let Some(fx) = Fixture::new(Kind::Docker, "image").await else {
            return;
        };
        let docker = fx.docker().clone();
        let base = sluice_docker::testimage::busybox(&docker).await.unwrap();
        // An image as a pipeline would build it: the service and its command inside.
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {base}\nRUN mkdir /www && echo from-the-image > /www/index.html\nCMD [\"sh\", \"-c\", \"echo own-command; exec httpd -f -p $PORT -h /www\"]\n"
            ),
        )
        .unwrap();
        let tag = format!("sluice-test-runtime-image:{}", std::process::id());
        let built = docker
            .build_image(
                &sluice_docker::BuildOptions {
                    context: ctx.path().to_path_buf(),
                    tag: Some(tag.clone()),
                    ..Default::default()
                },
                |_| {},
            )
            .await
            .unwrap();
        let check = HealthCheck::Http {
            path: "/index.html".into(),
            expect_status: 200,
            timeout: Duration::from_secs(1),
        };
        // An image that is the release itself: no artifact (an empty path) to mount.
        let mut own = spec("own", std::path::Path::new(""), "", check.clone());
        own.image = Some(built.id.clone());
        let mut given = spec(
            "given",
            std::path::Path::new(""),
            "echo spec-command; exec httpd -f -p $PORT -h /www",
            check,
        );
        given.image = Some(tag.clone());
        let rt = fx.rt.as_ref();
        rt.start(own).await.unwrap();
        rt.start(given).await.unwrap();
        wait_ready(rt, "own").await;
        wait_ready(rt, "given").await;
        super::poll_until("both commands in the logs", || {
            let own = std::fs::read_to_string(rt.log_path("own")).unwrap_or_default();
            let given = std::fs::read_to_string(rt.log_path("given")).unwrap_or_default();
            own.contains("own-command\n") && given.contains("spec-command\n")
        })
        .await;
        // Nothing of the artifact is mounted into an image's container.
        let info = docker
            .inspect_container(&fx.container_name(&fx.prefix, "own"))
            .await
            .unwrap();
        assert!(!info.env.iter().any(|e| e == "HOME=/app"), "{:?}", info.env);
        assert!(!fx.root().join("instances/own").exists());
        rt.stop("own").await.unwrap();
        rt.stop("given").await.unwrap();
        docker.remove_image(&tag, true).await.unwrap();
    }

    #[tokio::test]
    async fn a_daemon_that_goes_away_takes_instances_out_of_traffic_until_it_is_back() {
        let Some(fx) = Fixture::new(Kind::Docker, "daemon-away").await else {
            return;
        };
        let (docker, image) = fx.docker.clone().unwrap();
        let switch = Switch::start(
            fx.dir.path().join("docker.sock"),
            docker.socket().to_path_buf(),
        );
        let rt = DockerRuntime::new(
            Docker::new(&switch.path),
            fx.root(),
            fx.prefix.clone(),
            image,
        )
        .unwrap();
        let s = fx.http_spec("web");
        let port = s.port;
        rt.start(s).await.unwrap();
        let pid = wait_ready(&rt, "web").await.pid.unwrap();

        switch.cut();
        let status = wait_for(&rt, "web", "out of traffic", |s| {
            !s.ready
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot observe the container"))
        })
        .await;
        assert_eq!(status.state, InstanceState::Unhealthy);
        assert!(
            status
                .last_error
                .unwrap()
                .contains("start it with .ci/docker.sh"),
            "the error says what to do"
        );
        // The container itself runs on, untouched.
        assert!(alive(pid));
        assert_eq!(
            http_status(port, "/health", Duration::from_secs(1)).await,
            Ok(200)
        );
        assert!(
            rt.usage("web").await.is_none(),
            "no figures without the daemon"
        );

        switch.restore();
        let status = wait_ready(&rt, "web").await;
        assert_eq!(status.pid, Some(pid), "the same container, not a restart");
        assert_eq!(status.restarts, 0);
        rt.stop("web").await.unwrap();
        assert!(!alive(pid));
        assert!(fx.records().await.is_empty());
    }
}
