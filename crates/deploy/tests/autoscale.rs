//! Tests of the autoscaler with injected time and a simulated fleet: no IO, no sleeps.
//!
//! `Fleet` plays the control plane and the instances: a total CPU demand (in cores) is
//! spread over the ready instances (each capped at its CPU limit), new instances become
//! ready a while after they start, and every `desired` the autoscaler returns is applied at
//! once. After every call the autoscaler's state must survive a JSON round trip unchanged.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sluice_deploy::{
    AutoscaleError, AutoscalePolicy, Autoscaler, InstanceUsage, Limit, ScaleAction, ScaleDecision,
};

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const T0: u64 = 1_700_000_000_000;
/// Each instance may use half a core; CPU utilisation is relative to that.
const LIMIT: f64 = 0.5;
const READY_AFTER: u64 = 5 * SEC;
const MIB: u64 = 1 << 20;

fn policy() -> AutoscalePolicy {
    AutoscalePolicy {
        min: 1,
        max: 10,
        cpu_target_percent: Some(70.0),
        memory_target_percent: None,
        cpu_reference_cores: LIMIT,
        memory_reference_bytes: Some(256 * MIB),
        interval_ms: 15 * SEC,
        cooldown_ms: 60 * SEC,
        stabilization_ms: 5 * MIN,
        scale_up_step: None,
        tolerance: 0.1,
    }
}

struct Fleet {
    now: u64,
    /// (id, start time) per instance, oldest first.
    instances: Vec<(String, u64)>,
    next_id: u32,
    /// Total CPU demand, in cores.
    load: f64,
    /// Memory per instance, in bytes.
    memory: u64,
    decisions: Vec<ScaleDecision>,
}

impl Fleet {
    /// `n` instances, all ready.
    fn new(n: u32) -> Fleet {
        let mut fleet = Fleet {
            now: T0,
            instances: Vec::new(),
            next_id: 0,
            load: 0.0,
            memory: 64 * MIB,
            decisions: Vec::new(),
        };
        for _ in 0..n {
            fleet.start(T0 - READY_AFTER);
        }
        fleet
    }

    fn start(&mut self, at: u64) {
        self.instances.push((format!("i{}", self.next_id), at));
        self.next_id += 1;
    }

    fn is_ready(&self, started: u64) -> bool {
        self.now >= started + READY_AFTER
    }

    fn ready_count(&self) -> usize {
        self.instances
            .iter()
            .filter(|(_, s)| self.is_ready(*s))
            .count()
    }

    fn samples(&self) -> Vec<InstanceUsage> {
        let ready = self.ready_count();
        let share = if ready == 0 {
            0.0
        } else {
            (self.load / ready as f64).min(LIMIT)
        };
        self.instances
            .iter()
            .map(|(id, started)| {
                let ready = self.is_ready(*started);
                InstanceUsage {
                    id: id.clone(),
                    // A starting instance is nearly idle: it must not count as idle capacity.
                    cpu_cores: if ready { share } else { 0.01 },
                    memory_bytes: self.memory,
                    ready,
                }
            })
            .collect()
    }

    /// Utilisation of the ready instances in percent of the limit.
    fn utilisation(&self) -> f64 {
        let ready = self.ready_count().max(1);
        (self.load / ready as f64).min(LIMIT) / LIMIT * 100.0
    }

    /// Advances time by `dt`, lets the autoscaler observe, and applies its decision.
    fn tick(&mut self, scaler: &mut Autoscaler, dt: u64) -> Option<ScaleDecision> {
        self.now += dt;
        let current = self.instances.len() as u32;
        let decision = scaler.observe(self.now, &self.samples(), current);
        if let Some(d) = &decision {
            assert_eq!(d.current, current);
            assert_eq!(d.at_ms, self.now);
            assert!(!d.reason.is_empty());
            assert_ne!(d.action, ScaleAction::Steady);
            self.apply(d.desired);
            self.decisions.push(d.clone());
        }
        let json = serde_json::to_string(scaler).unwrap();
        let back: Autoscaler = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, scaler, "the state must survive a JSON round trip");
        decision
    }

    /// Runs for `duration`, one observation per second.
    fn run(&mut self, scaler: &mut Autoscaler, duration: u64) {
        for _ in 0..duration / SEC {
            self.tick(scaler, SEC);
        }
    }

    /// Starts instances now, or stops the newest (the not-ready ones first).
    fn apply(&mut self, desired: u32) {
        while self.instances.len() < desired as usize {
            self.start(self.now);
        }
        self.instances.truncate(desired as usize);
    }

    fn actions(&self) -> Vec<ScaleAction> {
        self.decisions
            .iter()
            .map(|d| d.action)
            .filter(|a| matches!(a, ScaleAction::Out | ScaleAction::In))
            .collect()
    }
}

