//! Executing one run: a fresh checkout, the planner's DAG, steps as process groups with
//! retries and timeouts, live logs, gates, JUnit results, caches, and finally one release per
//! service whose steps all succeeded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;
use sluice_core::plan::{Action, PlanStep, Planner};
use sluice_core::{EventKind, NewEvent, RunStatus, StepStatus};
use sluice_runner::{Outcome, OutputLine, StepCommand, Stream};
use sluice_spec::{Config, Service, Step as SpecStep};
use sluice_store::{LogLine, NewRelease, ReleaseFilter, Run, StepUpdate, TestSummary};
use tokio::sync::{mpsc, watch};

use super::containers::{Attempt, image_tag};
use super::{Engine, EngineError, now_ms};

/// What a finished step reports back to the run loop.
struct StepDone {
    index: usize,
    status: StepStatus,
}

impl Engine {
    /// Runs `run` to a terminal status. Errors here are server faults (the store failed);
    /// step failures are ordinary outcomes.
    pub(super) async fn execute(
        self: Arc<Self>,
        run: Run,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<(), EngineError> {
        let run = Arc::new(run);
        let started = now_ms();
        let cached = self.cached_config(&run.project, &run.commit);
        let config = match cached
            .map(Ok)
            .unwrap_or_else(|| sluice_spec::parse(&run.config, "sluice.yml").map(Arc::new))
        {
            Ok(c) => c,
            Err(d) => {
                return self
                    .fail_early(&run, &format!("sluice.yml is invalid: {d}"))
                    .await;
            }
        };
        let ws = self.paths.workspaces.join(format!("run-{}", run.id));
        if let Err(e) = self.prepare_workspace(&run, &ws).await {
            return self.fail_early(&run, &e).await;
        }
        let stored = self.store.steps(run.id).await?;
        let plan: Vec<PlanStep> = stored
            .iter()
            .map(|s| PlanStep {
                name: s.name.clone(),
                needs: s.needs.clone(),
            })
            .collect();
        let mut planner = match Planner::new(&plan, self.config.max_parallel_steps) {
            Ok(p) => p,
            Err(e) => return self.fail_early(&run, &e.to_string()).await,
        };
        self.store
            .set_run_status(
                run.id,
                RunStatus::Running,
                now_ms(),
                vec![ev(
                    EventKind::RunStarted,
                    &run,
                    json!({ "workspace": ws.display().to_string() }),
                )],
            )
            .await?;
        self.hub.bump();

        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<StepDone>();
        let mut cancelled = false;
        let mut settled: std::collections::HashSet<String> = Default::default();
        let mut releases = Vec::new();
        loop {
            for action in planner.next_actions() {
                match action {
                    Action::Skip { step, because } => {
                        let name = planner.names()[step].clone();
                        let cause = planner.names()[because].clone();
                        self.store
                            .update_step(
                                StepUpdate {
                                    run_id: run.id,
                                    name: name.clone(),
                                    status: Some(StepStatus::Skipped),
                                    finished_ms: Some(now_ms()),
                                    ..Default::default()
                                },
                                vec![ev(
                                    EventKind::StepSkipped,
                                    &run,
                                    json!({ "step": name, "reason": format!("`{cause}` did not succeed") }),
                                )],
                            )
                            .await?;
                        self.hub.bump();
                    }
                    Action::Start(index) => {
                        let name = planner.names()[index].clone();
                        let Some((svc, st)) = find_step(&config, &name) else {
                            let _ = done_tx.send(StepDone {
                                index,
                                status: StepStatus::Failed,
                            });
                            continue;
                        };
                        let engine = self.clone();
                        let (run, ws, tx, cancel) =
                            (run.clone(), ws.clone(), done_tx.clone(), cancel.clone());
                        let (svc, st) = (svc.clone(), st.clone());
                        tokio::spawn(async move {
                            let status = match engine
                                .run_step(&run, &svc, &st, &name, index, &ws, cancel)
                                .await
                            {
                                Ok(s) => s,
                                Err(e) => {
                                    tracing::error!(run = run.id, step = %name, error = %e, "step bookkeeping failed");
                                    StepStatus::Failed
                                }
                            };
                            let _ = tx.send(StepDone { index, status });
                        });
                    }
                }
            }
            if planner.is_done() {
                break;
            }
            tokio::select! {
                done = done_rx.recv() => {
                    if let Some(d) = done {
                        planner.set(d.index, d.status);
                        // A service is released as soon as its own steps are done, not when
                        // the whole run is: other services' steps may take much longer.
                        let svc_name = planner.names()[d.index].split('/').next().unwrap_or("").to_string();
                        if !cancelled && !settled.contains(&svc_name) {
                            let mine: Vec<StepStatus> = planner
                                .names()
                                .iter()
                                .zip(planner.statuses())
                                .filter(|(n, _)| n.split('/').next() == Some(svc_name.as_str()))
                                .map(|(_, s)| *s)
                                .collect();
                            if mine.iter().all(|s| s.is_terminal()) {
                                settled.insert(svc_name.clone());
                                if mine.iter().all(|s| s.is_success())
                                    && let Some(svc) = config.services.iter().find(|s| s.name == svc_name) {
                                        match self.release(&run, svc, &ws).await {
                                            Ok(Some(v)) => {
                                                releases.push(json!({ "service": svc_name, "version": v }));
                                                self.deploy_after_release(&run, svc, v).await;
                                            }
                                            Ok(None) => {}
                                            Err(e) => {
                                                self.sys_log(&run, &format!("{svc_name}/release"), &AtomicI64::new(0), &format!("release failed: {e}")).await;
                                            }
                                        }
                                    }
                            }
                        }
                    }
                }
                changed = cancel.changed(), if !cancelled => {
                    if changed.is_err() || *cancel.borrow() {
                        cancelled = true;
                        let pending: Vec<usize> = (0..planner.names().len())
                            .filter(|&i| planner.statuses()[i] == StepStatus::Pending)
                            .collect();
                        planner.cancel();
                        for i in pending {
                            let name = planner.names()[i].clone();
                            self.store.update_step(
                                StepUpdate { run_id: run.id, name: name.clone(), status: Some(StepStatus::Skipped), finished_ms: Some(now_ms()), ..Default::default() },
                                vec![ev(EventKind::StepSkipped, &run, json!({ "step": name, "reason": "the run was cancelled" }))],
                            ).await?;
                        }
                        self.hub.bump();
                    }
                }
            }
        }

        let mut status = planner.outcome();
        if cancelled {
            status = RunStatus::Cancelled;
        }
        self.store
            .set_run_status(
                run.id,
                status,
                now_ms(),
                vec![ev(
                    EventKind::RunFinished,
                    &run,
                    json!({ "status": status, "duration_ms": now_ms() - started, "releases": releases }),
                )],
            )
            .await?;
        self.notify_finished(run.id);
        let ws2 = ws.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(ws2)).await;
        Ok(())
    }

