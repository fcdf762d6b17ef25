//! Upstream connections: one pool of idle HTTP/1.1 connections per backend address, and the
//! draining of a backend that left the route table (idle connections closed at once, busy ones
//! allowed to finish until the drain timeout, then closed).
//!
//! A connection goes back to its pool only when its response body has been read to the end
//! (see `body.rs`); a checkout skips connections the backend has closed. The pool never blocks
//! the hot path for long: its mutex guards a `Vec` push or pop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

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
    #[error("http handshake with backend {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// The connections to one backend address.
pub(crate) struct BackendPool {
    pub(crate) addr: SocketAddr,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
    draining: AtomicBool,
    /// Set to true when a drain times out: every connection task and tunnel to this backend
    /// stops.
    kill: watch::Sender<bool>,
}

/// A connection checked out of a pool; give it back with `release` once its response is done.
pub(crate) struct Pooled {
    pub(crate) sender: SendRequest<Incoming>,
    pool: Arc<BackendPool>,
}

impl Pooled {
    /// Returns the connection to its pool unless the pool drains or the connection is closed.
    pub(crate) fn release(self) {
        self.pool.put(self.sender);
    }

    /// A receiver that turns true when the backend's drain timed out.
    pub(crate) fn kill_signal(&self) -> watch::Receiver<bool> {
        self.pool.kill.subscribe()
    }
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

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SendRequest<Incoming>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, sender: SendRequest<Incoming>) {
        if self.draining.load(Ordering::Acquire) || sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    /// A ready connection: a pooled one if any is still open (`true`), else a new one (`false`).
    pub(crate) async fn checkout(self: &Arc<Self>) -> Result<(Pooled, bool), ConnectError> {
        loop {
            let Some(mut sender) = self.idle().pop() else {
                break;
            };
            if sender.is_closed() {
                continue;
            }
            // A connection returns to the pool when its last response body was read; hyper
            // may need one more poll before it accepts the next request.
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok((
                    Pooled {
                        sender,
                        pool: self.clone(),
                    },
                    true,
                ));
            }
        }
        let sender = self.connect().await?;
        Ok((
            Pooled {
                sender,
                pool: self.clone(),
            },
            false,
        ))
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr }),
        };
        // Small requests and responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        let kill = self.kill.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                r = conn.with_upgrades() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, "backend connection ended: {e}");
                    }
                }
                () = killed(kill) => {
                    tracing::debug!(%addr, "backend connection closed: drain timed out");
                }
            }
        });
        Ok(sender)
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
