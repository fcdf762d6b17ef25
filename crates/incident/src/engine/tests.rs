//! Behaviour of the engine: dedup, grouping, group wait, severity, resolve, silences,
//! flapping, restore, and invariants under random signal sequences.

use super::*;

struct TestEnv {
    grouping: Grouping,
    /// (silence id, alertname muted, from, until)
    silences: Vec<(i64, String, i64, i64)>,
    /// Flap detection settings; None: the defaults.
    flap: Option<FlapConfig>,
}

impl TestEnv {
    fn new() -> TestEnv {
        TestEnv {
            grouping: Grouping {
                group_by: vec!["alertname".into()],
                group_wait_ms: 1_000,
                group_interval_ms: 10_000,
                group_window_ms: 60_000,
            },
            silences: Vec::new(),
            flap: None,
        }
    }
}

impl Env for TestEnv {
    fn grouping(&self, _project: &str) -> &Grouping {
        &self.grouping
    }
    fn silenced(&self, signal: &AlertSignal, now_ms: i64) -> Option<i64> {
        self.silences
            .iter()
            .find(|(_, name, from, until)| {
                signal.labels.get("alertname") == Some(name) && *from <= now_ms && now_ms < *until
            })
            .map(|s| s.0)
    }
    fn flapping(&self, _project: &str) -> FlapConfig {
        self.flap
            .unwrap_or_else(|| flap_config(DEFAULT_FLAP_WINDOW_MS, DEFAULT_FLAP_CHANGES))
    }
}

fn sig(key: &str, alertname: &str, action: Action, severity: Severity) -> AlertSignal {
    AlertSignal {
        scope: "am:shop".into(),
        key: key.into(),
        action,
        project: "shop".into(),
        service: "web".into(),
        source: "alertmanager".into(),
        summary: format!("{alertname} on {key}"),
        severity,
        labels: Labels::from([("alertname".to_owned(), alertname.to_owned())]),
        details: serde_json::Value::Null,
        starts_ms: 0,
        rule: None,
    }
}

fn trigger(key: &str, alertname: &str) -> AlertSignal {
    sig(key, alertname, Action::Trigger, Severity::Warning)
}

fn notifies(effects: &[Effect]) -> Vec<(i64, NotifyKind)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify { incident, kind, .. } => Some((*incident, *kind)),
            _ => None,
        })
        .collect()
}

fn opened_incidents(effects: &[Effect]) -> Vec<i64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::IncidentOpened { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_repeated_trigger_updates_the_open_alert() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    let first = e.apply(trigger("a", "HighLatency"), 0, &env);
    assert!(matches!(
        first[0],
        Effect::AlertOpened {
            id: 1,
            incident: Some(1),
            ..
        }
    ));
    let again = e.apply(trigger("a", "HighLatency"), 10, &env);
    assert_eq!(
        again,
        vec![Effect::AlertRepeated {
            id: 1,
            severity: Severity::Warning,
            summary: "HighLatency on a".into(),
            at_ms: 10
        }]
    );
    assert_eq!(e.open_alerts(), 1);
    assert_eq!(e.open_incidents(), 1);
}

#[test]
fn alerts_of_one_group_share_an_incident_and_other_groups_get_their_own() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    let a = e.apply(trigger("a", "HighLatency"), 0, &env);
    let b = e.apply(trigger("b", "HighLatency"), 5, &env);
    let c = e.apply(trigger("c", "DiskFull"), 6, &env);
    assert_eq!(opened_incidents(&a), vec![1]);
    assert!(opened_incidents(&b).is_empty());
    assert!(b.contains(&Effect::AlertJoined {
        incident: 1,
        alert: 2,
        at_ms: 5
    }));
    assert_eq!(opened_incidents(&c), vec![2]);
    assert_eq!(e.incident(1).map(|i| i.open_alerts), Some(2));
}

