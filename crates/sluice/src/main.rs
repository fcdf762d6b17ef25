//! The `sluice` command: the server, the demo, local checks of `sluice.yml`, and a client
//! for a running server. Every subcommand has `--help`; list commands take `--output json`;
//! exit codes are documented in [`exit`] and `docs/cli.md`.

mod alerts_cmd;
mod audit_cmd;
mod client;
mod commands;
mod demo;
mod deploys;
mod exit;
mod login;
mod proxy_cmd;
mod secrets_cmd;
mod table;
mod vuln_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::{CliError, Exit};

/// sluice: from git push to gated, immutable releases (and, next, to deploys and on-call).
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and how to print.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// URL of the sluice server.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub server: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
}

/// Output formats.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables and lines.
    Text,
    /// JSON, for scripts.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sluice server (API, webhooks, UI, poller, runner) in the foreground.
    Server(commands::ServerArgs),
    /// Create a sample project, run its pipeline end to end and show the result.
    Demo(demo::DemoArgs),
    /// Check a sluice.yml and print every problem with file:line:column.
    Validate {
        /// The file to check.
        #[arg(default_value = "sluice.yml")]
        path: PathBuf,
    },
    /// Print the JSON Schema of sluice.yml (for editors).
    Schema {
        /// Print the Markdown reference instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Register, list and remove projects.
    #[command(subcommand)]
    Project(commands::ProjectCmd),
    /// Start a pipeline run by hand and follow it.
    Run(commands::RunArgs),
    /// List runs.
    Runs(commands::RunsArgs),
    /// Show (or follow) a run's log.
    Logs(commands::LogsArgs),
    /// List releases.
    Releases(commands::ReleasesArgs),
    /// Show (or follow) the event log.
    Events(commands::EventsArgs),
    /// Cancel a running run.
    Cancel(commands::CancelArgs),
    /// Deploy a release of a service to an environment, or control a running deployment.
    Deploy(deploys::DeployArgs),
    /// Roll a service back in an environment (to the previous release, or --to any earlier one).
    Rollback(deploys::RollbackArgs),
    /// Deploy to one environment exactly the release serving in another.
    Promote(deploys::PromoteArgs),
    /// Show every service in every environment: serving release, health, instances, traffic.
    Status {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List deployments, newest first.
    Deploys(deploys::DeploysArgs),
    /// Sign in to a server (a password, or a new server's setup token) and save a token.
    Login(login::LoginArgs),
    /// Revoke this machine's token for a server and forget it.
    Logout {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Show who you are signed in as, and your roles.
    Whoami {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Manage users and their roles (admins).
    #[command(subcommand)]
    Users(login::UsersCmd),
    /// Manage your API tokens.
    #[command(subcommand)]
    Tokens(login::TokensCmd),
    /// Approve a deployment waiting for approval on a protected environment.
    Approve(login::ApproveArgs),
    /// Set, list and delete project secrets; rotate the key that encrypts them.
    #[command(subcommand)]
    Secrets(secrets_cmd::SecretsCmd),
    /// Give a sealed server its secret key (from --key-file or standard input).
    Unseal(secrets_cmd::UnsealArgs),
    /// Verify or export the tamper-evident audit trail (the event log's hash chain).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// List incidents, newest first.
    Incidents(alerts_cmd::IncidentsArgs),
    /// Show an incident: its state, suspected cause and timeline.
    Incident(alerts_cmd::IncidentArgs),
    /// Acknowledge an incident: someone is on it.
    Ack(alerts_cmd::IncidentArgs),
    /// Resolve an incident by hand.
    Resolve(alerts_cmd::IncidentArgs),
    /// List alerts, newest first.
    Alerts(alerts_cmd::AlertsArgs),
    /// Add, list and expire silences (and weekly maintenance windows).
    #[command(subcommand)]
    Silence(alerts_cmd::SilenceCmd),
    /// Show who is on call now and next in every schedule.
    Oncall(alerts_cmd::OncallArgs),
    /// Show the four DORA metrics of production deployments, with their performance levels.
    Dora(alerts_cmd::DoraArgs),
    /// Add, list and remove alert integrations (keys for PagerDuty-style senders and Alertmanager).
    #[command(subcommand)]
    Integrations(alerts_cmd::IntegrationsCmd),
    /// Run the traffic proxy as its own process (it keeps serving across control-plane restarts).
    Proxy(proxy_cmd::ProxyArgs),
    /// Switch a standalone proxy's listener to another backend, atomically.
    Switch(proxy_cmd::SwitchArgs),
    /// The proxy daemon `sluice server` starts for its listeners.
    #[command(hide = true)]
    ProxyDaemon(proxy_cmd::DaemonArgs),
    /// Manage the offline vulnerability advisory database.
    #[command(subcommand)]
    Advisories(vuln_cmd::AdvisoriesCmd),
    /// Scan a checkout, a lockfile or a root-filesystem tar for known vulnerabilities; exit 1
    /// when the gate fails.
    Scan(vuln_cmd::ScanArgs),
    /// Print the CLI reference in Markdown (docs/cli.md is generated from it).
    #[command(hide = true)]
    CliDocs,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage as i32
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The proxy chooses its own runtime (its worker count is part of its configuration).
    let cli = match cli.command {
        Command::Proxy(a) => finish(proxy_cmd::proxy(a)),
        Command::Switch(a) => finish(proxy_cmd::switch(a)),
        Command::ProxyDaemon(a) => finish(proxy_cmd::daemon(a)),
        other => Cli { command: other },
    };
    // The server and the demo run many tasks; a client command runs one request at a time,
    // and a single-threaded runtime starts faster.
    let mut builder = if matches!(cli.command, Command::Server(_) | Command::Demo(_)) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(Exit::Server as i32);
        }
    };
    finish(rt.block_on(dispatch(cli.command)))
}

/// Exits with the command's code, printing its error and hint if it failed.
fn finish(result: Result<i32, CliError>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            std::process::exit(e.exit as i32);
        }
    }
}

