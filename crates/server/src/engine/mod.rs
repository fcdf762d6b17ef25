//! The engine: turns branch movements into runs, runs into releases, and recovers after a
//! crash. It is level-based: [`Engine::sync_project`] compares what the source has with what
//! the store last saw and acts on the difference, so polling, webhooks and restarts all go
//! through the same path and converge to the same result.
//!
//! Architecture invariant: the engine never writes state without its event (the store
//! enforces that per call) and never holds a release decision in memory only: "does this
//! service already have a release for this commit" is always asked of the store.

pub mod access;
mod containers;
pub mod controller;
mod deploy;
mod dora;
mod exec;
pub mod gate;
pub mod incidents;
pub mod listener;
pub mod localref;
mod recover;
pub mod runtimes;
pub mod vault;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_core::{EventKind, NewEvent};
use sluice_git::{GitError, Mirror};
use sluice_runner::Masker;
use sluice_spec::Config;
use sluice_store::{NewProject, NewRun, NewStep, Project, Run, Store, StoreError};
use tokio::sync::{Mutex, Semaphore, watch};

use crate::config::ServerConfig;
use crate::hub::Hub;

/// Errors the engine reports to callers (the HTTP layer maps them to statuses).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request cannot be done as asked.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// It exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The repository could not be read.
    #[error("git: {0}")]
    Git(#[from] GitError),
    /// The store failed.
    #[error("{0}")]
    Store(StoreError),
    /// The thing is in a state that does not allow the request.
    #[error("{0}")]
    State(String),
    /// Something failed inside the server.
    #[error("internal error: {0}")]
    Internal(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the permission.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts; retry after this many milliseconds.
    #[error("too many failed attempts; retry in {}s", (.0 + 999) / 1000)]
    RateLimited(i64),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::Conflict(what) => EngineError::Conflict(what),
            other => EngineError::Store(other),
        }
    }
}

fn bad(message: impl Into<String>, hint: impl Into<Option<String>>) -> EngineError {
    EngineError::BadRequest {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A parsed `sluice.yml`, or its positioned diagnostics.
pub type ParsedConfig = Arc<Result<Config, String>>;

/// A request to run a project's pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Project name.
    pub project: String,
    /// Environment name; None: the one whose branch is `branch`, or the first.
    pub env: Option<String>,
    /// Branch; None: the environment's branch.
    pub branch: Option<String>,
    /// Commit (full or short); None: the branch head.
    pub commit: Option<String>,
    /// Only these services; None: all services (manual) or the changed ones (push).
    pub services: Option<Vec<String>>,
    /// Run services even if unchanged since their last release.
    pub force: bool,
    /// `push`, `poll`, `webhook`, `manual`, `rerun`, `register`.
    pub trigger: String,
    /// Who asked.
    pub actor: String,
    /// Run being re-run, if any.
    pub rerun_of: Option<i64>,
}

/// Where things live in the data directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Bare mirrors, one per project.
    pub mirrors: PathBuf,
    /// Per-run checkouts.
    pub workspaces: PathBuf,
    /// Content-addressed release artifacts.
    pub artifacts: PathBuf,
    /// Step caches, per project.
    pub caches: PathBuf,
}

/// The engine; shared behind an `Arc`.
pub struct Engine {
    /// The store.
    pub store: Store,
    /// The validated configuration.
    pub config: ServerConfig,
    /// Change notifications for live views.
    pub hub: Hub,
    /// Data directory layout.
    pub paths: Paths,
    /// Hides secret values in logs; replaced when secrets are written or unsealed.
    masker: std::sync::RwLock<Arc<Masker>>,
    token_prefix: String,
    mirrors: Mutex<HashMap<String, Mirror>>,
    configs: std::sync::Mutex<HashMap<(String, String), (String, ParsedConfig)>>,
    bound: std::sync::OnceLock<std::net::SocketAddr>,
    project_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    cancels: std::sync::Mutex<HashMap<i64, watch::Sender<bool>>>,
    step_slots: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    /// Ids of runs that just reached a terminal status, for `wait_run`.
    finished: tokio::sync::broadcast::Sender<i64>,
    /// Wakes the deploy controller early.
    pub(crate) controller_wake: tokio::sync::Notify,
    /// Service instances and the data plane.
    pub fleet: controller::Fleet,
    /// Authentication keys and the login limiter.
    pub access: access::Access,
    /// The secret store's key and its seal.
    pub vault: vault::SecretStore,
    /// Alerts, incidents and notifications.
    pub incidents: incidents::Incidents,
    /// The Docker Engine client (connects on use; builds, container steps, Docker runtime).
    pub docker: sluice_docker::Docker,
}

