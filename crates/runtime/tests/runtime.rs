//! Integration tests of the process runtime with real processes, real sockets on
//! 127.0.0.1 and real artifacts: readiness through each probe kind, crash loops with
//! backoff, liveness restarts, graceful and forced stops of whole process groups, logs, the
//! environment, and re-adoption after a dropped or SIGKILLed control plane.
//!
//! Test services are small `python3` and `sh` programs packed into artifacts with
//! `sluice_runner::pack`. Waits are bounded: they wake on the runtime's change counter or
//! poll with a deadline.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_runtime::{
    AdoptOutcome, HealthCheck, HealthPolicy, InstanceSpec, InstanceState, InstanceStatus,
    ProcessRuntime, RestartPolicy, Runtime, RuntimeError, free_port, http_status,
};
use tokio::io::AsyncBufReadExt as _;
use tokio::time::Instant;

/// A tiny HTTP service: `/health` answers 500 while a file `sick` exists (the service
/// deletes it when it starts, so a restart heals it), `/pid` answers its pid.
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
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    dir: tempfile::TempDir,
    rt: ProcessRuntime,
    artifact: PathBuf,
    prefix: String,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let artifact = make_artifact(dir.path(), &[("server.py", SERVER_PY)]);
        let prefix = format!("test-{name}:");
        let rt = ProcessRuntime::new(dir.path().join("rt"), prefix.clone()).unwrap();
        Fixture {
            dir,
            rt,
            artifact,
            prefix,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("rt")
    }

    fn http_spec(&self, id: &str) -> InstanceSpec {
        http_spec(id, &self.artifact)
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

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left running dies with it.
        self.rt.kill_all();
    }
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
    }
}

