//! The secret store end to end, through a real server over HTTP with a real SQLite store,
//! git repositories, step processes and service instances: write-only secrets (values
//! never come back), a sealed start and `unseal`, key rotation across restarts, a leak test
//! that prints a secret in every encoding from a pipeline step and a deployed service and
//! then searches every API answer, UI page, event and file of the data directory for it,
//! and a fuzz-style test of the secret endpoints.

#![allow(clippy::unwrap_used)]

mod common;

use common::{KillOnDrop, Repo, Rt, deployed, eventually, free_port};

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_core::DeployStatus;
use sluice_runtime::Runtime as _;
use sluice_secrets::Kek;
use sluice_server::{Server, ServerConfig};

/// Prints every form of `sluice_secrets::encoded_forms` of a value, one per line, after a
/// label: `step` for the step's `API_TOKEN`; `serve` for the service's `API_TOKEN` and the
/// file `TLS_KEY_FILE` names, then it serves HTTP on `PORT`. The forms are computed here, at
/// run time, so no form is ever in the repository or in the stored `sluice.yml`.
const APP: &str = r#"
import base64, os, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

def forms(v):
    b64 = base64.b64encode(v).decode()
    url = base64.urlsafe_b64encode(v).decode()
    dbl = base64.b64encode(b64.encode()).decode()
    pct = urllib.parse.quote(v, safe="-._~")
    out = []
    try:
        out.append(v.decode())
    except UnicodeDecodeError:
        pass
    out += [b64, b64.rstrip("="), url, url.rstrip("="), dbl, dbl.rstrip("="),
            v.hex(), v.hex().upper(), pct, pct.replace("%20", "+")]
    return out

def show(label, v):
    for f in forms(v):
        print(label, f, flush=True)
        print(label, f, file=sys.stderr, flush=True)

if sys.argv[1] == "step":
    show("step", os.environb[b"API_TOKEN"])
    print("step done", flush=True)
else:
    show("env", os.environb[b"API_TOKEN"])
    show("file", open(os.environ["TLS_KEY_FILE"], "rb").read())
    print("serve done", flush=True)
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")
        def log_message(self, *a):
            pass
    HTTPServer((os.environ.get("BIND", "127.0.0.1"), int(os.environ["PORT"])), H).serve_forever()
"#;

fn yml(rt: &Rt, port: u16) -> String {
    let runtime = rt.deploy_yaml(6);
    format!(
        r#"project: vault
environments:
  staging:
    branch: main
services:
  web:
    steps:
      show:
        run: python3 app.py step
        secrets: [API_TOKEN]
      digest:
        run: printf %s "$API_TOKEN" | sha256sum
        secrets: [API_TOKEN]
      package:
        run: mkdir -p out && cp app.py out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py serve
{runtime}      secrets: [API_TOKEN, {{ name: TLS_KEY, file: true }}]
      health: {{ tcp: true, interval: 100ms, timeout: 1s }}
      stop_grace: 1s
      progress_deadline: 30s
      environments:
        staging: {{ expose: "127.0.0.1:{port}" }}
"#
    )
}

/// A temporary directory with a repository (one commit) and a data directory.
struct World {
    tmp: tempfile::TempDir,
    repo: Repo,
    port: u16,
    rt: Rt,
}

impl World {
    fn new() -> World {
        World::on(Rt::Process)
    }

