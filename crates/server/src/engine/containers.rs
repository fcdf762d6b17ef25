//! The steps of a run that go through the Docker Engine instead of a host process group:
//! `build_image` (an image build of the checkout), `run` steps with an `image` (the command in
//! a container of that image, the workspace bind-mounted, like GitLab's docker executor) and
//! `scan` (the vulnerability gate over the checkout's lockfiles and the built image).
//!
//! Each function here runs one attempt; `exec.rs` keeps the retries, the step's final status,
//! caches and JUnit, exactly as for host steps. Output goes into the step's log as it arrives,
//! masked like host output. A timeout or a cancel stops the build, container or scan and ends
//! the attempt as `timed_out`/`cancelled`; a daemon that is down or goes away is a failed step
//! with the client's message (which says how to start dockerd), never a panic or a hung run.
//!
//! Step containers carry the labels [`LABEL_OWNER`] (this data directory's step-token prefix),
//! `sluice.run`, `sluice.step` and `sluice.project`, and are always removed when the attempt
//! ends; [`Engine::remove_step_containers`] removes those a crashed server left behind.
//!
//! Architecture invariant: this module decides nothing about retries, gates or releases; it
//! records what a step produced (the image id, the scan report) on the step's row and nothing
//! else. The release picks them up from there (`exec.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use serde_json::json;
use sluice_core::{EventKind, StepStatus};
use sluice_docker::{
    Bind, BuildOptions, ContainerConfig, Docker, DockerError, LogOptions, LogStream,
};
use sluice_runner::{Masker, OutputLine, Stream};
use sluice_spec::{BuildImage, ScanSpec, Service, Step as SpecStep, StepKind, VulnSeverity};
use sluice_store::{Run, StepUpdate};
use sluice_vuln::{Database, Inventory, Policy, Report, Severity};
use tokio::sync::{mpsc, watch};

use super::exec::ev;
use super::{Engine, EngineError, now_ms};

/// Label on every step container: the step-token prefix of the data directory whose server
/// made it, so leftovers are found without touching other servers' containers.
pub const LABEL_OWNER: &str = "sluice.step-owner";
/// Label on step containers: the run id.
pub const LABEL_RUN: &str = "sluice.run";
/// Label on step containers: the step (`service/step`).
pub const LABEL_STEP: &str = "sluice.step";
/// Label on step containers and built images: the project.
pub const LABEL_PROJECT: &str = "sluice.project";

/// How long the rest of a container's output is read after it stopped.
const DRAIN: Duration = Duration::from_secs(2);

/// How one attempt of a step ended.
pub(super) struct Ended {
    /// The attempt's status.
    pub status: StepStatus,
    /// The exit code, for steps that ran a command.
    pub exit_code: Option<i64>,
    /// How it ended, for the retry note ("exited with code 3").
    pub why: String,
    /// A line of sluice's own for the end of the log, written after all of the output.
    note: Option<String>,
}

impl Ended {
    fn failed(why: impl Into<String>) -> Ended {
        Ended {
            status: StepStatus::Failed,
            exit_code: None,
            why: why.into(),
            note: None,
        }
    }

    fn succeeded() -> Ended {
        Ended {
            status: StepStatus::Succeeded,
            exit_code: None,
            why: "succeeded".into(),
            note: None,
        }
    }

    fn stopped(stop: Stop, timeout: Duration) -> Ended {
        match stop {
            Stop::TimedOut => Ended {
                status: StepStatus::TimedOut,
                exit_code: None,
                why: format!("timed out after {timeout:?}"),
                note: None,
            },
            Stop::Cancelled => Ended {
                status: StepStatus::Cancelled,
                exit_code: None,
                why: "was cancelled".into(),
                note: None,
            },
        }
    }

    fn exited(code: i64) -> Ended {
        Ended {
            status: if code == 0 {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
            exit_code: Some(code),
            why: format!("exited with code {code}"),
            note: None,
        }
    }
}

/// One attempt of a container step: what it runs in and with.
pub(super) struct Attempt<'a> {
    /// The run.
    pub run: &'a Run,
    /// The step's service.
    pub svc: &'a Service,
    /// The step.
    pub st: &'a SpecStep,
    /// `service/step`.
    pub name: &'a str,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run's workspace (the checkout).
    pub ws: &'a Path,
    /// The step's working directory (inside the workspace).
    pub workdir: &'a Path,
    /// The step's environment, secrets included.
    pub env: &'a BTreeMap<String, String>,
    /// The step's log sequence.
    pub seq: &'a Arc<AtomicI64>,
    /// Turns true when the run is cancelled.
    pub cancel: watch::Receiver<bool>,
}

