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
//! Needs `chromedriver` (`$SLUICE_TEST_CHROMEDRIVER`, else `/usr/bin/chromedriver`) and
//! `chromium` (`$SLUICE_TEST_CHROMIUM`, else `/usr/bin/chromium`); Debian:
//! `apt-get install chromium chromium-driver`. Without them the test prints a notice and
//! passes, unless `CI` is set, where it fails. Screenshots go to the test's temporary
//! directory and, when `$SLUICE_TEST_SCREENSHOTS` names a directory, are copied there too.
//!
//! Run: `cargo test -p sluice-server --test browser -- --nocapture`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use sluice_core::StepStatus;
use sluice_server::{Server, ServerConfig};
use sluice_store::{LogFilter, RunFilter};

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

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
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
    let (driver_path, browser) = match tools() {
        Ok(t) => t,
        Err(why) if ci() => panic!("CI is set but the browser test cannot run: {why}"),
        Err(why) => {
            eprintln!("NOTICE: skipping the browser test: {why}");
            return;
        }
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

    let mut config = ServerConfig::new(&data);
    config.listen = "127.0.0.1:0".parse().expect("address");
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