async fn dispatch(cmd: Command) -> Result<i32, CliError> {
    match cmd {
        Command::Server(a) => commands::server(a).await,
        Command::Demo(a) => demo::demo(a).await,
        Command::Validate { path } => commands::validate(&path),
        Command::Schema { markdown } => {
            if markdown {
                print!("{}", sluice_spec::reference_markdown());
            } else {
                println!("{}", sluice_spec::json_schema());
            }
            Ok(0)
        }
        Command::Project(c) => commands::project(c).await,
        Command::Run(a) => commands::run(a).await,
        Command::Runs(a) => commands::runs(a).await,
        Command::Logs(a) => commands::logs(a).await,
        Command::Releases(a) => commands::releases(a).await,
        Command::Events(a) => commands::events(a).await,
        Command::Cancel(a) => commands::cancel(a).await,
        Command::Deploy(a) => deploys::deploy(a).await,
        Command::Rollback(a) => deploys::rollback(a).await,
        Command::Promote(a) => deploys::promote(a).await,
        Command::Status { c } => deploys::status(c).await,
        Command::Deploys(a) => deploys::deploys(a).await,
        Command::Login(a) => login::login(a).await,
        Command::Logout { c } => login::logout(c).await,
        Command::Whoami { c } => login::whoami(c).await,
        Command::Users(c) => login::users(c).await,
        Command::Tokens(c) => login::tokens(c).await,
        Command::Approve(a) => login::approve(a).await,
        Command::Secrets(c) => secrets_cmd::secrets(c).await,
        Command::Unseal(a) => secrets_cmd::unseal(a).await,
        Command::Audit(audit_cmd::AuditCmd::Verify(a)) => audit_cmd::verify(a).await,
        Command::Audit(audit_cmd::AuditCmd::Export(a)) => audit_cmd::export(a).await,
        Command::Audit(audit_cmd::AuditCmd::PublicKey(s)) => audit_cmd::public_key(&s),
        Command::Incidents(a) => alerts_cmd::incidents(a).await,
        Command::Incident(a) => alerts_cmd::incident(a).await,
        Command::Ack(a) => alerts_cmd::ack(a).await,
        Command::Resolve(a) => alerts_cmd::resolve(a).await,
        Command::Alerts(a) => alerts_cmd::alerts(a).await,
        Command::Silence(c) => alerts_cmd::silence(c).await,
        Command::Oncall(a) => alerts_cmd::oncall(a).await,
        Command::Dora(a) => alerts_cmd::dora(a).await,
        Command::Integrations(c) => alerts_cmd::integrations(c).await,
        // Handled before a runtime exists (they build their own).
        Command::Proxy(_) | Command::Switch(_) | Command::ProxyDaemon(_) => Err(CliError::new(
            Exit::Server,
            "the proxy cannot run inside another runtime",
        )),
        Command::Advisories(c) => vuln_cmd::advisories(c),
        Command::Scan(a) => vuln_cmd::scan(a),
        Command::CliDocs => {
            print!("{}", cli_markdown());
            Ok(0)
        }
    }
}