/// Why an attempt was stopped before it finished.
#[derive(Clone, Copy, Debug)]
enum Stop {
    TimedOut,
    Cancelled,
}

/// Runs `fut` until it finishes, `timeout` passes or `cancel` turns true (whichever is first).
async fn until_stopped<F: std::future::Future>(
    fut: F,
    timeout: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> Result<F::Output, Stop> {
    if *cancel.borrow() {
        return Err(Stop::Cancelled);
    }
    tokio::pin!(fut);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut watching = true;
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = &mut deadline => return Err(Stop::TimedOut),
            changed = cancel.changed(), if watching => match changed {
                Ok(()) if *cancel.borrow() => return Err(Stop::Cancelled),
                Ok(()) => {}
                // The run loop is gone (server shutting down): only the timeout applies.
                Err(_) => watching = false,
            },
        }
    }
}

impl Engine {
    /// The advisory database the `scan` steps read: `--advisory-db`, else
    /// `DATA_DIR/advisories`.
    pub fn advisory_db_dir(&self) -> PathBuf {
        self.config
            .advisory_db
            .clone()
            .unwrap_or_else(|| self.config.data_dir.join("advisories"))
    }

    /// Runs one attempt of a `build_image`, `scan` or `run`-with-`image` step: marks the step
    /// running, streams its output into the log, and says how it ended.
    pub(super) async fn container_attempt(
        self: &Arc<Self>,
        mut a: Attempt<'_>,
    ) -> Result<Ended, EngineError> {
        self.store
            .update_step(
                StepUpdate {
                    run_id: a.run.id,
                    name: a.name.to_string(),
                    status: Some(StepStatus::Running),
                    attempt: Some(i64::from(a.attempt)),
                    pgid: Some(None),
                    started_ms: Some(now_ms()),
                    ..Default::default()
                },
                vec![ev(
                    EventKind::StepStarted,
                    a.run,
                    json!({ "step": a.name, "attempt": a.attempt }),
                )],
            )
            .await?;
        self.hub.bump();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer =
            tokio::spawn(
                self.clone()
                    .log_writer(a.run.id, a.name.to_string(), a.seq.clone(), rx),
            );
        let st = a.st;
        let ended = match &st.kind {
            StepKind::BuildImage(b) => self.build_attempt(&mut a, b, tx).await,
            StepKind::Scan(spec) => self.scan_attempt(&mut a, spec, tx).await,
            StepKind::Run {
                run: command,
                image: Some(image),
            } => self.image_attempt(&mut a, image, command, tx).await,
            StepKind::Run { image: None, .. } => {
                drop(tx);
                Ok(Err("a host step reached the container executor".to_string()))
            }
        };
        // Every output line is stored before sluice's own closing lines.
        let _ = writer.await;
        let ended = match ended? {
            Ok(mut ended) => {
                if let Some(note) = ended.note.take() {
                    self.sys_log(a.run, a.name, a.seq, &note).await;
                }
                ended
            }
            Err(msg) => {
                self.sys_log(a.run, a.name, a.seq, &msg).await;
                Ended::failed(msg)
            }
        };
        Ok(ended)
    }

