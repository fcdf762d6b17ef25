//! Helpers of the alert rule tests (`tests/alert_rules.rs`): a service whose behaviour a test
//! flips through HTTP calls to its instance (500s, a Prometheus gauge, its health check), a
//! deployed project running it behind the proxy with short rule intervals, a webhook sink,
//! and bounded traffic through the proxy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_runtime::Runtime;
use sluice_server::Server;

use super::{KillOnDrop, Repo, deployed, eventually, http};

/// The service (python3, stdlib). `GET /set?errors=1|0` makes every other request answer
/// 500 (or not), `GET /set?gauge=N` sets the gauge `queue_depth` that `GET /metrics` exposes
/// in the Prometheus text format (and `GET /set?marker=N` the gauge `marker`),
/// `GET /set?healthy=0|1` makes `/healthz` answer 503 (or
/// 200). `/set`, `/metrics` and `/healthz` are meant for the instance's own port; everything
/// else is the traffic the proxy counts.
pub const RULES_APP: &str = r##"
import os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
lock = threading.Lock()
state = {"errors": False, "healthy": True, "gauge": 0.0, "marker": 0.0, "served": 0}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            with lock:
                ok = state["healthy"]
            self.reply(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
        elif url.path == "/metrics":
            with lock:
                text = "# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth %s\n# TYPE marker gauge\nmarker %s\n# TYPE served_total counter\nserved_total %d\n" % (repr(state["gauge"]), repr(state["marker"]), state["served"])
            self.reply(200, text.encode(), "text/plain; version=0.0.4")
        elif url.path == "/set":
            q = parse_qs(url.query)
            with lock:
                if "errors" in q:
                    state["errors"] = q["errors"][0] == "1"
                if "healthy" in q:
                    state["healthy"] = q["healthy"][0] == "1"
                if "gauge" in q:
                    state["gauge"] = float(q["gauge"][0])
                if "marker" in q:
                    state["marker"] = float(q["marker"][0])
            self.reply(200, b"set\n")
        else:
            with lock:
                state["served"] += 1
                fail = state["errors"]
            self.reply(500 if fail else 200, b"failed\n" if fail else b"ok\n")
    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(ThreadingHTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", int(os.environ["PORT"])), H)
srv.serve_forever(poll_interval=0.05)
"##;

/// A webhook receiver on loopback that keeps every JSON body it gets.
pub struct Sink {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let b = bodies.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::Json<Value>| {
                let b = b.clone();
                async move {
                    b.lock().unwrap().push(body.0);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { url, bodies }
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Project `shop` with service `web` ([`RULES_APP`]) deployed to `production` behind the
/// proxy, the given alert rules, and notifications to a [`Sink`]; rules are evaluated every
/// 200 ms.
pub struct RuleWorld {
    pub _tmp: tempfile::TempDir,
    pub server: Server,
    pub base: String,
    /// Where the proxy serves `web`.
    pub port: u16,
    pub sink: Sink,
    config: sluice_server::ServerConfig,
    /// One per server started: each kills every instance of the data directory when the
    /// test ends, so none is dropped while a later server still runs them.
    _kill: Vec<KillOnDrop>,
}

/// A [`RuleWorld`] whose server is stopped (its instances keep running).
pub struct Stopped {
    tmp: tempfile::TempDir,
    port: u16,
    sink: Sink,
    config: sluice_server::ServerConfig,
    kill: Vec<KillOnDrop>,
}

impl Stopped {
    /// `GET /set?{query}` on the port of an instance that still runs.
    pub async fn set(&self, instance_port: u16, query: &str) {
        set_on(instance_port, query).await;
    }

    /// Starts a new server on the same data directory; it adopts the running instances.
    pub async fn start(self) -> RuleWorld {
        let server = Server::start(self.config.clone()).await.unwrap();
        let mut kill = self.kill;
        kill.push(KillOnDrop::new(&server));
        RuleWorld {
            _tmp: self.tmp,
            base: format!("http://{}", server.addr),
            server,
            port: self.port,
            sink: self.sink,
            config: self.config,
            _kill: kill,
        }
    }
}

async fn set_on(port: u16, query: &str) {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/set?{query}"))
        .await
        .unwrap();
    assert!(r.status().is_success(), "/set?{query}: {r:?}");
}

impl RuleWorld {
    /// `rules` is the body of `alerts.rules`, indented by four spaces.
    pub async fn start(rules: &str) -> RuleWorld {
        let sink = Sink::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        let port = super::free_port();
        repo.write("app.py", RULES_APP);
        repo.write(
            "sluice.yml",
            &format!(
                r#"project: shop
environments:
  production:
    branch: main
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
      # 30 s of failing checks before a restart: a test decides when it is healthy again.
      health: {{ http: /healthz, interval: 300ms, timeout: 1s, failure_threshold: 100 }}
      stop_grace: 1s
      environments:
        production: {{ expose: "127.0.0.1:{port}" }}
alerts:
  group_wait: 200ms
  channels:
    hook:
      webhook: {hook}
  rules:
{rules}"#,
                hook = sink.url
            ),
        );
        repo.commit("v1");
        let mut config = super::config(tmp.path().join("data"));
        config.rule_interval = std::time::Duration::from_millis(200);
        let server = Server::start(config.clone()).await.unwrap();
        let kill = KillOnDrop::new(&server);
        server
            .engine
            .add_project(&repo.path(), None, Some(0), None, "test")
            .await
            .unwrap();
        let d = deployed(&server, 1).await;
        assert_eq!(d.status, sluice_core::DeployStatus::Succeeded);
        let base = format!("http://{}", server.addr);
        RuleWorld {
            _tmp: tmp,
            server,
            base,
            port,
            sink,
            config,
            _kill: vec![kill],
        }
    }

    /// Stops the server as a restart does: the instances keep running.
    pub async fn stop(self) -> Stopped {
        self.server.stop().await;
        Stopped {
            tmp: self._tmp,
            port: self.port,
            sink: self.sink,
            config: self.config,
            kill: self._kill,
        }
    }

    /// The instance of `web` (there is one), once it exists: its id and port.
    pub async fn instance(&self) -> (String, u16) {
        eventually("the instance of web", 30, || async {
            self.server
                .engine
                .fleet
                .runtime
                .list()
                .into_iter()
                .find(|i| i.id.starts_with("shop.web.production.v1.") && i.ready)
                .map(|i| (i.id, i.port))
        })
        .await
    }

    /// The runtime's state name of an instance (`ready`, `unhealthy`, ...).
    pub fn instance_state(&self, id: &str) -> Option<String> {
        let i = self.server.engine.fleet.runtime.status(id)?;
        let v = serde_json::to_value(&i.state).ok()?;
        v["state"].as_str().map(str::to_owned)
    }

    /// `GET /set?{query}` on the instance's own port.
    pub async fn set(&self, query: &str) {
        let (_, port) = self.instance_any().await;
        set_on(port, query).await;
    }

    /// The instance of `web` whether or not it is ready.
    async fn instance_any(&self) -> (String, u16) {
        eventually("the instance of web", 30, || async {
            self.server
                .engine
                .fleet
                .runtime
                .list()
                .into_iter()
                .find(|i| i.id.starts_with("shop.web.production.v1."))
                .map(|i| (i.id, i.port))
        })
        .await
    }

    /// The alerts the API lists, newest first.
    pub async fn alerts(&self) -> Vec<Value> {
        let v: Value = http()
            .get(format!("{}/api/v1/alerts?project=shop", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    /// Waits for an alert whose `alertname` label is `name` in `status` (`firing` or
    /// `resolved`).
    pub async fn alert(&self, name: &str, status: &str) -> Value {
        eventually(&format!("a {status} {name} alert"), 60, || async {
            self.alerts()
                .await
                .into_iter()
                .find(|a| a["labels"]["alertname"] == name && a["status"] == status)
        })
        .await
    }

    /// Waits for a notification of `event` about `incident`.
    pub async fn notified(&self, incident: i64, event: &str) -> Value {
        eventually(&format!("the {event} notification"), 60, || async {
            self.sink
                .bodies()
                .into_iter()
                .find(|b| b["incident_id"] == incident && b["event"] == event)
        })
        .await
    }

    /// Sends requests through the proxy until the returned guard is dropped (at most 60 s).
    pub fn traffic(&self) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, url) = (stop.clone(), format!("http://127.0.0.1:{}/", self.port));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let _ = client
                    .get(&url)
                    .timeout(std::time::Duration::from_secs(2))
                    .send()
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        Traffic(stop)
    }
}

/// Stops the traffic of [`RuleWorld::traffic`] when dropped.
pub struct Traffic(Arc<AtomicBool>);

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
