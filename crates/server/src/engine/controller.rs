//! The deploy controller: a level-based loop that converges the runtime and the proxy to
//! each target's desired release.
//!
//! On every tick (and when woken by a deploy request or a runtime change) it looks at each
//! target: a running deployment is advanced by feeding its strategy machine
//! (`sluice-deploy`) an observation of the instances and the proxy's figures and carrying out
//! the desired state it returns; a desired release that differs from the serving one starts a
//! deployment; a converged target is healed (missing instances restarted, strays stopped).
//! The machine's state is persisted after every step, so a restarted server resumes each
//! deployment where it was, re-adopting the instances that kept running.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_core::{DeployStatus, EventKind, NewEvent};
use sluice_deploy::autoscale::{AutoscalePolicy, Autoscaler, InstanceUsage, ScaleAction};
use sluice_deploy::{
    Analysis, BlueGreenParams, CanaryParams, CanaryStep, Command, DeploySpec,
    Deployment as Machine, InsufficientPolicy, Observation, Outcome, PoolObs, RollingParams,
    StickyGroup, Strategy, Traffic, VersionWindow, WindowStats,
};
use sluice_proxy::{Group, Proxy, RouteTable, Stats, StickyRule};
use sluice_runtime::{
    HealthCheck, HealthPolicy, InstanceSpec, InstanceState, InstanceStatus, ResourceLimits,
    RestartPolicy, Runtime,
};
use sluice_spec::{
    ContainerImage, Deploy, DeployTarget, HealthCheckSpec, InsufficientTraffic, RuntimeSpec,
    StrategySpec,
};
use sluice_store::{
    Deployment, DeploymentFilter, DeploymentUpdate, NewDeployment, Release, Target,
};
use tokio::sync::Mutex;

use super::listener::{Daemon, Listener};
use super::runtimes::{Driver, Runtimes};
use super::{Engine, EngineError, bad, now_ms};

/// The runtime and data plane the controller drives, and its small in-memory bookkeeping.
pub struct Fleet {
    /// Service instances: host processes and containers.
    pub runtime: Arc<Runtimes>,
    proxies: Mutex<HashMap<String, Listener>>,
    /// The route table last set on each listener (compared before setting again).
    tables: std::sync::Mutex<HashMap<String, RouteTable>>,
    /// The standalone proxy daemon, when listeners live outside the server.
    daemon: Option<Daemon>,
    /// Per deployment: the analysis window being counted and the proxy counters at its start.
    windows: std::sync::Mutex<HashMap<i64, (u64, Stats)>>,
    /// Operator commands waiting for the next step of a deployment.
    commands: std::sync::Mutex<HashMap<i64, Command>>,
    /// Instances seen ready at least once (a later exit is a restart, not a failed start).
    seen_ready: std::sync::Mutex<HashSet<String>>,
    /// Instances chosen to stop: out of the next route table at once, signalled only after
    /// that table is in place, so no request is sent to an instance that is shutting down.
    leaving: std::sync::Mutex<HashSet<String>>,
    /// Per autoscaled target: its autoscaler and the instance count it keeps.
    autoscalers: std::sync::Mutex<HashMap<String, Scaled>>,
}

/// An autoscaled target's state, kept in the store (setting `autoscale/<target>`) so a
/// restarted server resumes it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Scaled {
    scaler: Autoscaler,
    /// Instances the serving release runs now.
    replicas: u32,
    /// When usage is sampled next (epoch ms; not kept across restarts).
    #[serde(skip)]
    next_sample_ms: i64,
}

impl Fleet {
    /// A fleet whose instances live under `root`; containers through `docker`, artifacts
    /// of container services without an image of their own in `base_image`.
    pub fn new(
        root: PathBuf,
        token_prefix: String,
        daemon: Option<Daemon>,
        docker: sluice_docker::Docker,
        base_image: String,
    ) -> Result<Fleet, EngineError> {
        let runtime = Runtimes::new(root, token_prefix, docker, base_image)
            .map_err(|e| EngineError::Internal(format!("cannot prepare the runtime: {e}")))?;
        Ok(Fleet {
            runtime: Arc::new(runtime),
            proxies: Mutex::new(HashMap::new()),
            tables: Default::default(),
            daemon,
            windows: Default::default(),
            commands: Default::default(),
            seen_ready: Default::default(),
            leaving: Default::default(),
            autoscalers: Default::default(),
        })
    }

    /// The traffic counters of every listener of a target (one per address it is exposed
    /// on), for the alert rules; empty while it has none. An error when a listener does not
    /// answer (the proxy daemon restarting): no data rather than partial data.
    pub(crate) async fn target_stats(
        &self,
        project: &str,
        service: &str,
        env: &str,
    ) -> Result<Vec<Stats>, EngineError> {
        let mine = format!("{}@", key(project, service, env));
        let listeners: Vec<Listener> = self
            .proxies
            .lock()
            .await
            .iter()
            .filter(|(k, _)| k.starts_with(&mine))
            .map(|(_, l)| l.clone())
            .collect();
        let mut out = Vec::with_capacity(listeners.len());
        for l in listeners {
            out.push(l.stats().await?);
        }
        Ok(out)
    }
}

/// At start-up, how long the first reconcile waits for the instances adopted as running to
/// get their first health verdict (their first probe runs at once). Until then they are
/// not "ready", and a route table built from them would send requests nowhere; the proxy
/// daemon meanwhile keeps serving its last table, which still holds them.
const ADOPT_SETTLE: Duration = Duration::from_secs(5);
/// The upstream timeout of a listener before its first route table (which carries the
/// service's `request_timeout`).
const UPSTREAM_TIMEOUT_MS: u64 = 30_000;
/// How often the controller checks that the proxy daemon answers.
const DAEMON_CHECK: Duration = Duration::from_secs(1);

fn key(project: &str, service: &str, env: &str) -> String {
    format!("{project}/{service}/{env}")
}

