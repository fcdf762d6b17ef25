//! The subcommands: `server`, `validate`, and the client commands that talk to a server.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_server::{Server, ServerConfig};

use crate::client::{Client, enc, query};
use crate::exit::{CliError, Exit};
use crate::table::{self, cell, duration, print_json, short};
use crate::{ClientOpts, Output};

/// `sluice server` options. Each flag can also come from the environment.
#[derive(Args)]
pub struct ServerArgs {
    /// Data directory: SQLite database, mirrors, workspaces, artifacts, caches.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = ".sluice")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<String>,
    /// Database URL (postgres://...); default SQLite in the data directory.
    #[arg(long, env = "SLUICE_DATABASE")]
    database: Option<String>,
    /// Configuration file (YAML); default DATA_DIR/server.yml when it exists.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Default poll interval for new projects, e.g. 5s.
    #[arg(long)]
    poll_interval: Option<String>,
    /// Most steps running at once.
    #[arg(long)]
    max_parallel_steps: Option<usize>,
    /// The image containers of `deploy.runtime: docker` services run their release artifact
    /// in when they have no image of their own (needs /bin/sh and what `start` uses).
    #[arg(long, env = "SLUICE_BASE_IMAGE")]
    base_image: Option<String>,
    /// The Docker Engine's unix socket; default DOCKER_HOST (unix://PATH) or
    /// /var/run/docker.sock.
    #[arg(long, env = "SLUICE_DOCKER_SOCKET")]
    docker_socket: Option<PathBuf>,
    /// The advisory database `scan` steps read (fill it with `sluice advisories import`);
    /// default DATA_DIR/advisories.
    #[arg(long, env = "SLUICE_ADVISORY_DB")]
    advisory_db: Option<PathBuf>,
    /// On the very first start only: an API token for the first admin, for automation
    /// (make one with `sluice tokens generate`). Read from the environment only, so it does
    /// not show in the process list.
    #[arg(skip = std::env::var("SLUICE_ADMIN_TOKEN").ok())]
    admin_token: Option<String>,
}

/// Builds and validates the configuration before anything binds.
fn server_config(a: &ServerArgs) -> Result<ServerConfig, CliError> {
    let usage = |m: String| CliError::new(Exit::Usage, m);
    let mut c = ServerConfig::new(&a.data_dir);
    let file = match &a.config {
        Some(f) => Some(f.clone()),
        None => Some(a.data_dir.join("server.yml")).filter(|p| p.exists()),
    };
    if let Some(f) = file {
        c.apply_file(&f).map_err(|e| usage(e.to_string()))?;
    }
    if let Some(l) = &a.listen {
        c.listen = l.parse().map_err(|_| {
            usage(format!(
                "--listen `{l}` is not an address like 127.0.0.1:7878"
            ))
        })?;
    }
    if let Some(d) = &a.database {
        c.database = Some(d.clone());
    }
    if let Some(p) = &a.poll_interval {
        c.poll_interval = sluice_server::config::parse_duration(p)
            .map_err(|e| usage(format!("--poll-interval: {e}")))?;
    }
    if let Some(n) = a.max_parallel_steps {
        c.max_parallel_steps = n;
    }
    if let Some(i) = a.base_image.as_ref().filter(|i| !i.trim().is_empty()) {
        c.base_image = Some(i.trim().to_owned());
    }
    if let Some(s) = &a.docker_socket {
        c.docker_socket = Some(s.clone());
    }
    if let Some(d) = &a.advisory_db {
        c.advisory_db = Some(d.clone());
    }
    c.admin_token = a.admin_token.clone().filter(|t| !t.is_empty());
    // Exposed services are served by a proxy daemon of this same binary, so they keep
    // answering while the server restarts.
    c.proxy_bin = std::env::current_exe().ok();
    c.validate().map_err(|e| usage(e.to_string()))?;
    Ok(c)
}

