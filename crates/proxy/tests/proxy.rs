//! End-to-end tests of the proxy over real TCP on 127.0.0.1: small hyper upstreams that say
//! which version they are, hyper clients with keep-alive, the admin API and the state file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sluice_proxy::{
    Group, ListenerConfig, Proxy, RouteTable, Standalone, StandaloneConfig, StickyRule,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

type Body = BoxBody<Bytes, Infallible>;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `cond` until it holds (bounded); for state that has no event to wait on.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// upstreams

/// A backend answering as one version. Routes: `/` -> `version=V`, `/echo` streams the request
/// body back, `/headers` lists the request headers, `/hold` answers after `release` is notified,
/// `/status/N` answers N, `/ws` accepts an upgrade and echoes bytes.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    release: Arc<Notify>,
    holding: Arc<AtomicUsize>,
}

async fn upstream(version: &'static str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let holding = Arc::new(AtomicUsize::new(0));
    let (a, o, r, h) = (
        accepted.clone(),
        open.clone(),
        release.clone(),
        holding.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let (o, r, h) = (o.clone(), r.clone(), h.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    upstream_handle(version, r.clone(), h.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Upstream {
        addr,
        accepted,
        open,
        release,
        holding,
    }
}

fn text(status: u16, s: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(s)).boxed());
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res
}

async fn upstream_handle(
    version: &'static str,
    release: Arc<Notify>,
    holding: Arc<AtomicUsize>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    Ok(match path.as_str() {
        "/echo" => Response::new(
            req.into_body()
                .map_err(|_| -> Infallible { unreachable!("test body error") })
                .boxed(),
        ),
        "/headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            text(200, lines.join("\n"))
        }
        "/hold" => {
            let released = release.notified();
            holding.fetch_add(1, Ordering::SeqCst);
            released.await;
            text(200, format!("version={version} held"))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut res = text(101, String::new());
            res.headers_mut().insert("upgrade", "echo".parse().unwrap());
            res.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            res
        }
        p if p.starts_with("/status/") => {
            let code = p.trim_start_matches("/status/").parse().unwrap_or(500);
            text(code, format!("version={version}"))
        }
        _ => text(200, format!("version={version}")),
    })
}

/// An address nobody listens on (bound, then closed).
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// clients

/// A raw connection to `addr` that has sent `bytes`.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// One keep-alive HTTP/1.1 client connection.
struct Client {
    send: SendRequest<Body>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Client { send }
    }

    async fn request(&mut self, req: Request<Body>) -> Result<Response<Incoming>, hyper::Error> {
        self.send.ready().await?;
        self.send.send_request(req).await
    }

    /// GET `path` with `headers`; status and body, or the error as a string.
    async fn try_get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, String), String> {
        let mut b = Request::get(path).header("host", "app.example");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .request(b.body(Empty::new().boxed()).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        within("a GET", self.try_get(path, &[])).await.unwrap()
    }
}