    /// One image build. `Err(message)`: the step failed before or instead of building.
    async fn build_attempt(
        self: &Arc<Self>,
        a: &mut Attempt<'_>,
        b: &BuildImage,
        tx: mpsc::UnboundedSender<OutputLine>,
    ) -> Result<Result<Ended, String>, EngineError> {
        let context = match &b.context {
            Some(c) => a.ws.join(c),
            None => a.ws.to_path_buf(),
        };
        if !context.is_dir() {
            return Ok(Err(format!(
                "the build context `{}` is not a directory of the checkout",
                b.context.as_deref().unwrap_or(".")
            )));
        }
        if !context.join(&b.dockerfile).is_file() {
            return Ok(Err(format!(
                "the Dockerfile `{}` does not exist in the checkout at this commit",
                b.dockerfile_path()
            )));
        }
        // `.dockerignore` is applied by sending a copy (hard links) of what it keeps.
        let staging =
            self.paths
                .workspaces
                .join(format!("run-{}-context-{}", a.run.id, slug(&a.st.name)));
        let (ctx_dir, _staged) = if context.join(".dockerignore").is_file() {
            let (from, to, dockerfile) = (context.clone(), staging.clone(), b.dockerfile.clone());
            let staged = tokio::task::spawn_blocking(move || {
                stage_context(&from, &to, &dockerfile).map(|kept| (kept, RemoveOnDrop(to)))
            })
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
            match staged {
                Ok((kept, guard)) => {
                    self.sys_log(
                        a.run,
                        a.name,
                        a.seq,
                        &format!(".dockerignore applied: {kept} files in the build context"),
                    )
                    .await;
                    (staging, Some(guard))
                }
                Err(msg) => return Ok(Err(msg)),
            }
        } else {
            (context, None)
        };
        let tag = image_tag(&a.run.project, &a.svc.name, &a.run.commit);
        let mut labels = b.labels.clone();
        labels.insert(LABEL_PROJECT.into(), a.run.project.clone());
        labels.insert("sluice.service".into(), a.svc.name.clone());
        labels.insert("sluice.commit".into(), a.run.commit.clone());
        labels.insert("sluice.branch".into(), a.run.branch.clone());
        labels.insert(LABEL_RUN.into(), a.run.id.to_string());
        let options = BuildOptions {
            context: ctx_dir,
            dockerfile: b.dockerfile.clone(),
            tag: Some(tag.clone()),
            build_args: b.args.clone(),
            labels,
            target: b.target.clone(),
            nocache: false,
        };
        self.sys_log(
            a.run,
            a.name,
            a.seq,
            &format!(
                "building {} as {tag} through the docker daemon at {}",
                b.dockerfile_path(),
                self.docker.socket().display()
            ),
        )
        .await;
        let masker = self.masker();
        let on_line = move |line: &str| send_line(&tx, &masker, Stream::Out, line);
        let built = until_stopped(
            self.docker.build_image(&options, on_line),
            a.st.timeout,
            &mut a.cancel,
        )
        .await;
        Ok(match built {
            Ok(Ok(image)) => {
                self.store
                    .update_step(
                        StepUpdate {
                            run_id: a.run.id,
                            name: a.name.to_string(),
                            image_id: Some(image.id.clone()),
                            ..Default::default()
                        },
                        vec![],
                    )
                    .await?;
                Ok(Ended {
                    note: Some(format!(
                        "built image {} ({} steps, {} from the layer cache), tagged {tag}; not pushed (no registry is configured)",
                        image.id, image.steps, image.cached_steps
                    )),
                    ..Ended::succeeded()
                })
            }
            // The failing step's own output is already in the log, streamed as it came.
            Ok(Err(DockerError::Build { message, .. })) => {
                Err(format!("the image build failed: {message}"))
            }
            Ok(Err(e)) => Err(format!("the image build could not run: {e}")),
            Err(stop) => Ok(Ended::stopped(stop, a.st.timeout)),
        })
    }

