//! `sluice demo`: a real sample project deployed through sluice end to end, on the
//! embedded defaults (SQLite, local processes), in a temporary directory.
//!
//! It writes a two-service monorepo (a Python HTTP API with a lint gate and real HTTP tests
//! reporting JUnit, and a static storefront), pushes it to a bare "origin", starts an
//! embedded server and registers the project, which runs both pipelines and deploys the API
//! to staging. It promotes that exact release to production (two replicas), then pushes a
//! change to the API only: only the API's pipeline runs, and its new release goes out to
//! staging blue-green while a small load runs against it, with the failed requests counted.
//! `--once` prints a one-line summary, stops everything, cleans up and exits 0 on success.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;
use sluice_server::{Server, ServerConfig};
use sluice_store::{Run, RunFilter};

use crate::exit::{CliError, Exit};

/// `sluice demo` options.
#[derive(Args)]
pub struct DemoArgs {
    /// Run non-interactively: one summary line, clean up, exit 0 on success.
    #[arg(long)]
    once: bool,
    /// Keep the temporary directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Address for the demo server (interactive mode); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
}

const FILES: &[(&str, &str)] = &[
    ("sluice.yml", include_str!("demo_project/sluice.yml")),
    (
        "services/api/app.py",
        include_str!("demo_project/services/api/app.py"),
    ),
    (
        "services/api/test_app.py",
        include_str!("demo_project/services/api/test_app.py"),
    ),
    (
        "services/api/lint.py",
        include_str!("demo_project/services/api/lint.py"),
    ),
    (
        "services/web/build.sh",
        include_str!("demo_project/services/web/build.sh"),
    ),
    (
        "services/web/check.sh",
        include_str!("demo_project/services/web/check.sh"),
    ),
    (
        "services/web/index.html.in",
        include_str!("demo_project/services/web/index.html.in"),
    ),
    (
        "services/web/style.css",
        include_str!("demo_project/services/web/style.css"),
    ),
];

