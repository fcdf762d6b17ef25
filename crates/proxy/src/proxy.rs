//! One listener of the proxy: the accept loop, the per-request forwarding path (route, rewrite
//! headers, send with one safe retry, stream back, tunnel upgrades) and the atomic table switch.
//!
//! The hot path takes no lock: it loads the compiled table from an `ArcSwap`, bumps atomics and
//! pops a pooled connection (a `Vec` under an uncontended mutex).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{PathAndQuery, Uri};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::ProxyError;
use crate::body::ProxyBody;
use crate::pool::{BackendPool, killed};
use crate::stats::{Stats, VersionCounters};
use crate::table::{Compiled, RouteTable};
use crate::upstream::{
    self, Conn, ExchangeError, Framing, ReadSide, ReqFraming, ResponseHead, UpstreamBody,
};

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Shutdown phases broadcast to connection tasks.
const RUNNING: u8 = 0;
const GRACEFUL: u8 = 1;
const FORCE: u8 = 2;

/// An HTTP/1.1 reverse proxy on one listener. Cheap to clone: all clones share one listener.
///
/// It serves until [`Proxy::shutdown`]; dropping the handles does not stop it.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

struct Registry {
    pools: HashMap<SocketAddr, Arc<BackendPool>>,
    counters: HashMap<String, Arc<VersionCounters>>,
}

