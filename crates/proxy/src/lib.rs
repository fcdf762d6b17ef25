//! sluice's traffic data plane: an HTTP/1.1 reverse proxy that routes, weights, drains and
//! counts, and nothing more. Decisions (which version gets how much traffic, when to roll back)
//! live in the control plane, which hands the proxy a [`RouteTable`] and reads [`Stats`].
//!
//! - [`Proxy`] serves one listener. Its table is swapped atomically ([`Proxy::set_table`]):
//!   requests that start afterwards see only the new table; backends that left it are drained.
//! - Backend choice: sticky rules first, then an exact smooth weighted round robin between
//!   groups (one version each), then round robin inside the group.
//! - A request is retried once, on another backend, only when it provably was not sent: the
//!   connect failed, or a pooled connection was found closed before anything was written.
//! - [`run_standalone`] runs listeners plus a loopback admin API (`sluice proxy`) that keeps the
//!   routes in a state file, so traffic keeps flowing while the control plane restarts;
//!   [`switch`] is the client side of that API.
//!
//! Architecture invariant: this crate knows nothing of releases, deployments or the store; it
//! binds only the addresses it is given and reads no environment.

mod admin;
mod body;
mod pool;
mod proxy;
mod stats;
mod table;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use admin::{
    ListenerConfig, ListenerInfo, Standalone, StandaloneConfig, run_standalone, switch,
};
pub use proxy::Proxy;
pub use stats::{BUCKETS_MS, Stats, VersionStats};
pub use table::{Group, RouteTable, StickyRule};

/// Errors of the proxy's API (the data path itself never fails: it answers 502).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free address or stop what holds it")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A route table was rejected before anything changed.
    #[error("invalid route table: {0}")]
    InvalidTable(String),
    /// A listener name is used twice or is not usable in a URL path.
    #[error("invalid listener: {0}")]
    InvalidListener(String),
    /// The state file could not be read, parsed or written.
    #[error("state file {path}: {reason}; fix or remove the file")]
    State {
        /// The state file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The admin API could not be reached or refused a request.
    #[error("admin api at {admin}: {reason}")]
    Admin {
        /// The admin API's address.
        admin: SocketAddr,
        /// What went wrong, with the server's message when there is one.
        reason: String,
    },
}