fn git(dir: &Path, args: &[&str]) -> Result<String, CliError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "sluice demo")
        .env("GIT_AUTHOR_EMAIL", "demo@sluice.invalid")
        .env("GIT_COMMITTER_NAME", "sluice demo")
        .env("GIT_COMMITTER_EMAIL", "demo@sluice.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| {
            CliError::new(Exit::Server, format!("cannot run git: {e}"))
                .hint("install git (apt-get install git)")
        })?;
    if !out.status.success() {
        return Err(CliError::new(
            Exit::Server,
            format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn say(once: bool, msg: &str) {
    if !once {
        eprintln!("{msg}");
    }
}

/// `sluice demo`.
pub async fn demo(a: DemoArgs) -> Result<i32, CliError> {
    let started = Instant::now();
    let root = std::env::temp_dir().join(format!(
        "sluice-demo-{}",
        sluice_server::engine::random_hex(4)
    ));
    let result = run_demo(&a, &root, started).await;
    if !a.keep {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        eprintln!("kept {}", root.display());
    }
    result
}

async fn run_demo(a: &DemoArgs, root: &Path, started: Instant) -> Result<i32, CliError> {
    let once = a.once;
    let origin = root.join("origin.git");
    let work = root.join("work");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&origin)?;
    git(&origin, &["init", "-q", "--bare", "-b", "main"])?;
    git(&work, &["init", "-q", "-b", "main"])?;
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    let (staging_port, production_port) = (port()?, port()?);
    for (path, text) in FILES {
        let p = work.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = text
            .replace("@STAGING_PORT@", &staging_port.to_string())
            .replace("@PRODUCTION_PORT@", &production_port.to_string());
        std::fs::write(&p, text)?;
    }
    git(&work, &["add", "-A"])?;
    git(
        &work,
        &["commit", "-q", "-m", "demo shop: api and storefront"],
    )?;
    git(
        &work,
        &["remote", "add", "origin", &origin.display().to_string()],
    )?;
    git(&work, &["push", "-q", "origin", "main"])?;
    say(
        once,
        &format!("sluice demo: sample project in {}", work.display()),
    );

    let mut config = ServerConfig::new(root.join("data"));
    config.listen = if once {
        "127.0.0.1:0"
    } else {
        a.listen.as_str()
    }
    .parse()
    .map_err(|_| {
        CliError::new(
            Exit::Usage,
            format!("--listen `{}` is not an address", a.listen),
        )
    })?;
    config.poll_interval = Duration::from_millis(500);
    // The demo's server is new, so it starts with an admin: an API token for the CLI lines
    // printed below, and the one-time setup link for the UI.
    let (admin_token, _) = sluice_auth::token::generate_token(sluice_auth::TokenKind::Api)
        .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
    config.admin_token = Some(admin_token.clone());
    let server = match Server::start(config.clone()).await {
        Ok(s) => s,
        Err(e) if !once => {
            // The default port is taken (perhaps by a real server): use a free one.
            say(once, &format!("({e}; using a free port instead)"));
            config.listen = ([127, 0, 0, 1], 0).into();
            Server::start(config)
                .await
                .map_err(|e| CliError::new(Exit::Server, e.to_string()))?
        }
        Err(e) => return Err(CliError::new(Exit::Server, e.to_string())),
    };
    let url = server.url();
    say(
        once,
        &format!(
            "sluice demo: server at {url} (store: SQLite in {})",
            root.join("data").display()
        ),
    );
    let engine = server.engine.clone();
    let staging = format!("http://127.0.0.1:{staging_port}");
    let production = format!("http://127.0.0.1:{production_port}");
    let outcome = async {
        engine
            .add_project(&origin.display().to_string(), None, Some(1), None, "demo")
            .await
            .map_err(|e| CliError::new(Exit::Server, format!("registering the project failed: {e}")))?;
        say(once, "sluice demo: pushed main; running the pipelines of api and web ...");
        let first = wait_for_runs(&server, 1, once).await?;
        say(once, "sluice demo: deploying api v1 to staging ...");
        let d1 = wait_for_deploy(&server, "staging", 1).await?;
        say(once, &format!("sluice demo: api v1 serves in staging at {staging} ({})", d1.status));

        engine
            .promote("demo-shop", "api", "staging", "production", "demo")
            .await
            .map_err(|e| CliError::new(Exit::Server, format!("promotion failed: {e}")))?;
        say(once, "sluice demo: promoting api v1 (the exact staging release) to production ...");
        let d2 = wait_for_deploy(&server, "production", 1).await?;
        say(once, &format!("sluice demo: api v1 serves in production at {production} ({}, 2 replicas)", d2.status));

        // A second push that touches only the API: monorepo detection runs only `api`, and
        // its release goes out to staging blue-green while a client keeps calling it.
        let load = Load::start(format!("{staging}/api/price?qty=3"));
        let app = work.join("services/api/app.py");
        let text = std::fs::read_to_string(&app)?.replace("UNIT_CENTS = 250", "UNIT_CENTS = 250  # price reviewed");
        std::fs::write(&app, text)?;
        git(&work, &["commit", "-q", "-am", "api: note the price review"])?;
        git(&work, &["push", "-q", "origin", "main"])?;
        say(once, "sluice demo: pushed a change to services/api only; sluice runs only api, then deploys v2 blue-green under load ...");
        let second = wait_for_runs(&server, 2, once).await?;
        let d3 = wait_for_deploy(&server, "staging", 2).await?;
        let (ok_requests, failed_requests) = load.stop().await;
        say(once, &format!(
            "sluice demo: api v2 serves in staging ({}); {ok_requests} requests during the deploy, {failed_requests} failed",
            d3.status
        ));
        Ok::<_, CliError>((first, second, vec![d1, d2, d3], ok_requests, failed_requests))
    }
    .await;
    let (first, second, deploys, ok_requests, failed_requests) = match outcome {
        Ok(x) => x,
        Err(e) => {
            server.stop_all().await;
            return Err(e);
        }
    };
    let releases = engine
        .store
        .releases(&sluice_store::ReleaseFilter {
            project: Some("demo-shop".into()),
            service: None,
            limit: 10,
        })
        .await
        .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
    let rel_text: Vec<String> = releases
        .iter()
        .rev()
        .map(|r| format!("{} v{}", r.service, r.version))
        .collect();
    let deployed = deploys
        .iter()
        .all(|d| d.status == sluice_core::DeployStatus::Succeeded);
    let ok = first.status == sluice_core::RunStatus::Succeeded
        && second.status == sluice_core::RunStatus::Succeeded
        && second.services == vec!["api".to_string()]
        && deployed
        && failed_requests == 0
        && ok_requests > 0;
    let secs = started.elapsed().as_secs_f64();
    if once {
        println!(
            "sluice demo: {} — run #{} ({}) {}, run #{} ({}) {}; releases: {}; deployed api v1 to staging and production, v2 to staging blue-green with {failed_requests} of {} requests failed; {:.1}s",
            if ok { "ok" } else { "FAILED" },
            first.id,
            first.services.join("+"),
            first.status,
            second.id,
            second.services.join("+"),
            second.status,
            rel_text.join(", "),
            ok_requests + failed_requests,
            secs
        );
        server.stop_all().await;
        return Ok(if ok { 0 } else { Exit::Failed as i32 });
    }
    println!();
    match &server.setup_token {
        Some(t) => println!(
            "  UI:        {url}/setup?token={t}  (choose the admin's password once, then {url}/)"
        ),
        None => println!("  UI:        {url}/"),
    }
    println!(
        "  CLI:       export SLUICE_TOKEN={admin_token}   (the admin's API token for this demo)"
    );
    println!(
        "  Run #{}:    {url}/runs/{}  ({}, {})",
        first.id,
        first.id,
        first.services.join(" + "),
        first.status
    );
    println!(
        "  Run #{}:    {url}/runs/{}  ({}, {})",
        second.id,
        second.id,
        second.services.join(" + "),
        second.status
    );
    println!("  Releases:  {}", rel_text.join(", "));
    println!(
        "  Staging:   curl '{staging}/api/price?qty=3'    (api v2; {failed_requests} of {} requests failed during its blue-green deploy)",
        ok_requests + failed_requests
    );
    println!("  Production: curl '{production}/api/price?qty=3' (api v1, 2 replicas)");
    println!(
        "  Try:       sluice status --server {url}   |   sluice promote api --from staging --to production --server {url}"
    );
    println!(
        "  Try:       sluice runs --server {url}   |   sluice logs {} --server {url}",
        second.id
    );
    println!(
        "             push to {} (branch main) and watch a new run start",
        work.display()
    );
    println!();
    println!("Press Ctrl-C to stop the demo.");
    crate::commands::wait_for_signal().await;
    server.stop_all().await;
    Ok(if ok { 0 } else { Exit::Failed as i32 })
}

/// A small client load: sequential keep-alive requests, counted, bounded in time.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed) = (0u64, 0u64);
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let good = matches!(
                    client.get(&url).timeout(Duration::from_secs(5)).send().await,
                    Ok(r) if r.status().is_success()
                );
                if good {
                    ok += 1
                } else {
                    failed += 1
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        });
        Load { stop, task }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap_or((0, 0))
    }
}