struct Inner {
    table: ArcSwap<Compiled>,
    registry: Mutex<Registry>,
    unrouted: AtomicU64,
    local_addr: SocketAddr,
    http: hyper::server::conn::http1::Builder,
    phase: watch::Sender<u8>,
    active: AtomicUsize,
    idle_notify: Notify,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compiles `table` against the registry, creating pools and counters it does not have yet.
fn compile(reg: &mut Registry, table: RouteTable) -> Compiled {
    let Registry { pools, counters } = reg;
    Compiled::new(
        table,
        |addr| {
            pools
                .entry(addr)
                .or_insert_with(|| BackendPool::new(addr))
                .clone()
        },
        |v| counters.entry(v.to_owned()).or_default().clone(),
    )
}

impl Proxy {
    /// Binds `listen` and serves in the background (tokio tasks); returns at once.
    pub async fn bind(listen: SocketAddr, table: RouteTable) -> Result<Proxy, ProxyError> {
        table.validate()?;
        let (listener, local_addr) = bind(listen).await?;
        let mut reg = Registry {
            pools: HashMap::new(),
            counters: HashMap::new(),
        };
        let compiled = compile(&mut reg, table);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        let inner = Arc::new(Inner {
            table: ArcSwap::from_pointee(compiled),
            registry: Mutex::new(reg),
            unrouted: AtomicU64::new(0),
            local_addr,
            http,
            phase: watch::channel(RUNNING).0,
            active: AtomicUsize::new(0),
            idle_notify: Notify::new(),
            accept: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(inner.clone(), listener));
        *inner.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(Proxy { inner })
    }

    /// The address the proxy listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Atomically replaces the route table: every request that starts after this call sees only
    /// the new table. Requests in flight finish on the backend they were sent to. Connections to
    /// backends no longer in the table are drained: idle pooled connections to them are closed,
    /// active ones finish (up to `drain_timeout_ms`, then closed).
    ///
    /// The table is compiled leniently (invalid sticky rules are skipped); call
    /// [`RouteTable::validate`] first to reject bad input.
    pub fn set_table(&self, table: RouteTable) {
        let drain = Duration::from_millis(table.drain_timeout_ms);
        let keep: std::collections::HashSet<SocketAddr> = table
            .groups
            .iter()
            .flat_map(|g| g.backends.iter().copied())
            .collect();
        let mut reg = self.inner.registry();
        let compiled = compile(&mut reg, table);
        self.inner.table.store(Arc::new(compiled));
        let gone: Vec<SocketAddr> = reg
            .pools
            .keys()
            .filter(|a| !keep.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(pool) = reg.pools.remove(&addr) {
                pool.drain(drain);
            }
        }
    }

    /// The current route table.
    pub fn table(&self) -> RouteTable {
        self.inner.table.load().table.clone()
    }

    /// Per-version counters since start (cumulative; difference two snapshots for a window).
    pub fn stats(&self) -> Stats {
        let reg = self.inner.registry();
        Stats {
            versions: reg
                .counters
                .iter()
                .map(|(v, c)| (v.clone(), c.snapshot()))
                .collect(),
            unrouted: self.inner.unrouted.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, lets in-flight requests finish up to `grace`, then closes everything.
    pub async fn shutdown(self, grace: Duration) {
        let inner = self.inner;
        let accept = inner
            .accept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await;
        }
        inner.phase.send_replace(GRACEFUL);
        let deadline = tokio::time::Instant::now() + grace;
        wait_idle(&inner, deadline).await;
        inner.phase.send_replace(FORCE);
        for pool in inner.registry().pools.values() {
            pool.kill_now();
        }
        // Forced connections end on their next poll; give them a moment to run their cleanup.
        wait_idle(&inner, tokio::time::Instant::now() + Duration::from_secs(1)).await;
    }
}

/// Binds `addr`; returns the listener and the address it really has (the port of `:0`).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let bound = match TcpListener::bind(addr).await {
        Ok(l) => l.local_addr().map(|local| (l, local)),
        Err(e) => Err(e),
    };
    bound.map_err(|source| ProxyError::Bind { addr, source })
}

async fn wait_idle(inner: &Inner, deadline: tokio::time::Instant) {
    loop {
        let notified = inner.idle_notify.notified();
        if inner.active.load(Ordering::Acquire) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                inner.active.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(serve_conn(inner.clone(), stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}; retrying in 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Decrements the active-connection count when a connection task ends, however it ends.
struct ActiveGuard(Arc<Inner>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_notify.notify_waiters();
        }
    }
}

async fn serve_conn(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    let guard = ActiveGuard(inner.clone());
    let _ = stream.set_nodelay(true);
    let client_ip = ip_header(peer.ip());
    let svc_inner = inner.clone();
    let svc =
        hyper::service::service_fn(move |req| forward(svc_inner.clone(), client_ip.clone(), req));
    let conn = inner
        .http
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut phase = inner.phase.subscribe();
    let graceful = tokio::select! {
        r = conn.as_mut() => {
            log_conn_end(r);
            false
        }
        _ = phase.wait_for(|p| *p >= GRACEFUL) => true,
    };
    if graceful {
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            r = conn.as_mut() => log_conn_end(r),
            _ = phase.wait_for(|p| *p >= FORCE) => {}
        }
    }
    drop(guard);
}

fn log_conn_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!("client connection ended: {e}");
    }
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The proxy's own plain-text answer.
fn plain(status: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response(status, headers, ProxyBody::text(msg))
}

fn bad_gateway(msg: &'static str) -> Response<ProxyBody> {
    plain(StatusCode::BAD_GATEWAY, msg)
}

/// True if `headers` ask for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && upstream::has_token(headers, header::CONNECTION, "upgrade")
}