impl Engine {
    /// Builds the engine over an open store. Creates the data directory layout.
    pub fn new(store: Store, config: ServerConfig) -> std::io::Result<Arc<Engine>> {
        let d = &config.data_dir;
        let paths = Paths {
            mirrors: d.join("mirrors"),
            workspaces: d.join("workspaces"),
            artifacts: d.join("artifacts"),
            caches: d.join("cache"),
        };
        for p in [
            &paths.mirrors,
            &paths.workspaces,
            &paths.artifacts,
            &paths.caches,
        ] {
            std::fs::create_dir_all(p)?;
        }
        let instance = instance_id(d)?;
        let access = access::Access::open(d)?;
        let masker =
            std::sync::RwLock::new(Arc::new(Masker::new(config.secrets.values().cloned())));
        let vault = vault::SecretStore::new(&config);
        let daemon = config
            .proxy_bin
            .clone()
            .map(|bin| listener::Daemon::new(bin, d.join("proxy")));
        let docker = match &config.docker_socket {
            Some(socket) => sluice_docker::Docker::new(socket),
            None => sluice_docker::Docker::from_env()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        };
        let fleet = controller::Fleet::new(
            d.join("runtime"),
            format!("sluice-{instance}:"),
            daemon,
            docker.clone(),
            config.base_image.clone().unwrap_or_default(),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Arc::new(Engine {
            store,
            step_slots: Arc::new(Semaphore::new(config.max_parallel_steps)),
            config,
            hub: Hub::default(),
            paths,
            masker,
            token_prefix: format!("sluice-{instance}-"),
            mirrors: Mutex::new(HashMap::new()),
            configs: std::sync::Mutex::new(HashMap::new()),
            bound: std::sync::OnceLock::new(),
            project_locks: std::sync::Mutex::new(HashMap::new()),
            cancels: std::sync::Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
            finished: tokio::sync::broadcast::Sender::new(256),
            controller_wake: tokio::sync::Notify::new(),
            fleet,
            access,
            vault,
            incidents: incidents::Incidents::new(),
            docker,
        }))
    }

    /// Appends events with no other state and notifies live views.
    pub async fn record(&self, events: Vec<NewEvent>) -> Result<(), EngineError> {
        self.store.append_events(events).await?;
        self.hub.bump();
        Ok(())
    }

    /// The mirror of a project by name (no store read when it is already open).
    pub async fn mirror_of(&self, name: &str) -> Result<Mirror, EngineError> {
        if let Some(m) = self.mirrors.lock().await.get(name) {
            return Ok(m.clone());
        }
        let project = self.store.project(name).await?;
        self.mirror(&project).await
    }

    /// The mirror of a project, opened on first use.
    pub async fn mirror(&self, project: &Project) -> Result<Mirror, EngineError> {
        let mut mirrors = self.mirrors.lock().await;
        if let Some(m) = mirrors.get(&project.name) {
            return Ok(m.clone());
        }
        let dir = self.paths.mirrors.join(format!("{}.git", project.name));
        let m = Mirror::open(&dir, &project.source).await?;
        mirrors.insert(project.name.clone(), m.clone());
        Ok(m)
    }

