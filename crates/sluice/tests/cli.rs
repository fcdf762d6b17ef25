//! Tests of the `sluice` binary as users run it: a real server process, the client
//! commands with their exit codes and JSON output, local validation, and crash safety:
//! `kill -9` of the server in the middle of a run, then a restart that recovers.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn repo_with(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    for (p, text) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "first"]);
    dir
}

/// The first admin's API token every test server starts with (`SLUICE_ADMIN_TOKEN`); the
/// CLI sends it as `SLUICE_TOKEN`.
const TOKEN: &str = "slc_a_testtesttesttesttesttesttesttesttesttesttes";

fn sluice(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_SERVER")
        .env("SLUICE_TOKEN", TOKEN)
        .output()
        .unwrap()
}

/// Registers `repo` with polling off and asserts that it worked.
fn add_project(repo: &Path, url: &str) {
    let out = sluice(&[
        "project",
        "add",
        &repo.display().to_string(),
        "--poll-interval",
        "0",
        "--server",
        url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `sluice server` child process; killed (SIGKILL) on drop.
struct ServerProc {
    child: Child,
    url: String,
}

impl ServerProc {
    /// `sluice server` on `port` with the data directory `data`; its first admin has [`TOKEN`].
    fn start(data: &Path, port: u16) -> ServerProc {
        ServerProc::start_with(data, port, &[])
    }

    /// [`ServerProc::start`] with `extra` arguments for `sluice server` (e.g. `--base-image`).
    fn start_with(data: &Path, port: u16, extra: &[String]) -> ServerProc {
        let mut cmd = Command::new(BIN);
        cmd.env("SLUICE_ADMIN_TOKEN", TOKEN)
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .args(extra);
        ServerProc::spawn(cmd, port)
    }

    /// Runs `cmd` (a `sluice server` with neither `--listen` nor output settings) on `port`,
    /// and waits until it listens.
    fn spawn(mut cmd: Command, port: u16) -> ServerProc {
        let child = cmd
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut s = ServerProc { child, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                let mut err = String::new();
                s.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("server exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, path: &str) -> Value {
        let out = Command::new("python3")
            .args(["-c", "import sys,urllib.request;print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={'Authorization': 'Bearer '+sys.argv[2]})).read().decode())"])
            .arg(format!("{}{path}", self.url))
            .arg(TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of live processes carrying a step token of this data directory.
fn step_processes(data: &Path) -> Vec<i32> {
    let id = std::fs::read_to_string(data.join("instance-id")).unwrap();
    let needle = format!("SLUICE_STEP_TOKEN=sluice-{}-", id.trim());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        // Zombies keep no environment; only live processes count.
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(needle.as_bytes()))
        {
            pids.push(pid);
        }
    }
    pids
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn kill_9_during_a_run_recovers_without_orphans_lost_events_or_duplicate_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("second-time");
    let pidfile = tmp.path().join("grandchild.pid");
    let yml = format!(
        r#"
project: crashy
environments: {{ staging: {{ branch: main }} }}
services:
  quick:
    steps:
      build:
        run: echo quick
  slow:
    steps:
      build:
        run: |
          echo starting
          if [ -f {flag} ]; then echo "second attempt, finishing"; exit 0; fi
          sleep 600 &
          echo $! > {pidfile}
          sleep 600
"#,
        flag = flag.display(),
        pidfile = pidfile.display()
    );
    let repo = repo_with(tmp.path(), &[("sluice.yml", &yml)]);
    let data = tmp.path().join("data");
    let port = free_port();
    let mut server = ServerProc::start(&data, port);
    add_project(&repo, &server.url);

    // Wait until the quick service is released and the slow step (with a grandchild) runs.
    wait_for("quick's release", 30, || {
        server.get("/api/v1/releases").as_array().unwrap().len() == 1
    });
    wait_for("the slow step to start its grandchild", 30, || {
        pidfile.exists()
            && std::fs::read_to_string(&pidfile)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
    });
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let events_before = server.get("/api/v1/events?limit=10000");
    server.kill9();

    // The step processes outlived the server: they are what recovery must clean up.
    assert!(
        alive(grandchild),
        "the grandchild should still be running after kill -9"
    );
    assert!(!step_processes(&data).is_empty());

    std::fs::write(&flag, "x").unwrap();
    let server = ServerProc::start(&data, port);
    wait_for("the orphans to be killed", 10, || {
        step_processes(&data).is_empty() && !alive(grandchild)
    });

    // The interrupted run is marked so and re-run once; the re-run succeeds.
    let runs = server.get("/api/v1/runs");
    let first = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 1)
        .unwrap()
        .clone();
    assert_eq!(first["status"], "interrupted");
    wait_for("the re-run to finish", 30, || {
        let r = server.get("/api/v1/runs/2");
        r["status"] == "succeeded"
    });
    let rerun = server.get("/api/v1/runs/2");
    assert_eq!(rerun["rerun_of"], 1);
    assert_eq!(rerun["trigger"], "rerun");

    // No duplicate release: quick keeps its one release, slow gets exactly one.
    let releases = server.get("/api/v1/releases");
    let mut names: Vec<String> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} v{}", r["service"].as_str().unwrap(), r["version"]))
        .collect();
    names.sort();
    assert_eq!(names, vec!["quick v1", "slow v1"]);

    // No event lost: everything seen before the crash is still there, and the log is gap-free.
    let events = server.get("/api/v1/events?limit=10000");
    let seqs: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    for e in events_before.as_array().unwrap() {
        assert!(
            events.as_array().unwrap().contains(e),
            "event lost across the crash: {e}"
        );
    }
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"orphans.killed") && kinds.contains(&"run.interrupted"),
        "{kinds:?}"
    );
}

#[test]
fn repeated_kill_9_at_different_moments_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: early\nenvironments: { staging: { branch: main } }\nservices:\n  a:\n    steps:\n      s:\n        run: sleep 0.2; echo done\n",
        )],
    );
    let data = tmp.path().join("data");
    let port = free_port();
    for delay_ms in [0, 120, 260] {
        let mut server = ServerProc::start(&data, port);
        // The first iteration registers the project; later ones find it registered (409).
        let _ = sluice(&[
            "project",
            "add",
            &repo.display().to_string(),
            "--poll-interval",
            "0",
            "--server",
            &server.url,
        ]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
    }
    let server = ServerProc::start(&data, port);
    let settled = || {
        server
            .get("/api/v1/runs")
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "running" && r["status"] != "queued")
    };
    wait_for("all runs to settle", 30, settled);
    assert!(step_processes(&data).is_empty(), "no orphan survives");
    // Every interrupted run was recorded, and each re-run links to what it re-ran.
    let runs = server.get("/api/v1/runs");
    let events = server.get("/api/v1/events?kind=run.interrupted");
    let interrupted: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), events.as_array().unwrap().len());
    for r in runs.as_array().unwrap() {
        if r["trigger"] == "rerun" {
            assert!(r["rerun_of"].is_i64());
        }
    }
    // A manual run converges: it succeeds, and however often it crashed there is one release.
    let out = sluice(&["run", "early", "--server", &server.url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.get("/api/v1/releases").as_array().unwrap().len(), 1);
    let all = server.get("/api/v1/events?limit=10000");
    let seqs: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "the event log has no gap"
    );
}