    /// One `run` step inside a container of `image`.
    async fn image_attempt(
        self: &Arc<Self>,
        a: &mut Attempt<'_>,
        image: &str,
        command: &str,
        tx: mpsc::UnboundedSender<OutputLine>,
    ) -> Result<Result<Ended, String>, EngineError> {
        if let Err(e) = self.remove_step_containers(false).await {
            tracing::debug!(error = %e, "could not look for leftover step containers");
        }
        // The workspace is mounted at its own path, so absolute paths written by the
        // container (virtualenvs, build caches) stay valid for later host steps. The image's
        // PATH and HOME apply, not the server's.
        let mut env = a.env.clone();
        env.remove("PATH");
        env.remove("HOME");
        let ws = a.ws.display().to_string();
        let config = ContainerConfig {
            image: image.to_string(),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![command.to_string()]),
            env,
            working_dir: Some(a.workdir.display().to_string()),
            labels: self.step_labels(a.run, a.name),
            binds: vec![Bind {
                host: a.ws.to_path_buf(),
                container: ws,
                read_only: false,
            }],
            init: true,
            ..Default::default()
        };
        let id = match self.docker.create_container(&config).await {
            Ok(id) => id,
            Err(e) if e.is_not_found() => {
                return Ok(Err(format!(
                    "image `{image}` is not on the docker host ({}): sluice does not pull images, no registry is used; build it or `docker load` it there first",
                    self.docker.socket().display()
                )));
            }
            Err(e) => return Ok(Err(format!("could not create the step's container: {e}"))),
        };
        let guard = ContainerGuard::new(&self.docker, &id);
        if let Err(e) = self.docker.start_container(&id).await {
            let _ = guard.remove().await;
            return Ok(Err(format!(
                "could not start the step's container (image `{image}`, command `/bin/sh -c`): {e}"
            )));
        }
        let pump = match self
            .docker
            .logs(
                &id,
                &LogOptions {
                    follow: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(stream) => Some(tokio::spawn(pump_logs(stream, self.masker(), tx))),
            Err(e) => {
                self.sys_log(
                    a.run,
                    a.name,
                    a.seq,
                    &format!("could not follow the container's output: {e}"),
                )
                .await;
                None
            }
        };
        let waited =
            until_stopped(self.docker.wait_container(&id), a.st.timeout, &mut a.cancel).await;
        let ended = match waited {
            Ok(Ok(code)) => Ok(Ended::exited(code)),
            Ok(Err(e)) => Err(format!("lost the step's container: {e}")),
            Err(stop) => {
                // SIGTERM (forwarded by the container's init), SIGKILL after the grace.
                if let Err(e) = self
                    .docker
                    .stop_container(&id, self.config.kill_grace)
                    .await
                {
                    tracing::warn!(container = %id, error = %e, "could not stop a step container");
                }
                Ok(Ended::stopped(stop, a.st.timeout))
            }
        };
        if let Some(mut pump) = pump
            && tokio::time::timeout(DRAIN, &mut pump).await.is_err()
        {
            pump.abort();
        }
        let mut ended = ended;
        if let Err(e) = guard.remove().await {
            let msg = format!("could not remove the step's container {id}: {e}");
            match &mut ended {
                Ok(ended) => ended.note = Some(msg),
                Err(why) => *why = format!("{why}; {msg}"),
            }
        }
        Ok(ended)
    }

