//! `sluice demo`: a real sample project deployed through sluice end to end, on the
//! embedded defaults (SQLite, local processes), in a temporary directory.
//!
//! It writes a two-service monorepo (a Python HTTP API with a lint gate and real HTTP tests
//! reporting JUnit, and a static storefront), pushes it to a bare "origin", starts an
//! embedded server and registers the project, which runs both pipelines and deploys the API
//! to staging. It promotes that exact release to production (two replicas), then pushes a
//! change to the API only: only the API's pipeline runs, and its new release goes out to
//! staging blue-green while a small load runs against it, with the failed requests counted.
//! That release is promoted to production, where every release is a canary judged on its
//! error rate under load.
//!
//! Then the demo ships a faulty release: v3 prices in the environment's currency, which its
//! tests (USD) and staging (no currency set) never exercise, but production sells in EUR,
//! for which v3 has no rate, so it answers 500. Production's canary analysis fails and sluice
//! rolls it back by itself; the server opens an incident naming v3 as the suspected cause,
//! with the deployment and its rollback on the timeline, and notifies the project's webhook
//! channel: a local sink (a tiny HTTP server run by the demo itself on 127.0.0.1) that
//! records every notification. Finally the DORA metrics of production are computed: three
//! deploys, one of them failed, and how long production took to recover.
//!
//! `--once` prints a one-line summary, stops everything, cleans up and exits 0 when every
//! step above did what it should.

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use sluice_core::{DeployStatus, RunStatus};
use sluice_server::{Server, ServerConfig};
use sluice_store::{Deployment, IncidentFilter, IncidentRow, Run, RunFilter};
use tokio::sync::watch;

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

/// The project's name in the demo's `sluice.yml`.
const PROJECT: &str = "demo-shop";

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

/// The v2 change: a comment only, so the release is as good as v1.
const V2_APP: &[(&str, &str)] = &[("UNIT_CENTS = 250\n", "UNIT_CENTS = 250  # price reviewed\n")];

/// The faulty v3: prices in the currency of the environment (`CURRENCY`). Its new test and
/// staging use the default, USD; production sells in EUR, which has no rate, so every price
/// request there raises `KeyError` and answers 500.
const V3_APP: &[(&str, &str)] = &[
    (
        "HERE = os.path.dirname(os.path.abspath(__file__))\n",
        "HERE = os.path.dirname(os.path.abspath(__file__))\n\
         # Exchange rates from US cents, by the currency an environment sells in ($CURRENCY).\n\
         RATES = {\"USD\": 1.0}\n\
         \n\
         \n\
         def in_local_currency(cents):\n\
         \x20   \"\"\"cents (USD) in the currency of this environment.\"\"\"\n\
         \x20   return round(cents * RATES[os.environ.get(\"CURRENCY\", \"USD\")])\n",
    ),
    (
        "                total = price(qty)\n",
        "                total = in_local_currency(price(qty))\n",
    ),
];
/// v3's new test: it passes, because tests run without `CURRENCY` (so in USD).
const V3_TEST: &[(&str, &str)] = &[(
    "    def test_negative_is_refused(self):\n",
    "    def test_local_currency_defaults_to_usd(self):\n\
     \x20       self.assertEqual(app.in_local_currency(250), 250)\n\
     \n\
     \x20   def test_negative_is_refused(self):\n",
)];

/// How far back the demo's DORA window reaches.
const DORA_WINDOW_MS: i64 = 24 * 3600 * 1000;

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

fn server_error(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Server, e.to_string())
}

