//! Standalone mode (`sluice proxy`): named listeners plus a small JSON admin API on a separate
//! loopback address, with the routes kept in a state file so a restarted proxy comes back with
//! the same tables. Also [`switch`], the admin API's one-call client.
//!
//! Admin API (all JSON; errors are `{"error": "..."}`):
//! - `GET /healthz`: `ok`
//! - `GET /listeners`: every listener with its table and stats
//! - `POST /listeners` with `{name, listen, table}`: add a listener (201)
//! - `GET /listeners/{name}`, `GET /listeners/{name}/stats`, `GET /listeners/{name}/table`
//! - `PUT /listeners/{name}/table` with a route table: atomic switch
//! - `DELETE /listeners/{name}`: stop accepting, drain, remove (204)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::{Proxy, ProxyError, RouteTable, Stats};

/// Largest admin request body accepted.
const MAX_ADMIN_BODY: usize = 1 << 20;
/// How long [`switch`] waits for the admin API.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One named listener and its initial routes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in the admin API's paths: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Address to accept client traffic on.
    pub listen: SocketAddr,
    /// Initial route table.
    pub table: RouteTable,
}

/// What the admin API reports about a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// The listener's name.
    pub name: String,
    /// The address it really listens on.
    pub listen: SocketAddr,
    /// Its current route table.
    pub table: RouteTable,
    /// Its counters since it started.
    pub stats: Stats,
}

/// Configuration of [`run_standalone`].
#[derive(Clone, Debug, PartialEq)]
pub struct StandaloneConfig {
    /// Address of the admin API; keep it on loopback, it has no authentication.
    pub admin: SocketAddr,
    /// Listeners to start with. With a state file, listeners recorded there win over these
    /// (they carry the latest switches); listeners only named here are added.
    pub listeners: Vec<ListenerConfig>,
    /// Where to keep the routes across restarts; rewritten after every change.
    pub state_path: Option<PathBuf>,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    listeners: Vec<ListenerConfig>,
}

struct AdminState {
    listeners: Mutex<BTreeMap<String, Proxy>>,
    state_path: Option<PathBuf>,
    grace: Duration,
}

/// A running standalone proxy: listeners plus admin API.
#[derive(Debug)]
pub struct Standalone {
    admin_addr: SocketAddr,
    state: Arc<AdminState>,
    admin_task: JoinHandle<()>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

/// Runs the proxy's listeners and admin API until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish (up to `shutdown_grace`).
pub async fn run_standalone(
    config: StandaloneConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let running = Standalone::start(config).await?;
    shutdown.await;
    running.shutdown().await;
    Ok(())
}

impl Standalone {
    /// Starts the listeners (from the state file if there is one) and the admin API; returns
    /// once everything is bound.
    pub async fn start(config: StandaloneConfig) -> Result<Standalone, ProxyError> {
        let mut wanted: Vec<ListenerConfig> = match &config.state_path {
            Some(path) => load_state(path).await?,
            None => Vec::new(),
        };
        for l in config.listeners {
            if !wanted.iter().any(|w| w.name == l.name) {
                wanted.push(l);
            }
        }
        for l in &wanted {
            check_name(&l.name)?;
            l.table.validate()?;
        }
        let (admin_listener, admin_addr) = crate::proxy::bind(config.admin).await?;
        let mut proxies = BTreeMap::new();
        for l in wanted {
            if proxies.contains_key(&l.name) {
                return Err(ProxyError::InvalidListener(format!(
                    "`{}` is configured twice; give each listener its own name",
                    l.name
                )));
            }
            let proxy = match Proxy::bind(l.listen, l.table).await {
                Ok(p) => p,
                Err(e) => {
                    for p in proxies.into_values() {
                        Proxy::shutdown(p, Duration::ZERO).await;
                    }
                    return Err(e);
                }
            };
            proxies.insert(l.name, proxy);
        }
        let state = Arc::new(AdminState {
            listeners: Mutex::new(proxies),
            state_path: config.state_path,
            grace: config.shutdown_grace,
        });
        {
            let listeners = state.listeners.lock().await;
            state.persist(&listeners).await?;
        }
        let admin_task = tokio::spawn(admin_loop(state.clone(), admin_listener));
        Ok(Standalone {
            admin_addr,
            state,
            admin_task,
        })
    }