/// `sluice server`.
pub async fn server(a: ServerArgs) -> Result<i32, CliError> {
    let config = server_config(&a)?;
    let db = config.database_url();
    let server = Server::start(config)
        .await
        .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
    eprintln!(
        "sluice {} listening on {} (store: {})",
        env!("CARGO_PKG_VERSION"),
        server.url(),
        redact(&db)
    );
    if let Some(t) = &server.setup_token {
        eprintln!(
            "sluice: no one can sign in yet: the admin user `admin` has no password.\n\
             sluice: set it within 24 hours: open {}/setup?token={t}\n\
             sluice: or run: sluice login --server {} --setup-token {t}",
            server.engine.base_url(),
            server.engine.base_url()
        );
    }
    wait_for_signal().await;
    eprintln!("sluice: shutting down");
    server.stop().await;
    Ok(0)
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `sluice validate`.
pub fn validate(path: &Path) -> Result<i32, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            Exit::NotFound,
            format!("cannot read {}: {e}", path.display()),
        )
        .hint(
            "run it in the repository root, or give the path: `sluice validate path/to/sluice.yml`",
        )
    })?;
    let name = path.display().to_string();
    let config = match sluice_spec::parse(&text, &name) {
        Ok(c) => c,
        Err(d) => {
            for diag in &d.0 {
                eprintln!("{diag}");
            }
            eprintln!(
                "{} problem{} found",
                d.0.len(),
                if d.0.len() == 1 { "" } else { "s" }
            );
            return Ok(Exit::Failed as i32);
        }
    };
    // Path filters are checked against the files git tracks next to the file, if any.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let files = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "--full-name", "-z"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            o.stdout
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        });
    if let Some(files) = files {
        let diags = sluice_spec::check_paths(&text, &name, &config, &files);
        if !diags.is_empty() {
            for diag in &diags {
                eprintln!("{diag}");
            }
            return Ok(Exit::Failed as i32);
        }
    }
    let steps: usize = config.services.iter().map(|s| s.steps.len()).sum();
    println!(
        "{name} is valid: project {}, {} environment(s), {} service(s), {steps} step(s)",
        config.project,
        config.environments.len(),
        config.services.len()
    );
    Ok(0)
}

/// `sluice project ...`.
#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Register a repository (local path or git URL) and run its pipelines.
    Add {
        /// Local path or git URL.
        source: String,
        /// Project name (default: `project` in its sluice.yml).
        #[arg(long)]
        name: Option<String>,
        /// Poll interval in seconds (0 turns polling off; webhooks still work).
        #[arg(long)]
        poll_interval: Option<i64>,
        /// Webhook secret (default: a random one, printed once).
        #[arg(long, env = "SLUICE_WEBHOOK_SECRET")]
        webhook_secret: Option<String>,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List projects.
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Remove a project (its runs, releases and events stay).
    Remove {
        /// Project name.
        name: String,
        #[command(flatten)]
        c: ClientOpts,
    },
}

/// `sluice project`.
pub async fn project(cmd: ProjectCmd) -> Result<i32, CliError> {
    match cmd {
        ProjectCmd::Add {
            source,
            name,
            poll_interval,
            webhook_secret,
            c,
        } => {
            let client = Client::new(&c.server);
            let v: Value = client
                .post("/projects", &json!({ "source": source, "name": name, "poll_interval_s": poll_interval, "webhook_secret": webhook_secret }))
                .await?;
            if c.output == Output::Json {
                print_json(&v);
            } else {
                println!(
                    "added project {} ({})",
                    v["project"]["name"].as_str().unwrap_or("?"),
                    v["project"]["source"].as_str().unwrap_or("?")
                );
                println!(
                    "webhook secret: {}",
                    v["webhook_secret"].as_str().unwrap_or("?")
                );
                if let Some(hooks) = v["webhooks"].as_object() {
                    for (k, u) in hooks {
                        println!("  {k:<9} {}", u.as_str().unwrap_or(""));
                    }
                }
            }
            Ok(0)
        }
        ProjectCmd::List { c } => {
            let v: Vec<Value> = Client::new(&c.server).get("/projects").await?;
            if c.output == Output::Json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .iter()
                    .map(|p| {
                        vec![
                            cell(&p["name"]),
                            cell(&p["source"]),
                            match p["poll_interval_s"].as_i64() {
                                Some(0) | None => "off".into(),
                                Some(n) => format!("{n}s"),
                            },
                        ]
                    })
                    .collect();
                table::print(&["NAME", "SOURCE", "POLL"], &rows);
            }
            Ok(0)
        }
        ProjectCmd::Remove { name, c } => {
            Client::new(&c.server)
                .delete(&format!("/projects/{}", enc(&name)))
                .await?;
            if c.output == Output::Text {
                println!("removed project {name}");
            }
            Ok(0)
        }
    }
}

