//! The audit trail's signer: the event log is a hash chain (every entry commits to the one
//! before it, computed by the store in the entry's own transaction); this module signs a
//! checkpoint of the chain's head with the server's Ed25519 key at start and then at a fixed
//! interval, also when nothing happened, so that a deleted tail or a stopped server shows as a
//! gap in the checkpoints (`sluice audit verify`).
//!
//! The private key lives in `DATA_DIR/audit/signing.key` (created at first start, mode 0600);
//! the public key is written beside it as `signing.pub` for verifiers and `sluice audit
//! public-key`. Whoever holds the database alone cannot forge a checkpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_audit::{Checkpoint, Hash, Signer};
use sluice_store::Store;
use tokio::sync::watch;

use crate::engine::{EngineError, now_ms};

/// The key file, relative to the data directory.
pub const KEY_FILE: &str = "audit/signing.key";
/// The public key file, relative to the data directory.
pub const PUBLIC_KEY_FILE: &str = "audit/signing.pub";

/// Signs checkpoints of the event log.
pub struct Auditor {
    signer: Signer,
    store: Store,
    interval: Duration,
}

impl Auditor {
    /// Loads (or creates) the signing key of `data_dir` and publishes its public key.
    pub fn open(data_dir: &Path, store: Store, interval: Duration) -> Result<Auditor, EngineError> {
        let key = data_dir.join(KEY_FILE);
        if let Some(dir) = key.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                EngineError::Internal(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let signer = Signer::load_or_create(&key)
            .map_err(|e| EngineError::Internal(format!("audit signing key: {e}")))?;
        let public: PathBuf = data_dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&public, format!("{}\n", signer.public_key())).map_err(|e| {
            EngineError::Internal(format!("cannot write {}: {e}", public.display()))
        })?;
        Ok(Auditor {
            signer,
            store,
            interval,
        })
    }

    /// Signs and stores a checkpoint of the chain's current head.
    pub async fn checkpoint(&self) -> Result<Checkpoint, EngineError> {
        let (seq, hash) = self.store.last_event().await?.unwrap_or((0, Hash::GENESIS));
        let cp = self.signer.sign(seq, hash, now_ms());
        self.store.add_checkpoint(&cp).await?;
        Ok(cp)
    }

    /// Signs a checkpoint now and then every interval until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "signing an audit checkpoint failed");
            }
            let stopping = tokio::select! {
                _ = tokio::time::sleep(self.interval) => false,
                r = shutdown.wait_for(|s| *s) => { drop(r); true }
            };
            if stopping {
                // A last checkpoint on the way out (best effort: the store may be closing).
                let _ = self.checkpoint().await;
                return;
            }
        }
    }
}
