//! The origin of the request being served: its source address and request id, carried in a
//! task-local so that every event a request causes records them without each call passing
//! them down. The HTTP edge sets it around each request ([`scope`]); events written outside
//! one (the controller, the poller, spawned runs) carry none, or set their own.

use std::future::Future;

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (`ip:port`), if known.
    pub source: Option<String>,
    /// The request id (also sent back as `x-request-id`).
    pub request_id: String,
}

tokio::task_local! {
    static ORIGIN: Origin;
}

/// Runs `f` with `origin` as the current origin.
pub async fn scope<F: Future>(origin: Origin, f: F) -> F::Output {
    ORIGIN.scope(origin, f).await
}

/// The current origin, if the caller runs inside [`scope`].
pub fn current() -> Option<Origin> {
    ORIGIN.try_with(Clone::clone).ok()
}
