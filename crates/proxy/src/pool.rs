//! Upstream connections: one pool of idle HTTP/1.1 connections per backend address, and the
//! draining of a backend that left the route table (idle connections closed at once, busy ones
//! allowed to finish until the drain timeout, then closed).
//!
//! A connection goes back to its pool only when its response body has been read to the end
//! (see `upstream.rs`); a checkout skips connections the backend has closed. The pool never
//! blocks the hot path for long: its mutex guards a `Vec` push or pop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::upstream::Conn;

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 1024;
/// How long a connect to a backend may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why no connection to a backend could be had. The request was not sent, so retrying is safe.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to backend {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to backend {addr} timed out")]
    Timeout { addr: SocketAddr },
}

/// The connections to one backend address.
pub(crate) struct BackendPool {
    pub(crate) addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
    draining: AtomicBool,
    /// Set to true when a drain times out: every exchange, response body and tunnel with this
    /// backend stops.
    kill: watch::Sender<bool>,
}

impl BackendPool {
    pub(crate) fn new(addr: SocketAddr) -> Arc<BackendPool> {
        Arc::new(BackendPool {
            addr,
            idle: Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            kill: watch::channel(false).0,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a connection back unless the pool drains or is full.
    pub(crate) fn put(&self, conn: Conn) {
        if self.draining.load(Ordering::Acquire) {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// A receiver that turns true when the backend's drain timed out.
    pub(crate) fn kill_signal(&self) -> watch::Receiver<bool> {
        self.kill.subscribe()
    }

    /// A usable connection: a pooled one if any is still open (`true`), else a new one (`false`).
    pub(crate) async fn checkout(&self) -> Result<(Conn, bool), ConnectError> {
        loop {
            let Some(conn) = self.idle().pop() else {
                break;
            };
            if !conn.is_stale() {
                return Ok((conn, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<Conn, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr }),
        };
        // Small requests and responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(Conn::new(stream))
    }

    /// Stops pooling: closes idle connections now and every remaining connection (and tunnel)
    /// after `timeout`.
    pub(crate) fn drain(self: &Arc<Self>, timeout: Duration) {
        self.draining.store(true, Ordering::Release);
        self.idle().clear();
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            me.kill.send_replace(true);
        });
    }

    /// Closes every connection to this backend now.
    pub(crate) fn kill_now(&self) {
        self.draining.store(true, Ordering::Release);
        self.idle().clear();
        self.kill.send_replace(true);
    }
}

/// Resolves when the kill signal turns true; never if its sender is gone.
pub(crate) async fn killed(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|k| *k).await.is_err() {
        std::future::pending::<()>().await;
    }
}