/// Applies `(anchor, replacement)` edits to a file of the sample project.
fn edit(path: &Path, edits: &[(&str, &str)]) -> Result<(), CliError> {
    let mut text = std::fs::read_to_string(path)?;
    for (anchor, replacement) in edits {
        if !text.contains(anchor) {
            return Err(CliError::new(
                Exit::Server,
                format!(
                    "the demo cannot change {}: `{}` is not in it",
                    path.display(),
                    anchor.trim()
                ),
            ));
        }
        text = text.replacen(anchor, replacement, 1);
    }
    std::fs::write(path, text)?;
    Ok(())
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

/// Everything the demo did, for the summary.
struct Story {
    runs: [Run; 3],
    /// The deploys that must succeed: api v1 to staging and production, v2 to staging and
    /// production, v3 to staging.
    good: Vec<Deployment>,
    /// Requests against staging during v2's blue-green deploy.
    staging_load: Tally,
    /// Requests against production during v2's canary.
    canary_load: Tally,
    faulty: Faulty,
}

/// The faulty release and what sluice made of it.
struct Faulty {
    /// Its production deployment (rolled back, if all went as it should).
    deployment: Deployment,
    /// Requests against production during its canary.
    load: Tally,
    /// Production answered every request after the rollback, and its stable release is v2.
    restored: bool,
    /// The incident sluice opened.
    incident: IncidentRow,
    /// The incident's timeline shows the faulty deployment starting and being rolled back.
    on_timeline: bool,
    /// The sink holds the incident's "triggered" notification and sluice recorded the
    /// delivery as successful on the timeline.
    delivered: bool,
    /// Production's DORA metrics over the last day.
    dora: sluice_dora::Metrics,
}

impl Faulty {
    /// The suspected cause's version, if the incident names the faulty deployment.
    fn suspected_version(&self) -> Option<i64> {
        let s = self.incident.suspected_release.as_ref()?;
        if s["deployment"].as_i64() == Some(self.deployment.id) {
            s["version"].as_i64()
        } else {
            None
        }
    }
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
    let sink = Sink::start().await?;
    for (path, text) in FILES {
        let p = work.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = text
            .replace("@STAGING_PORT@", &staging_port.to_string())
            .replace("@PRODUCTION_PORT@", &production_port.to_string())
            .replace("@SINK_URL@", &sink.url);
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
    let (admin_token, _) =
        sluice_auth::token::generate_token(sluice_auth::TokenKind::Api).map_err(server_error)?;
    config.admin_token = Some(admin_token.clone());
    let server = match Server::start(config.clone()).await {
        Ok(s) => s,
        Err(e) if !once => {
            // The default port is taken (perhaps by a real server): use a free one.
            say(once, &format!("({e}; using a free port instead)"));
            config.listen = ([127, 0, 0, 1], 0).into();
            Server::start(config).await.map_err(server_error)?
        }
        Err(e) => return Err(server_error(e)),
    };
    let url = server.url();
    say(
        once,
        &format!(
            "sluice demo: server at {url} (store: SQLite in {}); notifications go to the local sink at {}",
            root.join("data").display(),
            sink.url
        ),
    );
    let engine = server.engine.clone();
    let staging = format!("http://127.0.0.1:{staging_port}");
    let production = format!("http://127.0.0.1:{production_port}");
    let story = match tell(&server, &sink, &origin, &work, &staging, &production, once).await {
        Ok(s) => s,
        Err(e) => {
            server.stop_all().await;
            return Err(e);
        }
    };
    let releases = engine
        .store
        .releases(&sluice_store::ReleaseFilter {
            project: Some(PROJECT.into()),
            service: None,
            limit: 10,
        })
        .await
        .map_err(server_error)?;
    let rel_text: Vec<String> = releases
        .iter()
        .rev()
        .map(|r| format!("{} v{}", r.service, r.version))
        .collect();
    let [first, second, third] = &story.runs;
    let f = &story.faulty;
    let suspected = f.suspected_version();
    let cfr = f.dora.change_failure_rate.unwrap_or(0.0);
    let recovery = f
        .dora
        .recovery
        .median_ms
        .map_or_else(|| "none".to_string(), sluice_dora::human_duration);
    let ok = first.status == RunStatus::Succeeded
        && [second, third]
            .iter()
            .all(|r| r.status == RunStatus::Succeeded && r.services == ["api"])
        && story
            .good
            .iter()
            .all(|d| d.status == DeployStatus::Succeeded)
        && story.staging_load.ok > 0
        && story.staging_load.failed == 0
        && story.canary_load.ok > 0
        && story.canary_load.failed == 0
        && f.deployment.status == DeployStatus::RolledBack
        && f.restored
        && suspected == Some(f.deployment.version)
        && f.on_timeline
        && f.delivered
        && f.dora.failed_deploys >= 1
        && cfr > 0.0
        && f.dora.recovery.samples >= 1;
    let runs_text: Vec<String> = story
        .runs
        .iter()
        .map(|r| format!("run #{} ({}) {}", r.id, r.services.join("+"), r.status))
        .collect();
    let faulty_text = format!(
        "v{} to production was {} by its canary analysis ({} of {} requests failed, production {})",
        f.deployment.version,
        if f.deployment.status == DeployStatus::RolledBack {
            "rolled back".to_string()
        } else {
            format!("NOT rolled back ({})", f.deployment.status)
        },
        f.load.failed,
        f.load.total(),
        if f.restored {
            "serves v2 again"
        } else {
            "did NOT recover"
        }
    );
    let incident_text = format!(
        "incident #{} opened (suspected cause api {}), notification {}",
        f.incident.id,
        suspected.map_or_else(|| "not the faulty release".to_string(), |v| format!("v{v}")),
        if f.delivered {
            "delivered to the local sink"
        } else {
            "NOT delivered"
        }
    );
    let dora_text = format!(
        "{} deploys, change failure rate {:.0}%, recovery {recovery}",
        f.dora.deployments,
        cfr * 100.0
    );
    let secs = started.elapsed().as_secs_f64();
    if once {
        println!(
            "sluice demo: {} — {}; releases: {}; deployed api v1 to staging and production, v2 to staging blue-green ({} of {} requests failed{}) and to production by canary ({} of {} failed{}); {faulty_text}; {incident_text}; DORA: {dora_text}; {secs:.1}s",
            if ok { "ok" } else { "FAILED" },
            runs_text.join(", "),
            rel_text.join(", "),
            story.staging_load.failed,
            story.staging_load.total(),
            story.staging_load.first(),
            story.canary_load.failed,
            story.canary_load.total(),
            story.canary_load.first(),
        );
        server.stop_all().await;
        return Ok(if ok { 0 } else { Exit::Failed as i32 });
    }
    println!();
    match &server.setup_token {
        Some(t) => println!(
            "  UI:         {url}/setup?token={t}  (choose the admin's password once, then {url}/)"
        ),
        None => println!("  UI:         {url}/"),
    }
    println!(
        "  CLI:        export SLUICE_TOKEN={admin_token}   (the admin's API token for this demo)"
    );
    for r in &story.runs {
        println!(
            "  Run #{}:     {url}/runs/{}  ({}, {})",
            r.id,
            r.id,
            r.services.join(" + "),
            r.status
        );
    }
    println!("  Releases:   {}", rel_text.join(", "));
    println!(
        "  Staging:    curl '{staging}/api/price?qty=3'    (api v3; {} of {} requests failed during v2's blue-green deploy)",
        story.staging_load.failed,
        story.staging_load.total()
    );
    println!(
        "  Production: curl '{production}/api/price?qty=3' (api v2, 2 replicas; {faulty_text})"
    );
    println!(
        "  Incident:   {url}/incidents/{}  ({}: {incident_text})",
        f.incident.id, f.incident.severity
    );
    println!("  DORA:       {url}/dora  ({dora_text})");
    println!(
        "  Sink:       curl {}/  (what sluice posted to the webhook channel; received so far: {})",
        sink.url,
        sink.count()
    );
    println!(
        "  Try:        sluice incidents --server {url}   |   sluice incident {} --server {url}   |   sluice dora --server {url}",
        f.incident.id
    );
    println!(
        "  Try:        sluice ack {id} --server {url}   |   sluice resolve {id} --server {url}   (the postmortem then reaches the sink)",
        id = f.incident.id
    );
    println!(
        "  Try:        sluice status --server {url}   |   sluice runs --server {url}   |   sluice logs {} --server {url}",
        third.id
    );
    println!(
        "              push to {} (branch main) and watch a new run start",
        work.display()
    );
    println!();
    println!("Press Ctrl-C to stop the demo.");
    crate::commands::wait_for_signal().await;
    server.stop_all().await;
    Ok(if ok { 0 } else { Exit::Failed as i32 })
}

/// The demo's story, from registering the project to the DORA metrics.
async fn tell(
    server: &Server,
    sink: &Sink,
    origin: &Path,
    work: &Path,
    staging: &str,
    production: &str,
    once: bool,
) -> Result<Story, CliError> {
    let engine = &server.engine;
    engine
        .add_project(&origin.display().to_string(), None, Some(1), None, "demo")
        .await
        .map_err(|e| CliError::new(Exit::Server, format!("registering the project failed: {e}")))?;
    say(
        once,
        "sluice demo: pushed main; running the pipelines of api and web ...",
    );
    let first = wait_for_runs(server, 1, once).await?;
    say(once, "sluice demo: deploying api v1 to staging ...");
    let d1 = deployed(server, "staging", 1).await?;
    say(
        once,
        &format!(
            "sluice demo: api v1 serves in staging at {staging} ({})",
            d1.status
        ),
    );

    promote(server, once, 1).await?;
    let d2 = deployed(server, "production", 1).await?;
    say(
        once,
        &format!(
            "sluice demo: api v1 serves in production at {production} ({}, 2 replicas)",
            d2.status
        ),
    );

    // A second push that touches only the API: monorepo detection runs only `api`, and
    // its release goes out to staging blue-green while a client keeps calling it.
    let load = Load::start(format!("{staging}/api/price?qty=3"));
    edit(&work.join("services/api/app.py"), V2_APP)?;
    git(work, &["commit", "-q", "-am", "api: note the price review"])?;
    git(work, &["push", "-q", "origin", "main"])?;
    say(
        once,
        "sluice demo: pushed a change to services/api only; sluice runs only api, then deploys v2 blue-green under load ...",
    );
    let second = wait_for_runs(server, 2, once).await?;
    let d3 = deployed(server, "staging", 2).await?;
    let staging_load = load.stop().await;
    say(
        once,
        &format!(
            "sluice demo: api v2 serves in staging ({}); {} requests during the deploy, {} failed{}",
            d3.status,
            staging_load.total(),
            staging_load.failed,
            staging_load.first()
        ),
    );

    // Production tries every release as a canary on half of its traffic, judged on the
    // error rate: with a client calling production, v2 passes.
    let load = Load::start(format!("{production}/api/price?qty=3"));
    promote(server, once, 2).await?;
    let d4 = deployed(server, "production", 2).await;
    let canary_load = load.stop().await;
    let d4 = d4?;
    say(
        once,
        &format!(
            "sluice demo: api v2 serves in production ({}); {} requests during its canary, {} failed{}",
            d4.status,
            canary_load.total(),
            canary_load.failed,
            canary_load.first()
        ),
    );

    // The faulty release: its tests and staging pass, production's currency breaks it.
    edit(&work.join("services/api/app.py"), V3_APP)?;
    edit(&work.join("services/api/test_app.py"), V3_TEST)?;
    git(
        work,
        &["commit", "-q", "-am", "api: prices in the local currency"],
    )?;
    git(work, &["push", "-q", "origin", "main"])?;
    say(
        once,
        "sluice demo: pushed api v3 (prices in the environment's currency; its tests and staging use USD, production sells in EUR, for which v3 has no rate) ...",
    );
    let third = wait_for_runs(server, 3, once).await?;
    let d5 = deployed(server, "staging", 3).await?;
    say(
        once,
        &format!(
            "sluice demo: api v3 serves in staging ({}): staging sets no currency, so the bug does not show there",
            d5.status
        ),
    );
    let load = Load::start(format!("{production}/api/price?qty=3"));
    promote(server, once, 3).await?;
    let faulty = wait_for_deploy(server, "production", 3).await;
    let faulty_load = load.stop().await;
    let faulty = faulty?;
    say(
        once,
        &format!(
            "sluice demo: api v3 in production {}: {}; {} of {} requests failed during its canary",
            faulty.status.as_str().replace('_', " "),
            faulty.reason.as_deref().unwrap_or("no reason given"),
            faulty_load.failed,
            faulty_load.total()
        ),
    );
    let restored = restored(server, production).await?;

    // sluice raises the incident itself; the demo only watches for it.
    let incident = wait_for_incident(server, &faulty).await?;
    say(
        once,
        &format!(
            "sluice demo: incident #{} opened: {}",
            incident.id, incident.title
        ),
    );
    let (on_timeline, delivered) = wait_for_record(server, sink, incident.id, faulty.id).await?;
    say(
        once,
        &format!(
            "sluice demo: the incident's timeline {} the deployment and its rollback; the notification {} the sink ({}/notifications)",
            if on_timeline { "shows" } else { "LACKS" },
            if delivered {
                "reached"
            } else {
                "did NOT reach"
            },
            sink.url
        ),
    );
    let deploys = engine
        .prod_deploys(&[PROJECT.to_string()])
        .await
        .map_err(server_error)?;
    let now = sluice_server::engine::now_ms();
    let dora = sluice_dora::compute(&deploys, now - DORA_WINDOW_MS, now + 1, now);
    Ok(Story {
        runs: [first, second, third],
        good: vec![d1, d2, d3, d4, d5],
        staging_load,
        canary_load,
        faulty: Faulty {
            deployment: faulty,
            load: faulty_load,
            restored,
            incident,
            on_timeline,
            delivered,
            dora,
        },
    })
}

/// Promotes what serves in staging (api `version`) to production.
async fn promote(server: &Server, once: bool, version: i64) -> Result<(), CliError> {
    server
        .engine
        .promote(PROJECT, "api", "staging", "production", "demo")
        .await
        .map_err(|e| CliError::new(Exit::Server, format!("promotion failed: {e}")))?;
    say(
        once,
        &format!(
            "sluice demo: promoting api v{version} (the exact staging release) to production{} ...",
            if version == 1 {
                ""
            } else {
                " as a canary under load"
            }
        ),
    );
    Ok(())
}

/// Whether production answers every one of a few requests after the rollback, and its stable
/// release is v2 again.
async fn restored(server: &Server, production: &str) -> Result<bool, CliError> {
    let stable = server
        .engine
        .store
        .target(PROJECT, "api", "production")
        .await
        .map_err(server_error)?
        .and_then(|t| t.stable_version);
    let client = reqwest::Client::new();
    let url = format!("{production}/api/price?qty=3");
    let mut answered = 0;
    for _ in 0..20 {
        let good = matches!(
            client.get(&url).timeout(Duration::from_secs(5)).send().await,
            Ok(r) if r.status().is_success()
        );
        answered += usize::from(good);
    }
    Ok(stable == Some(2) && answered == 20)
}

/// Waits for the incident sluice opens for the faulty deployment.
async fn wait_for_incident(server: &Server, faulty: &Deployment) -> Result<IncidentRow, CliError> {
    let engine = server.engine.clone();
    let since = faulty.created_ms;
    wait_until(
        server,
        Duration::from_secs(30),
        "the incident of the rolled-back release did not open",
        move || {
            let engine = engine.clone();
            async move {
                let incidents = engine
                    .store
                    .incidents(&IncidentFilter {
                        projects: Some(vec![PROJECT.into()]),
                        service: Some("api".into()),
                        since_ms: Some(since),
                        limit: 10,
                        ..IncidentFilter::default()
                    })
                    .await
                    .map_err(server_error)?;
                Ok(incidents.into_iter().min_by_key(|i| i.id))
            }
        },
    )
    .await
}

/// Waits until the incident's notification is delivered to the sink; answers whether the
/// timeline shows the faulty deployment starting and rolled back, and whether the delivery
/// both reached the sink and is recorded on the timeline as successful.
async fn wait_for_record(
    server: &Server,
    sink: &Sink,
    incident: i64,
    deployment: i64,
) -> Result<(bool, bool), CliError> {
    let engine = server.engine.clone();
    let received = sink.received.clone();
    wait_until(
        server,
        Duration::from_secs(30),
        "the incident's notification was not delivered to the sink",
        move || {
            let engine = engine.clone();
            let in_sink = received.borrow().iter().any(|r| {
                r.path == "/notifications"
                    && r.body["incident_id"].as_i64() == Some(incident)
                    && r.body["event"] == "triggered"
            });
            async move {
                let record = sluice_server::engine::incidents::record::read(&engine, incident)
                    .await
                    .map_err(server_error)?;
                let has = |kind: &str| {
                    record.timeline.iter().any(|e| {
                        e.kind == kind && e.data["deployment"].as_i64() == Some(deployment)
                    })
                };
                let on_timeline = has("deploy") && has("rollback");
                let recorded = record.timeline.iter().any(|e| {
                    e.kind == "delivery" && e.data["ok"] == true && e.data["event"] == "triggered"
                });
                Ok((in_sink && recorded).then_some((on_timeline, true)))
            }
        },
    )
    .await
}

/// Calls `check` whenever the server's state changes (and at least twice a second) until it
/// yields a value, for at most `limit`; `what` says what did not happen otherwise.
async fn wait_until<T, F, Fut>(
    server: &Server,
    limit: Duration,
    what: &str,
    mut check: F,
) -> Result<T, CliError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, CliError>>,
{
    let deadline = Instant::now() + limit;
    let mut rx = server.engine.hub.subscribe();
    loop {
        rx.borrow_and_update();
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Failed,
                format!("{what} within {}s", limit.as_secs()),
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}

/// What a [`Load`] saw.
#[derive(Default)]
struct Tally {
    /// Requests answered 2xx.
    ok: u64,
    /// Requests that failed: another status, or no answer.
    failed: u64,
    /// What went wrong with the first failed request, and when (since the load started).
    first_failure: Option<String>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.ok + self.failed
    }

    /// ` (first: ...)` when a request failed.
    fn first(&self) -> String {
        self.first_failure
            .as_deref()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    }
}

/// A small client load: sequential keep-alive requests, counted, bounded in time. Dropping
/// it stops the client.
struct Load {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut tally = Tally::default();
            let started = Instant::now();
            let deadline = started + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let failure = match client
                    .get(&url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("answered {}", r.status())),
                    Err(e) => Some(format!("{e:#}")),
                };
                match failure {
                    None => tally.ok += 1,
                    Some(f) => {
                        tally.failed += 1;
                        if tally.first_failure.is_none() {
                            let at = started.elapsed().as_secs_f64();
                            tally.first_failure = Some(format!("{f} after {at:.2}s"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tally
        });
        Load {
            stop,
            task: Some(task),
        }
    }

    /// Stops the client; answers what it saw.
    async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(t) => t.await.unwrap_or_default(),
            None => Tally::default(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request the sink received.
#[derive(Clone, serde::Serialize)]
struct Received {
    /// The request path: `/notifications` (the webhook channel) or `/postmortems` (the
    /// ticket webhook).
    path: String,
    /// The `X-Sluice-Event` header, e.g. `incident.triggered`.
    event: Option<String>,
    /// The JSON body (a string when it was not JSON).
    body: serde_json::Value,
}

/// The demo's local webhook receiver: an HTTP server on 127.0.0.1 that records the body of
/// every POST and lists what it received on `GET /`.
struct Sink {
    url: String,
    received: watch::Receiver<Vec<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> Result<Sink, CliError> {
        use axum::extract::State;
        use axum::http::{HeaderMap, Uri};
        use axum::routing::post;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| {
                CliError::new(
                    Exit::Server,
                    format!("cannot start the demo's notification sink on 127.0.0.1: {e}"),
                )
            })?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, received) = watch::channel(Vec::new());
        let tx = Arc::new(tx);
        let record = |State(tx): State<Arc<watch::Sender<Vec<Received>>>>,
                      uri: Uri,
                      headers: HeaderMap,
                      body: axum::body::Bytes| async move {
            let event = headers
                .get("x-sluice-event")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
            });
            let path = uri.path().to_owned();
            tx.send_modify(|v| v.push(Received { path, event, body }));
            axum::Json(serde_json::json!({"ok": true}))
        };
        let list = |State(tx): State<Arc<watch::Sender<Vec<Received>>>>| async move {
            axum::Json(tx.borrow().clone())
        };
        let app = axum::Router::new()
            .route("/", axum::routing::get(list))
            .route("/{*path}", post(record))
            .with_state(tx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink {
            url,
            received,
            task,
        })
    }

    /// How many requests it received.
    fn count(&self) -> usize {
        self.received.borrow().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for the deployment of `api` release `version` in `env` and requires it to succeed.
async fn deployed(server: &Server, env: &str, version: i64) -> Result<Deployment, CliError> {
    let d = wait_for_deploy(server, env, version).await?;
    if d.status != DeployStatus::Succeeded {
        return Err(CliError::new(
            Exit::Failed,
            format!(
                "deploying api v{version} to {env} {}: {}",
                d.status,
                d.reason.unwrap_or_default()
            ),
        ));
    }
    Ok(d)
}

/// Waits until the newest deployment of `api` in `env` is of release `version` and finished.
async fn wait_for_deploy(server: &Server, env: &str, version: i64) -> Result<Deployment, CliError> {
    let engine = server.engine.clone();
    let env_name = env.to_owned();
    wait_until(
        server,
        Duration::from_secs(120),
        &format!("deploying api v{version} to {env} did not finish"),
        move || {
            let engine = engine.clone();
            let env = env_name.clone();
            async move {
                let d = engine
                    .store
                    .deployments(&sluice_store::DeploymentFilter {
                        project: Some(PROJECT.into()),
                        service: Some("api".into()),
                        env: Some(env),
                        running: false,
                        limit: 1,
                    })
                    .await
                    .map_err(server_error)?
                    .pop();
                Ok(d.filter(|d| d.version == version && d.status.is_terminal()))
            }
        },
    )
    .await
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
                project: Some(PROJECT.into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .map_err(server_error)?;
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
