//! Helpers shared by the server's integration tests: a git CLI with a fixed identity, a
//! repository to commit to, a free loopback port, a bounded wait, the admin token test servers
//! start with and requests that send it, the deployments of a server, and the python service
//! the deploy tests run.

#![allow(dead_code, clippy::unwrap_used)]

pub mod containers;
pub mod noise;
pub mod rules;
pub mod slack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sluice_server::{Engine, Server};
use sluice_store::{Deployment, DeploymentFilter};

/// The admin API token test servers are started with ([`config`]): the first start creates
/// the admin user with it.
pub const TOKEN: &str = "slc_a_testtesttesttesttesttesttesttesttesttesttes";

/// A server configuration for `data` whose first admin has [`TOKEN`], listening on a free
/// loopback port.
pub fn config(data: impl Into<PathBuf>) -> sluice_server::ServerConfig {
    let mut c = sluice_server::ServerConfig::new(data);
    c.admin_token = Some(TOKEN.into());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// A fresh, empty PostgreSQL database for a test server (made with `psql` on the server of
/// `SLUICE_TEST_POSTGRES_URL`, see `.ci/postgres.sh`), dropped on drop.
pub struct PgDatabase {
    /// Its URL, for `ServerConfig::database`.
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// A new database, or `None` after a note when `SLUICE_TEST_POSTGRES_URL` is not set;
    /// with env `CI` set a missing PostgreSQL fails the test.
    pub fn create(test: &str) -> Option<PgDatabase> {
        let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "SLUICE_TEST_POSTGRES_URL is not set but CI is: run `eval \"$(.ci/postgres.sh)\"`"
            );
            eprintln!(
                "skipped {test} on PostgreSQL: set SLUICE_TEST_POSTGRES_URL (.ci/postgres.sh)"
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("sluice_srv_{}_{nanos}", std::process::id());
        let (server, _) = admin
            .rsplit_once('/')
            .expect("SLUICE_TEST_POSTGRES_URL ends with /DATABASE");
        let db = PgDatabase {
            url: format!("{server}/{name}"),
            admin,
            name,
        };
        let out = db.psql(&format!("CREATE DATABASE {}", db.name));
        assert!(
            out.status.success(),
            "CREATE DATABASE {}: {}",
            db.name,
            String::from_utf8_lossy(&out.stderr)
        );
        Some(db)
    }

    /// Runs `sql` in this database (with `psql`); panics if it fails.
    pub fn run(&self, sql: &str) {
        let out = std::process::Command::new("psql")
            .arg(&self.url)
            .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .expect("psql (PostgreSQL's client) runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn psql(&self, sql: &str) -> std::process::Output {
        std::process::Command::new("psql")
            .arg(&self.admin)
            .args(["-qc", sql])
            .output()
            .expect("psql (PostgreSQL's client) runs")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// An HTTP client that sends [`TOKEN`] with every request.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// `GET url` with [`TOKEN`]: the body.
pub async fn fetch(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

/// `GET url` with [`TOKEN`]: the body as JSON.
pub async fn fetch_json(url: &str) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// What a service answers to `GET url` (within 2 s), or None if it fails or is not a 2xx.
pub async fn served(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Runs `git -C dir ARGS` with a test identity; panics with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "sluice test")
        .env("GIT_AUTHOR_EMAIL", "test@sluice.invalid")
        .env("GIT_COMMITTER_NAME", "sluice test")
        .env("GIT_COMMITTER_EMAIL", "test@sluice.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("the git CLI must be installed");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git working repository.
pub struct Repo(pub PathBuf);

impl Repo {
    /// A new repository in `root/repo` on branch `main`.
    pub fn new(root: &Path) -> Repo {
        Repo::init(root.join("repo"), "main")
    }

    /// A new repository in `dir` whose first branch is `branch`.
    pub fn init(dir: impl Into<PathBuf>, branch: &str) -> Repo {
        let r = Repo(dir.into());
        std::fs::create_dir_all(&r.0).unwrap();
        r.git(&["init", "-q", "-b", branch]);
        r
    }

    /// `git ARGS` in the repository; its output.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.0, args)
    }

    /// Writes `text` to `path` in the work tree (creating its directories).
    pub fn write(&self, path: &str, text: &str) {
        let p = self.0.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Commits everything (even nothing) as `msg`; returns the commit.
    pub fn commit(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Commits everything with `version.txt` (which [`APP`] reads) set to `version`.
    pub fn commit_version(&self, version: &str) {
        self.write("version.txt", version);
        self.commit(version);
    }

    /// The path, as a project source.
    pub fn path(&self) -> String {
        self.0.display().to_string()
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills every instance of a server when dropped, so that a test that fails before
/// `stop_all` leaves no service running (a passing test stops them itself).
pub struct KillOnDrop(Arc<Engine>);

impl KillOnDrop {
    pub fn new(s: &Server) -> KillOnDrop {
        KillOnDrop(s.engine.clone())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
        let _ = sluice_runtime::Runtime::kill_all(&*self.0.fleet.runtime);
    }
}

/// The server's deployments, newest first.
pub async fn deployments(s: &Server) -> Vec<Deployment> {
    s.engine
        .store
        .deployments(&DeploymentFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The server's newest deployment.
pub async fn newest_deployment(s: &Server) -> Option<Deployment> {
    s.engine
        .store
        .deployments(&DeploymentFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .pop()
}

/// Waits until the newest deployment is of `version` and finished.
pub async fn deployed(s: &Server, version: i64) -> Deployment {
    eventually(
        &format!("the deployment of v{version} to finish"),
        60,
        || async {
            newest_deployment(s)
                .await
                .filter(|d| d.version == version && d.status.is_terminal())
        },
    )
    .await
}

/// The service the deploy tests run (python3, stdlib). `version.txt` picks its behaviour: a
/// plain version answers 200 with `version=<v>` (and `ok` on `/healthz`); `exit` or `crash`
/// exits at once; `unhealthy` answers 503 on `/healthz`; `errors` answers 500 to every 5th
/// request (health checks not counted); `slow` sleeps 500 ms per request; `hang` never answers
/// a request (health stays OK). `/burn` spends 20 ms of CPU and answers 200 (the autoscaling
/// test's load). When a `gate.txt` beside it names a file, it only starts
/// listening once that file exists (so a test decides when the release becomes ready).
/// SIGTERM stops accepting and lets requests in flight finish before exiting (a hung one is
/// killed after `stop_grace`).
pub const APP: &str = r#"
import os, sys, signal, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
here = os.path.dirname(os.path.abspath(__file__))
version = open(os.path.join(here, "version.txt")).read().strip()
if version in ("exit", "crash"):
    sys.exit(3)
gate_file = os.path.join(here, "gate.txt")
gate = open(gate_file).read().strip() if os.path.exists(gate_file) else ""
while gate and not os.path.exists(gate):
    time.sleep(0.05)
lock = threading.Lock()
state = {"count": 0, "busy": 0}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/healthz":
            self.reply(503 if version == "unhealthy" else 200, b"ok\n")
            return
        if self.path == "/burn":
            spent = time.process_time()
            while time.process_time() - spent < 0.02:
                pass
            self.reply(200, b"burnt\n")
            return
        with lock:
            state["count"] += 1
            state["busy"] += 1
            n = state["count"]
        try:
            if version == "hang":
                while True:
                    time.sleep(3600)
            if version == "slow":
                time.sleep(0.5)
            status = 500 if version == "errors" and n % 5 == 0 else 200
            self.reply(status, ("version=" + version + "\n").encode())
        finally:
            with lock:
                state["busy"] -= 1
    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
srv = S((os.environ.get("BIND", "127.0.0.1"), int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown, daemon=True).start())
srv.serve_forever(poll_interval=0.05)
srv.server_close()
deadline = time.time() + 10
while state["busy"] and time.time() < deadline:
    time.sleep(0.01)
os._exit(0)
"#;

/// The runtime a deploy test runs its instances in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rt {
    /// Host processes (the default runtime).
    Process,
    /// Docker containers of this base image (the python test image: [`APP`] runs in it).
    Docker(String),
}

impl Rt {
    /// The Docker runtime with the python test image, or `None` (after a note) when no
    /// daemon answers and `CI` is not set; with `CI` set a missing daemon fails the test.
    pub async fn docker() -> Option<Rt> {
        let docker = sluice_docker::testimage::daemon_or_skip().await?;
        let image = sluice_docker::testimage::python(&docker).await.unwrap();
        Some(Rt::Docker(image))
    }

    /// Lines for a service's `deploy:` section (indented by `indent` spaces): the runtime, and
    /// for containers `BIND=0.0.0.0` so [`APP`] listens on the container's address that the
    /// published loopback port reaches (on the host it keeps to 127.0.0.1).
    pub fn deploy_yaml(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        match self {
            Rt::Process => String::new(),
            Rt::Docker(_) => format!("{pad}runtime: docker\n{pad}env: {{ BIND: 0.0.0.0 }}\n"),
        }
    }

    /// Sets the server's base image for containers.
    pub fn configure(&self, c: &mut sluice_server::ServerConfig) {
        if let Rt::Docker(image) = self {
            c.base_image = Some(image.clone());
        }
    }

    /// `process` or `docker`, for figures and messages.
    pub fn label(&self) -> &'static str {
        match self {
            Rt::Process => "process",
            Rt::Docker(_) => "docker",
        }
    }
}

/// A server whose project `shop` comes from `yml`, with an alert integration: where the
/// incident tests start. `configure` adjusts the server configuration (e.g. SMTP).
pub struct AlertWorld {
    pub _tmp: tempfile::TempDir,
    pub server: Server,
    pub base: String,
    /// The integration's key.
    pub key: String,
}

impl AlertWorld {
    pub async fn start(
        yml: &str,
        configure: impl FnOnce(&mut sluice_server::ServerConfig),
    ) -> AlertWorld {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        repo.write("sluice.yml", yml);
        repo.commit("alerts");
        let mut c = config(tmp.path().join("data"));
        configure(&mut c);
        let server = Server::start(c).await.unwrap();
        server
            .engine
            .add_project(&repo.path(), None, Some(0), None, "test")
            .await
            .unwrap();
        // The project's alert settings come from its branches, which its first sync records.
        eventually("the project's first sync", 30, || async {
            server.engine.production_config("shop").await
        })
        .await;
        let base = format!("http://{}", server.addr);
        let r = http()
            .post(format!("{base}/api/v1/projects/shop/integrations"))
            .json(&serde_json::json!({"name": "prometheus"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating the integration: {r:?}");
        let created: serde_json::Value = r.json().await.unwrap();
        let key = created["key"].as_str().unwrap().to_owned();
        AlertWorld {
            _tmp: tmp,
            server,
            base,
            key,
        }
    }

    /// `POST path` without credentials (as senders post): status and body.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (reqwest::StatusCode, String) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// `GET path` with [`TOKEN`], which must answer 200: the body as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let r = http()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// Every incident, newest first.
    pub async fn incidents(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/incidents")
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// `{"incident": .., "alerts": [..], "timeline": [..]}`.
    pub async fn incident(&self, id: i64) -> serde_json::Value {
        self.get(&format!("/api/v1/incidents/{id}")).await
    }
}
