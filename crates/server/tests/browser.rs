//! The web UI in a real browser: headless Debian Chromium driven over WebDriver
//! (chromedriver + fantoccini, plain HTTP on loopback).
//!
//! Acceptance: the run page shows a step's log line that was printed *after* the page was
//! opened. The step of the test project prints `first-line`, then waits for a gate file the
//! test creates only once the page is loaded; the next line can therefore only reach the
//! page through the live SSE update. A marker put on `window` after the load proves the page
//! was not reloaded in between (the page does reload itself when the run ends; a second gate
//! holds the step open until the live line has been seen, so that reload cannot race it).
//!
//! The same browser session then checks the list pages (`/`, `/runs`, `/releases`,
//! `/events`, the project page) and the not-found page of an unknown run.
//!
//! A second test deploys a small python3 HTTP service (a pipeline's release deploys
//! automatically) and checks the deployment UI: the home page's services x environments
//! matrix shows v1 serving and healthy, the deployment page's timeline shows the strategy's
//! decisions with their figures, a pushed v2 reaches the matrix and its deployment page live
//! (v2 is held unready by a gate file until the test has the page open, so the update can
//! only arrive through the live stream), and the matrix's Rollback button brings v1 back.
//!
//! Needs `chromedriver` (`$SLUICE_TEST_CHROMEDRIVER`, else `/usr/bin/chromedriver`) and
//! `chromium` (`$SLUICE_TEST_CHROMIUM`, else `/usr/bin/chromium`); Debian:
//! `apt-get install chromium chromium-driver`. Without them the test prints a notice and
//! passes, unless `CI` is set, where it fails. Screenshots go to the test's temporary
//! directory and, when `$SLUICE_TEST_SCREENSHOTS` names a directory, are copied there too.
//!
//! Run: `cargo test -p sluice-server --test browser -- --nocapture`.

mod common;

use common::{APP, KillOnDrop, free_port, git, served};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use sluice_core::{DeployStatus, EventKind, StepStatus};
use sluice_server::Server;
use sluice_store::{Deployment, DeploymentFilter, EventFilter, LogFilter, RunFilter};

const PROJECT: &str = "ui-test";
const STEP: &str = "app/slow";
/// Printed only after the first gate opens. The step builds it with `printf` so that the
/// literal text is in no command line or config the server might show before it is printed.
const LATE_LINE: &str = "line-after-open";
/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
/// How often the DOM and the store are polled.
const TICK: Duration = Duration::from_millis(100);

type TestResult<T = ()> = Result<T, String>;

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The browser tools, or why they are missing.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let driver = std::env::var_os("SLUICE_TEST_CHROMEDRIVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    let browser = std::env::var_os("SLUICE_TEST_CHROMIUM")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    for (what, p) in [("chromedriver", &driver), ("chromium", &browser)] {
        if !p.is_file() {
            return Err(format!(
                "{what} not found at {} (set SLUICE_TEST_CHROMEDRIVER / SLUICE_TEST_CHROMIUM, \
                 or `apt-get install chromium chromium-driver`)",
                p.display()
            ));
        }
    }
    Ok((driver, browser))
}

/// The browser tools; without them the test is skipped with a notice (None), unless `CI` is
/// set: then it fails.
fn tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match tools() {
        Ok(t) => Some(t),
        Err(why) if ci() => panic!("CI is set but {test} cannot run: {why}"),
        Err(why) => {
            eprintln!("NOTICE: skipping {test}: {why}");
            None
        }
    }
}

/// A repository whose one step prints `first-line`, waits for `gate1`, prints the late
/// line, waits for `gate2`, prints `done`.
fn make_repo(dir: &Path, gate1: &Path, gate2: &Path) {
    std::fs::create_dir_all(dir).expect("create repo dir");
    let yml = format!(
        r#"project: {PROJECT}
environments:
  staging:
    branch: main
services:
  app:
    steps:
      slow:
        timeout: 2m
        env:
          GATE_FILE: "{g1}"
          GATE2_FILE: "{g2}"
        run: |
          echo first-line
          while [ ! -f "$GATE_FILE" ]; do sleep 0.05; done
          printf '%s-%s\n' line-after open
          while [ ! -f "$GATE2_FILE" ]; do sleep 0.05; done
          echo done
"#,
        g1 = gate1.display(),
        g2 = gate2.display(),
    );
    std::fs::write(dir.join("sluice.yml"), yml).expect("write sluice.yml");
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "sluice.yml"]);
    git(dir, &["commit", "-q", "-m", "pipeline for the UI test"]);
}

