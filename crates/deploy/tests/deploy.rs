//! State-machine tests for every strategy, driven by a simulated runtime and proxy with
//! injected time: no IO, no sleeps, nothing printed.
//!
//! `World` plays the control plane: each tick it advances time, lets the pools and the
//! proxy evolve, builds an `Observation`, calls `step`, and applies the `Desired` state.
//! On every tick it also checks that a second `step` with the same observation changes
//! nothing, that the state survives a JSON round trip unchanged, and the invariants of the
//! strategy (surge, availability, stable capacity, terminal states).

use serde_json::Value;
use sluice_deploy::{
    Analysis, BlueGreenParams, CanaryParams, CanaryStep, Command, Decision, DeploySpec, Deployment,
    Desired, InsufficientPolicy, Observation, Outcome, Phase, PoolObs, Reason, RollingParams,
    SpecError, StickyGroup, Strategy, Traffic, VersionWindow, WindowStats, canary_instances,
};

const TICK: u64 = 100;
const T0: u64 = 1_000_000;
const DEADLINE: u64 = 5_000;
const READY_AFTER: u64 = 300;
const LOAD: u64 = 100; // requests per tick (1000 req/s)

// ---------------------------------------------------------------------------------------
// The simulated world
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Health {
    /// Ready `READY_AFTER` ms after start.
    Healthy,
    /// Every start exits: one failed start per wanted instance per tick; never running.
    ExitOnStart,
    /// Runs, never passes readiness (also: accepts connections, never answers).
    NeverReady,
    /// Becomes ready, then crashes 200 ms later and starts again (one restart each time).
    CrashLoop,
}

#[derive(Clone, Debug)]
struct Pool {
    /// Start times, oldest first (the oldest are the ready ones).
    started: Vec<u64>,
    /// Instances stopping (draining): running, not ready, gone at the given time.
    stopping: Vec<u64>,
    health: Health,
    stop_lag: u64,
    /// Readiness forced by a property test: this many instances ready (at most all).
    forced_ready: Option<u32>,
    failed_to_start: u32,
    restarts: u32,
    error_rate: f64,
    latency_ms: f64,
}

impl Pool {
    fn new(health: Health, n: usize, now: u64) -> Pool {
        Pool {
            started: vec![now.saturating_sub(10 * READY_AFTER); n],
            stopping: Vec::new(),
            health,
            stop_lag: 2 * TICK,
            forced_ready: None,
            failed_to_start: 0,
            restarts: 0,
            error_rate: 0.0,
            latency_ms: 20.0,
        }
    }

    fn ready(&self, now: u64) -> u32 {
        let n = self.started.len() as u32;
        if let Some(f) = self.forced_ready {
            return f.min(n);
        }
        match self.health {
            Health::Healthy | Health::CrashLoop => self
                .started
                .iter()
                .filter(|&&s| now >= s + READY_AFTER)
                .count() as u32,
            Health::ExitOnStart | Health::NeverReady => 0,
        }
    }

    fn obs(&self, now: u64) -> PoolObs {
        let running = match self.health {
            Health::ExitOnStart => 0,
            _ => self.started.len() as u32,
        } + self.stopping.len() as u32;
        PoolObs {
            running,
            stopping: self.stopping.len() as u32,
            ready: self.ready(now),
            failed_to_start: self.failed_to_start,
            restarts: self.restarts,
        }
    }