#[test]
fn the_first_notification_waits_for_the_group_and_later_alerts_do_not_page() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    assert_eq!(e.next_deadline(), Some(1_000));
    assert!(e.tick(999, &env).is_empty());
    e.apply(trigger("b", "HighLatency"), 500, &env);
    assert_eq!(
        notifies(&e.tick(1_000, &env)),
        vec![(1, NotifyKind::Triggered)]
    );
    // A joining alert of the same severity pages nobody; channels get one update after the
    // group interval.
    let joined = e.apply(trigger("c", "HighLatency"), 2_000, &env);
    assert!(notifies(&joined).is_empty());
    assert!(e.tick(10_999, &env).is_empty());
    assert_eq!(
        notifies(&e.tick(11_000, &env)),
        vec![(1, NotifyKind::Updated)]
    );
    assert!(e.tick(100_000, &env).is_empty());
}

#[test]
fn a_joining_alert_of_higher_severity_pages_again() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.tick(1_000, &env);
    let worse = e.apply(
        sig("b", "HighLatency", Action::Trigger, Severity::Critical),
        2_000,
        &env,
    );
    assert!(worse.contains(&Effect::SeverityRaised {
        incident: 1,
        from: Severity::Warning,
        to: Severity::Critical,
        at_ms: 2_000
    }));
    assert_eq!(notifies(&worse), vec![(1, NotifyKind::SeverityRaised)]);
    // A raise before the first notification rides along with it.
    e.apply(trigger("x", "DiskFull"), 3_000, &env);
    let raised = e.apply(
        sig("y", "DiskFull", Action::Trigger, Severity::Error),
        3_100,
        &env,
    );
    assert!(notifies(&raised).is_empty());
    assert_eq!(e.incident(2).map(|i| i.severity), Some(Severity::Error));
}

#[test]
fn the_incident_resolves_with_its_last_alert_and_tells_whoever_was_notified() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.apply(trigger("b", "HighLatency"), 1, &env);
    e.tick(1_000, &env);
    let one = e.apply(
        sig("a", "HighLatency", Action::Resolve, Severity::Info),
        2_000,
        &env,
    );
    assert_eq!(
        one,
        vec![Effect::AlertResolved {
            id: 1,
            at_ms: 2_000
        }]
    );
    let last = e.apply(
        sig("b", "HighLatency", Action::Resolve, Severity::Info),
        3_000,
        &env,
    );
    assert_eq!(
        last,
        vec![
            Effect::AlertResolved {
                id: 2,
                at_ms: 3_000
            },
            Effect::IncidentResolved {
                incident: 1,
                by: None,
                at_ms: 3_000
            },
            Effect::Notify {
                incident: 1,
                kind: NotifyKind::Resolved,
                at_ms: 3_000
            },
        ]
    );
    assert_eq!(e.open_incidents(), 0);
}

#[test]
fn an_incident_over_before_its_group_wait_notifies_nobody() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "Blip"), 0, &env);
    let resolved = e.apply(sig("a", "Blip", Action::Resolve, Severity::Info), 200, &env);
    assert!(notifies(&resolved).is_empty());
    assert!(e.tick(5_000, &env).is_empty());
}

#[test]
fn a_trigger_after_resolve_opens_a_new_alert_and_unknown_keys_are_dropped() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.apply(
        sig("a", "HighLatency", Action::Resolve, Severity::Info),
        10,
        &env,
    );
    let again = e.apply(trigger("a", "HighLatency"), 20, &env);
    assert!(matches!(
        again[0],
        Effect::AlertOpened {
            id: 2,
            incident: Some(2),
            ..
        }
    ));
    assert!(
        e.apply(sig("zzz", "X", Action::Resolve, Severity::Info), 30, &env)
            .is_empty()
    );
    assert!(
        e.apply(
            sig("zzz", "X", Action::Acknowledge, Severity::Info),
            30,
            &env
        )
        .is_empty()
    );
}

#[test]
fn an_acknowledge_from_the_source_acknowledges_the_incident_once() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.tick(1_000, &env);
    let ack = e.apply(
        sig("a", "HighLatency", Action::Acknowledge, Severity::Info),
        1_500,
        &env,
    );
    assert!(matches!(
        &ack[0],
        Effect::IncidentAcknowledged { incident: 1, .. }
    ));
    assert_eq!(notifies(&ack), vec![(1, NotifyKind::Acknowledged)]);
    assert!(e.acknowledge(1, "alice", 1_600).is_empty());
}