fn instance_prefix(project: &str, service: &str, env: &str, version: i64) -> String {
    format!("{project}.{service}.{env}.v{version}.")
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds the strategy machine's spec from a `sluice.yml` deploy target.
pub fn deploy_spec(deploy: &Deploy, t: &DeployTarget) -> DeploySpec {
    let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
    let strategy = match &t.strategy {
        StrategySpec::Rolling {
            max_surge,
            max_unavailable,
        } => Strategy::Rolling(RollingParams {
            max_surge: *max_surge,
            max_unavailable: *max_unavailable,
        }),
        StrategySpec::BlueGreen {
            keep_warm,
            preview,
            auto_promote,
        } => Strategy::BlueGreen(BlueGreenParams {
            keep_warm_ms: ms(*keep_warm),
            preview: *preview,
            auto_promote: *auto_promote,
        }),
        StrategySpec::Canary {
            steps,
            analysis,
            sticky,
        } => Strategy::Canary(CanaryParams {
            steps: steps
                .iter()
                .map(|s| CanaryStep {
                    weight: s.weight.min(100) as u8,
                    pause_ms: ms(s.pause),
                })
                .collect(),
            analysis: Analysis {
                max_error_rate: analysis.max_error_rate,
                max_latency_ms: analysis.max_latency.map(|d| d.as_secs_f64() * 1000.0),
                latency_quantile: analysis.quantile,
                min_requests: analysis.min_requests,
                insufficient_traffic: match analysis.insufficient_traffic {
                    // Waiting then failing is the safe reading of "wait": a release that
                    // could not be judged is not promoted.
                    InsufficientTraffic::Wait => InsufficientPolicy::WaitThenFail,
                    InsufficientTraffic::Pass => InsufficientPolicy::Pass,
                    InsufficientTraffic::Fail => InsufficientPolicy::Fail,
                },
                max_wait_ms: ms(analysis.max_wait),
                interval_ms: ms(analysis.interval),
            },
            sticky: sticky.as_ref().map(|s| match (&s.header, &s.cookie) {
                (Some(h), _) => StickyGroup::Header {
                    name: h.clone(),
                    value: s.value.clone(),
                },
                (None, c) => StickyGroup::Cookie {
                    name: c.clone().unwrap_or_default(),
                    value: s.value.clone(),
                },
            }),
        }),
    };
    DeploySpec {
        replicas: t.replicas,
        strategy,
        progress_deadline_ms: ms(deploy.progress_deadline),
        max_restarts: deploy.max_restarts,
    }
}

fn strategy_name(s: &StrategySpec) -> &'static str {
    match s {
        StrategySpec::Rolling { .. } => "rolling",
        StrategySpec::BlueGreen { .. } => "blue_green",
        StrategySpec::Canary { .. } => "canary",
    }
}

fn health_policy(t: &DeployTarget) -> HealthPolicy {
    let h = &t.health;
    HealthPolicy {
        check: match &h.check {
            HealthCheckSpec::Http {
                path,
                expect,
                timeout,
            } => HealthCheck::Http {
                path: path.clone(),
                expect_status: *expect,
                timeout: *timeout,
            },
            HealthCheckSpec::Tcp { timeout } => HealthCheck::Tcp { timeout: *timeout },
            HealthCheckSpec::Command { run, timeout } => HealthCheck::Command {
                run: run.clone(),
                timeout: *timeout,
            },
        },
        interval: h.interval,
        success_threshold: h.success_threshold.max(1),
        failure_threshold: h.failure_threshold.max(1),
        initial_delay: h.initial_delay,
    }
}

/// What the controller needs to know about one target at one release.
struct Ctx {
    release: Release,
    deploy: Deploy,
    target: DeployTarget,
}

impl Engine {
    async fn ctx(
        &self,
        project: &str,
        service: &str,
        env: &str,
        version: i64,
    ) -> Result<Ctx, EngineError> {
        let release = self.release_of(project, service, Some(version)).await?;
        let mirror = self.mirror_of(project).await?;
        let (_, parsed) = self.config_at(&mirror, project, &release.commit).await?;
        let config = parsed.as_ref().as_ref().map_err(|e| {
            bad(
                format!("sluice.yml of release {version} is invalid: {e}"),
                None,
            )
        })?;
        let (_, deploy, target) = config.deploy_target(service, env).ok_or_else(|| {
            bad(
                format!("release {version} of `{service}` is not deployed to `{env}`"),
                None,
            )
        })?;
        Ok(Ctx {
            release,
            deploy: deploy.clone(),
            target: target.clone(),
        })
    }