/// Waits (woken by the change counter, bounded by [`WAIT`]) until `pred` holds.
async fn wait_for(
    rt: &ProcessRuntime,
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

async fn wait_ready(rt: &ProcessRuntime, id: &str) -> InstanceStatus {
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

#[tokio::test]
async fn http_check_gates_readiness_and_the_environment_is_exact() {
    let fx = Fixture::new("http");
    let mut spec = fx.http_spec("web-1");
    spec.env_vars
        .insert("GREETING".into(), "hello world".into());
    let port = spec.port;
    fx.rt.start(spec).await.unwrap();
    let status = wait_ready(&fx.rt, "web-1").await;
    let pid = status.pid.unwrap();
    assert_eq!(status.port, port);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.service, "web");
    assert_eq!(
        http_status(port, "/health", Duration::from_secs(1)).await,
        Ok(200)
    );

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
    assert_eq!(env["SLUICE_INSTANCE_TOKEN"], format!("{}web-1", fx.prefix));
    assert_eq!(
        Path::new(&env["HOME"]),
        fx.root().join("instances/web-1").as_path()
    );

    // Its own session and process group, so the control plane's signals never reach it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgid");
    assert_eq!(fields[3], pid.to_string(), "session id");

    assert!(fx.root().join("state/web-1.json").is_file());
    assert_eq!(fx.rt.list().len(), 1);
    fx.rt.stop("web-1").await.unwrap();
    assert!(!alive(pid));
    assert!(!fx.root().join("state/web-1.json").exists());
}

#[tokio::test]
async fn tcp_and_command_checks_and_workdir() {
    let fx = Fixture::new("tcp-cmd");
    let tcp = spec(
        "tcp",
        &fx.artifact,
        "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1",
        HealthCheck::Tcp {
            timeout: Duration::from_secs(1),
        },
    );
    fx.rt.start(tcp).await.unwrap();

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
    fx.rt.start(cmd).await.unwrap();
    let early = fx.rt.status("cmd").unwrap();
    assert!(!early.ready, "not ready before the flag exists: {early:?}");

    wait_ready(&fx.rt, "tcp").await;
    let cmd = wait_ready(&fx.rt, "cmd").await;
    assert_eq!(cmd.restarts, 0);
    assert!(fx.root().join("instances/cmd/app/ready.flag").is_file());

    fx.rt.stop("tcp").await.unwrap();
    fx.rt.stop("cmd").await.unwrap();
}

#[tokio::test]
async fn a_service_that_exits_at_once_crash_loops_after_backoff() {
    let fx = Fixture::new("crash");
    let mut s = spec("boom", &fx.artifact, "echo boom; exit 3", HealthCheck::None);
    s.restart = RestartPolicy {
        max_restarts: 3,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(250),
    };
    let started = Instant::now();
    let mut changes = fx.rt.subscribe();
    fx.rt.start(s).await.unwrap();

    // Record the states seen on the way, woken by the change counter.
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        changes.borrow_and_update();
        let status = fx.rt.status("boom").unwrap();
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
    let status = fx.rt.status("boom").unwrap();
    assert_eq!(status.restarts, 3);
    assert_eq!(status.pid, None);
    assert!(!status.ready);
    assert!(
        status.last_error.as_deref().unwrap().contains("code 3"),
        "{status:?}"
    );
    let log = std::fs::read_to_string(fx.rt.log_path("boom")).unwrap();
    assert_eq!(log.matches("boom\n").count(), 4, "{log}");
    assert!(!fx.root().join("state/boom.json").exists());

    // max_restarts 0 means "never restart": the instance ends as Exited with its code.
    let mut once = spec("once", &fx.artifact, "exit 7", HealthCheck::None);
    once.restart.max_restarts = 0;
    fx.rt.start(once).await.unwrap();
    let status = wait_for(&fx.rt, "once", "exited", |s| !s.state.is_active()).await;
    assert_eq!(status.state, InstanceState::Exited { code: Some(7) });
    assert_eq!(status.restarts, 0);

    // Stop of an instance that gave up is fine, and forget removes it.
    fx.rt.stop("boom").await.unwrap();
    assert_eq!(fx.rt.status("boom").unwrap().state, InstanceState::Stopped);
    assert!(fx.rt.forget("boom"));
    assert!(fx.rt.status("boom").is_none());
}

#[tokio::test]
async fn a_service_that_never_becomes_healthy_stays_not_ready() {
    let fx = Fixture::new("never");
    let mut s = fx.http_spec("never");
    s.health.check = HealthCheck::Http {
        path: "/missing".into(),
        expect_status: 200,
        timeout: Duration::from_secs(1),
    };
    fx.rt.start(s).await.unwrap();
    let status = wait_for(&fx.rt, "never", "probed", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("404"))
    })
    .await;
    let pid = status.pid.unwrap();
    // An observation window of ~10 probe intervals: it keeps running, is never ready and
    // is never restarted (that is the deploy controller's progress deadline's call).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = fx.rt.status("never").unwrap();
    assert_eq!(status.state, InstanceState::Starting);
    assert!(!status.ready);
    assert_eq!(status.restarts, 0);
    assert_eq!(status.pid, Some(pid));
    assert!(alive(pid));
    fx.rt.stop("never").await.unwrap();
}

#[tokio::test]
async fn liveness_failures_after_ready_restart_the_instance() {
    let fx = Fixture::new("liveness");
    let mut s = fx.http_spec("live");
    s.health.failure_threshold = 2;
    fx.rt.start(s).await.unwrap();
    let first = wait_ready(&fx.rt, "live").await;
    let first_pid = first.pid.unwrap();

    std::fs::write(fx.root().join("instances/live/sick"), "").unwrap();
    let status = wait_for(&fx.rt, "live", "restarted and ready", |s| {
        s.restarts == 1 && s.state == InstanceState::Ready
    })
    .await;
    assert_ne!(status.pid, Some(first_pid));
    assert!(!alive(first_pid));
    let log = std::fs::read_to_string(fx.rt.log_path("live")).unwrap();
    assert_eq!(log.matches("listening on").count(), 2, "{log}");
    assert!(
        log.contains("after liveness failed: health check GET /health answered 500"),
        "the restart marker says why: {log}"
    );
    fx.rt.stop("live").await.unwrap();
}