/// The CLI reference in Markdown, generated from the same definitions clap parses with.
fn cli_markdown() -> String {
    use clap::CommandFactory;
    use std::fmt::Write;
    let mut out = String::from(
        "# sluice CLI reference\n\n<!-- Generated by `sluice cli-docs`; do not edit. Regenerate with `UPDATE_DOCS=1 cargo test -p sluice`. -->\n\n",
    );
    let _ = writeln!(
        out,
        "Exit codes: 0 success; 1 the thing asked for failed (a run failed or was cancelled, a file is invalid, the server refused the request); 2 usage error; 3 not found; 4 server unreachable; 5 server or local failure.\n"
    );
    let _ = writeln!(
        out,
        "Client commands talk to `--server` (env `SLUICE_SERVER`, default `http://127.0.0.1:7878`) and print tables, or JSON with `--output json`.\n"
    );
    fn walk(cmd: &clap::Command, path: &str, out: &mut String) {
        for sub in cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        {
            let name = format!("{path} {}", sub.get_name());
            let _ = writeln!(out, "## `{name}`\n");
            if let Some(about) = sub.get_about() {
                let _ = writeln!(out, "{about}.\n");
            }
            let mut sub = sub.clone().bin_name(name.clone());
            let usage = sub.render_usage().to_string();
            let _ = writeln!(out, "```\n{}\n```\n", usage.trim_start_matches("Usage: "));
            let args: Vec<&clap::Arg> = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
                .collect();
            if !args.is_empty() {
                let _ = writeln!(out, "| argument | description |\n|---|---|");
                for a in args {
                    let flag = match (a.get_long(), a.get_short()) {
                        (Some(l), Some(s)) => format!("`-{s}`, `--{l}`"),
                        (Some(l), None) => format!("`--{l}`"),
                        (None, Some(s)) => format!("`-{s}`"),
                        (None, None) => format!("`{}`", a.get_id().as_str().to_uppercase()),
                    };
                    let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    if !help.is_empty() && !help.ends_with('.') {
                        help.push('.');
                    }
                    let defaults: Vec<String> = a
                        .get_default_values()
                        .iter()
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect();
                    let is_flag = matches!(a.get_action(), clap::ArgAction::SetTrue);
                    if !defaults.is_empty() && !is_flag {
                        help.push_str(&format!(" Default: `{}`.", defaults.join(",")));
                    }
                    if let Some(env) = a.get_env() {
                        help.push_str(&format!(" Env: `{}`.", env.to_string_lossy()));
                    }
                    let _ = writeln!(out, "| {flag} | {} |", help.replace('|', "\\|"));
                }
                let _ = writeln!(out);
            }
            if sub.has_subcommands() {
                walk(&sub, &name, out);
            }
        }
    }
    walk(&Cli::command(), "sluice", &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_reference_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
        let fresh = super::cli_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &fresh).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == fresh,
            "docs/cli.md is out of date: run `UPDATE_DOCS=1 cargo test -p sluice`"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