    /// Runs the controller until shutdown: adopts instances left by a previous server, then
    /// reconciles every target on each tick or wake-up.
    pub async fn controller_loop(self: Arc<Self>) {
        match self.fleet.runtime.adopt().await {
            Ok(found) if !found.is_empty() => {
                let running: Vec<&str> = found
                    .iter()
                    .filter(|a| matches!(a.outcome, sluice_runtime::AdoptOutcome::Running))
                    .map(|a| a.id.as_str())
                    .collect();
                self.settle_adopted(&running).await;
                let adopted = running.len();
                let _ = self
                    .record(vec![NewEvent::new(EventKind::InstancesAdopted, "system", "server").payload(json!({
                        "adopted": adopted, "lost": found.len() - adopted,
                        "instances": found.iter().map(|a| json!({"id": a.id, "pid": a.pid})).collect::<Vec<_>>(),
                    }))])
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "adopting instances failed"),
        }
        let mut shutdown = self.shutdown.subscribe();
        let mut changes = self.fleet.runtime.subscribe();
        let mut next_daemon_check = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_daemon_check {
                next_daemon_check = tokio::time::Instant::now() + DAEMON_CHECK;
                self.supervise_daemon().await;
            }
            if let Err(e) = self.reconcile_all().await {
                tracing::warn!(error = %e, "deploy controller tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.controller_wake.notified() => {}
                _ = changes.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Waits, at most [`ADOPT_SETTLE`], until none of the instances `ids` is still
    /// `Starting` (not probed yet).
    async fn settle_adopted(&self, ids: &[&str]) {
        let deadline = tokio::time::Instant::now() + ADOPT_SETTLE;
        let mut changes = self.fleet.runtime.subscribe();
        while ids.iter().any(|id| {
            self.fleet
                .runtime
                .status(id)
                .is_some_and(|s| s.state == InstanceState::Starting)
        }) {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// Restarts the proxy daemon if it died (killed by hand, OOM, a crash): the new one serves
    /// the routes of its state file at once, and every listener handle is looked up again so
    /// the next reconcile talks to it.
    async fn supervise_daemon(&self) {
        let Some(daemon) = &self.fleet.daemon else {
            return;
        };
        match daemon.revive().await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!("the proxy daemon had stopped answering; started a new one");
                self.fleet.proxies.lock().await.clear();
                lock(&self.fleet.tables).clear();
                let _ = self
                    .record(vec![NewEvent::new(
                        EventKind::ProxyRestarted,
                        "system",
                        "proxy",
                    )])
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the proxy daemon is down and could not be restarted")
            }
        }
    }

    async fn reconcile_all(self: &Arc<Self>) -> Result<(), EngineError> {
        for t in self.store.targets(None).await? {
            if let Err(e) = self.reconcile(&t).await {
                tracing::warn!(project = %t.project, service = %t.service, env = %t.env, error = %e, "reconcile failed");
            }
        }
        Ok(())
    }

    /// The newest deployment of a target (only a running one if `running`).
    async fn newest_deployment(
        &self,
        t: &Target,
        running: bool,
    ) -> Result<Option<Deployment>, EngineError> {
        Ok(self
            .store
            .deployments(&DeploymentFilter {
                project: Some(t.project.clone()),
                service: Some(t.service.clone()),
                env: Some(t.env.clone()),
                running,
                limit: 1,
            })
            .await?
            .pop())
    }

    async fn reconcile(self: &Arc<Self>, t: &Target) -> Result<(), EngineError> {
        let running = self.newest_deployment(t, true).await?;
        if let Some(d) = running {
            if d.phase == super::gate::AWAITING {
                return self.at_gate(t, d).await;
            }
            return self.advance(t, d).await;
        }
        match (t.desired_version, t.stable_version) {
            (Some(want), stable) if stable != Some(want) => {
                // A release whose deployment already failed is not tried again until someone
                // asks for it again (which moves the target's `updated_ms`).
                let last = self.newest_deployment(t, false).await?;
                let failed_already = last.is_some_and(|d| {
                    d.version == want
                        && d.status != DeployStatus::Succeeded
                        && d.finished_ms.is_some_and(|f| f >= t.updated_ms)
                });
                if failed_already {
                    return match stable {
                        Some(v) => self.heal(t, v).await,
                        None => Ok(()),
                    };
                }
                self.begin(t, want).await
            }
            (_, Some(stable)) => self.heal(t, stable).await,
            _ => Ok(()),
        }
    }

    /// The listener of a target, created on first use (in the proxy daemon when there is
    /// one). Returns its key too, for [`Engine::route`].
    async fn proxy(
        &self,
        t: &Target,
        expose: SocketAddr,
    ) -> Result<(String, Listener), EngineError> {
        // Keyed by address too: a release may move `expose`.
        let k = format!("{}@{expose}", key(&t.project, &t.service, &t.env));
        let mut proxies = self.fleet.proxies.lock().await;
        if let Some(p) = proxies.get(&k) {
            return Ok((k, p.clone()));
        }
        let initial = RouteTable {
            groups: vec![],
            sticky: vec![],
            drain_timeout_ms: 5_000,
            upstream_timeout_ms: UPSTREAM_TIMEOUT_MS,
        };
        let listener = match &self.fleet.daemon {
            Some(d) => {
                let name = format!("{}.{}.{}-{}", t.project, t.service, t.env, expose.port());
                d.listener(&name, expose, initial).await?
            }
            None => Listener::Local(Proxy::bind(expose, initial).await.map_err(|e| {
                bad(
                    format!("cannot listen on {expose} for {} in {}: {e}", t.service, t.env),
                    Some("another process uses that address; change `expose` in sluice.yml or free it".into()),
                )
            })?),
        };
        proxies.insert(k.clone(), listener.clone());
        Ok((k, listener))
    }

    /// Sets a listener's route table unless it already has it.
    async fn route(
        &self,
        k: &str,
        listener: &Listener,
        table: RouteTable,
    ) -> Result<(), EngineError> {
        if lock(&self.fleet.tables).get(k) == Some(&table) {
            return Ok(());
        }
        listener.set_table(table.clone()).await?;
        lock(&self.fleet.tables).insert(k.to_string(), table);
        Ok(())
    }

    fn instances(&self, t: &Target, version: i64) -> Vec<InstanceStatus> {
        let prefix = instance_prefix(&t.project, &t.service, &t.env, version);
        let mut v: Vec<InstanceStatus> = self
            .fleet
            .runtime
            .list()
            .into_iter()
            .filter(|i| i.id.starts_with(&prefix) && i.state != InstanceState::Stopped)
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn pool(&self, list: &[InstanceStatus]) -> PoolObs {
        let mut seen = lock(&self.fleet.seen_ready);
        let mut p = PoolObs::default();
        for i in list {
            if i.ready {
                seen.insert(i.id.clone());
            }
            if i.state == InstanceState::Stopping {
                p.stopping += 1;
                continue;
            }
            if i.state.is_active() {
                p.running += 1;
            }
            if i.ready {
                p.ready += 1;
            }
            let ever_ready = seen.contains(&i.id);
            let dead = !i.state.is_active();
            if ever_ready {
                p.restarts += i.restarts;
            } else {
                p.failed_to_start += i.restarts + u32::from(dead);
            }
        }
        p
    }

    /// Where and from what a release's instances run: the runtime, the image (containers)
    /// and the artifact to unpack (empty for a release that is its image).
    fn workload(&self, ctx: &Ctx) -> Result<(Driver, Option<String>, PathBuf), String> {
        let artifact = self
            .paths
            .artifacts
            .join(format!("{}.tar", ctx.release.artifact_sha256));
        match &ctx.deploy.runtime {
            RuntimeSpec::Process => Ok((Driver::Process, None, artifact)),
            RuntimeSpec::Docker { image } => match image {
                ContainerImage::Named(name) => Ok((Driver::Docker, Some(name.clone()), artifact)),
                ContainerImage::ServerDefault => match &self.config.base_image {
                    Some(_) => Ok((Driver::Docker, None, artifact)),
                    None => Err(format!(
                        "service {} runs its release artifact in containers but the server has no base image; start the server with --base-image IMAGE or set deploy.image",
                        ctx.release.service
                    )),
                },
                ContainerImage::Built { step } => match release_image(&ctx.release) {
                    Some(id) => Ok((Driver::Docker, Some(id), PathBuf::new())),
                    None => Err(format!(
                        "release v{} of {} has no image: its build_image step `{step}` recorded none",
                        ctx.release.version, ctx.release.service
                    )),
                },
            },
        }
    }

    /// Starts or stops instances of one version until `want` are running.
    async fn scale(
        &self,
        t: &Target,
        ctx: &Ctx,
        version: i64,
        want: u32,
        actor: &str,
    ) -> Result<(), EngineError> {
        let list = self.instances(t, version);
        let active: Vec<&InstanceStatus> = list
            .iter()
            .filter(|i| i.state.is_active() && i.state != InstanceState::Stopping)
            .collect();
        if (active.len() as u32) < want {
            // The release's `deploy.secrets`, read once for the instances started now.
            let secrets = self
                .deploy_secrets(t, &ctx.deploy)
                .await
                .map_err(|reason| bad(reason, None))?;
            let used: HashSet<String> = list.iter().map(|i| i.id.clone()).collect();
            let prefix = instance_prefix(&t.project, &t.service, &t.env, version);
            let mut n = 0u32;
            for _ in active.len() as u32..want {
                while used.contains(&format!("{prefix}{n}")) {
                    n += 1;
                }
                let id = format!("{prefix}{n}");
                n += 1;
                // A crash-looped or exited record with the same id is replaced.
                self.fleet.runtime.forget(&id);
                let port = sluice_runtime::free_port()
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                // Secret values reach the instance through its private files, never the spec.
                let launch = self
                    .instance_secret_env(
                        &id,
                        &secrets,
                        ctx.deploy.start.as_deref().unwrap_or_default(),
                        &ctx.target.env_vars,
                    )
                    .await
                    .map_err(|reason| bad(reason, None))?;
                let (driver, image, artifact) =
                    self.workload(ctx).map_err(|reason| bad(reason, None))?;
                let spec = InstanceSpec {
                    id: id.clone(),
                    service: t.service.clone(),
                    env: t.env.clone(),
                    version: format!("v{version}"),
                    artifact,
                    command: launch.command,
                    workdir: ctx.deploy.workdir.clone(),
                    port,
                    env_vars: launch.env_vars,
                    health: health_policy(&ctx.target),
                    restart: RestartPolicy {
                        max_restarts: ctx.deploy.max_restarts,
                        backoff_initial: Duration::from_millis(200),
                        backoff_max: Duration::from_secs(10),
                    },
                    stop_grace: ctx.deploy.stop_grace,
                    image,
                    // A container reads its secret files (and the masking FIFO) where the
                    // host wrote them.
                    mounts: if secrets.is_empty() || driver == Driver::Process {
                        Vec::new()
                    } else {
                        vec![
                            self.config
                                .data_dir
                                .join(super::vault::INSTANCE_SECRETS_DIR)
                                .join(&id),
                        ]
                    },
                    limits: ResourceLimits {
                        cpus: ctx.deploy.resources.cpus,
                        memory_bytes: ctx.deploy.resources.memory_bytes,
                    },
                };
                match self.fleet.runtime.start_in(driver, spec).await {
                    Ok(()) => {
                        self.record(vec![NewEvent::new(EventKind::InstanceStarted, actor, format!("instance/{id}"))
                            .project(&t.project)
                            .payload(json!({ "instance": id, "service": t.service, "env": t.env, "version": version, "port": port }))])
                            .await?;
                    }
                    Err(e) => {
                        self.record(vec![NewEvent::new(EventKind::InstanceUnhealthy, actor, format!("instance/{id}"))
                            .project(&t.project)
                            .payload(json!({ "instance": id, "state": "failed_to_start", "error": e.to_string() }))])
                            .await?;
                    }
                }
            }
        } else if (active.len() as u32) > want {
            // Stop not-ready instances first, then the newest.
            let mut victims: Vec<&InstanceStatus> = active.clone();
            victims.sort_by_key(|i| (i.ready, std::cmp::Reverse(i.id.clone())));
            for i in victims.into_iter().take(active.len() - want as usize) {
                self.stop_instance(t, &i.id, "scaled down").await?;
            }
        }
        // Dead records (crash loop) of this version beyond what is wanted are forgotten
        // when the version is not wanted at all.
        if want == 0 {
            for i in list.iter().filter(|i| !i.state.is_active()) {
                self.fleet.runtime.forget(&i.id);
            }
        }
        Ok(())
    }

    /// Takes an instance out of service: it leaves the route table the caller sets next, and
    /// is stopped after that (`stop_leaving`).
    async fn stop_instance(&self, t: &Target, id: &str, reason: &str) -> Result<(), EngineError> {
        lock(&self.fleet.leaving).insert(id.to_string());
        self.record(vec![
            NewEvent::new(
                EventKind::InstanceStopped,
                "system",
                format!("instance/{id}"),
            )
            .project(&t.project)
            .payload(json!({ "instance": id, "reason": reason })),
        ])
        .await
    }

    /// Stops the target's instances taken out of service, now that its route table without
    /// them is in place.
    fn stop_leaving(&self, t: &Target) {
        let prefix = format!("{}.{}.{}.v", t.project, t.service, t.env);
        let leaving: Vec<String> = {
            let mut all = lock(&self.fleet.leaving);
            let mine: Vec<String> = all
                .iter()
                .filter(|id| id.starts_with(&prefix))
                .cloned()
                .collect();
            for id in &mine {
                all.remove(id);
            }
            mine
        };
        for id in leaving {
            let runtime = self.fleet.runtime.clone();
            // Stopping waits out the grace period; do it in the background so the tick goes on.
            tokio::spawn(async move {
                if let Err(e) = runtime.stop(&id).await {
                    tracing::warn!(instance = %id, error = %e, "stop failed");
                }
            });
        }
    }

    /// Where the proxy may send requests: the ready instances not on their way out.
    fn backends(&self, list: &[InstanceStatus]) -> Vec<SocketAddr> {
        let leaving = lock(&self.fleet.leaving);
        list.iter()
            .filter(|i| i.ready && i.state != InstanceState::Stopping && !leaving.contains(&i.id))
            .map(|i| SocketAddr::from(([127, 0, 0, 1], i.port)))
            .collect()
    }

    /// Starts a deployment of `version` for a target.
    async fn begin(self: &Arc<Self>, t: &Target, version: i64) -> Result<(), EngineError> {
        let ctx = match self.ctx(&t.project, &t.service, &t.env, version).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot deploy");
                return Ok(());
            }
        };
        let spec = self.deploy_spec_now(t, &ctx);
        let first = t.stable_version.is_none();
        let now = now_ms();
        let machine = Machine::new(spec, now as u64, first)
            .map_err(|e| bad(format!("invalid deploy settings: {e}"), None))?;
        // The deployment carries the trigger and actor of the request that set this release.
        let (trigger, actor) = self
            .store
            .events(&sluice_store::EventFilter {
                subject: Some(format!("target/{}/{}/{}", t.project, t.service, t.env)),
                kinds: vec![EventKind::TargetDesired],
                after: (self.store.last_event_seq().await?).saturating_sub(10_000),
                limit: 10_000,
                ..sluice_store::EventFilter::default()
            })
            .await?
            .into_iter()
            .rev()
            .find(|e| e.payload["version"].as_i64() == Some(version))
            .map(|e| {
                (
                    e.payload["trigger"]
                        .as_str()
                        .unwrap_or("controller")
                        .to_string(),
                    e.actor,
                )
            })
            .unwrap_or_else(|| ("controller".into(), "system".into()));
        let strategy = if first {
            "first_deploy"
        } else {
            strategy_name(&ctx.target.strategy)
        };
        // A manual deploy to a gated environment waits at its gate before anything starts.
        let gated = if super::gate::gated_trigger(&trigger) {
            let p = self
                .env_policy(&t.project, &t.env, Some(&ctx.release.commit))
                .await?;
            p.gate.required > 0 || p.gate.wait_ms > 0
        } else {
            false
        };
        let phase = if gated {
            super::gate::AWAITING.to_string()
        } else {
            machine.phase().as_str().to_string()
        };
        let d = self
            .store
            .create_deployment(
                NewDeployment {
                    project: t.project.clone(),
                    service: t.service.clone(),
                    env: t.env.clone(),
                    version,
                    from_version: t.stable_version,
                    strategy: strategy.into(),
                    phase,
                    state: serde_json::to_value(&machine)
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                    trigger,
                    actor,
                    created_ms: now,
                },
                vec![
                    NewEvent::new(EventKind::DeployStarted, "system", "deployment/{id}")
                        .project(&t.project)
                        .payload(json!({
                            "service": t.service, "env": t.env, "version": version,
                            "from_version": t.stable_version, "strategy": strategy,
                            "expose": ctx.target.expose.to_string(),
                        })),
                ],
            )
            .await?;
        self.hub.bump();
        if gated {
            return Ok(());
        }
        // The first step binds the listener; one that cannot bind fails the deployment at
        // once while what serves keeps serving.
        self.advance(t, d).await
    }

    /// A deployment at its gate: aborted by an operator, still waiting, or starting now
    /// with a fresh strategy machine (its clock starts when the gate opens).
    async fn at_gate(self: &Arc<Self>, t: &Target, d: Deployment) -> Result<(), EngineError> {
        if matches!(lock(&self.fleet.commands).get(&d.id), Some(Command::Abort)) {
            return self
                .finish(
                    t,
                    &d,
                    DeployStatus::Failed,
                    "aborted",
                    Some("aborted while waiting for approval".into()),
                    None,
                )
                .await;
        }
        let gate = self.gate(&d).await?;
        if gate != sluice_auth::Gate::Ready {
            return Ok(());
        }
        let ctx = self.ctx(&t.project, &t.service, &t.env, d.version).await?;
        let spec = self.deploy_spec_now(t, &ctx);
        let machine = Machine::new(spec, now_ms() as u64, t.stable_version.is_none())
            .map_err(|e| bad(format!("invalid deploy settings: {e}"), None))?;
        let state =
            serde_json::to_value(&machine).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.store
            .update_deployment(
                DeploymentUpdate {
                    id: d.id,
                    phase: Some(machine.phase().as_str().into()),
                    state: Some(state.clone()),
                    now_ms: now_ms(),
                    ..Default::default()
                },
                vec![
                    NewEvent::new(EventKind::GatePassed, "system", format!("deployment/{}", d.id))
                        .project(&t.project)
                        .payload(json!({"deployment": d.id, "env": t.env, "gate": "approvals and wait timer"})),
                ],
            )
            .await?;
        let d = self.store.deployment(d.id).await?;
        self.advance(t, d).await
    }

    /// Feeds the machine one observation and carries out what it asks.
    async fn advance(self: &Arc<Self>, t: &Target, d: Deployment) -> Result<(), EngineError> {
        let mut machine: Machine = serde_json::from_value(d.state.clone()).map_err(|e| {
            EngineError::Internal(format!("deployment {} has unreadable state: {e}", d.id))
        })?;
        let ctx = self.ctx(&t.project, &t.service, &t.env, d.version).await?;
        // Secrets that cannot be read (sealed, missing) fail the deployment before its
        // instances start; what serves keeps serving.
        if let Err(reason) = self.check_deploy_secrets(t, &ctx.deploy).await {
            return self
                .finish(t, &d, DeployStatus::Failed, "failed", Some(reason), None)
                .await;
        }
        let (pkey, proxy) = match self.proxy(t, ctx.target.expose).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .finish(
                        t,
                        &d,
                        DeployStatus::Failed,
                        "failed",
                        Some(e.to_string()),
                        None,
                    )
                    .await;
            }
        };
        let cand = self.instances(t, d.version);
        let stable = d
            .from_version
            .map(|v| self.instances(t, v))
            .unwrap_or_default();
        let quantile = match &ctx.target.strategy {
            StrategySpec::Canary { analysis, .. } => analysis.quantile,
            _ => 0.99,
        };
        let current = proxy.stats().await.ok();
        let stats = {
            let windows = lock(&self.fleet.windows);
            windows
                .get(&d.id)
                .zip(current.as_ref())
                .map(|((window, base), now)| {
                    let w = |v: Option<i64>| -> VersionWindow {
                        let Some(v) = v else {
                            return VersionWindow::default();
                        };
                        let name = format!("v{v}");
                        let cur = now.versions.get(&name).cloned().unwrap_or_default();
                        let since = match base.versions.get(&name) {
                            Some(b) => cur.since(b),
                            None => cur,
                        };
                        VersionWindow {
                            requests: since.requests,
                            errors: since.responses_5xx,
                            latency_ms_at_quantile: since.quantile_ms(quantile),
                        }
                    };
                    WindowStats {
                        window: *window,
                        candidate: w(Some(d.version)),
                        stable: w(d.from_version),
                    }
                })
        };
        let command = lock(&self.fleet.commands).remove(&d.id);
        let obs = Observation {
            now_ms: now_ms() as u64,
            stable: self.pool(&stable),
            candidate: self.pool(&cand),
            stats,
            command,
        };
        let desired = machine.step(&obs);
        // The analysis window: snapshot the counters when the machine asks for a new one.
        match desired.analysis_window {
            Some(w) => {
                let mut windows = lock(&self.fleet.windows);
                if windows.get(&d.id).map(|(cur, _)| *cur) != Some(w)
                    && let Some(now) = current.clone()
                {
                    windows.insert(d.id, (w, now));
                }
            }
            None => {
                lock(&self.fleet.windows).remove(&d.id);
            }
        }
        self.scale(t, &ctx, d.version, desired.candidate_instances, "system")
            .await?;
        if let Some(v) = d.from_version
            && (desired.stable_instances > 0 || !stable.is_empty())
        {
            let sctx = self.ctx(&t.project, &t.service, &t.env, v).await?;
            self.scale(t, &sctx, v, desired.stable_instances, "system")
                .await?;
        }
        // Route: only ready instances, split as the machine says.
        let cand_b = self.backends(&self.instances(t, d.version));
        let stable_b = d
            .from_version
            .map(|v| self.backends(&self.instances(t, v)))
            .unwrap_or_default();
        let (cw, sw) = match desired.traffic {
            Traffic::ByReadiness => (cand_b.len() as u32, stable_b.len() as u32),
            Traffic::Weighted { candidate_weight } => (
                u32::from(candidate_weight),
                100 - u32::from(candidate_weight.min(100)),
            ),
        };
        let mut groups = Vec::new();
        if let Some(v) = d.from_version {
            groups.push(Group {
                version: format!("v{v}"),
                weight: sw,
                backends: stable_b,
            });
        }
        groups.push(Group {
            version: format!("v{}", d.version),
            weight: cw,
            backends: cand_b,
        });
        let sticky = desired
            .sticky
            .as_ref()
            .map(|s| match s {
                StickyGroup::Header { name, value } => StickyRule {
                    header: Some(name.clone()),
                    cookie: None,
                    value: value.clone(),
                    version: format!("v{}", d.version),
                },
                StickyGroup::Cookie { name, value } => StickyRule {
                    header: None,
                    cookie: Some(name.clone()),
                    value: value.clone(),
                    version: format!("v{}", d.version),
                },
            })
            .into_iter()
            .collect();
        let table = RouteTable {
            groups,
            sticky,
            drain_timeout_ms: ctx.deploy.stop_grace.as_millis() as u64,
            upstream_timeout_ms: ctx.deploy.request_timeout.as_millis() as u64,
        };
        self.route(&pkey, &proxy, table).await?;
        self.stop_leaving(t);
        // How long after the last green instance became ready the switch took effect (the
        // proxy table was swapped just above): the blue-green switch time.
        let switched_after_ready = desired
            .decisions
            .iter()
            .any(|dec| dec.kind == "bluegreen.switched")
            .then(|| {
                self.instances(t, d.version)
                    .iter()
                    .filter_map(|i| i.ready_since_ms)
                    .max()
                    .map(|ready| now_ms() - ready)
            })
            .flatten();
        // Record decisions and persist the machine.
        let events: Vec<NewEvent> = desired
            .decisions
            .iter()
            .map(|dec| {
                NewEvent::new(EventKind::DeployDecision, "system", format!("deployment/{}", d.id))
                    .project(&t.project)
                    .payload(json!({
                        "deployment": d.id, "service": t.service, "env": t.env, "version": d.version,
                        "what": dec.message, "kind": dec.kind, "figures": dec.figures, "at_ms": dec.at_ms,
                        "switch_after_ready_ms": (dec.kind == "bluegreen.switched").then_some(switched_after_ready).flatten(),
                    }))
            })
            .collect();
        let state =
            serde_json::to_value(&machine).map_err(|e| EngineError::Internal(e.to_string()))?;
        match machine.outcome() {
            None => {
                if !events.is_empty() || state != d.state {
                    self.store
                        .update_deployment(
                            DeploymentUpdate {
                                id: d.id,
                                phase: Some(desired.phase.as_str().into()),
                                state: Some(state),
                                now_ms: now_ms(),
                                ..Default::default()
                            },
                            events,
                        )
                        .await?;
                    self.hub.bump();
                }
                Ok(())
            }
            Some(outcome) => {
                let (status, stable, reason) = match &outcome {
                    Outcome::Succeeded => (DeployStatus::Succeeded, Some(Some(d.version)), None),
                    Outcome::RolledBack { reason } => {
                        (DeployStatus::RolledBack, None, Some(reason.to_string()))
                    }
                    Outcome::Failed { reason } => {
                        (DeployStatus::Failed, None, Some(reason.to_string()))
                    }
                };
                let mut d2 = d.clone();
                d2.state = state;
                self.store
                    .update_deployment(
                        DeploymentUpdate {
                            id: d.id,
                            state: Some(d2.state.clone()),
                            ..Default::default()
                        },
                        events,
                    )
                    .await?;
                self.finish(t, &d2, status, desired.phase.as_str(), reason, stable)
                    .await
            }
        }
    }

