//! The deployment state machine: [`Deployment::step`] takes an observation and returns the
//! desired state. All strategies share the command handling, the rollback checks and the
//! rollback itself; each strategy only decides how to move forward.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analysis::{Verdict, evaluate};
use crate::observe::{Command, Observation};
use crate::output::{Decision, Desired, Outcome, Phase, Reason, Traffic};
use crate::rolling::{Limits, roll};
use crate::spec::{
    BlueGreenParams, CanaryParams, DeploySpec, InsufficientPolicy, SpecError, StickyGroup, Strategy,
};

/// One deployment of a candidate release over a stable one: serde-serialisable state that
/// the control plane persists after every [`Deployment::step`]. A deployment read back from
/// JSON continues exactly as the original would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    spec: DeploySpec,
    first_deploy: bool,
    started_ms: u64,
    /// The latest time seen (observations never move it back).
    now_ms: u64,
    phase: Phase,
    stable_target: u32,
    candidate_target: u32,
    /// Canary and blue-green: the candidate's weight in effect.
    weight: u8,
    /// The current analysis window id (canary steps), and how many were started.
    window: Option<u64>,
    windows_started: u64,
    /// Next interval check during a canary step.
    next_check_ms: u64,
    paused_since: Option<u64>,
    /// Blue-green: `Promote` arrived; switch as soon as green is fully ready.
    promote_requested: bool,
    /// Last time the machine changed a target or its phase (the progress clock).
    progress_at_ms: u64,
    /// Time the candidate was short of ready instances since `progress_at_ms`.
    unready_ms: u64,
    /// Decisions taken outside `step` (at creation), returned by the next `step`.
    #[serde(default)]
    pending: Vec<Decision>,
}

impl Deployment {
    /// Starts a deployment at `now_ms`. `first_deploy` when no stable release exists: then
    /// every strategy simply starts `replicas` candidate instances, serves them as they get
    /// ready ([`Traffic::ByReadiness`]) and succeeds when all are ready (no steps, preview or
    /// keep-warm: there is nothing to compare with or fall back to); a failure ends `Failed`.
    pub fn new(spec: DeploySpec, now_ms: u64, first_deploy: bool) -> Result<Self, SpecError> {
        spec.validate()?;
        let replicas = spec.replicas;
        let stable_target = if first_deploy { 0 } else { replicas };
        let (phase, candidate_target) = match (&spec.strategy, first_deploy) {
            (Strategy::Rolling(_), _) => (Phase::Rolling, 0),
            (_, true) => (Phase::Starting, replicas),
            (Strategy::BlueGreen(_), false) => (Phase::Starting, replicas),
            (Strategy::Canary(c), false) => {
                let weight = c.steps.first().map_or(100, |s| s.weight);
                (
                    Phase::CanaryScaling { step: 0, weight: 0 },
                    canary_instances(replicas, weight),
                )
            }
        };
        let strategy = match &spec.strategy {
            Strategy::Rolling(_) => "rolling",
            Strategy::BlueGreen(_) => "blue_green",
            Strategy::Canary(_) => "canary",
        };
        let started = Decision {
            at_ms: now_ms,
            kind: "deploy.started".into(),
            message: format!(
                "{strategy} deploy of {replicas} instances started{}",
                if first_deploy { " (first deploy)" } else { "" }
            ),
            figures: json!({
                "strategy": strategy,
                "replicas": replicas,
                "first_deploy": first_deploy,
                "candidate_instances": candidate_target,
            }),
        };
        Ok(Deployment {
            spec,
            first_deploy,
            started_ms: now_ms,
            now_ms,
            phase,
            stable_target,
            candidate_target,
            weight: 0,
            window: None,
            windows_started: 0,
            next_check_ms: now_ms,
            paused_since: None,
            promote_requested: false,
            progress_at_ms: now_ms,
            unready_ms: 0,
            pending: vec![started],
        })
    }