/// Sends `GET /hold` through the proxy at `addr` on a connection of its own and returns once
/// `a` holds it; the handle yields the response after `a.release` is notified.
async fn hold_request(
    addr: SocketAddr,
    a: &Upstream,
) -> tokio::task::JoinHandle<Result<(StatusCode, String), String>> {
    let mut slow = Client::connect(addr).await;
    let held = tokio::spawn(async move { slow.try_get("/hold", &[]).await });
    eventually("request held by A", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    held
}

fn group(version: &str, weight: u32, backends: Vec<SocketAddr>) -> Group {
    Group {
        version: version.into(),
        weight,
        backends,
    }
}

fn table(groups: Vec<Group>) -> RouteTable {
    RouteTable {
        groups,
        sticky: Vec::new(),
        drain_timeout_ms: 10_000,
        upstream_timeout_ms: 60_000,
    }
}

async fn proxy(t: RouteTable) -> Proxy {
    Proxy::bind("127.0.0.1:0".parse().unwrap(), t)
        .await
        .unwrap()
}

fn count_versions(bodies: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for b in bodies {
        *m.entry(b.clone()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// tests

#[tokio::test]
async fn get_and_streamed_post_pass_through_with_proxy_headers() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let mut c = Client::connect(p.local_addr()).await;
    assert_eq!(c.get("/").await, (StatusCode::OK, "version=A".into()));

    // Request headers: Host kept, X-Forwarded-* added, hop-by-hop gone (including the ones
    // named in Connection), end-to-end headers kept.
    let (status, headers) = within(
        "headers",
        c.try_get(
            "/headers",
            &[
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"),
                ("x-end", "kept"),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains("host: app.example"), "{headers}");
    assert!(
        headers.contains("x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1"),
        "{headers}"
    );
    assert!(headers.contains("x-forwarded-proto: http"), "{headers}");
    assert!(headers.contains("x-end: kept"), "{headers}");
    for gone in ["x-hop:", "keep-alive:", "te:"] {
        assert!(!headers.contains(gone), "{gone} leaked: {headers}");
    }

    // A POST whose body is streamed both ways: the first chunk comes back before the second is
    // sent, so neither direction buffers the whole body.
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
    let req = Request::post("/echo")
        .header("host", "app.example")
        .body(body.boxed())
        .unwrap();
    let res = within("echo headers", c.request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut res_body = res.into_body();
    let mut got = Vec::new();
    for chunk in ["first chunk;", "second chunk;", "third"] {
        tx.send_data(Bytes::from(chunk)).await.unwrap();
        let frame: Frame<Bytes> = within("echoed chunk", res_body.frame())
            .await
            .unwrap()
            .unwrap();
        got.extend_from_slice(&frame.into_data().unwrap());
    }
    drop(tx);
    while let Some(f) = within("echo end", res_body.frame()).await {
        got.extend_from_slice(&f.unwrap().into_data().unwrap_or_default());
    }
    assert_eq!(got, b"first chunk;second chunk;third");

    // A large fixed-length body arrives intact.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("/echo")
        .header("host", "app.example")
        .body(Full::new(Bytes::from(big.clone())).boxed())
        .unwrap();
    let res = within("big echo", c.request(req)).await.unwrap();
    let body = within("big body", res.into_body().collect()).await.unwrap();
    assert_eq!(body.to_bytes().as_ref(), big.as_slice());
    assert_eq!(c.get("/").await.1, "version=A");
}

#[tokio::test]
async fn keep_alive_reuses_client_and_upstream_connections() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let mut c = Client::connect(p.local_addr()).await;
    for _ in 0..50 {
        assert_eq!(c.get("/").await.1, "version=A");
    }
    assert_eq!(
        a.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection, reused"
    );
    // A second client connection still reuses the pooled upstream connection.
    let mut c2 = Client::connect(p.local_addr()).await;
    assert_eq!(c2.get("/").await.1, "version=A");
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn weighted_split_is_exact_and_zero_weight_gets_nothing() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let p = proxy(table(vec![
        group("A", 90, vec![a.addr]),
        group("B", 10, vec![b.addr]),
    ]))
    .await;
    let mut c = Client::connect(p.local_addr()).await;
    let mut bodies = Vec::new();
    for _ in 0..1000 {
        bodies.push(c.get("/").await.1);
    }
    let n = count_versions(&bodies);
    assert_eq!(n.get("version=A"), Some(&900));
    assert_eq!(n.get("version=B"), Some(&100));
    // Smooth: never two canary requests in a row at 90/10.
    assert!(
        !bodies
            .windows(2)
            .any(|w| w[0] == "version=B" && w[1] == "version=B")
    );

    p.set_table(table(vec![
        group("A", 100, vec![a.addr]),
        group("B", 0, vec![b.addr]),
    ]));
    let before = b.accepted.load(Ordering::SeqCst);
    let stats_before = p.stats().versions.get("B").cloned().unwrap();
    for _ in 0..300 {
        assert_eq!(c.get("/").await.1, "version=A");
    }
    assert_eq!(p.stats().versions["B"].since(&stats_before).requests, 0);
    assert_eq!(b.accepted.load(Ordering::SeqCst), before);

    // A group with weight but no backends is skipped, not answered with 502s.
    p.set_table(table(vec![
        group("A", 1, vec![a.addr]),
        group("C", 99, vec![]),
    ]));
    for _ in 0..20 {
        assert_eq!(c.get("/").await, (StatusCode::OK, "version=A".into()));
    }
}

#[tokio::test]
async fn sticky_header_and_cookie_pick_their_version() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let mut t = table(vec![
        group("A", 1, vec![a.addr]),
        group("B", 0, vec![b.addr]),
    ]);
    t.sticky = vec![
        StickyRule {
            header: Some("X-Canary".into()),
            cookie: None,
            value: "yes".into(),
            version: "B".into(),
        },
        StickyRule {
            header: None,
            cookie: Some("beta".into()),
            value: "1".into(),
            version: "B".into(),
        },
    ];
    let p = proxy(t).await;
    let mut c = Client::connect(p.local_addr()).await;
    let get = |h: &'static [(&'static str, &'static str)]| h;
    for (headers, want) in [
        (get(&[]), "version=A"),
        (get(&[("x-canary", "yes")]), "version=B"),
        (get(&[("x-canary", "no")]), "version=A"),
        (get(&[("cookie", "session=abc; beta=1")]), "version=B"),
        (get(&[("cookie", "beta=10")]), "version=A"),
        (get(&[("cookie", "a=1"), ("cookie", "beta=1")]), "version=B"),
    ] {
        for _ in 0..3 {
            let (s, body) = within("sticky", c.try_get("/", headers)).await.unwrap();
            assert_eq!((s, body.as_str()), (StatusCode::OK, want), "{headers:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_under_load_loses_nothing_and_takes_effect_at_once() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let ta = RouteTable::single("A", vec![a.addr]);
    let tb = RouteTable::single("B", vec![b.addr]);
    let p = proxy(ta.clone()).await;
    // epoch k: switch k has completed; begun k: switch k has started. Even switches serve A.
    let epoch = Arc::new(AtomicU64::new(0));
    let begun = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (epoch, done, stop, addr) = (epoch.clone(), done.clone(), stop.clone(), p.local_addr());
        let begun = begun.clone();
        load.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let (mut errors, mut stale) = (Vec::new(), 0u64);
            while stop.load(Ordering::SeqCst) == 0 {
                let e = epoch.load(Ordering::SeqCst);
                match tokio::time::timeout(WAIT, c.try_get("/", &[])).await {
                    Ok(Ok((StatusCode::OK, body))) => {
                        let want = if e % 2 == 0 { "version=A" } else { "version=B" };
                        // Sent after switch e completed: must be answered by its version unless
                        // switch e+1 began meanwhile.
                        if body != want && begun.load(Ordering::SeqCst) == e {
                            stale += 1;
                        }
                    }
                    other => errors.push(format!("{other:?}")),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            (errors, stale)
        }));
    }
    eventually("load running", || done.load(Ordering::SeqCst) > 100).await;
    for k in 1..=50u64 {
        begun.store(k, Ordering::SeqCst);
        p.set_table(if k % 2 == 1 { tb.clone() } else { ta.clone() });
        epoch.store(k, Ordering::SeqCst);
        let target = done.load(Ordering::SeqCst) + 40;
        eventually("requests after a switch", || {
            done.load(Ordering::SeqCst) >= target
        })
        .await;
    }
    stop.store(1, Ordering::SeqCst);
    let mut total_errors = Vec::new();
    let mut total_stale = 0;
    for t in load {
        let (errors, stale) = within("load task", t).await.unwrap();
        total_errors.extend(errors);
        total_stale += stale;
    }
    assert!(total_errors.is_empty(), "failed requests: {total_errors:?}");
    assert_eq!(
        total_stale, 0,
        "requests answered by the old version after a switch"
    );
    assert!(done.load(Ordering::SeqCst) > 2000);
    let s = p.stats();
    assert_eq!(
        s.versions["A"].responses_5xx + s.versions["B"].responses_5xx,
        0
    );
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_old_version_and_old_connections_drain() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let held = hold_request(p.local_addr(), &a).await;
    let mut warm = Client::connect(p.local_addr()).await;
    assert_eq!(warm.get("/").await.1, "version=A"); // leaves an idle pooled connection to A
    assert_eq!(a.open.load(Ordering::SeqCst), 2);

    p.set_table(RouteTable::single("B", vec![b.addr]));
    // New requests go to B at once; the idle connection to A is closed, the busy one stays.
    assert_eq!(warm.get("/").await.1, "version=B");
    eventually("idle connection to A closed", || {
        a.open.load(Ordering::SeqCst) == 1
    })
    .await;
    a.release.notify_waiters();
    let (status, body) = within("held request", held).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "version=A held"));
    // Its connection is not pooled again: A ends with no connections.
    eventually("A fully drained", || a.open.load(Ordering::SeqCst) == 0).await;
    assert_eq!(warm.get("/").await.1, "version=B");
}

#[tokio::test]
async fn drain_timeout_closes_connections_that_stay_busy() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let held = hold_request(p.local_addr(), &a).await;
    let mut tb = RouteTable::single("B", vec![b.addr]);
    tb.drain_timeout_ms = 100;
    p.set_table(tb);
    // The held request is cut once the drain times out (its response never started).
    let res = within("held request cut", held).await.unwrap();
    assert!(
        matches!(&res, Ok((StatusCode::BAD_GATEWAY, _))) || res.is_err(),
        "{res:?}"
    );
    eventually("A drained", || a.open.load(Ordering::SeqCst) == 0).await;
}

#[tokio::test]
async fn refused_connections_are_retried_on_another_backend() {
    let a = upstream("A").await;
    let dead = dead_addr().await;
    let p = proxy(table(vec![group("A", 1, vec![dead, a.addr])])).await;
    let mut c = Client::connect(p.local_addr()).await;
    for _ in 0..20 {
        assert_eq!(c.get("/").await, (StatusCode::OK, "version=A".into()));
    }
    let s = &p.stats().versions["A"];
    assert_eq!(s.requests, 20);
    assert_eq!(s.responses_2xx, 20);
    assert_eq!(
        s.connect_failures, 10,
        "every other pick is the dead backend"
    );
    assert_eq!(s.retries, 10);

    // A version whose only backend is dead falls back to another version's backend.
    p.set_table(table(vec![
        group("B", 1, vec![dead]),
        group("A", 1, vec![a.addr]),
    ]));
    for _ in 0..10 {
        assert_eq!(c.get("/").await, (StatusCode::OK, "version=A".into()));
    }
    assert_eq!(p.stats().versions["B"].retries, 5);
}

#[tokio::test]
async fn nothing_up_answers_502() {
    let dead = dead_addr().await;
    let p = proxy(RouteTable::single("A", vec![dead])).await;
    let mut c = Client::connect(p.local_addr()).await;
    let (s, body) = c.get("/").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(body.contains("backend"), "{body}");
    let st = &p.stats().versions["A"];
    assert_eq!(
        (st.requests, st.responses_5xx, st.connect_failures),
        (1, 1, 1)
    );

    p.set_table(table(vec![]));
    assert_eq!(c.get("/").await.0, StatusCode::BAD_GATEWAY);
    p.set_table(table(vec![group("A", 5, vec![])]));
    assert_eq!(c.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(p.stats().unrouted, 2);
    // The connection survived all of it.
    let a = upstream("A").await;
    p.set_table(RouteTable::single("A", vec![a.addr]));
    assert_eq!(c.get("/").await.1, "version=A");
}

#[tokio::test]
async fn upgrades_are_tunnelled_both_ways() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let mut s = raw(
        p.local_addr(),
        b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await;
    let mut head = Vec::new();
    within("101 head", async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
    })
    .await;
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    for msg in [&b"hello"[..], b"over the tunnel", &[0u8, 255, 1, 2]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        within("echo", s.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, msg);
    }
    assert_eq!(p.stats().versions["A"].responses_2xx, 1);
}

#[tokio::test]
async fn stats_count_classes_and_latency() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let mut c = Client::connect(p.local_addr()).await;
    for _ in 0..40 {
        c.get("/").await;
    }
    let first = p.stats().versions["A"].clone();
    for path in ["/status/302", "/status/404", "/status/503", "/status/503"] {
        c.get(path).await;
    }
    let s = p.stats().versions["A"].clone();
    assert_eq!(s.requests, 44);
    assert_eq!(
        (
            s.responses_2xx,
            s.responses_3xx,
            s.responses_4xx,
            s.responses_5xx
        ),
        (40, 1, 1, 2)
    );
    assert_eq!(s.latency_buckets.iter().sum::<u64>(), 44);
    let p50 = s.quantile_ms(0.5).unwrap();
    let p99 = s.quantile_ms(0.99).unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 5000.0, "{p50} {p99}");
    let window = s.since(&first);
    assert_eq!(window.requests, 4);
    assert_eq!(window.error_rate(), Some(0.5));
    // Stats round-trip as JSON (the admin API's format).
    let json = serde_json::to_string(&p.stats()).unwrap();
    assert_eq!(
        serde_json::from_str::<sluice_proxy::Stats>(&json).unwrap(),
        p.stats()
    );
}