    async fn finish(
        &self,
        t: &Target,
        d: &Deployment,
        status: DeployStatus,
        phase: &str,
        reason: Option<String>,
        stable: Option<Option<i64>>,
    ) -> Result<(), EngineError> {
        lock(&self.fleet.windows).remove(&d.id);
        lock(&self.fleet.commands).remove(&d.id);
        let now = now_ms();
        self.store
            .update_deployment(
                DeploymentUpdate {
                    id: d.id,
                    status: Some(status),
                    phase: Some(phase.into()),
                    reason: reason.clone(),
                    stable_version: stable,
                    now_ms: now,
                    ..Default::default()
                },
                vec![NewEvent::new(EventKind::DeployFinished, "system", format!("deployment/{}", d.id))
                    .project(&t.project)
                    .payload(json!({
                        "deployment": d.id, "service": t.service, "env": t.env, "version": d.version,
                        "from_version": d.from_version, "status": status, "reason": reason,
                        "duration_ms": now - d.created_ms,
                    }))],
            )
            .await?;
        self.hub.bump();
        // A release that misbehaved (not one an operator aborted) opens or joins an incident
        // of its service, linked to the release.
        if status != DeployStatus::Succeeded
            && reason.as_deref().is_some_and(|r| !r.starts_with("aborted"))
            && let Err(e) = self
                .deploy_signal(t, d, status, reason.as_deref().unwrap_or_default())
                .await
        {
            tracing::warn!(deployment = d.id, error = %e, "cannot raise the deploy alert");
        }
        // A rolled-back or failed release is not retried by itself: the desired release
        // goes back to what serves, so the controller heals towards it.
        // Only when nobody asked for another release meanwhile: a deploy queued behind this
        // one must not be lost.
        let still_wanted = self
            .store
            .target(&t.project, &t.service, &t.env)
            .await?
            .is_some_and(|now| now.desired_version == Some(d.version));
        if status != DeployStatus::Succeeded
            && still_wanted
            && let Some(v) = d.from_version
        {
            self.store
                    .set_desired(
                        &t.project, &t.service, &t.env, v, now,
                        NewEvent::new(EventKind::TargetDesired, "system", format!("target/{}/{}/{}", t.project, t.service, t.env))
                            .project(&t.project)
                            .payload(json!({ "service": t.service, "env": t.env, "version": v, "from": d.version, "trigger": "rollback" })),
                    )
                    .await?;
        }
        Ok(())
    }