#[test]
fn client_commands_work_against_a_real_server() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: cli\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      hello:\n        run: echo hello from the step\n      fail:\n        run: echo about to fail; exit 7\n        needs: [hello]\n",
        )],
    );
    let server = ServerProc::start(&tmp.path().join("data"), free_port());
    let url = server.url.as_str();
    let out = sluice(&[
        "project",
        "add",
        &repo.display().to_string(),
        "--poll-interval",
        "0",
        "--server",
        url,
        "--output",
        "json",
    ]);
    assert!(out.status.success());
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["project"]["name"], "cli");
    assert!(
        added["webhooks"]["github"]
            .as_str()
            .unwrap()
            .ends_with("/hooks/github/cli")
    );

    let out = sluice(&["project", "list", "--server", url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli"));

    // A manual run that fails exits 1 and says why.
    let out = sluice(&["run", "cli", "--server", url]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    let out = sluice(&["runs", "--server", url, "--output", "json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = runs[0]["id"].as_i64().unwrap();
    let out = sluice(&["logs", &id.to_string(), "--server", url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("hello from the step") && text.contains("about to fail"),
        "{text}"
    );
    let out = sluice(&["logs", &id.to_string(), "-f", "--server", url]);
    assert_eq!(out.status.code(), Some(1), "-f exits with the run's result");
    let out = sluice(&["releases", "--server", url, "--output", "json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = sluice(&[
        "events",
        "--server",
        url,
        "--kind",
        "run.finished",
        "--output",
        "json",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"failed\""));

    // Not found, bad usage, unreachable server: distinct exit codes and a hint.
    let out = sluice(&["logs", "424242", "--server", url]);
    assert_eq!(out.status.code(), Some(3));
    let out = sluice(&["run", "nope", "--server", url]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = sluice(&["runs", "--server", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint:"));
    let out = sluice(&["runs", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_schema_and_help() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.yml");
    std::fs::write(&good, "project: p\nenvironments: { staging: { branch: main } }\nservices:\n  a:\n    steps:\n      s:\n        run: 'true'\n").unwrap();
    let out = sluice(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));

    let bad = tmp.path().join("bad.yml");
    std::fs::write(&bad, "project: p\nenvironments: { staging: { branch: main } }\nservices:\n  a:\n    steps:\n      s:\n        run: 'true'\n        nedds: [x]\n").unwrap();
    let out = sluice(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml:8:9") && err.contains("did you mean `needs`"),
        "{err}"
    );

    let out = sluice(&["validate", "/no/such/sluice.yml"]);
    assert_eq!(out.status.code(), Some(3));

    let out = sluice(&["schema"]);
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["services"].is_object());

    for sub in [
        "server", "demo", "validate", "schema", "project", "run", "runs", "logs", "releases",
        "events", "cancel",
    ] {
        let out = sluice(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub} --help");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn demo_once_runs_end_to_end() {
    let out = sluice(&["demo", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("sluice demo: ok"), "{stdout}");
    assert!(stdout.contains("api v2"), "{stdout}");
    // The faulty release: rolled back by production's canary, an incident naming it, the
    // notification in the demo's own sink, and DORA counting the failure.
    assert!(
        stdout.contains("v3 to production was rolled back by its canary analysis"),
        "{stdout}"
    );
    assert!(stdout.contains("production serves v2 again"), "{stdout}");
    assert!(
        stdout.contains("incident #1 opened (suspected cause api v3)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("notification delivered to the local sink"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DORA: 3 deploys, change failure rate 33%, recovery "),
        "{stdout}"
    );
}

#[test]
fn a_relative_data_dir_works() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: rel\nenvironments: { staging: { branch: main } }\nservices:\n  a:\n    steps:\n      s:\n        run: pwd\n",
        )],
    );
    let mut cmd = Command::new(BIN);
    cmd.env("SLUICE_ADMIN_TOKEN", TOKEN)
        .args(["server", "--data-dir", "rel-data"])
        .current_dir(tmp.path());
    let server = ServerProc::spawn(cmd, free_port());
    add_project(&repo, &server.url);
    let out = sluice(&["run", "rel", "--server", &server.url]);
    drop(server);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(tmp.path().join("rel-data/sluice.db").is_file());
}

const SLOW_APP: &str = r#"
import os, sys, time, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
here = os.path.dirname(os.path.abspath(__file__))
version = open(os.path.join(here, "version.txt")).read().strip()
time.sleep(1.5)  # a slow start, so a kill can land while the new release boots
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("version=" + version + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer((os.environ.get("BIND", "127.0.0.1"), int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *a: (srv.server_close(), sys.exit(0)))
srv.serve_forever()
"#;

/// Pids of live service instances of this data directory.
fn instance_processes(data: &Path) -> Vec<i32> {
    let Ok(id) = std::fs::read_to_string(data.join("instance-id")) else {
        return Vec::new();
    };
    let needle = format!("SLUICE_INSTANCE_TOKEN=sluice-{}:", id.trim());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        // Count the service process itself, not the `sh -c` wrapping it.
        if cmd.starts_with(b"python3")
            && env
                .split(|b| *b == 0)
                .any(|v| v.starts_with(needle.as_bytes()))
        {
            pids.push(pid);
        }
    }
    pids
}

fn http_get(url: &str) -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end='')"])
        .arg(url)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// One `GET /` over a fresh connection: `Ok` on a 200, else what went wrong.
fn raw_get(port: u16) -> Result<(), String> {
    use std::io::Write;
    let mut c =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    // The status line is enough: read until it is complete.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let mut error = None;
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200") {
        return Ok(());
    }
    if let Some(e) = error {
        return Err(format!("read: {e} after {line:?}"));
    }
    // Another answer: keep its body's first line too (the proxy says why it answered 502).
    let mut rest = Vec::new();
    let _ = c.take(4096).read_to_end(&mut rest);
    buf.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or_default();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Err(format!(
        "answer {status:?}: {:?}",
        body.lines().next().unwrap_or_default()
    ))
}

/// What a [`RawLoad`] saw: counts, and when (ms after its start) and how the first 20
/// requests failed.
struct LoadResult {
    ok: u64,
    failed: u64,
    failures: Vec<(u128, String)>,
}

/// A client sending requests to `port` until stopped (bounded to 5 minutes).
struct RawLoad {
    started: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<LoadResult>,
}

impl RawLoad {
    fn start(port: u16) -> RawLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut r = LoadResult {
                ok: 0,
                failed: 0,
                failures: Vec::new(),
            };
            let deadline = started + Duration::from_secs(300);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                match raw_get(port) {
                    Ok(()) => r.ok += 1,
                    Err(e) => {
                        r.failed += 1;
                        if r.failures.len() < 20 {
                            r.failures.push((started.elapsed().as_millis(), e));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            r
        });
        RawLoad {
            started,
            stop,
            thread,
        }
    }

    /// Milliseconds since the load started, to put test events on its time line.
    fn at(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn stop(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Kills the proxy daemon a `sluice server` of this data directory started.
fn proxy_daemons(data: &Path) -> Vec<i32> {
    let needle = data.join("proxy/state.json").display().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("proxy-daemon") && cmd.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

fn kill_proxy_daemon(data: &Path) {
    for pid in proxy_daemons(data) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// Runs `f` to completion on a small runtime of its own (the tests are synchronous).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The runtime a deploy test runs its service on.
enum DeployRt {
    /// Host processes.
    Process,
    /// Containers of the python test image (the server's base image), through `docker`.
    Docker {
        docker: sluice_docker::Docker,
        image: String,
    },
}

impl DeployRt {
    /// The Docker runtime, or `None` (after a note) when no daemon answers and `CI` is not
    /// set; with `CI` set a missing daemon fails the test.
    fn docker() -> Option<DeployRt> {
        let docker = block_on(sluice_docker::testimage::daemon_or_skip())?;
        let image = block_on(sluice_docker::testimage::python(&docker)).unwrap();
        Some(DeployRt::Docker { docker, image })
    }

    /// Lines for the service's `deploy:` section (indented by 6 spaces): for containers the
    /// runtime and `BIND=0.0.0.0`, so the app listens on the container's own address that
    /// the published loopback port reaches; nothing for processes (they keep to 127.0.0.1).
    fn deploy_yaml(&self) -> &'static str {
        match self {
            DeployRt::Process => "",
            DeployRt::Docker { .. } => "runtime: docker\n      env: { BIND: 0.0.0.0 }\n      ",
        }
    }

    /// Extra `sluice server` arguments: the base image for containers.
    fn server_args(&self) -> Vec<String> {
        match self {
            DeployRt::Process => Vec::new(),
            DeployRt::Docker { image, .. } => vec!["--base-image".to_owned(), image.clone()],
        }
    }

    /// The Docker client, for the Docker runtime.
    fn client(&self) -> Option<&sluice_docker::Docker> {
        match self {
            DeployRt::Process => None,
            DeployRt::Docker { docker, .. } => Some(docker),
        }
    }

    /// Prefix of the figures the deploy tests print.
    fn figures(&self) -> &'static str {
        match self {
            DeployRt::Process => "deploy.kill9",
            DeployRt::Docker { .. } => "deploy.kill9.docker",
        }
    }
}

/// The label filter selecting the service containers of this data directory's servers:
/// the Docker runtime labels each container `sluice.runtime` (its `LABEL_RUNTIME`) with the
/// instance token prefix, `sluice-<contents of DATA/instance-id>:`.
fn container_filter(data: &Path) -> Option<String> {
    let id = std::fs::read_to_string(data.join("instance-id")).ok()?;
    Some(format!("sluice.runtime=sluice-{}:", id.trim()))
}

/// The service containers (running or not) of this data directory, through the Docker API.
fn instance_containers(
    docker: &sluice_docker::Docker,
    data: &Path,
) -> Vec<sluice_docker::ContainerSummary> {
    let Some(filter) = container_filter(data) else {
        return Vec::new();
    };
    block_on(docker.list_containers(&[&filter])).unwrap()
}

/// On drop, whether the test passed or failed, kills what the servers of a data directory
/// leave running by design: the proxy daemon and the service instances (processes, and
/// with a Docker client the containers too). Made before the server, so that the server is
/// gone first (it would start them again).
struct Leftovers<'a> {
    data: &'a Path,
    docker: Option<sluice_docker::Docker>,
}

impl<'a> Leftovers<'a> {
    /// Cleans up the proxy daemon and instance processes of `data`.
    fn of(data: &'a Path) -> Leftovers<'a> {
        Leftovers { data, docker: None }
    }

    /// Also removes the containers of `data` when `rt` is the Docker runtime.
    fn on(data: &'a Path, rt: &DeployRt) -> Leftovers<'a> {
        Leftovers {
            data,
            docker: rt.client().cloned(),
        }
    }
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        if let (Some(docker), Some(filter)) = (&self.docker, container_filter(self.data)) {
            sluice_docker::testimage::remove_blocking(docker, &filter, Vec::new());
        }
        kill_proxy_daemon(self.data);
        for pid in instance_processes(self.data) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn http_post(url: &str) {
    let out = Command::new("python3")
        .args(["-c", "import sys,urllib.request;urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'', method='POST', headers={'Authorization': 'Bearer '+sys.argv[2]}), timeout=10)"])
        .arg(url)
        .arg(TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "POST {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository whose service `web` (the slow-starting app) is deployed blue-green to
/// `staging` on `port` with the runtime `rt`; `settings` are extra deploy lines, `keep_warm`
/// the keep-warm window.
fn deploy_repo(
    root: &Path,
    project: &str,
    port: u16,
    rt: &DeployRt,
    settings: &str,
    keep_warm: &str,
) -> PathBuf {
    let runtime = rt.deploy_yaml();
    let yml = format!(
        "project: {project}\nenvironments: {{ staging: {{ branch: main }} }}\nservices:\n  web:\n    steps:\n      package:\n        run: mkdir -p out && cp app.py version.txt out/\n        artifacts: [\"out/**\"]\n    deploy:\n      start: python3 out/app.py\n      {runtime}health: {{ http: /, interval: 100ms }}\n      {settings}\n      strategy: {{ blue_green: {{ keep_warm: {keep_warm} }} }}\n      environments:\n        staging: {{ expose: \"127.0.0.1:{port}\" }}\n"
    );
    repo_with(
        root,
        &[
            ("sluice.yml", &yml),
            ("app.py", SLOW_APP),
            ("version.txt", "1"),
        ],
    )
}

#[test]
fn kill_9_during_deploys_converges_without_duplicates_or_double_deploys_process() {
    kill_9_during_deploys_converges(&DeployRt::Process);
}

#[test]
fn kill_9_during_deploys_converges_without_duplicates_or_double_deploys_docker() {
    if let Some(rt) = DeployRt::docker() {
        kill_9_during_deploys_converges(&rt);
    }
}

/// The running containers of `data` by instance id: (container id, release label `vN`).
fn running_containers(
    docker: &sluice_docker::Docker,
    data: &Path,
) -> std::collections::BTreeMap<String, (String, String)> {
    instance_containers(docker, data)
        .into_iter()
        .filter(|c| c.state == "running")
        .filter_map(|c| {
            let instance = c.labels.get("sluice.instance")?.clone();
            let version = c.labels.get("sluice.version").cloned().unwrap_or_default();
            Some((instance, (c.id, version)))
        })
        .collect()
}

/// Asserts that no instance running before a crash (`before`) runs in another container
/// in `now`: a restarted server re-adopts containers, it does not replace them.
fn assert_not_replaced(
    before: &std::collections::BTreeMap<String, (String, String)>,
    now: &std::collections::BTreeMap<String, (String, String)>,
    when: &str,
) {
    for (instance, (id, _)) in now {
        if let Some((old, _)) = before.get(instance) {
            assert_eq!(
                old, id,
                "{when}: instance {instance} runs in a new container instead of the adopted one"
            );
        }
    }
}

/// Kills a real `sluice server` with SIGKILL at several points of deploys on runtime `rt`
/// under client load; see the two tests above.
fn kill_9_during_deploys_converges(rt: &DeployRt) {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let repo = deploy_repo(
        tmp.path(),
        "crashdeploy",
        port,
        rt,
        "stop_grace: 2s\n      progress_deadline: 30s",
        "2s",
    );
    let data = tmp.path().join("data");
    let _leftovers = Leftovers::on(&data, rt);
    let api_port = free_port();
    let extra = rt.server_args();
    let figures = rt.figures();
    let mut server = ServerProc::start_with(&data, api_port, &extra);
    add_project(&repo, &server.url);
    let service = format!("http://127.0.0.1:{port}/");
    let deployment_of = |server: &ServerProc, version: i64| -> Option<Value> {
        server
            .get("/api/v1/deployments?limit=50")
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["version"] == version)
            .cloned()
    };
    wait_for("v1 to serve", 60, || {
        http_get(&service).as_deref() == Some("version=1\n")
    });
    // The exposed address is served by the proxy daemon: it must answer throughout.
    let load = RawLoad::start(port);
    // When things happened, on the load's clock, to tell which step a failure followed.
    let mut timeline: Vec<(u128, String)> = Vec::new();
    let mut daemons_seen: std::collections::BTreeSet<i32> =
        proxy_daemons(&data).into_iter().collect();

    // Kill at three points of a blue-green deploy: just after the push, while the new
    // release boots (before the switch), and after the switch while the old one is warm and
    // its connections drain; then in the middle of a canary step (release 5 switches the
    // service to the canary strategy: half the traffic on the canary for 3 s).
    for (version, point) in [
        (2i64, "requested"),
        (3, "starting"),
        (4, "keeping_warm"),
        (5, "canary_step"),
    ] {
        if point == "canary_step" {
            let yml = std::fs::read_to_string(repo.join("sluice.yml")).unwrap();
            let canary = "strategy: { canary: { steps: [{ weight: 50, pause: 3s }, { weight: 100 }], \
                          analysis: { max_error_rate: 0.5, min_requests: 1, \
                          insufficient_traffic: pass, interval: 250ms } } }";
            let yml = yml.replace("strategy: { blue_green: { keep_warm: 2s } }", canary);
            assert!(yml.contains("canary"), "{yml}");
            std::fs::write(repo.join("sluice.yml"), yml).unwrap();
        }
        std::fs::write(repo.join("version.txt"), version.to_string()).unwrap();
        git(&repo, &["commit", "-q", "-am", &format!("v{version}")]);
        http_post(&format!("{}/api/v1/projects/crashdeploy/sync", server.url));
        match point {
            "requested" => wait_for("the deploy request", 30, || {
                server.get("/api/v1/status")[0]["desired_version"] == version
            }),
            phase => wait_for(&format!("phase {phase}"), 30, || {
                deployment_of(&server, version).is_some_and(|d| d["phase"] == phase)
            }),
        }
        if let (Some(docker), "starting") = (rt.client(), point) {
            // The phase begins before the container exists; kill once it runs, while the
            // app inside still boots (it sleeps 1.5 s before it listens).
            let label = format!("v{version}");
            wait_for(&format!("the {label} container to run"), 30, || {
                running_containers(docker, &data)
                    .values()
                    .any(|(_, v)| *v == label)
            });
        }
        // The containers running at the moment of the crash (none on the process runtime).
        let before = rt
            .client()
            .map(|d| running_containers(d, &data))
            .unwrap_or_default();
        timeline.push((load.at(), format!("kill at {point}")));
        server.kill9();
        let down = Instant::now();
        server = ServerProc::start_with(&data, api_port, &extra);
        timeline.push((load.at(), "restarted".to_owned()));
        daemons_seen.extend(proxy_daemons(&data));
        if let Some(docker) = rt.client() {
            let now = running_containers(docker, &data);
            assert_not_replaced(&before, &now, &format!("at {point}"));
            // No new release was switched in yet at the first two points: the old release's
            // container serves, and after the restart it is the same container (adopted,
            // not restarted). The restart is far quicker than the new release's boot and
            // keep-warm window, so it cannot have been stopped legitimately yet.
            if matches!(point, "requested" | "starting") {
                let old = format!("v{}", version - 1);
                let serving: Vec<_> = before.iter().filter(|(_, (_, v))| *v == old).collect();
                assert_eq!(
                    serving.len(),
                    1,
                    "one {old} container before the kill: {before:?}"
                );
                for (instance, (id, _)) in serving {
                    assert_eq!(
                        now.get(instance).map(|(id, _)| id),
                        Some(id),
                        "at {point}: the {old} container must run on after the restart: {now:?}"
                    );
                }
            }
        }
        wait_for(
            &format!("v{version} to serve after the restart"),
            60,
            || {
                if let Some(docker) = rt.client() {
                    let now = running_containers(docker, &data);
                    assert_not_replaced(&before, &now, &format!("after the kill at {point}"));
                }
                http_get(&service).as_deref() == Some(&format!("version={version}\n"))
            },
        );
        eprintln!(
            "{figures}.{point}.kill_to_new_release_serving {} ms",
            down.elapsed().as_millis()
        );
        timeline.push((load.at(), format!("v{version} serves")));
        wait_for("the deployment to finish", 60, || {
            deployment_of(&server, version).is_some_and(|d| d["status"] == "succeeded")
        });
        // Converged: one instance (replicas: 1), no duplicate left by the crash, and the
        // release was deployed once. On Docker the daemon's own count of this server's
        // containers (running or not) must agree with the processes seen in /proc.
        wait_for("old instances to be stopped", 30, || {
            instance_processes(&data).len() == 1
                && rt
                    .client()
                    .is_none_or(|d| instance_containers(d, &data).len() == 1)
        });
        if let Some(docker) = rt.client() {
            let now = running_containers(docker, &data);
            assert_not_replaced(&before, &now, &format!("converged after {point}"));
            let serving: Vec<_> = now.values().collect();
            assert!(
                serving.len() == 1 && serving[0].1 == format!("v{version}"),
                "one v{version} container after convergence: {now:?}"
            );
            // The one service process seen in /proc (by its instance token) is that
            // container's: its cgroup path names the container.
            let pids = instance_processes(&data);
            assert_eq!(pids.len(), 1, "one service process: {pids:?}");
            let cgroup =
                std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap_or_default();
            assert!(
                cgroup.contains(serving[0].0.as_str()),
                "the service process {pids:?} runs in container {}: {cgroup}",
                serving[0].0
            );
            // A new release already in its container at the crash (booting, warm or a
            // canary) is adopted and serves: not replaced by a fresh instance.
            let label = format!("v{version}");
            if let Some((id, _)) = before.values().find(|(_, v)| *v == label) {
                assert_eq!(
                    &serving[0].0, id,
                    "after the kill at {point} the {label} container must be adopted: \
                     before {before:?}, now {now:?}"
                );
            }
        }
        let deploys: Vec<Value> = server
            .get("/api/v1/deployments?limit=50")
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            deploys.iter().filter(|d| d["version"] == version).count(),
            1,
            "v{version} was deployed more than once: {deploys:?}"
        );
    }
    let events = server.get("/api/v1/events?kind=instances.adopted");
    assert!(
        !events.as_array().unwrap().is_empty(),
        "instances were adopted after a restart"
    );
    let LoadResult {
        ok,
        failed,
        failures,
    } = load.stop();
    eprintln!("{figures}.requests {} requests", ok + failed);
    eprintln!("{figures}.failed_requests {failed} requests");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(
        daemons_seen.len(),
        1,
        "one proxy daemon throughout: {daemons_seen:?}"
    );
    assert_eq!(
        failed, 0,
        "the service must answer throughout four server crashes; failures (ms, what): \
         {failures:?}; time line (ms, what): {timeline:?}"
    );
}

#[test]
fn deploy_rollback_status_and_deploys_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let repo = deploy_repo(
        tmp.path(),
        "cmds",
        port,
        &DeployRt::Process,
        "stop_grace: 1s",
        "0s",
    );
    let data = tmp.path().join("data");
    let _leftovers = Leftovers::of(&data);
    let server = ServerProc::start(&data, free_port());
    let url = server.url.clone();
    let service = format!("http://127.0.0.1:{port}/");
    add_project(&repo, &url);
    wait_for("v1 to serve", 60, || {
        http_get(&service).as_deref() == Some("version=1\n")
    });
    std::fs::write(repo.join("version.txt"), "2").unwrap();
    git(&repo, &["commit", "-q", "-am", "v2"]);
    http_post(&format!("{url}/api/v1/projects/cmds/sync"));
    wait_for("v2 to serve", 60, || {
        http_get(&service).as_deref() == Some("version=2\n")
    });

    // Back to release 1 by hand: the command follows the new deployment to its end.
    let out = sluice(&[
        "deploy",
        "web",
        "--env",
        "staging",
        "--release",
        "1",
        "--server",
        &url,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));
    assert_eq!(http_get(&service).as_deref(), Some("version=1\n"));
    // Rollback goes to the release that ran before the current one (2).
    let out = sluice(&["rollback", "web", "--env", "staging", "--server", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(&service).as_deref(), Some("version=2\n"));

    let out = sluice(&["status", "--server", &url, "--output", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["stable_version"], 2);
    let out = sluice(&["deploys", "--server", &url, "--output", "json"]);
    let deploys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions: Vec<i64> = deploys
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1, 2, 1], "newest first");
    let out = sluice(&[
        "deploy",
        "show",
        &deploys[0]["id"].to_string(),
        "--server",
        &url,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rollback"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = sluice(&["logs", "web", "--env", "staging", "--server", &url]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("starting instance"));

    // The proxy daemon dies (kill -9): the server notices, starts a new one, which serves the
    // same routes, and records it.
    let before = proxy_daemons(&data);
    assert_eq!(before.len(), 1, "{before:?}");
    kill_proxy_daemon(&data);
    let down = Instant::now();
    wait_for("a new proxy daemon to serve", 30, || {
        http_get(&service).as_deref() == Some("version=2\n")
    });
    eprintln!(
        "deploy.proxy_daemon.kill_to_serving {} ms",
        down.elapsed().as_millis()
    );
    let after = proxy_daemons(&data);
    assert!(
        after.len() == 1 && after != before,
        "one new daemon: {before:?} -> {after:?}"
    );
    let restarted = server.get("/api/v1/events?kind=proxy.restarted");
    assert_eq!(restarted.as_array().unwrap().len(), 1, "{restarted}");

    // Bad input: an unknown release, service or environment.
    assert_eq!(
        sluice(&[
            "deploy",
            "web",
            "--env",
            "staging",
            "--release",
            "99",
            "--server",
            &url
        ])
        .status
        .code(),
        Some(3)
    );
    assert_eq!(
        sluice(&["deploy", "nope", "--env", "staging", "--server", &url])
            .status
            .code(),
        Some(3)
    );
    let out = sluice(&["deploy", "web", "--env", "prod", "--server", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prod"));
}

/// Runs SQL on a SQLite file (through python3's sqlite3, which the tests already need).
fn sqlite_exec(db: &Path, sql: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.executescript(sys.argv[2]);c.commit()",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn audit_verify_detects_every_kind_of_tampering_and_export_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: audited\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      hello:\n        run: echo hello\n",
        )],
    );
    let data = tmp.path().join("data");
    let mut server = ServerProc::start(&data, free_port());
    let url = server.url.clone();
    add_project(&repo, &url);
    assert!(
        sluice(&["run", "audited", "--server", &url])
            .status
            .success()
    );
    server.kill9();
    // A second start signs a checkpoint covering everything so far.
    let mut server = ServerProc::start(&data, free_port());
    server.kill9();
    let d = data.display().to_string();

    let out = sluice(&["audit", "verify", "--data-dir", &d]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let key = sluice(&["audit", "public-key", "--data-dir", &d]);
    assert!(String::from_utf8_lossy(&key.stdout).starts_with("sluice-audit-ed25519 "));

    // Export and verify the export on its own (another place, no database).
    let export = tmp.path().join("audit.jsonl");
    let cps = tmp.path().join("checkpoints.json");
    let out = sluice(&[
        "audit",
        "export",
        "--data-dir",
        &d,
        "--checkpoints",
        &cps.display().to_string(),
    ]);
    assert!(out.status.success());
    std::fs::write(&export, &out.stdout).unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines > 10, "{lines} entries exported");
    let pubkey = data.join("audit/signing.pub").display().to_string();
    let out = sluice(&[
        "audit",
        "verify",
        "--file",
        &export.display().to_string(),
        "--checkpoints",
        &cps.display().to_string(),
        "--public-key",
        &pubkey,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Each kind of tampering, on a fresh copy of the data: verify fails and names the entry.
    let cases = [
        (
            "edit",
            "UPDATE events SET payload = '{\"forged\":true}' WHERE seq = 5",
            "5",
        ),
        ("delete", "DELETE FROM events WHERE seq = 6", "6"),
        (
            "reorder",
            "UPDATE events SET seq = -1 WHERE seq = 7; UPDATE events SET seq = 7 WHERE seq = 8; \
             UPDATE events SET seq = 8 WHERE seq = -1",
            "7",
        ),
        ("truncate", "DELETE FROM events WHERE seq > 3", "3"),
    ];
    for (what, sql, seq) in cases {
        let copy = tmp.path().join(format!("data-{what}"));
        std::fs::create_dir_all(copy.join("audit")).unwrap();
        for f in ["sluice.db", "audit/signing.pub"] {
            std::fs::copy(data.join(f), copy.join(f)).unwrap();
        }
        for f in ["sluice.db-wal", "sluice.db-shm"] {
            if data.join(f).exists() {
                std::fs::copy(data.join(f), copy.join(f)).unwrap();
            }
        }
        sqlite_exec(&copy.join("sluice.db"), sql);
        let out = sluice(&["audit", "verify", "--data-dir", &copy.display().to_string()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{what}: {stdout}");
        assert!(stdout.starts_with("TAMPERED: "), "{what}: {stdout}");
        assert!(
            stdout.lines().next().unwrap().contains(seq),
            "{what} should name seq {seq}: {stdout}"
        );
        eprintln!("audit.{what}: {}", stdout.lines().next().unwrap());
    }
}

/// Runs the CLI with a credentials directory and no `SLUICE_TOKEN`: as a person would,
/// after `sluice login`. `stdin` is typed in.
fn sluice_as(config: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .env("SLUICE_CONFIG_DIR", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_users_and_a_developer_refused_on_a_protected_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let yml = format!(
        "project: guarded\nenvironments:\n  staging: {{ branch: main }}\n  production: {{ branch: release, protected: true, approvals: 1 }}\nservices:\n  web:\n    steps:\n      package:\n        run: mkdir -p out && cp app.py version.txt out/\n        artifacts: [\"out/**\"]\n    deploy:\n      start: python3 out/app.py\n      health: {{ http: /, interval: 100ms }}\n      environments:\n        staging: {{ expose: \"127.0.0.1:{port}\" }}\n        production: {{ expose: \"127.0.0.1:{}\" }}\n",
        free_port()
    );
    let repo = repo_with(
        tmp.path(),
        &[
            ("sluice.yml", &yml),
            ("app.py", SLOW_APP),
            ("version.txt", "1"),
        ],
    );
    // A server started without an admin token prints a one-time setup token.
    let data = tmp.path().join("data");
    let _leftovers = Leftovers::of(&data);
    let mut cmd = Command::new(BIN);
    cmd.env_remove("SLUICE_ADMIN_TOKEN")
        .arg("server")
        .arg("--data-dir")
        .arg(&data);
    let mut server = ServerProc::spawn(cmd, free_port());
    let url = server.url.clone();
    let mut stderr = std::io::BufReader::new(server.child.stderr.take().unwrap());
    let setup = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "the server ended without printing a setup token"
        );
        if let Some(at) = line.find("--setup-token ") {
            break line[at + 14..].trim().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let admin_cfg = tmp.path().join("admin-cli");
    let dev_cfg = tmp.path().join("dev-cli");
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Before signing in: refused with exit 6 and a hint.
    let out = sluice_as(&admin_cfg, &["project", "list", "--server", &url], "");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("sluice login"), "{}", text(&out));
    // The admin sets a password with the setup token; the token works only once.
    let out = sluice_as(
        &admin_cfg,
        &["login", "--server", &url, "--setup-token", &setup],
        "correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let creds = admin_cfg.join("credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = sluice_as(
        &dev_cfg,
        &["login", "--server", &url, "--setup-token", &setup],
        "another password entirely\n",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = sluice_as(&admin_cfg, &["whoami", "--server", &url], "");
    assert!(text(&out).starts_with("admin"), "{}", text(&out));
    let out = sluice_as(
        &admin_cfg,
        &[
            "project",
            "add",
            &repo.display().to_string(),
            "--poll-interval",
            "0",
            "--server",
            &url,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));

    // The admin adds a developer, who signs in with their own setup token and password.
    let out = sluice_as(&admin_cfg, &["users", "add", "dana", "--server", &url], "");
    assert!(out.status.success(), "{}", text(&out));
    let dana_setup = text(&out)
        .lines()
        .find_map(|l| l.strip_prefix("one-time setup token (valid 24 hours): "))
        .unwrap()
        .to_string();
    let out = sluice_as(
        &admin_cfg,
        &[
            "users",
            "grant",
            "dana",
            "developer",
            "--project",
            "guarded",
            "--server",
            &url,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice_as(
        &dev_cfg,
        &["login", "--server", &url, "--setup-token", &dana_setup],
        "dana's long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice_as(
        &admin_cfg,
        &[
            "users",
            "set-email",
            "dana",
            "dana@example.com",
            "--server",
            &url,
        ],
        "",
    );
    assert!(
        text(&out).contains("pages for dana go to dana@example.com"),
        "{}",
        text(&out)
    );
    let out = sluice_as(&admin_cfg, &["users", "list", "--server", &url], "");
    let list = text(&out);
    let dana = list
        .lines()
        .find(|l| l.starts_with("dana "))
        .unwrap_or_default();
    assert!(
        dana.contains("dana@example.com") && dana.contains("developer@guarded/*"),
        "{list}"
    );
    let out = sluice_as(
        &dev_cfg,
        &["login", "--server", &url, "--user", "dana"],
        "dana's long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));

    // The pipeline deploys staging; the developer may deploy staging, not production.
    wait_for("v1 to serve in staging", 60, || {
        http_get(&format!("http://127.0.0.1:{port}/")).is_some()
    });
    let out = sluice_as(
        &dev_cfg,
        &["deploy", "web", "--env", "production", "--server", &url],
        "",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(text(&out).contains("needs role releaser"), "{}", text(&out));
    let out = sluice_as(
        &dev_cfg,
        &[
            "promote",
            "web",
            "--from",
            "staging",
            "--to",
            "production",
            "--server",
            &url,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = sluice_as(
        &dev_cfg,
        &["deploy", "web", "--env", "staging", "--server", &url],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    // The admin's deploy to production waits for an approval, and says so.
    let out = sluice_as(
        &admin_cfg,
        &[
            "deploy",
            "web",
            "--env",
            "production",
            "--timeout",
            "2",
            "--server",
            &url,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("waiting at the gate of production: waiting for approvals: 0 of 1"),
        "{}",
        text(&out)
    );
    // A developer may not approve it.
    let waiting = sluice_as(
        &admin_cfg,
        &["deploys", "--server", &url, "--output", "json"],
        "",
    );
    let list: Value = serde_json::from_slice(&waiting.stdout).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["env"] == "production")
        .and_then(|d| d["id"].as_i64())
        .unwrap();
    let out = sluice_as(
        &dev_cfg,
        &["approve", &id.to_string(), "--server", &url],
        "",
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    // The developer may not manage users; the admin may.
    let out = sluice_as(&dev_cfg, &["users", "list", "--server", &url], "");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    // Signing out revokes the token.
    let out = sluice_as(&dev_cfg, &["logout", "--server", &url], "");
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice_as(&dev_cfg, &["whoami", "--server", &url], "");
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

/// POSTs a JSON body without credentials (as an alert sender does); the answer's status.
fn post_json(url: &str, body: &Value) -> u16 {
    let out = Command::new("python3")
        .args(["-c", "import sys,urllib.request,urllib.error\ntry:\n  r=urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'application/json'}), timeout=10); print(r.status)\nexcept urllib.error.HTTPError as e:\n  print(e.code)"])
        .arg(url)
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "POST {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn incident_commands_ack_resolve_silence_oncall_and_dora() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: pager\nenvironments:\n  production: { branch: main }\nservices:\n  web:\n    steps:\n      build:\n        run: \"true\"\noncall:\n  schedules:\n    primary:\n      time_zone: UTC\n      layers:\n        - name: weekly\n          users: [alice, bob]\n          rotation: weekly\n          start: \"2026-01-05T09:00\"\n",
        )],
    );
    let server = ServerProc::start(&tmp.path().join("data"), free_port());
    let url = server.url.clone();
    add_project(&repo, &url);
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--server", &url, "--output", "json"]);
        let out = sluice(&all);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // An integration: its key is printed once, with the URLs senders use.
    let created = json(&[
        "integrations",
        "add",
        "pager",
        "pagerduty",
        "--service",
        "web",
    ]);
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    assert_eq!(created["pagerduty_url"], format!("{url}/v2/enqueue"));
    let out = sluice(&["integrations", "add", "pager", "spare", "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.starts_with("key: ")
            && stdout.contains("/v2/enqueue")
            && stdout.contains("/api/v2/alerts")
            && stdout.contains("/webhook"),
        "{stdout}"
    );
    let list = json(&["integrations", "list", "pager"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let spare = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "spare")
        .unwrap()["id"]
        .to_string();
    let out = sluice(&["integrations", "rm", "pager", &spare, "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        json(&["integrations", "list", "pager"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = sluice(&[
        "integrations",
        "add",
        "pager",
        "x",
        "--key",
        "short",
        "--server",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A PagerDuty event opens an incident the CLI lists.
    let event = serde_json::json!({
        "routing_key": key, "event_action": "trigger", "dedup_key": "x",
        "payload": {"summary": "s", "source": "h", "severity": "critical"},
    });
    assert_eq!(post_json(&format!("{url}/v2/enqueue"), &event), 202);
    let mut incidents = Value::Null;
    wait_for("the incident", 30, || {
        incidents = json(&["incidents", "--project", "pager", "--open"]);
        incidents.as_array().unwrap().len() == 1
    });
    let inc = &incidents[0];
    assert_eq!(inc["service"], "web");
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["status"], "triggered");
    let id = inc["id"].to_string();
    let out = sluice(&["incidents", "--server", &url]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.starts_with("ID ") && table.contains("triggered") && table.contains("pager/web"),
        "{table}"
    );
    let alerts = json(&["alerts", "--incident", &id, "--firing"]);
    assert_eq!(alerts[0]["dedup_key"], "x", "{alerts}");
    assert_eq!(alerts[0]["labels"]["source"], "h", "{alerts}");

    // Acknowledge, show, resolve; doing either again is a conflict (exit 1, the server's message).
    let out = sluice(&["ack", &id, "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = sluice(&["incident", &id, "--server", &url]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.lines().next().unwrap().contains("acknowledged") && shown.contains("by user:admin"),
        "{shown}"
    );
    assert!(shown.contains("TIME (UTC)"), "{shown}");
    let out = sluice(&["ack", &id, "--server", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = sluice(&["resolve", &id, "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = sluice(&["resolve", &id, "--server", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be resolved"),
        "{}",
        text(&out)
    );
    let record = json(&["incident", &id]);
    assert_eq!(record["incident"]["status"], "resolved");
    assert!(record["mttr_ms"].is_i64(), "{record}");
    assert!(
        json(&["incidents", "--open"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sluice(&["incident", "424242", "--server", &url])
            .status
            .code(),
        Some(3)
    );

    // Silences: one for two hours, one weekly window; list shows them; expire ends one.
    let silence = json(&[
        "silence",
        "add",
        "--matchers",
        "alertname=\"DiskFull\",service=\"web\"",
        "--duration",
        "2h",
        "--project",
        "pager",
        "--comment",
        "disk swap",
    ]);
    let sid = silence["id"].as_i64().unwrap();
    let weekly = json(&[
        "silence",
        "add",
        "--matchers",
        "service=\"web\"",
        "--duration",
        "720h",
        "--weekly",
        "sat,sun",
        "--window",
        "02:00-04:00",
        "--tz",
        "Europe/Berlin",
        "--project",
        "pager",
        "--comment",
        "weekend maintenance",
    ]);
    assert_eq!(
        weekly["recurrence"]["days"],
        serde_json::json!(["saturday", "sunday"])
    );
    let find = |list: &Value, id: i64| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap()
    };
    let listed = json(&["silence", "list"]);
    assert_eq!(find(&listed, sid)["active"], true, "{listed}");
    let out = sluice(&["silence", "list", "--server", &url]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("active"),
        "{}",
        text(&out)
    );
    let out = sluice(&["silence", "expire", &sid.to_string(), "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ended = find(&json(&["silence", "list"]), sid);
    assert_eq!(ended["active"], false, "{ended}");
    assert!(ended["expired_ms"].is_i64(), "{ended}");
    // Bad silences: refused by clap before anything is sent, or by the server (exit 1).
    for (args, code) in [
        (&["--matchers", "a=\"b\"", "--comment", "c"][..], 2),
        (
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "c",
                "--duration",
                "2d",
            ],
            2,
        ),
        (
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "c",
                "--until",
                "tomorrow",
            ],
            2,
        ),
        (
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "c",
                "--duration",
                "1h",
                "--weekly",
                "funday",
                "--window",
                "01:00-02:00",
                "--tz",
                "UTC",
            ],
            2,
        ),
        (
            &["--matchers", "a=", "--comment", "c", "--duration", "1h"],
            1,
        ),
        (
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "c",
                "--duration",
                "1h",
                "--weekly",
                "sun",
                "--window",
                "01:00-02:00",
                "--tz",
                "Mars/Olympus",
            ],
            1,
        ),
    ] {
        let mut all = vec!["silence", "add", "--server", &url];
        all.extend_from_slice(args);
        let out = sluice(&all);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{args:?}: {}",
            text(&out)
        );
    }

    // On call now and next; DORA metrics without deployments.
    let oncall = json(&["oncall"]);
    assert_eq!(oncall[0]["schedule"], "primary", "{oncall}");
    let now = oncall[0]["now"]["user"].as_str().unwrap();
    assert!(now == "alice" || now == "bob", "{oncall}");
    let out = sluice(&["oncall", "--server", &url]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("primary (UTC)"),
        "{}",
        text(&out)
    );
    let dora = json(&["dora", "--project", "pager", "--since", "30d"]);
    assert_eq!(dora["metrics"]["deployments"], 0, "{dora}");
    let out = sluice(&["dora", "--server", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment frequency"),
        "{}",
        text(&out)
    );
    assert_eq!(
        sluice(&["dora", "--since", "soon", "--server", &url])
            .status
            .code(),
        Some(1)
    );

    // Without a valid token: denied, exit 6.
    let out = Command::new(BIN)
        .args(["incidents", "--server", &url])
        .env_remove("SLUICE_SERVER")
        .env(
            "SLUICE_TOKEN",
            "slc_a_nottherighttokennottherighttokennottherig",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

#[test]
fn alerts_noise_shows_the_figures_per_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: quiet\nenvironments:\n  production: { branch: main }\nservices:\n  web:\n    steps:\n      build:\n        run: \"true\"\nalerts:\n  group_by: [alertname]\n  group_wait: 100ms\n",
        )],
    );
    let server = ServerProc::start(&tmp.path().join("data"), free_port());
    let url = server.url.clone();
    add_project(&repo, &url);
    let run = |args: &[&str]| -> Output {
        let mut all = args.to_vec();
        all.extend(["--server", &url]);
        sluice(&all)
    };
    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = run(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let key = json(&["integrations", "add", "quiet", "prometheus"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let alert = |name: &str, resolved: bool| {
        let mut a = serde_json::json!({"labels": {"alertname": name, "service": "web"}});
        if resolved {
            a["endsAt"] = "2020-01-01T00:00:00Z".into();
        }
        a
    };
    let post = |alerts: Value| {
        let status = post_json(&format!("{url}/integrations/{key}/api/v2/alerts"), &alerts);
        assert_eq!(status, 200);
    };
    // Blip resolves by itself at once; Slow is acknowledged and keeps firing.
    post(serde_json::json!([
        alert("Blip", false),
        alert("Slow", false)
    ]));
    let mut incidents = Value::Null;
    wait_for("two incidents", 30, || {
        incidents = json(&["incidents", "--project", "quiet"]);
        incidents.as_array().unwrap().len() == 2
    });
    let slow = incidents
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"].as_str().unwrap().starts_with("Slow"))
        .unwrap()["id"]
        .to_string();
    assert_eq!(run(&["ack", &slow]).status.code(), Some(0));
    post(serde_json::json!([alert("Blip", true)]));
    let mut blip = Value::Null;
    wait_for("Blip resolved", 30, || {
        let alerts = json(&["alerts", "--project", "quiet"]);
        blip = alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == "Blip")
            .unwrap()
            .clone();
        blip["status"] == "resolved"
    });
    let lasted = blip["resolved_ms"].as_i64().unwrap() - blip["created_ms"].as_i64().unwrap();

    let report = json(&["alerts", "--noise", "--project", "quiet", "--since", "7d"]);
    assert_eq!(report["within_ms"], 300_000);
    assert_eq!(
        report["rules"],
        serde_json::json!([
            {
                "project": "quiet", "rule": "Blip", "alerts": 1, "silenced": 0, "incidents": 1,
                "alerts_per_incident": 1.0, "auto_resolved_quickly": 1, "auto_resolved_share": 1.0,
                "acknowledged": 0, "acknowledged_share": 0.0, "flapping": 0, "flapping_share": 0.0,
                "resolved": 1, "median_resolve_ms": lasted,
            },
            {
                "project": "quiet", "rule": "Slow", "alerts": 1, "silenced": 0, "incidents": 1,
                "alerts_per_incident": 1.0, "auto_resolved_quickly": 0, "auto_resolved_share": 0.0,
                "acknowledged": 1, "acknowledged_share": 1.0, "flapping": 0, "flapping_share": 0.0,
                "resolved": 0, "median_resolve_ms": null,
            },
        ])
    );
    let out = run(&["alerts", "--noise"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("auto-resolved: by their source within 5m") && table.contains("RULE"),
        "{table}"
    );
    let blip_row = table.lines().find(|l| l.contains("Blip")).unwrap();
    assert!(
        blip_row.contains("100% (1)") && blip_row.contains("0% (0)"),
        "{table}"
    );
    // Refused before anything is sent: a bad window, --noise with alert filters, noise
    // options without --noise.
    for args in [
        &["alerts", "--noise", "--since", "soon"][..],
        &["alerts", "--noise", "--within", "0s"],
        &["alerts", "--noise", "--firing"],
        &["alerts", "--since", "7d"],
    ] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
}

/// One Alertmanager-API POST of a single alert (fresh connection): true when sluice answered
/// 200, i.e. it had stored the alert durably; false on any error or another answer.
fn post_alert(port: u16, key: &str, alertname: &str, instance: &str) -> bool {
    use std::io::Write;
    let body = serde_json::json!([{"labels": {"alertname": alertname, "service": "web", "instance": instance}}])
        .to_string();
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST /integrations/{key}/api/v2/alerts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if c.write_all(head.as_bytes()).is_err() || c.write_all(body.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

#[test]
fn kill_9_during_alert_ingest_loses_no_accepted_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        &[(
            "sluice.yml",
            "project: storm\nenvironments:\n  production: { branch: main }\nservices:\n  web:\n    steps:\n      build:\n        run: \"true\"\nalerts:\n  group_by: [alertname, service]\n  group_wait: 1s\n",
        )],
    );
    let data = tmp.path().join("data");
    let port = free_port();
    let mut server = ServerProc::start(&data, port);
    add_project(&repo, &server.url);
    let out = sluice(&[
        "integrations",
        "add",
        "storm",
        "alertmanager",
        "--service",
        "web",
        "--server",
        &server.url,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    // Four senders post one alert per request (10 alertnames: 10 incidents) until stopped,
    // keeping the instances sluice answered 200 for.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, key, answered) = (stop.clone(), key.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut failed = 0u64;
                let deadline = Instant::now() + Duration::from_secs(120);
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline
                    {
                        break;
                    }
                    let instance = format!("t{t}-{i}");
                    if post_alert(port, &key, &format!("a{}", i % 10), &instance) {
                        accepted.push(instance);
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                (accepted, failed)
            })
        })
        .collect();
    // Kill the server twice while alerts arrive (each time after 1,000 more were accepted),
    // so some accepted ones are not applied yet (they are applied in batches, up to 200 ms
    // after they arrive); stop once 1,000 more came after the last restart.
    let more = |n: usize| {
        let from = answered.load(std::sync::atomic::Ordering::Relaxed);
        wait_for(&format!("{n} more alerts accepted"), 60, || {
            answered.load(std::sync::atomic::Ordering::Relaxed) >= from + n
        });
    };
    for _ in 0..2 {
        more(1000);
        server.kill9();
        server = ServerProc::start(&data, port);
    }
    more(1000);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut accepted = std::collections::BTreeSet::new();
    let mut failed = 0;
    for s in senders {
        let (a, f) = s.join().unwrap();
        accepted.extend(a);
        failed += f;
    }
    eprintln!("alerts.kill9.accepted {} alerts", accepted.len());
    eprintln!("alerts.kill9.refused_while_down {failed} requests");
    assert!(accepted.len() > 200, "the senders ran: {}", accepted.len());

    // Every accepted alert is stored after the restart (some the server stored without
    // being able to answer may be there too), and the incidents count them exactly once.
    let stored = |server: &ServerProc| -> std::collections::BTreeSet<String> {
        let mut all = std::collections::BTreeSet::new();
        let mut before = String::new();
        loop {
            let page = server.get(&format!("/api/v1/alerts?project=storm&limit=1000{before}"));
            let page = page.as_array().unwrap();
            let Some(last) = page.last() else { break };
            all.extend(
                page.iter()
                    .filter_map(|a| a["labels"]["instance"].as_str().map(str::to_owned)),
            );
            before = format!("&before={}", last["id"]);
        }
        all
    };
    let mut have = std::collections::BTreeSet::new();
    wait_for("every accepted alert to be stored", 60, || {
        have = stored(&server);
        accepted.is_subset(&have)
    });
    let counted = || -> (usize, i64) {
        let incidents = server.get("/api/v1/incidents?project=storm&limit=1000");
        let incidents = incidents.as_array().unwrap();
        (
            incidents.len(),
            incidents
                .iter()
                .map(|i| i["alert_count"].as_i64().unwrap_or(0))
                .sum(),
        )
    };
    wait_for("the incidents to count every stored alert", 30, || {
        counted() == (10, i64::try_from(have.len()).unwrap())
    });
    eprintln!(
        "alerts.kill9.stored {} alerts ({} answered 200)",
        have.len(),
        accepted.len()
    );
}