#[tokio::test]
async fn garbage_from_clients_does_not_hurt_the_proxy() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let inputs: [&[u8]; 7] = [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
        b"GET /\xff\xfe HTTP/1.1\r\n\xff: \xff\r\n\r\n",
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    ];
    for input in inputs {
        let mut s = raw(p.local_addr(), input).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = within("garbage answered or closed", s.read_to_end(&mut out)).await;
        if !out.is_empty() {
            assert!(
                out.starts_with(b"HTTP/1.1 "),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    let mut c = Client::connect(p.local_addr()).await;
    assert_eq!(c.get("/").await.1, "version=A");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let addr = p.local_addr();
    let held = hold_request(addr, &a).await;
    let stopping = tokio::spawn(p.shutdown(Duration::from_secs(5)));
    // Stopped accepting (bounded wait: the accept task is aborted first).
    eventually("listener closed", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    })
    .await;
    a.release.notify_waiters();
    let (status, body) = within("held request", held).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "version=A held"));
    within("shutdown", stopping).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// standalone mode and admin API

async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (StatusCode, String) {
    let mut c = Client::connect(admin).await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())).boxed())
        .unwrap();
    let res = within("admin call", c.request(req)).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn admin_api_manages_listeners_and_state_survives_a_restart() {
    let a = upstream("A").await;
    let b = upstream("B").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("proxy-state.json");
    let config = StandaloneConfig {
        admin: "127.0.0.1:0".parse().unwrap(),
        listeners: vec![ListenerConfig {
            name: "web".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            table: RouteTable::single("A", vec![a.addr]),
        }],
        state_path: Some(state.clone()),
        shutdown_grace: Duration::from_secs(1),
    };
    let sa = Standalone::start(config.clone()).await.unwrap();
    let admin = sa.admin_addr();
    let web = sa.listener("web").await.unwrap().local_addr();
    let mut c = Client::connect(web).await;
    assert_eq!(c.get("/").await.1, "version=A");

    // Switch with the client function, then read stats and listeners.
    sluice_proxy::switch(admin, "web", &RouteTable::single("B", vec![b.addr]))
        .await
        .unwrap();
    assert_eq!(c.get("/").await.1, "version=B");
    let (s, stats) = admin_call(admin, "GET", "/listeners/web/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    let stats: sluice_proxy::Stats = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        (stats.versions["A"].requests, stats.versions["B"].requests),
        (1, 1)
    );

    // Add a listener, see both, switch it over PUT.
    let api = ListenerConfig {
        name: "api".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        table: RouteTable::single("A", vec![a.addr]),
    };
    let (s, body) = admin_call(
        admin,
        "POST",
        "/listeners",
        Some(serde_json::to_string(&api).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let api_info: sluice_proxy::ListenerInfo = serde_json::from_str(&body).unwrap();
    let (s, body) = admin_call(
        admin,
        "POST",
        "/listeners",
        Some(serde_json::to_string(&api).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (_, all) = admin_call(admin, "GET", "/listeners", None).await;
    let all: Vec<sluice_proxy::ListenerInfo> = serde_json::from_str(&all).unwrap();
    assert_eq!(
        all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["api", "web"]
    );
    let tb = serde_json::to_string(&RouteTable::single("B", vec![b.addr])).unwrap();
    let (s, _) = admin_call(admin, "PUT", "/listeners/api/table", Some(tb)).await;
    assert_eq!(s, StatusCode::OK);
    let mut c2 = Client::connect(api_info.listen).await;
    assert_eq!(c2.get("/").await.1, "version=B");

    // Bad input changes nothing and says why.
    let (s, body) = admin_call(
        admin,
        "PUT",
        "/listeners/api/table",
        Some("{\"groups\":5}".into()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid json"), "{body}");
    let dup = r#"{"groups":[{"version":"x","weight":1},{"version":"x","weight":1}]}"#;
    let (s, body) = admin_call(admin, "PUT", "/listeners/api/table", Some(dup.into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("appears twice"), "{body}");
    assert_eq!(c2.get("/").await.1, "version=B");
    let err = sluice_proxy::switch(admin, "nope", &RouteTable::single("B", vec![b.addr]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("404") && err.contains("no listener"), "{err}");

    // Delete web; restart from the state file: api comes back on the same port, still on B.
    let (s, _) = admin_call(admin, "DELETE", "/listeners/web", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, all) = admin_call(admin, "GET", "/listeners", None).await;
    assert!(!all.contains("\"web\""), "{all}");
    drop(c2);
    sa.shutdown().await;

    let config2 = StandaloneConfig {
        listeners: Vec::new(),
        ..config
    };
    let sa2 = Standalone::start(config2).await.unwrap();
    let api2 = sa2.listener("api").await.unwrap();
    assert_eq!(api2.local_addr(), api_info.listen);
    assert_eq!(api2.table(), RouteTable::single("B", vec![b.addr]));
    assert!(sa2.listener("web").await.is_none());
    let mut c3 = Client::connect(api_info.listen).await;
    assert_eq!(c3.get("/").await.1, "version=B");
    sa2.shutdown().await;

    // A corrupt state file is refused with a message saying what to do.
    std::fs::write(&state, "{not json").unwrap();
    let err = Standalone::start(StandaloneConfig {
        admin: "127.0.0.1:0".parse().unwrap(),
        listeners: Vec::new(),
        state_path: Some(state),
        shutdown_grace: Duration::from_secs(1),
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("fix or remove the file"), "{err}");
}

#[tokio::test]
async fn run_standalone_stops_on_its_shutdown_future() {
    let a = upstream("A").await;
    let listen = dead_addr().await; // a free port
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(sluice_proxy::run_standalone(
        StandaloneConfig {
            admin: "127.0.0.1:0".parse().unwrap(),
            listeners: vec![ListenerConfig {
                name: "web".into(),
                listen,
                table: RouteTable::single("A", vec![a.addr]),
            }],
            state_path: None,
            shutdown_grace: Duration::from_secs(1),
        },
        async {
            let _ = rx.await;
        },
    ));
    let mut c = within("listener up", async {
        loop {
            if let Ok(s) = TcpStream::connect(listen).await {
                drop(s);
                break Client::connect(listen).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(c.get("/").await.1, "version=A");
    tx.send(()).unwrap();
    within("run_standalone returns", run)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn admin_api_survives_garbage() {
    let sa = Standalone::start(StandaloneConfig {
        admin: "127.0.0.1:0".parse().unwrap(),
        listeners: Vec::new(),
        state_path: None,
        shutdown_grace: Duration::from_secs(1),
    })
    .await
    .unwrap();
    let admin = sa.admin_addr();
    let mut s = raw(admin, b"\xde\xad\xbe\xef\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = within("garbage", s.read_to_end(&mut out)).await;
    let (st, body) = admin_call(admin, "POST", "/listeners", Some("[]".into())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = admin_call(admin, "GET", "/nowhere", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let bad_name = r#"{"name":"a/b","listen":"127.0.0.1:0","table":{"groups":[]}}"#;
    let (st, body) = admin_call(admin, "POST", "/listeners", Some(bad_name.into())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        admin_call(admin, "GET", "/healthz", None).await.0,
        StatusCode::OK
    );
    sa.shutdown().await;
}

/// A raw backend that answers each request with a canned response picked by its path, to drive
/// the proxy's upstream client through every framing: `(response bytes, close afterwards)`.
/// Returns its address and its counts of accepted and of closed connections.
async fn scripted_backend() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (acc, clo) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let clo = clo.clone();
            tokio::spawn(async move {
                serve_script(&mut s).await;
                drop(s);
                clo.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, closed)
}

/// The canned response for a request: its bytes and whether the connection closes after it.
fn script(method: &str, path: &str) -> (&'static [u8], bool) {
    match (method, path) {
        (_, "/chunked") => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        (_, "/http10") => (b"HTTP/1.0 200 OK\r\n\r\nuntil close", true),
        (_, "/close") => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            true,
        ),
        (_, "/nocontent") => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (_, "/continue") => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone",
            false,
        ),
        (_, "/garbage") => (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", true),
        (_, "/cut") => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", true),
        ("HEAD", _) => (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", false),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    }
}

/// Answers requests on one backend connection by script until it is to be closed.
async fn serve_script(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut line = head.split(' ');
        let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
        let (res, close) = script(method, path);
        if s.write_all(res).await.is_err() || close {
            return;
        }
        if path == "/then-idle-close" {
            // Like a backend whose keep-alive timeout is shorter than the proxy's.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}

#[tokio::test]
async fn every_response_framing_is_relayed_and_connections_reused_only_when_safe() {
    let (addr, accepted, closed) = scripted_backend().await;
    let p = proxy(RouteTable::single("A", vec![addr])).await;
    let mut c = Client::connect(p.local_addr()).await;
    let conns = || accepted.load(Ordering::SeqCst);

    assert_eq!(
        c.get("/chunked").await,
        (StatusCode::OK, "hello world".into())
    );
    assert_eq!(c.get("/continue").await, (StatusCode::OK, "done".into()));
    assert_eq!(c.get("/nocontent").await.0, StatusCode::NO_CONTENT);
    let head = Request::head("/len")
        .header("host", "app.example")
        .body(Empty::new().boxed())
        .unwrap();
    let res = within("HEAD", c.request(head)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], "10");
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(c.get("/").await, (StatusCode::OK, "ok".into()));
    assert_eq!(
        conns(),
        1,
        "every exchange so far could reuse the first connection"
    );

    // Close-delimited and `Connection: close` responses arrive whole; their connection is not
    // reused.
    assert_eq!(
        c.get("/http10").await,
        (StatusCode::OK, "until close".into())
    );
    assert_eq!(c.get("/").await.1, "ok");
    assert_eq!(conns(), 2);
    assert_eq!(c.get("/close").await, (StatusCode::OK, "ok".into()));
    assert_eq!(c.get("/").await.1, "ok");
    assert_eq!(conns(), 3);

    // A backend that closes its idle keep-alive connection: the next request is not lost.
    assert_eq!(c.get("/then-idle-close").await.1, "ok");
    eventually("the backend to close the idle connection", || {
        closed.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(c.get("/").await, (StatusCode::OK, "ok".into()));
    assert_eq!(
        conns(),
        4,
        "the closed idle connection is replaced, not used"
    );

    // Not HTTP: 502 and a 5xx in the counters. A body cut short: the client sees an error, not
    // a silently short body.
    assert_eq!(c.get("/garbage").await.0, StatusCode::BAD_GATEWAY);
    let mut c2 = Client::connect(p.local_addr()).await;
    let cut = within("cut body", c2.try_get("/cut", &[])).await;
    assert!(
        cut.is_err(),
        "a truncated body must not look complete: {cut:?}"
    );
    let s = &p.stats().versions["A"];
    assert_eq!(s.responses_5xx, 1, "{s:?}");
    // The client connection that saw the garbage still works.
    assert_eq!(c.get("/").await, (StatusCode::OK, "ok".into()));
}

#[tokio::test]
async fn a_chunked_request_body_of_unknown_length_reaches_the_backend() {
    let a = upstream("A").await;
    let p = proxy(RouteTable::single("A", vec![a.addr])).await;
    let mut s = raw(
        p.local_addr(),
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n",
    )
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    within("echo of a chunked body", async {
        // The echo comes back chunked too: each chunk as it was sent, then the last chunk.
        while !String::from_utf8_lossy(&got).ends_with("0\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(got.contains("abcd") && got.contains("efg"), "{got}");
}