/// chromedriver in its own process group; the whole group (driver and the browsers it
/// started) is killed on drop, so a failing test leaves no Chromium behind.
struct Chromedriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Chromedriver {
    fn start(path: &Path, log: PathBuf) -> TestResult<Chromedriver> {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let mut d = Chromedriver { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(d);
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!(
                    "chromedriver exited at start ({st}); log:\n{}",
                    d.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver did not listen on port {port} within 15 s; log:\n{}",
                    d.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or(&text).to_string()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

async fn connect(driver: &Chromedriver, browser: &Path, profile: &Path) -> TestResult<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = tokio::time::timeout(
        Duration::from_secs(30),
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url()),
    )
    .await
    .map_err(|_| {
        format!(
            "no WebDriver session within 30 s; chromedriver log:\n{}",
            driver.log_tail()
        )
    })?
    .map_err(|e| {
        format!(
            "cannot open a WebDriver session: {e}; chromedriver log:\n{}",
            driver.log_tail()
        )
    })?;
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        ))
        .await
        .map_err(|e| format!("cannot set WebDriver timeouts: {e}"))?;
    Ok(client)
}

/// Runs a script in the page; `arguments[0..]` are `args`.
async fn js(c: &Client, script: &str, args: Vec<Value>) -> TestResult<Value> {
    c.execute(script, args)
        .await
        .map_err(|e| format!("script failed: {e}"))
}

/// An excerpt of the page source for failure messages: the `<main>` element if there is one.
async fn excerpt(c: &Client) -> String {
    let src = match c.source().await {
        Ok(s) => s,
        Err(e) => return format!("(page source unavailable: {e})"),
    };
    let from = src.find("<main").unwrap_or(0);
    let body: String = src[from..].chars().take(4000).collect();
    let url = c
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    format!("page {url}, source excerpt:\n{body}")
}

async fn fail<T>(c: &Client, msg: impl std::fmt::Display) -> TestResult<T> {
    Err(format!("{msg}\n{}", excerpt(c).await))
}

/// Polls `probe` every [`TICK`] until it returns `Some`, up to [`WAIT`]. Script errors
/// (the page may be reloading) count as "not yet".
async fn wait_until<T, F, Fut>(c: &Client, what: &str, mut probe: F) -> TestResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResult<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    let mut last_err = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            let err = last_err
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return fail(
                c,
                format!("timed out after {WAIT:?} waiting for {what}{err}"),
            )
            .await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The text of the log panel of `step`, or None if the page has none.
async fn log_text(c: &Client, step: &str) -> TestResult<Option<String>> {
    let v = js(
        c,
        "var p=document.querySelector('pre.log[data-step=\"'+CSS.escape(arguments[0])+'\"]');\
         return p?p.textContent:null;",
        vec![json!(step)],
    )
    .await?;
    Ok(v.as_str().map(str::to_string))
}

/// The text of the status badge in the log panel's header of `step`.
async fn step_badge(c: &Client, step: &str) -> TestResult<Option<String>> {
    let v = js(
        c,
        "var b=document.querySelector('.step-status[data-step=\"'+CSS.escape(arguments[0])+'\"] .badge');\
         return b?b.textContent.trim():null;",
        vec![json!(step)],
    )
    .await?;
    Ok(v.as_str().map(str::to_string))
}

/// Signs in as the first admin the way a person does on a new server: opens the setup link
/// with the server's one-time setup token, chooses a password, and lands signed in. Before
/// that, a page redirects to the sign-in page.
async fn sign_in(c: &Client, server: &Server) -> TestResult {
    let base = server.url();
    let (_, text) = open(c, &base, "/").await?;
    if !text.contains("Sign in") {
        return fail(c, "an anonymous visitor was not sent to the sign-in page").await;
    }
    let token = server
        .setup_token
        .clone()
        .ok_or("the first start printed no setup token")?;
    open(c, &base, &format!("/setup?token={token}")).await?;
    let field = c
        .find(Locator::Css("input[name=password]"))
        .await
        .map_err(|e| format!("no password field on the setup page: {e}"))?;
    field
        .send_keys("correct horse battery staple")
        .await
        .map_err(|e| format!("cannot type the password: {e}"))?;
    click(c, "form[action='/setup'] button[type=submit]").await?;
    wait_until(c, "the signed-in overview", || async {
        let v = js(
            c,
            "var w=document.querySelector('header .who');return w?w.textContent:null;",
            vec![],
        )
        .await?;
        Ok((v.as_str() == Some("admin")).then_some(()))
    })
    .await
}

/// Opens `path` and returns (HTTP status of the document, body text).
async fn open(c: &Client, base: &str, path: &str) -> TestResult<(u64, String)> {
    c.goto(&format!("{base}{path}"))
        .await
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let v = js(
        c,
        "var n=performance.getEntriesByType('navigation')[0];\
         return [n?n.responseStatus:null, document.body?document.body.innerText:''];",
        vec![],
    )
    .await?;
    let status = v[0].as_u64().unwrap_or(0);
    Ok((status, v[1].as_str().unwrap_or_default().to_string()))
}