    /// The admin API's address (with the real port when bound to port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The listener called `name`, if it exists.
    pub async fn listener(&self, name: &str) -> Option<Proxy> {
        self.state.listeners.lock().await.get(name).cloned()
    }

    /// Stops the admin API and every listener, letting in-flight requests finish up to the
    /// configured grace.
    pub async fn shutdown(self) {
        self.admin_task.abort();
        let proxies: Vec<Proxy> = std::mem::take(&mut *self.state.listeners.lock().await)
            .into_values()
            .collect();
        let grace = self.state.grace;
        let mut tasks = tokio::task::JoinSet::new();
        for p in proxies {
            tasks.spawn(p.shutdown(grace));
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn check_name(name: &str) -> Result<(), ProxyError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ProxyError::InvalidListener(format!(
            "name `{name}` must be 1-64 letters, digits, `.`, `_` or `-`"
        )));
    }
    Ok(())
}

async fn load_state(path: &Path) -> Result<Vec<ListenerConfig>, ProxyError> {
    let err = |reason: String| ProxyError::State {
        path: path.to_owned(),
        reason,
    };
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map(|s| s.listeners)
            .map_err(|e| err(format!("not a valid state file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(format!("cannot read: {e}"))),
    }
}

impl AdminState {
    /// Writes the listeners' current routes to the state file (atomically: temp file, rename).
    async fn persist(&self, listeners: &BTreeMap<String, Proxy>) -> Result<(), ProxyError> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        let err = |reason: String| ProxyError::State {
            path: path.clone(),
            reason,
        };
        let state = StateFile {
            listeners: listeners
                .iter()
                .map(|(name, p)| ListenerConfig {
                    name: name.clone(),
                    listen: p.local_addr(),
                    table: p.table(),
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| err(format!("cannot write {}: {e}", tmp.display())))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| err(format!("cannot replace: {e}")))
    }
}

async fn admin_loop(state: Arc<AdminState>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}; retrying in 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| admin(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("admin connection ended: {e}");
            }
        });
    }
}

type AdminResponse = Response<Full<Bytes>>;

fn json<T: Serialize>(status: StatusCode, value: &T) -> AdminResponse {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut res = Response::new(Full::new(Bytes::from(body)));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}"),
        ),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> AdminResponse {
    json(status, &serde_json::json!({ "error": message.into() }))
}

fn info(name: &str, p: &Proxy) -> ListenerInfo {
    ListenerInfo {
        name: name.to_owned(),
        listen: p.local_addr(),
        table: p.table(),
        stats: p.stats(),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, AdminResponse> {
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body (at most 1 MiB): {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid json: {e}")))
}

async fn admin(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<AdminResponse, Infallible> {
    Ok(route(state, req).await.unwrap_or_else(|e| e))
}

async fn route(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<AdminResponse, AdminResponse> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(Response::new(Full::new(Bytes::from_static(b"ok\n")))),
        (&Method::GET, ["listeners"]) => {
            let listeners = state.listeners.lock().await;
            let all: Vec<ListenerInfo> = listeners.iter().map(|(n, p)| info(n, p)).collect();
            Ok(json(StatusCode::OK, &all))
        }
        (&Method::POST, ["listeners"]) => {
            let l: ListenerConfig = read_json(req).await?;
            check_name(&l.name).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
            l.table
                .validate()
                .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
            let mut listeners = state.listeners.lock().await;
            if listeners.contains_key(&l.name) {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!(
                        "listener `{}` exists; delete it first or pick another name",
                        l.name
                    ),
                ));
            }
            let proxy = Proxy::bind(l.listen, l.table)
                .await
                .map_err(|e| error(StatusCode::CONFLICT, e.to_string()))?;
            let body = info(&l.name, &proxy);
            listeners.insert(l.name, proxy);
            persisted(&state, &listeners).await?;
            Ok(json(StatusCode::CREATED, &body))
        }
        (_, ["listeners", name, rest @ ..]) => {
            listener_route(state, req, &method, name, rest).await
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}; see the admin api in the docs"),
        )),
    }
}

