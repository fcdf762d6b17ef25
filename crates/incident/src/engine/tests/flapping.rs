//! Flapping with injected time: detection at the threshold, one notification per incident
//! while the alert flaps, held resolves, muted alerts of a flapping key, the end of flapping
//! a window after the last change, resolving by hand, and restore after a restart.

use super::*;

const MIN: i64 = 60_000;

fn resolve(key: &str, alertname: &str) -> AlertSignal {
    sig(key, alertname, Action::Resolve, Severity::Info)
}

/// An environment whose alerts flap at `changes` changes within `window_ms`.
fn flappy(window_ms: i64, changes: usize) -> TestEnv {
    let mut env = TestEnv::new();
    env.flap = Some(flap_config(window_ms, changes));
    env
}

fn kinds(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .map(|e| match e {
            Effect::AlertOpened { .. } => "alert_opened",
            Effect::AlertRepeated { .. } => "alert_repeated",
            Effect::AlertResolved { .. } => "alert_resolved",
            Effect::AlertUnsilenced { .. } => "alert_unmuted",
            Effect::IncidentOpened { .. } => "incident_opened",
            Effect::AlertJoined { .. } => "alert_joined",
            Effect::SeverityRaised { .. } => "severity_raised",
            Effect::IncidentAcknowledged { .. } => "incident_acknowledged",
            Effect::IncidentResolved { .. } => "incident_resolved",
            Effect::AlertFlapping { .. } => "alert_flapping",
            Effect::AlertResolveHeld { .. } => "resolve_held",
            Effect::AlertStable { .. } => "alert_stable",
            Effect::Notify { .. } => "notify",
        })
        .collect()
}

#[test]
fn the_config_keeps_at_least_two_changes_and_a_positive_window() {
    let c = flap_config(5 * MIN, 3);
    assert_eq!((c.window_ms(), c.enter(), c.leave()), (5 * MIN, 3, 0));
    assert_eq!(flap_config(MIN, 1).enter(), 2);
    assert_eq!(flap_config(MIN, usize::MAX).enter(), MAX_FLAP_CHANGES);
    assert_eq!(flap_config(0, 4).window_ms(), DEFAULT_FLAP_WINDOW_MS);
    let d = TestEnv::new().flapping("shop");
    assert_eq!((d.window_ms(), d.enter()), (10 * MIN, 4));
}

#[test]
fn an_alert_flaps_at_the_fourth_change_then_notifies_nobody_until_stable() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    // Two changes: an ordinary alert, incident, notification and resolve.
    e.apply(trigger("a", "Flappy"), 0, &env);
    assert_eq!(
        notifies(&e.tick(1_000, &env)),
        vec![(1, NotifyKind::Triggered)]
    );
    let r = e.apply(resolve("a", "Flappy"), 2_000, &env);
    assert_eq!(notifies(&r), vec![(1, NotifyKind::Resolved)]);
    // The third: a trigger after a resolve is a new alert and incident, as in PagerDuty.
    let t = e.apply(trigger("a", "Flappy"), 3_000, &env);
    assert_eq!(opened_incidents(&t), vec![2]);
    assert_eq!(
        notifies(&e.tick(4_000, &env)),
        vec![(2, NotifyKind::Triggered)]
    );
    // The fourth change within ten minutes: flapping; the resolve is held.
    let r = e.apply(resolve("a", "Flappy"), 5_000, &env);
    assert_eq!(
        r,
        vec![
            Effect::AlertFlapping {
                id: 2,
                incident: Some(2),
                changes: 4,
                window_ms: 10 * MIN,
                at_ms: 5_000
            },
            Effect::AlertResolveHeld {
                id: 2,
                at_ms: 5_000
            },
        ]
    );
    assert!(e.is_flapping("am:shop", "a"));
    assert_eq!(e.incident(2).map(|i| i.open_alerts), Some(1));
    // Cycles while it flaps: the same alert repeats and holds, nothing else happens.
    let mut quiet = Vec::new();
    for at in [6_000, 7_000, 8_000, 9_000] {
        let signal = if at % 2_000 == 0 {
            trigger("a", "Flappy")
        } else {
            resolve("a", "Flappy")
        };
        quiet.extend(e.apply(signal, at, &env));
        quiet.extend(e.tick(at, &env));
    }
    assert_eq!(
        kinds(&quiet),
        vec![
            "alert_repeated",
            "resolve_held",
            "alert_repeated",
            "resolve_held"
        ]
    );
    // A repeated resolve (Alertmanager resends them) is no news.
    assert!(e.apply(resolve("a", "Flappy"), 9_500, &env).is_empty());
    assert_eq!((e.open_alerts(), e.open_incidents()), (1, 1));
    // Stable for ten minutes after its last change (the resolve at 9 s): the held resolve
    // applies as of then, the incident resolves now and tells whoever was notified.
    assert!(e.tick(9_000 + 10 * MIN - 1, &env).is_empty());
    assert_eq!(
        e.tick(9_000 + 10 * MIN, &env),
        vec![
            Effect::AlertStable {
                id: 2,
                incident: Some(2),
                window_ms: 10 * MIN,
                at_ms: 609_000
            },
            Effect::AlertResolved {
                id: 2,
                at_ms: 9_000
            },
            Effect::IncidentResolved {
                incident: 2,
                by: None,
                at_ms: 609_000
            },
            Effect::Notify {
                incident: 2,
                kind: NotifyKind::Resolved,
                at_ms: 609_000
            },
        ]
    );
    assert!(!e.is_flapping("am:shop", "a"));
    // Its detector is gone, and the next trigger is an ordinary new alert.
    assert!(e.flaps.is_empty());
    let t = e.apply(trigger("a", "Flappy"), 700_000, &env);
    assert_eq!(
        kinds(&t),
        vec!["alert_opened", "incident_opened", "alert_joined"]
    );
}

