//! The fault suite of the deploy controller: faulty releases deployed under client load must be
//! rolled back automatically while the stable release keeps serving.
//!
//! Each case builds real releases from a real git repository (a small python3 HTTP app whose
//! behaviour is chosen by `version.txt` in its artifact), serves release 1 behind sluice's proxy,
//! starts a load of about 200 requests/s and deploys a faulty release 2 through the API. It
//! prints, one line per figure, `fault.<strategy>.<case>.<figure> <value> <unit>`: the time from
//! the deploy request to the rollback being complete, and the requests the client saw fail.
//!
//! Faults: (a) the release exits on start, (b) it never becomes healthy, (c) every 5th request
//! answers 500, (d) every request takes 500 ms more, (e) requests are accepted and never
//! answered. (a) and (b) run with every strategy (caught by health checks: no request may fail);
//! (c), (d) and (e) with canary (bounded by the canary's weight times the detection window).
//!
//! Also: deploy requests made while a deployment runs are queued, and bad deploy requests (an
//! unknown service, environment or release, a missing artifact, a taken `expose` port) get a
//! clear error or a failed deployment with its reason while the serving release keeps serving.

#![allow(clippy::unwrap_used)]

mod common;

use common::{APP, KillOnDrop, Repo, Rt, eventually, free_port, served};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sluice_core::DeployStatus;
use sluice_runtime::Runtime as _;
use sluice_server::Server;
use sluice_store::{Deployment, DeploymentFilter, ReleaseFilter};

/// Requests per second of the client load.
const RATE: u64 = 200;

const ROLLING: &str = "{ rolling: { max_surge: 1, max_unavailable: 0 } }";
const BLUE_GREEN: &str = "{ blue_green: { keep_warm: 1s } }";
const CANARY: &str = "{ canary: { steps: [{ weight: 20, pause: 3s }, { weight: 100 }], \
    analysis: { max_error_rate: 0.05, max_latency: 200ms, min_requests: 20, \
    insufficient_traffic: fail, interval: 500ms } } }";

/// A strategy as the cases use it: its name in the figures, the `strategy:` of `sluice.yml`,
/// and for canaries the weight of the judged step.
#[derive(Clone, Copy, Debug)]
struct Strategy {
    label: &'static str,
    kind: &'static str,
    yaml: &'static str,
    canary_weight: Option<u64>,
}

const S_ROLLING: Strategy = Strategy {
    label: "rolling",
    kind: "rolling",
    yaml: ROLLING,
    canary_weight: None,
};
const S_BLUE_GREEN: Strategy = Strategy {
    label: "blue_green",
    kind: "blue_green",
    yaml: BLUE_GREEN,
    canary_weight: None,
};
const S_CANARY: Strategy = Strategy {
    label: "canary",
    kind: "canary",
    yaml: CANARY,
    canary_weight: Some(20),
};
/// A canary judged on error rate only (no `max_latency`), as users may well configure it.
const S_CANARY_ERRORS_ONLY: Strategy = Strategy {
    label: "canary_errors_only",
    kind: "canary",
    yaml: "{ canary: { steps: [{ weight: 20, pause: 3s }, { weight: 100 }], \
        analysis: { max_error_rate: 0.05, min_requests: 20, \
        insufficient_traffic: fail, interval: 500ms } } }",
    canary_weight: Some(20),
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    ExitOnStart,
    NeverHealthy,
    ErrorRate,
    Latency,
    NoAnswer,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::ExitOnStart => "exit_on_start",
            Fault::NeverHealthy => "never_healthy",
            Fault::ErrorRate => "error_rate",
            Fault::Latency => "latency",
            Fault::NoAnswer => "no_answer",
        }
    }

    /// The `version.txt` that makes the app behave so.
    fn version_txt(self) -> &'static str {
        match self {
            Fault::ExitOnStart => "exit",
            Fault::NeverHealthy => "unhealthy",
            Fault::ErrorRate => "errors",
            Fault::Latency => "slow",
            Fault::NoAnswer => "hang",
        }
    }

    /// Caught by health checks before the release gets any traffic.
    fn caught_by_health(self) -> bool {
        matches!(self, Fault::ExitOnStart | Fault::NeverHealthy)
    }
}