async fn listener_route(
    state: Arc<AdminState>,
    req: Request<Incoming>,
    method: &Method,
    name: &str,
    rest: &[&str],
) -> Result<AdminResponse, AdminResponse> {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            format!("no listener `{name}`; GET /listeners lists them"),
        )
    };
    match (method, rest) {
        (&Method::GET, []) => {
            let listeners = state.listeners.lock().await;
            let p = listeners.get(name).ok_or_else(not_found)?;
            Ok(json(StatusCode::OK, &info(name, p)))
        }
        (&Method::GET, ["stats"]) => {
            let listeners = state.listeners.lock().await;
            let p = listeners.get(name).ok_or_else(not_found)?;
            Ok(json(StatusCode::OK, &p.stats()))
        }
        (&Method::GET, ["table"]) => {
            let listeners = state.listeners.lock().await;
            let p = listeners.get(name).ok_or_else(not_found)?;
            Ok(json(StatusCode::OK, &p.table()))
        }
        (&Method::PUT, ["table"]) => {
            let table: RouteTable = read_json(req).await?;
            table
                .validate()
                .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
            let listeners = state.listeners.lock().await;
            let p = listeners.get(name).ok_or_else(not_found)?;
            p.set_table(table);
            let body = p.table();
            persisted(&state, &listeners).await?;
            Ok(json(StatusCode::OK, &body))
        }
        (&Method::DELETE, []) => {
            let mut listeners = state.listeners.lock().await;
            let p = listeners.remove(name).ok_or_else(not_found)?;
            persisted(&state, &listeners).await?;
            drop(listeners);
            let grace = Duration::from_millis(p.table().drain_timeout_ms);
            tokio::spawn(p.shutdown(grace));
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::NO_CONTENT;
            Ok(res)
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!("no route for {method} on listener `{name}`"),
        )),
    }
}

async fn persisted(
    state: &AdminState,
    listeners: &BTreeMap<String, Proxy>,
) -> Result<(), AdminResponse> {
    state.persist(listeners).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change is live but was not saved: {e}"),
        )
    })
}

/// Replaces the route table of `listener` through the admin API at `admin` (one HTTP/1.1
/// request on a fresh connection). Returns once the proxy has switched.
pub async fn switch(
    admin: SocketAddr,
    listener: &str,
    table: &RouteTable,
) -> Result<(), ProxyError> {
    check_name(listener)?;
    let fail = |reason: String| ProxyError::Admin { admin, reason };
    let body =
        serde_json::to_vec(table).map_err(|e| fail(format!("cannot encode the table: {e}")))?;
    let exchange = async {
        let mut stream = TcpStream::connect(admin)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}; is `sluice proxy` running?")))?;
        let _ = stream.set_nodelay(true);
        let mut request = format!(
            "PUT /listeners/{listener}/table HTTP/1.1\r\nHost: {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        stream
            .write_all(&request)
            .await
            .map_err(|e| fail(format!("cannot send: {e}")))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_ADMIN_BODY as u64)
            .read_to_end(&mut response)
            .await
            .map_err(|e| fail(format!("cannot read the answer: {e}")))?;
        Ok::<_, ProxyError>(response)
    };
    let response = tokio::time::timeout(SWITCH_TIMEOUT, exchange)
        .await
        .map_err(|_| fail("no answer within 10 s".to_owned()))??;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("answer is not http".to_owned()))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    Err(fail(format!("status {status}: {message}")))
}
