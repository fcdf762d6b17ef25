//! Wire compatibility with real clients, not hand-written JSON: the real Prometheus
//! Alertmanager (Debian's `prometheus-alertmanager`) delivers its webhook notifications to
//! sluice's receiver, firing and then resolved; and the real PagerDuty client library
//! `pdpyras` (from PyPI, run from a Python venv by `tests/compat/pd_client.py`) triggers,
//! acknowledges and resolves through sluice's Events API v2 and sends a change event, getting
//! the answers it expects.
//!
//! The peers are found at `/usr/bin/prometheus-alertmanager` (or `SLUICE_TEST_ALERTMANAGER`)
//! and `target/pyenv/bin/python` with `pdpyras` installed (or `SLUICE_TEST_PDPYRAS_PYTHON`);
//! `.ci/run` installs both. A missing peer fails the test when `CI` is set and skips it
//! loudly otherwise.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use common::{AlertWorld, eventually};
use serde_json::{Value, json};

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A peer this test needs is missing: a failure under CI, a loud skip elsewhere.
fn missing(what: &str) {
    assert!(
        !ci(),
        "{what} (CI is set, so this fails instead of skipping)"
    );
    eprintln!(
        "\n==================== SKIPPED ====================\n\
         {what}\n\
         run `bash .ci/run` as root (or install it by hand) to run this test\n\
         =================================================\n"
    );
}

/// The workspace root (two levels above this crate).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name` from the environment when set and not empty, else `default`.
fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

/// A server with project `shop` (alerts grouped by `alertname`, 200 ms group wait) and one
/// integration key.
/// The project of both tests: alerts grouped by `alertname`, notified after 200 ms.
const YML: &str = "project: shop\n\
             environments:\n  production:\n    branch: main\n\
             services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
             alerts:\n  group_by: [alertname]\n  group_wait: 200ms\n";

/// What the tests ask of the incidents a world holds.
trait Incidents {
    async fn incident_details(&self) -> Vec<Value>;
    async fn incident_with(&self, dedup_key: &str) -> Option<Value>;
    async fn status_becomes(&self, id: i64, status: &str) -> Value;
}

impl Incidents for AlertWorld {
    /// Every incident's details, newest first.
    async fn incident_details(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for i in self.incidents().await {
            out.push(self.incident(i["id"].as_i64().unwrap()).await);
        }
        out
    }