    async fn prepare_workspace(&self, run: &Run, ws: &Path) -> Result<(), String> {
        if ws.exists() {
            let w = ws.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(w)).await;
        }
        let mirror = self
            .mirror_of(&run.project)
            .await
            .map_err(|e| format!("cannot open the project's repository: {e}"))?;
        mirror
            .checkout(&run.commit, ws)
            .await
            .map_err(|e| format!("checkout of {} failed: {e}", run.commit))
    }

    /// Fails a run before any step could start (bad config, checkout failure).
    async fn fail_early(&self, run: &Run, reason: &str) -> Result<(), EngineError> {
        self.sys_log(run, "run", &AtomicI64::new(0), reason).await;
        let steps = self.store.steps(run.id).await?;
        for s in steps {
            self.store
                .update_step(
                    StepUpdate {
                        run_id: run.id,
                        name: s.name.clone(),
                        status: Some(StepStatus::Skipped),
                        finished_ms: Some(now_ms()),
                        ..Default::default()
                    },
                    vec![],
                )
                .await?;
        }
        self.store
            .set_run_status(
                run.id,
                RunStatus::Failed,
                now_ms(),
                vec![ev(
                    EventKind::RunFinished,
                    run,
                    json!({ "status": RunStatus::Failed, "error": reason }),
                )],
            )
            .await?;
        self.notify_finished(run.id);
        Ok(())
    }

    /// One step with its retries; returns its final status.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        self: &Arc<Self>,
        run: &Arc<Run>,
        svc: &Service,
        st: &SpecStep,
        name: &str,
        index: usize,
        ws: &Path,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<StepStatus, EngineError> {
        let _slot = self
            .step_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let seq = Arc::new(AtomicI64::new(0));
        let step_started = now_ms();
        let env = match self.step_env(run, svc, st, ws) {
            // Secrets come from the store (or the server configuration), each read audited.
            Ok(mut env) => self
                .step_secrets(run, name, &st.secrets, &mut env)
                .await
                .map(|()| env),
            Err(msg) => Err(msg),
        };
        let env = match env {
            Ok(env) => env,
            Err(msg) => {
                self.sys_log(run, name, &seq, &msg).await;
                self.finish_step(run, st, name, StepStatus::Failed, None, step_started, None)
                    .await?;
                return Ok(StepStatus::Failed);
            }
        };
        let workdir = match &st.workdir {
            Some(w) => ws.join(w),
            None => ws.to_path_buf(),
        };
        let cache_dir = self.paths.caches.join(&run.project);
        for c in &st.cache {
            let (root, cd, c) = (ws.to_path_buf(), cache_dir.clone(), c.clone());
            let r = tokio::task::spawn_blocking(move || {
                let key = sluice_runner::cache_key(&root, &c.paths, &c.key_files)?;
                sluice_runner::restore(&cd, &key, &root).map(|hit| (key, hit))
            })
            .await;
            if let Ok(Ok((key, hit))) = r {
                let msg = format!(
                    "cache {} {}",
                    &key[..12.min(key.len())],
                    if hit { "restored" } else { "miss" }
                );
                self.sys_log(run, name, &seq, &msg).await;
            }
        }
        // Host steps run as process groups here; the others go through the Docker Engine
        // (engine/containers.rs), with the same retries, timeouts, cancel and log.
        let host_command = match &st.kind {
            sluice_spec::StepKind::Run {
                run: command,
                image: None,
            } => Some(command.clone()),
            _ => None,
        };
        let mut attempt: u32 = 0;
        let (status, exit_code) = loop {
            attempt += 1;
            if *cancel.borrow() {
                break (StepStatus::Cancelled, None);
            }
            let Some(command) = &host_command else {
                let ended = self
                    .container_attempt(Attempt {
                        run,
                        svc,
                        st,
                        name,
                        attempt,
                        ws,
                        workdir: &workdir,
                        env: &env,
                        seq: &seq,
                        cancel: cancel.clone(),
                    })
                    .await?;
                if self
                    .retry_or_end(
                        run,
                        st,
                        name,
                        &seq,
                        attempt,
                        (ended.status, &ended.why),
                        &mut cancel,
                    )
                    .await?
                {
                    continue;
                }
                break (ended.status, ended.exit_code);
            };
            let cmd = StepCommand {
                command: command.clone(),
                workdir: workdir.clone(),
                env: env.clone(),
                timeout: st.timeout,
                kill_grace: self.config.kill_grace,
                token: format!("{}{}-{}", self.token_prefix, run.id, index),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let writer =
                tokio::spawn(
                    self.clone()
                        .log_writer(run.id, name.to_string(), seq.clone(), rx),
                );
            let outcome = match sluice_runner::spawn(&cmd, self.masker(), tx) {
                Ok(running) => {
                    self.store
                        .update_step(
                            StepUpdate {
                                run_id: run.id,
                                name: name.to_string(),
                                status: Some(StepStatus::Running),
                                attempt: Some(attempt as i64),
                                pgid: Some(Some(running.pgid() as i64)),
                                started_ms: Some(now_ms()),
                                ..Default::default()
                            },
                            vec![ev(
                                EventKind::StepStarted,
                                run,
                                json!({ "step": name, "attempt": attempt }),
                            )],
                        )
                        .await?;
                    self.hub.bump();
                    running.wait(cancel.clone()).await
                }
                Err(e) => Outcome::SpawnFailed(e.to_string()),
            };
            let _ = writer.await;
            let status = match &outcome {
                Outcome::Exited(0) => StepStatus::Succeeded,
                Outcome::Exited(_) | Outcome::Signalled(_) => StepStatus::Failed,
                Outcome::TimedOut => StepStatus::TimedOut,
                Outcome::Cancelled => StepStatus::Cancelled,
                Outcome::SpawnFailed(e) => {
                    self.sys_log(run, name, &seq, &format!("could not start the step: {e}"))
                        .await;
                    StepStatus::Failed
                }
            };
            let code = outcome.exit_code().map(i64::from);
            let why = describe(&outcome, st.timeout);
            if self
                .retry_or_end(run, st, name, &seq, attempt, (status, &why), &mut cancel)
                .await?
            {
                continue;
            }
            break (status, code);
        };
        let tests = if st.junit.is_empty() {
            None
        } else {
            let (root, pats) = (ws.to_path_buf(), st.junit.clone());
            match tokio::task::spawn_blocking(move || sluice_runner::collect_junit(&root, &pats))
                .await
            {
                Ok(Ok(j)) => Some(TestSummary {
                    passed: j.passed,
                    failed: j.failed,
                    skipped: j.skipped,
                    failing: j.failing,
                }),
                Ok(Err(e)) => {
                    self.sys_log(run, name, &seq, &format!("junit report unreadable: {e}"))
                        .await;
                    None
                }
                Err(_) => None,
            }
        };
        if status.is_success() {
            for c in &st.cache {
                let (root, cd, c) = (ws.to_path_buf(), cache_dir.clone(), c.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let key = sluice_runner::cache_key(&root, &c.paths, &c.key_files)?;
                    sluice_runner::save(&cd, &key, &root, &c.paths)
                })
                .await;
            }
        }
        self.finish_step(run, st, name, status, exit_code, step_started, tests)
            .await?;
        Ok(status)
    }

    /// After an attempt of a step that ended with `status` (`why`: how, for the log): logs and
    /// records a retry (true: run the next attempt) when the retry policy allows one, or
    /// logs a timeout (false: that was the last attempt).
    #[allow(clippy::too_many_arguments)]
    async fn retry_or_end(
        &self,
        run: &Run,
        st: &SpecStep,
        name: &str,
        seq: &AtomicI64,
        attempt: u32,
        (status, why): (StepStatus, &str),
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<bool, EngineError> {
        let retryable = (status == StepStatus::Failed && st.retry.on_failure)
            || (status == StepStatus::TimedOut && st.retry.on_timeout);
        if retryable && attempt <= st.retry.max {
            self.sys_log(
                run,
                name,
                seq,
                &format!(
                    "attempt {attempt} {why}; retrying ({} of {}){}",
                    attempt,
                    st.retry.max,
                    if st.retry.delay.is_zero() {
                        String::new()
                    } else {
                        format!(" in {:?}", st.retry.delay)
                    }
                ),
            )
            .await;
            self.record(vec![ev(
                EventKind::StepRetrying,
                run,
                json!({ "step": name, "attempt": attempt, "reason": why }),
            )])
            .await?;
            if !st.retry.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(st.retry.delay) => {}
                    _ = cancel.changed() => {}
                }
            }
            return Ok(true);
        }
        if status == StepStatus::TimedOut {
            self.sys_log(
                run,
                name,
                seq,
                &format!("killed after its timeout of {:?}", st.timeout),
            )
            .await;
        }
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_step(
        &self,
        run: &Run,
        st: &SpecStep,
        name: &str,
        status: StepStatus,
        exit_code: Option<i64>,
        started: i64,
        tests: Option<TestSummary>,
    ) -> Result<(), EngineError> {
        let now = now_ms();
        let mut events = vec![ev(
            EventKind::StepFinished,
            run,
            json!({ "step": name, "status": status, "exit_code": exit_code, "duration_ms": now - started, "tests": tests }),
        )];
        if st.gate {
            let kind = if status.is_success() {
                EventKind::GatePassed
            } else {
                EventKind::GateFailed
            };
            events.push(ev(
                kind,
                run,
                json!({ "step": name, "status": status, "tests": tests }),
            ));
        }
        self.store
            .update_step(
                StepUpdate {
                    run_id: run.id,
                    name: name.to_string(),
                    status: Some(status),
                    exit_code,
                    pgid: Some(None),
                    started_ms: Some(started),
                    finished_ms: Some(now),
                    tests,
                    ..Default::default()
                },
                events,
            )
            .await?;
        self.hub.bump();
        Ok(())
    }

    fn step_env(
        &self,
        run: &Run,
        svc: &Service,
        st: &SpecStep,
        ws: &Path,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        );
        if let Ok(home) = std::env::var("HOME") {
            env.insert("HOME".into(), home);
        }
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("CI".into(), "true".into());
        env.insert("SLUICE".into(), "true".into());
        env.insert("SLUICE_RUN_ID".into(), run.id.to_string());
        env.insert("SLUICE_PROJECT".into(), run.project.clone());
        env.insert("SLUICE_ENV".into(), run.env.clone());
        env.insert("SLUICE_BRANCH".into(), run.branch.clone());
        env.insert("SLUICE_COMMIT".into(), run.commit.clone());
        env.insert("SLUICE_SERVICE".into(), svc.name.clone());
        env.insert("SLUICE_STEP".into(), st.name.clone());
        env.insert("SLUICE_WORKSPACE".into(), ws.display().to_string());
        for (k, v) in &st.env {
            env.insert(k.clone(), v.clone());
        }
        // `st.secrets` are added by `Engine::step_secrets` (engine/vault.rs).
        Ok(env)
    }

    /// Writes a step's output to the store in batches as it arrives.
    pub(super) async fn log_writer(
        self: Arc<Self>,
        run_id: i64,
        step: String,
        seq: Arc<AtomicI64>,
        mut rx: mpsc::UnboundedReceiver<OutputLine>,
    ) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < 1000 {
                match rx.try_recv() {
                    Ok(l) => batch.push(l),
                    Err(_) => break,
                }
            }
            let now = now_ms();
            let lines: Vec<LogLine> = batch
                .drain(..)
                .map(|l| LogLine {
                    id: 0,
                    run_id,
                    step: step.clone(),
                    seq: seq.fetch_add(1, Ordering::SeqCst) + 1,
                    time_ms: now,
                    stream: match l.stream {
                        Stream::Out => "out",
                        Stream::Err => "err",
                    }
                    .into(),
                    line: l.line,
                })
                .collect();
            if let Err(e) = self.store.append_logs(&lines).await {
                tracing::error!(run = run_id, error = %e, "could not store log lines");
            }
            self.hub.bump();
        }
    }

    /// A line of sluice's own in a step's log (masked like the rest).
    pub(super) async fn sys_log(&self, run: &Run, step: &str, seq: &AtomicI64, text: &str) {
        let line = LogLine {
            id: 0,
            run_id: run.id,
            step: step.to_string(),
            seq: seq.fetch_add(1, Ordering::SeqCst) + 1,
            time_ms: now_ms(),
            stream: "sys".into(),
            line: self.masker().mask(text).into_owned(),
        };
        if let Err(e) = self.store.append_logs(&[line]).await {
            tracing::error!(run = run.id, error = %e, "could not store a log line");
        }
        self.hub.bump();
    }

    /// A successful pipeline on an environment's branch deploys its release to that
    /// environment when the service is deployed there.
    async fn deploy_after_release(&self, run: &Run, svc: &Service, version: i64) {
        let deployed_here = svc
            .deploy
            .as_ref()
            .is_some_and(|d| d.targets.iter().any(|t| t.env == run.env));
        if !deployed_here {
            return;
        }
        // A pipeline deploys only where its branch is the environment's branch.
        let pipeline = crate::engine::access::Caller {
            principal: self.pipeline_of(run).await,
            user: None,
            session: None,
        };
        let result = async {
            let target = self
                .env_target(&run.project, &run.env, Some(&run.commit))
                .await?;
            self.authorize(&pipeline, sluice_auth::Action::Deploy, &target)
                .await?;
            self.request_deploy(
                &run.project,
                &svc.name,
                &run.env,
                Some(version),
                "pipeline",
                &format!("run:{}", run.id),
            )
            .await
        }
        .await;
        if let Err(e) = result {
            self.sys_log(
                run,
                &format!("{}/deploy", svc.name),
                &AtomicI64::new(0),
                &format!("could not deploy release {version} to {}: {e}", run.env),
            )
            .await;
        }
    }

    /// Packs a service's artifacts and records its release; None if the commit already has one.
    async fn release(&self, run: &Run, svc: &Service, ws: &Path) -> Result<Option<i64>, String> {
        // A re-run of a released commit makes no second release: skip the packing (and its
        // fsync) early. The store's UNIQUE constraint still guards against a race.
        if self
            .store
            .release_for_commit(&run.project, &svc.name, &run.commit)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(None);
        }
        let mut patterns: Vec<String> =
            svc.steps.iter().flat_map(|s| s.artifacts.clone()).collect();
        patterns.dedup();
        let (root, dir) = (ws.to_path_buf(), self.paths.artifacts.clone());
        let artifact =
            tokio::task::spawn_blocking(move || sluice_runner::pack(&root, &patterns, &dir))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let mut gates = serde_json::Map::new();
        let mut image_id = None;
        let mut reports = serde_json::Map::new();
        for s in self.store.steps(run.id).await.map_err(|e| e.to_string())? {
            if s.service != svc.name {
                continue;
            }
            if s.gate {
                gates.insert(
                    s.name.clone(),
                    json!({ "status": s.status, "tests": s.tests }),
                );
            }
            if s.image_id.is_some() {
                image_id = s.image_id.clone();
            }
            if let Some(r) = s.vuln_report {
                reports.insert(s.name.clone(), r);
            }
        }
        let image_tag = image_id
            .as_ref()
            .map(|_| image_tag(&run.project, &svc.name, &run.commit));
        let mut payload = json!({
            "service": svc.name, "commit": run.commit, "branch": run.branch,
            "artifact": artifact.sha256, "artifact_bytes": artifact.bytes, "files": artifact.files,
        });
        if let (Some(o), Some(id)) = (payload.as_object_mut(), &image_id) {
            o.insert("image".into(), json!(id));
            o.insert("image_tag".into(), json!(image_tag));
        }
        let rel = self
            .store
            .create_release(
                NewRelease {
                    project: run.project.clone(),
                    service: svc.name.clone(),
                    commit: run.commit.clone(),
                    branch: run.branch.clone(),
                    env: run.env.clone(),
                    run_id: run.id,
                    artifact_sha256: artifact.sha256.clone(),
                    artifact_bytes: artifact.bytes as i64,
                    gates: serde_json::Value::Object(gates),
                    created_ms: now_ms(),
                    image_id: image_id.clone(),
                    image_tag: image_tag.clone(),
                    vuln_report: (!reports.is_empty())
                        .then_some(serde_json::Value::Object(reports)),
                },
                ev(EventKind::ReleaseCreated, run, payload),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.hub.bump();
        if rel.is_some()
            && self.config.keep_artifacts > 0
            && let Err(e) = self.prune_artifacts(&run.project, &svc.name).await
        {
            tracing::warn!(error = %e, "artifact retention failed");
        }
        Ok(rel.map(|r| r.version))
    }

    /// Deletes artifact files of a service's releases beyond the newest `keep_artifacts`,
    /// unless a kept release shares the same file.
    async fn prune_artifacts(&self, project: &str, service: &str) -> Result<(), EngineError> {
        let releases = self
            .store
            .releases(&ReleaseFilter {
                project: Some(project.into()),
                service: Some(service.into()),
                limit: 10_000,
            })
            .await?;
        let keep = self.config.keep_artifacts;
        let kept: std::collections::HashSet<&str> = releases
            .iter()
            .take(keep)
            .map(|r| r.artifact_sha256.as_str())
            .collect();
        for r in releases.iter().skip(keep).filter(|r| !r.artifact_pruned) {
            if !kept.contains(r.artifact_sha256.as_str()) {
                let path = self
                    .paths
                    .artifacts
                    .join(format!("{}.tar", r.artifact_sha256));
                let _ = tokio::fs::remove_file(&path).await;
            }
            self.store
                .mark_artifact_pruned(
                    r.id,
                    NewEvent::new(EventKind::ArtifactsPruned, "system", format!("release/{project}/{service}/{}", r.version))
                        .project(project)
                        .payload(json!({ "service": service, "version": r.version, "bytes": r.artifact_bytes, "keep": keep })),
                )
                .await?;
        }
        Ok(())
    }
}

fn find_step<'a>(config: &'a Config, name: &str) -> Option<(&'a Service, &'a SpecStep)> {
    let (svc, step) = name.split_once('/')?;
    let s = config.services.iter().find(|s| s.name == svc)?;
    let st = s.steps.iter().find(|x| x.name == step)?;
    Some((s, st))
}

fn describe(outcome: &Outcome, timeout: Duration) -> String {
    match outcome {
        Outcome::Exited(c) => format!("exited with code {c}"),
        Outcome::Signalled(s) => format!("was killed by signal {s}"),
        Outcome::TimedOut => format!("timed out after {timeout:?}"),
        Outcome::Cancelled => "was cancelled".into(),
        Outcome::SpawnFailed(e) => format!("could not start: {e}"),
    }
}

/// An event about a run.
pub(super) fn ev(kind: EventKind, run: &Run, mut payload: serde_json::Value) -> NewEvent {
    if let Some(o) = payload.as_object_mut() {
        o.insert("run".into(), json!(run.id));
    }
    NewEvent::new(kind, "system", format!("run/{}", run.id))
        .project(&run.project)
        .payload(payload)
}