#[test]
fn a_silenced_alert_opens_no_incident_until_its_silence_ends() {
    let mut env = TestEnv::new();
    env.silences.push((7, "Noisy".into(), 0, 5_000));
    let mut e = Engine::new(1, 1);
    let muted = e.apply(trigger("n", "Noisy"), 100, &env);
    assert!(matches!(
        muted[0],
        Effect::AlertOpened {
            incident: None,
            silenced_by: Some(7),
            ..
        }
    ));
    assert_eq!(muted.len(), 1);
    assert!(e.recheck_silenced(4_999, &env).is_empty());
    let freed = e.recheck_silenced(5_000, &env);
    assert_eq!(opened_incidents(&freed), vec![1]);
    assert!(freed.contains(&Effect::AlertUnsilenced {
        id: 1,
        incident: 1,
        at_ms: 5_000
    }));
    assert_eq!(
        notifies(&e.tick(6_000, &env)),
        vec![(1, NotifyKind::Triggered)]
    );
}

#[test]
fn a_resolve_reaches_whoever_was_paged_even_when_a_silence_started_since() {
    let mut env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.tick(1_000, &env);
    env.silences.push((9, "HighLatency".into(), 2_000, 100_000));
    let resolved = e.apply(
        sig("a", "HighLatency", Action::Resolve, Severity::Info),
        3_000,
        &env,
    );
    assert_eq!(notifies(&resolved), vec![(1, NotifyKind::Resolved)]);
}

#[test]
fn an_alert_after_the_group_window_opens_a_new_incident() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    let late = e.apply(trigger("b", "HighLatency"), 60_001, &env);
    assert_eq!(opened_incidents(&late), vec![2]);
    let within = e.apply(trigger("c", "HighLatency"), 60_002, &env);
    assert!(within.contains(&Effect::AlertJoined {
        incident: 2,
        alert: 3,
        at_ms: 60_002
    }));
}

#[test]
fn resolving_by_hand_resolves_every_open_alert() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.apply(trigger("a", "HighLatency"), 0, &env);
    e.apply(trigger("b", "HighLatency"), 0, &env);
    e.tick(1_000, &env);
    let out = e.resolve(1, "alice", 2_000);
    assert_eq!(
        out,
        vec![
            Effect::AlertResolved {
                id: 1,
                at_ms: 2_000
            },
            Effect::AlertResolved {
                id: 2,
                at_ms: 2_000
            },
            Effect::IncidentResolved {
                incident: 1,
                by: Some("alice".into()),
                at_ms: 2_000
            },
            Effect::Notify {
                incident: 1,
                kind: NotifyKind::Resolved,
                at_ms: 2_000
            },
        ]
    );
    assert_eq!(e.open_alerts(), 0);
    assert!(e.resolve(1, "alice", 2_001).is_empty());
}

mod flapping;