/// Removes hop-by-hop headers: the fixed list and every header named in `Connection`.
/// When `upgrade` is set, `Upgrade` is kept and `Connection: upgrade` restored.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Rewrites a client request for the backend: origin-form URI (absolute-form's authority
/// becomes `Host`), HTTP/1.1, hop-by-hop headers removed, `X-Forwarded-*` added.
fn prepare_request(req: &mut Request<Incoming>, client_ip: &HeaderValue, upgrade: bool) {
    if req.uri().authority().is_some() {
        if let Ok(host) = HeaderValue::from_str(req.uri().authority().map_or("", |a| a.as_str())) {
            req.headers_mut().insert(header::HOST, host);
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    let mut prev = headers.get_all(&X_FORWARDED_FOR).iter();
    match (prev.next(), prev.next()) {
        (None, _) => {
            headers.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        }
        (Some(first), more) => {
            // Join every earlier hop (one or several headers) and append the client.
            let mut v = first.as_bytes().to_vec();
            for h in more.into_iter().chain(prev) {
                v.extend_from_slice(b", ");
                v.extend_from_slice(h.as_bytes());
            }
            v.extend_from_slice(b", ");
            v.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
    // A proxy behind a TLS terminator keeps the terminator's value.
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
}

/// Methods a request may be repeated with when a reused connection turned out dead (RFC 9110
/// section 9.2.2): the backend cannot have acted on a request it never answered, and even if it
/// did, repeating it changes nothing.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Proxies one request. Never fails: every problem becomes a response.
async fn forward(
    inner: Arc<Inner>,
    client_ip: HeaderValue,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        // A reverse proxy has no business opening tunnels to arbitrary hosts.
        let mut res = Response::new(ProxyBody::text("connect is not supported\n"));
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(res);
    }
    let table = inner.table.load_full();
    let Some(gi) = table.choose(req.headers()) else {
        inner.unrouted.fetch_add(1, Ordering::Relaxed);
        return Ok(bad_gateway("no backend available\n"));
    };
    let Some(group) = table.groups.get(gi) else {
        return Ok(bad_gateway("no backend available\n"));
    };
    let counters = &group.counters;
    counters.request();
    let start = Instant::now();
    let upgrade = wants_upgrade(req.headers());
    prepare_request(&mut req, &client_ip, upgrade);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let framing = ReqFraming::of(&parts.headers, &body);
    let mut body = Some(body);

    // First attempt on the group's next backend. One retry when the request provably was not
    // acted on: the connect failed (another backend of the group, or of another group if this
    // one has no other), or a reused connection was found dead before any byte of a response
    // arrived and the request has no body and an idempotent method (the same backend, afresh).
    let mut backend = group.next_backend();
    let mut serving = counters;
    let mut retried = false;
    let timeout = table.table.upstream_timeout_ms;
    loop {
        let Some(pool) = backend else {
            counters.response(502, start.elapsed());
            return Ok(bad_gateway("no backend available\n"));
        };
        let (conn, reused) = match pool.checkout().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("{e}");
                serving.connect_failure();
                if retried {
                    serving.response(502, start.elapsed());
                    return Ok(bad_gateway("backend unavailable\n"));
                }
                retried = true;
                counters.retry();
                match retry_target(&table, gi, pool) {
                    Some((b, c)) => (backend, serving) = (Some(b), c),
                    None => backend = None,
                }
                continue;
            }
        };
        let exchange = upstream::exchange(conn, &parts, framing, &mut body);
        let killed_backend = killed(pool.kill_signal());
        let sent = tokio::select! {
            biased;
            r = exchange => Some(r),
            () = killed_backend => None,
            () = upstream_deadline(timeout) => {
                // No answer in time: the connection is dropped (not pooled) and the client gets
                // a 504, counted as a 5xx of this version so the canary analysis sees a hang.
                serving.response(504, start.elapsed());
                return Ok(plain(StatusCode::GATEWAY_TIMEOUT, "backend did not answer in time\n"));
            }
        };
        let Some(sent) = sent else {
            serving.response(502, start.elapsed());
            return Ok(bad_gateway("backend drained\n"));
        };
        match sent {
            Ok((head, side)) => {
                serving.response(head.status.as_u16(), start.elapsed());
                return Ok(respond(&inner, head, side, pool, client_upgrade));
            }
            Err(ExchangeError::NoResponse(e))
                if reused
                    && !retried
                    && framing == ReqFraming::None
                    && idempotent(&parts.method) =>
            {
                tracing::debug!("reused backend connection was dead: {e}; retrying");
                retried = true;
                counters.retry();
            }
            Err(e) => {
                tracing::debug!(reused, "backend request failed: {e}");
                serving.response(502, start.elapsed());
                return Ok(bad_gateway("backend failed\n"));
            }
        }
    }
}

/// Resolves after `ms` milliseconds; never when `ms` is 0 (no upstream timeout).
async fn upstream_deadline(ms: u64) {
    if ms == 0 {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Where to retry after `failed` refused a connection: the backend after it in its group (the
/// shared round-robin cursor is left alone, so a dead backend does not shift the rotation), else
/// the next backend of the first other group with weight and backends.
fn retry_target<'a>(
    table: &'a Compiled,
    gi: usize,
    failed: &Arc<BackendPool>,
) -> Option<(&'a Arc<BackendPool>, &'a Arc<VersionCounters>)> {
    let group = table.groups.get(gi)?;
    let n = group.backends.len();
    let at = group
        .backends
        .iter()
        .position(|b| Arc::ptr_eq(b, failed))
        .unwrap_or(0);
    if let Some(b) = (1..n)
        .filter_map(|k| group.backends.get((at + k) % n))
        .find(|b| b.addr != failed.addr)
    {
        return Some((b, &group.counters));
    }
    table
        .groups
        .iter()
        .enumerate()
        .filter(|(i, g)| {
            *i != gi
                && table.table.groups.get(*i).is_some_and(|t| t.weight > 0)
                && !g.backends.is_empty()
        })
        .find_map(|(_, g)| g.next_backend().map(|b| (b, &g.counters)))
}

/// Turns the backend's response into the client's: hop-by-hop headers stripped, body streamed
/// (or handed over whole when it arrived with the head), a `101` tunnelled.
fn respond(
    inner: &Inner,
    head: ResponseHead,
    side: ReadSide,
    pool: &Arc<BackendPool>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    let ResponseHead {
        status,
        mut headers,
        framing,
        keep_alive,
    } = head;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), ReadSide::Whole(conn)) = (client_upgrade, side) else {
            // A 101 nobody asked for cannot be relayed.
            return bad_gateway("backend switched protocols unasked\n");
        };
        strip_hop_by_hop(&mut headers, true);
        let phase = inner.phase.subscribe();
        tokio::spawn(tunnel(client_upgrade, conn, pool.kill_signal(), phase));
        return response(status, headers, ProxyBody::Full(None));
    }
    strip_hop_by_hop(&mut headers, false);
    match (framing, side) {
        (Framing::Length(n), ReadSide::Whole(mut conn)) if conn.buf.len() as u64 >= n => {
            // The whole body came with the head: hand it over whole, pool the connection now.
            let body = conn.buf.split_to(usize::try_from(n).unwrap_or(usize::MAX));
            if keep_alive && conn.buf.is_empty() {
                pool.put(conn);
            }
            let body = (!body.is_empty()).then(|| body.freeze());
            response(status, headers, ProxyBody::Full(body))
        }
        (framing, side) => {
            let body = UpstreamBody::new(side, framing, keep_alive, pool.clone());
            response(status, headers, ProxyBody::Upstream(body))
        }
    }
}

fn response(status: StatusCode, headers: HeaderMap, body: ProxyBody) -> Response<ProxyBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    conn: Conn,
    kill: watch::Receiver<bool>,
    mut phase: watch::Receiver<u8>,
) {
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let Conn {
        stream: mut backend,
        buf: early,
        ..
    } = conn;
    tokio::select! {
        r = async {
            // Bytes the backend sent right after its 101 go first.
            if !early.is_empty() {
                tokio::io::AsyncWriteExt::write_all(&mut client, &early).await?;
            }
            tokio::io::copy_bidirectional(&mut client, &mut backend).await
        } => {
            if let Err(e) = r {
                tracing::debug!("tunnel ended: {e}");
            }
        }
        () = killed(kill) => tracing::debug!("tunnel closed: backend drained"),
        _ = phase.wait_for(|p| *p >= FORCE) => tracing::debug!("tunnel closed: proxy shut down"),
    }
}