    /// One vulnerability scan.
    async fn scan_attempt(
        self: &Arc<Self>,
        a: &mut Attempt<'_>,
        spec: &ScanSpec,
        tx: mpsc::UnboundedSender<OutputLine>,
    ) -> Result<Result<Ended, String>, EngineError> {
        let dir = self.advisory_db_dir();
        let db = match open_database(&dir).await {
            Ok(db) => db,
            Err(msg) => return Ok(Err(msg)),
        };
        let policy = match policy_of(spec) {
            Ok(p) => p,
            Err(msg) => return Ok(Err(msg)),
        };
        let image = if spec.image {
            match self.built_image(a.run, a.svc).await? {
                Ok(id) => Some(id),
                Err(msg) => return Ok(Err(msg)),
            }
        } else {
            None
        };
        let what = match (spec.lockfiles, &image) {
            (true, Some(_)) => "the checkout's lockfiles and the service's image",
            (true, None) => "the checkout's lockfiles",
            (false, Some(_)) => "the service's image",
            (false, None) => "nothing",
        };
        self.sys_log(
            a.run,
            a.name,
            a.seq,
            &format!(
                "scanning {what} against {} advisories in {}",
                db.len(),
                dir.display()
            ),
        )
        .await;
        let engine = self.clone();
        let (run, name, ws) = (a.run.clone(), a.name.to_string(), a.ws.to_path_buf());
        let lockfiles = spec.lockfiles;
        let collect = async move {
            let mut inventory = Inventory::default();
            if lockfiles {
                let found = tokio::task::spawn_blocking(move || sluice_vuln::scan_dir(&ws))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("could not scan the checkout's lockfiles: {e}"))?;
                inventory.extend(found);
            }
            if let Some(image) = &image {
                inventory.extend(engine.scan_image(&run, &name, image).await?);
            }
            Ok::<Inventory, String>(inventory)
        };
        let inventory = match until_stopped(collect, a.st.timeout, &mut a.cancel).await {
            Ok(Ok(inv)) => inv,
            Ok(Err(msg)) => return Ok(Err(msg)),
            Err(stop) => return Ok(Ok(Ended::stopped(stop, a.st.timeout))),
        };
        let Some(today) = today() else {
            return Ok(Err(
                "the server's clock gives no valid date, so allowlist expiries cannot be checked; fix the clock".into(),
            ));
        };
        let report =
            tokio::task::spawn_blocking(move || sluice_vuln::gate(&db, &inventory, &policy, today))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        let json =
            serde_json::to_value(&report).map_err(|e| EngineError::Internal(e.to_string()))?;
        self.store
            .update_step(
                StepUpdate {
                    run_id: a.run.id,
                    name: a.name.to_string(),
                    vuln_report: Some(json),
                    ..Default::default()
                },
                vec![],
            )
            .await?;
        // The report's last line is its verdict with the counts.
        let masker = self.masker();
        for line in report.to_text().lines() {
            send_line(&tx, &masker, Stream::Out, line);
        }
        Ok(Ok(verdict(&report)))
    }

    /// The id of the image the service's `build_image` step built in this run.
    async fn built_image(
        &self,
        run: &Run,
        svc: &Service,
    ) -> Result<Result<String, String>, EngineError> {
        let Some((build, _)) = svc.build_step() else {
            return Ok(Err(format!(
                "service `{}` has no build_image step, so there is no image to scan",
                svc.name
            )));
        };
        let step = format!("{}/{}", svc.name, build.name);
        let image = self
            .store
            .steps(run.id)
            .await?
            .into_iter()
            .find(|s| s.name == step)
            .and_then(|s| s.image_id);
        Ok(image.ok_or_else(|| {
            format!("the build_image step `{step}` recorded no image in this run, so there is no image to scan")
        }))
    }

    /// The packages inside `image`: a stopped container of it, its filesystem exported and
    /// read as it streams, the container removed.
    async fn scan_image(&self, run: &Run, step: &str, image: &str) -> Result<Inventory, String> {
        let config = ContainerConfig {
            image: image.to_string(),
            // Never started: a command is only needed because images may have none.
            entrypoint: Some(vec!["/sluice-scan-never-started".into()]),
            cmd: Some(Vec::new()),
            labels: self.step_labels(run, step),
            ..Default::default()
        };
        let id =
            self.docker.create_container(&config).await.map_err(|e| {
                format!("could not create a container of image {image} to scan: {e}")
            })?;
        let guard = ContainerGuard::new(&self.docker, &id);
        let scanned = async {
            let mut stream =
                self.docker.export_container(&id).await.map_err(|e| {
                    format!("could not export the filesystem of image {image}: {e}")
                })?;
            let (chunks, rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(16);
            let pump = tokio::spawn(async move {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk
                        .map(|b| b.to_vec())
                        .map_err(|e| std::io::Error::other(e.to_string()));
                    let broken = chunk.is_err();
                    if chunks.send(chunk).await.is_err() || broken {
                        break;
                    }
                }
            });
            let inv = tokio::task::spawn_blocking(move || {
                sluice_vuln::scan_rootfs_tar(ChannelReader::new(rx))
            })
            .await;
            pump.abort();
            inv.map_err(|e| e.to_string())?
                .map_err(|e| format!("could not read the filesystem of image {image}: {e}"))
        }
        .await;
        if let Err(e) = guard.remove().await {
            tracing::warn!(container = %id, error = %e, "could not remove a scan container");
        }
        scanned
    }

    /// Labels of a step container.
    fn step_labels(&self, run: &Run, step: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_OWNER.to_string(), self.token_prefix.clone()),
            (LABEL_RUN.to_string(), run.id.to_string()),
            (LABEL_STEP.to_string(), step.to_string()),
            (LABEL_PROJECT.to_string(), run.project.clone()),
        ])
    }

    /// Removes the step containers of this data directory that are left over: those of
    /// finished runs (a server that crashed or was killed mid-step leaves them; recovery marks
    /// their runs interrupted), or every one when `all` (at start-up, before any run starts).
    /// Returns how many were removed. Every container step calls it with `all = false`.
    pub async fn remove_step_containers(&self, all: bool) -> Result<usize, DockerError> {
        let owner = format!("{LABEL_OWNER}={}", self.token_prefix);
        let mut removed = 0;
        for c in self.docker.list_containers(&[&owner]).await? {
            if !all {
                let run = c.labels.get(LABEL_RUN).and_then(|r| r.parse::<i64>().ok());
                let finished = match run {
                    Some(id) => match self.store.run(id).await {
                        Ok(r) => r.status.is_terminal(),
                        Err(sluice_store::StoreError::NotFound(_)) => true,
                        Err(_) => false,
                    },
                    None => true,
                };
                if !finished {
                    continue;
                }
            }
            match self.docker.remove_container(&c.id, true).await {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed leftover step containers");
        }
        Ok(removed)
    }
}