    fn project_lock(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self.project_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// The parsed `sluice.yml` of a project at a commit (cached; commits are immutable).
    /// `Ok(Err(text))` carries the positioned diagnostics when the file is invalid or missing.
    pub async fn config_at(
        &self,
        mirror: &Mirror,
        project: &str,
        commit: &str,
    ) -> Result<(String, ParsedConfig), EngineError> {
        let key = (project.to_string(), commit.to_string());
        if let Some(c) = self
            .configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let text = mirror.read_file(commit, "sluice.yml").await?;
        let parsed = match &text {
            None => Err(format!(
                "sluice.yml: not found at the root of commit {}; add one (see `sluice schema` and docs/sluice-yml.md)",
                short(commit)
            )),
            Some(t) => sluice_spec::parse(t, "sluice.yml").map_err(|d| d.to_string()),
        };
        let entry = (text.unwrap_or_default(), Arc::new(parsed));
        let mut cache = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(key, entry.clone());
        Ok(entry)
    }

    /// The parsed configuration of a commit if it is cached and valid.
    pub(crate) fn cached_config(&self, project: &str, commit: &str) -> Option<Arc<Config>> {
        let cache = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        let (_, parsed) = cache.get(&(project.to_string(), commit.to_string()))?;
        parsed.as_ref().as_ref().ok().map(|c| Arc::new(c.clone()))
    }

    /// Registers a project: checks that the source is reachable and carries a valid
    /// `sluice.yml` on some branch, then records it and syncs it (which starts pipelines for
    /// the current heads of its environments' branches).
    pub async fn add_project(
        self: &Arc<Self>,
        source: &str,
        name: Option<String>,
        poll_interval_s: Option<i64>,
        webhook_secret: Option<String>,
        actor: &str,
    ) -> Result<Project, EngineError> {
        let source = normalise_source(source);
        let heads = sluice_git::ls_remote(&source).await.map_err(|e| {
            bad(
                format!("cannot read repository `{source}`: {e}"),
                Some(
                    "give a local path to a git repository or a git URL this server can reach"
                        .into(),
                ),
            )
        })?;
        if heads.is_empty() {
            return Err(bad(
                format!("repository `{source}` has no branches yet"),
                Some("push a first commit with a sluice.yml, then add the project".into()),
            ));
        }
        // Find the project's name from sluice.yml on a default-looking branch.
        let tmp_dir = self.paths.mirrors.join(format!(".probe-{}", random_hex(6)));
        let probe = Mirror::open(&tmp_dir, &source).await?;
        let result = async {
            probe.fetch().await?;
            let mut branches = probe.branches().await?;
            branches.sort_by_key(|(b, _)| !matches!(b.as_str(), "main" | "master"));
            let mut first_error = None;
            for (_, sha) in &branches {
                let Some(text) = probe.read_file(sha, "sluice.yml").await? else {
                    continue;
                };
                match sluice_spec::parse(&text, "sluice.yml") {
                    Ok(c) => {
                        // A path filter that matches no file is almost always a typo that
                        // would silently keep a service from ever running.
                        let files = probe.list_files(sha).await?;
                        let dead = sluice_spec::check_paths(&text, "sluice.yml", &c, &files);
                        if dead.is_empty() {
                            return Ok(c.project);
                        }
                        first_error.get_or_insert(sluice_spec::Diagnostics(dead).to_string());
                    }
                    Err(d) => {
                        first_error.get_or_insert(d.to_string());
                    }
                }
            }
            Err(bad(
                first_error.unwrap_or_else(|| {
                    format!("no branch of `{source}` has a sluice.yml at its root")
                }),
                Some("fix sluice.yml (`sluice validate`) and push it, then add the project".into()),
            ))
        }
        .await;
        let yml_name = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&tmp_dir).await;
                return Err(e);
            }
        };
        let name = name.unwrap_or(yml_name);
        if !valid_name(&name) {
            let _ = tokio::fs::remove_dir_all(&tmp_dir).await;
            return Err(bad(
                format!("`{name}` is not a valid project name"),
                Some("use lower-case letters, digits and `-`".into()),
            ));
        }
        // Keep what the probe fetched as the project's mirror rather than fetching twice.
        if self.store.project(&name).await.is_err() {
            let dir = self.paths.mirrors.join(format!("{name}.git"));
            let _ = tokio::fs::remove_dir_all(&dir).await;
            self.mirrors.lock().await.remove(&name);
            if tokio::fs::rename(&tmp_dir, &dir).await.is_err() {
                let _ = tokio::fs::remove_dir_all(&tmp_dir).await;
            }
        } else {
            let _ = tokio::fs::remove_dir_all(&tmp_dir).await;
        }
        let secret = match webhook_secret {
            Some(s) if s.len() >= 8 => s,
            Some(_) => {
                return Err(bad(
                    "webhook secret is shorter than 8 characters",
                    Some("use a long random value, or omit it and sluice makes one".into()),
                ));
            }
            None => random_hex(20),
        };
        let project = self
            .store
            .add_project(
                NewProject {
                    name: name.clone(),
                    source: source.clone(),
                    poll_interval_s: poll_interval_s
                        .unwrap_or(self.config.poll_interval.as_secs().max(1) as i64),
                    webhook_secret: secret,
                },
                NewEvent::new(EventKind::ProjectAdded, actor, format!("project/{name}"))
                    .project(&name)
                    .payload(json!({ "source": source })),
            )
            .await?;
        self.hub.bump();
        let engine = self.clone();
        let n = name.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.sync_project(&n, "register", "system").await {
                tracing::warn!(project = %n, error = %e, "first sync failed");
            }
        });
        Ok(project)
    }

    /// Fetches a project if its source moved, records each moved branch and starts the
    /// pipelines those pushes call for. Returns the runs started.
    pub async fn sync_project(
        self: &Arc<Self>,
        name: &str,
        via: &str,
        actor: &str,
    ) -> Result<Vec<Run>, EngineError> {
        let lock = self.project_lock(name);
        let _guard = lock.lock().await;
        let project = self.store.project(name).await?;
        let mirror = self.mirror(&project).await?;
        let stored: HashMap<String, String> = self
            .store
            .branch_heads(name)
            .await?
            .into_iter()
            .map(|h| (h.branch, h.commit))
            .collect();
        if let Some(local) = localref::local_branch_heads(&project.source) {
            let same =
                local.len() == stored.len() && local.iter().all(|(b, c)| stored.get(b) == Some(c));
            if same {
                return Ok(Vec::new());
            }
        }
        mirror.fetch().await?;
        let mut started = Vec::new();
        for (branch, commit) in mirror.branches().await? {
            let before = stored.get(&branch).cloned();
            if before.as_deref() == Some(commit.as_str()) {
                continue;
            }
            let head = sluice_store::BranchHead {
                project: name.to_string(),
                branch: branch.clone(),
                commit: commit.clone(),
                updated_ms: now_ms(),
            };
            let event = NewEvent::new(EventKind::PushReceived, actor, format!("project/{name}"))
                .project(name)
                .payload(json!({
                    "branch": branch, "before": before, "after": commit, "via": via,
                }));
            if !self
                .store
                .set_branch_head(&head, before.as_deref(), event)
                .await?
            {
                continue;
            }
            self.hub.bump();
            let req = RunRequest {
                project: name.to_string(),
                branch: Some(branch.clone()),
                commit: Some(commit.clone()),
                trigger: via.to_string(),
                actor: actor.to_string(),
                ..Default::default()
            };
            match self.plan_run(&mirror, req, true).await {
                Ok(Some(run)) => started.push(run),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(project = %name, %branch, error = %e, "could not plan a run")
                }
            }
        }
        for run in &started {
            self.start_run(run.clone());
        }
        Ok(started)
    }

    /// A manual run: syncs the project first (so the newest commit is known), then plans
    /// and starts a run of every (or the chosen) service, changed or not.
    pub async fn request_run(self: &Arc<Self>, req: RunRequest) -> Result<Run, EngineError> {
        match self.sync_project(&req.project, "poll", "system").await {
            Err(EngineError::NotFound(what)) => return Err(EngineError::NotFound(what)),
            Err(e) => {
                tracing::debug!(error = %e, "sync before manual run failed; using the mirror as it is");
            }
            Ok(_) => {}
        }
        let mirror = self.mirror_of(&req.project).await?;
        let run = self
            .plan_run(&mirror, req, false)
            .await?
            .ok_or_else(|| bad("nothing to run", None))?;
        self.start_run(run.clone());
        Ok(run)
    }

    /// Decides what a run contains and records it. `from_push`: only an environment's branch
    /// triggers, and only changed services run. Returns None when nothing needs to run.
    async fn plan_run(
        &self,
        mirror: &Mirror,
        req: RunRequest,
        from_push: bool,
    ) -> Result<Option<Run>, EngineError> {
        let project = req.project.clone();
        let (commit, branch) = self.resolve_target(mirror, &req).await?;
        let (text, config) = self.config_at(mirror, &project, &commit).await?;
        let config = match config.as_ref() {
            Ok(c) => c.clone(),
            Err(diag) => {
                self.record(vec![
                    NewEvent::new(
                        EventKind::ConfigInvalid,
                        &req.actor,
                        format!("project/{project}"),
                    )
                    .project(&project)
                    .payload(json!({ "commit": commit, "branch": branch, "error": diag })),
                ])
                .await?;
                return if from_push {
                    Ok(None)
                } else {
                    Err(bad(
                        format!("sluice.yml at {} is invalid:\n{diag}", short(&commit)),
                        Some("fix it (`sluice validate`) and push again".into()),
                    ))
                };
            }
        };
        let env = match (&req.env, from_push) {
            (Some(e), _) => config
                .environments
                .iter()
                .find(|x| &x.name == e)
                .ok_or_else(|| {
                    bad(
                        format!("environment `{e}` is not defined in sluice.yml"),
                        Some(format!(
                            "defined: {}",
                            config
                                .environments
                                .iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    )
                })?,
            (None, true) => match config.environments.iter().find(|x| x.branch == branch) {
                Some(e) => e,
                None => return Ok(None),
            },
            (None, false) => config
                .environments
                .iter()
                .find(|x| x.branch == branch)
                .or_else(|| config.environments.first())
                .ok_or_else(|| bad("sluice.yml defines no environment", None))?,
        };
        if let Some(wanted) = &req.services {
            for s in wanted {
                if !config.services.iter().any(|x| &x.name == s) {
                    return Err(bad(
                        format!("service `{s}` is not defined in sluice.yml"),
                        Some(format!(
                            "defined: {}",
                            config
                                .services
                                .iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    ));
                }
            }
        }
        let mut services = Vec::new();
        let mut events = Vec::new();
        let mut changed_cache: HashMap<String, Option<Vec<String>>> = HashMap::new();
        for svc in &config.services {
            if let Some(wanted) = &req.services
                && !wanted.contains(&svc.name)
            {
                continue;
            }
            if !req.force {
                if let Some(rel) = self
                    .store
                    .release_for_commit(&project, &svc.name, &commit)
                    .await?
                {
                    events.push(unchanged(&req, &svc.name, &commit, json!({
                        "reason": format!("release {} was already built from this commit", rel.version),
                        "release": rel.version,
                    })));
                    continue;
                }
                if let Some(base) = self
                    .change_base(mirror, &project, &svc.name, &env.name, &commit)
                    .await?
                {
                    let changed = match changed_cache.get(&base.commit) {
                        Some(c) => c.clone(),
                        None => {
                            let c = match mirror.changed_files(&base.commit, &commit).await {
                                Ok(files) => Some(files),
                                Err(GitError::UnknownCommit(_)) => None,
                                Err(e) => return Err(e.into()),
                            };
                            changed_cache.insert(base.commit.clone(), c.clone());
                            c
                        }
                    };
                    // Unknown base (history rewritten and collected): run rather than skip.
                    if let Some(files) = changed
                        && !files.iter().any(|f| svc.matches(f))
                    {
                        events.push(unchanged(&req, &svc.name, &commit, json!({
                                "reason": "no file under its paths changed since its last release in this environment",
                                "base": base.commit, "base_release": base.version,
                            })));
                        continue;
                    }
                }
            }
            services.push(svc);
        }
        if services.is_empty() {
            if !events.is_empty() {
                self.record(events).await?;
            }
            return if from_push {
                Ok(None)
            } else {
                Err(bad(
                    "no service needs to run",
                    Some("pass --force to run services that did not change".into()),
                ))
            };
        }
        let mut steps = Vec::new();
        for svc in &services {
            for st in &svc.steps {
                steps.push(NewStep {
                    name: format!("{}/{}", svc.name, st.name),
                    service: svc.name.clone(),
                    needs: st
                        .needs
                        .iter()
                        .map(|n| format!("{}/{n}", svc.name))
                        .collect(),
                    gate: st.gate,
                });
            }
        }
        let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        events.push(
            NewEvent::new(EventKind::RunQueued, &req.actor, "run/{id}")
                .project(&project)
                .payload(json!({
                    "env": env.name, "branch": branch, "commit": commit,
                    "trigger": req.trigger, "services": names, "rerun_of": req.rerun_of,
                })),
        );
        let run = self
            .store
            .create_run(
                NewRun {
                    project: project.clone(),
                    env: env.name.clone(),
                    branch,
                    commit,
                    trigger: req.trigger.clone(),
                    actor: req.actor.clone(),
                    rerun_of: req.rerun_of,
                    config: text,
                    services: names,
                    steps,
                    created_ms: now_ms(),
                },
                events,
            )
            .await?;
        self.hub.bump();
        Ok(Some(run))
    }

    /// The release a service's changes are measured against in an environment: its last
    /// release there or, for an environment that never released it (e.g. a branch just cut),
    /// its newest release from any environment whose commit is an ancestor of `commit`.
    /// None means "never built here": the service runs.
    async fn change_base(
        &self,
        mirror: &Mirror,
        project: &str,
        service: &str,
        env: &str,
        commit: &str,
    ) -> Result<Option<sluice_store::Release>, EngineError> {
        if let Some(r) = self
            .store
            .last_release_in_env(project, service, env)
            .await?
        {
            return Ok(Some(r));
        }
        let candidates = self
            .store
            .releases(&sluice_store::ReleaseFilter {
                project: Some(project.to_string()),
                service: Some(service.to_string()),
                limit: 50,
            })
            .await?;
        for r in candidates {
            if mirror.is_ancestor(&r.commit, commit).await.unwrap_or(false) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn resolve_target(
        &self,
        mirror: &Mirror,
        req: &RunRequest,
    ) -> Result<(String, String), EngineError> {
        if let Some(c) = &req.commit {
            let full = (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_hexdigit());
            if full && req.trigger != "manual" {
                // Ids that came from the mirror itself need no resolving (no git process).
                return Ok((
                    c.to_ascii_lowercase(),
                    req.branch.clone().unwrap_or_default(),
                ));
            }
            let commit = mirror.resolve(c).await.map_err(|e| match e {
                GitError::UnknownCommit(_) => bad(
                    format!("commit `{c}` is not in the repository"),
                    Some("push it first, or check the id".into()),
                ),
                other => other.into(),
            })?;
            let branch = req.branch.clone().unwrap_or_default();
            return Ok((commit, branch));
        }
        // The heads the store last saw are the mirror's heads after a sync; reading them
        // costs no git process.
        let branches: Vec<(String, String)> = self
            .store
            .branch_heads(&req.project)
            .await?
            .into_iter()
            .map(|h| (h.branch, h.commit))
            .collect();
        let branch = match (&req.branch, &req.env) {
            (Some(b), _) => b.clone(),
            (None, Some(env)) => {
                // The environment's branch is defined in sluice.yml: find a branch whose
                // sluice.yml defines that environment, preferring main/master.
                let mut ordered = branches.clone();
                ordered.sort_by_key(|(b, _)| !matches!(b.as_str(), "main" | "master"));
                let mut found = None;
                for (_, sha) in &ordered {
                    let (_, cfg) = self.config_at(mirror, &req.project, sha).await?;
                    if let Ok(cfg) = cfg.as_ref()
                        && let Some(e) = cfg.environments.iter().find(|e| &e.name == env)
                    {
                        found = Some(e.branch.clone());
                        break;
                    }
                }
                found.ok_or_else(|| {
                    bad(
                        format!("no branch's sluice.yml defines environment `{env}`"),
                        Some("check the environment name with `sluice validate`".into()),
                    )
                })?
            }
            (None, None) => branches
                .iter()
                .map(|(b, _)| b.clone())
                .find(|b| b == "main" || b == "master")
                .or_else(|| branches.first().map(|(b, _)| b.clone()))
                .ok_or_else(|| bad("the repository has no branches", None))?,
        };
        let commit = branches
            .iter()
            .find(|(b, _)| *b == branch)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| {
                bad(
                    format!("branch `{branch}` does not exist in the repository"),
                    Some("push it first, or name another branch".into()),
                )
            })?;
        Ok((commit, branch))
    }

    /// Starts executing a queued run in the background.
    pub fn start_run(self: &Arc<Self>, run: Run) {
        let (tx, rx) = watch::channel(false);
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run.id, tx);
        let engine = self.clone();
        tokio::spawn(async move {
            let id = run.id;
            if let Err(e) = engine.clone().execute(run, rx).await {
                tracing::error!(run = id, error = %e, "run failed inside the server");
            }
            engine
                .cancels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            engine.hub.bump();
        });
    }

    /// Asks a running run to stop: pending steps are skipped, running ones killed.
    pub async fn cancel_run(&self, id: i64, actor: &str) -> Result<Run, EngineError> {
        let run = self.store.run(id).await?;
        if run.status.is_terminal() {
            return Err(EngineError::State(format!(
                "run {id} has already finished ({}); nothing to cancel",
                run.status
            )));
        }
        let sent = self
            .cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|tx| tx.send(true).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(EngineError::State(format!(
                "run {id} is not executing on this server; it will be recovered as interrupted at the next start"
            )));
        }
        self.record(vec![
            NewEvent::new(EventKind::RunCancelled, actor, format!("run/{id}"))
                .project(&run.project)
                .payload(json!({ "reason": "cancelled on request" })),
        ])
        .await?;
        Ok(run)
    }

    /// Waits until a run is terminal or `timeout` passes; returns it as it is then.
    pub async fn wait_run(&self, id: i64, timeout: Duration) -> Result<Run, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before reading, so a finish between the read and the wait is not missed.
        let mut rx = self.finished.subscribe();
        loop {
            let run = self.store.run(id).await?;
            if run.status.is_terminal() {
                return Ok(run);
            }
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Ok(run);
                }
                match tokio::time::timeout(left.min(Duration::from_secs(1)), rx.recv()).await {
                    Ok(Ok(done)) if done != id => continue,
                    // Our run, a lagged receiver or a periodic re-check: read the store again.
                    _ => break,
                }
            }
        }
    }

    /// Tells `wait_run` callers that a run reached a terminal status.
    pub(crate) fn notify_finished(&self, id: i64) {
        let _ = self.finished.send(id);
        self.hub.bump();
    }

    /// Polls every project at its interval until shutdown.
    pub async fn poll_loop(self: Arc<Self>) {
        let mut last: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let projects = match self.store.projects().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "poller cannot list projects");
                    Vec::new()
                }
            };
            let now = tokio::time::Instant::now();
            for p in projects {
                if p.poll_interval_s <= 0 {
                    continue;
                }
                let due = last.get(&p.name).is_none_or(|t| {
                    now.duration_since(*t) >= Duration::from_secs(p.poll_interval_s as u64)
                });
                if due {
                    last.insert(p.name.clone(), now);
                    if let Err(e) = self.sync_project(&p.name, "poll", "poller").await {
                        tracing::warn!(project = %p.name, error = %e, "poll failed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// A receiver that turns true when the engine shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops background loops and kills every step process this server started.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        // Running steps are killed, not cancelled (a cancel would record the runs as
        // cancelled): their runs are recovered as interrupted at the next start.
        let killed = sluice_runner::kill_orphans(&self.token_prefix);
        if !killed.is_empty() {
            tracing::info!(count = killed.len(), "killed step processes at shutdown");
        }
    }

    /// Records the address the server actually bound (port 0 becomes a real port).
    pub fn set_bound(&self, addr: std::net::SocketAddr) {
        let _ = self.bound.set(addr);
    }

    /// The URL people and webhooks reach this server at: `public_url` if configured, else
    /// the bound address.
    pub fn base_url(&self) -> String {
        match (&self.config.public_url, self.bound.get()) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Some(a)) => format!("http://{a}"),
            (None, None) => self.config.base_url(),
        }
    }

    /// Masks every known secret value in `text` (instance output shown through the API).
    pub fn mask(&self, text: &str) -> String {
        let masker = self.masker();
        text.lines()
            .map(|l| masker.mask(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
            + if text.ends_with('\n') { "\n" } else { "" }
    }

    /// Asks the deploy controller to look at the targets now rather than at its next tick.
    pub fn wake_controller(&self) {
        self.controller_wake.notify_one();
    }

    /// Step processes running now.
    pub fn steps_running(&self) -> usize {
        self.config.max_parallel_steps - self.step_slots.available_permits()
    }

    /// The prefix of this data directory's step tokens.
    pub fn token_prefix(&self) -> &str {
        &self.token_prefix
    }
}

fn unchanged(
    req: &RunRequest,
    service: &str,
    commit: &str,
    mut payload: serde_json::Value,
) -> NewEvent {
    if let Some(o) = payload.as_object_mut() {
        o.insert("service".into(), json!(service));
        o.insert("commit".into(), json!(commit));
    }
    NewEvent::new(
        EventKind::ServiceUnchanged,
        &req.actor,
        format!("project/{}", req.project),
    )
    .project(&req.project)
    .payload(payload)
}

/// The first 10 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0] != b'-'
}

fn normalise_source(s: &str) -> String {
    let p = std::path::Path::new(s);
    if !s.contains("://")
        && !s.contains('@')
        && p.exists()
        && let Ok(abs) = p.canonicalize()
    {
        return abs.display().to_string();
    }
    s.to_string()
}

/// `n` random bytes as hex, from the OS.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // The OS has no randomness to give; fall back to time-derived bytes rather than
        // refusing to start. Only used for ids and generated webhook secrets.
        let t = now_ms() as u64 ^ std::process::id() as u64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
    hex::encode(buf)
}

fn instance_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = random_hex(6);
            std::fs::write(&path, &id)?;
            Ok(id)
        }
    }
}
