//! `sluice proxy` and `sluice switch`: the traffic data plane as its own process, and the
//! atomic switch of its routes through its admin API. A standalone proxy keeps serving while
//! the control plane restarts, and with `--state` it comes back with its last routes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sluice_proxy::{ListenerConfig, RouteTable, StandaloneConfig};

use crate::exit::{CliError, Exit};

/// `sluice proxy` options.
#[derive(Args)]
pub struct ProxyArgs {
    /// Address to accept client traffic on (env `LISTEN`).
    #[arg(long, env = "LISTEN")]
    listen: SocketAddr,
    /// Backend to route to at start (env `UPSTREAM`).
    #[arg(long, env = "UPSTREAM")]
    upstream: SocketAddr,
    /// Admin API address (loopback only: it has no authentication); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// Worker threads (env `WORKERS`).
    #[arg(long, env = "WORKERS", default_value_t = 1)]
    workers: usize,
    /// File that keeps the routes across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
}

/// `sluice switch` options.
#[derive(Args)]
pub struct SwitchArgs {
    /// Admin API of the proxy.
    #[arg(long)]
    admin: SocketAddr,
    /// The backend that receives all traffic from now on.
    #[arg(long)]
    to: SocketAddr,
    /// Listener name.
    #[arg(long, default_value = "default")]
    listener: String,
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, CliError> {
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    rt.map_err(|e| CliError::new(Exit::Server, format!("cannot start the async runtime: {e}")))
}

/// Runs the proxy in the foreground until SIGTERM or Ctrl-C.
pub fn proxy(a: ProxyArgs) -> Result<i32, CliError> {
    if !a.admin.ip().is_loopback() {
        return Err(CliError::new(
            Exit::Usage,
            "--admin must be a loopback address: the admin API has no authentication",
        ));
    }
    let config = StandaloneConfig {
        admin: a.admin,
        listeners: vec![ListenerConfig {
            name: "default".into(),
            listen: a.listen,
            table: RouteTable::single(a.upstream.to_string(), vec![a.upstream]),
        }],
        state_path: a.state,
        shutdown_grace: Duration::from_secs(5),
    };
    runtime(a.workers)?
        .block_on(sluice_proxy::run_standalone(
            config,
            crate::commands::wait_for_signal(),
        ))
        .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
    Ok(0)
}

/// Switches a listener of a running proxy to one backend, atomically.
pub fn switch(a: SwitchArgs) -> Result<i32, CliError> {
    let table = RouteTable::single(a.to.to_string(), vec![a.to]);
    runtime(1)?
        .block_on(sluice_proxy::switch(a.admin, &a.listener, &table))
        .map_err(|e| {
            CliError::new(Exit::Failed, e.to_string()).hint("check --admin and --listener")
        })?;
    Ok(0)
}

/// `sluice proxy-daemon` options (started by `sluice server`; not for people).
#[derive(Args)]
pub struct DaemonArgs {
    /// File that keeps the listeners and routes across restarts.
    #[arg(long)]
    state: PathBuf,
    /// File to write `{"pid", "admin"}` to once the admin API listens.
    #[arg(long)]
    ready: PathBuf,
}

/// Runs the proxy daemon: listeners are added and switched through its admin API by the
/// server; it keeps serving while the server restarts.
pub fn daemon(a: DaemonArgs) -> Result<i32, CliError> {
    let fail = |e: String| CliError::new(Exit::Server, e);
    runtime(2)?.block_on(async move {
        let handle = sluice_proxy::Standalone::start(StandaloneConfig {
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: Vec::new(),
            state_path: Some(a.state),
            shutdown_grace: Duration::from_secs(5),
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
        let ready = serde_json::json!({ "pid": std::process::id(), "admin": handle.admin_addr().to_string() });
        let tmp = a.ready.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string()).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&tmp, &a.ready).map_err(|e| fail(e.to_string()))?;
        crate::commands::wait_for_signal().await;
        handle.shutdown().await;
        Ok(0)
    })
}