/// `sluice run` options.
#[derive(Args)]
pub struct RunArgs {
    /// Project name.
    project: String,
    /// Environment (default: the one whose branch is --branch, or the first).
    #[arg(long)]
    env: Option<String>,
    /// Branch (default: the environment's branch).
    #[arg(long)]
    branch: Option<String>,
    /// Commit (default: the branch head).
    #[arg(long)]
    commit: Option<String>,
    /// Only this service (repeatable).
    #[arg(long = "service")]
    services: Vec<String>,
    /// Only run services that changed since their last release.
    #[arg(long)]
    changed_only: bool,
    /// Return as soon as the run is queued.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds (the run goes on).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice run`: exits 0 if the run succeeded, 1 if it failed or was cancelled.
pub async fn run(a: RunArgs) -> Result<i32, CliError> {
    let client = Client::new(&a.c.server);
    let interactive = std::io::stderr().is_terminal() && a.c.output == Output::Text;
    let body = json!({
        "env": a.env, "branch": a.branch, "commit": a.commit,
        "services": if a.services.is_empty() { Value::Null } else { json!(a.services) },
        "force": !a.changed_only,
        // Without a terminal to draw progress on, one request that returns when the run is
        // done is both simplest and fastest.
        "wait": !a.no_wait && !interactive, "timeout_s": a.timeout,
    });
    let run: Value = client
        .post(&format!("/projects/{}/runs", enc(&a.project)), &body)
        .await?;
    let id = run["id"].as_i64().unwrap_or(0);
    if a.no_wait {
        if a.c.output == Output::Json {
            print_json(&run);
        } else {
            println!("run #{id} queued");
        }
        return Ok(0);
    }
    let run = if interactive {
        eprintln!(
            "run #{id}: {} {} on {} ({})",
            a.project,
            run["env"].as_str().unwrap_or(""),
            short(run["commit"].as_str().unwrap_or("")),
            run["services"]
        );
        follow_progress(&client, id, a.timeout).await?
    } else {
        // The request waited for the run and answered with its steps and releases.
        run
    };
    report_run(&run, a.c.output)
}

async fn follow_progress(client: &Client, id: i64, timeout: u64) -> Result<Value, CliError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    loop {
        let run: Value = client.get(&format!("/runs/{id}/wait?timeout_s=1")).await?;
        for st in run["steps"].as_array().into_iter().flatten() {
            let name = cell(&st["name"]);
            let status = cell(&st["status"]);
            if seen.get(&name) != Some(&status) && status != "pending" {
                let d = duration(st["started_ms"].as_i64(), st["finished_ms"].as_i64());
                let mark = match status.as_str() {
                    "succeeded" => "✓",
                    "running" => "▶",
                    "failed" | "timed_out" => "✗",
                    _ => "·",
                };
                eprintln!(
                    "  {mark} {name:<28} {status:<10} {}",
                    if status == "running" {
                        String::new()
                    } else {
                        d
                    }
                );
                seen.insert(name, status);
            }
        }
        let status = cell(&run["status"]);
        if !matches!(status.as_str(), "queued" | "running")
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(run);
        }
    }
}

fn report_run(run: &Value, output: Output) -> Result<i32, CliError> {
    let status = cell(&run["status"]);
    if output == Output::Json {
        print_json(run);
    } else {
        let id = run["id"].as_i64().unwrap_or(0);
        println!(
            "run #{id} {status} in {}",
            duration(run["started_ms"].as_i64(), run["finished_ms"].as_i64())
        );
        for st in run["steps"].as_array().into_iter().flatten() {
            if let Some(t) = st.get("tests").filter(|t| !t.is_null()) {
                println!(
                    "  {}: {} passed, {} failed, {} skipped",
                    cell(&st["name"]),
                    t["passed"],
                    t["failed"],
                    t["skipped"]
                );
                for f in t["failing"].as_array().into_iter().flatten() {
                    println!("    failing: {}", cell(f));
                }
            }
        }
        for r in run["releases"].as_array().into_iter().flatten() {
            println!(
                "  release {} v{} (sha256:{})",
                cell(&r["service"]),
                r["version"],
                short(r["artifact_sha256"].as_str().unwrap_or(""))
            );
        }
    }
    Ok(match status.as_str() {
        "succeeded" => 0,
        "queued" | "running" => Exit::Server as i32,
        _ => Exit::Failed as i32,
    })
}