/// How often consecutive scale actions change direction.
fn direction_changes(actions: &[ScaleAction]) -> usize {
    actions.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn rising_load_scales_out_to_the_target() {
    let mut scaler = Autoscaler::new(policy()).unwrap();
    let mut fleet = Fleet::new(1);
    // Demand rises from 0.2 to 2 cores over two minutes, then stays.
    for s in 0..120u64 {
        fleet.load = 0.2 + 1.8 * s as f64 / 120.0;
        fleet.tick(&mut scaler, SEC);
    }
    fleet.run(&mut scaler, 10 * MIN);
    // 2 cores at 70% of half a core each: ceil(2 / 0.35) = 6 instances.
    assert_eq!(fleet.instances.len(), 6, "{:#?}", fleet.decisions);
    let u = fleet.utilisation();
    assert!((u / 70.0 - 1.0).abs() <= 0.1, "utilisation {u}");
    assert!(fleet.actions().iter().all(|a| *a == ScaleAction::Out));
    let first = &fleet.decisions[0];
    let cpu = first.cpu.unwrap();
    assert_eq!(cpu.target_percent, 70.0);
    assert!(cpu.utilization_percent > 77.0, "{first:?}");
    assert!(
        first.reason.contains("scaling out 1 -> "),
        "{}",
        first.reason
    );
    // Scale-outs are at least a cooldown apart.
    let outs: Vec<u64> = fleet
        .decisions
        .iter()
        .filter(|d| d.action == ScaleAction::Out)
        .map(|d| d.at_ms)
        .collect();
    assert!(outs.windows(2).all(|w| w[1] - w[0] >= 60 * SEC), "{outs:?}");
}

#[test]
fn sustained_low_load_scales_in_only_after_the_stabilisation_window() {
    let mut scaler = Autoscaler::new(policy()).unwrap();
    let mut fleet = Fleet::new(6);
    fleet.load = 2.0;
    fleet.run(&mut scaler, 6 * MIN);
    assert_eq!(fleet.instances.len(), 6);
    assert!(fleet.decisions.is_empty(), "{:#?}", fleet.decisions);
    let last_high = scaler.last_evaluation().unwrap().at_ms;

    // A dip shorter than the window shrinks nothing.
    fleet.load = 0.3;
    fleet.run(&mut scaler, 2 * MIN);
    fleet.load = 2.0;
    fleet.run(&mut scaler, 6 * MIN);
    assert_eq!(fleet.actions(), []);
    assert_eq!(fleet.instances.len(), 6);
    let hold = fleet
        .decisions
        .iter()
        .find(|d| d.action == ScaleAction::Hold)
        .expect("the held scale-in is reported");
    assert_eq!(hold.limited_by, Some(Limit::Stabilization));
    assert_eq!((hold.recommended, hold.stabilized), (1, Some(6)));
    assert!(hold.at_ms > last_high);
    assert_eq!(
        fleet.decisions.len(),
        1,
        "a hold is reported once: {:#?}",
        fleet.decisions
    );

    // Sustained low load: in only once the window has no higher recommendation.
    let last_high = scaler.last_evaluation().unwrap().at_ms;
    fleet.decisions.clear();
    fleet.load = 0.3;
    fleet.run(&mut scaler, 12 * MIN);
    let first_in = fleet
        .decisions
        .iter()
        .find(|d| d.action == ScaleAction::In)
        .expect("scaled in");
    assert!(first_in.at_ms >= last_high + 5 * MIN, "{first_in:?}");
    assert!(
        first_in.at_ms <= last_high + 5 * MIN + 15 * SEC,
        "{first_in:?}"
    );
    // 0.3 cores at 70% of half a core: one instance.
    assert_eq!(fleet.instances.len(), 1);
    assert!(fleet.actions().iter().all(|a| *a == ScaleAction::In));
}

#[test]
fn oscillating_load_does_not_flap() {
    let mut scaler = Autoscaler::new(policy()).unwrap();
    let mut fleet = Fleet::new(2);
    // One minute busy, one minute quiet, for half an hour.
    for minute in 0..30 {
        fleet.load = if minute % 2 == 0 { 2.0 } else { 0.4 };
        fleet.run(&mut scaler, MIN);
    }
    let actions = fleet.actions();
    assert!(!actions.is_empty());
    assert_eq!(direction_changes(&actions), 0, "{:#?}", fleet.decisions);
    assert_eq!(fleet.instances.len(), 6, "sized for the peaks");
    // When the load settles low, it scales in (once the window passed) and stays there.
    fleet.load = 0.4;
    fleet.run(&mut scaler, 15 * MIN);
    let actions = fleet.actions();
    assert_eq!(direction_changes(&actions), 1, "{actions:?}");
    assert_eq!(fleet.instances.len(), 2);
}

#[test]
fn cooldown_between_scale_outs_and_before_scale_ins() {
    let mut scaler = Autoscaler::new(AutoscalePolicy {
        scale_up_step: Some(1),
        stabilization_ms: 0,
        ..policy()
    })
    .unwrap();
    let mut fleet = Fleet::new(1);
    fleet.load = 5.0;
    fleet.run(&mut scaler, 5 * MIN);
    let outs: Vec<&ScaleDecision> = fleet
        .decisions
        .iter()
        .filter(|d| d.action == ScaleAction::Out)
        .collect();
    assert!(outs.len() >= 4);
    for w in outs.windows(2) {
        assert_eq!(w[1].at_ms - w[0].at_ms, 60 * SEC, "one step per cooldown");
        assert_eq!(w[1].desired, w[0].desired + 1);
    }
    for d in &outs {
        let limited = d.recommended > d.desired;
        assert_eq!(d.limited_by == Some(Limit::StepLimit), limited, "{d:#?}");
    }
    assert!(outs.iter().any(|d| d.limited_by == Some(Limit::StepLimit)));
    // Between two scale-outs the cooldown hold is reported, but never twice in a row.
    let holds: Vec<&ScaleDecision> = fleet
        .decisions
        .iter()
        .filter(|d| d.action == ScaleAction::Hold)
        .collect();
    assert!(!holds.is_empty());
    assert!(holds.iter().all(|d| d.limited_by == Some(Limit::Cooldown)));
    for w in fleet.decisions.windows(2) {
        assert!(
            !(w[0].action == ScaleAction::Hold && w[1].action == ScaleAction::Hold),
            "{w:#?}"
        );
    }
    assert!(
        holds[0].reason.contains("cooldown ends in"),
        "{}",
        holds[0].reason
    );

    // No scale-in within the cooldown of the last scale-out (even without stabilisation).
    let last_out = outs.last().unwrap().at_ms;
    let n = fleet.decisions.len();
    fleet.load = 0.1;
    let mut first_in = None;
    while first_in.is_none() {
        if let Some(d) = fleet.tick(&mut scaler, SEC)
            && d.action == ScaleAction::In
        {
            first_in = Some(d.at_ms);
        }
    }
    assert!(first_in.unwrap() >= last_out + 60 * SEC);
    assert!(
        fleet.decisions[n..]
            .iter()
            .all(|d| d.action != ScaleAction::Out)
    );

    // A scale-out may follow a scale-in at once (availability first).
    let in_at = first_in.unwrap();
    fleet.load = 5.0;
    let mut out_at = None;
    while out_at.is_none() {
        if let Some(d) = fleet.tick(&mut scaler, SEC)
            && d.action == ScaleAction::Out
        {
            out_at = Some(d.at_ms);
        }
    }
    assert!(out_at.unwrap() - in_at < 60 * SEC, "{:?}", out_at);
}

#[test]
fn min_and_max_clamp() {
    let mut scaler = Autoscaler::new(AutoscalePolicy {
        min: 2,
        max: 4,
        stabilization_ms: MIN,
        ..policy()
    })
    .unwrap();
    let mut fleet = Fleet::new(2);
    fleet.load = 50.0;
    fleet.run(&mut scaler, 5 * MIN);
    assert_eq!(fleet.instances.len(), 4);
    let last = fleet.decisions.last().unwrap();
    assert_eq!(
        (last.action, last.limited_by),
        (ScaleAction::Hold, Some(Limit::Max))
    );
    assert!(
        fleet
            .decisions
            .iter()
            .any(|d| d.action == ScaleAction::Out && d.limited_by == Some(Limit::Max))
    );

    fleet.load = 0.0;
    fleet.run(&mut scaler, 10 * MIN);
    assert_eq!(fleet.instances.len(), 2);
    let last = fleet.decisions.last().unwrap();
    assert_eq!(last.limited_by, Some(Limit::Min), "{last:#?}");

    // A count outside the bounds is corrected at once, samples or not.
    let d = scaler
        .observe(fleet.now + 15 * SEC, &[], 9)
        .expect("brought within bounds");
    assert_eq!(
        (d.action, d.desired, d.limited_by),
        (ScaleAction::In, 4, Some(Limit::Max))
    );
    let d = scaler.observe(fleet.now + 30 * SEC, &[], 0).unwrap();
    assert_eq!(
        (d.action, d.desired, d.limited_by),
        (ScaleAction::Out, 2, Some(Limit::Min))
    );
}

#[test]
fn no_samples_do_nothing() {
    let mut scaler = Autoscaler::new(policy()).unwrap();
    for i in 0..10 {
        assert_eq!(scaler.observe(T0 + i * 15 * SEC, &[], 3), None);
    }
    let starting = |id: &str| InstanceUsage {
        id: id.into(),
        cpu_cores: 0.0,
        memory_bytes: 0,
        ready: false,
    };
    assert_eq!(
        scaler.observe(T0 + MIN * 3, &[starting("a"), starting("b")], 3),
        None
    );
    let broken = InstanceUsage {
        id: "a".into(),
        cpu_cores: f64::NAN,
        memory_bytes: 0,
        ready: true,
    };
    assert_eq!(scaler.observe(T0 + MIN * 4, &[broken], 3), None);
    let idle = InstanceUsage {
        id: "a".into(),
        cpu_cores: -1.0,
        memory_bytes: 0,
        ready: true,
    };
    assert_eq!(scaler.observe(T0 + MIN * 5, &[idle], 3), None);
    assert_eq!(scaler.last_evaluation(), None);
}

fn usage(id: &str, cpu_cores: f64, ready: bool) -> InstanceUsage {
    InstanceUsage {
        id: id.into(),
        cpu_cores,
        memory_bytes: 64 * MIB,
        ready,
    }
}

/// HPA's rules: starting instances never count as idle, unmeasured ones count against the
/// change, and the larger of the CPU and memory recommendations wins.
#[test]
fn starting_and_unmeasured_instances_are_treated_conservatively() {
    let p = AutoscalePolicy {
        cpu_target_percent: Some(50.0),
        stabilization_ms: 0,
        cooldown_ms: 0,
        ..policy()
    };
    // Two busy ready instances and two starting ones: the starting ones count as 0% when
    // scaling out, which puts the average on target: nothing to do.
    let mut s = Autoscaler::new(p.clone()).unwrap();
    let busy = [
        usage("a", 0.5, true),
        usage("b", 0.5, true),
        usage("c", 0.0, false),
        usage("d", 0.0, false),
    ];
    assert_eq!(s.observe(T0, &busy, 4), None);
    assert_eq!(s.last_evaluation().unwrap().action, ScaleAction::Steady);
    assert_eq!(s.last_evaluation().unwrap().not_ready, 2);
    // The same two busy instances alone: double.
    let d = Autoscaler::new(p.clone())
        .unwrap()
        .observe(T0, &busy[..2], 2)
        .unwrap();
    assert_eq!((d.action, d.desired), (ScaleAction::Out, 4));

    // Scaling in: starting instances are left out, not taken as idle.
    let quiet = [
        usage("a", 0.05, true),
        usage("b", 0.05, true),
        usage("c", 0.0, false),
    ];
    let mut s = Autoscaler::new(p.clone()).unwrap();
    s.observe(T0, &quiet, 3);
    let d = s.observe(T0 + 15 * SEC, &quiet, 3).unwrap();
    assert_eq!(
        (d.action, d.recommended, d.desired),
        (ScaleAction::In, 1, 1)
    );
    assert_eq!(d.cpu.unwrap().utilization_percent.round(), 10.0);

    // Unmeasured instances count as on target when scaling in: 2 quiet of 4 -> 3, not 1.
    let mut s = Autoscaler::new(p.clone()).unwrap();
    s.observe(T0, &quiet[..2], 4);
    let d = s.observe(T0 + 15 * SEC, &quiet[..2], 4).unwrap();
    assert_eq!((d.action, d.desired, d.missing), (ScaleAction::In, 3, 2));
    // ... and as idle when scaling out: 2 busy of 4 measured is on target.
    assert_eq!(
        Autoscaler::new(p.clone())
            .unwrap()
            .observe(T0, &busy[..2], 4),
        None
    );

    // Memory asks for more than CPU: memory wins.
    let mut s = Autoscaler::new(AutoscalePolicy {
        memory_target_percent: Some(50.0),
        ..p
    })
    .unwrap();
    let heavy: Vec<InstanceUsage> = ["a", "b"]
        .iter()
        .map(|id| InstanceUsage {
            memory_bytes: 192 * MIB,
            ..usage(id, 0.25, true)
        })
        .collect();
    let d = s.observe(T0, &heavy, 2).unwrap();
    assert_eq!(d.cpu.unwrap().recommended, 2);
    assert_eq!(d.memory.unwrap().recommended, 3);
    assert_eq!(d.memory.unwrap().utilization_percent, 75.0);
    assert_eq!((d.action, d.desired), (ScaleAction::Out, 3));
    assert!(d.reason.contains("memory 75% (target 50%)"), "{}", d.reason);
}

#[test]
fn evaluates_once_per_interval_and_time_never_moves_back() {
    let mut s = Autoscaler::new(policy()).unwrap();
    let busy = [usage("a", 0.5, true)];
    assert!(s.observe(T0, &busy, 1).is_some());
    // Before the interval: nothing, and the state is unchanged.
    let before = s.clone();
    assert_eq!(s.observe(T0 + 14 * SEC, &busy, 2), None);
    assert_eq!(
        s.observe(T0 - MIN, &busy, 2),
        None,
        "an earlier time is the latest seen"
    );
    let mut expected = before.clone();
    let _ = expected.observe(T0 + 14 * SEC, &busy, 2);
    assert_eq!(s, expected);
}

#[test]
fn a_restored_autoscaler_continues_identically() {
    let mut original = Autoscaler::new(policy()).unwrap();
    let mut fleet = Fleet::new(3);
    fleet.load = 2.5;
    fleet.run(&mut original, 3 * MIN);
    let json = serde_json::to_string(&original).unwrap();
    let mut restored: Autoscaler = serde_json::from_str(&json).unwrap();
    fleet.load = 0.2;
    let samples = fleet.samples();
    for i in 1..40 {
        let now = fleet.now + i * 15 * SEC;
        let n = fleet.instances.len() as u32;
        assert_eq!(
            original.observe(now, &samples, n),
            restored.observe(now, &samples, n)
        );
    }
}

#[test]
fn invalid_policies_are_refused() {
    let bad = |p: AutoscalePolicy| Autoscaler::new(p).unwrap_err();
    assert!(matches!(
        bad(AutoscalePolicy { min: 0, ..policy() }),
        AutoscaleError::Bounds { .. }
    ));
    assert!(matches!(
        bad(AutoscalePolicy {
            min: 5,
            max: 4,
            ..policy()
        }),
        AutoscaleError::Bounds { .. }
    ));
    assert_eq!(
        bad(AutoscalePolicy {
            cpu_target_percent: None,
            ..policy()
        }),
        AutoscaleError::NoTarget
    );
    assert!(matches!(
        bad(AutoscalePolicy {
            cpu_target_percent: Some(f64::NAN),
            ..policy()
        }),
        AutoscaleError::OutOfRange {
            field: "cpu_target_percent",
            ..
        }
    ));
    assert_eq!(
        bad(AutoscalePolicy {
            memory_target_percent: Some(80.0),
            memory_reference_bytes: None,
            ..policy()
        }),
        AutoscaleError::NoMemoryReference
    );
    assert!(matches!(
        bad(AutoscalePolicy {
            cpu_reference_cores: 0.0,
            ..policy()
        }),
        AutoscaleError::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(AutoscalePolicy {
            tolerance: 1.0,
            ..policy()
        }),
        AutoscaleError::OutOfRange { .. }
    ));
    assert_eq!(
        bad(AutoscalePolicy {
            interval_ms: 0,
            ..policy()
        }),
        AutoscaleError::ZeroInterval
    );
    assert_eq!(
        bad(AutoscalePolicy {
            scale_up_step: Some(0),
            ..policy()
        }),
        AutoscaleError::ZeroStep
    );
    let mut s = Autoscaler::new(policy()).unwrap();
    assert!(
        s.set_policy(AutoscalePolicy { max: 0, ..policy() })
            .is_err()
    );
    assert_eq!(s.policy(), &policy());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any load, any policy: the count stays within min..=max, two scale-outs are at least a
    /// cooldown apart, and a scale-in comes at least a cooldown after any scale action; so
    /// within one cooldown the count changes at most once, unless a scale-out follows a
    /// scale-in (availability first).
    #[test]
    fn bounds_and_cooldowns_always_hold(
        min in 1u32..4,
        extra in 0u32..8,
        target in 20.0f64..95.0,
        cooldown_s in 0u64..120,
        stabilization_s in 0u64..400,
        step in prop::option::of(1u32..4),
        loads in prop::collection::vec((0.0f64..8.0, 1u64..90), 1..25),
        start in 0u32..12,
    ) {
        let p = AutoscalePolicy {
            min,
            max: min + extra,
            cpu_target_percent: Some(target),
            cooldown_ms: cooldown_s * SEC,
            stabilization_ms: stabilization_s * SEC,
            scale_up_step: step,
            ..policy()
        };
        let mut scaler = Autoscaler::new(p.clone()).unwrap();
        let mut fleet = Fleet::new(start.clamp(min, min + extra));
        for (load, seconds) in loads {
            fleet.load = load;
            fleet.run(&mut scaler, seconds * SEC);
            prop_assert!((min..=min + extra).contains(&(fleet.instances.len() as u32)));
        }
        let mut last_out: Option<u64> = None;
        let mut last_any: Option<u64> = None;
        for d in &fleet.decisions {
            prop_assert!((p.min..=p.max).contains(&d.desired), "{:?}", d);
            match d.action {
                ScaleAction::Out => {
                    if let Some(t) = last_out {
                        prop_assert!(d.at_ms - t >= p.cooldown_ms, "{:?}", d);
                    }
                    if let Some(s) = p.scale_up_step {
                        prop_assert!(d.desired - d.current <= s);
                    }
                    last_out = Some(d.at_ms);
                    last_any = Some(d.at_ms);
                }
                ScaleAction::In => {
                    if let Some(t) = last_any {
                        prop_assert!(d.at_ms - t >= p.cooldown_ms, "{:?}", d);
                    }
                    last_any = Some(d.at_ms);
                }
                ScaleAction::Hold => prop_assert_eq!(d.desired, d.current),
                ScaleAction::Steady => prop_assert!(false, "steady is never returned"),
            }
        }
    }
}