#[tokio::test]
async fn stop_terminates_the_whole_group_within_the_grace_period() {
    let fx = Fixture::new("stop");
    let mut s = fx.http_spec("group");
    s.command = "sleep 600 & echo $! > bg.pid; exec python3 server.py".into();
    s.stop_grace = Duration::from_secs(10);
    fx.rt.start(s).await.unwrap();
    let pid = wait_ready(&fx.rt, "group").await.pid.unwrap();
    let bg = pid_file(&fx.root().join("instances/group/bg.pid")).await;
    assert!(alive(bg));

    let started = Instant::now();
    let changes = fx.rt.subscribe();
    fx.rt.stop("group").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM should suffice"
    );
    assert!(changes.has_changed().unwrap());
    assert!(!alive(pid), "main process");
    assert!(!alive(bg), "background child");
    let status = fx.rt.status("group").unwrap();
    assert_eq!(status.state, InstanceState::Stopped);
    assert_eq!(status.pid, None);
    assert!(!fx.root().join("state/group.json").exists());
    assert!(!fx.root().join("instances/group").exists());
    assert!(fx.rt.log_path("group").is_file(), "the log is kept");

    // Idempotent, and unknown ids are fine.
    fx.rt.stop("group").await.unwrap();
    fx.rt.stop("nobody").await.unwrap();
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let fx = Fixture::new("sigkill");
    let mut s = spec(
        "stubborn",
        &fx.artifact,
        "trap '' TERM; sleep 600 & echo $! > bg.pid; wait",
        HealthCheck::None,
    );
    s.stop_grace = Duration::from_millis(300);
    fx.rt.start(s).await.unwrap();
    let pid = wait_ready(&fx.rt, "stubborn").await.pid.unwrap();
    let bg = pid_file(&fx.root().join("instances/stubborn/bg.pid")).await;

    let started = Instant::now();
    fx.rt.stop("stubborn").await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!alive(pid));
    assert!(!alive(bg));
    assert_eq!(
        fx.rt.status("stubborn").unwrap().state,
        InstanceState::Stopped
    );
}

#[tokio::test]
async fn stdout_and_stderr_go_to_the_log_file() {
    let fx = Fixture::new("logs");
    let s = spec(
        "talk",
        &fx.artifact,
        "echo to-stdout; echo to-stderr >&2; exec sleep 600",
        HealthCheck::None,
    );
    fx.rt.start(s).await.unwrap();
    let log = fx.rt.log_path("talk");
    assert_eq!(log, fx.root().join("logs/talk.log"));
    poll_until("both lines in the log", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("to-stdout\n") && t.contains("to-stderr\n"))
    })
    .await;
    fx.rt.stop("talk").await.unwrap();
    assert!(log.is_file());
}