#[test]
fn a_restored_engine_deduplicates_and_keeps_its_pending_notification() {
    let env = TestEnv::new();
    let mut e = Engine::new(1, 1);
    e.restore_incident(
        RestoredIncident {
            id: 4,
            project: "shop".into(),
            group_key: "shop/web/alertname=\"HighLatency\"".into(),
            severity: Severity::Warning,
            opened_ms: 0,
            last_alert_ms: 0,
            notified_ms: None,
            acked: false,
        },
        &env.grouping,
    );
    e.restore_alert(
        RestoredAlert {
            id: 9,
            incident: Some(4),
            severity: Severity::Warning,
            signal: trigger("a", "HighLatency"),
            silenced: false,
            opened_ms: 0,
            flapping: false,
            last_change_ms: 0,
            held_resolve_ms: None,
        },
        &env,
    );
    let again = e.apply(trigger("a", "HighLatency"), 10, &env);
    assert!(matches!(again[0], Effect::AlertRepeated { id: 9, .. }));
    let joined = e.apply(trigger("b", "HighLatency"), 20, &env);
    assert!(joined.contains(&Effect::AlertJoined {
        incident: 4,
        alert: 10,
        at_ms: 20
    }));
    assert_eq!(
        notifies(&e.tick(1_000, &env)),
        vec![(4, NotifyKind::Triggered)]
    );
    let fresh = e.apply(trigger("z", "Other"), 30, &env);
    assert_eq!(opened_incidents(&fresh), vec![5]);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn action() -> impl Strategy<Value = (u8, u8, u8, u8, u16)> {
        // (key, alertname, action, severity, time step)
        (0u8..12, 0u8..3, 0u8..6, 0u8..4, 0u16..3_000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn invariants_hold_for_any_signal_sequence(steps in proptest::collection::vec(action(), 1..200)) {
            let mut env = TestEnv::new();
            env.silences.push((1, "n2".into(), 20_000, 40_000));
            let mut e = Engine::new(1, 1);
            let mut now = 0i64;
            let mut notified: HashSet<i64> = HashSet::new();
            let mut resolved: HashSet<i64> = HashSet::new();
            for (key, name, act, sev, dt) in steps {
                now += i64::from(dt);
                let severity = [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical][usize::from(sev)];
                let mut effects = match act {
                    0..=2 => e.apply(sig(&format!("k{key}"), &format!("n{name}"), Action::Trigger, severity), now, &env),
                    3 => e.apply(sig(&format!("k{key}"), &format!("n{name}"), Action::Resolve, severity), now, &env),
                    4 => e.apply(sig(&format!("k{key}"), &format!("n{name}"), Action::Acknowledge, severity), now, &env),
                    _ => e.resolve(i64::from(key), "someone", now),
                };
                effects.extend(e.tick(now, &env));
                effects.extend(e.recheck_silenced(now, &env));
                for eff in &effects {
                    match eff {
                        Effect::Notify { incident, kind, .. } => {
                            prop_assert!(*kind == NotifyKind::Resolved || !resolved.contains(incident), "notified after resolve");
                            if *kind == NotifyKind::Triggered {
                                prop_assert!(notified.insert(*incident), "triggered twice");
                            } else {
                                prop_assert!(notified.contains(incident), "{kind:?} before triggered");
                            }
                        }
                        Effect::IncidentResolved { incident, .. } => {
                            prop_assert!(resolved.insert(*incident));
                        }
                        _ => {}
                    }
                }
                // Resolves reach exactly the notified incidents.
                for eff in &effects {
                    if let Effect::IncidentResolved { incident, .. } = eff {
                        let told = effects.iter().any(|x| matches!(x, Effect::Notify { incident: i, kind: NotifyKind::Resolved, .. } if i == incident));
                        prop_assert_eq!(told, notified.contains(incident));
                    }
                }
                let in_incidents: usize = (1..e.next_incident).filter_map(|i| e.incident(i)).map(|i| i.open_alerts).sum();
                let muted = e.alerts.values().filter(|a| a.muted.is_some()).count();
                prop_assert_eq!(in_incidents + muted, e.open_alerts());
                prop_assert_eq!(e.keys_by_id.len(), e.open_alerts());
                // A resolve is held only while its key flaps, and no alert of a flapping key
                // joins an incident.
                for (key, a) in &e.alerts {
                    prop_assert!(a.held_resolve_ms.is_none() || e.is_flapping(&key.0, &key.1));
                }
                for eff in &effects {
                    if let Effect::AlertJoined { alert, .. } = eff
                        && let Some(key) = e.keys_by_id.get(alert)
                    {
                        prop_assert!(!e.is_flapping(&key.0, &key.1), "a flapping alert joined");
                    }
                }
            }
        }
    }
}

#[test]
fn nul_characters_in_a_signal_become_replacement_characters() {
    let mut s = trigger("a\0b", "nul\0name");
    s.labels.insert("k\0".into(), "v\0".into());
    s.rule = Some("r\0".into());
    assert!(s.scrub_nul());
    assert_eq!(s.key, "a\u{FFFD}b");
    assert_eq!(s.summary, "nul\u{FFFD}name on a\u{FFFD}b");
    assert_eq!(s.labels["alertname"], "nul\u{FFFD}name");
    assert_eq!(s.labels["k\u{FFFD}"], "v\u{FFFD}");
    assert_eq!(s.rule.as_deref(), Some("r\u{FFFD}"));
    // Nothing else changes, and a clean signal is left alone.
    let clean = trigger("a", "b");
    let mut same = clean.clone();
    assert!(!same.scrub_nul());
    assert_eq!(same, clean);
}