#[test]
fn with_two_changes_the_incident_is_notified_exactly_once_while_it_flaps() {
    let env = flappy(MIN, 2);
    let mut e = Engine::new(1, 1);
    let mut all = e.apply(trigger("a", "Flappy"), 0, &env);
    for at in (1_000..=50_000).step_by(1_000) {
        let signal = if at % 2_000 == 0 {
            trigger("a", "Flappy")
        } else {
            resolve("a", "Flappy")
        };
        all.extend(e.apply(signal, at, &env));
        all.extend(e.tick(at, &env));
    }
    assert_eq!(notifies(&all), vec![(1, NotifyKind::Triggered)]);
    assert_eq!(opened_incidents(&all), vec![1]);
    let flapping = all
        .iter()
        .filter(|x| matches!(x, Effect::AlertFlapping { .. }))
        .count();
    assert_eq!(flapping, 1);
    // Its last word was a trigger (at 50 s): when stable it stays open, firing.
    let stable = e.tick(50_000 + MIN, &env);
    assert_eq!(kinds(&stable), vec!["alert_stable"]);
    assert_eq!(e.incident(1).map(|i| i.open_alerts), Some(1));
    // From now on its changes count afresh.
    let r = e.apply(resolve("a", "Flappy"), 200_000, &env);
    assert_eq!(
        kinds(&r),
        vec!["alert_resolved", "incident_resolved", "notify"]
    );
}

#[test]
fn a_trigger_that_starts_the_flapping_opens_a_muted_alert_that_joins_when_stable() {
    let env = flappy(MIN, 3);
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "Flappy"), 0, &env);
    e.tick(1_000, &env);
    // The second change is an ordinary resolve.
    let r = e.apply(resolve("a", "Flappy"), 2_000, &env);
    assert_eq!(
        kinds(&r),
        vec!["alert_resolved", "incident_resolved", "notify"]
    );
    // The third, a trigger: a new alert, as in PagerDuty, but muted, with no incident.
    let t = e.apply(trigger("a", "Flappy"), 3_000, &env);
    assert_eq!(
        t[1],
        Effect::AlertFlapping {
            id: 2,
            incident: None,
            changes: 3,
            window_ms: MIN,
            at_ms: 3_000
        }
    );
    assert!(matches!(
        t[0],
        Effect::AlertOpened {
            id: 2,
            incident: None,
            silenced_by: None,
            ..
        }
    ));
    assert_eq!(t.len(), 2);
    // No silence mutes it, but it flaps: a silence recheck leaves it alone, and so does an
    // acknowledge from its source.
    assert!(e.recheck_silenced(4_000, &env).is_empty());
    let ack = sig("a", "Flappy", Action::Acknowledge, Severity::Info);
    assert!(e.apply(ack, 4_500, &env).is_empty());
    assert!(e.tick(3_000 + MIN - 1, &env).is_empty());
    let stable = e.tick(3_000 + MIN, &env);
    assert_eq!(
        kinds(&stable),
        vec![
            "alert_stable",
            "incident_opened",
            "alert_joined",
            "alert_unmuted"
        ]
    );
    assert!(stable.contains(&Effect::AlertUnsilenced {
        id: 2,
        incident: 2,
        at_ms: 63_000
    }));
    // A firing alert that settled is a real problem: its incident is notified.
    assert_eq!(
        notifies(&e.tick(64_000, &env)),
        vec![(2, NotifyKind::Triggered)]
    );
}