/// The tag sluice gives a service's image built at a commit:
/// `sluice/<project>-<service>:<commit12>`, in Docker's repository-name alphabet.
pub fn image_tag(project: &str, service: &str, commit: &str) -> String {
    let commit: String = commit
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "sluice/{}:{}",
        slug(&format!("{project}-{service}")),
        if commit.is_empty() { "latest" } else { &commit }
    )
}

/// Lower-case letters and digits, other runs of characters as one `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "image".into() } else { out }
}

/// Masks `line` and sends it to the step's log writer, cut into pieces the store accepts.
fn send_line(tx: &mpsc::UnboundedSender<OutputLine>, masker: &Masker, stream: Stream, line: &str) {
    let mut rest = line;
    loop {
        let mut cut = rest.len().min(sluice_runner::MAX_LINE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        let _ = tx.send(OutputLine {
            stream,
            line: masker.mask(piece).into_owned(),
        });
        if tail.is_empty() {
            return;
        }
        rest = tail;
    }
}

/// Reads a container's output stream and sends it on line by line, per stream.
async fn pump_logs(
    mut stream: futures_util::stream::BoxStream<
        'static,
        Result<sluice_docker::LogChunk, DockerError>,
    >,
    masker: Arc<Masker>,
    tx: mpsc::UnboundedSender<OutputLine>,
) {
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        let (i, kind) = match chunk.stream {
            LogStream::Stdout => (0, Stream::Out),
            LogStream::Stderr => (1, Stream::Err),
        };
        partial[i].extend_from_slice(&chunk.data);
        while let Some(nl) = partial[i].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial[i].drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..nl]);
            send_line(&tx, &masker, kind, text.trim_end_matches('\r'));
        }
        if partial[i].len() > sluice_runner::MAX_LINE_BYTES {
            let text = String::from_utf8_lossy(&partial[i]).into_owned();
            partial[i].clear();
            send_line(&tx, &masker, kind, &text);
        }
    }
    for (i, kind) in [(0, Stream::Out), (1, Stream::Err)] {
        if !partial[i].is_empty() {
            let text = String::from_utf8_lossy(&partial[i]).into_owned();
            send_line(&tx, &masker, kind, text.trim_end_matches('\r'));
        }
    }
}

/// Removes a container when dropped (a timed-out scan drops its future mid-way), unless
/// [`ContainerGuard::remove`] already did.
struct ContainerGuard {
    docker: Docker,
    id: Option<String>,
}

impl ContainerGuard {
    fn new(docker: &Docker, id: &str) -> ContainerGuard {
        ContainerGuard {
            docker: docker.clone(),
            id: Some(id.to_string()),
        }
    }

    /// Removes the container now (killing it if it runs); a missing one is fine.
    async fn remove(mut self) -> Result<(), DockerError> {
        let Some(id) = self.id.take() else {
            return Ok(());
        };
        match self.docker.remove_container(&id, true).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let docker = self.docker.clone();
            rt.spawn(async move {
                if let Err(e) = docker.remove_container(&id, true).await
                    && !e.is_not_found()
                {
                    tracing::warn!(container = %id, error = %e, "could not remove a step container");
                }
            });
        }
    }
}

/// Removes a directory tree when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A blocking reader over chunks arriving on a channel (an export streaming from the daemon).
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Today's date (UTC), for allowlist expiries; None only for a clock beyond any calendar.
fn today() -> Option<sluice_vuln::Date> {
    sluice_vuln::Date::from_unix_days(now_ms().div_euclid(86_400_000))
}

