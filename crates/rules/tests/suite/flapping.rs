//! Flap detection: thresholds, hysteresis, scheduling and bounded memory.

use sluice_rules::{AlertState, FlapChange, FlapConfig, FlapConfigError, FlapDetector};

const MIN: i64 = 60_000;

/// Records alternating states at the given minutes and returns what each record reported.
fn alternate(d: &mut FlapDetector, minutes: &[i64]) -> Vec<FlapChange> {
    minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let state = if i % 2 == 0 {
                AlertState::Firing
            } else {
                AlertState::Resolved
            };
            d.record(state, m * MIN)
        })
        .collect()
}

#[test]
fn defaults_are_ten_minutes_enter_four_leave_one() {
    let c = FlapConfig::default();
    assert_eq!((c.window_ms(), c.enter(), c.leave()), (10 * MIN, 4, 1));
}

#[test]
fn invalid_configs_are_rejected() {
    assert_eq!(
        FlapConfig::new(0, 4, 1),
        Err(FlapConfigError::Window { window_ms: 0 })
    );
    assert_eq!(
        FlapConfig::new(MIN, 3, 3),
        Err(FlapConfigError::Thresholds { enter: 3, leave: 3 })
    );
    assert_eq!(
        FlapConfig::new(MIN, 0, 0),
        Err(FlapConfigError::Thresholds { enter: 0, leave: 0 })
    );
    assert!(FlapConfig::new(MIN, 1, 0).is_ok());
}

#[test]
fn starts_flapping_at_the_enter_threshold() {
    let mut d = FlapDetector::new(FlapConfig::default());
    let got = alternate(&mut d, &[0, 1, 2, 3]);
    use FlapChange::{None as N, Started};
    assert_eq!(got, vec![N, N, N, Started]);
    assert!(d.is_flapping());
}

#[test]
fn changes_spread_wider_than_the_window_never_flap() {
    let mut d = FlapDetector::new(FlapConfig::default());
    // Every 4 minutes: at most 3 changes fall in any 10 minute window.
    let got = alternate(&mut d, &[0, 4, 8, 12, 16, 20, 24]);
    assert!(got.iter().all(|c| *c == FlapChange::None), "{got:?}");
    assert_eq!(d.changes_in_window(24 * MIN), 3);
}

#[test]
fn repeating_the_same_state_is_not_a_change() {
    let mut d = FlapDetector::new(FlapConfig::default());
    for m in 0..10 {
        assert_eq!(d.record(AlertState::Firing, m * MIN), FlapChange::None);
    }
    assert_eq!(d.changes_in_window(9 * MIN), 1);
    assert!(!d.is_flapping());
}

#[test]
fn hysteresis_keeps_flapping_until_changes_drop_to_leave() {
    let mut d = FlapDetector::new(FlapConfig::default());
    alternate(&mut d, &[0, 1, 2, 3]); // Started at minute 3.
    // At minute 10:30, the change at 0 has expired: 3 changes remain, still above leave (1).
    assert_eq!(d.tick(10 * MIN + 30_000), FlapChange::None);
    assert!(d.is_flapping());
    // The second-newest change (minute 2) leaves the window at minute 12: one remains.
    assert_eq!(d.next_deadline(), Some(12 * MIN));
    assert_eq!(d.tick(12 * MIN - 1), FlapChange::None);
    assert_eq!(d.tick(12 * MIN), FlapChange::Stopped);
    assert!(!d.is_flapping());
    assert_eq!(d.next_deadline(), None);
    assert_eq!(d.tick(12 * MIN + 1), FlapChange::None);
}

#[test]
fn new_changes_while_flapping_push_the_end_back() {
    let mut d = FlapDetector::new(FlapConfig::default());
    alternate(&mut d, &[0, 1, 2, 3]);
    // Two more changes at minutes 9 and 11 (the next state after Resolved is Firing).
    assert_eq!(d.record(AlertState::Firing, 9 * MIN), FlapChange::None);
    assert_eq!(d.record(AlertState::Resolved, 11 * MIN), FlapChange::None);
    assert_eq!(d.next_deadline(), Some(19 * MIN));
    assert_eq!(d.tick(18 * MIN), FlapChange::None);
    assert_eq!(d.tick(19 * MIN), FlapChange::Stopped);
    // Below enter but above leave does not restart flapping (hysteresis from the other side).
    let mut d = FlapDetector::new(FlapConfig::new(10 * MIN, 4, 1).expect("valid"));
    alternate(&mut d, &[0, 1, 2, 3]);
    assert_eq!(d.tick(12 * MIN), FlapChange::Stopped);
    // The change at minute 3 stays in the window until minute 13.
    let sec = 1_000;
    assert_eq!(
        d.record(AlertState::Firing, 12 * MIN + 10 * sec),
        FlapChange::None
    );
    assert_eq!(
        d.record(AlertState::Resolved, 12 * MIN + 20 * sec),
        FlapChange::None
    );
    assert_eq!(d.changes_in_window(12 * MIN + 20 * sec), 3);
    assert!(!d.is_flapping());
    assert_eq!(
        d.record(AlertState::Firing, 12 * MIN + 30 * sec),
        FlapChange::Started
    );
}

#[test]
fn memory_stays_bounded_and_exact() {
    let mut d = FlapDetector::new(FlapConfig::default());
    let minutes: Vec<i64> = (0..10_000).collect();
    let got = alternate(&mut d, &minutes);
    assert_eq!(got.iter().filter(|c| **c == FlapChange::Started).count(), 1);
    // Only `enter` change times are kept, which is enough to know the alert is flapping.
    assert_eq!(d.changes_in_window(9_999 * MIN), 4);
    assert!(d.is_flapping());
    assert_eq!(d.tick(10_009 * MIN), FlapChange::Stopped);
    assert!(d.is_idle(20_000 * MIN));
}

#[test]
fn a_clock_stepping_back_does_not_panic_or_lose_order() {
    let mut d = FlapDetector::new(FlapConfig::default());
    d.record(AlertState::Firing, 5 * MIN);
    d.record(AlertState::Resolved, 3 * MIN);
    d.record(AlertState::Firing, 4 * MIN);
    assert_eq!(d.record(AlertState::Resolved, 6 * MIN), FlapChange::Started);
    assert_eq!(d.next_deadline(), Some(15 * MIN));
    let mut extreme = FlapDetector::new(FlapConfig::default());
    extreme.record(AlertState::Firing, i64::MIN);
    extreme.record(AlertState::Resolved, i64::MAX);
    let _ = extreme.tick(i64::MIN);
    let _ = extreme.next_deadline();
}
