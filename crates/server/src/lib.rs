//! The sluice server.
//!
//! [`Server::start`] validates the configuration, opens the store, recovers from whatever a
//! previous process left behind, and only then binds the port and starts the poller. The
//! HTTP edge ([`http`]) and the engine ([`engine`]) are separate: the engine decides, the
//! edge translates. Tests and `sluice demo` embed the server by giving it port 0.

pub mod audit;
pub mod config;
pub mod engine;
pub mod http;
pub mod hub;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use sluice_core::{EventKind, NewEvent};
use sluice_store::Store;
use tokio::sync::watch;

pub use config::{ConfigError, InterruptedPolicy, ServerConfig};
pub use engine::Engine;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] sluice_store::StoreError),
    /// The data directory or the port failed.
    #[error("{0}")]
    Io(String),
    /// Start-up recovery failed.
    #[error("recovery after the previous run failed: {0}")]
    Recover(#[from] engine::EngineError),
}

/// A running server.
pub struct Server {
    /// The engine, for embedding callers (demo, tests).
    pub engine: Arc<Engine>,
    /// The bound address.
    pub addr: SocketAddr,
    /// When no one can sign in yet (the first start, or a start after the first setup token
    /// expired unused): the one-time token with which the admin sets a password
    /// (`sluice login --setup-token`, or `/setup?token=` in a browser).
    pub setup_token: Option<String>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    controller: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Validates, opens, recovers, binds and serves in the background.
    pub async fn start(mut config: ServerConfig) -> Result<Server, StartError> {
        config.validate()?;
        // Steps run in workspaces under the data directory with their own working
        // directory, so every path derived from it must be absolute.
        config.data_dir = std::path::absolute(&config.data_dir).map_err(|e| {
            StartError::Io(format!(
                "cannot resolve data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Io(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = Store::open(&config.database_url()).await?;
        let listen = config.listen;
        let engine = Engine::new(store.clone(), config)
            .map_err(|e| StartError::Io(format!("cannot prepare the data directory: {e}")))?;
        engine
            .record(vec![
                NewEvent::new(EventKind::ServerStarted, "system", "server").payload(json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "store": format!("{:?}", store.backend()).to_lowercase(),
                    "pid": std::process::id(),
                })),
            ])
            .await?;
        // The secret store's key, before recovery re-runs anything that may need a secret.
        // A key that cannot be used leaves the server sealed, not stopped.
        let vault = engine
            .open_vault(engine::vault::key_from_env())
            .await
            .map_err(|e| StartError::Io(format!("secret store: {e}")))?;
        if vault.sealed {
            tracing::warn!(
                source = %vault.source,
                expected_key_id = vault.key_id.as_deref().unwrap_or("none"),
                "the server is SEALED: secret operations are refused until `sluice unseal`: {}",
                vault.note.as_deref().unwrap_or("no key")
            );
        } else if let Some(note) = &vault.note {
            // A generated key must be backed up: say so where operators look.
            tracing::warn!(source = %vault.source, "secret store: {note}");
        } else {
            tracing::info!(
                source = %vault.source,
                key_id = vault.key_id.as_deref().unwrap_or(""),
                "secret store unsealed"
            );
        }
        engine.recover().await?;
        engine::incidents::start(engine.clone()).await?;
        let setup_token = engine.bootstrap().await?;
        let auditor = audit::Auditor::open(
            &engine.config.data_dir,
            store.clone(),
            engine.config.checkpoint_interval,
        )
        .map_err(|e| StartError::Io(format!("audit trail: {e}")))?;
        // The first checkpoint before anything is served: it covers everything so far.
        auditor
            .checkpoint()
            .await
            .map_err(|e| StartError::Io(format!("audit trail: {e}")))?;
        tokio::spawn(auditor.run(engine.shutdown_signal()));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        engine.set_bound(addr);
        if let Some(t) = &setup_token {
            tracing::info!(
                "no one can sign in yet: the admin user `admin` has no password; set it within \
                 24 hours at {}/setup?token={t} or with `sluice login --setup-token {t}`",
                engine.base_url()
            );
        }
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(engine.clone().poll_loop());
        let controller = tokio::spawn(engine.clone().controller_loop());
        let app = http::router(engine.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        });
        Ok(Server {
            engine,
            addr,
            setup_token,
            stop,
            task,
            controller,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:7878`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Like [`Server::stop`], and also stops every service instance and proxy (tests, the
    /// demo). A plain stop leaves instances running for the next server to adopt.
    pub async fn stop_all(mut self) {
        // The controller must be gone first, or it would heal what is being stopped.
        self.engine.shutdown();
        let controller = std::mem::replace(&mut self.controller, tokio::spawn(async {}));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), controller).await;
        self.engine.stop_fleet().await;
        self.stop().await;
    }

    /// Stops serving, stops the poller, kills running steps (their runs are recovered as
    /// interrupted at the next start) and closes the store. Service instances keep running;
    /// the next server adopts them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.engine.shutdown();
        // Open SSE streams would hold a graceful shutdown forever; give it a moment.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
        self.engine.store.close().await;
    }
}