/// The gate's policy from the step's `scan` settings.
fn policy_of(spec: &ScanSpec) -> Result<Policy, String> {
    let fail_on = match spec.fail_on {
        VulnSeverity::Low => Severity::Low,
        VulnSeverity::Medium => Severity::Medium,
        VulnSeverity::High => Severity::High,
        VulnSeverity::Critical => Severity::Critical,
    };
    let mut allow = Vec::with_capacity(spec.allow.len());
    for e in &spec.allow {
        let expires = sluice_vuln::Date::new(e.expires.year, e.expires.month, e.expires.day)
            .ok_or_else(|| {
                format!(
                    "the allow entry for {} has an invalid expiry {}",
                    e.id, e.expires
                )
            })?;
        allow.push(sluice_vuln::AllowEntry {
            id: e.id.clone(),
            reason: e.reason.clone(),
            expires,
        });
    }
    let policy = Policy {
        fail_on,
        allow,
        ..Policy::default()
    };
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

/// How a scan ends, from its report.
fn verdict(report: &Report) -> Ended {
    if report.passed {
        return Ended::succeeded();
    }
    let why = if report.reasons.is_empty() {
        "the vulnerability gate failed".to_string()
    } else {
        format!(
            "the vulnerability gate failed: {}",
            report.reasons.join("; ")
        )
    };
    Ended::failed(why)
}

/// Opens the advisory database, reusing the last one opened while its directory is the same
/// (an import swaps in a new directory, so its inode or time changes).
async fn open_database(dir: &Path) -> Result<Arc<Database>, String> {
    type Cached = Option<(PathBuf, u64, Option<SystemTime>, Arc<Database>)>;
    static CACHE: OnceLock<Mutex<Cached>> = OnceLock::new();
    let how = |dir: &Path| {
        format!(
            "import advisories with `sluice advisories import <SRC>... --db {}` (OSV JSON/YAML files, or a RustSec advisory-db checkout)",
            dir.display()
        )
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            return Err(format!(
                "no advisory database at {} ({e}); {}",
                dir.display(),
                how(dir)
            ));
        }
    };
    let key = (
        std::os::unix::fs::MetadataExt::ino(&meta),
        meta.modified().ok(),
    );
    let cache = CACHE.get_or_init(|| Mutex::new(None));
    if let Ok(c) = cache.lock()
        && let Some((d, ino, mtime, db)) = c.as_ref()
        && d == dir
        && (*ino, *mtime) == key
    {
        return Ok(db.clone());
    }
    let path = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || Database::open(&path))
        .await
        .map_err(|e| e.to_string())?;
    let db = match opened {
        Ok(db) => Arc::new(db),
        Err(e) => {
            return Err(format!(
                "cannot use the advisory database at {}: {e}; {}",
                dir.display(),
                how(dir)
            ));
        }
    };
    if db.is_empty() {
        return Err(format!(
            "the advisory database at {} holds no advisories, so a scan would prove nothing; {}",
            dir.display(),
            how(dir)
        ));
    }
    if let Ok(mut c) = cache.lock() {
        *c = Some((dir.to_path_buf(), key.0, key.1, db.clone()));
    }
    Ok(db)
}

/// The rules of a `.dockerignore`: patterns relative to the context (`*` within one
/// directory, `**` across, a directory covers what is under it), `!` re-includes, the last
/// matching line wins, `#` starts a comment.
struct IgnoreRules {
    rules: Vec<(sluice_spec::PathFilter, bool)>,
    has_exceptions: bool,
}

impl IgnoreRules {
    fn parse(text: &str) -> Result<IgnoreRules, String> {
        let mut rules = Vec::new();
        let mut has_exceptions = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pattern) = match line.strip_prefix('!') {
                Some(p) => (false, p.trim()),
                None => (true, line),
            };
            let pattern = pattern.trim_start_matches('/');
            if pattern.is_empty() {
                continue;
            }
            let filter = sluice_spec::PathFilter::new(&[pattern.to_string()]).map_err(|e| {
                format!(
                    ".dockerignore line {}: `{line}` is not a valid pattern: {e}",
                    n + 1
                )
            })?;
            has_exceptions |= !exclude;
            rules.push((filter, exclude));
        }
        Ok(IgnoreRules {
            rules,
            has_exceptions,
        })
    }

    fn excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (filter, exclude) in &self.rules {
            if filter.matches(rel) {
                excluded = *exclude;
            }
        }
        excluded
    }
}

