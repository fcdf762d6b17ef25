//! The `sluice` command: the server, the demo, local checks of `sluice.yml`, and a client
//! for a running server. Every subcommand has `--help`; list commands take `--output json`;
//! exit codes are documented in [`exit`] and `docs/cli.md`.

mod client;
mod commands;
mod demo;
mod exit;
mod table;

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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(Exit::Server as i32);
        }
    };
    let result = rt.block_on(dispatch(cli.command));
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
    }
}