#[test]
fn a_silenced_flapping_alert_waits_for_both_its_silence_and_its_flapping_to_end() {
    let mut env = flappy(MIN, 3);
    env.silences.push((5, "Flappy".into(), 2_500, 100_000));
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "Flappy"), 0, &env);
    e.apply(resolve("a", "Flappy"), 2_000, &env);
    let t = e.apply(trigger("a", "Flappy"), 3_000, &env);
    assert!(matches!(
        t[0],
        Effect::AlertOpened {
            silenced_by: Some(5),
            ..
        }
    ));
    // Stable at 63 s, still silenced: stays muted; the silence ends at 100 s.
    assert_eq!(kinds(&e.tick(63_000, &env)), vec!["alert_stable"]);
    assert!(e.recheck_silenced(99_999, &env).is_empty());
    assert_eq!(
        opened_incidents(&e.recheck_silenced(100_000, &env)),
        vec![2]
    );
}

#[test]
fn resolving_a_flapping_incident_by_hand_ends_it_and_new_triggers_stay_muted() {
    let env = flappy(MIN, 2);
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "Flappy"), 0, &env);
    e.tick(1_000, &env);
    let held = e.apply(resolve("a", "Flappy"), 2_000, &env);
    assert_eq!(kinds(&held), vec!["alert_flapping", "resolve_held"]);
    assert_eq!(
        e.resolve(1, "alice", 3_000),
        vec![
            Effect::AlertResolved {
                id: 1,
                at_ms: 3_000
            },
            Effect::IncidentResolved {
                incident: 1,
                by: Some("alice".into()),
                at_ms: 3_000
            },
            Effect::Notify {
                incident: 1,
                kind: NotifyKind::Resolved,
                at_ms: 3_000
            },
        ]
    );
    // The key still flaps: a trigger opens a muted alert and no incident.
    let t = e.apply(trigger("a", "Flappy"), 4_000, &env);
    assert_eq!(kinds(&t), vec!["alert_opened", "alert_flapping"]);
    assert_eq!(e.open_incidents(), 0);
    // A minute after its last change it joins a new incident.
    assert_eq!(opened_incidents(&e.tick(4_000 + MIN, &env)), vec![2]);
}

#[test]
fn a_restored_flapping_alert_keeps_its_held_resolve_and_stops_a_window_after_its_last_change() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.restore_incident(
        RestoredIncident {
            id: 4,
            project: "shop".into(),
            group_key: "shop/web/alertname=\"Flappy\"".into(),
            severity: Severity::Warning,
            opened_ms: 0,
            last_alert_ms: 0,
            notified_ms: Some(1_000),
            acked: false,
        },
        &env.grouping,
    );
    let restored = |id, key: &str, name: &str, incident, held| RestoredAlert {
        id,
        incident,
        severity: Severity::Warning,
        signal: trigger(key, name),
        silenced: false,
        opened_ms: 0,
        flapping: true,
        last_change_ms: 5_000,
        held_resolve_ms: held,
    };
    // One held open by its flapping, one muted (opened while its key flapped).
    e.restore_alert(restored(9, "a", "Flappy", Some(4), Some(5_000)), &env);
    e.restore_alert(restored(10, "m", "Other", None, None), &env);
    assert!(e.is_flapping("am:shop", "a") && e.is_flapping("am:shop", "m"));
    // Still flapping: a repeated resolve is no news, a trigger repeats the same alert.
    assert!(e.apply(resolve("a", "Flappy"), 5_500, &env).is_empty());
    assert!(e.recheck_silenced(6_000, &env).is_empty());
    assert_eq!(e.next_deadline(), Some(5_000 + 10 * MIN));
    assert!(e.tick(5_000 + 10 * MIN - 1, &env).is_empty());
    let stable = e.tick(5_000 + 10 * MIN, &env);
    assert_eq!(
        kinds(&stable),
        vec![
            "alert_stable",
            "alert_resolved",
            "incident_resolved",
            "notify",
            "alert_stable",
            "incident_opened",
            "alert_joined",
            "alert_unmuted"
        ]
    );
    assert!(stable.contains(&Effect::AlertResolved {
        id: 9,
        at_ms: 5_000
    }));
    assert_eq!(opened_incidents(&stable), vec![5]);
}

#[test]
fn detectors_are_dropped_once_their_changes_leave_the_window() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    for i in 0..50 {
        let key = format!("k{i}");
        e.apply(trigger(&key, "Blip"), i, &env);
        e.apply(resolve(&key, "Blip"), i + 100, &env);
    }
    assert_eq!(e.flaps.len(), 50);
    // Alerts that only fire keep no detector.
    e.apply(trigger("steady", "Blip"), 200, &env);
    assert_eq!(e.flaps.len(), 50);
    // Only the steady alert's incident has something to say.
    let due = e.tick(10 * MIN + 149, &env);
    assert_eq!(notifies(&due).len(), 1);
    assert!(e.flaps.is_empty());
    assert!(e.flap_checks.is_empty());
}