    /// The one entry point: given what the control plane observed, advance and return the
    /// desired state. Call it on every tick and after every observation; calling it again
    /// with the same observation changes nothing and returns no decision.
    pub fn step(&mut self, obs: &Observation) -> Desired {
        let now = obs.now_ms.max(self.now_ms);
        let dt = now - self.now_ms;
        self.now_ms = now;
        let window_before = self.window;
        let mut decisions = std::mem::take(&mut self.pending);
        if !self.is_finished() {
            let mut cx = Cx {
                now,
                dt,
                obs,
                out: &mut decisions,
            };
            self.advance(&mut cx);
        }
        let mut desired = self.desired();
        desired.reset_window = self.window != window_before && self.window.is_some();
        desired.decisions = decisions;
        desired
    }

    /// The desired state implied by the current state, without advancing (e.g. for a
    /// control plane that restarted and wants to re-apply it before the next observation).
    pub fn desired(&self) -> Desired {
        Desired {
            stable_instances: self.stable_target,
            candidate_instances: self.candidate_target,
            traffic: self.traffic(),
            sticky: self.sticky(),
            preview: self.preview(),
            phase: self.phase.clone(),
            paused: self.paused_since.is_some(),
            analysis_window: if self.is_finished() {
                None
            } else {
                self.window
            },
            reset_window: false,
            decisions: Vec::new(),
        }
    }

    /// Where the deployment is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The spec it runs.
    pub fn spec(&self) -> &DeploySpec {
        &self.spec
    }

    /// When it started.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Whether there was no stable release to fall back to.
    pub fn is_first_deploy(&self) -> bool {
        self.first_deploy
    }

    /// Whether forward progress is frozen by `Pause`.
    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// True once succeeded, rolled back or failed; `step` then changes nothing.
    pub fn is_finished(&self) -> bool {
        self.outcome().is_some()
    }