/// `sluice.yml`: `web` is deployed to `staging` (exposed on `port`) with `strategy` in runtime
/// `rt`; pipelines run on branch `build` (environment `build`, where nothing is deployed), so
/// releases are made by commits and deployed only when the test asks. `extra` is appended
/// under `services`.
fn yml(rt: &Rt, port: u16, strategy: &str, extra: &str) -> String {
    let runtime = rt.deploy_yaml(6);
    format!(
        r#"
project: faults
environments:
  staging: {{ branch: main }}
  build: {{ branch: build }}
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py version.txt out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
{runtime}      replicas: 2
      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 1s
      progress_deadline: 5s
      max_restarts: 1
      request_timeout: 1s
      strategy: {strategy}
      environments:
        staging: {{ expose: "127.0.0.1:{port}" }}
{extra}"#
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// One server with one project whose releases `1..` were built from `versions`.
struct Fixture {
    _tmp: tempfile::TempDir,
    s: Server,
    _guard: KillOnDrop,
    port: u16,
    http: reqwest::Client,
    /// Every instance pid seen, checked to be gone at the end.
    pids: Mutex<Vec<i32>>,
}

impl Fixture {
    /// A server whose `web` (exposed on `port`, run by `rt`) has one release per entry of
    /// `versions`.
    async fn new(rt: &Rt, port: u16, strategy: &str, extra: &str, versions: &[&str]) -> Fixture {
        let config = yml(rt, port, strategy, extra);
        let commits: Vec<(&str, &str)> = versions.iter().map(|v| (*v, config.as_str())).collect();
        Fixture::with_commits(rt, port, &commits).await
    }

    /// A server with one release per commit of (`version.txt`, `sluice.yml`); `web` is served
    /// on `port`.
    async fn with_commits(rt: &Rt, port: u16, commits: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::init(tmp.path().join("repo"), "build");
        repo.write("app.py", APP);
        repo.write("sluice.yml", commits[0].1);
        repo.commit_version(commits[0].0);
        let mut config = common::config(tmp.path().join("data"));
        rt.configure(&mut config);
        let s = Server::start(config).await.unwrap();
        let guard = KillOnDrop::new(&s);
        let p = s
            .engine
            .add_project(&repo.path(), None, Some(0), None, "test")
            .await
            .unwrap();
        let f = Fixture {
            _tmp: tmp,
            s,
            _guard: guard,
            port,
            http: common::http(),
            pids: Mutex::new(Vec::new()),
        };
        f.wait_release("web", 1).await;
        for (i, (v, config)) in commits.iter().enumerate().skip(1) {
            repo.write("sluice.yml", config);
            repo.commit_version(v);
            f.s.engine
                .sync_project(&p.name, "poll", "test")
                .await
                .unwrap();
            f.wait_release("web", i as i64 + 1).await;
        }
        f
    }

    async fn wait_release(&self, service: &str, version: i64) {
        eventually(&format!("release {version} of {service}"), 60, || async {
            let rels = self
                .s
                .engine
                .store
                .releases(&ReleaseFilter {
                    project: Some("faults".into()),
                    service: Some(service.into()),
                    limit: 100,
                })
                .await
                .unwrap();
            rels.iter().any(|r| r.version == version).then_some(())
        })
        .await;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// `POST /api/v1/deployments`; returns the status and the JSON body.
    async fn deploy(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/deployments", self.s.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Deploys release `version` of `web` to staging; the request must be accepted.
    async fn deploy_web(&self, version: i64) {
        let (status, body) = self
            .deploy(json!({ "service": "web", "env": "staging", "version": version }))
            .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn deployments(&self, service: &str) -> Vec<Deployment> {
        self.live(0);
        self.s
            .engine
            .store
            .deployments(&DeploymentFilter {
                service: Some(service.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// Waits until a deployment of `version` of `service` has finished.
    async fn finished(&self, service: &str, version: i64) -> Deployment {
        eventually(
            &format!("deployment of {service} v{version} to finish"),
            60,
            || async {
                self.deployments(service)
                    .await
                    .into_iter()
                    .find(|d| d.version == version && d.status.is_terminal())
            },
        )
        .await
    }

    async fn body(&self) -> Option<String> {
        served(&self.http, &self.url()).await
    }

    async fn target(&self, service: &str) -> (Option<i64>, Option<i64>) {
        let t = self
            .s
            .engine
            .store
            .target("faults", service, "staging")
            .await
            .unwrap()
            .unwrap();
        (t.desired_version, t.stable_version)
    }

    /// Live instances of `version` of `web` (stopped, exited and crash-looped ones excluded).
    /// Also remembers every pid seen.
    fn live(&self, version: i64) -> usize {
        let list = self.s.engine.fleet.runtime.list();
        self.pids
            .lock()
            .unwrap()
            .extend(list.iter().filter_map(|i| i.pid));
        list.iter()
            .filter(|i| i.version == format!("v{version}") && i.state.is_active())
            .count()
    }

    /// Stops everything and checks that no instance process is left.
    async fn stop(self) {
        self.live(0);
        let mut pids = std::mem::take(&mut *self.pids.lock().unwrap());
        pids.sort_unstable();
        pids.dedup();
        self.s.stop_all().await;
        eventually("every instance process to be gone", 10, || async {
            pids.iter().all(|p| !alive(*p)).then_some(())
        })
        .await;
    }
}

/// True if `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// What the client load saw: per request, when it was sent (epoch ms) and how it ended.
#[derive(Default)]
struct LoadReport {
    requests: Vec<(i64, Result<(), String>)>,
}

impl LoadReport {
    fn sent(&self) -> usize {
        self.requests.len()
    }

    fn failures(&self) -> Vec<&(i64, Result<(), String>)> {
        self.requests.iter().filter(|(_, r)| r.is_err()).collect()
    }

    fn sent_between(&self, from: i64, to: i64) -> usize {
        self.requests
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .count()
    }

    fn summary(&self) -> String {
        let failures = self.failures();
        let shown: Vec<String> = failures
            .iter()
            .take(5)
            .map(|(t, r)| format!("{t}: {}", r.as_ref().err().map_or("", |e| e.as_str())))
            .collect();
        format!(
            "{} of {} requests failed; first: {shown:?}",
            failures.len(),
            self.sent()
        )
    }
}

/// A client load of `RATE` requests/s, each a GET with a 2 s timeout that must answer 2xx with
/// a `version=` body. Bounded: at most 60 s and 12 000 requests.
struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let (stop2, report2) = (stop.clone(), report.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut tasks = tokio::task::JoinSet::new();
            let mut sent = 0;
            while !stop2.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
                && sent < 12_000
            {
                tick.tick().await;
                sent += 1;
                let (client, url, report) = (client.clone(), url.clone(), report2.clone());
                tasks.spawn(async move {
                    let at = now_ms();
                    let outcome = match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => match r.text().await {
                            Ok(b) if b.starts_with("version=") => Ok(()),
                            Ok(b) => Err(format!("unexpected body {b:?}")),
                            Err(e) => Err(format!("body: {e}")),
                        },
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(format!("error: {e}")),
                    };
                    report.lock().unwrap().requests.push((at, outcome));
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        });
        Load { stop, report, task }
    }

    /// Waits until `n` requests have been answered (or have failed): the load is under way.
    async fn until_done(&self, n: usize) {
        eventually(&format!("the load's first {n} requests"), 10, || async {
            (self.report.lock().unwrap().sent() >= n).then_some(())
        })
        .await;
    }

    async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        std::mem::take(&mut *self.report.lock().unwrap())
    }
}

/// Deploys `fault` with `strategy` over a serving release 1 under load; asserts the rollback
/// and the bound on failed requests, and prints the figures.
async fn fault_case(rt: Rt, strategy: Strategy, fault: Fault) {
    let f = Fixture::new(
        &rt,
        free_port(),
        strategy.yaml,
        "",
        &["1", fault.version_txt()],
    )
    .await;
    f.deploy_web(1).await;
    let d1 = f.finished("web", 1).await;
    assert_eq!(d1.status, DeployStatus::Succeeded, "{:?}", d1.reason);
    assert_eq!(f.body().await.as_deref(), Some("version=1\n"));
    // The instances run where the case says: containers or host processes, not both.
    let runtimes = &f.s.engine.fleet.runtime;
    let (containers, processes) = (runtimes.docker.list().len(), runtimes.process.list().len());
    match rt {
        Rt::Process => assert_eq!((containers, processes), (0, 2)),
        Rt::Docker(_) => assert_eq!((containers, processes), (2, 0)),
    }

    let load = Load::start(f.url());
    load.until_done(50).await;
    let t0 = now_ms();
    f.deploy_web(2).await;
    let d = f.finished("web", 2).await;
    // Keep the load a little longer: the stable release must keep serving after the rollback.
    sleep_ms(300).await;
    let report = load.finish().await;

    let case = match rt {
        Rt::Process => format!("fault.{}.{}", strategy.label, fault.name()),
        Rt::Docker(_) => format!("fault.docker.{}.{}", strategy.label, fault.name()),
    };
    assert_eq!(
        d.status,
        DeployStatus::RolledBack,
        "{case}: {:?} {:?}",
        d.phase,
        d.reason
    );
    assert_eq!(d.from_version, Some(1));
    assert_eq!(d.strategy, strategy.kind);
    let reason = d.reason.clone().unwrap_or_default();
    assert!(!reason.is_empty(), "{case}: a rollback has its reason");
    let finished = d.finished_ms.unwrap();
    let time_to_rollback = finished - t0;
    let failed = report.failures().len();
    let in_window = report.sent_between(t0, finished);
    eprintln!("{case}.time_to_rollback {time_to_rollback} ms");
    eprintln!("{case}.failed_requests {failed} requests");
    eprintln!("{case}.requests_during_deploy {in_window} requests");
    eprintln!("{case}.reason {reason:?}");

    // The stable release serves, the target converged back to it, the new instances stopped.
    assert_eq!(f.body().await.as_deref(), Some("version=1\n"));
    assert_eq!(f.target("web").await, (Some(1), Some(1)));
    eventually(&format!("{case}: instances of v2 to stop"), 10, || {
        let n = f.live(2);
        async move { (n == 0).then_some(()) }
    })
    .await;
    assert_eq!(f.live(1), 2, "{case}: the stable release runs its replicas");

    assert!(
        report.sent() as u64 > RATE / 2,
        "{case}: the load ran: {}",
        report.summary()
    );
    if fault.caught_by_health() {
        // No request ever reached the faulty release.
        assert_eq!(failed, 0, "{case}: {}", report.summary());
    } else if let Some(weight) = strategy.canary_weight {
        // At most the canary's share of the requests sent until the rollback, with slack for
        // requests already in flight to the canary when traffic returned to stable.
        let bound = (weight as usize * in_window).div_ceil(100) * 3 / 2 + 10;
        assert!(
            failed <= bound,
            "{case}: {failed} failed requests > bound {bound}: {}",
            report.summary()
        );
        let expect = match fault {
            Fault::ErrorRate => "error rate",
            Fault::Latency => "latency",
            _ => "",
        };
        assert!(
            reason.contains(expect),
            "{case}: rolled back for {reason:?}, expected {expect:?}"
        );
    } else {
        panic!("{case}: only canaries are judged on traffic");
    }
    f.stop().await;
}

/// Generates `$case::process` and `$case::docker`, each running `fault_case` with that
/// runtime (the Docker one skips with a note when no daemon answers and `CI` is not set).
macro_rules! fault_cases {
    ($($case:ident: $strategy:expr, $fault:expr;)*) => {$(
        mod $case {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn process() {
                fault_case(Rt::Process, $strategy, $fault).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn docker() {
                if let Some(rt) = Rt::docker().await {
                    fault_case(rt, $strategy, $fault).await;
                }
            }
        }
    )*};
}

fault_cases! {
    rolling_exit_on_start: S_ROLLING, Fault::ExitOnStart;
    rolling_never_healthy: S_ROLLING, Fault::NeverHealthy;
    blue_green_exit_on_start: S_BLUE_GREEN, Fault::ExitOnStart;
    blue_green_never_healthy: S_BLUE_GREEN, Fault::NeverHealthy;
    canary_exit_on_start: S_CANARY, Fault::ExitOnStart;
    canary_never_healthy: S_CANARY, Fault::NeverHealthy;
    canary_error_rate: S_CANARY, Fault::ErrorRate;
    canary_latency: S_CANARY, Fault::Latency;
    canary_no_answer: S_CANARY, Fault::NoAnswer;
    // Without a latency threshold, requests that are never answered must still fail the
    // canary: the proxy answers 504 after the service's `request_timeout` and counts a 5xx.
    canary_errors_only_no_answer: S_CANARY_ERRORS_ONLY, Fault::NoAnswer;
}

/// Waits until a deployment of `version` of `web` is running.
async fn running(f: &Fixture, version: i64) -> Deployment {
    eventually(&format!("deployment of v{version} to run"), 30, || async {
        f.deployments("web")
            .await
            .into_iter()
            .find(|d| d.version == version)
    })
    .await
}

/// Deploys requested while another deployment of the target runs are queued: the running one
/// finishes, then the release desired last is deployed from it, once (requests in between are
/// coalesced: the newest wins), and no request of the client load fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_requested_during_a_deployment_are_queued() {
    let f = Fixture::new(
        &Rt::Process,
        free_port(),
        BLUE_GREEN,
        "",
        &["1", "2", "3", "4"],
    )
    .await;
    f.deploy_web(1).await;
    assert_eq!(f.finished("web", 1).await.status, DeployStatus::Succeeded);
    let load = Load::start(f.url());

    f.deploy_web(2).await;
    let d2 = running(&f, 2).await;
    assert_eq!(d2.status, DeployStatus::Running);
    let asked = now_ms();
    for v in [3, 4] {
        let (status, body) = f
            .deploy(json!({ "service": "web", "env": "staging", "version": v }))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["target"]["desired_version"], v, "{body}");
        assert_eq!(body["target"]["stable_version"], 1, "{body}");
    }

    let d2 = f.finished("web", 2).await;
    let d4 = f.finished("web", 4).await;
    sleep_ms(300).await;
    let report = load.finish().await;
    assert!(
        d2.finished_ms.unwrap() > asked,
        "v2 was still deploying when v3 and v4 were asked for"
    );
    assert_eq!(d2.status, DeployStatus::Succeeded, "{:?}", d2.reason);
    assert_eq!(d4.status, DeployStatus::Succeeded, "{:?}", d4.reason);
    assert_eq!(d4.from_version, Some(2));
    assert!(
        d4.created_ms >= d2.finished_ms.unwrap(),
        "v4 started only after v2 finished"
    );
    let versions: Vec<i64> = f
        .deployments("web")
        .await
        .iter()
        .map(|d| d.version)
        .collect();
    assert_eq!(
        versions,
        vec![4, 2, 1],
        "v3 was superseded by v4 before it started; nothing deployed twice"
    );
    assert_eq!(f.body().await.as_deref(), Some("version=4\n"));
    assert_eq!(f.target("web").await, (Some(4), Some(4)));
    assert!(report.sent() as u64 > RATE, "{}", report.summary());
    assert_eq!(report.failures().len(), 0, "{}", report.summary());
    eprintln!(
        "fault.queue.blue_green.time_to_deploy_both {} ms",
        d4.finished_ms.unwrap() - d2.created_ms
    );
    eprintln!(
        "fault.queue.blue_green.failed_requests {} requests",
        report.failures().len()
    );
    f.stop().await;
}

/// A deploy queued behind a deployment that gets rolled back must still be deployed after it:
/// the rollback returns to the old release, then the controller deploys the newer request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_queued_behind_a_rolled_back_deployment_is_not_lost() {
    let f = Fixture::new(
        &Rt::Process,
        free_port(),
        BLUE_GREEN,
        "",
        &["1", "unhealthy", "3"],
    )
    .await;
    f.deploy_web(1).await;
    assert_eq!(f.finished("web", 1).await.status, DeployStatus::Succeeded);
    f.deploy_web(2).await;
    running(&f, 2).await;
    f.deploy_web(3).await;
    let d2 = f.finished("web", 2).await;
    assert_eq!(d2.status, DeployStatus::RolledBack, "{:?}", d2.reason);
    // The request for v3 came after v2 was asked for: it stays the desired release.
    assert_eq!(
        f.target("web").await.0,
        Some(3),
        "the queued request for v3 was overwritten by the rollback of v2"
    );
    let d3 = f.finished("web", 3).await;
    assert_eq!(d3.status, DeployStatus::Succeeded, "{:?}", d3.reason);
    assert_eq!(d3.from_version, Some(1));
    assert_eq!(f.body().await.as_deref(), Some("version=3\n"));
    f.stop().await;
}

/// Bad deploy requests get a clear API error (status, code, message, hint) and change nothing;
/// a service whose `expose` address is taken gets one failed deployment with its reason; the
/// serving release keeps serving throughout, without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploy_requests_fail_clearly_while_the_service_keeps_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    // `api` packs into its own directory: the services of a run share one checkout.
    let extra = format!(
        r#"  api:
    steps:
      package:
        run: mkdir -p out_api && cp app.py version.txt out_api/
        artifacts: ["out_api/**"]
    deploy:
      start: python3 out_api/app.py
      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 1s
      progress_deadline: 5s
      environments:
        staging: {{ expose: "127.0.0.1:{taken_port}" }}
"#
    );
    let f = Fixture::new(&Rt::Process, free_port(), ROLLING, &extra, &["1", "2"]).await;
    f.wait_release("api", 1).await;
    f.deploy_web(1).await;
    assert_eq!(f.finished("web", 1).await.status, DeployStatus::Succeeded);
    let load = Load::start(f.url());
    load.until_done(40).await;

    let cases = [
        (
            json!({ "service": "nope", "env": "staging" }),
            404,
            "a release of service `nope` not found",
        ),
        (
            json!({ "service": "web", "env": "production" }),
            422,
            "environment `production` is not defined in sluice.yml",
        ),
        (
            json!({ "service": "web", "env": "staging", "version": 42 }),
            404,
            "release 42 of service `web` not found",
        ),
        (
            json!({ "service": "web", "env": "build" }),
            422,
            "service `web` is not deployed to `build`",
        ),
        (json!({ "service": "web" }), 400, "request body"),
    ];
    for (req, status, message) in cases {
        let (got, body) = f.deploy(req.clone()).await;
        assert_eq!(got, status, "{req} -> {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(message),
            "{req} -> {body}"
        );
        eprintln!("fault.bad_input {req} -> {got} {body}");
    }
    let r = f
        .http
        .post(format!("{}/api/v1/rollbacks", f.s.url()))
        .json(&json!({ "service": "web", "env": "staging", "to": 42 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // An artifact gone from the store: refused before anything changes.
    let rel2 =
        f.s.engine
            .store
            .releases(&ReleaseFilter {
                project: Some("faults".into()),
                service: Some("web".into()),
                limit: 100,
            })
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.version == 2)
            .unwrap();
    std::fs::remove_file(
        f.s.engine
            .paths
            .artifacts
            .join(format!("{}.tar", rel2.artifact_sha256)),
    )
    .unwrap();
    let (got, body) = f
        .deploy(json!({ "service": "web", "env": "staging", "version": 2 }))
        .await;
    assert_eq!(got, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("is no longer stored"),
        "{body}"
    );
    assert!(body["error"]["hint"].is_string(), "{body}");
    eprintln!("fault.bad_input missing artifact -> {got} {body}");
    assert_eq!(f.target("web").await, (Some(1), Some(1)));
    assert_eq!(f.deployments("web").await.len(), 1);

    // The `expose` address of `api` is taken by another process: a failed deployment that
    // says so; `web` is not disturbed.
    let (got, body) = f
        .deploy(json!({ "service": "api", "env": "staging", "version": 1 }))
        .await;
    assert_eq!(got, 202, "{body}");
    let d = f.finished("api", 1).await;
    assert_eq!(d.status, DeployStatus::Failed);
    let reason = d.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("cannot listen on 127.0.0.1:{taken_port}")),
        "{reason}"
    );
    eprintln!("fault.bad_input port taken -> {:?} {reason:?}", d.status);
    sleep_ms(500).await;
    let report = load.finish().await;
    assert_eq!(f.body().await.as_deref(), Some("version=1\n"));
    assert!(report.sent() as u64 > RATE / 2, "{}", report.summary());
    assert_eq!(report.failures().len(), 0, "{}", report.summary());
    drop(taken);
    f.stop().await;
}

/// A failed first deploy (here: its `expose` address is taken) is not retried by itself: one
/// failed deployment, not one per controller tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_deploy_is_not_retried_in_a_loop() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let f = Fixture::new(&Rt::Process, taken_port, ROLLING, "", &["1"]).await;
    f.deploy_web(1).await;
    let d = f.finished("web", 1).await;
    assert_eq!(d.status, DeployStatus::Failed, "{:?}", d.reason);
    sleep_ms(1500).await;
    let all = f.deployments("web").await;
    eprintln!(
        "fault.first_deploy.port_taken.deployments {} deployments",
        all.len()
    );
    assert_eq!(all.len(), 1, "deployments of v1: {}", all.len());
    drop(taken);
    f.stop().await;
}

/// A new release that moves `expose` to an address another process holds must fail (and roll
/// back) with that reason, not "succeed" while still listening on the old address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_moving_expose_to_a_taken_port_is_rolled_back() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let port = free_port();
    let v1 = yml(&Rt::Process, port, ROLLING, "");
    let v2 = yml(&Rt::Process, taken_port, ROLLING, "");
    let f = Fixture::with_commits(&Rt::Process, port, &[("1", &v1), ("2", &v2)]).await;
    f.deploy_web(1).await;
    assert_eq!(f.finished("web", 1).await.status, DeployStatus::Succeeded);
    f.deploy_web(2).await;
    let d = f.finished("web", 2).await;
    eprintln!(
        "fault.expose_moved.port_taken {:?} {:?}",
        d.status, d.reason
    );
    assert_ne!(
        d.status,
        DeployStatus::Succeeded,
        "v2 cannot listen on its address"
    );
    assert!(
        d.reason
            .as_deref()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{taken_port}")),
        "{:?}",
        d.reason
    );
    assert_eq!(f.body().await.as_deref(), Some("version=1\n"));
    drop(taken);
    f.stop().await;
}