/// Waits until the newest deployment of `api` in `env` is of release `version` and finished.
async fn wait_for_deploy(
    server: &Server,
    env: &str,
    version: i64,
) -> Result<sluice_store::Deployment, CliError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rx = server.engine.hub.subscribe();
    loop {
        rx.borrow_and_update();
        let d = server
            .engine
            .store
            .deployments(&sluice_store::DeploymentFilter {
                project: Some("demo-shop".into()),
                service: Some("api".into()),
                env: Some(env.into()),
                running: false,
                limit: 1,
            })
            .await
            .map_err(|e| CliError::new(Exit::Server, e.to_string()))?
            .pop();
        if let Some(d) = d.filter(|d| d.version == version && d.status.is_terminal()) {
            if d.status != sluice_core::DeployStatus::Succeeded {
                return Err(CliError::new(
                    Exit::Failed,
                    format!(
                        "deploying api v{version} to {env} {}: {}",
                        d.status,
                        d.reason.unwrap_or_default()
                    ),
                ));
            }
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Failed,
                format!("deploying api v{version} to {env} did not finish within 2 minutes"),
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}

/// Waits until `n` runs exist and the newest is finished, printing step progress.
async fn wait_for_runs(server: &Server, n: usize, once: bool) -> Result<Run, CliError> {
    let store = &server.engine.store;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut printed: std::collections::HashSet<(i64, String, String)> = Default::default();
    let mut rx = server.engine.hub.subscribe();
    loop {
        rx.borrow_and_update();
        let runs = store
            .runs(&RunFilter {
                project: Some("demo-shop".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
        if let Some(newest) = runs.first().filter(|_| runs.len() >= n) {
            if !once {
                for st in store.steps(newest.id).await.unwrap_or_default() {
                    let key = (newest.id, st.name.clone(), st.status.to_string());
                    if st.status.is_terminal() && printed.insert(key) {
                        let d = crate::table::duration(st.started_ms, st.finished_ms);
                        let tests = st
                            .tests
                            .as_ref()
                            .map(|t| format!("  ({} tests passed, {} failed)", t.passed, t.failed))
                            .unwrap_or_default();
                        eprintln!(
                            "  run #{} {:<14} {:<10} {d}{tests}",
                            newest.id, st.name, st.status
                        );
                    }
                }
            }
            if newest.status.is_terminal() {
                return Ok(newest.clone());
            }
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Failed,
                "the demo pipeline did not finish within 3 minutes",
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}
