//! Behaviour tests for sluice-oncall with injected time: rotations, layers, overrides,
//! daylight-saving changes, escalation timing and catch-up, plus property tests that the
//! shift boundaries are consistent and that nothing is paged after an acknowledgement.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use sluice_oncall::escalation::{self, MAX_REPEAT};
use sluice_oncall::{
    CompiledSchedule, EscalationState, Layer, Level, OnCall, Override, Page, Policy, PolicyError,
    Restriction, Rotation, Schedule, ScheduleError, Target, Weekday, now_and_next, on_call_now,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The instant of a civil time in a zone (compatible disambiguation), in epoch ms.
fn local(zone: &str, civil: &str) -> i64 {
    let tz = TimeZone::get(zone).expect("test zone exists");
    let dt: DateTime = civil.parse().expect("test civil time parses");
    tz.to_timestamp(dt)
        .expect("test civil time is in range")
        .as_millisecond()
}

/// An explicit UTC instant such as `2026-03-29T07:00:00Z`, in epoch ms.
fn utc(text: &str) -> i64 {
    text.parse::<Timestamp>()
        .expect("test instant parses")
        .as_millisecond()
}

/// The local wall-clock time (`HH:MM`) of an instant in a zone.
fn wall_clock(zone: &str, ms: i64) -> String {
    let tz = TimeZone::get(zone).expect("test zone exists");
    let ts = Timestamp::from_millisecond(ms).expect("test instant in range");
    tz.to_datetime(ts).strftime("%H:%M").to_string()
}

fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn layer(name: &str, who: &[&str], rotation: Rotation, start: &str) -> Layer {
    Layer {
        name: name.into(),
        users: users(who),
        rotation,
        start: start.into(),
        restrictions: Vec::new(),
    }
}

fn schedule(zone: &str, layers: Vec<Layer>, overrides: Vec<Override>) -> Schedule {
    Schedule {
        name: "primary".into(),
        time_zone: zone.into(),
        layers,
        overrides,
    }
}

fn compile(s: &Schedule) -> CompiledSchedule {
    s.compile().expect("test schedule is valid")
}

fn who(s: &CompiledSchedule, t: i64) -> Option<(String, Option<String>)> {
    s.on_call_at(t).map(|o| (o.user, o.layer))
}

fn user_at(s: &CompiledSchedule, t: i64) -> Option<String> {
    s.on_call_at(t).map(|o| o.user)
}

// ---------------------------------------------------------------------------------------------
// Rotations
// ---------------------------------------------------------------------------------------------

#[test]
fn daily_handoff_at_0900_local() {
    let zone = "Europe/Berlin";
    let s = compile(&schedule(
        zone,
        vec![layer(
            "primary",
            &["alice", "bob", "carol"],
            Rotation::Daily,
            "2026-01-05T09:00",
        )],
        vec![],
    ));
    let first = local(zone, "2026-01-05T09:00");
    assert_eq!(first, utc("2026-01-05T08:00:00Z"), "09:00 CET is 08:00 UTC");
    assert_eq!(
        s.on_call_at(first - 1),
        None,
        "nobody before the first handoff"
    );

    let now = s
        .on_call_at(first)
        .expect("alice is on call from the start");
    assert_eq!(now.user, "alice");
    assert_eq!(now.layer.as_deref(), Some("primary"));
    assert_eq!(now.since_ms, Some(first));
    assert_eq!(now.until_ms, Some(local(zone, "2026-01-06T09:00")));
    assert_eq!(s.next_handoff(first), Some(local(zone, "2026-01-06T09:00")));

    let handoff = local(zone, "2026-01-06T09:00");
    assert_eq!(user_at(&s, handoff - 1).as_deref(), Some("alice"));
    assert_eq!(user_at(&s, handoff).as_deref(), Some("bob"));
    assert_eq!(
        user_at(&s, local(zone, "2026-01-07T15:00")).as_deref(),
        Some("carol")
    );
    assert_eq!(
        user_at(&s, local(zone, "2026-01-08T09:00")).as_deref(),
        Some("alice"),
        "the rotation wraps around to the first user"
    );
}

#[test]
fn weekly_rotation_order_over_several_weeks() {
    let zone = "America/New_York";
    let names = ["ana", "ben", "cho", "dev"];
    let s = compile(&schedule(
        zone,
        vec![layer(
            "weekly",
            &names,
            Rotation::Weekly,
            "2026-01-05T10:00",
        )],
        vec![],
    ));
    let start = local(zone, "2026-01-05T10:00");
    let end = local(zone, "2026-03-02T10:00"); // eight weeks later, before US DST starts
    let shifts = s.shifts(start, end);
    assert_eq!(shifts.len(), 8);
    for (week, shift) in shifts.iter().enumerate() {
        assert_eq!(shift.user, names[week % names.len()], "week {week}");
        assert_eq!(
            wall_clock(zone, shift.start_ms),
            "10:00",
            "week {week} starts at 10:00"
        );
        assert_eq!(
            shift.end_ms - shift.start_ms,
            7 * 24 * HOUR,
            "week {week} lasts a week"
        );
    }
    // Mid-week in the fifth week it is the first user again.
    assert_eq!(
        user_at(&s, local(zone, "2026-02-04T03:00")).as_deref(),
        Some("ana")
    );
}

#[test]
fn hours_rotation_hands_off_every_n_hours() {
    let zone = "UTC";
    let s = compile(&schedule(
        zone,
        vec![layer(
            "twelve",
            &["day", "night"],
            Rotation::Hours(12),
            "2026-01-05T08:00",
        )],
        vec![],
    ));
    let start = utc("2026-01-05T08:00:00Z");
    let shifts = s.shifts(start, start + 48 * HOUR);
    let who: Vec<&str> = shifts.iter().map(|s| s.user.as_str()).collect();
    assert_eq!(who, ["day", "night", "day", "night"]);
    assert!(shifts.iter().all(|s| s.end_ms - s.start_ms == 12 * HOUR));
}

#[test]
fn single_user_layer_has_an_unbounded_shift() {
    let s = compile(&schedule(
        "UTC",
        vec![layer("solo", &["sam"], Rotation::Daily, "2026-01-05T09:00")],
        vec![],
    ));
    let t = utc("2026-06-01T00:00:00Z");
    let oc = s.on_call_at(t).expect("sam is on call");
    assert_eq!(oc.since_ms, Some(utc("2026-01-05T09:00:00Z")));
    assert_eq!(oc.until_ms, None, "the answer never changes");
    assert_eq!(s.next_handoff(t), None);
}

// ---------------------------------------------------------------------------------------------
// Layers and overrides
// ---------------------------------------------------------------------------------------------

fn business_hours_over_base(zone: &str) -> Schedule {
    let mut business = layer(
        "business",
        &["alice", "bob"],
        Rotation::Daily,
        "2026-01-05T00:00",
    );
    business.restrictions = vec![Restriction {
        days: Weekday::WEEKDAYS.to_vec(),
        start: "09:00".into(),
        end: "17:00".into(),
    }];
    schedule(
        zone,
        vec![
            layer(
                "base",
                &["xena", "yuri"],
                Rotation::Weekly,
                "2026-01-05T00:00",
            ),
            business,
        ],
        vec![],
    )
}

#[test]
fn higher_layer_restricted_to_business_hours_over_24x7_base() {
    let zone = "Europe/Berlin";
    let s = compile(&business_hours_over_base(zone));

    // Monday 2026-01-05: base before 09:00, business 09:00-17:00, base afterwards.
    let shifts = s.shifts(
        local(zone, "2026-01-05T00:00"),
        local(zone, "2026-01-06T00:00"),
    );
    let got: Vec<(&str, Option<&str>, String, String)> = shifts
        .iter()
        .map(|s| {
            (
                s.user.as_str(),
                s.layer.as_deref(),
                wall_clock(zone, s.start_ms),
                wall_clock(zone, s.end_ms),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("xena", Some("base"), "00:00".into(), "09:00".into()),
            ("alice", Some("business"), "09:00".into(), "17:00".into()),
            ("xena", Some("base"), "17:00".into(), "00:00".into()),
        ]
    );

    let morning = s
        .on_call_at(local(zone, "2026-01-06T10:30"))
        .expect("someone at Tuesday 10:30");
    assert_eq!(morning.user, "bob", "the business layer rotated daily");
    assert_eq!(morning.since_ms, Some(local(zone, "2026-01-06T09:00")));
    assert_eq!(morning.until_ms, Some(local(zone, "2026-01-06T17:00")));

    // Saturday: the business layer is restricted away, the base layer shows through all day.
    let saturday = s
        .on_call_at(local(zone, "2026-01-10T12:00"))
        .expect("someone on Saturday");
    assert_eq!(saturday.layer.as_deref(), Some("base"));
    assert_eq!(saturday.since_ms, Some(local(zone, "2026-01-09T17:00")));
    assert_eq!(saturday.until_ms, Some(local(zone, "2026-01-12T00:00")));
    assert_eq!(saturday.user, "xena");

    // The second week of the base layer is yuri's.
    assert_eq!(
        who(&s, local(zone, "2026-01-13T20:00")),
        Some(("yuri".into(), Some("base".into())))
    );
}

#[test]
fn overnight_restriction_window_spans_midnight() {
    let zone = "UTC";
    let mut night = layer("night", &["owl"], Rotation::Daily, "2026-01-05T00:00");
    night.restrictions = vec![Restriction {
        days: vec![],
        start: "22:00".into(),
        end: "06:00".into(),
    }];
    let s = compile(&schedule(zone, vec![night], vec![]));
    assert_eq!(user_at(&s, utc("2026-01-06T21:59:59Z")), None);
    let oc = s
        .on_call_at(utc("2026-01-07T02:00:00Z"))
        .expect("owl at 02:00");
    assert_eq!(oc.since_ms, Some(utc("2026-01-06T22:00:00Z")));
    assert_eq!(oc.until_ms, Some(utc("2026-01-07T06:00:00Z")));

    // An end of 00:00 means the coming midnight, the same as 24:00.
    for end in ["00:00", "24:00"] {
        let mut evening = layer("evening", &["eve"], Rotation::Daily, "2026-01-05T00:00");
        evening.restrictions = vec![Restriction {
            days: vec![Weekday::Monday],
            start: "18:00".into(),
            end: end.into(),
        }];
        let s = compile(&schedule(zone, vec![evening], vec![]));
        let oc = s
            .on_call_at(utc("2026-01-05T20:00:00Z"))
            .expect("eve on Monday evening");
        assert_eq!(oc.until_ms, Some(utc("2026-01-06T00:00:00Z")), "end {end}");
        assert_eq!(
            user_at(&s, utc("2026-01-06T20:00:00Z")),
            None,
            "not on Tuesday"
        );
    }
}

fn alice_bob_daily(overrides: Vec<Override>) -> CompiledSchedule {
    compile(&schedule(
        "Europe/Berlin",
        vec![layer(
            "primary",
            &["alice", "bob"],
            Rotation::Daily,
            "2026-01-05T09:00",
        )],
        overrides,
    ))
}

#[test]
fn override_in_the_middle_of_a_shift() {
    let z = "Europe/Berlin";
    let s = alice_bob_daily(vec![Override {
        user: "carol".into(),
        start_ms: local(z, "2026-01-05T12:00"),
        end_ms: local(z, "2026-01-05T14:00"),
    }]);

    let before = s.on_call_at(local(z, "2026-01-05T11:00")).expect("alice");
    assert_eq!(before.user, "alice");
    assert_eq!(before.until_ms, Some(local(z, "2026-01-05T12:00")));

    let during = s.on_call_at(local(z, "2026-01-05T13:00")).expect("carol");
    assert_eq!(
        during,
        OnCall {
            user: "carol".into(),
            layer: None,
            since_ms: Some(local(z, "2026-01-05T12:00")),
            until_ms: Some(local(z, "2026-01-05T14:00")),
        }
    );

    let after = s
        .on_call_at(local(z, "2026-01-05T14:00"))
        .expect("alice again");
    assert_eq!(after.user, "alice");
    assert_eq!(after.layer.as_deref(), Some("primary"));
    assert_eq!(after.since_ms, Some(local(z, "2026-01-05T14:00")));
    assert_eq!(after.until_ms, Some(local(z, "2026-01-06T09:00")));
}

#[test]
fn override_spanning_a_handoff() {
    let z = "Europe/Berlin";
    let s = alice_bob_daily(vec![Override {
        user: "carol".into(),
        start_ms: local(z, "2026-01-05T20:00"),
        end_ms: local(z, "2026-01-06T12:00"),
    }]);
    let shifts = s.shifts(local(z, "2026-01-05T09:00"), local(z, "2026-01-07T09:00"));
    let got: Vec<(&str, i64, i64)> = shifts
        .iter()
        .map(|s| (s.user.as_str(), s.start_ms, s.end_ms))
        .collect();
    assert_eq!(
        got,
        [
            (
                "alice",
                local(z, "2026-01-05T09:00"),
                local(z, "2026-01-05T20:00")
            ),
            (
                "carol",
                local(z, "2026-01-05T20:00"),
                local(z, "2026-01-06T12:00")
            ),
            (
                "bob",
                local(z, "2026-01-06T12:00"),
                local(z, "2026-01-07T09:00")
            ),
        ]
    );
    // The handoff at 09:00 is hidden by the override: carol's shift does not break there.
    let carol = s.on_call_at(local(z, "2026-01-06T09:00")).expect("carol");
    assert_eq!(carol.user, "carol");
    assert_eq!(carol.since_ms, Some(local(z, "2026-01-05T20:00")));
}

#[test]
fn later_override_wins_where_overrides_overlap() {
    let z = "Europe/Berlin";
    let s = alice_bob_daily(vec![
        Override {
            user: "carol".into(),
            start_ms: local(z, "2026-01-05T10:00"),
            end_ms: local(z, "2026-01-05T16:00"),
        },
        Override {
            user: "dave".into(),
            start_ms: local(z, "2026-01-05T12:00"),
            end_ms: local(z, "2026-01-05T13:00"),
        },
    ]);
    assert_eq!(
        user_at(&s, local(z, "2026-01-05T12:30")).as_deref(),
        Some("dave")
    );
    assert_eq!(
        user_at(&s, local(z, "2026-01-05T13:00")).as_deref(),
        Some("carol")
    );
}

#[test]
fn now_and_next_skips_a_gap_with_nobody_on_call() {
    let zone = "Europe/Berlin";
    let mut only_business = business_hours_over_base(zone);
    only_business.layers.remove(0);
    let s = compile(&only_business);

    let (now, next) = now_and_next(&s, local(zone, "2026-01-05T10:00"));
    let now = now.expect("alice now");
    let next = next.expect("bob next");
    assert_eq!(now.user, "alice");
    assert_eq!(next.user, "bob");
    assert_eq!(next.since_ms, Some(local(zone, "2026-01-06T09:00")));

    let (now, next) = now_and_next(&s, local(zone, "2026-01-09T18:00")); // Friday evening
    assert_eq!(now, None);
    let next = next.expect("monday's person");
    assert_eq!(next.since_ms, Some(local(zone, "2026-01-12T09:00")));

    let all = on_call_now(std::slice::from_ref(&s), local(zone, "2026-01-05T10:00"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].schedule, "primary");
    assert_eq!(all[0].now.as_ref().map(|o| o.user.as_str()), Some("alice"));
}

// ---------------------------------------------------------------------------------------------
// Daylight-saving changes
// ---------------------------------------------------------------------------------------------

fn berlin(rotation: Rotation, start: &str) -> CompiledSchedule {
    compile(&schedule(
        "Europe/Berlin",
        vec![layer("primary", &["alice", "bob"], rotation, start)],
        vec![],
    ))
}

fn handoffs(s: &CompiledSchedule, from: i64, count: usize) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = from;
    for _ in 0..count {
        let Some(next) = s.next_handoff(t) else { break };
        out.push(next);
        t = next;
    }
    out
}

#[test]
fn dst_berlin_daily_0900_across_spring_forward() {
    let s = berlin(Rotation::Daily, "2026-03-26T09:00");
    let got = handoffs(&s, utc("2026-03-27T12:00:00Z"), 3);
    assert_eq!(
        got,
        [
            utc("2026-03-28T08:00:00Z"), // 09:00 CET (+01:00)
            utc("2026-03-29T07:00:00Z"), // 09:00 CEST (+02:00), the day clocks go forward
            utc("2026-03-30T07:00:00Z"),
        ]
    );
    assert!(
        got.iter()
            .all(|&h| wall_clock("Europe/Berlin", h) == "09:00")
    );
    let short = s.on_call_at(utc("2026-03-29T01:00:00Z")).expect("someone");
    let (since, until) = (
        short.since_ms.expect("since"),
        short.until_ms.expect("until"),
    );
    assert_eq!(
        until - since,
        23 * HOUR,
        "the shift across the change is 23 hours"
    );
}

#[test]
fn dst_berlin_daily_0900_across_fall_back() {
    let s = berlin(Rotation::Daily, "2026-10-22T09:00");
    let got = handoffs(&s, utc("2026-10-23T12:00:00Z"), 3);
    assert_eq!(
        got,
        [
            utc("2026-10-24T07:00:00Z"), // 09:00 CEST
            utc("2026-10-25T08:00:00Z"), // 09:00 CET, the day clocks go back
            utc("2026-10-26T08:00:00Z"),
        ]
    );
    assert!(
        got.iter()
            .all(|&h| wall_clock("Europe/Berlin", h) == "09:00")
    );
    let long = s.on_call_at(utc("2026-10-25T01:30:00Z")).expect("someone");
    let (since, until) = (long.since_ms.expect("since"), long.until_ms.expect("until"));
    assert_eq!(
        until - since,
        25 * HOUR,
        "the shift across the change is 25 hours"
    );
}

#[test]
fn dst_hours_24_drifts_an_hour_across_spring_forward() {
    let s = berlin(Rotation::Hours(24), "2026-03-28T09:00");
    let got = handoffs(&s, utc("2026-03-28T12:00:00Z"), 2);
    assert_eq!(
        got,
        [utc("2026-03-29T08:00:00Z"), utc("2026-03-30T08:00:00Z")]
    );
    assert_eq!(
        wall_clock("Europe/Berlin", got[0]),
        "10:00",
        "09:00 CET + 24h is 10:00 CEST"
    );
    assert_eq!(wall_clock("Europe/Berlin", got[1]), "10:00");
}

#[test]
fn dst_hours_24_drifts_an_hour_across_fall_back() {
    let s = berlin(Rotation::Hours(24), "2026-10-24T09:00");
    let got = handoffs(&s, utc("2026-10-24T12:00:00Z"), 1);
    assert_eq!(got, [utc("2026-10-25T07:00:00Z")]);
    assert_eq!(
        wall_clock("Europe/Berlin", got[0]),
        "08:00",
        "09:00 CEST + 24h is 08:00 CET"
    );
}

#[test]
fn dst_new_york_0230_handoff_on_spring_forward_day() {
    let zone = "America/New_York";
    let s = compile(&schedule(
        zone,
        vec![layer(
            "primary",
            &["alice", "bob"],
            Rotation::Daily,
            "2026-03-06T02:30",
        )],
        vec![],
    ));
    let got = handoffs(&s, utc("2026-03-06T12:00:00Z"), 3);
    assert_eq!(
        got,
        [
            utc("2026-03-07T07:30:00Z"), // 02:30 EST (-05:00)
            // 02:30 does not exist on 2026-03-08 (02:00 EST jumps to 03:00 EDT); like jiff's
            // "compatible" disambiguation the handoff moves later, to 03:30 EDT.
            utc("2026-03-08T07:30:00Z"),
            utc("2026-03-09T06:30:00Z"), // 02:30 EDT (-04:00)
        ]
    );
    assert_eq!(wall_clock(zone, got[1]), "03:30");
    assert_eq!(
        wall_clock(zone, got[2]),
        "02:30",
        "back to 02:30 the day after"
    );
    assert_eq!(user_at(&s, got[1] - 1).as_deref(), Some("bob"));
    assert_eq!(user_at(&s, got[1]).as_deref(), Some("alice"));
}

// ---------------------------------------------------------------------------------------------
// Validation and serde
// ---------------------------------------------------------------------------------------------

fn errors_of(s: &Schedule) -> Vec<ScheduleError> {
    s.validate().expect_err("schedule should be invalid").errors
}

#[test]
fn validation_rejects_unknown_zone() {
    let s = schedule("Mars/Olympus_Mons", vec![], vec![]);
    let errors = errors_of(&s);
    assert!(
        matches!(&errors[..], [ScheduleError::UnknownZone { field, zone }]
            if field == "time_zone" && zone == "Mars/Olympus_Mons"),
        "{errors:?}"
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with("time_zone: unknown time zone")
    );
}

#[test]
fn validation_rejects_empty_users_bad_civil_time_and_zero_hours() {
    let mut bad = layer("a", &[], Rotation::Hours(0), "2026-13-01T09:00");
    bad.restrictions = vec![Restriction {
        days: vec![],
        start: "9am".into(),
        end: "24:01".into(),
    }];
    let s = schedule(
        "UTC",
        vec![
            layer("ok", &["x"], Rotation::Daily, "2026-01-01T00:00"),
            bad,
        ],
        vec![],
    );
    let errors = errors_of(&s);
    let fields: Vec<String> = errors
        .iter()
        .map(|e| {
            e.to_string()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        fields,
        [
            "layers[1].users",
            "layers[1].rotation",
            "layers[1].start",
            "layers[1].restrictions[0].start",
            "layers[1].restrictions[0].end",
        ]
    );
    assert!(matches!(errors[0], ScheduleError::NoUsers { .. }));
    assert!(matches!(errors[1], ScheduleError::ZeroHourRotation { .. }));
    assert!(matches!(errors[2], ScheduleError::BadCivilTime { .. }));
}

#[test]
fn validation_rejects_override_ending_before_it_starts_and_duplicate_layers() {
    let s = schedule(
        "UTC",
        vec![
            layer("dup", &["x"], Rotation::Daily, "2026-01-01T00:00"),
            layer("dup", &["y"], Rotation::Daily, "2026-01-01T00:00"),
        ],
        vec![Override {
            user: "z".into(),
            start_ms: 10,
            end_ms: 10,
        }],
    );
    let errors = errors_of(&s);
    assert!(
        matches!(&errors[0], ScheduleError::DuplicateLayer { field, .. } if field == "layers[1].name")
    );
    assert!(
        matches!(&errors[1], ScheduleError::OverrideNotAfterStart { field, .. } if field == "overrides[0]")
    );
    assert_eq!(errors.len(), 2);
    let whole = s.validate().expect_err("invalid").to_string();
    assert!(
        whole.starts_with("schedule `primary` is invalid: layers[1].name"),
        "{whole}"
    );
}

#[test]
fn schedule_round_trips_through_json_and_rejects_unknown_fields() {
    let s = business_hours_over_base("Europe/Berlin");
    let json = serde_json::to_string(&s).expect("serialises");
    let back: Schedule = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, s);

    let rotation: Rotation = serde_json::from_str(r#"{"hours":12}"#).expect("hours form");
    assert_eq!(rotation, Rotation::Hours(12));

    let typo = r#"{"name":"p","time_zone":"UTC","layers":[],"overides":[]}"#;
    let err = serde_json::from_str::<Schedule>(typo).expect_err("unknown field rejected");
    assert!(err.to_string().contains("overides"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------------------------

fn level(targets: &[Target], delay_ms: i64) -> Level {
    Level {
        targets: targets.to_vec(),
        delay_ms: u64::try_from(delay_ms).expect("positive test delay"),
    }
}

fn user(name: &str) -> Target {
    Target::User(name.into())
}

fn nobody_resolver(_: &str, _: i64) -> Option<String> {
    None
}

fn three_levels(repeat: u32) -> Policy {
    Policy {
        name: "default".into(),
        levels: vec![
            level(&[user("alice")], 5 * MINUTE),
            level(&[user("bob")], 10 * MINUTE),
            level(&[user("carol")], 15 * MINUTE),
        ],
        repeat,
    }
}

fn paged(pages: &[Page]) -> Vec<(usize, u32, Option<&str>, i64)> {
    pages
        .iter()
        .map(|p| (p.level, p.round, p.user.as_deref(), p.due_at_ms))
        .collect()
}

#[test]
fn escalation_levels_fire_after_their_delays() {
    let policy = three_levels(0);
    policy.validate().expect("valid policy");
    let t0 = utc("2026-05-01T12:00:00Z");
    let (mut state, pages) = escalation::start(&policy, t0, &nobody_resolver);
    assert_eq!(paged(&pages), [(0, 0, Some("alice"), t0)]);
    assert_eq!(state.next_at_ms, Some(t0 + 5 * MINUTE));

    let early = escalation::advance(&policy, &mut state, t0 + 5 * MINUTE - 1, &nobody_resolver);
    assert!(early.is_empty(), "nothing is due before the delay");
    let bob = escalation::advance(&policy, &mut state, t0 + 5 * MINUTE, &nobody_resolver);
    assert_eq!(paged(&bob), [(1, 0, Some("bob"), t0 + 5 * MINUTE)]);
    assert_eq!(state.next_at_ms, Some(t0 + 15 * MINUTE));
    assert!(!state.done);

    let carol = escalation::advance(&policy, &mut state, t0 + 15 * MINUTE, &nobody_resolver);
    assert_eq!(paged(&carol), [(2, 0, Some("carol"), t0 + 15 * MINUTE)]);
    assert!(
        state.done,
        "the last level of the only round has been paged"
    );
    assert_eq!(state.next_at_ms, None);
    assert!(escalation::advance(&policy, &mut state, t0 + 10 * HOUR, &nobody_resolver).is_empty());
}

/// Calls `advance` exactly when each step is due until the escalation ends.
fn run_to_end(policy: &Policy, state: &mut EscalationState) -> Vec<Page> {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let Some(due) = state.next_at_ms else { break };
        all.extend(escalation::advance(policy, state, due, &nobody_resolver));
    }
    all
}

#[test]
fn escalation_repeats_n_times_then_stops() {
    let repeat = 2;
    let policy = three_levels(repeat);
    policy.validate().expect("valid policy");
    let t0 = 1_000_000;
    let (mut state, first) = escalation::start(&policy, t0, &nobody_resolver);
    let mut all = first;
    all.extend(run_to_end(&policy, &mut state));
    let steps: Vec<(usize, u32)> = all.iter().map(|p| (p.level, p.round)).collect();
    let expected: Vec<(usize, u32)> = (0..=repeat)
        .flat_map(|round| (0..3).map(move |level| (level, round)))
        .collect();
    assert_eq!(steps, expected, "three rounds of three levels, in order");
    // Each round takes 5 + 10 + 15 minutes.
    assert_eq!(all[3].due_at_ms, t0 + 30 * MINUTE);
    assert_eq!(all[8].due_at_ms, t0 + 2 * 30 * MINUTE + 15 * MINUTE);
    assert!(state.done);
    assert_eq!(state.next_at_ms, None);
    assert!(escalation::advance(&policy, &mut state, i64::MAX, &nobody_resolver).is_empty());
}

#[test]
fn escalation_stops_on_acknowledge() {
    let policy = three_levels(3);
    let t0 = 0;
    let (mut state, _) = escalation::start(&policy, t0, &nobody_resolver);
    let bob = escalation::advance(&policy, &mut state, t0 + 6 * MINUTE, &nobody_resolver);
    assert_eq!(bob.len(), 1);
    escalation::acknowledge(&mut state);
    assert_eq!(state.next_at_ms, None);
    for t in [t0 + 15 * MINUTE, t0 + 10 * HOUR, i64::MAX] {
        assert!(
            escalation::advance(&policy, &mut state, t, &nobody_resolver).is_empty(),
            "no page after acknowledge at {t}"
        );
    }
    assert!(state.acknowledged);
}

#[test]
fn escalation_stops_on_resolve() {
    let policy = three_levels(3);
    let (mut state, _) = escalation::start(&policy, 0, &nobody_resolver);
    escalation::resolve(&mut state);
    assert!(state.done);
    assert!(escalation::advance(&policy, &mut state, 10 * HOUR, &nobody_resolver).is_empty());
}

#[test]
fn escalation_catch_up_after_downtime_pages_each_skipped_level_once() {
    let policy = three_levels(0);
    let t0 = 0;
    let (mut state, _) = escalation::start(&policy, t0, &nobody_resolver);
    // The server was down for an hour: both remaining levels came due meanwhile.
    let pages = escalation::advance(&policy, &mut state, t0 + HOUR, &nobody_resolver);
    assert_eq!(
        paged(&pages),
        [
            (1, 0, Some("bob"), t0 + 5 * MINUTE),
            (2, 0, Some("carol"), t0 + 15 * MINUTE),
        ]
    );
    assert!(state.done);
}

#[test]
fn escalation_catch_up_across_rounds_ends_where_stepping_would() {
    let policy = three_levels(50);
    let t0 = 0;
    let (mut caught_up, _) = escalation::start(&policy, t0, &nobody_resolver);
    let (mut stepped, _) = escalation::start(&policy, t0, &nobody_resolver);
    let down_until = t0 + 5 * HOUR + 7 * MINUTE;

    let pages = escalation::advance(&policy, &mut caught_up, down_until, &nobody_resolver);
    let mut levels: Vec<usize> = pages.iter().map(|p| p.level).collect();
    levels.sort_unstable();
    assert_eq!(levels, [0, 1, 2], "ten missed rounds page each level once");

    while let Some(due) = stepped.next_at_ms.filter(|&d| d <= down_until) {
        escalation::advance(&policy, &mut stepped, due, &nobody_resolver);
    }
    assert_eq!(caught_up, stepped);
    // 5h07m is ten whole 30-minute rounds plus 7 minutes: round 10, level 1 (bob).
    assert_eq!((caught_up.level, caught_up.round), (1, 10));
    assert_eq!(caught_up.next_at_ms, Some(t0 + 5 * HOUR + 15 * MINUTE));
}

#[test]
fn escalation_schedule_target_resolved_at_paging_time_across_a_handoff() {
    let z = "Europe/Berlin";
    let schedules = vec![alice_bob_daily(vec![])];
    let policy = Policy {
        name: "primary".into(),
        levels: vec![
            level(&[Target::Schedule("primary".into())], 30 * MINUTE),
            level(
                &[Target::Schedule("primary".into()), user("manager")],
                30 * MINUTE,
            ),
        ],
        repeat: 0,
    };
    let t0 = local(z, "2026-01-06T08:45");
    let (mut state, first) = escalation::start(&policy, t0, schedules.as_slice());
    assert_eq!(paged(&first), [(0, 0, Some("alice"), t0)]);
    // At 09:15 bob has taken over: the second level pages him, not alice.
    let second = escalation::advance(&policy, &mut state, t0 + 30 * MINUTE, schedules.as_slice());
    assert_eq!(
        paged(&second),
        [
            (1, 0, Some("bob"), t0 + 30 * MINUTE),
            (1, 0, Some("manager"), t0 + 30 * MINUTE),
        ]
    );
    assert_eq!(second[0].target, Target::Schedule("primary".into()));
}

#[test]
fn escalation_deduplicates_users_and_reports_nobody_on_call() {
    let policy = Policy {
        name: "dedupe".into(),
        levels: vec![level(
            &[
                user("alice"),
                Target::Schedule("alice-schedule".into()),
                user("alice"),
                Target::Schedule("empty".into()),
                Target::Schedule("empty".into()),
            ],
            MINUTE,
        )],
        repeat: 0,
    };
    let resolver =
        |schedule: &str, _at: i64| (schedule == "alice-schedule").then(|| "alice".to_owned());
    let (state, pages) = escalation::start(&policy, 0, &resolver);
    assert_eq!(paged(&pages), [(0, 0, Some("alice"), 0), (0, 0, None, 0)]);
    assert_eq!(pages[0].target, user("alice"));
    assert_eq!(pages[1].target, Target::Schedule("empty".into()));
    assert!(state.done);
}

#[test]
fn policy_validation_names_fields() {
    let empty = Policy {
        name: "p".into(),
        levels: vec![],
        repeat: 0,
    };
    let errors = empty.validate().expect_err("no levels").errors;
    assert_eq!(errors, [PolicyError::NoLevels]);

    let bad = Policy {
        name: "p".into(),
        levels: vec![level(&[], 0), level(&[user(" ")], 0)],
        repeat: MAX_REPEAT + 1,
    };
    let errors = bad.validate().expect_err("invalid").errors;
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        texts[0].starts_with("levels[0].targets: no targets"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("levels[0].delay_ms: 0"), "{texts:?}");
    assert!(
        texts[2].starts_with("levels[1].targets[0]: must not be empty"),
        "{texts:?}"
    );
    assert!(texts[3].starts_with("levels[1].delay_ms: 0"), "{texts:?}");
    assert!(texts[4].starts_with("repeat: 101"), "{texts:?}");
    assert_eq!(texts.len(), 5);

    // A zero delay on the last level is fine when it is never used.
    let once = Policy {
        name: "p".into(),
        levels: vec![level(&[user("a")], MINUTE), level(&[user("b")], 0)],
        repeat: 0,
    };
    assert_eq!(once.validate(), Ok(()));
}

#[test]
fn escalation_state_round_trips_through_json() {
    let policy = three_levels(1);
    let (state, pages) = escalation::start(&policy, 42, &nobody_resolver);
    let json = serde_json::to_string(&state).expect("serialises");
    assert_eq!(
        serde_json::from_str::<EscalationState>(&json).expect("parses"),
        state
    );
    let page_json = serde_json::to_string(&pages[0]).expect("serialises");
    assert!(
        page_json.contains(r#""target":{"user":"alice"}"#),
        "{page_json}"
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe", // half-hour daylight-saving shift
    "Pacific/Apia",        // skipped a whole calendar day in 2011
    "Asia/Kolkata",
];

fn arb_rotation() -> impl Strategy<Value = Rotation> {
    prop_oneof![
        Just(Rotation::Daily),
        Just(Rotation::Weekly),
        (1u32..=72).prop_map(Rotation::Hours),
        any::<u32>().prop_map(|n| Rotation::Hours(n.max(1))),
    ]
}

fn arb_restriction() -> impl Strategy<Value = Restriction> {
    (
        proptest::collection::vec(0usize..7, 0..3),
        0u16..1440,
        0u16..=1440,
    )
        .prop_map(|(days, start, end)| {
            const ALL: [Weekday; 7] = [
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
                Weekday::Saturday,
                Weekday::Sunday,
            ];
            Restriction {
                days: days.into_iter().map(|d| ALL[d]).collect(),
                start: format!("{:02}:{:02}", start / 60, start % 60),
                end: format!("{:02}:{:02}", end / 60, end % 60),
            }
        })
}

fn arb_layer(index: usize) -> impl Strategy<Value = Layer> {
    (
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4),
        arb_rotation(),
        (2005i16..2035, 1i8..=12, 1i8..=28, 0i8..24, 0i8..60),
        proptest::collection::vec(arb_restriction(), 0..3),
    )
        .prop_map(
            move |(who, rotation, (y, mo, d, h, mi), restrictions)| Layer {
                name: format!("layer{index}"),
                users: users(&who),
                rotation,
                start: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}"),
                restrictions,
            },
        )
}

/// A valid schedule and an anchor instant near its layer starts.
fn arb_schedule() -> impl Strategy<Value = (Schedule, i64)> {
    let layers = (0usize..4).prop_flat_map(|n| (0..n).map(arb_layer).collect::<Vec<_>>());
    (
        prop::sample::select(&ZONES[..]),
        layers,
        proptest::collection::vec(
            (prop_oneof![Just("a"), Just("o")], -400i64..400, 1i64..200),
            0..3,
        ),
        -200_000i64..200_000,
    )
        .prop_map(|(zone, layers, raw_overrides, offset_hours)| {
            let anchor = utc("2020-01-01T00:00:00Z") + offset_hours * HOUR;
            let overrides = raw_overrides
                .into_iter()
                .map(|(user, start, len)| Override {
                    user: user.into(),
                    start_ms: anchor + start * HOUR,
                    end_ms: anchor + (start + len) * HOUR,
                })
                .collect();
            (schedule(zone, layers, overrides), anchor)
        })
}

/// Instants at which the test zones change offset (UTC), to probe times around them.
const TRANSITIONS: [&str; 6] = [
    "2026-03-29T01:00:00Z", // Europe/Berlin spring forward
    "2026-10-25T01:00:00Z", // Europe/Berlin fall back
    "2026-03-08T07:00:00Z", // America/New_York spring forward
    "2026-11-01T06:00:00Z", // America/New_York fall back
    "2026-04-04T15:00:00Z", // Australia/Lord_Howe half-hour fall back
    "2011-12-30T10:00:00Z", // Pacific/Apia skips 2011-12-30
];

fn arb_time(anchor: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        (
            prop::sample::select(&TRANSITIONS[..]),
            -48 * HOUR..48 * HOUR
        )
            .prop_map(|(at, d)| utc(at) + d),
        (-2_000i64 * HOUR..2_000 * HOUR).prop_map(move |d| anchor + d),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn prop_on_call_at_never_panics_and_shift_bounds_are_consistent(
        (s, t) in arb_schedule().prop_flat_map(|(s, anchor)| (Just(s), arb_time(anchor)))
    ) {
        let compiled = s.compile().map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(oc) = compiled.on_call_at(t) {
            let here = Some((oc.user.clone(), oc.layer.clone()));
            if let Some(until) = oc.until_ms {
                prop_assert!(until > t);
                prop_assert_eq!(&who(&compiled, until - 1), &here, "same shift just before until");
                prop_assert_ne!(&who(&compiled, until), &here, "answer changes at until");
                prop_assert_eq!(compiled.next_handoff(t), Some(until));
            }
            if let Some(since) = oc.since_ms {
                prop_assert!(since <= t);
                prop_assert_eq!(&who(&compiled, since), &here, "same shift from since");
                prop_assert_ne!(&who(&compiled, since - 1), &here, "answer differs before since");
            }
        }
        let window = compiled.shifts(t, t.saturating_add(3 * 24 * HOUR));
        for pair in window.windows(2) {
            prop_assert!(pair[0].end_ms <= pair[1].start_ms);
        }
        for shift in &window {
            prop_assert!(shift.start_ms < shift.end_ms);
            prop_assert_eq!(user_at(&compiled, shift.start_ms), Some(shift.user.clone()));
            prop_assert_eq!(user_at(&compiled, shift.end_ms - 1), Some(shift.user.clone()));
        }
        let _ = now_and_next(&compiled, t);
    }

    #[test]
    fn prop_escalation_never_pages_after_acknowledge(
        delays in proptest::collection::vec(0u64..100, 1..5),
        repeat in 0u32..5,
        calls in proptest::collection::vec(0i64..2_000, 1..20),
        ack_after in 0usize..20,
    ) {
        let policy = Policy {
            name: "p".into(),
            levels: delays.iter().enumerate().map(|(i, &d)| Level {
                targets: vec![Target::User(format!("u{i}"))],
                delay_ms: d,
            }).collect(),
            repeat,
        };
        let (mut state, _) = escalation::start(&policy, 0, &nobody_resolver);
        let mut now = 0i64;
        for (i, step) in calls.iter().enumerate() {
            if i == ack_after {
                escalation::acknowledge(&mut state);
            }
            now += step;
            let pages = escalation::advance(&policy, &mut state, now, &nobody_resolver);
            if i >= ack_after {
                prop_assert!(pages.is_empty(), "paged after acknowledge: {:?}", pages);
            }
            for p in &pages {
                prop_assert!(p.due_at_ms <= now);
            }
        }
    }

    #[test]
    fn prop_escalation_catch_up_matches_stepping(
        delays in proptest::collection::vec(1u64..100, 1..5),
        repeat in 0u32..=MAX_REPEAT,
        down_for in 0i64..50_000,
    ) {
        let policy = Policy {
            name: "p".into(),
            levels: delays.iter().enumerate().map(|(i, &d)| Level {
                targets: vec![Target::User(format!("u{i}"))],
                delay_ms: d,
            }).collect(),
            repeat,
        };
        let (mut caught_up, _) = escalation::start(&policy, 0, &nobody_resolver);
        let mut stepped = caught_up.clone();
        let pages = escalation::advance(&policy, &mut caught_up, down_for, &nobody_resolver);
        let mut levels: Vec<usize> = pages.iter().map(|p| p.level).collect();
        let paged_count = levels.len();
        levels.dedup();
        levels.sort_unstable();
        levels.dedup();
        prop_assert_eq!(levels.len(), paged_count, "a level paged twice in one call");
        while let Some(due) = stepped.next_at_ms.filter(|&d| d <= down_for) {
            escalation::advance(&policy, &mut stepped, due, &nobody_resolver);
        }
        prop_assert_eq!(caught_up, stepped);
    }
}