#[tokio::test]
async fn bad_input_is_refused() {
    let fx = Fixture::new("bad");
    for id in ["../evil", "a/b", "..", ".", "", "Upper", "x y", ".hidden"] {
        let s = spec(id, &fx.artifact, "true", HealthCheck::None);
        let err = fx.rt.start(s).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::InvalidId { .. }),
            "{id:?}: {err}"
        );
        assert!(
            fx.rt.log_path(id).starts_with(fx.root().join("logs")),
            "{id:?}"
        );
    }
    assert!(!fx.dir.path().join("evil").exists());
    assert!(!fx.root().join("evil").exists());
    assert!(fx.rt.list().is_empty());

    let mut s = spec("w", &fx.artifact, "true", HealthCheck::None);
    s.workdir = Some("../../etc".into());
    assert!(matches!(
        fx.rt.start(s).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));

    // A workdir that is not in the artifact.
    let mut s = spec("w2", &fx.artifact, "true", HealthCheck::None);
    s.workdir = Some("nope".into());
    assert!(matches!(
        fx.rt.start(s).await,
        Err(RuntimeError::Workdir { .. })
    ));
    assert!(fx.rt.status("w2").is_none());

    // A missing artifact.
    let s = spec(
        "noart",
        &fx.dir.path().join("missing.tar"),
        "true",
        HealthCheck::None,
    );
    let err = fx.rt.start(s).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Artifact { .. }), "{err}");

    // A port something already listens on.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mut s = fx.http_spec("busy");
    s.port = listener.local_addr().unwrap().port();
    let err = fx.rt.start(s).await.unwrap_err();
    assert!(matches!(err, RuntimeError::PortInUse { .. }), "{err}");

    // The same id twice.
    let s = spec("twice", &fx.artifact, "exec sleep 600", HealthCheck::None);
    fx.rt.start(s.clone()).await.unwrap();
    let mut again = s;
    again.port = free_port().unwrap();
    let err = fx.rt.start(again).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyRunning { .. }), "{err}");
    fx.rt.stop("twice").await.unwrap();

    // Token prefixes must not be confusable with ids.
    for prefix in ["", "abc", "has space:"] {
        assert!(matches!(
            ProcessRuntime::new(fx.dir.path().join("other"), prefix.to_owned()),
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

#[tokio::test]
async fn adopt_after_a_dropped_runtime_reattaches_without_restart() {
    let fx = Fixture::new("adopt");
    let live = fx.http_spec("live");
    let port = live.port;
    let dead = spec("dead", &fx.artifact, "exec sleep 600", HealthCheck::None);
    let old = ProcessRuntime::new(fx.root(), fx.prefix.clone()).unwrap();
    old.start(live).await.unwrap();
    old.start(dead).await.unwrap();
    let pid = wait_ready(&old, "live").await.pid.unwrap();
    let dead_pid = wait_ready(&old, "dead").await.pid.unwrap();
    // A crash: the runtime goes away without stopping anything.
    drop(old);
    assert!(alive(pid), "dropping the runtime must not kill instances");
    assert!(alive(dead_pid));
    kill_group(dead_pid);
    poll_until("the dead instance to die", || !alive(dead_pid)).await;

    let rt = &fx.rt;
    let mut found = rt.adopt().await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].id, "dead");
    assert_eq!(found[0].outcome, AdoptOutcome::Dead);
    assert_eq!(found[0].pid, Some(dead_pid));
    assert_eq!(found[1].id, "live");
    assert_eq!(found[1].outcome, AdoptOutcome::Running);
    assert_eq!(found[1].pid, Some(pid));
    assert_eq!(found[1].spec.as_ref().unwrap().port, port);
    assert!(!fx.root().join("state/dead.json").exists());
    assert!(rt.status("dead").is_none());

    let status = wait_ready(rt, "live").await;
    assert_eq!(status.pid, Some(pid), "same process, no restart");
    assert_eq!(status.restarts, 0);
    assert_eq!(
        http_status(port, "/health", Duration::from_secs(1)).await,
        Ok(200)
    );
    // Adopting again finds nothing new.
    assert!(rt.adopt().await.unwrap().is_empty());

    // The adopted process is supervised: liveness failure restarts it as our own child.
    std::fs::write(fx.root().join("instances/live/sick"), "").unwrap();
    let status = wait_for(rt, "live", "restarted", |s| {
        s.restarts == 1 && s.state == InstanceState::Ready
    })
    .await;
    assert_ne!(status.pid, Some(pid));
    assert!(!alive(pid));
    rt.stop("live").await.unwrap();
}

#[tokio::test]
async fn adoption_leaves_other_data_directories_alone() {
    let fx = Fixture::new("mine");
    let other_dir = tempfile::tempdir().unwrap();
    let other = ProcessRuntime::new(other_dir.path().to_path_buf(), "other:".into()).unwrap();
    let s = spec("web", &fx.artifact, "exec sleep 600", HealthCheck::None);
    other.start(s).await.unwrap();
    let pid = wait_ready(&other, "web").await.pid.unwrap();

    // Our state directory claims that pid (a recycled pid, a copied directory): the token
    // does not match ours, so it is reported dead and left running.
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
    assert!(alive(pid), "another data directory's process must survive");
    assert!(fx.rt.kill_all().is_empty());
    assert!(alive(pid));

    // Its own runtime's kill_all does kill it.
    let killed = other.kill_all();
    assert!(killed.contains(&pid), "{killed:?}");
    poll_until("the other instance to die", || !alive(pid)).await;
}

#[tokio::test]
async fn adopt_kills_stray_processes_with_our_token() {
    let fx = Fixture::new("stray");
    let old = ProcessRuntime::new(fx.root(), fx.prefix.clone()).unwrap();
    let s = spec("lost", &fx.artifact, "exec sleep 600", HealthCheck::None);
    old.start(s).await.unwrap();
    let pid = wait_ready(&old, "lost").await.pid.unwrap();
    // Ready without a health check means spawned: wait until the shell has exec'd `sleep`, as
    // a process in the middle of exec shows an empty environment in /proc.
    poll_until("the instance to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    })
    .await;
    drop(old);
    // The crash happened before the record was written.
    std::fs::remove_file(fx.root().join("state/lost.json")).unwrap();
    let found = fx.rt.adopt().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].outcome, AdoptOutcome::StrayKilled);
    assert_eq!(found[0].pid, Some(pid));
    poll_until("the stray to die", || !alive(pid)).await;
}