    fn evolve(&mut self, now: u64) {
        self.stopping.retain(|&until| until > now);
        match self.health {
            Health::ExitOnStart => self.failed_to_start += self.started.len() as u32,
            Health::CrashLoop => {
                for s in &mut self.started {
                    if now >= *s + READY_AFTER + 200 {
                        self.restarts += 1;
                        *s = now;
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies a wanted count: starts new instances now, stops the newest (not-ready) first.
    fn apply(&mut self, want: u32, now: u64) {
        while self.started.len() > want as usize {
            self.started.pop();
            self.stopping.push(now + self.stop_lag);
        }
        while self.started.len() < want as usize {
            self.started.push(now);
        }
    }
}

struct World {
    d: Deployment,
    now: u64,
    stable: Pool,
    cand: Pool,
    /// Proxy window: id and counts per version.
    window: Option<u64>,
    counts: [VersionWindow; 2],
    /// Whether figures are delivered at all.
    stats_available: bool,
    load: u64,
    sticky_load: u64,
    commands: Vec<(u64, Command)>,
    last: Desired,
    trace: Vec<(u64, Desired)>,
    /// The observation behind each entry of `trace`.
    observations: Vec<Observation>,
    decisions: Vec<Decision>,
    /// Check the rolling availability invariant (off where a test forces stops).
    check_rolling: bool,
}

impl World {
    fn new(spec: DeploySpec, first_deploy: bool) -> World {
        let replicas = spec.replicas as usize;
        let d = Deployment::new(spec, T0, first_deploy).expect("valid spec");
        let stable = Pool::new(Health::Healthy, if first_deploy { 0 } else { replicas }, T0);
        let last = d.desired();
        World {
            d,
            now: T0,
            stable,
            cand: Pool::new(Health::Healthy, 0, T0),
            window: None,
            counts: [VersionWindow::default(); 2],
            stats_available: true,
            load: LOAD,
            sticky_load: 0,
            commands: Vec::new(),
            last,
            trace: Vec::new(),
            observations: Vec::new(),
            decisions: Vec::new(),
            check_rolling: true,
        }
    }

    fn candidate(mut self, health: Health) -> World {
        self.cand.health = health;
        self
    }

    fn errors(mut self, rate: f64) -> World {
        self.cand.error_rate = rate;
        self
    }

    fn latency(mut self, ms: f64) -> World {
        self.cand.latency_ms = ms;
        self
    }

    fn load(mut self, per_tick: u64) -> World {
        self.load = per_tick;
        self
    }

    fn command_at(mut self, at: u64, c: Command) -> World {
        self.commands.push((T0 + at, c));
        self
    }

    fn observation(&mut self, command: Option<Command>) -> Observation {
        Observation {
            now_ms: self.now,
            stable: self.stable.obs(self.now),
            candidate: self.cand.obs(self.now),
            stats: match (self.window, self.stats_available) {
                (Some(window), true) => Some(WindowStats {
                    window,
                    candidate: self.counts[1],
                    stable: self.counts[0],
                }),
                _ => None,
            },
            command,
        }
    }

    /// Proxy traffic over the last tick, split as the last desired state says.
    fn traffic(&mut self) {
        let cr = self.cand.ready(self.now) as u64;
        let sr = self.stable.ready(self.now) as u64;
        let to_cand = match self.last.traffic {
            _ if cr == 0 => 0,
            _ if sr == 0 => self.load,
            Traffic::ByReadiness => self.load * cr / (cr + sr),
            Traffic::Weighted { candidate_weight } => self.load * u64::from(candidate_weight) / 100,
        } + if self.last.sticky.is_some() && cr > 0 {
            self.sticky_load
        } else {
            0
        };
        let to_stable = self.load.saturating_sub(to_cand);
        for (i, (n, pool)) in [(to_stable, &self.stable), (to_cand, &self.cand)]
            .into_iter()
            .enumerate()
        {
            let c = &mut self.counts[i];
            c.requests += n;
            c.errors += (n as f64 * pool.error_rate).round() as u64;
            if n > 0 {
                c.latency_ms_at_quantile = Some(pool.latency_ms);
            }
        }
    }

    /// One tick: time, world, observation, step (twice), apply.
    fn tick(&mut self) {
        self.now += TICK;
        self.stable.evolve(self.now);
        self.cand.evolve(self.now);
        self.traffic();
        let command = self
            .commands
            .iter()
            .position(|(at, _)| *at <= self.now)
            .map(|i| self.commands.remove(i).1);
        let obs = self.observation(command);
        self.step_with(&obs);
    }

    fn step_with(&mut self, obs: &Observation) {
        let before_ready = obs.stable.ready + obs.candidate.ready;
        let desired = self.d.step(obs);
        // Idempotence: the same observation again changes nothing and decides nothing.
        let mut twin = self.d.clone();
        let again = twin.step(obs);
        assert_eq!(
            twin, self.d,
            "second step changed the state at {}",
            self.now
        );
        assert!(
            again.decisions.is_empty(),
            "duplicated decisions: {again:?}"
        );
        assert!(!again.reset_window);
        assert_eq!(
            Desired {
                decisions: Vec::new(),
                reset_window: false,
                ..desired.clone()
            },
            again
        );
        // Persisted state reads back identically.
        let json = serde_json::to_string(&self.d).expect("serialise");
        let back: Deployment = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, self.d, "JSON round trip changed the state");
        assert_eq!(desired.phase, *self.d.phase());
        for dec in &desired.decisions {
            assert!(!dec.kind.is_empty() && !dec.message.is_empty());
            assert!(dec.figures.is_object(), "figures of {dec:?}");
            assert_eq!(dec.at_ms, self.now.max(obs.now_ms).max(dec.at_ms));
        }
        self.apply(&desired, before_ready);
        self.decisions.extend(desired.decisions.iter().cloned());
        self.trace.push((self.now, desired.clone()));
        self.observations.push(obs.clone());
        self.last = desired;
    }

    fn apply(&mut self, desired: &Desired, before_ready: u32) {
        let spec = self.d.spec().clone();
        self.stable.apply(desired.stable_instances, self.now);
        self.cand.apply(desired.candidate_instances, self.now);
        if desired.analysis_window != self.window {
            self.window = desired.analysis_window;
            self.counts = [VersionWindow::default(); 2];
        }
        check_invariants(
            &spec,
            &self.d,
            desired,
            before_ready,
            &self.stable,
            &self.cand,
            self.now,
            self.check_rolling,
        );
    }

    /// The first step, at the start time, unless the world has stepped already.
    fn begin(&mut self) {
        if self.trace.is_empty() {
            let obs = self.observation(None);
            self.step_with(&obs);
        }
    }

    fn run(&mut self, max_ms: u64) -> &mut World {
        let end = self.now + max_ms;
        self.begin();
        while !self.d.is_finished() && self.now < end {
            self.tick();
        }
        self
    }

    fn run_until(&mut self, max_ms: u64, until: impl Fn(&World) -> bool) -> &mut World {
        let end = self.now + max_ms;
        self.begin();
        while !until(self) && self.now < end {
            self.tick();
        }
        assert!(until(self), "condition not reached by {}", self.now - T0);
        self
    }

    fn outcome(&self) -> Option<Outcome> {
        self.d.outcome()
    }

    fn kinds(&self) -> Vec<&str> {
        self.decisions.iter().map(|d| d.kind.as_str()).collect()
    }

    fn decision(&self, kind: &str) -> &Decision {
        self.decisions
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} decision in {:?}", self.kinds()))
    }

    /// Time (since start) of the first desired state matching `f`.
    fn first(&self, f: impl Fn(&Desired) -> bool) -> Option<u64> {
        self.trace.iter().find(|(_, d)| f(d)).map(|(t, _)| t - T0)
    }

    fn rollback_reason(&self) -> Reason {
        match self.outcome() {
            Some(Outcome::RolledBack { reason }) => reason,
            other => panic!("expected a rollback, got {other:?}; {:?}", self.kinds()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_invariants(
    spec: &DeploySpec,
    d: &Deployment,
    desired: &Desired,
    before_ready: u32,
    stable: &Pool,
    cand: &Pool,
    now: u64,
    check_rolling: bool,
) {
    let replicas = spec.replicas;
    match &desired.phase {
        Phase::Succeeded => {
            assert_eq!(
                (
                    desired.stable_instances,
                    desired.candidate_instances,
                    desired.traffic
                ),
                (
                    0,
                    replicas,
                    Traffic::Weighted {
                        candidate_weight: 100
                    }
                )
            );
        }
        Phase::RolledBack { .. } => assert_eq!(
            (
                desired.stable_instances,
                desired.candidate_instances,
                desired.traffic
            ),
            (
                replicas,
                0,
                Traffic::Weighted {
                    candidate_weight: 0
                }
            )
        ),
        Phase::Failed { .. } => {
            assert_eq!(
                (desired.stable_instances, desired.candidate_instances),
                (0, 0)
            );
            assert!(d.is_first_deploy());
        }
        _ => {}
    }
    if d.is_first_deploy() {
        assert_eq!(desired.stable_instances, 0);
        assert!(!desired.preview && desired.sticky.is_none());
    }
    match &spec.strategy {
        Strategy::Rolling(p) => {
            let max_total = replicas + p.max_surge;
            let min_avail = replicas.saturating_sub(p.max_unavailable);
            assert!(
                desired.stable_instances + desired.candidate_instances <= max_total,
                "desired {desired:?} above {max_total}"
            );
            let running = stable.obs(now).running + cand.obs(now).running;
            if stable.health != Health::ExitOnStart && cand.health != Health::ExitOnStart {
                assert!(running <= max_total, "{running} running, limit {max_total}");
            }
            let after = stable.ready(now) + cand.ready(now);
            let gave_up = matches!(
                desired.phase,
                Phase::RolledBack { .. } | Phase::Failed { .. }
            );
            if check_rolling && !gave_up {
                assert!(
                    after >= before_ready.min(min_avail),
                    "stops left {after} ready (was {before_ready}, min {min_avail})"
                );
            }
            assert!(matches!(
                desired.traffic,
                Traffic::ByReadiness | Traffic::Weighted { .. }
            ));
        }
        Strategy::BlueGreen(_) | Strategy::Canary(_) => {
            if !d.is_first_deploy() && desired.phase != Phase::Succeeded {
                assert_eq!(
                    desired.stable_instances, replicas,
                    "stable shrank: {desired:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------

fn spec(replicas: u32, strategy: Strategy) -> DeploySpec {
    DeploySpec {
        replicas,
        strategy,
        progress_deadline_ms: DEADLINE,
        max_restarts: 3,
    }
}

fn rolling(replicas: u32, max_surge: u32, max_unavailable: u32) -> DeploySpec {
    spec(
        replicas,
        Strategy::Rolling(RollingParams {
            max_surge,
            max_unavailable,
        }),
    )
}

fn blue_green(keep_warm_ms: u64, preview: bool, auto_promote: bool) -> DeploySpec {
    spec(
        3,
        Strategy::BlueGreen(BlueGreenParams {
            keep_warm_ms,
            preview,
            auto_promote,
        }),
    )
}

fn analysis(policy: InsufficientPolicy) -> Analysis {
    Analysis {
        max_error_rate: 0.05,
        max_latency_ms: Some(300.0),
        latency_quantile: 0.99,
        min_requests: 50,
        insufficient_traffic: policy,
        max_wait_ms: 3_000,
        interval_ms: 1_000,
    }
}

fn canary_with(steps: &[(u8, u64)], a: Analysis) -> DeploySpec {
    spec(
        4,
        Strategy::Canary(CanaryParams {
            steps: steps
                .iter()
                .map(|&(weight, pause_ms)| CanaryStep { weight, pause_ms })
                .collect(),
            analysis: a,
            sticky: Some(StickyGroup::Header {
                name: "x-canary".into(),
                value: "yes".into(),
            }),
        }),
    )
}

/// Two short steps, 10% for 2 s then 100% for 1 s, under `policy`.
fn two_steps(policy: InsufficientPolicy) -> DeploySpec {
    canary_with(&[(10, 2_000), (100, 1_000)], analysis(policy))
}

fn canary() -> DeploySpec {
    canary_with(
        &[(10, 5_000), (50, 5_000), (100, 5_000)],
        analysis(InsufficientPolicy::Fail),
    )
}

fn weight(d: &Desired) -> Option<u8> {
    match d.traffic {
        Traffic::Weighted { candidate_weight } => Some(candidate_weight),
        Traffic::ByReadiness => None,
    }
}

// ---------------------------------------------------------------------------------------
// Spec validation
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_specs_are_refused_with_the_field() {
    let mut zero = rolling(3, 1, 0);
    zero.replicas = 0;
    let mut no_deadline = rolling(3, 1, 0);
    no_deadline.progress_deadline_ms = 0;
    let mut bad_rate = analysis(InsufficientPolicy::Fail);
    bad_rate.max_error_rate = 1.5;
    let mut bad_q = analysis(InsufficientPolicy::Fail);
    bad_q.latency_quantile = 0.0;
    let mut bad_latency = analysis(InsufficientPolicy::Fail);
    bad_latency.max_latency_ms = Some(f64::NAN);
    let mut empty_sticky = canary();
    if let Strategy::Canary(c) = &mut empty_sticky.strategy {
        c.sticky = Some(StickyGroup::Cookie {
            name: " ".into(),
            value: "1".into(),
        });
    }
    let table: Vec<(DeploySpec, SpecError)> = vec![
        (zero, SpecError::ZeroReplicas),
        (no_deadline, SpecError::ZeroDeadline),
        (rolling(3, 0, 0), SpecError::RollingCannotProgress),
        (
            canary_with(&[], analysis(InsufficientPolicy::Fail)),
            SpecError::NoCanarySteps,
        ),
        (
            canary_with(&[(0, 1)], analysis(InsufficientPolicy::Fail)),
            SpecError::StepWeight { step: 0, weight: 0 },
        ),
        (
            canary_with(&[(10, 1), (101, 1)], analysis(InsufficientPolicy::Fail)),
            SpecError::StepWeight {
                step: 1,
                weight: 101,
            },
        ),
        (
            canary_with(&[(50, 1), (20, 1)], analysis(InsufficientPolicy::Fail)),
            SpecError::DecreasingWeight {
                step: 1,
                weight: 20,
                previous: 50,
            },
        ),
        (
            canary_with(&[(10, 1)], bad_rate),
            SpecError::OutOfRange {
                field: "analysis.max_error_rate",
                value: 1.5,
                expected: "between 0 and 1 (e.g. 0.05)",
            },
        ),
        (empty_sticky, SpecError::EmptySticky),
    ];
    for (spec, want) in table {
        assert_eq!(Deployment::new(spec, T0, false).err(), Some(want));
    }
    for a in [bad_q, bad_latency] {
        let err = Deployment::new(canary_with(&[(10, 1)], a), T0, false).err();
        assert!(matches!(err, Some(SpecError::OutOfRange { .. })), "{err:?}");
    }
    let msg = SpecError::RollingCannotProgress.to_string();
    assert!(msg.starts_with("max_surge") && !msg.ends_with('.'));
}

#[test]
fn specs_round_trip_through_json() {
    for s in [rolling(3, 1, 0), blue_green(1000, true, false), canary()] {
        let back: DeploySpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
    let err = serde_json::from_str::<RollingParams>(r#"{"max_surge":1,"max_unavailable":0,"x":1}"#);
    assert!(err.is_err(), "unknown fields are refused");
}

#[test]
fn canary_instance_counts() {
    let table = [
        (4, 1, 1),
        (4, 10, 1),
        (4, 25, 1),
        (4, 26, 2),
        (4, 50, 2),
        (4, 100, 4),
        (10, 33, 4),
        (1, 1, 1),
        (1, 100, 1),
    ];
    for (replicas, w, want) in table {
        assert_eq!(canary_instances(replicas, w), want, "{replicas} x {w}%");
    }
}

// ---------------------------------------------------------------------------------------
// Rolling
// ---------------------------------------------------------------------------------------

#[test]
fn rolling_happy_paths_hold_the_limits() {
    // (replicas, surge, unavailable)
    for (r, s, u) in [
        (3, 1, 0),
        (3, 0, 1),
        (5, 2, 1),
        (1, 1, 0),
        (1, 0, 1),
        (4, 4, 4),
    ] {
        let mut w = World::new(rolling(r, s, u), false);
        w.run(120_000);
        assert_eq!(
            w.outcome(),
            Some(Outcome::Succeeded),
            "{r}/{s}/{u}: {:?}",
            w.kinds()
        );
        assert!(w.kinds().contains(&"rolling.scaled"));
        assert_eq!(w.kinds().first(), Some(&"deploy.started"));
        assert_eq!(w.kinds().last(), Some(&"deploy.succeeded"));
        // Traffic follows readiness until the end.
        assert!(
            w.trace
                .iter()
                .filter(|(_, d)| d.phase == Phase::Rolling)
                .all(|(_, d)| d.traffic == Traffic::ByReadiness)
        );
    }
}

#[test]
fn rolling_batches_exactly() {
    // replicas 3, surge 1, unavailable 0: (stable, candidate) wanted over time.
    let mut w = World::new(rolling(3, 1, 0), false);
    w.run(60_000);
    let mut seen: Vec<(u32, u32)> = Vec::new();
    for (_, d) in &w.trace {
        let pair = (d.stable_instances, d.candidate_instances);
        if seen.last() != Some(&pair) {
            seen.push(pair);
        }
    }
    assert_eq!(
        seen,
        vec![(3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)],
        "{:?}",
        w.kinds()
    );
}

#[test]
fn rolling_first_deploy_serves_by_readiness() {
    let mut w = World::new(rolling(3, 1, 0), true);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(w.trace[0].1.candidate_instances, 3);
    assert_eq!(w.trace[0].1.traffic, Traffic::ByReadiness);
}

#[test]
fn rolling_rollback_causes() {
    // (health, expected reason kind, latest rollback start in ms)
    let table = [
        (Health::ExitOnStart, "start_failed", 1_000),
        (Health::NeverReady, "progress_deadline", DEADLINE + TICK),
        (Health::CrashLoop, "crash_loop", 2_500),
    ];
    for (health, kind, by) in table {
        // A release that crashes only after passing readiness is caught while the rollout
        // still runs (here: its second restart), not after it finished.
        let mut spec = rolling(3, 1, 0);
        spec.max_restarts = 1;
        let mut w = World::new(spec, false).candidate(health);
        w.run(60_000);
        assert_eq!(w.rollback_reason().as_str(), kind, "{health:?}");
        let started = w.decision("rollback.started").at_ms - T0;
        assert!(started <= by, "{health:?}: rollback began at {started}");
        // Stable is back at full strength, the candidate is gone.
        assert_eq!(w.stable.ready(w.now), 3);
        assert!(w.cand.started.is_empty());
        assert_eq!(w.decision("rollback.finished").figures["complete"], true);
    }
}

#[test]
fn rolling_rollback_reverses_within_the_limits() {
    // Abort halfway: ready candidates keep serving until stable is back.
    let mut w = World::new(rolling(4, 1, 0), false).command_at(1_500, Command::Abort);
    w.run(60_000);
    assert_eq!(w.rollback_reason(), Reason::Aborted);
    assert!(w.kinds().contains(&"rollback.scaled"));
    let rolling_back: Vec<&Desired> = w
        .trace
        .iter()
        .map(|(_, d)| d)
        .filter(|d| matches!(d.phase, Phase::RollingBack { .. }))
        .collect();
    assert!(!rolling_back.is_empty());
    assert!(
        rolling_back
            .iter()
            .all(|d| d.traffic == Traffic::ByReadiness)
    );
}

#[test]
fn rolling_first_deploy_failure_is_failed() {
    // (A first deploy that crashes only after all instances were ready has succeeded;
    // what happens later is the reconciler's business.)
    for health in [Health::ExitOnStart, Health::NeverReady] {
        let mut w = World::new(rolling(3, 1, 0), true).candidate(health);
        w.run(60_000);
        let Some(Outcome::Failed { reason }) = w.outcome() else {
            panic!("{health:?}: {:?}", w.outcome());
        };
        assert_ne!(reason, Reason::Aborted);
        assert!(w.kinds().contains(&"deploy.failed"));
        assert!(!w.kinds().contains(&"rollback.started"));
        let last = &w.trace.last().unwrap().1;
        assert_eq!((last.stable_instances, last.candidate_instances), (0, 0));
    }
}

#[test]
fn rolling_pause_freezes_and_resume_continues() {
    let mut w = World::new(rolling(4, 1, 0), false)
        .command_at(1_000, Command::Pause)
        .command_at(60_000, Command::Resume);
    w.run_until(10_000, |w| w.d.is_paused());
    let frozen = (w.last.stable_instances, w.last.candidate_instances);
    w.run_until(60_000, |w| w.now >= T0 + 59_000);
    // Paused far beyond the deadline with everything ready: no progress, no rollback.
    assert_eq!(
        (w.last.stable_instances, w.last.candidate_instances),
        frozen
    );
    assert!(w.last.paused && w.d.outcome().is_none());
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(w.decision("deploy.resumed").figures["paused_ms"], 59_000);
}

#[test]
fn rolling_pause_still_rolls_back_a_crash_loop() {
    let mut w = World::new(rolling(3, 1, 0), false)
        .candidate(Health::CrashLoop)
        .command_at(0, Command::Pause);
    w.run(60_000);
    assert_eq!(w.rollback_reason().as_str(), "crash_loop");
}

#[test]
fn rolling_ignores_promote() {
    let mut w = World::new(rolling(3, 1, 0), false);
    w.run_until(1_000, |w| w.now >= T0 + 500);
    assert!(!w.d.command_applies(Command::Promote));
    let before = w.d.clone();
    let mut obs = w.observation(Some(Command::Promote));
    obs.now_ms = w.now;
    let d = w.d.step(&obs);
    assert!(d.decisions.is_empty());
    assert_eq!(w.d, before);
}

// ---------------------------------------------------------------------------------------
// Blue-green
// ---------------------------------------------------------------------------------------

#[test]
fn blue_green_happy_path_switches_atomically_and_keeps_blue_warm() {
    let mut w = World::new(blue_green(10_000, false, true), false);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(
        w.kinds(),
        vec![
            "deploy.started",
            "bluegreen.switched",
            "bluegreen.blue_stopped",
            "deploy.succeeded"
        ]
    );
    // Until the switch, no traffic to green and green at full count beside blue.
    let switch = w.first(|d| weight(d) == Some(100)).unwrap();
    for (t, d) in &w.trace {
        if t - T0 < switch {
            assert_eq!(weight(d), Some(0));
            assert_eq!((d.stable_instances, d.candidate_instances), (3, 3));
            assert_eq!(d.phase, Phase::Starting);
        }
    }
    // The switch is one step from 0 to 100, taken when all green instances were ready.
    let sw = w.decision("bluegreen.switched");
    assert_eq!(sw.figures["candidate_ready"], 3);
    assert_eq!(sw.at_ms - T0, switch);
    // Blue stays for exactly keep_warm_ms after the switch, then stops.
    let stop = w.first(|d| d.stable_instances == 0).unwrap();
    assert_eq!(stop - switch, 10_000);
    let (_, before) = w.trace.iter().rev().find(|(t, _)| t - T0 < stop).unwrap();
    assert_eq!(
        before.phase,
        Phase::KeepingWarm {
            until_ms: T0 + switch + 10_000
        }
    );
    assert_eq!(before.stable_instances, 3);
}

#[test]
fn blue_green_keep_warm_zero_finishes_at_the_switch() {
    let mut w = World::new(blue_green(0, false, false), false);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(
        w.decision("bluegreen.switched").at_ms,
        w.decision("deploy.succeeded").at_ms
    );
}

#[test]
fn blue_green_preview_waits_for_promote() {
    let mut w =
        World::new(blue_green(5_000, true, false), false).command_at(30_000, Command::Promote);
    w.run_until(10_000, |w| *w.d.phase() == Phase::Preview);
    assert!(w.last.preview && weight(&w.last) == Some(0));
    // Waiting for a person is not a stall: no deadline, no progress.
    w.run_until(30_000, |w| w.now >= T0 + 29_000);
    assert_eq!(*w.d.phase(), Phase::Preview);
    assert!(w.d.command_applies(Command::Promote));
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(w.decision("bluegreen.switched").at_ms - T0, 30_000);
    assert!(
        w.trace
            .iter()
            .all(|(_, d)| !d.preview || weight(d) == Some(0))
    );
}

#[test]
fn blue_green_preview_with_auto_promote_and_early_promote() {
    // auto_promote: preview while starting, then switch as soon as ready.
    let mut w = World::new(blue_green(1_000, true, true), false);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert!(w.trace[0].1.preview);
    assert!(!w.kinds().contains(&"bluegreen.preview"));
    // Promote before green is ready: switch when ready, no preview wait.
    let mut w = World::new(blue_green(1_000, true, false), false).command_at(0, Command::Promote);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert!(!w.kinds().contains(&"bluegreen.preview"));
    assert!(w.kinds().contains(&"deploy.promoted"));
}

#[test]
fn blue_green_rollback_inside_keep_warm_is_instant() {
    let mut w =
        World::new(blue_green(20_000, false, true), false).command_at(5_000, Command::Abort);
    w.run(60_000);
    assert_eq!(w.rollback_reason(), Reason::Aborted);
    // One call: traffic back to stable, green to 0, finished (blue was ready all along).
    let started = w.decision("rollback.started").at_ms;
    let finished = w.decision("rollback.finished").at_ms;
    assert_eq!(started, finished);
    let (_, d) = w.trace.iter().find(|(t, _)| *t == started).unwrap();
    assert_eq!(weight(d), Some(0));
    assert_eq!((d.stable_instances, d.candidate_instances), (3, 0));
    assert!(!w.kinds().contains(&"bluegreen.blue_stopped"));
}

#[test]
fn blue_green_crash_in_keep_warm_rolls_back() {
    let mut w = World::new(blue_green(20_000, false, true), false);
    w.run_until(10_000, |w| matches!(w.d.phase(), Phase::KeepingWarm { .. }));
    w.cand.health = Health::CrashLoop;
    w.run(60_000);
    assert_eq!(w.rollback_reason().as_str(), "crash_loop");
    assert_eq!(weight(&w.last), Some(0));
}

#[test]
fn blue_green_flapping_in_keep_warm_adds_up_to_the_deadline() {
    let mut w = World::new(blue_green(60_000, false, true), false);
    w.run_until(10_000, |w| matches!(w.d.phase(), Phase::KeepingWarm { .. }));
    let switched = w.now;
    w.cand.forced_ready = Some(2); // one green instance stops passing readiness
    w.run(60_000);
    let reason = w.rollback_reason();
    assert_eq!(reason.as_str(), "progress_deadline");
    let at = w.decision("rollback.started").at_ms;
    assert_eq!(at - switched, DEADLINE);
}

#[test]
fn blue_green_keep_warm_boundary_and_pause() {
    // Paused 4 s inside keep-warm: blue is stopped 4 s later than without the pause.
    let mut w = World::new(blue_green(10_000, false, true), false)
        .command_at(2_000, Command::Pause)
        .command_at(6_000, Command::Resume);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    let switch = w.decision("bluegreen.switched").at_ms;
    let stopped = w.decision("bluegreen.blue_stopped").at_ms;
    assert_eq!(stopped - switch, 14_000);
    // One tick before the end, still warm.
    let (_, d) = w.trace.iter().find(|(t, _)| *t == stopped - TICK).unwrap();
    assert!(matches!(d.phase, Phase::KeepingWarm { .. }) && d.stable_instances == 3);
}

#[test]
fn blue_green_rollback_causes() {
    // (health, reason, rollback start in ms): a start failure is quick; a green that never
    // gets ready is caught at exactly the deadline.
    let table = [
        (Health::ExitOnStart, "start_failed", 200),
        (Health::NeverReady, "progress_deadline", DEADLINE),
        (Health::CrashLoop, "crash_loop", 2_500),
    ];
    for (health, kind, at) in table {
        let mut w = World::new(blue_green(10_000, false, true), false).candidate(health);
        w.run(60_000);
        assert_eq!(w.rollback_reason().as_str(), kind, "{health:?}");
        let started = w.decision("rollback.started");
        assert!(
            started.at_ms - T0 <= at,
            "{health:?} at {}",
            started.at_ms - T0
        );
        assert!(started.figures["candidate"].is_object());
        if health == Health::CrashLoop {
            // It passed readiness once, so it was switched to, and switched back inside the
            // keep-warm window.
            assert_eq!(started.figures["phase"], "keeping_warm");
            assert_eq!(weight(&w.last), Some(0));
        } else {
            // Blue kept all traffic throughout: green never got weight.
            assert!(
                w.trace.iter().all(|(_, d)| weight(d) == Some(0)),
                "{health:?}"
            );
        }
    }
    // One tick before the deadline it is still starting.
    let mut w = World::new(blue_green(10_000, false, true), false).candidate(Health::NeverReady);
    w.run(60_000);
    let (_, d) = w
        .trace
        .iter()
        .find(|(t, _)| *t == T0 + DEADLINE - TICK)
        .unwrap();
    assert_eq!(d.phase, Phase::Starting);
    let Reason::ProgressDeadline {
        ready,
        wanted,
        waited_ms,
        deadline_ms,
    } = w.rollback_reason()
    else {
        panic!()
    };
    assert_eq!(
        (ready, wanted, waited_ms, deadline_ms),
        (0, 3, DEADLINE, DEADLINE)
    );
}

#[test]
fn blue_green_first_deploy() {
    let mut w = World::new(blue_green(10_000, true, false), true);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert!(w.trace.iter().all(|(_, d)| !d.preview));
    assert_eq!(w.trace[0].1.traffic, Traffic::ByReadiness);
    assert!(!w.d.command_applies(Command::Promote));

    let mut w = World::new(blue_green(10_000, false, true), true).candidate(Health::NeverReady);
    w.run(60_000);
    assert!(matches!(w.outcome(), Some(Outcome::Failed { .. })));
}

// ---------------------------------------------------------------------------------------
// Canary
// ---------------------------------------------------------------------------------------

#[test]
fn canary_happy_path_walks_every_step() {
    let mut w = World::new(canary(), false);
    w.sticky_load = 5;
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded), "{:?}", w.kinds());
    assert_eq!(
        w.kinds(),
        vec![
            "deploy.started",
            "canary.step_started",
            "canary.step_passed",
            "canary.step_started",
            "canary.step_passed",
            "canary.step_started",
            "canary.step_passed",
            "canary.promoting",
            "deploy.succeeded"
        ]
    );
    // Weights in order, instance counts per step, a fresh window per step.
    let mut weights: Vec<u8> = Vec::new();
    for (_, d) in &w.trace {
        if let Some(x) = weight(d)
            && weights.last() != Some(&x)
        {
            weights.push(x);
        }
    }
    assert_eq!(weights, vec![0, 10, 50, 100]);
    let resets: Vec<Option<u64>> = w
        .trace
        .iter()
        .filter(|(_, d)| d.reset_window)
        .map(|(_, d)| d.analysis_window)
        .collect();
    assert_eq!(resets, vec![Some(1), Some(2), Some(3)]);
    let started: Vec<&Decision> = w
        .decisions
        .iter()
        .filter(|d| d.kind == "canary.step_started")
        .collect();
    let counts: Vec<u64> = started
        .iter()
        .map(|d| d.figures["candidate_instances"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![1, 2, 4]);
    // Each step lasts its pause exactly.
    let passed: Vec<u64> = w
        .decisions
        .iter()
        .filter(|d| d.kind == "canary.step_passed")
        .map(|d| d.at_ms)
        .collect();
    for (s, p) in started.iter().zip(&passed) {
        assert_eq!(p - s.at_ms, 5_000);
    }
    // The passed figures are the window's, with stable next to them.
    let first_pass = w.decision("canary.step_passed");
    assert!(first_pass.figures["requests"].as_u64().unwrap() >= 50);
    assert_eq!(first_pass.figures["error_rate"], 0.0);
    assert!(first_pass.figures["stable"]["requests"].as_u64().unwrap() > 0);
    // Sticky users go to the canary only while it runs at a partial weight.
    for (_, d) in &w.trace {
        let partial = matches!(weight(d), Some(1..=99));
        assert_eq!(d.sticky.is_some(), partial, "{d:?}");
    }
    // Stable kept its full count until the end.
    assert_eq!(w.trace.last().unwrap().1.stable_instances, 0);
}

#[test]
fn canary_analysis_failures_roll_back_at_once() {
    // (errors, latency, reason) — a 20% 5xx release, a +500 ms release, and one that never
    // answers (the proxy answers 504 for it).
    let table = [
        (0.20, 20.0, "error_rate"),
        (0.0, 520.0, "latency"),
        (1.0, 20.0, "error_rate"),
    ];
    for (errors, latency, kind) in table {
        let mut w = World::new(canary(), false).errors(errors).latency(latency);
        w.run(120_000);
        let reason = w.rollback_reason();
        assert_eq!(reason.as_str(), kind, "{errors} {latency}");
        let started = w.decision("rollback.started");
        let step = w.decision("canary.step_started");
        // Detected by the first interval check of the first step.
        assert_eq!(started.at_ms - step.at_ms, 1_000);
        assert_eq!(started.figures["step"], 0);
        assert_eq!(started.figures["weight"], 10);
        assert!(started.figures["requests"].as_u64().unwrap() >= 50);
        // All traffic back to stable and the candidate stopped in that very call.
        let (_, d) = w.trace.iter().find(|(t, _)| *t == started.at_ms).unwrap();
        assert_eq!(weight(d), Some(0));
        assert_eq!((d.stable_instances, d.candidate_instances), (4, 0));
        assert!(d.sticky.is_none());
        assert_eq!(
            d.phase,
            Phase::RolledBack {
                reason: reason.clone()
            }
        );
        match reason {
            Reason::ErrorRate {
                error_rate,
                threshold,
                ..
            } => {
                assert!((error_rate - errors).abs() < 0.01);
                assert_eq!(threshold, 0.05);
                assert_eq!(started.figures["threshold"], 0.05);
            }
            Reason::Latency {
                latency_ms,
                threshold_ms,
                ..
            } => assert_eq!((latency_ms, threshold_ms), (520.0, 300.0)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn canary_health_failures_roll_back() {
    let table = [
        (Health::ExitOnStart, "start_failed"),
        (Health::NeverReady, "progress_deadline"),
        (Health::CrashLoop, "crash_loop"),
    ];
    for (health, kind) in table {
        let mut w = World::new(canary(), false).candidate(health);
        w.run(120_000);
        assert_eq!(w.rollback_reason().as_str(), kind, "{health:?}");
        assert!(w.trace.iter().all(|(_, d)| d.stable_instances == 4));
    }
    // A release that breaks at the second step's scale-up: caught while scaling.
    let mut w = World::new(canary(), false);
    w.run_until(20_000, |w| {
        matches!(w.d.phase(), Phase::CanaryScaling { step: 1, .. })
    });
    w.cand.forced_ready = Some(1);
    w.run(60_000);
    let Reason::ProgressDeadline { ready, wanted, .. } = w.rollback_reason() else {
        panic!("{:?}", w.outcome())
    };
    assert_eq!((ready, wanted), (1, 2));
}

#[test]
fn canary_insufficient_traffic_policies() {
    use InsufficientPolicy::*;
    // (policy, load per tick, outcome kind, how long after the first step's end it is settled)
    // Load 2/tick at 10% = 0 requests: never enough.
    let table = [
        (Pass, "succeeded", 0),
        (Fail, "insufficient_traffic", 0),
        (WaitThenPass, "succeeded", 3_000),
        (WaitThenFail, "insufficient_traffic", 3_000),
    ];
    for (policy, want, settle) in table {
        let mut w = World::new(two_steps(policy), false).load(2);
        w.run(120_000);
        let got = match w.outcome() {
            Some(Outcome::Succeeded) => "succeeded",
            Some(Outcome::RolledBack { reason }) => reason.as_str(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, want, "{policy:?}: {:?}", w.kinds());
        let step = w.decision("canary.step_started").at_ms;
        let settled = w
            .decisions
            .iter()
            .find(|d| d.kind == "canary.step_passed" || d.kind == "rollback.started")
            .unwrap();
        assert_eq!(settled.at_ms - step, 2_000 + settle, "{policy:?}");
        let waiting = w.kinds().contains(&"canary.waiting_for_traffic");
        assert_eq!(waiting, settle > 0, "{policy:?}");
        if let Some(Outcome::RolledBack { reason }) = w.outcome() {
            assert_eq!(
                reason,
                Reason::InsufficientTraffic {
                    requests: 0,
                    min_requests: 50,
                    waited_ms: settle
                }
            );
        }
    }
}

#[test]
fn canary_wait_judges_traffic_that_arrives() {
    // Too little traffic at the end of the pause, then enough arrives during the wait.
    // 2 per tick to the canary: 50 requests take 2.5 s.
    let mut w = World::new(two_steps(InsufficientPolicy::WaitThenFail), false).load(20);
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded), "{:?}", w.kinds());
    let step = w.decision("canary.step_started").at_ms;
    let passed = w.decision("canary.step_passed");
    assert!(passed.at_ms - step > 2_000 && passed.at_ms - step < 5_000);
    assert!(passed.figures["requests"].as_u64().unwrap() >= 50);
    assert!(w.kinds().contains(&"canary.waiting_for_traffic"));
    // And a failing release found during the wait still rolls back on its figures.
    let mut w = World::new(two_steps(InsufficientPolicy::WaitThenPass), false)
        .load(20)
        .errors(0.5);
    w.run(120_000);
    assert_eq!(w.rollback_reason().as_str(), "error_rate");
}

#[test]
fn canary_missing_or_stale_figures_are_not_judged() {
    // No figures at all: waited for up to max_wait_ms, then the policy (pass here).
    let mut w = World::new(two_steps(InsufficientPolicy::Pass), false).errors(0.5);
    w.stats_available = false;
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    let step = w.decision("canary.step_started").at_ms;
    assert_eq!(w.decision("canary.step_passed").at_ms - step, 2_000 + 3_000);

    // Figures of an older window are ignored: bad counts labelled with window 1 do not fail
    // step 2.
    let mut d = Deployment::new(
        canary_with(
            &[(10, 1_000), (50, 5_000)],
            analysis(InsufficientPolicy::Fail),
        ),
        T0,
        false,
    )
    .unwrap();
    let pools = |n: u32| PoolObs {
        running: n,
        ready: n,
        ..PoolObs::default()
    };
    let good = VersionWindow {
        requests: 100,
        errors: 0,
        latency_ms_at_quantile: Some(10.0),
    };
    let bad = VersionWindow {
        requests: 100,
        errors: 100,
        latency_ms_at_quantile: Some(10.0),
    };
    let mut obs = Observation {
        now_ms: T0,
        stable: pools(4),
        candidate: pools(1),
        stats: None,
        command: None,
    };
    let out = d.step(&obs);
    assert_eq!(out.analysis_window, Some(1));
    obs.now_ms = T0 + 1_000;
    obs.stats = Some(WindowStats {
        window: 1,
        candidate: good,
        stable: good,
    });
    obs.candidate = pools(2);
    let out = d.step(&obs);
    assert!(out.reset_window);
    assert_eq!(out.analysis_window, Some(2));
    assert!(matches!(d.phase(), Phase::CanaryStep { step: 1, .. }));
    obs.now_ms = T0 + 2_000;
    obs.stats = Some(WindowStats {
        window: 1,
        candidate: bad,
        stable: good,
    });
    let out = d.step(&obs);
    assert!(out.decisions.is_empty(), "{:?}", out.decisions);
    assert!(d.outcome().is_none());
    obs.stats = Some(WindowStats {
        window: 2,
        candidate: bad,
        stable: good,
    });
    obs.now_ms = T0 + 3_000;
    d.step(&obs);
    assert_eq!(
        d.outcome().map(|o| matches!(o, Outcome::RolledBack { .. })),
        Some(true)
    );
}

#[test]
fn canary_pause_freezes_the_step_but_not_the_analysis() {
    // Pause at 2 s into a 5 s step for 10 s: the step ends 10 s later.
    let mut w = World::new(canary(), false)
        .command_at(2_000, Command::Pause)
        .command_at(12_000, Command::Resume);
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    let step = w.decision("canary.step_started").at_ms;
    let passed = w.decision("canary.step_passed").at_ms;
    assert_eq!(passed - step, 15_000);
    assert!(w.trace.iter().any(|(_, d)| d.paused));

    // A release going bad while paused still rolls back at the next interval check.
    let mut w = World::new(canary(), false).command_at(1_000, Command::Pause);
    w.run_until(10_000, |w| w.d.is_paused());
    w.cand.error_rate = 0.3;
    w.run(60_000);
    assert_eq!(w.rollback_reason().as_str(), "error_rate");
    assert!(!w.last.paused);
}

#[test]
fn canary_promote_skips_the_remaining_steps() {
    let mut w = World::new(canary(), false).command_at(2_000, Command::Promote);
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(
        w.decisions
            .iter()
            .filter(|d| d.kind == "canary.step_started")
            .count(),
        1
    );
    let promoted = w.decision("deploy.promoted");
    assert_eq!(promoted.figures["step"], 0);
    assert!(w.kinds().contains(&"canary.promoting"));
    // Promote also ends a pause.
    let mut w = World::new(canary(), false)
        .command_at(1_000, Command::Pause)
        .command_at(3_000, Command::Promote);
    w.run(120_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert_eq!(w.decision("deploy.promoted").figures["was_paused"], true);
}

#[test]
fn canary_abort_returns_all_traffic_to_stable() {
    let mut w = World::new(canary(), false).command_at(8_000, Command::Abort);
    w.run(120_000);
    assert_eq!(w.rollback_reason(), Reason::Aborted);
    let at = w.decision("rollback.started").at_ms;
    let (_, d) = w.trace.iter().find(|(t, _)| *t == at).unwrap();
    assert_eq!(weight(d), Some(0));
    assert_eq!((d.stable_instances, d.candidate_instances), (4, 0));
    // Commands after the end do nothing.
    assert!(!w.d.command_applies(Command::Abort));
}

#[test]
fn canary_rollback_waits_for_stable_capacity() {
    // Stable lost an instance (drift) during the canary: rolled back once it is ready again.
    let mut w = World::new(canary(), false).errors(0.5);
    w.run_until(2_000, |w| matches!(w.d.phase(), Phase::CanaryStep { .. }));
    w.stable.forced_ready = Some(3);
    w.run_until(5_000, |w| matches!(w.d.phase(), Phase::RollingBack { .. }));
    assert_eq!(weight(&w.last), Some(0));
    assert_eq!(
        (w.last.stable_instances, w.last.candidate_instances),
        (4, 0)
    );
    w.run_until(5_000, |w| w.now >= T0 + 3_000);
    w.stable.forced_ready = None;
    w.run(60_000);
    let started = w.decision("rollback.started").at_ms;
    let finished = w.decision("rollback.finished");
    assert!(finished.at_ms > started);
    assert_eq!(finished.figures["complete"], true);
    // If stable never comes back, the rollback still ends after the deadline.
    let mut w = World::new(canary(), false).errors(0.5);
    w.run_until(2_000, |w| matches!(w.d.phase(), Phase::CanaryStep { .. }));
    w.stable.forced_ready = Some(2);
    w.run(60_000);
    let started = w.decision("rollback.started").at_ms;
    let finished = w.decision("rollback.finished");
    assert_eq!(finished.at_ms - started, DEADLINE);
    assert_eq!(finished.figures["complete"], false);
}

#[test]
fn canary_first_deploy_skips_the_steps() {
    let mut w = World::new(canary(), true);
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    assert!(!w.kinds().contains(&"canary.step_started"));
    assert!(w.trace.iter().all(|(_, d)| d.analysis_window.is_none()));

    let mut w = World::new(canary(), true).candidate(Health::ExitOnStart);
    w.run(60_000);
    let Some(Outcome::Failed { reason }) = w.outcome() else {
        panic!("{:?}", w.outcome())
    };
    assert_eq!(reason.as_str(), "start_failed");
    assert_eq!(w.decision("deploy.failed").figures["kind"], "start_failed");
}

#[test]
fn canary_last_step_below_100_still_promotes() {
    let mut w = World::new(
        canary_with(
            &[(20, 1_000), (60, 1_000)],
            analysis(InsufficientPolicy::Fail),
        ),
        false,
    );
    w.run(60_000);
    assert_eq!(w.outcome(), Some(Outcome::Succeeded));
    let promoting = w.first(|d| d.phase == Phase::Promoting).unwrap();
    let (_, d) = &w.trace.iter().find(|(t, _)| t - T0 == promoting).unwrap();
    assert_eq!(d.candidate_instances, 4);
    assert_eq!(weight(d), Some(60));
}

// ---------------------------------------------------------------------------------------
// Commands, time and persistence (all strategies)
// ---------------------------------------------------------------------------------------

#[test]
fn abort_rolls_back_every_strategy_from_every_phase() {
    // Abort at many instants of each strategy's run: always RolledBack(aborted), stable full.
    for spec in [rolling(3, 1, 0), blue_green(5_000, true, true), canary()] {
        for at in (0..20_000).step_by(700) {
            let mut w = World::new(spec.clone(), false).command_at(at, Command::Abort);
            w.run(120_000);
            match w.outcome() {
                Some(Outcome::RolledBack { reason }) => assert_eq!(reason, Reason::Aborted),
                Some(Outcome::Succeeded) => assert!(
                    w.decision("deploy.succeeded").at_ms - T0 <= at,
                    "abort at {at} ignored"
                ),
                other => panic!("{other:?}"),
            }
            if w.outcome() != Some(Outcome::Succeeded) {
                assert_eq!(w.stable.ready(w.now), spec.replicas);
                assert!(w.cand.started.is_empty());
            }
        }
    }
}

#[test]
fn commands_that_do_not_apply_change_nothing() {
    let mut d = Deployment::new(canary(), T0, false).unwrap();
    let obs = |now, command| Observation {
        now_ms: now,
        stable: PoolObs {
            running: 4,
            ready: 4,
            ..PoolObs::default()
        },
        candidate: PoolObs::default(),
        stats: None,
        command,
    };
    d.step(&obs(T0, None));
    assert!(!d.command_applies(Command::Resume));
    let before = d.clone();
    assert!(d.step(&obs(T0, Some(Command::Resume))).decisions.is_empty());
    assert_eq!(d, before);
    // Pause twice: one decision.
    let first = d.step(&obs(T0 + 100, Some(Command::Pause)));
    assert_eq!(first.decisions.len(), 1);
    assert!(first.paused);
    let second = d.step(&obs(T0 + 200, Some(Command::Pause)));
    assert!(second.decisions.is_empty() && second.paused);
    assert_eq!(Command::Promote.as_str(), "promote");
}

#[test]
fn time_never_runs_backwards() {
    let mut d = Deployment::new(blue_green(1_000, false, true), T0, false).unwrap();
    let obs = |now, ready| Observation {
        now_ms: now,
        stable: PoolObs {
            running: 3,
            ready: 3,
            ..PoolObs::default()
        },
        candidate: PoolObs {
            running: 3,
            ready,
            ..PoolObs::default()
        },
        stats: None,
        command: None,
    };
    d.step(&obs(T0 + 1_000, 3));
    let Phase::KeepingWarm { until_ms } = *d.phase() else {
        panic!("{:?}", d.phase())
    };
    assert_eq!(until_ms, T0 + 2_000);
    // An observation from the past neither rewinds nor finishes early.
    let out = d.step(&obs(T0, 3));
    assert!(out.decisions.is_empty());
    assert_eq!(*d.phase(), Phase::KeepingWarm { until_ms });
    let out = d.step(&obs(T0 + 2_000, 3));
    assert_eq!(out.phase, Phase::Succeeded);
    assert_eq!(out.decisions.last().unwrap().at_ms, T0 + 2_000);
    // Finished: further steps return the same desired state and nothing else.
    let again = d.step(&obs(T0 + 9_000, 0));
    assert_eq!(again.phase, Phase::Succeeded);
    assert!(again.decisions.is_empty());
    assert_eq!(again, d.desired());
}

#[test]
fn json_round_trip_mid_deployment_continues_identically() {
    // Run each strategy halfway, persist, restore, and drive original and copy with the same
    // observations to the end: every desired state and decision is the same.
    for (spec, at) in [
        (rolling(4, 1, 1), 1_500),
        (blue_green(5_000, true, true), 2_500),
        (canary(), 7_300),
        (canary(), 1_000),
    ] {
        let mut w = World::new(spec, false).errors(0.01);
        w.run_until(60_000, |w| w.now >= T0 + at);
        let json = serde_json::to_string(&w.d).unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert!(v.is_object());
        let mut restored: Deployment = serde_json::from_str(&json).unwrap();
        let start = w.trace.len();
        w.run(120_000);
        assert!(w.d.is_finished());
        // Replay the observations the original saw after the snapshot.
        for (obs, (_, want)) in w.observations[start..].iter().zip(&w.trace[start..]) {
            assert_eq!(&restored.step(obs), want);
        }
        assert_eq!(restored, w.d);
    }
}

#[test]
fn decisions_serialise_for_the_event_log() {
    let mut w = World::new(canary(), false).errors(0.2);
    w.run(60_000);
    let d = w.decision("rollback.started");
    let v = serde_json::to_value(d).unwrap();
    assert_eq!(v["kind"], "rollback.started");
    assert_eq!(v["figures"]["kind"], "error_rate");
    assert!(v["figures"]["error_rate"].as_f64().unwrap() > 0.05);
    let out = serde_json::to_value(w.outcome().unwrap()).unwrap();
    assert_eq!(out["outcome"], "rolled_back");
    assert_eq!(out["reason"]["kind"], "error_rate");
    let phase = serde_json::to_value(w.d.phase()).unwrap();
    assert_eq!(phase["phase"], "rolled_back");
    assert!(w.rollback_reason().to_string().starts_with("error rate 20"));
}

// ---------------------------------------------------------------------------------------
// Properties: random readiness, crashes and commands
// ---------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One random tick of the world: readiness of each pool as a fraction of its instances
    /// (0..=255), a crash, and a command choice.
    type RandomTick = (u8, u8, u8, u8);

    fn fraction(f: u8, pool: &Pool) -> u32 {
        (u32::from(f) * pool.started.len() as u32).div_ceil(255)
    }

    /// Drives `w` through the random ticks, then lets the world converge (everything ready,
    /// pending commands resumed/promoted) and returns whether the deployment finished.
    fn drive(w: &mut World, ticks: &[RandomTick], commands: bool) -> bool {
        w.begin();
        for &(cand, stable, crash, command) in ticks {
            w.cand.forced_ready = Some(fraction(cand, &w.cand));
            w.stable.forced_ready = Some(fraction(stable, &w.stable));
            if crash < 8 {
                w.cand.restarts += 1;
            }
            if commands {
                let c = match command {
                    0..=4 => Some(Command::Pause),
                    5..=9 => Some(Command::Resume),
                    10..=11 => Some(Command::Promote),
                    12 => Some(Command::Abort),
                    _ => None,
                };
                if let Some(c) = c {
                    w.commands.push((w.now + TICK, c));
                }
            }
            w.tick();
            if w.d.is_finished() {
                return true;
            }
        }
        // Converge: every instance gets ready; a person resumes and promotes.
        w.cand.forced_ready = None;
        w.stable.forced_ready = None;
        w.commands.push((w.now + TICK, Command::Resume));
        w.commands.push((w.now + 2 * TICK, Command::Promote));
        let end = w.now + 20 * DEADLINE;
        while !w.d.is_finished() && w.now < end {
            w.tick();
        }
        w.d.is_finished()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Rolling never exceeds `replicas + max_surge` instances, never stops a ready
        /// instance below `replicas - max_unavailable` ready, and always finishes.
        #[test]
        fn rolling_limits_hold_and_it_terminates(
            replicas in 1u32..=6,
            surge in 0u32..=3,
            unavailable in 0u32..=3,
            stop_lag in 0u64..=4,
            first in any::<bool>(),
            abort_at in prop::option::of(0u64..40),
            ticks in prop::collection::vec(any::<RandomTick>(), 0..80),
        ) {
            prop_assume!(surge + unavailable > 0);
            // An abort at a random instant exercises the rolling rollback under the same limits.
            let mut w = World::new(rolling(replicas, surge, unavailable), first);
            if let Some(at) = abort_at {
                w = w.command_at(at * TICK, Command::Abort);
            }
            w.stable.stop_lag = stop_lag * TICK;
            w.cand.stop_lag = stop_lag * TICK;
            prop_assert!(drive(&mut w, &ticks, false), "did not finish: {:?}", w.d.phase());
            match w.outcome() {
                Some(Outcome::Succeeded) => {
                    prop_assert_eq!(w.cand.ready(w.now), replicas);
                }
                Some(Outcome::RolledBack { .. }) => prop_assert!(!first),
                Some(Outcome::Failed { .. }) => prop_assert!(first),
                None => prop_assert!(false),
            }
        }

        /// Every strategy, under random readiness, crashes and commands, keeps its invariants
        /// (checked by `World` on every tick, with idempotence and JSON round trips) and
        /// finishes once the world settles and a person resumes/promotes.
        #[test]
        fn every_strategy_terminates(
            strategy in 0usize..3,
            first in any::<bool>(),
            errors in prop_oneof![Just(0.0), Just(0.02), Just(0.3)],
            ticks in prop::collection::vec(any::<RandomTick>(), 0..80),
        ) {
            let spec = match strategy {
                0 => rolling(3, 1, 1),
                1 => blue_green(2_000, true, false),
                _ => canary_with(
                    &[(10, 1_000), (50, 1_000), (100, 500)],
                    analysis(InsufficientPolicy::WaitThenFail),
                ),
            };
            let mut w = World::new(spec, first).errors(errors);
            prop_assert!(drive(&mut w, &ticks, true), "did not finish: {:?}", w.d.phase());
            let outcome = w.outcome();
            let rolled_back = matches!(outcome, Some(Outcome::RolledBack { .. }));
            let failed = matches!(outcome, Some(Outcome::Failed { .. }));
            prop_assert!(if first { !rolled_back } else { !failed }, "{:?}", outcome);
            // A canary at 30% errors only succeeds when a person promoted it past the steps.
            let succeeded = outcome == Some(Outcome::Succeeded);
            if strategy == 2 && errors >= 0.3 && !first && succeeded {
                prop_assert!(w.kinds().contains(&"deploy.promoted"), "{:?}", w.kinds());
            }
            // Exactly one terminal decision, and it is the last one.
            let terminal = ["deploy.succeeded", "rollback.finished", "deploy.failed"];
            let n = w.kinds().iter().filter(|k| terminal.contains(k)).count();
            prop_assert_eq!(n, 1, "{:?}", w.kinds());
            prop_assert!(terminal.contains(w.kinds().last().unwrap()));
        }
    }
}