    /// How it ended, once finished.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.phase {
            Phase::Succeeded => Some(Outcome::Succeeded),
            Phase::RolledBack { reason } => Some(Outcome::RolledBack {
                reason: reason.clone(),
            }),
            Phase::Failed { reason } => Some(Outcome::Failed {
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// Whether `command` would do anything now, so the control plane can refuse a command
    /// that does not apply with an error instead of silently ignoring it. `Abort` applies
    /// until a rollback starts; `Pause` / `Resume` when not paused / paused (and not rolling
    /// back); `Promote` to canary steps and to blue-green before the switch (not on a first
    /// deploy, and never to rolling).
    pub fn command_applies(&self, command: Command) -> bool {
        if self.is_finished() || matches!(self.phase, Phase::RollingBack { .. }) {
            return false;
        }
        match command {
            Command::Abort => true,
            Command::Pause => self.paused_since.is_none(),
            Command::Resume => self.paused_since.is_some(),
            Command::Promote => {
                !self.first_deploy
                    && match self.spec.strategy {
                        Strategy::Rolling(_) => false,
                        Strategy::BlueGreen(_) => {
                            matches!(self.phase, Phase::Starting | Phase::Preview)
                                && !self.promote_requested
                        }
                        Strategy::Canary(_) => matches!(
                            self.phase,
                            Phase::CanaryScaling { .. } | Phase::CanaryStep { .. }
                        ),
                    }
            }
        }
    }

    // ---- the shared loop ----

    fn advance(&mut self, cx: &mut Cx<'_>) {
        if let Phase::RollingBack { .. } = self.phase {
            self.continue_rollback(cx);
            return;
        }
        if let Some(command) = cx.obs.command
            && self.command_applies(command)
        {
            match command {
                Command::Abort => {
                    let figures = self.pool_figures(cx);
                    self.start_rollback(cx, Reason::Aborted, figures);
                    return;
                }
                Command::Pause => {
                    self.paused_since = Some(cx.now);
                    cx.decide("deploy.paused", "paused by an operator".into(), json!({}));
                }
                Command::Resume => self.resume(cx),
                Command::Promote => self.promote(cx),
            }
            if self.is_finished() {
                return;
            }
        }
        if let Some(reason) = self.health(cx) {
            let figures = self.pool_figures(cx);
            self.start_rollback(cx, reason, figures);
            return;
        }
        if self.first_deploy && self.phase == Phase::Starting {
            if self.paused_since.is_none() && cx.obs.candidate.ready >= self.spec.replicas {
                self.succeed(cx);
            }
            return;
        }
        match self.spec.strategy.clone() {
            Strategy::Rolling(p) => self.rolling(cx, Limits::new(self.spec.replicas, &p)),
            Strategy::BlueGreen(p) => self.blue_green(cx, &p),
            Strategy::Canary(p) => self.canary(cx, &p),
        }
    }

    /// The rollback checks that apply in every phase, paused or not: failed starts, restarts,
    /// and the progress deadline (see the crate docs for its two clocks).
    fn health(&mut self, cx: &Cx<'_>) -> Option<Reason> {
        let c = &cx.obs.candidate;
        let limit = self.spec.max_restarts;
        if c.failed_to_start > limit {
            return Some(Reason::StartFailed {
                failed_to_start: c.failed_to_start,
                limit,
            });
        }
        if c.restarts > limit {
            return Some(Reason::CrashLoop {
                restarts: c.restarts,
                limit,
            });
        }
        let deadline = self.spec.progress_deadline_ms;
        let short = c.ready < self.candidate_target;
        if short {
            self.unready_ms = self.unready_ms.saturating_add(cx.dt);
        }
        let waiting = matches!(
            self.phase,
            Phase::Starting | Phase::Rolling | Phase::CanaryScaling { .. } | Phase::Promoting
        );
        let stalled = waiting
            && self.paused_since.is_none()
            && cx.now.saturating_sub(self.progress_at_ms) >= deadline;
        if stalled || self.unready_ms >= deadline {
            return Some(Reason::ProgressDeadline {
                ready: c.ready,
                wanted: self.candidate_target,
                waited_ms: if stalled {
                    cx.now.saturating_sub(self.progress_at_ms)
                } else {
                    self.unready_ms
                },
                deadline_ms: deadline,
            });
        }
        None
    }

    fn resume(&mut self, cx: &mut Cx<'_>) {
        let Some(since) = self.paused_since.take() else {
            return;
        };
        let paused = cx.now.saturating_sub(since);
        // Timers stop while paused: the step, the keep-warm window and the progress clock.
        self.progress_at_ms = self.progress_at_ms.saturating_add(paused);
        match &mut self.phase {
            Phase::CanaryStep { until_ms, .. } | Phase::KeepingWarm { until_ms } => {
                *until_ms = until_ms.saturating_add(paused);
            }
            _ => {}
        }
        cx.decide(
            "deploy.resumed",
            format!("resumed after {paused} ms"),
            json!({ "paused_ms": paused }),
        );
    }

    fn promote(&mut self, cx: &mut Cx<'_>) {
        let was_paused = self.paused_since.take().is_some();
        match self.spec.strategy {
            Strategy::BlueGreen(_) => {
                self.promote_requested = true;
                cx.decide(
                    "deploy.promoted",
                    "promoted by an operator: switch as soon as the new release is fully ready"
                        .into(),
                    json!({ "candidate_ready": cx.obs.candidate.ready, "replicas": self.spec.replicas, "was_paused": was_paused }),
                );
            }
            Strategy::Canary(_) => {
                let step = match self.phase {
                    Phase::CanaryScaling { step, .. } | Phase::CanaryStep { step, .. } => step,
                    _ => 0,
                };
                cx.decide(
                    "deploy.promoted",
                    format!("promoted by an operator at step {step}: remaining steps skipped"),
                    json!({ "step": step, "weight": self.weight, "was_paused": was_paused }),
                );
                self.start_promoting(cx);
            }
            Strategy::Rolling(_) => {}
        }
    }

    fn start_rollback(&mut self, cx: &mut Cx<'_>, reason: Reason, extra: Value) {
        self.paused_since = None;
        self.window = None;
        let mut figures = serde_json::to_value(&reason).unwrap_or(Value::Null);
        merge(&mut figures, extra);
        if self.first_deploy {
            cx.decide(
                "deploy.failed",
                format!("first deploy failed: {reason}; nothing to roll back to"),
                figures,
            );
            self.set_targets(cx.now, 0, 0);
            self.set_phase(cx.now, Phase::Failed { reason });
            return;
        }
        cx.decide(
            "rollback.started",
            format!("rolling back: {reason}"),
            figures,
        );
        self.set_phase(cx.now, Phase::RollingBack { reason });
        if !matches!(self.spec.strategy, Strategy::Rolling(_)) {
            // Stable never shrank (canary adds capacity; blue is warm): all traffic goes
            // back in one switch and the candidate stops at once.
            self.weight = 0;
            self.set_targets(cx.now, self.spec.replicas, 0);
        }
        self.continue_rollback(cx);
    }

    fn continue_rollback(&mut self, cx: &mut Cx<'_>) {
        let replicas = self.spec.replicas;
        if let Strategy::Rolling(p) = &self.spec.strategy {
            // A rolling rollback is a rolling update back to stable, within the same limits.
            let (c, s) = roll(
                Limits::new(replicas, p),
                self.candidate_target,
                &cx.obs.candidate,
                self.stable_target,
                &cx.obs.stable,
            );
            if (s, c) != (self.stable_target, self.candidate_target) {
                cx.decide(
                    "rollback.scaled",
                    format!("rolling back: {s} stable and {c} new instances"),
                    scaled_figures(s, c, cx.obs),
                );
                self.set_targets(cx.now, s, c);
            }
        }
        let ready = cx.obs.stable.ready;
        let done = self.candidate_target == 0 && ready >= replicas;
        let waited = cx.now.saturating_sub(self.progress_at_ms);
        if !done && waited < self.spec.progress_deadline_ms {
            return;
        }
        let Phase::RollingBack { reason } = self.phase.clone() else {
            return;
        };
        let message = if done {
            format!("rolled back: {reason}")
        } else {
            format!(
                "rolled back with {ready} of {replicas} stable instances ready after {waited} ms; the reconciler keeps healing"
            )
        };
        cx.decide(
            "rollback.finished",
            message,
            json!({ "stable_ready": ready, "replicas": replicas, "complete": done, "reason": reason.as_str() }),
        );
        self.weight = 0;
        self.set_targets(cx.now, replicas, 0);
        self.set_phase(cx.now, Phase::RolledBack { reason });
    }

    fn succeed(&mut self, cx: &mut Cx<'_>) {
        self.weight = 100;
        self.paused_since = None;
        cx.decide(
            "deploy.succeeded",
            "the new release serves all traffic".into(),
            json!({ "candidate_ready": cx.obs.candidate.ready, "replicas": self.spec.replicas, "duration_ms": cx.now.saturating_sub(self.started_ms) }),
        );
        self.set_targets(cx.now, 0, self.spec.replicas);
        self.set_phase(cx.now, Phase::Succeeded);
    }

    // ---- rolling ----

    fn rolling(&mut self, cx: &mut Cx<'_>, limits: Limits) {
        if self.paused_since.is_some() {
            return;
        }
        let replicas = limits.replicas;
        let (s, c) = roll(
            limits,
            self.stable_target,
            &cx.obs.stable,
            self.candidate_target,
            &cx.obs.candidate,
        );
        if (s, c) != (self.stable_target, self.candidate_target) {
            cx.decide(
                "rolling.scaled",
                format!("{s} old and {c} new instances"),
                scaled_figures(s, c, cx.obs),
            );
            self.set_targets(cx.now, s, c);
        }
        if s == 0 && c == replicas && cx.obs.candidate.ready >= replicas {
            self.succeed(cx);
        }
    }

    // ---- blue-green ----

    fn blue_green(&mut self, cx: &mut Cx<'_>, p: &BlueGreenParams) {
        if self.paused_since.is_some() {
            return;
        }
        let replicas = self.spec.replicas;
        let all_ready = cx.obs.candidate.ready >= replicas;
        match self.phase {
            Phase::Starting if all_ready => {
                if p.preview && !p.auto_promote && !self.promote_requested {
                    cx.decide(
                        "bluegreen.preview",
                        "the new release is ready on the preview address; waiting for promote"
                            .into(),
                        json!({ "candidate_ready": cx.obs.candidate.ready, "replicas": replicas }),
                    );
                    self.set_phase(cx.now, Phase::Preview);
                } else {
                    self.switch(cx, p.keep_warm_ms);
                }
            }
            Phase::Preview if all_ready && self.promote_requested => {
                self.switch(cx, p.keep_warm_ms);
            }
            Phase::KeepingWarm { until_ms } if cx.now >= until_ms => {
                cx.decide(
                    "bluegreen.blue_stopped",
                    "keep-warm window over; stopping the old release".into(),
                    json!({ "keep_warm_ms": p.keep_warm_ms }),
                );
                self.succeed(cx);
            }
            _ => {}
        }
    }

    fn switch(&mut self, cx: &mut Cx<'_>, keep_warm_ms: u64) {
        self.weight = 100;
        cx.decide(
            "bluegreen.switched",
            format!("all traffic switched to the new release; old release kept warm for {keep_warm_ms} ms"),
            json!({ "candidate_ready": cx.obs.candidate.ready, "replicas": self.spec.replicas, "keep_warm_ms": keep_warm_ms }),
        );
        self.set_phase(
            cx.now,
            Phase::KeepingWarm {
                until_ms: cx.now.saturating_add(keep_warm_ms),
            },
        );
        if keep_warm_ms == 0 {
            self.succeed(cx);
        }
    }

    // ---- canary ----

    fn canary(&mut self, cx: &mut Cx<'_>, p: &CanaryParams) {
        let paused = self.paused_since.is_some();
        match self.phase.clone() {
            Phase::CanaryScaling { step, .. }
                if !paused && cx.obs.candidate.ready >= self.candidate_target =>
            {
                self.enter_step(cx, p, step);
            }
            Phase::CanaryStep {
                step,
                weight,
                until_ms,
                waiting_for_traffic,
            } => {
                let a = &p.analysis;
                // Figures of an older window (the reset not yet applied) are not this step's.
                let stats = cx.obs.stats.filter(|s| Some(s.window) == self.window);
                let verdict = evaluate(a, stats.as_ref());
                // Interval checks run while paused too: a failing candidate rolls back.
                if cx.now >= self.next_check_ms {
                    self.next_check_ms = cx.now.saturating_add(a.interval_ms);
                    if let Verdict::Fail { reason, figures } = verdict.clone() {
                        self.fail_step(cx, step, weight, reason, figures);
                        return;
                    }
                }
                if paused || cx.now < until_ms {
                    return;
                }
                let waited = cx.now - until_ms;
                match verdict {
                    Verdict::Pass { figures } => self.pass_step(cx, p, step, figures, "passed"),
                    Verdict::Fail { reason, figures } => {
                        self.fail_step(cx, step, weight, reason, figures);
                    }
                    Verdict::Insufficient { requests, figures } => {
                        let no_figures = stats.is_none();
                        let policy = a.insufficient_traffic;
                        // Missing figures are waited for under every policy; too little
                        // traffic only under the `wait_then_*` ones.
                        let may_wait = no_figures
                            || matches!(
                                policy,
                                InsufficientPolicy::WaitThenPass | InsufficientPolicy::WaitThenFail
                            );
                        if may_wait && waited < a.max_wait_ms {
                            if !waiting_for_traffic {
                                cx.decide(
                                    "canary.waiting_for_traffic",
                                    format!(
                                        "step {step}: {requests} requests, need {}; waiting up to {} ms",
                                        a.min_requests, a.max_wait_ms
                                    ),
                                    figures,
                                );
                                self.phase = Phase::CanaryStep {
                                    step,
                                    weight,
                                    until_ms,
                                    waiting_for_traffic: true,
                                };
                            }
                            return;
                        }
                        let pass = matches!(
                            policy,
                            InsufficientPolicy::Pass | InsufficientPolicy::WaitThenPass
                        );
                        if pass {
                            self.pass_step(
                                cx,
                                p,
                                step,
                                figures,
                                "passed on too little traffic (policy)",
                            );
                        } else {
                            let reason = Reason::InsufficientTraffic {
                                requests,
                                min_requests: a.min_requests,
                                waited_ms: waited,
                            };
                            self.fail_step(cx, step, weight, reason, figures);
                        }
                    }
                }
            }
            Phase::Promoting if !paused && cx.obs.candidate.ready >= self.spec.replicas => {
                self.succeed(cx);
            }
            _ => {}
        }
    }

    fn enter_step(&mut self, cx: &mut Cx<'_>, p: &CanaryParams, step: usize) {
        let Some(s) = p.steps.get(step) else {
            self.start_promoting(cx);
            return;
        };
        self.weight = s.weight;
        self.windows_started += 1;
        self.window = Some(self.windows_started);
        self.next_check_ms = cx.now.saturating_add(p.analysis.interval_ms);
        cx.decide(
            "canary.step_started",
            format!(
                "step {step}: {}% of traffic to the new release for {} ms",
                s.weight, s.pause_ms
            ),
            json!({ "step": step, "weight": s.weight, "pause_ms": s.pause_ms, "candidate_instances": self.candidate_target, "candidate_ready": cx.obs.candidate.ready, "window": self.windows_started }),
        );
        self.set_phase(
            cx.now,
            Phase::CanaryStep {
                step,
                weight: s.weight,
                until_ms: cx.now.saturating_add(s.pause_ms),
                waiting_for_traffic: false,
            },
        );
    }

    fn pass_step(
        &mut self,
        cx: &mut Cx<'_>,
        p: &CanaryParams,
        step: usize,
        mut figures: Value,
        how: &str,
    ) {
        merge(&mut figures, json!({ "step": step, "weight": self.weight }));
        cx.decide("canary.step_passed", format!("step {step} {how}"), figures);
        let next = step + 1;
        match p.steps.get(next) {
            None => self.start_promoting(cx),
            Some(s) => {
                let target = canary_instances(self.spec.replicas, s.weight);
                self.set_targets(
                    cx.now,
                    self.stable_target,
                    target.max(self.candidate_target),
                );
                self.set_phase(
                    cx.now,
                    Phase::CanaryScaling {
                        step: next,
                        weight: self.weight,
                    },
                );
                if cx.obs.candidate.ready >= self.candidate_target {
                    self.enter_step(cx, p, next);
                }
            }
        }
    }

    fn fail_step(
        &mut self,
        cx: &mut Cx<'_>,
        step: usize,
        weight: u8,
        reason: Reason,
        mut figures: Value,
    ) {
        merge(&mut figures, json!({ "step": step, "weight": weight }));
        self.start_rollback(cx, reason, figures);
    }

    fn start_promoting(&mut self, cx: &mut Cx<'_>) {
        self.window = None;
        self.set_targets(cx.now, self.stable_target, self.spec.replicas);
        self.set_phase(cx.now, Phase::Promoting);
        cx.decide(
            "canary.promoting",
            "scaling the new release to full count before moving all traffic".into(),
            json!({ "candidate_instances": self.spec.replicas, "candidate_ready": cx.obs.candidate.ready }),
        );
        if self.paused_since.is_none() && cx.obs.candidate.ready >= self.spec.replicas {
            self.succeed(cx);
        }
    }

    // ---- state helpers ----

    /// Every change of a target or of the phase is progress: it restarts both clocks.
    fn set_targets(&mut self, now: u64, stable: u32, candidate: u32) {
        if (stable, candidate) != (self.stable_target, self.candidate_target) {
            self.stable_target = stable;
            self.candidate_target = candidate;
            self.progressed(now);
        }
    }

    fn set_phase(&mut self, now: u64, phase: Phase) {
        if phase != self.phase {
            self.phase = phase;
            self.progressed(now);
        }
    }

    fn progressed(&mut self, now: u64) {
        self.progress_at_ms = now;
        self.unready_ms = 0;
    }

    fn traffic(&self) -> Traffic {
        match &self.phase {
            Phase::Succeeded => Traffic::Weighted {
                candidate_weight: 100,
            },
            Phase::RolledBack { .. } | Phase::Failed { .. } => Traffic::Weighted {
                candidate_weight: 0,
            },
            _ if self.first_deploy || matches!(self.spec.strategy, Strategy::Rolling(_)) => {
                Traffic::ByReadiness
            }
            _ => Traffic::Weighted {
                candidate_weight: self.weight,
            },
        }
    }

    fn sticky(&self) -> Option<StickyGroup> {
        let Strategy::Canary(c) = &self.spec.strategy else {
            return None;
        };
        let in_steps = matches!(
            self.phase,
            Phase::CanaryScaling { .. } | Phase::CanaryStep { .. } | Phase::Promoting
        );
        if in_steps && !self.first_deploy && (1..100).contains(&self.weight) {
            c.sticky.clone()
        } else {
            None
        }
    }

    fn preview(&self) -> bool {
        match &self.spec.strategy {
            Strategy::BlueGreen(p) => {
                p.preview
                    && !self.first_deploy
                    && matches!(self.phase, Phase::Starting | Phase::Preview)
            }
            _ => false,
        }
    }

    fn pool_figures(&self, cx: &Cx<'_>) -> Value {
        let (s, c) = (&cx.obs.stable, &cx.obs.candidate);
        json!({
            "phase": self.phase.as_str(),
            "candidate": { "wanted": self.candidate_target, "running": c.running, "ready": c.ready, "failed_to_start": c.failed_to_start, "restarts": c.restarts },
            "stable": { "wanted": self.stable_target, "running": s.running, "ready": s.ready },
        })
    }
}

/// Candidate instances for a canary weight: `ceil(replicas * weight / 100)`, at least 1 and
/// at most `replicas`. Stable keeps its full count beside them until the end, so a canary
/// needs that much spare capacity and its abort never waits for a start.
pub fn canary_instances(replicas: u32, weight: u8) -> u32 {
    let n = (u64::from(replicas) * u64::from(weight)).div_ceil(100);
    u32::try_from(n)
        .unwrap_or(replicas)
        .clamp(1, replicas.max(1))
}

/// The per-call context: the time, the time since the previous call, the observation, and
/// where decisions go.
struct Cx<'a> {
    now: u64,
    dt: u64,
    obs: &'a Observation,
    out: &'a mut Vec<Decision>,
}

impl Cx<'_> {
    fn decide(&mut self, kind: &str, message: String, figures: Value) {
        self.out.push(Decision {
            at_ms: self.now,
            kind: kind.to_owned(),
            message,
            figures,
        });
    }
}

fn scaled_figures(stable: u32, candidate: u32, obs: &Observation) -> Value {
    json!({
        "stable_instances": stable,
        "candidate_instances": candidate,
        "stable_running": obs.stable.running,
        "stable_ready": obs.stable.ready,
        "candidate_running": obs.candidate.running,
        "candidate_ready": obs.candidate.ready,
    })
}

/// Adds the keys of `extra` (an object) to `into` (an object), keeping `into`'s on clashes.
fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        for (k, v) in b {
            a.entry(k).or_insert(v);
        }
    }
}