    /// The deployment settings of a target now: an autoscaled target deploys a new release
    /// with as many instances as the serving one runs.
    fn deploy_spec_now(&self, t: &Target, ctx: &Ctx) -> DeploySpec {
        let mut spec = deploy_spec(&ctx.deploy, &ctx.target);
        if ctx.target.autoscale.is_some()
            && let Some(s) = lock(&self.fleet.autoscalers).get(&key(&t.project, &t.service, &t.env))
        {
            spec.replicas = s.replicas;
        }
        spec
    }

    /// The instance count an autoscaled target should run: samples the serving release's
    /// instances every `interval`, lets the autoscaler decide, records each decision with its
    /// figures as an event, and keeps the state in the store.
    async fn autoscale(
        &self,
        t: &Target,
        ctx: &Ctx,
        version: i64,
        list: &[InstanceStatus],
        a: &sluice_spec::Autoscale,
    ) -> Result<u32, EngineError> {
        let k = key(&t.project, &t.service, &t.env);
        let setting = format!("autoscale/{k}");
        let policy = autoscale_policy(a, &ctx.deploy);
        let known = lock(&self.fleet.autoscalers).get(&k).cloned();
        let mut state = match known {
            Some(s) => s,
            None => {
                let stored = self
                    .store
                    .setting(&setting)
                    .await?
                    .and_then(|json| serde_json::from_str::<Scaled>(&json).ok());
                match stored {
                    Some(s) => s,
                    None => Scaled {
                        scaler: Autoscaler::new(policy.clone())
                            .map_err(|e| bad(format!("invalid autoscale settings: {e}"), None))?,
                        replicas: ctx.target.replicas.clamp(a.min, a.max),
                        next_sample_ms: 0,
                    },
                }
            }
        };
        if state.scaler.policy() != &policy {
            state
                .scaler
                .set_policy(policy)
                .map_err(|e| bad(format!("invalid autoscale settings: {e}"), None))?;
        }
        let now = now_ms();
        if now >= state.next_sample_ms {
            state.next_sample_ms = now + i64::try_from(a.interval.as_millis()).unwrap_or(i64::MAX);
            let measured = list
                .iter()
                .filter(|i| i.state.is_active() && i.state != InstanceState::Stopping)
                .map(|i| async move {
                    let u = self.fleet.runtime.usage(&i.id).await?;
                    Some(InstanceUsage {
                        id: i.id.clone(),
                        cpu_cores: u.cpu_cores,
                        memory_bytes: u.memory_bytes,
                        ready: i.ready,
                    })
                });
            let samples: Vec<InstanceUsage> = futures_util::future::join_all(measured)
                .await
                .into_iter()
                .flatten()
                .collect();
            let decided =
                state
                    .scaler
                    .observe(u64::try_from(now).unwrap_or(0), &samples, state.replicas);
            if let Some(d) = decided {
                let kind = match d.action {
                    ScaleAction::Out => EventKind::AutoscaleScaledOut,
                    ScaleAction::In => EventKind::AutoscaleScaledIn,
                    ScaleAction::Hold | ScaleAction::Steady => EventKind::AutoscaleHeld,
                };
                state.replicas = d.desired;
                let mut payload =
                    serde_json::to_value(&d).map_err(|e| EngineError::Internal(e.to_string()))?;
                if let Some(p) = payload.as_object_mut() {
                    p.insert("service".into(), json!(t.service));
                    p.insert("env".into(), json!(t.env));
                    p.insert("version".into(), json!(version));
                }
                let json = serde_json::to_string(&state)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                self.store.set_setting(&setting, &json).await?;
                self.record(vec![
                    NewEvent::new(kind, "autoscaler", format!("target/{k}"))
                        .project(&t.project)
                        .payload(payload),
                ])
                .await?;
            }
        }
        let replicas = state.replicas;
        lock(&self.fleet.autoscalers).insert(k, state);
        Ok(replicas)
    }