    /// The details of the incident holding the alert with `dedup_key`, once there is one.
    async fn incident_with(&self, dedup_key: &str) -> Option<Value> {
        self.incident_details().await.into_iter().find(|d| {
            d["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["dedup_key"] == dedup_key)
        })
    }

    /// Waits until incident `id` has `status`; its details.
    async fn status_becomes(&self, id: i64, status: &str) -> Value {
        eventually(&format!("incident {id} {status}"), 30, || async {
            let d = self.incident(id).await;
            (d["incident"]["status"] == status).then_some(d)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------
// Alertmanager

/// The real Alertmanager on loopback, clustering off, in its own process group (killed
/// whole on drop, so a failing test leaves nothing running).
struct Alertmanager {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Alertmanager {
    async fn start(bin: &Path, dir: &Path, webhook: &str) -> Alertmanager {
        use std::os::unix::process::CommandExt;
        let config = dir.join("alertmanager.yml");
        // Short group timers so notifications come quickly; resolved ones are sent too.
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: sluice\n  group_by: [alertname]\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 4h\n\
                 receivers:\n  - name: sluice\n    webhook_configs:\n      - url: {webhook}\n        \
                 send_resolved: true\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let log = dir.join("alertmanager.log");
        let port = common::free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // An empty cluster address turns gossip off: nothing binds 0.0.0.0:9094.
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if common::served(&client, &format!("{}/-/ready", am.url))
                .await
                .is_some()
            {
                return am;
            }
            if let Ok(Some(st)) = am.child.try_wait() {
                panic!("alertmanager exited at start ({st}):\n{}", am.log_tail());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "alertmanager not ready within 30 s:\n{}",
                am.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of its log (what it wrote to stderr).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_owned()
    }

    /// `POST /api/v2/alerts` on Alertmanager itself.
    async fn post(&self, alerts: &Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "alertmanager refused alerts: {text}"
        );
    }

    /// Alertmanager's own fingerprint of each alert it holds, by `instance`+`alertname`.
    async fn fingerprints(&self) -> BTreeMap<(String, String), String> {
        let v: Value = reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let l = &a["labels"];
                (
                    (
                        l["alertname"].as_str().unwrap().to_owned(),
                        l["instance"].as_str().unwrap().to_owned(),
                    ),
                    a["fingerprint"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn labels(name: &str, instance: &str, severity: &str) -> Value {
    json!({"alertname": name, "instance": instance, "severity": severity, "service": "web", "team": "shop-ops"})
}

/// The alerts as posted to Alertmanager: firing (`ends_at` None) or resolved.
fn am_alerts(starts_at: &str, ends_at: Option<&str>) -> Value {
    let mut alerts = vec![
        json!({"labels": labels("HighLatency", "a", "warning"), "annotations": {"summary": "HighLatency on a"}}),
        json!({"labels": labels("HighLatency", "b", "warning"), "annotations": {"summary": "HighLatency on b"}}),
        json!({"labels": labels("DiskFull", "a", "critical"), "annotations": {"summary": "DiskFull on a"}}),
    ];
    for a in &mut alerts {
        a["startsAt"] = json!(starts_at);
        a["generatorURL"] = json!("http://prometheus.invalid/graph");
        if let Some(end) = ends_at {
            a["endsAt"] = json!(end);
        }
    }
    Value::Array(alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_delivers_to_the_webhook_receiver() {
    let bin = env_path(
        "SLUICE_TEST_ALERTMANAGER",
        PathBuf::from("/usr/bin/prometheus-alertmanager"),
    );
    if !bin.is_file() {
        missing(&format!(
            "Prometheus Alertmanager is not installed at {} (Debian package \
             `prometheus-alertmanager`; or set SLUICE_TEST_ALERTMANAGER)",
            bin.display()
        ));
        return;
    }
    let w = AlertWorld::start(YML, |_| {}).await;
    let am_dir = tempfile::tempdir().unwrap();
    let webhook = format!("{}/integrations/{}/webhook", w.base, w.key);
    let am = Alertmanager::start(&bin, am_dir.path(), &webhook).await;

    // Prometheus-style: the alerts started a minute ago and have no end yet.
    let now = jiff::Timestamp::now();
    let starts = now
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap()
        .to_string();
    let firing = am_alerts(&starts, None);
    am.post(&firing).await;
    let fps = am.fingerprints().await;
    assert_eq!(fps.len(), 3, "alertmanager holds {fps:?}");

    // Alertmanager groups by alertname and notifies sluice: two incidents, three alerts, each
    // with the labels as sent and Alertmanager's own fingerprint as its key.
    let details = eventually("sluice to hold the three alerts", 60, || async {
        let d = w.incident_details().await;
        let n: usize = d
            .iter()
            .map(|i| i["alerts"].as_array().unwrap().len())
            .sum();
        (n == 3).then_some(d)
    })
    .await;
    assert_eq!(details.len(), 2, "{details:#?}");
    let sent = firing.as_array().unwrap();
    for d in &details {
        assert_eq!(d["incident"]["status"], "triggered", "{d:#}");
        let alerts = d["alerts"].as_array().unwrap();
        let names: Vec<&str> = alerts
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| *n == names[0]),
            "one alertname per incident: {names:?}"
        );
        for a in alerts {
            let key = (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["labels"]["instance"].as_str().unwrap().to_owned(),
            );
            assert_eq!(
                a["dedup_key"].as_str(),
                fps.get(&key).map(String::as_str),
                "{a:#}"
            );
            let posted = sent
                .iter()
                .find(|s| {
                    s["labels"]["alertname"] == a["labels"]["alertname"]
                        && s["labels"]["instance"] == a["labels"]["instance"]
                })
                .unwrap();
            assert_eq!(a["labels"], posted["labels"], "labels intact");
            assert_eq!(a["summary"], posted["annotations"]["summary"]);
            assert_eq!(a["status"], "firing");
            assert_eq!(a["source"], "alertmanager-webhook");
        }
    }
    let latency = details
        .iter()
        .find(|d| d["alerts"][0]["labels"]["alertname"] == "HighLatency")
        .unwrap();
    assert_eq!(latency["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(latency["alerts"][0]["severity"], "warning");
    let disk = details
        .iter()
        .find(|d| d["alerts"][0]["labels"]["alertname"] == "DiskFull")
        .unwrap();
    assert_eq!(disk["alerts"][0]["severity"], "critical");

    // The same alerts, ended a second ago: Alertmanager sends resolved notifications
    // (send_resolved) and sluice resolves every alert and both incidents.
    let ended = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap()
        .to_string();
    am.post(&am_alerts(&starts, Some(&ended))).await;
    for d in &details {
        let id = d["incident"]["id"].as_i64().unwrap();
        let done = w.status_becomes(id, "resolved").await;
        for a in done["alerts"].as_array().unwrap() {
            assert_eq!(a["status"], "resolved", "{a:#}");
        }
        assert!(done["incident"]["resolved_by"].is_null(), "{done:#}");
    }
    assert_eq!(w.incidents().await.len(), 2, "no new incident on resolve");
    drop(am);
    w.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// PagerDuty client library

/// The venv python with `pdpyras`, or None (after [`missing`]).
fn pdpyras_python() -> Option<PathBuf> {
    let python = env_path(
        "SLUICE_TEST_PDPYRAS_PYTHON",
        workspace().join("target/pyenv/bin/python"),
    );
    if !python.is_file() {
        missing(&format!(
            "no Python venv at {} for the PagerDuty client library (create it with \
             `python3 -m venv target/pyenv && target/pyenv/bin/pip install pdpyras==5.4.1`, \
             or set SLUICE_TEST_PDPYRAS_PYTHON)",
            python.display()
        ));
        return None;
    }
    let ok = Command::new(&python)
        .args(["-W", "ignore", "-c", "import pdpyras"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(&format!(
            "{} cannot import pdpyras (install it with `{} -m pip install pdpyras==5.4.1`)",
            python.display(),
            python.display()
        ));
        return None;
    }
    Some(python)
}

/// Runs `tests/compat/pd_client.py BASE KEY ARGS..`: the JSON line it prints.
async fn pd_client(python: &Path, base: &str, key: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/pd_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(base).arg(key).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pd_client.py {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("pd_client.py printed {stdout:?}: {e}"))
}

/// Checks a successful Events API call: the library returned `dedup_key` and saw PagerDuty's
/// 202 answer.
fn assert_accepted(out: &Value, action: &str, dedup_key: &str) {
    assert!(out.get("error").is_none(), "{out:#}");
    assert_eq!(out["returned"], dedup_key, "{out:#}");
    assert_eq!(out["status"], 202, "{out:#}");
    assert_eq!(out["path"], "/v2/enqueue");
    assert_eq!(
        out["body"],
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    );
    assert_eq!(out["sent"]["event_action"], action);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_client_library_triggers_acknowledges_and_resolves() {
    let Some(python) = pdpyras_python() else {
        return;
    };
    let w = AlertWorld::start(YML, |_| {}).await;
    let (py, base, key) = (python.as_path(), w.base.as_str(), w.key.as_str());

    // trigger: the library sends the routing key in the body and returns the dedup key.
    let out = pd_client(py, base, key, &["trigger", "checkout-42"]).await;
    assert_accepted(&out, "trigger", "checkout-42");
    assert_eq!(out["sent"]["routing_key"], key);
    let d = eventually("the triggered incident", 30, || async {
        w.incident_with("checkout-42").await
    })
    .await;
    assert_eq!(d["incident"]["status"], "triggered");
    let alert = &d["alerts"][0];
    assert_eq!(alert["summary"], "checkout is failing");
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["details"].to_string().contains("\"region\":\"eu\""),
        "custom_details kept: {alert:#}"
    );
    let id = d["incident"]["id"].as_i64().unwrap();

    // acknowledge, then resolve, by the same dedup key.
    let out = pd_client(py, base, key, &["acknowledge", "checkout-42"]).await;
    assert_accepted(&out, "acknowledge", "checkout-42");
    w.status_becomes(id, "acknowledged").await;
    let out = pd_client(py, base, key, &["resolve", "checkout-42"]).await;
    assert_accepted(&out, "resolve", "checkout-42");
    let done = w.status_becomes(id, "resolved").await;
    assert_eq!(done["alerts"][0]["status"], "resolved");

    // A trigger without a dedup key: sluice makes one, the library returns it, and it
    // resolves the new incident.
    let out = pd_client(py, base, key, &["trigger"]).await;
    let made = out["returned"].as_str().unwrap_or_default().to_owned();
    assert!(!made.is_empty(), "{out:#}");
    assert_accepted(&out, "trigger", &made);
    let d = eventually("the second incident", 30, || async {
        w.incident_with(&made).await
    })
    .await;
    let second = d["incident"]["id"].as_i64().unwrap();
    assert_ne!(second, id);
    let out = pd_client(py, base, key, &["resolve", &made]).await;
    assert_accepted(&out, "resolve", &made);
    w.status_becomes(second, "resolved").await;

    // A wrong routing key: the library raises on PagerDuty's 400 body; nothing is stored.
    let out = pd_client(
        py,
        base,
        "0123456789abcdef0123456789abcdef",
        &["trigger", "x"],
    )
    .await;
    assert_eq!(out["error"], "PDHTTPError", "{out:#}");
    assert_eq!(out["status"], 400);
    assert_eq!(out["body"]["status"], "invalid event");
    assert_eq!(out["body"]["message"], "Event object is invalid");
    assert!(
        !out["body"]["errors"].as_array().unwrap().is_empty(),
        "{out:#}"
    );
    assert_eq!(w.incidents().await.len(), 2);

    // A change event through ChangeEventsAPISession: PagerDuty's 202, kept in the journal.
    let out = pd_client(py, base, key, &["change"]).await;
    assert!(out.get("error").is_none(), "{out:#}");
    assert_eq!(out["status"], 202, "{out:#}");
    assert_eq!(out["path"], "/v2/change/enqueue");
    assert_eq!(out["body"]["status"], "success");
    assert!(
        out["returned"].is_null(),
        "sluice's answer has no id: {out:#}"
    );
    let events = w
        .get("/api/v1/events?kind=change.received&project=shop")
        .await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["payload"]["summary"], "deployed checkout v2");
    assert_eq!(events[0]["payload"]["source"], "ci");
    w.server.stop().await;
}