/// `sluice runs` options.
#[derive(Args)]
pub struct RunsArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this environment.
    #[arg(long)]
    env: Option<String>,
    /// Only this status.
    #[arg(long)]
    status: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Keep the list on screen and refresh it as runs change.
    #[arg(long, short = 'w')]
    watch: bool,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice runs`.
pub async fn runs(a: RunsArgs) -> Result<i32, CliError> {
    let client = Client::new(&a.c.server);
    let path = format!(
        "/runs{}",
        query(&[
            ("project", a.project.clone()),
            ("env", a.env.clone()),
            ("status", a.status.clone()),
            ("limit", Some(a.limit.to_string()))
        ])
    );
    let show = |runs: &Vec<Value>, output: Output| {
        if output == Output::Json {
            print_json(runs);
            return;
        }
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    format!("#{}", r["id"]),
                    cell(&r["status"]),
                    cell(&r["project"]),
                    cell(&r["env"]),
                    short(r["commit"].as_str().unwrap_or("")).to_string(),
                    r["services"]
                        .as_array()
                        .map(|v| v.iter().map(cell).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    cell(&r["trigger"]),
                    duration(r["started_ms"].as_i64(), r["finished_ms"].as_i64()),
                ]
            })
            .collect();
        table::print(
            &[
                "RUN", "STATUS", "PROJECT", "ENV", "COMMIT", "SERVICES", "TRIGGER", "DURATION",
            ],
            &rows,
        );
    };
    let first: Vec<Value> = client.get(&path).await?;
    show(&first, a.c.output);
    if !a.watch {
        return Ok(0);
    }
    let tty = std::io::stdout().is_terminal();
    let mut last = serde_json::to_string(&first).unwrap_or_default();
    loop {
        let mut changed = false;
        client
            .follow("/events/stream?kind=run.queued,run.started,run.finished,step.started,step.finished", |_, _| {
                changed = true;
                false
            })
            .await?;
        if changed {
            let now: Vec<Value> = client.get(&path).await?;
            let text = serde_json::to_string(&now).unwrap_or_default();
            if text != last {
                if tty {
                    print!("\x1b[2J\x1b[H");
                } else {
                    println!();
                }
                show(&now, a.c.output);
                last = text;
            }
        }
    }
}

/// `sluice logs` options.
#[derive(Args)]
pub struct LogsArgs {
    /// A run id (pipeline logs), or a service name with --env (its instances' output).
    target: String,
    /// Environment, for a service's logs.
    #[arg(long)]
    env: Option<String>,
    /// Project, for a service's logs (default: any project with that service).
    #[arg(long)]
    project: Option<String>,
    /// Only this step (`service/step`), for a run's logs.
    #[arg(long)]
    step: Option<String>,
    /// Follow: print new lines as they come (until the run finishes, for a run).
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    c: ClientOpts,
}

fn print_line(l: &Value, output: Output) {
    if output == Output::Json {
        println!("{l}");
    } else {
        let stream = l["stream"].as_str().unwrap_or("out");
        let prefix = if stream == "out" {
            String::new()
        } else {
            format!("[{stream}] ")
        };
        println!("{:<20} | {prefix}{}", cell(&l["step"]), cell(&l["line"]));
    }
}

/// `sluice logs`: a run's logs (with `-f`, exits with the run's result like `sluice run`), or
/// the output of a service's instances in an environment.
pub async fn logs(a: LogsArgs) -> Result<i32, CliError> {
    let Ok(run) = a.target.parse::<i64>() else {
        return service_logs(a).await;
    };
    let client = Client::new(&a.c.server);
    let q = query(&[("step", a.step.clone())]);
    if !a.follow {
        let lines: Vec<Value> = client.get(&format!("/runs/{run}/logs{q}")).await?;
        for l in &lines {
            print_line(l, a.c.output);
        }
        return Ok(0);
    }
    let mut end_status = None;
    client
        .follow(
            &format!("/runs/{run}/logs/stream{q}"),
            |event, data| match event {
                "log" => {
                    if let Ok(l) = serde_json::from_str::<Value>(data) {
                        print_line(&l, a.c.output);
                    }
                    true
                }
                "end" => {
                    end_status = serde_json::from_str::<Value>(data)
                        .ok()
                        .map(|v| cell(&v["status"]));
                    false
                }
                _ => true,
            },
        )
        .await?;
    Ok(match end_status.as_deref() {
        Some("succeeded") => 0,
        Some(_) => Exit::Failed as i32,
        None => Exit::Unreachable as i32,
    })
}

async fn service_logs(a: LogsArgs) -> Result<i32, CliError> {
    let Some(env) = a.env.clone() else {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "`{}` is not a run id; for a service's logs give --env",
                a.target
            ),
        )
        .hint("sluice logs 42   |   sluice logs api --env staging -f"));
    };
    let client = Client::new(&a.c.server);
    let mut offsets: std::collections::BTreeMap<String, u64> = Default::default();
    loop {
        let status: Vec<Value> = client.get("/status").await?;
        let target = status.iter().find(|t| {
            t["service"] == a.target.as_str()
                && t["env"] == env.as_str()
                && a.project.as_deref().is_none_or(|p| t["project"] == p)
        });
        let Some(target) = target else {
            return Err(CliError::new(
                Exit::NotFound,
                format!("`{}` is not deployed to `{env}`", a.target),
            )
            .hint("see `sluice status`"));
        };
        for inst in target["instances"].as_array().into_iter().flatten() {
            let id = cell(&inst["id"]);
            let path = match offsets.get(&id) {
                Some(o) => format!("/instances/{id}/log?offset={o}"),
                None => format!("/instances/{id}/log"),
            };
            let Ok(v) = client.get::<Value>(&path).await else {
                continue;
            };
            offsets.insert(id.clone(), v["offset"].as_u64().unwrap_or(0));
            for line in v["text"].as_str().unwrap_or("").lines() {
                if a.c.output == Output::Json {
                    println!("{}", json!({ "instance": id, "line": line }));
                } else {
                    println!("{id:<32} | {line}");
                }
            }
        }
        if !a.follow {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `sluice releases` options.
#[derive(Args)]
pub struct ReleasesArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice releases`.
pub async fn releases(a: ReleasesArgs) -> Result<i32, CliError> {
    let v: Vec<Value> = Client::new(&a.c.server)
        .get(&format!(
            "/releases{}",
            query(&[
                ("project", a.project),
                ("service", a.service),
                ("limit", Some(a.limit.to_string()))
            ])
        ))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|r| {
            let gates = r["gates"]
                .as_object()
                .map(|g| {
                    g.iter()
                        .map(|(k, v)| {
                            format!(
                                "{}:{}",
                                k.split('/').nth(1).unwrap_or(k),
                                cell(&v["status"])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                cell(&r["project"]),
                format!("{} v{}", cell(&r["service"]), r["version"]),
                short(r["commit"].as_str().unwrap_or("")).to_string(),
                cell(&r["env"]),
                format!("#{}", r["run_id"]),
                format!(
                    "sha256:{}",
                    short(r["artifact_sha256"].as_str().unwrap_or(""))
                ),
                if gates.is_empty() { "-".into() } else { gates },
            ]
        })
        .collect();
    table::print(
        &[
            "PROJECT", "RELEASE", "COMMIT", "ENV", "RUN", "ARTIFACT", "GATES",
        ],
        &rows,
    );
    Ok(0)
}

/// `sluice events` options.
#[derive(Args)]
pub struct EventsArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only these kinds (comma-separated, e.g. run.finished,release.created).
    #[arg(long)]
    kind: Option<String>,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Follow new events.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice events`.
pub async fn events(a: EventsArgs) -> Result<i32, CliError> {
    let client = Client::new(&a.c.server);
    let show = |e: &Value| {
        if a.c.output == Output::Json {
            println!("{e}");
        } else {
            println!(
                "{:>6}  {:<18} {:<16} {:<20} {}",
                e["seq"],
                cell(&e["kind"]),
                cell(&e["actor"]),
                cell(&e["subject"]),
                e["payload"]
            );
        }
    };
    let q = query(&[
        ("project", a.project.clone()),
        ("kind", a.kind.clone()),
        ("after", Some(a.after.to_string())),
    ]);
    let list: Vec<Value> = client.get(&format!("/events{q}")).await?;
    let mut last = a.after;
    for e in &list {
        show(e);
        last = e["seq"].as_i64().unwrap_or(last);
    }
    if a.follow {
        let q = query(&[
            ("project", a.project.clone()),
            ("kind", a.kind.clone()),
            ("after", Some(last.to_string())),
        ]);
        client
            .follow(&format!("/events/stream{q}"), |_, data| {
                if let Ok(e) = serde_json::from_str::<Value>(data) {
                    show(&e);
                }
                true
            })
            .await?;
    }
    Ok(0)
}

/// `sluice cancel` options.
#[derive(Args)]
pub struct CancelArgs {
    /// Run id.
    run: i64,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice cancel`.
pub async fn cancel(a: CancelArgs) -> Result<i32, CliError> {
    let _: Value = Client::new(&a.c.server)
        .post(&format!("/runs/{}/cancel", a.run), &json!({}))
        .await?;
    println!("run #{} is being cancelled", a.run);
    Ok(0)
}
