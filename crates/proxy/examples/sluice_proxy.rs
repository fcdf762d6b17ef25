//! A small stand-alone front end to `sluice-proxy` for benchmarks, until the `sluice` CLI wires
//! `sluice proxy` and `sluice switch`:
//!
//! ```text
//! sluice_proxy serve --listen ADDR --upstream ADDR [--admin ADDR] [--workers N] [--state FILE]
//! sluice_proxy switch --admin ADDR --to ADDR [--listener NAME]
//! ```
//!
//! `serve` runs one listener called `default` on a tokio runtime of `--workers` threads (a
//! current-thread runtime for 1, the fair match for one nginx worker) until SIGTERM or Ctrl-C.
//! `switch` points the listener at one upstream (version named after the address).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use sluice_proxy::{ListenerConfig, RouteTable, StandaloneConfig};

const USAGE: &str = "usage:\n  sluice_proxy serve --listen ADDR --upstream ADDR [--admin ADDR] [--workers N] [--state FILE]\n  sluice_proxy switch --admin ADDR --to ADDR [--listener NAME]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The value following `--name`, if given.
fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn addr(args: &[String], name: &str) -> Result<SocketAddr, String> {
    let v = opt(args, name).ok_or_else(|| format!("{name} is required\n{USAGE}"))?;
    v.parse()
        .map_err(|e| format!("{name} {v}: {e}; give an ip:port like 127.0.0.1:8080"))
}

fn table_for(upstream: SocketAddr) -> RouteTable {
    RouteTable::single(upstream.to_string(), vec![upstream])
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("serve") => {
            let listen = addr(args, "--listen")?;
            let upstream = addr(args, "--upstream")?;
            let admin = match opt(args, "--admin") {
                Some(_) => addr(args, "--admin")?,
                None => SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            let workers: usize = match opt(args, "--workers") {
                Some(w) => w
                    .parse()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or_else(|| format!("--workers {w}: give a positive number"))?,
                None => 1,
            };
            let config = StandaloneConfig {
                admin,
                listeners: vec![ListenerConfig {
                    name: "default".into(),
                    listen,
                    table: table_for(upstream),
                }],
                state_path: opt(args, "--state").map(Into::into),
                shutdown_grace: Duration::from_secs(5),
            };
            let rt = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
            }
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(sluice_proxy::run_standalone(config, stop_signal()))
                .map_err(|e| e.to_string())
        }
        Some("switch") => {
            let admin = addr(args, "--admin")?;
            let to = addr(args, "--to")?;
            let listener = opt(args, "--listener").unwrap_or("default");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(sluice_proxy::switch(admin, listener, &table_for(to)))
                .map_err(|e| e.to_string())
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