    /// Keeps a converged target converged: the serving release runs its replica count,
    /// strays of other releases are stopped, and the proxy routes to the ready instances.
    async fn heal(self: &Arc<Self>, t: &Target, version: i64) -> Result<(), EngineError> {
        let ctx = self.ctx(&t.project, &t.service, &t.env, version).await?;
        let (pkey, proxy) = self.proxy(t, ctx.target.expose).await?;
        // Listeners of this target on addresses the serving release no longer uses close.
        let stale: Vec<(String, Listener)> = {
            let mut proxies = self.fleet.proxies.lock().await;
            let mine = format!("{}@", key(&t.project, &t.service, &t.env));
            let keys: Vec<String> = proxies
                .keys()
                .filter(|k| k.starts_with(&mine) && **k != pkey)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| proxies.remove(&k).map(|p| (k, p)))
                .collect()
        };
        for (k, p) in stale {
            lock(&self.fleet.tables).remove(&k);
            p.shutdown().await;
        }
        let list = self.instances(t, version);
        let active = list
            .iter()
            .filter(|i| i.state.is_active() && i.state != InstanceState::Stopping)
            .count() as u32;
        let want = match &ctx.target.autoscale {
            Some(a) => self.autoscale(t, &ctx, version, &list, a).await?,
            None => ctx.target.replicas,
        };
        if active < want {
            self.scale(t, &ctx, version, want, "system").await?;
            self.record(vec![NewEvent::new(EventKind::DriftHealed, "system", format!("target/{}/{}/{}", t.project, t.service, t.env))
                .project(&t.project)
                .payload(json!({ "service": t.service, "env": t.env, "what": format!("{} of {} instances of v{version} were running; started the rest", active, want) }))])
                .await?;
        } else if active > want {
            self.scale(t, &ctx, version, want, "system").await?;
        }
        // Instances of any other release of this target are leftovers.
        let prefix = format!("{}.{}.{}.v", t.project, t.service, t.env);
        let mine = instance_prefix(&t.project, &t.service, &t.env, version);
        for i in self.fleet.runtime.list() {
            if i.id.starts_with(&prefix) && !i.id.starts_with(&mine) {
                if i.state == InstanceState::Stopping {
                    continue;
                }
                if i.state.is_active() {
                    self.stop_instance(t, &i.id, "not the serving release")
                        .await?;
                } else {
                    self.fleet.runtime.forget(&i.id);
                }
            }
        }
        let table = RouteTable {
            groups: vec![Group {
                version: format!("v{version}"),
                weight: 100,
                backends: self.backends(&self.instances(t, version)),
            }],
            sticky: vec![],
            drain_timeout_ms: ctx.deploy.stop_grace.as_millis() as u64,
            upstream_timeout_ms: ctx.deploy.request_timeout.as_millis() as u64,
        };
        self.route(&pkey, &proxy, table).await?;
        self.stop_leaving(t);
        Ok(())
    }

    /// Queues an operator command for a running deployment.
    pub async fn deployment_command(
        &self,
        id: i64,
        cmd: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        let d = self.store.deployment(id).await?;
        if d.status.is_terminal() {
            return Err(EngineError::State(format!(
                "deployment {id} has already finished ({})",
                d.status
            )));
        }
        let c = match cmd {
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "abort" => Command::Abort,
            "promote" => Command::Promote,
            other => {
                return Err(bad(
                    format!("unknown command `{other}`"),
                    Some("use pause, resume, abort or promote".into()),
                ));
            }
        };
        self.record(vec![
            NewEvent::new(EventKind::DeployDecision, actor, format!("deployment/{id}"))
                .project(&d.project)
                .payload(json!({"deployment": id, "command": cmd, "requested": true})),
        ])
        .await?;
        lock(&self.fleet.commands).insert(id, c);
        self.wake_controller();
        Ok(())
    }

    /// The status matrix: every target with its releases, instances, traffic and deployment.
    pub async fn status(&self) -> Result<Vec<serde_json::Value>, EngineError> {
        let mut out = Vec::new();
        for t in self.store.targets(None).await? {
            let running = self.newest_deployment(&t, true).await?;
            let version = running.as_ref().map(|d| d.version).or(t.stable_version);
            let ctx = match version {
                Some(v) => self.ctx(&t.project, &t.service, &t.env, v).await.ok(),
                None => None,
            };
            let prefix = format!("{}.{}.{}.v", t.project, t.service, t.env);
            let instances: Vec<InstanceStatus> = self
                .fleet
                .runtime
                .list()
                .into_iter()
                .filter(|i| i.id.starts_with(&prefix))
                .collect();
            let ready = instances.iter().filter(|i| i.ready).count();
            let table = ctx.as_ref().and_then(|c| {
                lock(&self.fleet.tables)
                    .get(&format!(
                        "{}@{}",
                        key(&t.project, &t.service, &t.env),
                        c.target.expose
                    ))
                    .cloned()
            });
            let traffic = table
                .map(|tb| {
                    let total: u32 = tb
                        .groups
                        .iter()
                        .filter(|g| !g.backends.is_empty())
                        .map(|g| g.weight)
                        .sum();
                    tb.groups
                        .iter()
                        .filter(|g| !g.backends.is_empty() && g.weight > 0)
                        .map(|g| {
                            format!(
                                "{} {}%",
                                g.version,
                                (g.weight * 100).checked_div(total).unwrap_or(0)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let health = if instances.is_empty() {
                "none".to_string()
            } else if instances.iter().all(|i| i.ready) {
                "healthy".to_string()
            } else {
                format!(
                    "{} not ready",
                    instances.iter().filter(|i| !i.ready).count()
                )
            };
            out.push(json!({
                "project": t.project, "service": t.service, "env": t.env,
                "desired_version": t.desired_version, "stable_version": t.stable_version,
                "replicas": ctx.as_ref().map(|c| c.target.replicas).unwrap_or(0),
                "expose": ctx.as_ref().map(|c| c.target.expose.to_string()),
                "ready": ready, "traffic": traffic, "health": health,
                "deployment": running.map(|d| json!({ "id": d.id, "version": d.version, "phase": d.phase, "strategy": d.strategy })),
                "instances": instances,
            }));
        }
        Ok(out)
    }

    /// Stops the data plane and every instance (used by tests and `sluice demo`; a normal
    /// server shutdown leaves instances running for the next server to adopt).
    pub async fn stop_fleet(&self) {
        let proxies: Vec<Listener> = self
            .fleet
            .proxies
            .lock()
            .await
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in proxies {
            p.shutdown().await;
        }
        lock(&self.fleet.tables).clear();
        let _ = self.fleet.runtime.kill_all();
    }
}

/// The image a release was built as (its `build_image` step's image id).
fn release_image(release: &Release) -> Option<String> {
    release.image_id.clone()
}

/// The autoscaler's policy from `sluice.yml`: utilisation is measured against the instance's
/// CPU limit (one core without one) and memory limit.
fn autoscale_policy(a: &sluice_spec::Autoscale, deploy: &Deploy) -> AutoscalePolicy {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    AutoscalePolicy {
        min: a.min,
        max: a.max,
        cpu_target_percent: a.cpu_percent.map(f64::from),
        memory_target_percent: a.memory_percent.map(f64::from),
        cpu_reference_cores: deploy.resources.cpus.unwrap_or(1.0),
        memory_reference_bytes: deploy.resources.memory_bytes,
        interval_ms: ms(a.interval),
        cooldown_ms: ms(a.cooldown),
        stabilization_ms: ms(a.stabilization),
        scale_up_step: a.scale_up_step,
        tolerance: sluice_deploy::autoscale::DEFAULT_TOLERANCE,
    }
}
