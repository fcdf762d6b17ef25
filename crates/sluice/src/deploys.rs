//! Deploy commands: `deploy`, `rollback`, `promote`, `status` and `deploys`. They change
//! what should run where (the server converges) and show what runs where.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, query};
use crate::exit::{CliError, Exit};
use crate::table::{self, cell, print_json};
use crate::{ClientOpts, Output};

/// `sluice deploy` options.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    action: Option<DeployAction>,
    /// Service to deploy.
    #[arg(required = true)]
    service: Option<String>,
    /// Environment to deploy to.
    #[arg(long, required = true)]
    env: Option<String>,
    /// Release version (default: the newest release of the service).
    #[arg(long)]
    release: Option<i64>,
    #[command(flatten)]
    target: TargetOpts,
}

/// Options shared by commands that change a target.
#[derive(Args)]
pub struct TargetOpts {
    /// Project (default: the only project with this service).
    #[arg(long)]
    project: Option<String>,
    /// Return at once instead of following the deployment to its end.
    #[arg(long)]
    no_wait: bool,
    /// Give up following after this many seconds (the deployment goes on).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[command(flatten)]
    c: ClientOpts,
}

/// Control of a running deployment.
#[derive(Subcommand)]
pub enum DeployAction {
    /// Show a deployment: phase, traffic, and every decision with its figures.
    Show {
        /// Deployment id.
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Pause a running deployment.
    Pause {
        /// Deployment id.
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Resume a paused deployment.
    Resume {
        /// Deployment id.
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Abort a running deployment: all traffic back to the previous release.
    Abort {
        /// Deployment id.
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Skip the remaining canary steps, or end a blue-green preview.
    Promote {
        /// Deployment id.
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
}

/// `sluice rollback` options.
#[derive(Args)]
pub struct RollbackArgs {
    /// Service.
    service: String,
    /// Environment.
    #[arg(long)]
    env: String,
    /// Release to go back to (default: the one that ran before the current one).
    #[arg(long)]
    to: Option<i64>,
    #[command(flatten)]
    target: TargetOpts,
}

/// `sluice promote` options.
#[derive(Args)]
pub struct PromoteArgs {
    /// Service.
    service: String,
    /// Environment whose serving release is promoted.
    #[arg(long)]
    from: String,
    /// Environment to deploy it to.
    #[arg(long)]
    to: String,
    #[command(flatten)]
    target: TargetOpts,
}

/// `sluice deploys` options.
#[derive(Args)]
pub struct DeploysArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this environment.
    #[arg(long)]
    env: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice deploy`.
pub async fn deploy(a: DeployArgs) -> Result<i32, CliError> {
    if let Some(action) = a.action {
        return deploy_action(action).await;
    }
    let (Some(service), Some(env)) = (a.service, a.env) else {
        return Err(CliError::new(Exit::Usage, "give a service and --env")
            .hint("sluice deploy api --env staging"));
    };
    let client = Client::new(&a.target.c.server);
    let since = newest_deployment_id(&client).await?;
    let body = json!({ "project": a.target.project, "service": service, "env": env, "version": a.release });
    let v: Value = client.post("/deployments", &body).await?;
    follow(&client, &v, &service, &env, &a.target, since).await
}

/// `sluice rollback`.
pub async fn rollback(a: RollbackArgs) -> Result<i32, CliError> {
    let client = Client::new(&a.target.c.server);
    let since = newest_deployment_id(&client).await?;
    let body =
        json!({ "project": a.target.project, "service": a.service, "env": a.env, "to": a.to });
    let v: Value = client.post("/rollbacks", &body).await?;
    follow(&client, &v, &a.service, &a.env, &a.target, since).await
}

/// `sluice promote`.
pub async fn promote(a: PromoteArgs) -> Result<i32, CliError> {
    let client = Client::new(&a.target.c.server);
    let since = newest_deployment_id(&client).await?;
    let body =
        json!({ "project": a.target.project, "service": a.service, "from": a.from, "to": a.to });
    let v: Value = client.post("/promotions", &body).await?;
    follow(&client, &v, &a.service, &a.to, &a.target, since).await
}

/// The id of the newest deployment, 0 when there is none: deployments with a higher id were
/// started after a request made now.
async fn newest_deployment_id(client: &Client) -> Result<i64, CliError> {
    let list: Vec<Value> = client.get("/deployments?limit=1").await?;
    Ok(list.first().and_then(|d| d["id"].as_i64()).unwrap_or(0))
}

/// Follows the deployment of the target's desired release started after deployment `since`
/// until it ends; exit 0 when it succeeded, 1 when it was rolled back or failed.
async fn follow(
    client: &Client,
    answer: &Value,
    service: &str,
    env: &str,
    o: &TargetOpts,
    since: i64,
) -> Result<i32, CliError> {
    let t = &answer["target"];
    let version = t["desired_version"].as_i64().unwrap_or(0);
    let project = cell(&t["project"]);
    if o.no_wait {
        if o.c.output == Output::Json {
            println!("{answer}");
        } else {
            println!("{service} v{version} requested in {env}");
        }
        return Ok(0);
    }
    eprintln!("deploying {service} v{version} to {env} ...");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(o.timeout);
    let mut last_phase = String::new();
    let mut seen_id = None;
    let path = format!(
        "/deployments{}",
        query(&[
            ("project", Some(project)),
            ("service", Some(service.to_string())),
            ("env", Some(env.to_string())),
            ("limit", Some("5".into())),
        ])
    );
    loop {
        let list: Vec<Value> = client.get(&path).await?;
        let mine = list.iter().find(|d| {
            d["version"].as_i64() == Some(version)
                && d["id"].as_i64().is_some_and(|id| id > since)
                && seen_id.is_none_or(|id| d["id"].as_i64() == Some(id))
        });
        if let Some(d) = mine {
            seen_id = d["id"].as_i64();
            let mut phase = cell(&d["phase"]);
            if phase == "awaiting_approval" {
                // Say why it waits: the approvals it needs, or the timer (not the seconds
                // left, which would print a new line at every poll).
                let detail: Value = client.get(&format!("/deployments/{}", d["id"])).await?;
                let gate = &detail["gate"];
                let why = if gate["state"] == "waiting" {
                    "the wait timer runs".to_string()
                } else {
                    crate::login::gate_text(gate)
                };
                phase = format!("waiting at the gate of {env}: {why}");
            }
            if phase != last_phase {
                eprintln!("  deployment #{}: {phase}", d["id"]);
                last_phase = phase;
            }
            let status = cell(&d["status"]);
            if status != "running" {
                if o.c.output == Output::Json {
                    println!("{d}");
                } else {
                    let reason = d["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    println!(
                        "deployment #{} of {service} v{version} in {env} {status}{reason}",
                        d["id"]
                    );
                }
                return Ok(if status == "succeeded" {
                    0
                } else {
                    Exit::Failed as i32
                });
            }
        } else if t["stable_version"].as_i64() == Some(version) && seen_id.is_none() {
            println!("{service} v{version} already serves in {env}");
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                CliError::new(Exit::Failed, "still deploying; stopped following")
                    .hint("follow it with `sluice deploys`"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn deploy_action(action: DeployAction) -> Result<i32, CliError> {
    let (id, cmd, c) = match action {
        DeployAction::Show { id, c } => return show(id, c).await,
        DeployAction::Pause { id, c } => (id, "pause", c),
        DeployAction::Resume { id, c } => (id, "resume", c),
        DeployAction::Abort { id, c } => (id, "abort", c),
        DeployAction::Promote { id, c } => (id, "promote", c),
    };
    let _: Value = Client::new(&c.server)
        .post(&format!("/deployments/{id}/{cmd}"), &json!({}))
        .await?;
    println!("deployment #{id}: {cmd} requested");
    Ok(0)
}

async fn show(id: i64, c: ClientOpts) -> Result<i32, CliError> {
    let v: Value = Client::new(&c.server)
        .get(&format!("/deployments/{id}"))
        .await?;
    if c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let d = &v["deployment"];
    println!(
        "deployment #{id}: {} v{} to {} ({}), {} — phase {}; {} by {}",
        cell(&d["service"]),
        d["version"],
        cell(&d["env"]),
        cell(&d["strategy"]),
        cell(&d["status"]),
        cell(&d["phase"]),
        cell(&d["trigger"]),
        cell(&d["actor"])
    );
    if let Some(r) = d["reason"].as_str() {
        println!("reason: {r}");
    }
    for e in v["events"].as_array().into_iter().flatten() {
        let p = &e["payload"];
        let what = p["what"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| cell(&e["kind"]));
        let figures = if p["figures"].is_null() {
            String::new()
        } else {
            p["figures"].to_string()
        };
        println!("  {:>6}  {what:<40} {figures}", e["seq"]);
    }
    Ok(0)
}

/// `sluice status`: services x environments.
pub async fn status(c: ClientOpts) -> Result<i32, CliError> {
    let v: Vec<Value> = Client::new(&c.server).get("/status").await?;
    if c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|t| {
            let ver = |x: &Value| {
                x.as_i64()
                    .map(|n| format!("v{n}"))
                    .unwrap_or_else(|| "-".into())
            };
            vec![
                cell(&t["project"]),
                cell(&t["service"]),
                cell(&t["env"]),
                ver(&t["stable_version"]),
                ver(&t["desired_version"]),
                format!("{}/{}", t["ready"], t["replicas"]),
                cell(&t["traffic"]),
                cell(&t["expose"]),
                t["deployment"]["id"]
                    .as_i64()
                    .map(|id| format!("#{id} {}", cell(&t["deployment"]["phase"])))
                    .unwrap_or_else(|| "-".into()),
                cell(&t["health"]),
            ]
        })
        .collect();
    table::print(
        &[
            "PROJECT",
            "SERVICE",
            "ENV",
            "SERVING",
            "DESIRED",
            "READY",
            "TRAFFIC",
            "ADDRESS",
            "DEPLOYING",
            "HEALTH",
        ],
        &rows,
    );
    Ok(0)
}

/// `sluice deploys`: deployment history.
pub async fn deploys(a: DeploysArgs) -> Result<i32, CliError> {
    let q = query(&[
        ("limit", Some(a.limit.to_string())),
        ("project", a.project),
        ("service", a.service),
        ("env", a.env),
    ]);
    let v: Vec<Value> = Client::new(&a.c.server)
        .get(&format!("/deployments{q}"))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|d| {
            vec![
                format!("#{}", d["id"]),
                cell(&d["service"]),
                cell(&d["env"]),
                format!("v{}", d["version"]),
                d["from_version"]
                    .as_i64()
                    .map(|n| format!("v{n}"))
                    .unwrap_or_else(|| "-".into()),
                cell(&d["strategy"]),
                cell(&d["status"]),
                cell(&d["trigger"]),
                table::duration(d["created_ms"].as_i64(), d["finished_ms"].as_i64()),
                d["reason"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "DEPLOY", "SERVICE", "ENV", "RELEASE", "FROM", "STRATEGY", "STATUS", "TRIGGER",
            "DURATION", "REASON",
        ],
        &rows,
    );
    Ok(0)
}