const HELPER_ROOT: &str = "SLUICE_RUNTIME_TEST_HELPER_ROOT";
const HELPER_ARTIFACT: &str = "SLUICE_RUNTIME_TEST_HELPER_ARTIFACT";
const HELPER_PREFIX: &str = "helper-control-plane:";

/// Not a test on its own: when re-executed by
/// `adoption_survives_a_sigkilled_control_plane` with [`HELPER_ROOT`] set, this plays a
/// control plane that starts an instance, reports it, and waits to be SIGKILLed.
#[tokio::test]
async fn control_plane_helper() {
    let (Some(root), Some(artifact)) = (
        std::env::var_os(HELPER_ROOT),
        std::env::var_os(HELPER_ARTIFACT),
    ) else {
        return;
    };
    let rt = ProcessRuntime::new(PathBuf::from(root), HELPER_PREFIX.into()).unwrap();
    let s = http_spec("web", Path::new(&artifact));
    let port = s.port;
    rt.start(s).await.unwrap();
    let pid = wait_ready(&rt, "web").await.pid.unwrap();
    println!("READY {pid} {port}");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn adoption_survives_a_sigkilled_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = make_artifact(dir.path(), &[("server.py", SERVER_PY)]);
    let root = dir.path().join("rt");
    let mut helper = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_plane_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER_ROOT, &root)
        .env(HELPER_ARTIFACT, &artifact)
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

    let rt = ProcessRuntime::new(root.clone(), HELPER_PREFIX.into()).unwrap();
    let found = rt.adopt().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].outcome, AdoptOutcome::Running);
    assert_eq!(found[0].pid, Some(pid));
    let status = wait_ready(&rt, "web").await;
    assert_eq!(status.pid, Some(pid));
    assert_eq!(status.restarts, 0);

    // The log kept flowing after the crash (the marker from the helper is there, and the
    // file is still the process's stdout).
    let log = std::fs::read_to_string(rt.log_path("web")).unwrap();
    assert!(log.contains("listening on"), "{log}");

    // An adopted process is not our child: stop must still see it go (zombie or reaped).
    rt.stop("web").await.unwrap();
    assert!(!alive(pid));
    assert!(!root.join("state/web.json").exists());
}
