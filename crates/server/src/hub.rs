//! Change notification between the engine and live views (SSE streams, `wait` requests).
//!
//! Every store write that a live view may care about is followed by [`Hub::bump`]. Views
//! hold a receiver, wake on a bump (or a short timeout, so a missed bump only delays) and
//! re-read the store from their cursor. The store stays the single source of truth: nothing
//! is delivered through the hub that is not already committed.

use tokio::sync::watch;

/// A counter that moves whenever something was committed.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: watch::Sender::new(0),
        }
    }
}

impl Hub {
    /// Tells every subscriber that the store changed.
    pub fn bump(&self) {
        self.tx.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees future bumps.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