    /// A world whose service runs in runtime `rt`.
    fn on(rt: Rt) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        let port = free_port();
        repo.write("app.py", APP);
        repo.write("sluice.yml", &yml(&rt, port));
        repo.commit_version("1");
        World {
            tmp,
            repo,
            port,
            rt,
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn config(&self) -> ServerConfig {
        let mut c = common::config(self.data());
        self.rt.configure(&mut c);
        c
    }

    /// Starts a server and, the first time, registers the project (whose first run fails:
    /// its secrets are not set yet) and waits for that run.
    async fn start(&self, c: ServerConfig) -> Server {
        let s = Server::start(c).await.unwrap();
        if s.engine.store.projects().await.unwrap().is_empty() {
            s.engine
                .add_project(&self.repo.path(), None, Some(0), None, "test")
                .await
                .unwrap();
            // Registering starts the first run in the background (it fails: no secret is
            // set yet); wait for it so it cannot read a secret a test sets later.
            eventually("the first run", 30, || async {
                s.engine.store.run(1).await.ok()
            })
            .await;
        }
        settle(&s).await;
        s
    }
}

/// Waits until no run is unfinished.
async fn settle(s: &Server) {
    for run in s.engine.store.unfinished_runs().await.unwrap() {
        s.engine
            .wait_run(run.id, std::time::Duration::from_secs(120))
            .await
            .unwrap();
    }
}

/// Sends a request; returns the status and the body text (recorded in `seen`).
async fn call(
    seen: &mut Vec<String>,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = common::http().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    seen.push(text.clone());
    (status, text)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn put(
    seen: &mut Vec<String>,
    s: &Server,
    name: &str,
    env: Option<&str>,
    value: &str,
) -> (StatusCode, String) {
    let q = env.map(|e| format!("?env={e}")).unwrap_or_default();
    call(
        seen,
        Method::PUT,
        &format!("{}/api/v1/projects/vault/secrets/{name}{q}", s.url()),
        Some(json!({ "value": value })),
    )
    .await
}

/// A value nobody else uses, with characters that every encoding changes (space, `/`, `+`)
/// and none that HTML or JSON would escape.
fn unique_value(label: &str) -> String {
    let k = Kek::generate().unwrap().key_id();
    format!("{label} {k}/x+y~z")
}

/// Runs the pipeline by hand and waits for it; returns the run.
async fn run_pipeline(seen: &mut Vec<String>, s: &Server) -> Value {
    let (status, text) = call(
        seen,
        Method::POST,
        &format!("{}/api/v1/projects/vault/runs", s.url()),
        Some(json!({ "wait": true, "timeout_s": 120 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    json(&text)
}

async fn logs(seen: &mut Vec<String>, s: &Server, run: &Value) -> Vec<Value> {
    let (status, text) = call(
        seen,
        Method::GET,
        &format!("{}/api/v1/runs/{}/logs", s.url(), run["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    json(&text).as_array().unwrap().clone()
}

fn step_status<'a>(run: &'a Value, step: &str) -> &'a str {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("web/{step}"))
        .and_then(|s| s["status"].as_str())
        .unwrap_or("?")
}

fn lines_of(logs: &[Value], step: &str) -> Vec<String> {
    logs.iter()
        .filter(|l| l["step"] == step)
        .filter_map(|l| l["line"].as_str().map(str::to_owned))
        .collect()
}

async fn events(seen: &mut Vec<String>, s: &Server) -> Vec<Value> {
    let (status, text) = call(
        seen,
        Method::GET,
        &format!("{}/api/v1/events?limit=10000", s.url()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    json(&text).as_array().unwrap().clone()
}

fn key_text(path: &Path) -> String {
    Kek::load(path).unwrap().to_text().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_and_audited() {
    let w = World::new();
    let s = w.start(w.config()).await;
    let mut seen = Vec::new();
    let base = format!("{}/api/v1/projects/vault/secrets", s.url());
    let (all, staging) = (unique_value("all"), unique_value("staging"));

    // Writes answer with metadata only.
    let (st, text) = put(&mut seen, &s, "API_TOKEN", None, &all).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(json(&text)["version"], 1);
    assert_eq!(json(&text)["environment"], "*");
    let (st, text) = put(&mut seen, &s, "API_TOKEN", Some("staging"), &staging).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, text) = put(&mut seen, &s, "API_TOKEN", None, &all).await;
    assert_eq!(
        (st, json(&text)["version"].clone()),
        (StatusCode::OK, json!(2))
    );

    let (st, text) = call(&mut seen, Method::GET, &base, None).await;
    assert_eq!(st, StatusCode::OK);
    let list = json(&text);
    assert_eq!(list["sealed"], false);
    let rows: Vec<(String, String, i64)> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["environment"].as_str().unwrap().to_owned(),
                m["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("API_TOKEN".to_owned(), "*".to_owned(), 2),
            ("API_TOKEN".to_owned(), "staging".to_owned(), 1)
        ]
    );

    // Refusals: bad names (path traversal included), unknown environments and projects,
    // oversized values, bodies without a value, no credentials.
    for (name, q, want) in [
        ("..%2F..%2Fetc", "", StatusCode::BAD_REQUEST),
        ("1ABC", "", StatusCode::BAD_REQUEST),
        ("A-B", "", StatusCode::BAD_REQUEST),
        ("OK", "?env=nope", StatusCode::BAD_REQUEST),
        ("OK", "?env=..%2Fx", StatusCode::BAD_REQUEST),
    ] {
        let (st, text) = call(
            &mut seen,
            Method::PUT,
            &format!("{base}/{name}{q}"),
            Some(json!({ "value": "abcdef" })),
        )
        .await;
        assert_eq!(st, want, "{name}{q}: {text}");
    }
    let (st, _) = call(
        &mut seen,
        Method::PUT,
        &format!("{}/api/v1/projects/nope/secrets/OK", s.url()),
        Some(json!({ "value": "abcdef" })),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        &mut seen,
        Method::PUT,
        &format!("{base}/BIG"),
        Some(json!({ "value": "x".repeat(64 * 1024 + 1) })),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, text) = call(
        &mut seen,
        Method::PUT,
        &format!("{base}/OK"),
        Some(json!({ "valeu": all })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        !text.contains(&all),
        "a refused body is not repeated: {text}"
    );
    let anonymous = reqwest::Client::new()
        .put(format!("{base}/OK"))
        .json(&json!({ "value": "abcdef" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Deleting: the environment's secret goes, the project-wide one stays.
    let (st, text) = call(
        &mut seen,
        Method::DELETE,
        &format!("{base}/API_TOKEN?env=staging"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let (st, _) = call(
        &mut seen,
        Method::DELETE,
        &format!("{base}/API_TOKEN?env=staging"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, text) = call(&mut seen, Method::GET, &base, None).await;
    assert_eq!(json(&text)["secrets"].as_array().unwrap().len(), 1);

    // Every write and delete is an event with who, where and which version; never a value.
    let evs = events(&mut seen, &s).await;
    let kinds: Vec<(&str, &str, Option<i64>)> = evs
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("secret."))
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["payload"]["environment"].as_str().unwrap(),
                e["payload"]["version"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("secret.written", "*", Some(1)),
            ("secret.written", "staging", Some(1)),
            ("secret.written", "*", Some(2)),
            ("secret.deleted", "staging", None),
        ]
    );
    assert!(
        evs.iter()
            .filter(|e| e["kind"] == "secret.written")
            .all(|e| e["actor"] == "user:admin")
    );

    for text in &seen {
        assert!(
            !text.contains(&all) && !text.contains(&staging),
            "a value came back: {text}"
        );
    }
    s.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_key_starts_sealed_until_unsealed() {
    let w = World::new();
    let value = unique_value("sealed");
    let mut seen = Vec::new();
    {
        let s = w.start(w.config()).await;
        assert!(!s.engine.vault.is_sealed());
        let (st, text) = put(&mut seen, &s, "API_TOKEN", None, &value).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        s.stop_all().await;
    }
    let right = w.data().join("secret.key");
    // A configured key file that is missing is not generated: the server starts sealed.
    {
        let missing = w.tmp.path().join("missing.key");
        let mut c = w.config();
        c.kek_file = Some(missing.clone());
        let s = w.start(c).await;
        assert!(s.engine.vault.is_sealed());
        assert!(!missing.exists());
        s.stop_all().await;
    }
    let wrong = w.tmp.path().join("other.key");
    Kek::generate().unwrap().write_new(&wrong).unwrap();

    let mut c = w.config();
    c.kek_file = Some(wrong.clone());
    let s = w.start(c).await;
    assert!(s.engine.vault.is_sealed());
    let base = format!("{}/api/v1/projects/vault/secrets", s.url());

    // Every secret operation is refused with 503 `sealed`; listing still works.
    let (st, text) = put(&mut seen, &s, "API_TOKEN", None, "another value").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(json(&text)["error"]["code"], "sealed");
    assert!(
        json(&text)["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("sluice unseal")
    );
    let (st, _) = call(
        &mut seen,
        Method::DELETE,
        &format!("{base}/API_TOKEN"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = call(
        &mut seen,
        Method::POST,
        &format!("{}/api/v1/secrets/rotate-key", s.url()),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, text) = call(&mut seen, Method::GET, &base, None).await;
    assert_eq!(
        (st, json(&text)["sealed"].clone()),
        (StatusCode::OK, json!(true))
    );
    // A step that needs the secret fails and says why.
    let run = run_pipeline(&mut seen, &s).await;
    assert_eq!(step_status(&run, "digest"), "failed", "{run}");
    let log = lines_of(&logs(&mut seen, &s, &run).await, "web/digest");
    assert!(log.iter().any(|l| l.contains("sealed")), "{log:?}");

    // The wrong key stays wrong; text that is no key is refused without being repeated.
    let (st, text) = call(
        &mut seen,
        Method::POST,
        &format!("{}/api/v1/unseal", s.url()),
        Some(json!({ "key": key_text(&wrong) })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json(&text)["error"]["code"], "wrong_key");
    let (st, text) = call(
        &mut seen,
        Method::POST,
        &format!("{}/api/v1/unseal", s.url()),
        Some(json!({ "key": "not-a-key-at-all" })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(!text.contains("not-a-key-at-all"), "{text}");
    assert!(s.engine.vault.is_sealed());

    // The right key unseals, and secret operations work again.
    let (st, text) = call(
        &mut seen,
        Method::POST,
        &format!("{}/api/v1/unseal", s.url()),
        Some(json!({ "key": key_text(&right) })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(!s.engine.vault.is_sealed());
    let (st, text) = put(&mut seen, &s, "API_TOKEN", None, &value).await;
    assert_eq!(
        (st, json(&text)["version"].clone()),
        (StatusCode::OK, json!(2)),
        "{text}"
    );
    let run = run_pipeline(&mut seen, &s).await;
    assert_eq!(step_status(&run, "digest"), "succeeded", "{run}");

    let evs = events(&mut seen, &s).await;
    let has =
        |kind: &str, actor: &str| evs.iter().any(|e| e["kind"] == kind && e["actor"] == actor);
    assert!(has("vault.sealed", "system"));
    assert!(has("vault.unsealed", "user:admin"));
    assert!(
        evs.iter()
            .any(|e| e["kind"] == "access.denied" && e["payload"]["action"] == "unseal"),
        "a wrong key is an audit entry"
    );
    for text in &seen {
        assert!(!text.contains(&value), "a value came back: {text}");
        assert!(
            !text.contains(&key_text(&right)),
            "key material came back: {text}"
        );
    }
    s.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_rewraps_every_secret() {
    let w = World::new();
    let value = unique_value("rotate");
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    let mut seen = Vec::new();
    let key_file = w.data().join("secret.key");
    let old = w.tmp.path().join("old.key");
    let (old_id, new_id) = {
        let s = w.start(w.config()).await;
        let (st, _) = put(&mut seen, &s, "API_TOKEN", None, &value).await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = put(&mut seen, &s, "API_TOKEN", Some("staging"), &value).await;
        assert_eq!(st, StatusCode::OK);
        let (st, _) = call(
            &mut seen,
            Method::DELETE,
            &format!(
                "{}/api/v1/projects/vault/secrets/API_TOKEN?env=staging",
                s.url()
            ),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        Kek::load(&key_file).unwrap().write_new(&old).unwrap();

        let (st, text) = call(
            &mut seen,
            Method::POST,
            &format!("{}/api/v1/secrets/rotate-key", s.url()),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{text}");
        let r = json(&text);
        // Deleted versions are re-wrapped too.
        assert_eq!(r["rewrapped"], 2, "{r}");
        let (old_id, new_id) = (
            r["old_key_id"].as_str().unwrap().to_owned(),
            r["new_key_id"].as_str().unwrap().to_owned(),
        );
        assert_ne!(old_id, new_id);
        assert_eq!(Kek::load(&key_file).unwrap().key_id(), new_id);
        // The old key opens nothing any more; the new one opens everything.
        let old_key = Kek::load(&old).unwrap();
        let new_key = Kek::load(&key_file).unwrap();
        let rows = s.engine.store.all_secret_rows().await.unwrap();
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert!(sluice_secrets::open(&old_key, &row.secret, &row.sealed).is_err());
            let plain = sluice_secrets::open(&new_key, &row.secret, &row.sealed).unwrap();
            assert_eq!(plain.as_slice(), value.as_bytes());
        }
        let evs = events(&mut seen, &s).await;
        let rekeyed = evs.iter().find(|e| e["kind"] == "secrets.rekeyed").unwrap();
        assert_eq!(rekeyed["payload"]["old_key_id"], old_id.as_str());
        assert_eq!(rekeyed["payload"]["new_key_id"], new_id.as_str());
        assert_eq!(rekeyed["actor"], "user:admin");
        s.stop_all().await;
        (old_id, new_id)
    };

    // Restarted with the new key file: the step sees the secret.
    {
        let s = w.start(w.config()).await;
        assert_eq!(s.engine.vault.key_id().as_deref(), Some(new_id.as_str()));
        let run = run_pipeline(&mut seen, &s).await;
        assert_eq!(step_status(&run, "digest"), "succeeded", "{run}");
        let log = lines_of(&logs(&mut seen, &s, &run).await, "web/digest");
        assert!(log.iter().any(|l| l.starts_with(&digest)), "{log:?}");
        // A key sent by the operator: the file is rewritten with it.
        let third = Kek::generate().unwrap();
        let (st, text) = call(
            &mut seen,
            Method::POST,
            &format!("{}/api/v1/secrets/rotate-key", s.url()),
            Some(json!({ "new_key": third.to_text().as_str() })),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{text}");
        assert_eq!(Kek::load(&key_file).unwrap().key_id(), third.key_id());
        assert!(!text.contains(third.to_text().as_str()));
        s.stop_all().await;
    }

    // Restarted with the old key: sealed.
    let mut c = w.config();
    c.kek_file = Some(old);
    let s = w.start(c).await;
    assert!(s.engine.vault.is_sealed());
    assert_ne!(old_id, new_id);
    s.stop_all().await;
}

async fn serving(port: u16) -> Option<String> {
    reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_secret_is_missing_fails_to_deploy_and_the_old_one_keeps_serving() {
    let w = World::new();
    let s = w.start(w.config()).await;
    let _kill = KillOnDrop::new(&s);
    let mut seen = Vec::new();
    for name in ["API_TOKEN", "TLS_KEY"] {
        let (st, text) = put(&mut seen, &s, name, Some("staging"), &unique_value(name)).await;
        assert_eq!(st, StatusCode::OK, "{text}");
    }
    let run = run_pipeline(&mut seen, &s).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let d1 = deployed(&s, 1).await;
    assert_eq!(d1.status, DeployStatus::Succeeded, "{:?}", d1.reason);
    assert_eq!(serving(w.port).await.as_deref(), Some("ok\n"));

    // The file secret goes away; the next release cannot start and is not deployed.
    let (st, _) = call(
        &mut seen,
        Method::DELETE,
        &format!(
            "{}/api/v1/projects/vault/secrets/TLS_KEY?env=staging",
            s.url()
        ),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    w.repo.commit_version("2");
    s.engine
        .sync_project("vault", "poll", "test")
        .await
        .unwrap();
    let d2 = deployed(&s, 2).await;
    assert_eq!(d2.status, DeployStatus::Failed);
    let reason = d2.reason.unwrap_or_default();
    assert!(
        reason.contains("TLS_KEY") && reason.contains("sluice secrets set"),
        "{reason}"
    );
    let t = s
        .engine
        .store
        .target("vault", "web", "staging")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.stable_version, Some(1));
    assert_eq!(serving(w.port).await.as_deref(), Some("ok\n"));
    s.stop_all().await;
}

/// Every file under `dir`, recursively, except the paths `skip` accepts.
fn files(dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if skip(&p) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&p, skip, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Where each form of the values occurs in `texts` (name, form).
fn hits(texts: &[(String, Vec<u8>)], forms: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, bytes) in texts {
        for f in forms {
            if bytes.windows(f.len()).any(|w| w == f.as_bytes()) {
                found.push(format!("{what}: {f:?}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_printed_in_every_encoding_leaks_nowhere() {
    secret_in_every_encoding_leaks_nowhere(World::new()).await;
}

/// The same with the service in a container: its secret files are mounted where the host
/// wrote them, and its output is masked on the way to the log just the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_printed_in_every_encoding_leaks_nowhere_from_a_container() {
    if let Some(rt) = Rt::docker().await {
        secret_in_every_encoding_leaks_nowhere(World::on(rt)).await;
    }
}

async fn secret_in_every_encoding_leaks_nowhere(w: World) {
    let data = w.data();
    let s = w.start(w.config()).await;
    let _kill = KillOnDrop::new(&s);
    let mut seen = Vec::new();
    let token = unique_value("token");
    // A file secret as files usually are: with a final newline.
    let tls = format!("{}\n", unique_value("tls"));
    let mut forms = sluice_secrets::encoded_forms(token.as_bytes());
    forms.extend(sluice_secrets::encoded_forms(tls.as_bytes()));
    forms.push(tls.trim_end().to_owned());
    assert!(forms.len() >= 18, "{forms:?}");

    for (name, v) in [("API_TOKEN", &token), ("TLS_KEY", &tls)] {
        let (st, text) = put(&mut seen, &s, name, Some("staging"), v).await;
        assert_eq!(st, StatusCode::OK, "{text}");
    }
    let run = run_pipeline(&mut seen, &s).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = logs(&mut seen, &s, &run).await;
    let show = lines_of(&log, "web/show");
    assert!(show.iter().any(|l| l == "step done"), "{show:?}");
    let masked = show.iter().filter(|l| l.contains("[MASKED]")).count();
    assert!(masked >= 2 * 11, "every printed form is masked: {show:?}");

    // The release is deployed with its secrets; the service prints them too.
    let d = deployed(&s, 1).await;
    assert_eq!(
        d.status,
        DeployStatus::Succeeded,
        "{:?}; instance logs: {:?}",
        d.reason,
        instance_logs(&data)
    );
    let instance = s
        .engine
        .fleet
        .runtime
        .list()
        .into_iter()
        .find(|i| i.id.starts_with("vault.web.staging.v1."))
        .unwrap()
        .id;
    let instance_log = eventually("the service to print its secrets", 30, || async {
        let r = common::http()
            .get(format!(
                "{}/api/v1/instances/{instance}/log?offset=0",
                s.url()
            ))
            .send()
            .await
            .ok()?;
        let text = r.text().await.ok()?;
        text.contains("serve done").then_some(text)
    })
    .await;
    seen.push(instance_log.clone());
    let text = json(&instance_log)["text"].as_str().unwrap().to_owned();
    assert!(text.matches("[MASKED]").count() >= 2 * 2 * 11, "{text}");
    assert_eq!(serving(w.port).await.as_deref(), Some("ok\n"));

    // Everything the API and the UI show.
    for path in [
        "/api/v1/runs?limit=100".to_owned(),
        format!("/api/v1/runs/{}", run["id"]),
        "/api/v1/releases".to_owned(),
        "/api/v1/deployments".to_owned(),
        format!("/api/v1/deployments/{}", d.id),
        "/api/v1/status".to_owned(),
        "/api/v1/projects/vault/secrets".to_owned(),
        "/api/v1/events?limit=10000".to_owned(),
        "/".to_owned(),
        format!("/runs/{}", run["id"]),
        "/events".to_owned(),
        format!("/deployments/{}", d.id),
    ] {
        let (st, _) = call(&mut seen, Method::GET, &format!("{}{path}", s.url()), None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
    }
    let evs = events(&mut seen, &s).await;
    let reads: Vec<&str> = evs
        .iter()
        .filter(|e| e["kind"] == "secret.read")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        reads.contains(&format!("run:{}", run["id"]).as_str()),
        "{reads:?}"
    );
    assert!(reads.contains(&"deploy:vault/web/staging"), "{reads:?}");
    let mut texts: Vec<(String, Vec<u8>)> = seen
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("response {i}"), t.clone().into_bytes()))
        .collect();
    texts.extend(
        evs.iter()
            .map(|e| (format!("event {}", e["seq"]), e.to_string().into_bytes())),
    );

    // Every file of the data directory, while the server runs and after it stopped,
    // including the services' own log files (their output is masked as it is written).
    // One kind of file is left out, on purpose: `instance-secrets/`, the values handed to
    // the running instances (mode 0600 files in 0700 directories, removed when the
    // instance is gone); that is their job.
    let skip = |p: &Path| {
        let rel = p.strip_prefix(&data).unwrap_or(p);
        rel.starts_with("instance-secrets")
    };
    let scan = |texts: &mut Vec<(String, Vec<u8>)>| {
        let mut all = Vec::new();
        files(&data, &skip, &mut all);
        assert!(all.iter().any(|p| p.ends_with("sluice.db")), "{all:?}");
        for p in all {
            if let Ok(bytes) = std::fs::read(&p) {
                texts.push((p.display().to_string(), bytes));
            }
        }
    };
    scan(&mut texts);
    // The allowed files exist where documented and are private.
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = data.join("instance-secrets").join(&instance);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let tls_file = std::fs::read(dir.join("TLS_KEY")).unwrap();
        assert_eq!(tls_file, tls.as_bytes());
    }
    s.stop_all().await;
    scan(&mut texts);

    let found = hits(&texts, &forms);
    assert!(
        found.is_empty(),
        "secret forms found:\n{}",
        found.join("\n")
    );
}

/// Percent-encodes a path segment. An empty, `.` or `..` segment would not reach the
/// secret routes at all (URLs drop dot segments), so those get a prefix.
fn encode(s: &str) -> String {
    let s = match s {
        "" | "." | ".." => format!("x{s}"),
        _ => s.to_owned(),
    };
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Arbitrary projects, names, environments and bodies against the secret endpoints (and
/// unseal and rotate-key with an unsealed server): never a 5xx, never a crash.
#[test]
fn arbitrary_requests_to_secret_endpoints_never_fail_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = World::new();
    let s = rt.block_on(w.start(w.config()));
    let base = s.url();
    // A connection per request: a pooled connection the server closed after an earlier
    // answer would fail the next request on the client's side.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let text = || {
        prop_oneof![
            Just("API_TOKEN".to_owned()),
            Just("vault".to_owned()),
            Just("staging".to_owned()),
            "[A-Za-z0-9_./%*-]{0,12}",
            any::<String>(),
        ]
    };
    let json_value = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!("sluice-kek-v1:AAAA")),
        proptest::collection::vec(any::<String>(), 0..3).prop_map(|v| json!(v)),
    ];
    let body = prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Some),
        proptest::collection::btree_map(
            prop_oneof![
                Just("value".to_owned()),
                Just("value_hex".to_owned()),
                Just("key".to_owned()),
                Just("new_key".to_owned()),
                any::<String>()
            ],
            json_value,
            0..4
        )
        .prop_map(|m| Some(serde_json::to_vec(&m).unwrap())),
        (0usize..70_000)
            .prop_map(|n| Some(json!({ "value": "v".repeat(n) }).to_string().into_bytes())),
    ];
    let env = prop_oneof![Just(None), text().prop_map(Some)];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..5usize, text(), text(), env, body),
            |(route, project, name, env, body)| {
                let q = env
                    .map(|e| format!("?env={}", encode(&e)))
                    .unwrap_or_default();
                let one = format!(
                    "{base}/api/v1/projects/{}/secrets/{}{q}",
                    encode(&project),
                    encode(&name)
                );
                let (method, url, reads_body) = match route {
                    0 => (Method::PUT, one, true),
                    1 => (Method::DELETE, one, false),
                    2 => (
                        Method::GET,
                        format!("{base}/api/v1/projects/{}/secrets", encode(&project)),
                        false,
                    ),
                    3 => (Method::POST, format!("{base}/api/v1/unseal"), true),
                    _ => (
                        Method::POST,
                        format!("{base}/api/v1/secrets/rotate-key"),
                        true,
                    ),
                };
                let (status, answer) = rt.block_on(async {
                    let mut req = http
                        .request(method.clone(), &url)
                        .bearer_auth(common::TOKEN);
                    // Only routes that read a body get one: a server may close the
                    // connection on a request whose body it answered without reading.
                    if let Some(b) = body.filter(|_| reads_body) {
                        req = req.header("content-type", "application/json").body(b);
                    }
                    let r = req.send().await.unwrap();
                    (r.status(), r.text().await.unwrap_or_default())
                });
                prop_assert!(
                    !status.is_server_error(),
                    "{method} {url} answered {status}: {answer}"
                );
                Ok(())
            },
        )
        .unwrap();
    // Still serving, still unsealed.
    assert!(!s.engine.vault.is_sealed());
    let ok = rt.block_on(async {
        http.get(format!("{base}/api/v1/projects/vault/secrets"))
            .bearer_auth(common::TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ok, StatusCode::OK);
    rt.block_on(s.stop_all());
}

/// The instances' log files (process and container runtimes), for failure messages.
fn instance_logs(data: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in [data.join("runtime/logs"), data.join("runtime/docker/logs")] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push((e.path(), text));
        }
    }
    out
}