/// Saves a screenshot into `dir` (and into `$SLUICE_TEST_SCREENSHOTS` if set).
async fn screenshot(c: &Client, dir: &Path, name: &str) -> TestResult<PathBuf> {
    let png = c
        .screenshot()
        .await
        .map_err(|e| format!("screenshot failed: {e}"))?;
    if !png.starts_with(b"\x89PNG") {
        return Err(format!(
            "screenshot {name} is not a PNG ({} bytes)",
            png.len()
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, &png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if let Some(extra) = std::env::var_os("SLUICE_TEST_SCREENSHOTS").filter(|v| !v.is_empty()) {
        let extra = PathBuf::from(extra);
        let _ = std::fs::create_dir_all(&extra);
        let _ = std::fs::write(extra.join(name), &png);
    }
    Ok(path)
}

struct Ctx<'a> {
    server: &'a Server,
    client: &'a Client,
    tmp: &'a Path,
    gate1: &'a Path,
    gate2: &'a Path,
}

/// Waits (in the store) until the run exists and its step is running and has printed its
/// first line.
async fn wait_for_step_running(server: &Server) -> TestResult<i64> {
    let deadline = Instant::now() + WAIT;
    let store = &server.engine.store;
    let mut state = String::from("no run yet");
    loop {
        let runs = store
            .runs(&RunFilter {
                project: Some(PROJECT.into()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("store: {e}"))?;
        if let Some(run) = runs.first() {
            let steps = store
                .steps(run.id)
                .await
                .map_err(|e| format!("store: {e}"))?;
            let step = steps.iter().find(|s| s.name == STEP);
            let lines = store
                .logs(&LogFilter {
                    run_id: run.id,
                    step: Some(STEP.into()),
                    after: 0,
                    limit: 100,
                })
                .await
                .map_err(|e| format!("store: {e}"))?;
            let printed = lines.iter().any(|l| l.line == "first-line");
            let running = step.is_some_and(|s| s.status == StepStatus::Running);
            if printed && running {
                return Ok(run.id);
            }
            state = format!(
                "run #{} is {}, step {STEP} is {:?}, log lines: {:?}",
                run.id,
                run.status,
                step.map(|s| s.status),
                lines.iter().map(|l| l.line.as_str()).collect::<Vec<_>>()
            );
            if run.status.is_terminal() {
                return Err(format!(
                    "the run ended before the browser could watch it: {state}"
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the step did not start within {WAIT:?}: {state}"));
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The acceptance scenario: a line printed after the page was opened appears live.
async fn live_log(cx: &Ctx<'_>, base: &str, run_id: i64) -> TestResult {
    let c = cx.client;
    let (status, text) = open(c, base, &format!("/runs/{run_id}")).await?;
    if status != 200 {
        return fail(c, format!("/runs/{run_id} answered {status}")).await;
    }
    if !text.contains(&format!("Run #{run_id}")) {
        return fail(c, "the run page has no `Run #id` heading").await;
    }
    // Anything that reloads the page from now on clears this marker.
    js(c, "window.__sluiceNoReload = true; return true;", vec![]).await?;
    let log = log_text(c, STEP).await?;
    let Some(log) = log else {
        return fail(c, format!("the run page has no log panel for {STEP}")).await;
    };
    if !log.contains("first-line") {
        return fail(
            c,
            format!("the log panel of {STEP} lacks `first-line`: {log:?}"),
        )
        .await;
    }
    if log.contains(LATE_LINE) || text.contains(LATE_LINE) {
        return fail(
            c,
            format!("`{LATE_LINE}` is on the page before it was printed"),
        )
        .await;
    }
    match step_badge(c, STEP).await? {
        Some(b) if b == "running" => {}
        other => {
            return fail(
                c,
                format!("step badge should read `running`, reads {other:?}"),
            )
            .await;
        }
    }
    let sub = js(
        c,
        "var t=document.querySelector('g.node[data-step=\"'+CSS.escape(arguments[0])+'\"] text.sub');\
         return t?t.textContent.trim():null;",
        vec![json!(STEP)],
    )
    .await?;
    if sub.as_str() != Some("running") {
        return fail(
            c,
            format!("the DAG node of {STEP} should say `running`, says {sub}"),
        )
        .await;
    }
    screenshot(c, cx.tmp, "run-live-before.png").await?;

    // Let the step go on: it prints the late line and waits for the second gate.
    std::fs::write(cx.gate1, b"go").map_err(|e| format!("cannot create the gate file: {e}"))?;
    let seen = wait_until(
        c,
        &format!("`{LATE_LINE}` in the log panel of {STEP}"),
        || async {
            let v = js(
            c,
            "var p=document.querySelector('pre.log[data-step=\"'+CSS.escape(arguments[0])+'\"]');\
             return [p?p.textContent:'', window.__sluiceNoReload===true];",
            vec![json!(STEP)],
        )
        .await?;
            let text = v[0].as_str().unwrap_or_default().to_string();
            Ok(text
                .contains(LATE_LINE)
                .then(|| (text, v[1].as_bool() == Some(true))))
        },
    )
    .await?;
    let (log, same_page) = seen;
    if !same_page {
        return fail(
            c,
            format!("`{LATE_LINE}` appeared only after the page reloaded, not live"),
        )
        .await;
    }
    let first = log.find("first-line");
    let late = log.find(LATE_LINE);
    if first.is_none() || first > late {
        return fail(c, format!("log lines out of order: {log:?}")).await;
    }
    if log.matches(LATE_LINE).count() != 1 || log.matches("first-line").count() != 1 {
        return fail(c, format!("a log line shows twice: {log:?}")).await;
    }
    screenshot(c, cx.tmp, "run-live-after.png").await?;

    // Let the run finish. The page updates its badges live and reloads itself at the end;
    // either way it must come to show the final state (a script error while it reloads
    // counts as "not yet").
    std::fs::write(cx.gate2, b"go").map_err(|e| format!("cannot create the gate file: {e}"))?;
    let run = cx
        .server
        .engine
        .wait_run(run_id, WAIT)
        .await
        .map_err(|e| format!("store: {e}"))?;
    if run.status.as_str() != "succeeded" {
        return fail(
            c,
            format!("run #{run_id} ended {}, not succeeded", run.status),
        )
        .await;
    }
    wait_until(c, "the page to show the finished run", || async {
        let v = js(
            c,
            "var q=function(s){return document.querySelector(s)};var st=CSS.escape(arguments[0]);\
             var rb=q('#run-status .badge'),sb=q('.step-status[data-step=\"'+st+'\"] .badge'),\
             p=q('pre.log[data-step=\"'+st+'\"]'),r=q('g.node[data-step=\"'+st+'\"] rect');\
             return {run:rb?rb.className+'|'+rb.textContent.trim():null,\
                     step:sb?sb.className+'|'+sb.textContent.trim():null,\
                     log:p?p.textContent:null,\
                     node:r?r.getAttribute('class'):null,\
                     width:r?r.getBoundingClientRect().width:0,\
                     body:document.body?document.body.innerText:''};",
            vec![json!(STEP)],
        )
        .await?;
        let log = v["log"].as_str().unwrap_or_default();
        let once = ["first-line", LATE_LINE, "done"]
            .iter()
            .all(|w| log.matches(w).count() == 1);
        // Nodes are 190 units wide and drawn 1:1; a smaller box means the SVG is squeezed.
        let width = v["width"].as_f64().unwrap_or(0.0);
        let done = v["run"].as_str() == Some("badge s-succeeded|succeeded")
            && v["step"].as_str() == Some("badge s-succeeded|succeeded")
            && v["node"].as_str() == Some("f-succeeded")
            && (185.0..=195.0).contains(&width)
            && once
            && v["body"].as_str().unwrap_or_default().contains("app v1");
        if done {
            Ok(Some(()))
        } else {
            let mut v = v;
            v["body"] = json!("…");
            Err(format!("not final yet: {v}"))
        }
    })
    .await?;
    let shot = screenshot(c, cx.tmp, "run-finished.png").await?;
    eprintln!("browser test: screenshot {}", shot.display());
    Ok(())
}

/// The list pages and the not-found page.
async fn other_pages(cx: &Ctx<'_>, base: &str, run_id: i64) -> TestResult {
    let c = cx.client;
    let run_ref = format!("#{run_id}");
    let subject = format!("run/{run_id}");
    let pages: [(&str, Vec<&str>); 5] = [
        ("/", vec!["Overview", PROJECT, &run_ref]),
        ("/runs", vec!["Runs", PROJECT, &run_ref, "succeeded"]),
        ("/releases", vec!["Releases", PROJECT, "app v1"]),
        ("/events", vec!["Event log", "run.finished", &subject]),
        (
            "/projects/ui-test",
            vec!["Project ui-test", "main", &run_ref],
        ),
    ];
    for (path, wants) in pages {
        let (status, text) = open(c, base, path).await?;
        if status != 200 {
            return fail(c, format!("{path} answered {status}, not 200")).await;
        }
        for w in wants {
            if !text.contains(w) {
                return fail(c, format!("{path} does not show `{w}`")).await;
            }
        }
        let name = match path.trim_matches('/').replace('/', "-") {
            n if n.is_empty() => "overview".to_string(),
            n => n,
        };
        screenshot(c, cx.tmp, &format!("page-{name}.png")).await?;
    }
    let (status, text) = open(c, base, "/runs/999999").await?;
    if status != 404 {
        return fail(c, format!("/runs/999999 answered {status}, not 404")).await;
    }
    if !text.contains("run `999999` not found") {
        return fail(c, "/runs/999999 does not say the run was not found").await;
    }
    Ok(())
}

async fn scenario(cx: &Ctx<'_>) -> TestResult {
    let base = cx.server.url();
    sign_in(cx.client, cx.server).await?;
    let t = Instant::now();
    let run_id = wait_for_step_running(cx.server).await?;
    eprintln!(
        "browser test: run #{run_id} running after {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    live_log(cx, &base, run_id).await?;
    eprintln!("browser test: live log checked in {:?}", t.elapsed());
    let t = Instant::now();
    other_pages(cx, &base, run_id).await?;
    eprintln!("browser test: other pages checked in {:?}", t.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_shows_log_lines_printed_after_it_was_opened() {
    let Some((driver_path, browser)) = tools_or_skip("the browser test") else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (repo, data, profile) = (
        tmp.path().join("repo"),
        tmp.path().join("data"),
        tmp.path().join("chrome"),
    );
    let (gate1, gate2) = (tmp.path().join("gate1"), tmp.path().join("gate2"));
    make_repo(&repo, &gate1, &gate2);

    // The browser starts while the server and the run start.
    let driver = Chromedriver::start(&driver_path, tmp.path().join("chromedriver.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let client = connect(&driver, &browser, &profile);

    let mut config = common::config(&data);
    config.poll_interval = Duration::from_millis(200);
    let server = Server::start(config).await.expect("server starts");
    server
        .engine
        .add_project(
            repo.to_str().expect("utf-8 path"),
            None,
            Some(1),
            None,
            "test",
        )
        .await
        .expect("project registers");

    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            server.stop().await;
            panic!("{e}");
        }
    };
    eprintln!(
        "browser test: browser and server up after {:?}",
        started.elapsed()
    );
    let cx = Ctx {
        server: &server,
        client: &client,
        tmp: tmp.path(),
        gate1: &gate1,
        gate2: &gate2,
    };
    let result = match tokio::time::timeout(Duration::from_secs(120), scenario(&cx)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the browser test took over 120 s\n{}",
            excerpt(&client).await
        )),
    };

    // Clean up whatever happened: release the step, end the session, stop the server.
    let _ = std::fs::write(&gate1, b"go");
    let _ = std::fs::write(&gate2, b"go");
    let _ = client.close().await;
    drop(driver);
    server.stop().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("browser test: passed in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Deployments

const DEPLOY_PROJECT: &str = "ui-deploy";

/// A repository whose service `web` deploys blue-green to staging (branch `main`) and, by
/// promotion only, to production (branch `release`, never pushed).
fn make_deploy_repo(dir: &Path, staging: u16, production: u16) {
    std::fs::create_dir_all(dir).expect("create repo dir");
    let yml = format!(
        r#"project: {DEPLOY_PROJECT}
environments:
  staging:
    branch: main
  production:
    branch: release
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py version.txt gate.txt out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 2s
      progress_deadline: 60s
      max_restarts: 1
      strategy: {{ blue_green: {{ keep_warm: 1s }} }}
      environments:
        staging: {{ expose: "127.0.0.1:{staging}" }}
        production: {{ expose: "127.0.0.1:{production}" }}
"#
    );
    std::fs::write(dir.join("sluice.yml"), yml).expect("write sluice.yml");
    std::fs::write(dir.join("app.py"), APP).expect("write app.py");
    git(dir, &["init", "-q", "-b", "main"]);
    commit_version(dir, "1", "");
}

fn commit_version(dir: &Path, version: &str, gate: &str) {
    std::fs::write(dir.join("version.txt"), version).expect("write version.txt");
    std::fs::write(dir.join("gate.txt"), gate).expect("write gate.txt");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", &format!("version {version}")]);
}

/// Polls the store until the newest deployment matches `pred`.
async fn wait_deployment(
    server: &Server,
    what: &str,
    pred: impl Fn(&Deployment) -> bool,
) -> TestResult<Deployment> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = server
            .engine
            .store
            .deployments(&DeploymentFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("store: {e}"))?
            .pop();
        if let Some(d) = d.as_ref().filter(|d| pred(d)) {
            return Ok(d.clone());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}; newest: {d:?}"));
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What the matrix cell of web/staging shows.
async fn cell(c: &Client) -> TestResult<Value> {
    js(
        c,
        "var q=document.querySelector('[data-target=\"ui-deploy/web/staging\"]');if(!q)return null;\
         var h=q.querySelector('.health'),a=q.querySelector('a[data-deployment]'),tr=q.querySelector('.traffic');\
         return {serving:q.dataset.serving,desired:q.dataset.desired,health:h?h.className+'|'+h.textContent.trim():'',\
                 deployment:a?a.dataset.deployment:null,traffic:tr?tr.dataset.traffic:'',text:q.innerText,\
                 same:window.__sluiceNoReload===true};",
        vec![],
    )
    .await
}

async fn click(c: &Client, css: &str) -> TestResult {
    // The live refresh may swap the element between finding and clicking it: retry.
    let mut last = String::new();
    for _ in 0..20 {
        match c.find(Locator::Css(css)).await {
            Ok(el) => match el.click().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(TICK).await;
    }
    fail(c, format!("cannot click `{css}`: {last}")).await
}

struct DeployCtx<'a> {
    server: &'a Server,
    client: &'a Client,
    tmp: &'a Path,
    repo: &'a Path,
    gate: &'a Path,
    service_url: String,
}

async fn deploy_scenario(cx: &DeployCtx<'_>) -> TestResult {
    let (c, base) = (cx.client, cx.server.url());
    sign_in(c, cx.server).await?;
    let t = Instant::now();
    let d1 = wait_deployment(cx.server, "the first deploy of v1", |d| {
        d.version == 1 && d.status.is_terminal()
    })
    .await?;
    if d1.status != DeployStatus::Succeeded {
        return Err(format!("v1 did not deploy: {d1:?}"));
    }
    eprintln!("deploy UI test: v1 deployed after {:?}", t.elapsed());

    // The matrix: v1 serves, healthy, all traffic; a promotion to production is offered.
    let t = Instant::now();
    let (status, text) = open(c, &base, "/").await?;
    if status != 200 || !text.contains("Services") {
        return fail(c, format!("/ answered {status} without the matrix")).await;
    }
    wait_until(c, "the matrix to show v1 serving and healthy", || async {
        let v = cell(c).await?;
        let ok = v["serving"] == "1"
            && v["desired"] == "1"
            && v["health"].as_str().unwrap_or_default() == "health ok|1/1 ready"
            && v["traffic"] == "v1 100%";
        Ok(ok.then_some(()))
    })
    .await?;
    let buttons = js(
        c,
        "var q=document.querySelector('[data-target=\"ui-deploy/web/staging\"]');\
         return Array.from(q.querySelectorAll('button')).map(function(b){return b.textContent.trim()});",
        vec![],
    )
    .await?;
    if buttons != json!(["Promote to production"]) {
        return fail(c, format!("the staging cell's buttons are {buttons}")).await;
    }
    screenshot(c, cx.tmp, "deploy-matrix-v1.png").await?;

    // The history.
    let (status, text) = open(c, &base, "/deployments").await?;
    if status != 200 || !text.contains(&format!("#{}", d1.id)) || !text.contains("succeeded") {
        return fail(
            c,
            format!("/deployments answered {status} without #{}", d1.id),
        )
        .await;
    }
    screenshot(c, cx.tmp, "deploy-history.png").await?;

    // The deployment page: decisions with figures, the instance, the finish.
    let (status, _) = open(c, &base, &format!("/deployments/{}", d1.id)).await?;
    if status != 200 {
        return fail(c, format!("/deployments/{} answered {status}", d1.id)).await;
    }
    let v = js(
        c,
        "var rows=Array.from(document.querySelectorAll('#timeline tr'));\
         return {kinds:rows.map(function(r){return r.dataset.kind}),\
                 figures:rows.filter(function(r){return r.dataset.kind==='deploy.decision'})\
                   .map(function(r){return r.querySelector('.figs').textContent.trim()}),\
                 instances:Array.from(document.querySelectorAll('tr[data-instance]')).map(function(r){return r.innerText}),\
                 status:document.getElementById('dep-status').dataset.status};",
        vec![],
    )
    .await?;
    let kinds: Vec<&str> = v["kinds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let figures: Vec<&str> = v["figures"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if kinds.first() != Some(&"deploy.started")
        || kinds.last() != Some(&"deploy.finished")
        || figures.is_empty()
        || !figures.iter().any(|f| f.contains("candidate_ready=1"))
        || v["status"] != "succeeded"
    {
        return fail(c, format!("the timeline lacks decisions with figures: {v}")).await;
    }
    let instances = v["instances"].as_array().cloned().unwrap_or_default();
    if instances.len() != 1 || !instances[0].as_str().unwrap_or_default().contains("ready") {
        return fail(c, format!("the instances table is off: {v}")).await;
    }
    screenshot(c, cx.tmp, "deploy-page-v1.png").await?;
    eprintln!("deploy UI test: v1 pages checked in {:?}", t.elapsed());

    // v2, held unready by the gate: the open home page must show it coming, live.
    let t = Instant::now();
    open(c, &base, "/").await?;
    js(c, "window.__sluiceNoReload = true; return true;", vec![]).await?;
    commit_version(
        cx.repo,
        "2",
        cx.gate.to_str().ok_or("the gate path is not UTF-8")?,
    );
    cx.server
        .engine
        .sync_project(DEPLOY_PROJECT, "poll", "test")
        .await
        .map_err(|e| format!("sync: {e}"))?;
    let d2 = wait_until(
        c,
        "the matrix to show the deployment of v2, live",
        || async {
            let v = cell(c).await?;
            if v["same"] != true {
                return Err(format!("the page reloaded: {v}"));
            }
            let id = v["deployment"].as_str().and_then(|s| s.parse::<i64>().ok());
            Ok(id.filter(|_| v["desired"] == "2" && v["serving"] == "1"))
        },
    )
    .await?;
    screenshot(c, cx.tmp, "deploy-matrix-deploying.png").await?;
    click(
        c,
        &format!("[data-target=\"ui-deploy/web/staging\"] a[data-deployment=\"{d2}\"]"),
    )
    .await?;
    wait_until(c, "the page of the running deployment", || async {
        let v = js(
            c,
            "var s=document.getElementById('dep-status');return s?s.dataset.status:null;",
            vec![],
        )
        .await?;
        Ok((v == "running").then_some(()))
    })
    .await?;
    if !c
        .current_url()
        .await
        .map_err(|e| e.to_string())?
        .path()
        .ends_with(&format!("/deployments/{d2}"))
    {
        return fail(c, "the matrix link does not lead to the deployment").await;
    }
    js(c, "window.__sluiceNoReload = true; return true;", vec![]).await?;
    let rows_before = js(
        c,
        "return document.querySelectorAll('#timeline tr[data-seq]').length;",
        vec![],
    )
    .await?;
    screenshot(c, cx.tmp, "deploy-page-running.png").await?;
    std::fs::write(cx.gate, b"go").map_err(|e| format!("cannot create the gate file: {e}"))?;
    wait_until(c, "the deployment page to show v2 done, live", || async {
        let v = js(
            c,
            "var s=document.getElementById('dep-status');\
             var rows=Array.from(document.querySelectorAll('#timeline tr[data-seq]'));\
             return {status:s?s.dataset.status:null,same:window.__sluiceNoReload===true,\
                     kinds:rows.map(function(r){return r.dataset.kind}),\
                     switched:rows.filter(function(r){return r.innerText.indexOf('bluegreen.switched')>=0})\
                       .map(function(r){return r.querySelector('.figs').textContent}),\
                     traffic:(document.querySelector('#dep-target .traffic')||{dataset:{}}).dataset.traffic};",
            vec![],
        )
        .await?;
        if v["same"] != true {
            return Err(format!("the page reloaded: {v}"));
        }
        let kinds = v["kinds"].as_array().map(Vec::len).unwrap_or(0);
        let done = v["status"] == "succeeded"
            && kinds > rows_before.as_u64().unwrap_or(0) as usize
            && v["kinds"].as_array().and_then(|a| a.last()) == Some(&json!("deploy.finished"))
            && v["switched"]
                .as_array()
                .is_some_and(|a| a.iter().any(|f| f.as_str().unwrap_or_default().contains("keep_warm_ms=1000")))
            && v["traffic"] == "v2 100%";
        Ok(done.then_some(()))
    })
    .await?;
    screenshot(c, cx.tmp, "deploy-page-v2.png").await?;
    // Rows appended live read exactly like the rows the server renders.
    let rows = "return Array.from(document.querySelectorAll('#timeline tr[data-seq]'))\
                .map(function(r){return r.dataset.seq+'|'+r.innerText});";
    let live_rows = js(c, rows, vec![]).await?;
    c.refresh().await.map_err(|e| format!("reload: {e}"))?;
    let served_rows = js(c, rows, vec![]).await?;
    if live_rows != served_rows {
        return fail(
            c,
            format!("live rows differ from served rows:\n{live_rows}\n{served_rows}"),
        )
        .await;
    }
    if served(&common::http(), &cx.service_url).await.as_deref() != Some("version=2\n") {
        return Err("v2 does not serve after its deployment succeeded".into());
    }
    eprintln!("deploy UI test: v2 followed live in {:?}", t.elapsed());

    // Roll back with the matrix's button: v1 serves again.
    let t = Instant::now();
    open(c, &base, "/").await?;
    wait_until(c, "the matrix to show v2 serving", || async {
        let v = cell(c).await?;
        Ok((v["serving"] == "2" && v["deployment"].is_null()).then_some(()))
    })
    .await?;
    click(
        c,
        "[data-target=\"ui-deploy/web/staging\"] form[action=\"/ui/rollback\"] button",
    )
    .await?;
    wait_until(c, "v1 to serve again after the rollback", || async {
        let v = cell(c).await?;
        let page = v["serving"] == "1" && v["desired"] == "1" && v["deployment"].is_null();
        let v1 = served(&common::http(), &cx.service_url).await.as_deref() == Some("version=1\n");
        Ok((page && v1).then_some(()))
    })
    .await?;
    let path = c.current_url().await.map_err(|e| e.to_string())?;
    if path.path() != "/" {
        return fail(
            c,
            format!("the rollback did not return to the home page: {path}"),
        )
        .await;
    }
    screenshot(c, cx.tmp, "deploy-matrix-rolled-back.png").await?;
    let d3 = wait_deployment(cx.server, "the rollback deployment", |d| {
        d.version == 1 && d.from_version == Some(2) && d.status.is_terminal()
    })
    .await?;
    // The request is the UI's (the deployment itself is the controller's).
    let desired = cx
        .server
        .engine
        .store
        .events(&EventFilter {
            kinds: vec![EventKind::TargetDesired],
            ..Default::default()
        })
        .await
        .map_err(|e| format!("store: {e}"))?;
    let last = desired.last().ok_or("no target.desired event")?;
    // The audit entry names the signed-in person, where the click came from, and its request.
    if last.actor != "user:admin"
        || last.source.is_none()
        || last.request_id.is_none()
        || last.payload["trigger"] != "rollback"
        || last.payload["version"] != 1
    {
        return Err(format!(
            "the rollback was not recorded as the admin's click: {last:?} (deployment {d3:?})"
        ));
    }
    eprintln!("deploy UI test: rollback by button in {:?}", t.elapsed());

    // A refused button gets an error page with the engine's message and a 4xx status.
    let r = common::http()
        .post(format!("{base}/ui/rollback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("project={DEPLOY_PROJECT}&service=nope&env=staging"))
        .send()
        .await
        .map_err(|e| format!("post: {e}"))?;
    let code = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    if code != 404 || !body.contains("Could not roll back nope in staging") {
        return Err(format!("a bad rollback answered {code}: {body}"));
    }
    let r = common::http()
        .post(format!("{base}/ui/deployments/{}/abort", d3.id))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("back=%2F")
        .send()
        .await
        .map_err(|e| format!("post: {e}"))?;
    let code = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    if code != 409 || !body.contains("has already finished") {
        return Err(format!(
            "aborting a finished deployment answered {code}: {body}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pages_follow_a_deploy_live_and_roll_back_by_button() {
    let Some((driver_path, browser)) = tools_or_skip("the deployment browser test") else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (repo, data, profile, gate) = (
        tmp.path().join("repo"),
        tmp.path().join("data"),
        tmp.path().join("chrome"),
        tmp.path().join("gate-v2"),
    );
    let staging = free_port();
    make_deploy_repo(&repo, staging, free_port());

    let driver = Chromedriver::start(&driver_path, tmp.path().join("chromedriver.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let client = connect(&driver, &browser, &profile);
    let server = Server::start(common::config(&data))
        .await
        .expect("server starts");
    let _kill = KillOnDrop::new(&server);
    server
        .engine
        .add_project(
            repo.to_str().expect("utf-8 path"),
            None,
            Some(0),
            None,
            "test",
        )
        .await
        .expect("project registers");
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            server.stop_all().await;
            panic!("{e}");
        }
    };
    let cx = DeployCtx {
        server: &server,
        client: &client,
        tmp: tmp.path(),
        repo: &repo,
        gate: &gate,
        service_url: format!("http://127.0.0.1:{staging}/"),
    };
    let result = match tokio::time::timeout(Duration::from_secs(150), deploy_scenario(&cx)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the deployment browser test took over 150 s\n{}",
            excerpt(&client).await
        )),
    };
    // On failure, say where the deployments were (the page may be the one lagging).
    let result = match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let deps = server
                .engine
                .store
                .deployments(&DeploymentFilter::default())
                .await
                .map(|ds| {
                    ds.iter()
                        .map(|d| {
                            format!(
                                "#{} v{} {} {} {:?}",
                                d.id, d.version, d.status, d.phase, d.reason
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|e| e.to_string());
            Err(format!("{e}\ndeployments in the store: {deps}"))
        }
    };
    let _ = std::fs::write(&gate, b"go");
    let _ = client.close().await;
    drop(driver);
    // Stops the instances too: none may outlive the test.
    server.stop_all().await;
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "deploy UI test: passed in {:?} (screenshots in {})",
        started.elapsed(),
        std::env::var("SLUICE_TEST_SCREENSHOTS").unwrap_or_else(|_| "the temp dir".into())
    );
}