/// Copies (as hard links where possible) what `.dockerignore` keeps of `from` into `to`; the
/// Dockerfile and `.dockerignore` are always kept, as the docker CLI does. Returns the number
/// of files kept.
fn stage_context(from: &Path, to: &Path, dockerfile: &str) -> Result<usize, String> {
    let text = std::fs::read_to_string(from.join(".dockerignore"))
        .map_err(|e| format!("cannot read .dockerignore: {e}"))?;
    let rules = IgnoreRules::parse(&text)?;
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| format!("cannot clear {}: {e}", to.display()))?;
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let always = [dockerfile.trim_start_matches("./"), ".dockerignore"];
    let mut kept = 0;
    let mut stack = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = from.join(&rel_dir);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let excluded = rules.excluded(&rel) && !always.contains(&rel.as_str());
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let target = to.join(&rel);
            let io =
                |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", target.display());
            if kind.is_dir() {
                if !excluded {
                    std::fs::create_dir_all(&target).map_err(|e| io("create", e))?;
                }
                if !excluded || rules.has_exceptions {
                    stack.push(rel);
                }
                continue;
            }
            if excluded {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
            }
            if kind.is_symlink() {
                let link = std::fs::read_link(entry.path()).map_err(|e| io("read the link", e))?;
                std::os::unix::fs::symlink(link, &target).map_err(|e| io("create", e))?;
            } else if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target).map_err(|e| io("copy", e))?;
            }
            kept += 1;
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn image_tags_are_valid_references() {
        assert_eq!(
            image_tag("shop", "api", "0123456789abcdef0123"),
            "sluice/shop-api:0123456789ab"
        );
        assert_eq!(
            image_tag("shop", "my_svc-", "ABC"),
            "sluice/shop-my-svc:abc"
        );
        assert_eq!(image_tag("", "", ""), "sluice/image:latest");
    }

    #[test]
    fn dockerignore_rules_last_match_wins() {
        let r = IgnoreRules::parse("# comment\n\n*.log\n/target\n!keep.log\ndocs/**/*.md\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.excluded("a.log"));
        assert!(!r.excluded("keep.log"));
        assert!(!r.excluded("sub/a.log"), "`*` stays in the root directory");
        assert!(r.excluded("target"));
        assert!(r.excluded("target/debug/x"));
        assert!(r.excluded("docs/a/b/c.md"));
        assert!(!r.excluded("src/main.rs"));
        assert!(IgnoreRules::parse("[\n").is_err());
    }

    #[test]
    fn staged_contexts_keep_what_dockerignore_keeps() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let from = dir.path().join("ctx");
        for (p, t) in [
            ("Dockerfile", "FROM x\n"),
            (".dockerignore", "secret.txt\nbuild\n*.tmp\nDockerfile\n"),
            ("app/main.sh", "echo hi\n"),
            ("secret.txt", "no\n"),
            ("build/out.bin", "no\n"),
            ("a.tmp", "no\n"),
        ] {
            let f = from.join(p);
            std::fs::create_dir_all(f.parent().unwrap_or(&from)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(f, t).unwrap_or_else(|e| panic!("{e}"));
        }
        let to = dir.path().join("staged");
        let kept = stage_context(&from, &to, "Dockerfile").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, 3);
        assert!(
            to.join("Dockerfile").is_file(),
            "the Dockerfile is always sent"
        );
        assert!(to.join(".dockerignore").is_file());
        assert!(to.join("app/main.sh").is_file());
        for gone in ["secret.txt", "build", "a.tmp"] {
            assert!(!to.join(gone).exists(), "{gone} is ignored");
        }
    }

    #[test]
    fn channel_reader_reads_chunks_in_order() {
        let (tx, rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            for c in [b"ab".to_vec(), Vec::new(), b"cde".to_vec()] {
                let _ = tx.blocking_send(Ok(c));
            }
        });
        let mut out = String::new();
        ChannelReader::new(rx)
            .read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "abcde");
    }
}
