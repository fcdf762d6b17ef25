//! Silences: one-off ranges, weekly windows, and their behaviour on daylight-saving days.
//!
//! Instants are written in UTC and the local times they correspond to are worked out by hand
//! in the comments, so the tests do not reuse the time-zone logic they check.

use jiff::civil::Weekday;
use sluice_rules::silence::parse_weekday;
use sluice_rules::{Matcher, Recurrence, Silence, SilenceError, parse_matchers};

use crate::{labels, ts};

fn api() -> Vec<Matcher> {
    parse_matchers(r#"service="api""#).expect("matchers")
}

fn weekly(days: &[Weekday], start: &str, end: &str, tz: &str) -> Silence {
    let rec = Recurrence::weekly(days, start, end, tz).expect("recurrence");
    Silence::new(
        api(),
        ts("2020-01-01T00:00:00Z"),
        ts("2030-01-01T00:00:00Z"),
        Some(rec),
    )
    .expect("silence")
}

/// Asserts `is_active` at each UTC instant.
fn check_active(s: &Silence, cases: &[(&str, bool)]) {
    for (at, expect) in cases {
        assert_eq!(s.is_active(ts(at)), *expect, "active at {at}");
    }
}

#[test]
fn one_off_silence_is_active_from_start_inclusive_to_end_exclusive() {
    let s = Silence::new(api(), 1_000, 5_000, None).expect("valid");
    for (now, expect) in [(999, false), (1_000, true), (4_999, true), (5_000, false)] {
        assert_eq!(s.is_active(now), expect, "at {now}");
    }
    assert!(s.mutes(&labels(&[("service", "api"), ("env", "prod")]), 2_000));
    assert!(!s.mutes(&labels(&[("service", "web")]), 2_000));
    assert!(!s.mutes(&labels(&[("service", "api")]), 6_000));
    assert_eq!(s.next_transition(0), Some(1_000));
    assert_eq!(s.next_transition(1_000), Some(5_000));
    assert_eq!(s.next_transition(5_000), None);
    assert!(s.is_expired(5_000) && !s.is_expired(4_999));
}

#[test]
fn all_matchers_must_match() {
    let m = parse_matchers(r#"service="api", env=~"prod|staging""#).expect("matchers");
    let s = Silence::new(m, 0, 10, None).expect("valid");
    assert!(s.mutes(&labels(&[("service", "api"), ("env", "staging")]), 5));
    assert!(!s.mutes(&labels(&[("service", "api"), ("env", "dev")]), 5));
    assert!(!s.mutes(&labels(&[("service", "api")]), 5));
}

#[test]
fn invalid_silences_are_rejected_with_clear_errors() {
    assert_eq!(
        Silence::new(vec![], 0, 10, None).err(),
        Some(SilenceError::NoMatchers)
    );
    let everything = parse_matchers(r#"team=~".*", env!="prod""#).expect("matchers");
    let err = Silence::new(everything, 0, 10, None).expect_err("mutes everything");
    assert!(err.to_string().contains("match every alert"), "{err}");
    assert_eq!(
        Silence::new(api(), 10, 5, None).err(),
        Some(SilenceError::EndNotAfterStart {
            starts_at_ms: 10,
            ends_at_ms: 5
        })
    );
    assert!(Silence::new(api(), 10, 10, None).is_err());
    let msg = Silence::new(api(), 10, 5, None)
        .expect_err("invalid")
        .to_string();
    assert!(msg.contains("not after its start"), "{msg}");
}

#[test]
fn recurrence_input_is_validated() {
    let sun = [Weekday::Sunday];
    for bad in [
        "24:00", "2:5", "ab:cd", "12:60", "1200", "", "-1:00", "12:00:00", "+1:00",
    ] {
        assert_eq!(
            Recurrence::weekly(&sun, bad, "04:00", "UTC").err(),
            Some(SilenceError::InvalidTimeOfDay {
                text: bad.to_string()
            }),
            "{bad:?}"
        );
    }
    assert!(Recurrence::weekly(&sun, "2:00", "04:00", "UTC").is_ok());
    assert_eq!(
        Recurrence::weekly(&sun, "02:00", "04:00", "Mars/Olympus").err(),
        Some(SilenceError::UnknownTimeZone {
            name: "Mars/Olympus".to_string()
        })
    );
    assert_eq!(
        Recurrence::weekly(&[], "02:00", "04:00", "UTC").err(),
        Some(SilenceError::NoDays)
    );
    let Ok(Recurrence::Weekly(w)) = Recurrence::weekly(
        &[Weekday::Sunday, Weekday::Monday, Weekday::Sunday],
        "2:00",
        "4:30",
        "europe/berlin",
    ) else {
        panic!("valid recurrence");
    };
    assert_eq!(w.to_string(), "weekly on mon,sun 02:00-04:30 Europe/Berlin");
}

#[test]
fn weekday_names_parse() {
    assert_eq!(parse_weekday("Sunday"), Ok(Weekday::Sunday));
    assert_eq!(parse_weekday("tue"), Ok(Weekday::Tuesday));
    assert!(parse_weekday("sundays").is_err());
}

#[test]
fn weekly_window_in_summer_time() {
    // 2025-06-01 is a Sunday; Berlin is on CEST (UTC+2), so 02:00-04:00 local is 00:00-02:00Z.
    let s = weekly(&[Weekday::Sunday], "02:00", "04:00", "Europe/Berlin");
    check_active(
        &s,
        &[
            ("2025-05-31T23:59:59Z", false),
            ("2025-06-01T00:00:00Z", true),
            ("2025-06-01T01:59:59Z", true),
            ("2025-06-01T02:00:00Z", false),
            ("2025-06-02T00:30:00Z", false), // Monday
            ("2025-06-08T00:30:00Z", true),  // next Sunday
        ],
    );
    let svc = labels(&[("service", "api")]);
    assert!(s.mutes(&svc, ts("2025-06-01T00:30:00Z")));
    assert!(!s.mutes(&svc, ts("2025-06-01T03:00:00Z")));
    assert_eq!(
        s.next_transition(ts("2025-05-31T12:00:00Z")),
        Some(ts("2025-06-01T00:00:00Z"))
    );
    assert_eq!(
        s.next_transition(ts("2025-06-01T00:30:00Z")),
        Some(ts("2025-06-01T02:00:00Z"))
    );
    assert_eq!(
        s.next_transition(ts("2025-06-01T02:00:00Z")),
        Some(ts("2025-06-08T00:00:00Z"))
    );
}

#[test]
fn window_crossing_midnight_belongs_to_the_day_it_opens() {
    // Friday 22:00 to Saturday 02:00 UTC. 2025-06-06 is a Friday.
    let s = weekly(&[Weekday::Friday], "22:00", "02:00", "UTC");
    check_active(
        &s,
        &[
            ("2025-06-06T21:59:00Z", false),
            ("2025-06-06T22:00:00Z", true),
            ("2025-06-07T01:59:00Z", true),
            ("2025-06-07T02:00:00Z", false),
            ("2025-06-07T22:30:00Z", false), // Saturday night is not listed
            ("2025-06-05T23:00:00Z", false), // neither is Thursday night
        ],
    );
    assert_eq!(
        s.next_transition(ts("2025-06-06T23:00:00Z")),
        Some(ts("2025-06-07T02:00:00Z"))
    );
}

#[test]
fn whole_days_back_to_back_merge_into_one_window() {
    // Saturday 00:00 to Sunday 00:00, and Sunday 00:00 to Monday 00:00: one 48 hour window.
    let s = weekly(
        &[Weekday::Saturday, Weekday::Sunday],
        "00:00",
        "00:00",
        "UTC",
    );
    assert!(s.is_active(ts("2025-06-07T00:00:00Z")));
    assert!(s.is_active(ts("2025-06-08T23:59:59Z")));
    assert!(!s.is_active(ts("2025-06-09T00:00:00Z")));
    assert_eq!(
        s.next_transition(ts("2025-06-07T10:00:00Z")),
        Some(ts("2025-06-09T00:00:00Z"))
    );
}

#[test]
fn windows_covering_every_day_change_only_at_the_silence_range() {
    let all = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let rec = Recurrence::weekly(&all, "00:00", "00:00", "Europe/Berlin").expect("valid");
    let (start, end) = (ts("2025-03-01T00:00:00Z"), ts("2025-12-01T00:00:00Z"));
    let s = Silence::new(api(), start, end, Some(rec)).expect("valid");
    assert_eq!(s.next_transition(start - 1), Some(start));
    assert_eq!(s.next_transition(start), Some(end));
    assert_eq!(s.next_transition(ts("2025-10-26T01:30:00Z")), Some(end));
    assert!(s.is_active(ts("2025-03-30T01:30:00Z")));
    assert!(!s.is_active(end));
}

#[test]
fn range_clips_the_recurring_windows() {
    // The silence starts in the middle of a Sunday 00:00-04:00 UTC window and ends in the
    // middle of a later one.
    let rec = Recurrence::weekly(&[Weekday::Sunday], "00:00", "04:00", "UTC").expect("valid");
    let (start, end) = (ts("2025-06-01T01:00:00Z"), ts("2025-06-08T02:00:00Z"));
    let s = Silence::new(api(), start, end, Some(rec)).expect("valid");
    assert!(!s.is_active(ts("2025-06-01T00:30:00Z")));
    assert!(s.is_active(start));
    assert_eq!(s.next_transition(ts("2025-05-30T00:00:00Z")), Some(start));
    assert_eq!(s.next_transition(start), Some(ts("2025-06-01T04:00:00Z")));
    assert_eq!(
        s.next_transition(ts("2025-06-01T05:00:00Z")),
        Some(ts("2025-06-08T00:00:00Z"))
    );
    assert_eq!(s.next_transition(ts("2025-06-08T00:00:00Z")), Some(end));
    assert_eq!(s.next_transition(end), None);

    // A silence whose range holds no window never becomes active.
    let rec = Recurrence::weekly(&[Weekday::Sunday], "00:00", "04:00", "UTC").expect("valid");
    let monday_only = Silence::new(
        api(),
        ts("2025-06-02T00:00:00Z"),
        ts("2025-06-03T00:00:00Z"),
        Some(rec),
    )
    .expect("valid");
    assert_eq!(
        monday_only.next_transition(ts("2025-06-01T12:00:00Z")),
        None
    );
}

#[test]
fn spring_forward_skips_the_missing_hour() {
    // Europe/Berlin, Sunday 2025-03-30: at 01:00Z the clock jumps from 02:00 CET to 03:00 CEST.
    // Local 02:00-03:00 never happens that day, so that window is empty and never mutes.
    let s = weekly(&[Weekday::Sunday], "02:00", "03:00", "Europe/Berlin");
    check_active(
        &s,
        &[
            ("2025-03-23T01:00:00Z", true), // the Sunday before, CET: 02:00-03:00 = 01:00-02:00Z
            ("2025-03-30T00:59:59Z", false), // 01:59:59 CET
            ("2025-03-30T01:00:00Z", false), // 03:00 CEST
            ("2025-03-30T01:30:00Z", false),
            ("2025-04-06T00:30:00Z", true), // the Sunday after, CEST: 00:00-01:00Z
        ],
    );
    // Scheduling skips the empty window.
    assert_eq!(
        s.next_transition(ts("2025-03-29T12:00:00Z")),
        Some(ts("2025-04-06T00:00:00Z"))
    );

    // A 02:00-04:00 window opens when the skipped hour ends: 03:00-04:00 CEST, one real hour.
    let s = weekly(&[Weekday::Sunday], "02:00", "04:00", "Europe/Berlin");
    check_active(
        &s,
        &[
            ("2025-03-30T00:30:00Z", false), // 01:30 CET
            ("2025-03-30T01:00:00Z", true),  // 03:00 CEST
            ("2025-03-30T01:59:59Z", true),
            ("2025-03-30T02:00:00Z", false), // 04:00 CEST
        ],
    );
    assert_eq!(
        s.next_transition(ts("2025-03-29T12:00:00Z")),
        Some(ts("2025-03-30T01:00:00Z"))
    );
    assert_eq!(
        s.next_transition(ts("2025-03-30T01:00:00Z")),
        Some(ts("2025-03-30T02:00:00Z"))
    );
}

#[test]
fn fall_back_covers_both_passes_of_the_repeated_hour() {
    // Europe/Berlin, Sunday 2025-10-26: at 01:00Z the clock goes back from 03:00 CEST to
    // 02:00 CET, so local 02:00-03:00 happens twice: 00:00-01:00Z and 01:00-02:00Z.
    let s = weekly(&[Weekday::Sunday], "02:00", "03:00", "Europe/Berlin");
    check_active(
        &s,
        &[
            ("2025-10-25T23:59:59Z", false), // 01:59:59 CEST
            ("2025-10-26T00:00:00Z", true),  // 02:00 CEST, first pass
            ("2025-10-26T00:59:59Z", true),
            ("2025-10-26T01:30:00Z", true),  // 02:30 CET, second pass
            ("2025-10-26T02:00:00Z", false), // 03:00 CET
        ],
    );
    assert_eq!(
        s.next_transition(ts("2025-10-26T00:10:00Z")),
        Some(ts("2025-10-26T02:00:00Z"))
    );

    // A window ending inside the repeated hour closes at the second time the clock shows its
    // end: 01:00-02:00 runs from 01:00 CEST (23:00Z) to 02:00 CET (01:00Z), two real hours.
    let s = weekly(&[Weekday::Sunday], "01:00", "02:00", "Europe/Berlin");
    check_active(
        &s,
        &[
            ("2025-10-25T22:59:59Z", false),
            ("2025-10-25T23:00:00Z", true),
            ("2025-10-26T00:30:00Z", true),
            ("2025-10-26T01:00:00Z", false),
        ],
    );
}

#[test]
fn out_of_range_instants_do_not_panic() {
    let s = weekly(&[Weekday::Sunday], "02:00", "04:00", "Europe/Berlin");
    for now in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
        let _ = s.is_active(now);
        let _ = s.next_transition(now);
    }
    let rec = Recurrence::weekly(&[Weekday::Sunday], "02:00", "04:00", "UTC").expect("valid");
    let wide = Silence::new(api(), i64::MIN, i64::MAX, Some(rec)).expect("valid");
    assert!(!wide.is_active(i64::MIN));
    assert_eq!(wide.next_transition(i64::MAX - 1), None);
}
