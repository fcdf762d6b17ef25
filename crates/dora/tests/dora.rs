//! Behaviour of sluice-dora through its public API: hand-computed fixtures for each metric,
//! how failed and aborted deploys count, buckets across week boundaries, levels at their
//! thresholds, well-formed and escaped SVG, and properties (no panics, rates in [0, 1],
//! series agreeing with compute) over arbitrary input.

use proptest::prelude::*;
use quick_xml::Reader;
use quick_xml::events::Event;
use sluice_dora::svg::{Unit, bar_chart, dora_charts, line_chart};
use sluice_dora::{
    Bucket, Change, DAY_MS, DoraError, Failure, FailureKind, FrequencyBand, HOUR_MS, Level,
    MAX_BUCKETS, MINUTE_MS, Metrics, ProdDeploy, SECOND_MS, WEEK_MS, change_failure_level, compute,
    day_start, for_service, frequency_band, human_duration, iso_week_start, lead_time_level,
    parse_since, recovery_level, series, utc_date,
};

/// 2025-03-10 00:00:00 UTC, a Monday.
const T0: i64 = 1_741_564_800_000;

fn deploy(id: i64, finished_at_ms: i64, succeeded: bool) -> ProdDeploy {
    ProdDeploy {
        id,
        project: "shop".to_owned(),
        service: "api".to_owned(),
        started_at_ms: finished_at_ms - 5 * MINUTE_MS,
        finished_at_ms,
        succeeded,
        changes: Vec::new(),
        failure: None,
    }
}

fn with_changes(mut d: ProdDeploy, changes: &[(&str, i64)]) -> ProdDeploy {
    d.changes = changes
        .iter()
        .map(|(commit, at)| Change {
            commit: (*commit).to_owned(),
            committed_at_ms: *at,
        })
        .collect();
    d
}

fn with_failure(
    mut d: ProdDeploy,
    kind: FailureKind,
    at_ms: i64,
    restored: Option<i64>,
) -> ProdDeploy {
    d.failure = Some(Failure {
        kind,
        at_ms,
        restored_at_ms: restored,
    });
    d
}

/// The metrics of `deploys` over the week from T0, seen from well after it.
fn week(deploys: &[ProdDeploy]) -> Metrics {
    compute(deploys, T0, T0 + WEEK_MS, T0 + 30 * DAY_MS)
}

// ---- empty and failure-free input --------------------------------------------------------

#[test]
fn no_deploys_gives_no_figures_and_no_levels() {
    let m = week(&[]);
    assert_eq!(m.deployments, 0);
    assert_eq!(m.deploys_per_day, 0.0);
    assert_eq!(m.deployment_frequency_label, "no deployments in the period");
    assert_eq!(m.change_failure_rate, None);
    assert_eq!(m.lead_time.samples, 0);
    assert_eq!(m.lead_time.median_ms, None);
    assert_eq!(m.recovery.median_ms, None);
    assert_eq!(m.levels.overall, None);
    assert_eq!(m.levels.deployment_frequency, None);
    assert_eq!(m.levels.change_failure_rate, None);
}

#[test]
fn deploys_without_failures_have_a_zero_rate() {
    let deploys: Vec<_> = (0..3).map(|i| deploy(i, T0 + i * DAY_MS, true)).collect();
    let m = week(&deploys);
    assert_eq!(m.deployments, 3);
    assert_eq!(m.failed_deploys, 0);
    assert_eq!(m.change_failure_rate, Some(0.0));
    assert_eq!(m.levels.change_failure_rate, Some(Level::Elite));
    assert_eq!(m.recovery.samples, 0);
    assert_eq!(m.levels.recovery, None);
    assert_eq!(m.unrecovered_failures, 0);
}

#[test]
fn inverted_window_counts_nothing() {
    let m = compute(&[deploy(1, T0, true)], T0 + DAY_MS, T0, T0);
    assert_eq!(m.deployments, 0);
    assert_eq!(m.deploys_per_day, 0.0);
}

// ---- deployment frequency ------------------------------------------------------------------

#[test]
fn frequency_is_deployments_per_day_of_the_window() {
    // 14 deployments in 7 days: 2 per day.
    let deploys: Vec<_> = (0..14)
        .map(|i| deploy(i, T0 + i * 12 * HOUR_MS, true))
        .collect();
    let m = week(&deploys);
    assert_eq!(m.deployments, 14);
    assert!((m.deploys_per_day - 2.0).abs() < 1e-12);
    assert_eq!(m.deployment_frequency_label, "on demand (multiple per day)");
    assert_eq!(m.levels.deployment_frequency, Some(Level::Elite));

    // Exactly one per day is not "multiple per day".
    let daily: Vec<_> = (0..7).map(|i| deploy(i, T0 + i * DAY_MS, true)).collect();
    let m = week(&daily);
    assert!((m.deploys_per_day - 1.0).abs() < 1e-12);
    assert_eq!(
        m.deployment_frequency_label,
        "between once per day and once per week"
    );
    assert_eq!(m.levels.deployment_frequency, Some(Level::High));
}

#[test]
fn frequency_window_ends_at_now_when_now_is_inside_it() {
    // Five deployments in the first five days of a 30-day window seen on day 5: 1 per day,
    // not 5 per 30 days.
    let deploys: Vec<_> = (0..5).map(|i| deploy(i, T0 + i * DAY_MS, true)).collect();
    let m = compute(&deploys, T0, T0 + 30 * DAY_MS, T0 + 5 * DAY_MS);
    assert!((m.deploys_per_day - 1.0).abs() < 1e-12);
    let later = compute(&deploys, T0, T0 + 30 * DAY_MS, T0 + 40 * DAY_MS);
    assert!((later.deploys_per_day - 5.0 / 30.0).abs() < 1e-12);
    assert_eq!(later.levels.deployment_frequency, Some(Level::High));
}

#[test]
fn frequency_bands_at_their_thresholds() {
    use FrequencyBand::*;
    assert_eq!(frequency_band(0, WEEK_MS), None);
    assert_eq!(frequency_band(5, 0), None);
    assert_eq!(frequency_band(2, DAY_MS), OnDemand);
    assert_eq!(frequency_band(2, 2 * DAY_MS - 1), OnDemand);
    assert_eq!(frequency_band(1, DAY_MS), DailyToWeekly);
    assert_eq!(frequency_band(1, WEEK_MS), DailyToWeekly);
    assert_eq!(frequency_band(1, WEEK_MS + 1), WeeklyToMonthly);
    assert_eq!(frequency_band(1, 30 * DAY_MS), WeeklyToMonthly);
    assert_eq!(frequency_band(1, 30 * DAY_MS + 1), MonthlyToSixMonthly);
    assert_eq!(frequency_band(1, 180 * DAY_MS), MonthlyToSixMonthly);
    assert_eq!(frequency_band(1, 180 * DAY_MS + 1), RarerThanSixMonths);
    assert_eq!(OnDemand.level(), Some(Level::Elite));
    assert_eq!(DailyToWeekly.level(), Some(Level::High));
    assert_eq!(WeeklyToMonthly.level(), Some(Level::Medium));
    assert_eq!(MonthlyToSixMonthly.level(), Some(Level::Low));
    assert_eq!(RarerThanSixMonths.level(), Some(Level::Low));
    assert_eq!(None.level(), Option::None);
}

// ---- change lead time ----------------------------------------------------------------------

#[test]
fn lead_time_is_per_change_with_the_median_of_the_middle_two() {
    let a = with_changes(
        deploy(1, T0 + 10 * HOUR_MS, true),
        &[("c1", T0), ("c2", T0 + 8 * HOUR_MS)],
    );
    let b = with_changes(
        deploy(2, T0 + 20 * HOUR_MS, true),
        &[("c3", T0 + 15 * HOUR_MS), ("c4", T0 + 19 * HOUR_MS)],
    );
    // Lead times 10h, 2h, 5h, 1h: sorted 1, 2, 5, 10.
    let m = week(&[a, b]);
    assert_eq!(m.lead_time.samples, 4);
    // Median of an even count: mean of 2h and 5h.
    assert_eq!(m.lead_time.median_ms, Some(3 * HOUR_MS + 30 * MINUTE_MS));
    // p90: rank 0.9 * 3 = 2.7, so 5h + 0.7 * (10h - 5h) = 8.5h.
    assert_eq!(m.lead_time.p90_ms, Some(8 * HOUR_MS + 30 * MINUTE_MS));
    assert_eq!(m.lead_time.clamped, 0);
    assert_eq!(m.levels.lead_time, Some(Level::Elite));
}

#[test]
fn lead_time_of_an_odd_count_is_the_middle_sample() {
    let d = with_changes(
        deploy(1, T0 + 3 * DAY_MS, true),
        &[
            ("a", T0),
            ("b", T0 + 2 * DAY_MS),
            ("c", T0 + 3 * DAY_MS - HOUR_MS),
        ],
    );
    let m = week(&[d]);
    assert_eq!(m.lead_time.median_ms, Some(DAY_MS));
    assert_eq!(m.levels.lead_time, Some(Level::High));
}

#[test]
fn a_change_counts_once_at_its_first_successful_deploy() {
    // c1 is brought by a deploy that is rolled back, then again by a good one, then appears
    // once more in a later deploy: its lead time ends at the first good one.
    let rolled_back = with_failure(
        with_changes(deploy(1, T0 + HOUR_MS, false), &[("c1", T0)]),
        FailureKind::RolledBack,
        T0 + HOUR_MS,
        Some(T0 + 2 * HOUR_MS),
    );
    let good = with_changes(deploy(2, T0 + 3 * HOUR_MS, true), &[("c1", T0)]);
    let again = with_changes(deploy(3, T0 + 9 * HOUR_MS, true), &[("c1", T0)]);
    let m = week(&[again, rolled_back, good]);
    assert_eq!(m.lead_time.samples, 1);
    assert_eq!(m.lead_time.median_ms, Some(3 * HOUR_MS));
}

#[test]
fn a_change_first_deployed_before_the_window_is_not_counted_in_it() {
    let before = with_changes(deploy(1, T0 - HOUR_MS, true), &[("old", T0 - 2 * HOUR_MS)]);
    let inside = with_changes(
        deploy(2, T0 + HOUR_MS, true),
        &[("old", T0 - 2 * HOUR_MS), ("new", T0)],
    );
    let m = week(&[before, inside]);
    assert_eq!(m.lead_time.samples, 1);
    assert_eq!(m.lead_time.median_ms, Some(HOUR_MS));
}

#[test]
fn a_commit_dated_after_its_deploy_counts_as_zero_and_is_reported() {
    let d = with_changes(
        deploy(1, T0 + HOUR_MS, true),
        &[("skewed", T0 + 2 * HOUR_MS), ("fine", T0)],
    );
    let m = week(&[d]);
    assert_eq!(m.lead_time.samples, 2);
    assert_eq!(m.lead_time.clamped, 1);
    // Samples 0 and 1h.
    assert_eq!(m.lead_time.median_ms, Some(30 * MINUTE_MS));
}

// ---- failures, change failure rate and recovery --------------------------------------------

#[test]
fn a_rolled_back_deploy_is_a_failure_restored_when_the_rollback_finished() {
    let good = with_changes(deploy(1, T0 + HOUR_MS, true), &[("a", T0)]);
    let bad = with_failure(
        with_changes(
            deploy(2, T0 + 5 * HOUR_MS, false),
            &[("b", T0 + 4 * HOUR_MS)],
        ),
        FailureKind::RolledBack,
        T0 + 5 * HOUR_MS + 30 * MINUTE_MS,
        Some(T0 + 5 * HOUR_MS + 45 * MINUTE_MS),
    );
    let m = week(&[good, bad]);
    assert_eq!(m.deployments, 2);
    assert_eq!(m.failed_deploys, 1);
    assert_eq!(m.failures.rolled_back, 1);
    assert_eq!(m.change_failure_rate, Some(0.5));
    assert_eq!(m.recovery.samples, 1);
    assert_eq!(m.recovery.median_ms, Some(15 * MINUTE_MS));
    assert_eq!(m.levels.recovery, Some(Level::Elite));
    assert_eq!(m.levels.change_failure_rate, Some(Level::Low));
    // The rolled-back deploy's change never stayed in production.
    assert_eq!(m.lead_time.samples, 1);
}

#[test]
fn an_incident_linked_deploy_is_a_failure_and_its_changes_still_count() {
    let d = with_failure(
        with_changes(deploy(1, T0 + HOUR_MS, true), &[("a", T0)]),
        FailureKind::Incident,
        T0 + 2 * DAY_MS,
        Some(T0 + 2 * DAY_MS + 3 * HOUR_MS),
    );
    let fine: Vec<_> = (2..5).map(|i| deploy(i, T0 + i * DAY_MS, true)).collect();
    let mut all = fine;
    all.push(d);
    let m = week(&all);
    assert_eq!(m.deployments, 4);
    assert_eq!(m.failures.incident, 1);
    assert_eq!(m.change_failure_rate, Some(0.25));
    assert_eq!(m.recovery.median_ms, Some(3 * HOUR_MS));
    assert_eq!(m.levels.recovery, Some(Level::High));
    assert_eq!(m.lead_time.samples, 1);
}

#[test]
fn a_deploy_that_never_reached_production_is_not_a_deployment() {
    let aborted = with_changes(deploy(1, T0 + HOUR_MS, false), &[("a", T0)]);
    let good = deploy(2, T0 + 2 * HOUR_MS, true);
    let m = week(&[aborted, good]);
    assert_eq!(m.deployments, 1);
    assert_eq!(m.aborted, 1);
    assert_eq!(m.failed_deploys, 0);
    assert_eq!(m.change_failure_rate, Some(0.0));
    assert_eq!(m.lead_time.samples, 0);
}

#[test]
fn a_failed_rollout_in_production_is_a_failure() {
    let d = with_failure(
        deploy(1, T0 + HOUR_MS, false),
        FailureKind::FailedDeploy,
        T0 + 50 * MINUTE_MS,
        Some(T0 + HOUR_MS),
    );
    let m = week(&[d]);
    assert_eq!(m.deployments, 1);
    assert_eq!(m.failures.failed_deploy, 1);
    assert_eq!(m.change_failure_rate, Some(1.0));
    assert_eq!(m.recovery.median_ms, Some(10 * MINUTE_MS));
}

#[test]
fn unrecovered_failures_are_counted_aged_and_weigh_on_the_level() {
    let open = with_failure(
        deploy(1, T0 + HOUR_MS, true),
        FailureKind::Incident,
        T0 + HOUR_MS,
        None,
    );
    let quick = with_failure(
        deploy(2, T0 + 2 * HOUR_MS, false),
        FailureKind::RolledBack,
        T0 + 2 * HOUR_MS,
        Some(T0 + 2 * HOUR_MS + 10 * MINUTE_MS),
    );
    let now = T0 + 3 * DAY_MS + HOUR_MS;
    let m = compute(&[open, quick], T0, T0 + WEEK_MS, now);
    assert_eq!(m.unrecovered_failures, 1);
    assert_eq!(m.longest_unrecovered_ms, Some(3 * DAY_MS));
    // Only the restored failure is a sample...
    assert_eq!(m.recovery.samples, 1);
    assert_eq!(m.recovery.median_ms, Some(10 * MINUTE_MS));
    // ...but the open one (3 days so far) keeps the level from looking Elite: median of
    // 10m and 3d is about 1.5 days.
    assert_eq!(m.levels.recovery, Some(Level::Medium));
    assert_eq!(m.levels.overall, Some(Level::Low));
}

#[test]
fn a_restore_dated_before_its_failure_counts_as_zero_and_is_reported() {
    let d = with_failure(
        deploy(1, T0, false),
        FailureKind::RolledBack,
        T0 + HOUR_MS,
        Some(T0),
    );
    let m = week(&[d]);
    assert_eq!(m.recovery.median_ms, Some(0));
    assert_eq!(m.recovery.clamped, 1);
}

// ---- levels --------------------------------------------------------------------------------

#[test]
fn levels_at_their_thresholds() {
    assert_eq!(lead_time_level(DAY_MS - 1), Level::Elite);
    assert_eq!(lead_time_level(DAY_MS), Level::High);
    assert_eq!(lead_time_level(WEEK_MS - 1), Level::High);
    assert_eq!(lead_time_level(WEEK_MS), Level::Medium);
    assert_eq!(lead_time_level(30 * DAY_MS - 1), Level::Medium);
    assert_eq!(lead_time_level(30 * DAY_MS), Level::Low);

    assert_eq!(recovery_level(HOUR_MS - 1), Level::Elite);
    assert_eq!(recovery_level(HOUR_MS), Level::High);
    assert_eq!(recovery_level(DAY_MS - 1), Level::High);
    assert_eq!(recovery_level(DAY_MS), Level::Medium);
    assert_eq!(recovery_level(WEEK_MS - 1), Level::Medium);
    assert_eq!(recovery_level(WEEK_MS), Level::Low);

    assert_eq!(change_failure_level(0, 0), None);
    assert_eq!(change_failure_level(0, 7), Some(Level::Elite));
    assert_eq!(change_failure_level(1, 20), Some(Level::Elite)); // 5%
    assert_eq!(change_failure_level(1, 19), Some(Level::High)); // 5.3%
    assert_eq!(change_failure_level(2, 20), Some(Level::High)); // 10%
    assert_eq!(change_failure_level(3, 29), Some(Level::Medium)); // 10.3%
    assert_eq!(change_failure_level(4, 20), Some(Level::Medium)); // 20%
    assert_eq!(change_failure_level(21, 100), Some(Level::Low)); // 21%
}

#[test]
fn overall_is_the_worst_known_level() {
    // Two deploys a day for a week (Elite frequency), no failures, but changes that waited
    // 40 days (Low lead time).
    let deploys: Vec<_> = (0..14)
        .map(|i| {
            let at = T0 + i * 12 * HOUR_MS;
            with_changes(deploy(i, at, true), &[(&format!("c{i}"), at - 40 * DAY_MS)])
        })
        .collect();
    let m = week(&deploys);
    assert_eq!(m.levels.deployment_frequency, Some(Level::Elite));
    assert_eq!(m.levels.change_failure_rate, Some(Level::Elite));
    assert_eq!(m.levels.lead_time, Some(Level::Low));
    assert_eq!(m.levels.recovery, None);
    assert_eq!(m.levels.overall, Some(Level::Low));
    assert!(Level::Elite < Level::High && Level::Medium < Level::Low);
}

// ---- service filter ------------------------------------------------------------------------

#[test]
fn for_service_matches_by_name_or_project_and_name() {
    let mut web = deploy(2, T0, true);
    web.service = "web".to_owned();
    let mut other_api = deploy(3, T0, true);
    other_api.project = "blog".to_owned();
    let all = vec![deploy(1, T0, true), web, other_api];
    let ids = |v: Vec<ProdDeploy>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(for_service(&all, "api")), vec![1, 3]);
    assert_eq!(ids(for_service(&all, "shop/api")), vec![1]);
    assert_eq!(ids(for_service(&all, "web")), vec![2]);
    assert!(for_service(&all, "nope").is_empty());
}

// ---- series --------------------------------------------------------------------------------

#[test]
fn weekly_buckets_split_at_monday_midnight_utc() {
    let wed_before = T0 - 5 * DAY_MS; // Wednesday 2025-03-05
    let deploys = vec![
        deploy(1, T0 - 7 * DAY_MS + 12 * HOUR_MS, true), // Monday 03-03: before the window
        deploy(2, T0 - HOUR_MS, true),                   // Sunday 03-09 23:00
        deploy(3, T0, true),                             // Monday 03-10 00:00
        with_failure(
            deploy(4, T0 + HOUR_MS, false),
            FailureKind::RolledBack,
            T0 + HOUR_MS,
            Some(T0 + 2 * HOUR_MS),
        ),
        deploy(5, T0 + 8 * DAY_MS, true), // Tuesday 03-18
    ];
    let points = series(&deploys, wed_before, T0 + 9 * DAY_MS, Bucket::Week);
    let starts: Vec<_> = points.iter().map(|p| utc_date(p.start_ms)).collect();
    assert_eq!(starts, vec![(2025, 3, 3), (2025, 3, 10), (2025, 3, 17)]);
    let counts: Vec<_> = points.iter().map(|p| p.deployments).collect();
    assert_eq!(counts, vec![1, 2, 1]);
    let failures: Vec<_> = points.iter().map(|p| p.failures).collect();
    assert_eq!(failures, vec![0, 1, 0]);
    assert_eq!(points[1].change_failure_rate, Some(0.5));
    assert_eq!(points[1].recovery_median_ms, Some(HOUR_MS));
    assert_eq!(points[0].recovery_median_ms, None);
    assert!(
        points
            .iter()
            .all(|p| p.start_ms == iso_week_start(p.start_ms))
    );
}

#[test]
fn daily_buckets_include_empty_days_and_lead_times() {
    let deploys = vec![
        with_changes(
            deploy(1, T0 + 2 * HOUR_MS, true),
            &[("a", T0), ("b", T0 + HOUR_MS)],
        ),
        with_changes(
            deploy(2, T0 + 2 * DAY_MS + HOUR_MS, true),
            &[("c", T0 + DAY_MS)],
        ),
    ];
    let points = series(&deploys, T0, T0 + 3 * DAY_MS, Bucket::Day);
    assert_eq!(points.len(), 3);
    assert!(points.iter().all(|p| p.start_ms == day_start(p.start_ms)));
    assert_eq!(
        points[0].lead_time_median_ms,
        Some(HOUR_MS + 30 * MINUTE_MS)
    );
    assert_eq!(points[1].deployments, 0);
    assert_eq!(points[1].lead_time_median_ms, None);
    assert_eq!(points[1].change_failure_rate, None);
    assert_eq!(points[2].lead_time_median_ms, Some(DAY_MS + HOUR_MS));
}

#[test]
fn series_of_an_empty_window_is_empty_and_a_huge_one_keeps_the_newest_buckets() {
    assert!(series(&[], T0, T0, Bucket::Day).is_empty());
    assert!(series(&[], T0, T0 - 1, Bucket::Week).is_empty());
    let points = series(&[deploy(1, T0 - 1, true)], 0, T0, Bucket::Day);
    assert_eq!(points.len(), MAX_BUCKETS);
    let last = points.last().map(|p| p.start_ms);
    assert_eq!(last, Some(T0 - DAY_MS));
    assert_eq!(points.last().map(|p| p.deployments), Some(1));
}

#[test]
fn series_agrees_with_compute_on_whole_buckets() {
    let deploys: Vec<_> = (0..40)
        .map(|i| {
            let at = T0 + i * 7 * HOUR_MS;
            let d = with_changes(
                deploy(i, at, i % 5 != 0),
                &[(&format!("c{i}"), at - i * MINUTE_MS)],
            );
            if i % 5 == 0 {
                with_failure(d, FailureKind::FailedDeploy, at, Some(at + i * MINUTE_MS))
            } else {
                d
            }
        })
        .collect();
    for p in series(&deploys, T0, T0 + 14 * DAY_MS, Bucket::Day) {
        let m = compute(&deploys, p.start_ms, p.start_ms + DAY_MS, T0 + 30 * DAY_MS);
        assert_eq!(p.deployments, m.deployments);
        assert_eq!(p.failures, m.failed_deploys);
        assert_eq!(p.change_failure_rate, m.change_failure_rate);
        assert_eq!(p.lead_time_median_ms, m.lead_time.median_ms);
        assert_eq!(p.recovery_median_ms, m.recovery.median_ms);
    }
}

// ---- durations and windows -----------------------------------------------------------------

#[test]
fn durations_read_with_two_units_truncated() {
    assert_eq!(human_duration(45 * SECOND_MS), "45s");
    assert_eq!(human_duration(2 * HOUR_MS + 5 * MINUTE_MS), "2h 5m");
    assert_eq!(human_duration(3 * DAY_MS + 4 * HOUR_MS), "3d 4h");
    assert_eq!(
        human_duration(3 * DAY_MS + 4 * HOUR_MS + 59 * MINUTE_MS),
        "3d 4h"
    );
    assert_eq!(human_duration(2 * HOUR_MS), "2h");
    assert_eq!(human_duration(MINUTE_MS + 30 * SECOND_MS), "1m 30s");
    assert_eq!(human_duration(850), "850ms");
    assert_eq!(human_duration(0), "0s");
    assert_eq!(human_duration(-90 * SECOND_MS), "-1m 30s");
    assert!(human_duration(i64::MIN).starts_with('-'));
    assert!(human_duration(i64::MAX).ends_with('h'));
}

#[test]
fn since_windows_parse_and_reject_with_a_hint() {
    assert_eq!(parse_since("30d"), Ok(30 * DAY_MS));
    assert_eq!(parse_since(" 12w "), Ok(12 * WEEK_MS));
    assert_eq!(parse_since("48h"), Ok(48 * HOUR_MS));
    for bad in [
        "", "d", "30", "-3d", "3.5d", "0d", "30 d", "30D", "30é", "é",
    ] {
        let err = parse_since(bad);
        assert!(
            matches!(err, Err(DoraError::InvalidSince { .. })),
            "{bad:?} gave {err:?}"
        );
    }
    assert!(matches!(
        parse_since("3661d"),
        Err(DoraError::SinceTooLong { .. })
    ));
    assert!(matches!(
        parse_since("99999999999999999999999w"),
        Err(DoraError::SinceTooLong { .. })
    ));
    let message = parse_since("soon")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        "since value `soon` is not a duration: write a whole number followed by h, d or w (e.g. 30d)"
    );
}

// ---- JSON ----------------------------------------------------------------------------------

#[test]
fn metrics_round_trip_through_json_with_snake_case_names() {
    let d = with_failure(
        with_changes(deploy(1, T0 + HOUR_MS, true), &[("a", T0)]),
        FailureKind::Incident,
        T0 + 2 * HOUR_MS,
        Some(T0 + 3 * HOUR_MS),
    );
    let m = week(std::slice::from_ref(&d));
    let json = serde_json::to_value(&m).unwrap_or_default();
    assert_eq!(json["levels"]["lead_time"], "elite");
    assert_eq!(json["change_failure_rate"], 1.0);
    let back: Metrics = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, m);
    let input = serde_json::to_value(&d).unwrap_or_default();
    assert_eq!(input["failure"]["kind"], "incident");
}

// ---- SVG -----------------------------------------------------------------------------------

/// Parses `svg` as XML, failing the test unless it is well-formed with an `<svg>` root.
/// Returns every element name in document order and the text of each `<title>`.
fn parse_svg(svg: &str) -> (Vec<String>, Vec<String>) {
    let mut reader = Reader::from_str(svg);
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut titles = Vec::new();
    let mut text = String::new();
    loop {
        let event = reader.read_event().unwrap_or_else(|e| {
            panic!(
                "not well-formed at {}: {e}\n{svg}",
                reader.buffer_position()
            )
        });
        match event {
            Event::Start(e) | Event::Empty(e) if stack.is_empty() && !names.is_empty() => {
                panic!("second root element {:?}", e.name())
            }
            Event::Start(e) => {
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute: {err}"));
                    a.unescape_value()
                        .unwrap_or_else(|err| panic!("bad attribute value: {err}"));
                }
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                names.push(name.clone());
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                for a in e.attributes() {
                    a.unwrap_or_else(|err| panic!("bad attribute: {err}"));
                }
                names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.as_str()),
                    "mismatched end tag"
                );
                if name == "title" {
                    titles.push(std::mem::take(&mut text));
                }
            }
            Event::Text(t) => text.push_str(&t.decode().unwrap_or_else(|e| panic!("{e}"))),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().unwrap_or_else(|e| panic!("{e}")) {
                    text.push(c);
                } else {
                    let name = r.decode().unwrap_or_else(|e| panic!("{e}"));
                    let resolved = quick_xml::escape::resolve_xml_entity(&name)
                        .unwrap_or_else(|| panic!("unknown entity &{name};"));
                    text.push_str(resolved);
                }
            }
            Event::Eof => break,
            Event::CData(_) | Event::PI(_) | Event::DocType(_) => panic!("unexpected {event:?}"),
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    (names, titles)
}

#[test]
fn bar_chart_is_well_formed_with_a_title_per_bar() {
    let data = [("Mon", 3.0), ("Tue", 0.0), ("Wed", 7.0)];
    let svg = bar_chart("Deployments", &data, Unit::Count);
    let (names, titles) = parse_svg(&svg);
    assert_eq!(names.iter().filter(|n| *n == "rect").count(), 3);
    assert_eq!(titles, vec!["Deployments", "Mon: 3", "Tue: 0", "Wed: 7"]);
    assert!(svg.contains(r#"viewBox="0 0 720 320""#));
    assert!(!svg.contains("width=\"720\""));
}

#[test]
fn text_is_escaped_so_markup_in_titles_stays_text() {
    let evil = r#"<script>alert("x")</script> & 'co'"#;
    let svg = bar_chart(evil, &[(evil, 1.0)], Unit::Count);
    let (names, titles) = parse_svg(&svg);
    assert!(!names.iter().any(|n| n == "script"));
    assert!(!svg.contains("<script"));
    assert_eq!(titles[0], evil);
    assert_eq!(titles[1], format!("{evil}: 1"));
    let line = line_chart(evil, &[("a\u{0}b", Some(1.0))], Unit::Ratio);
    let (names, titles) = parse_svg(&line);
    assert!(!names.iter().any(|n| n == "script"));
    assert_eq!(titles[1], "a\u{FFFD}b: 100%");
}

#[test]
fn line_chart_leaves_gaps_for_missing_values() {
    let data = [
        ("1", Some(HOUR_MS as f64)),
        ("2", Some(2.0 * HOUR_MS as f64)),
        ("3", None),
        ("4", Some(f64::NAN)),
        ("5", Some(3.0 * HOUR_MS as f64)),
        ("6", Some(HOUR_MS as f64)),
    ];
    let svg = line_chart("Lead time", &data, Unit::DurationMs);
    let (names, titles) = parse_svg(&svg);
    assert_eq!(names.iter().filter(|n| *n == "circle").count(), 4);
    assert_eq!(titles[1..], ["1: 1h", "2: 2h", "5: 3h", "6: 1h"]);
    let path = svg
        .split("<path d=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    assert_eq!(path.matches('M').count(), 2, "two separate runs: {path}");
    assert_eq!(path.matches('L').count(), 2);
}

#[test]
fn empty_charts_say_no_data() {
    let empty: [(&str, f64); 0] = [];
    assert!(bar_chart("x", &empty, Unit::Count).contains("no data"));
    assert!(line_chart("x", &[("a", None::<f64>)], Unit::Ratio).contains("no data"));
    parse_svg(&bar_chart("x", &empty, Unit::Count));
}

#[test]
fn dora_charts_draws_the_four_metrics() {
    let deploys = vec![
        with_changes(deploy(1, T0 + HOUR_MS, true), &[("a", T0)]),
        with_failure(
            deploy(2, T0 + DAY_MS, false),
            FailureKind::RolledBack,
            T0 + DAY_MS,
            Some(T0 + DAY_MS + HOUR_MS),
        ),
    ];
    let points = series(&deploys, T0, T0 + 3 * DAY_MS, Bucket::Day);
    let charts = dora_charts(&points);
    let names: Vec<_> = charts.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "deployments",
            "lead_time",
            "change_failure_rate",
            "recovery_time"
        ]
    );
    let titles: Vec<Vec<String>> = charts.iter().map(|(_, svg)| parse_svg(svg).1).collect();
    assert_eq!(
        titles[0][1..],
        ["2025-03-10: 1", "2025-03-11: 1", "2025-03-12: 0"]
    );
    assert_eq!(titles[1][1..], ["2025-03-10: 1h"]);
    assert_eq!(titles[2][1..], ["2025-03-10: 0%", "2025-03-11: 100%"]);
    assert_eq!(titles[3][1..], ["2025-03-11: 1h"]);
}

// ---- properties ----------------------------------------------------------------------------

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (T0 - 3 * DAY_MS)..(T0 + 20 * DAY_MS),
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn arb_deploy() -> impl Strategy<Value = ProdDeploy> {
    let failure = prop_oneof![
        Just(FailureKind::RolledBack),
        Just(FailureKind::Incident),
        Just(FailureKind::FailedDeploy)
    ];
    (
        any::<i64>(),
        timestamp(),
        any::<bool>(),
        prop::collection::vec(("[a-e]", timestamp()), 0..4),
        prop::option::of((failure, timestamp(), prop::option::of(timestamp()))),
        "[ab]",
    )
        .prop_map(
            |(id, finished, succeeded, changes, failure, service)| ProdDeploy {
                id,
                project: "p".to_owned(),
                service,
                started_at_ms: finished,
                finished_at_ms: finished,
                succeeded,
                changes: changes
                    .into_iter()
                    .map(|(commit, committed_at_ms)| Change {
                        commit,
                        committed_at_ms,
                    })
                    .collect(),
                failure: failure.map(|(kind, at_ms, restored_at_ms)| Failure {
                    kind,
                    at_ms,
                    restored_at_ms,
                }),
            },
        )
}

proptest! {
    #[test]
    fn compute_never_panics_and_rates_stay_in_range(
        deploys in prop::collection::vec(arb_deploy(), 0..30),
        from in timestamp(),
        to in timestamp(),
        now in timestamp(),
    ) {
        let m = compute(&deploys, from, to, now);
        if let Some(rate) = m.change_failure_rate {
            prop_assert!((0.0..=1.0).contains(&rate));
        }
        prop_assert!(m.failed_deploys <= m.deployments);
        prop_assert!(m.deploys_per_day.is_finite() && m.deploys_per_day >= 0.0);
        prop_assert!(m.lead_time.median_ms <= m.lead_time.p90_ms);
        prop_assert!(m.lead_time.median_ms.is_none_or(|v| v >= 0));
        prop_assert!(m.recovery.median_ms.is_none_or(|v| v >= 0));
        prop_assert_eq!(m.levels.overall.is_some(), m.deployments > 0);
        let _ = for_service(&deploys, "p/a");
    }

    #[test]
    fn series_never_panics_and_agrees_with_compute(
        deploys in prop::collection::vec(arb_deploy(), 0..30),
        from in timestamp(),
        span_days in 0i64..60,
        weekly in any::<bool>(),
    ) {
        let to = from.saturating_add(span_days * DAY_MS);
        let bucket = if weekly { Bucket::Week } else { Bucket::Day };
        let points = series(&deploys, from, to, bucket);
        for p in &points {
            if let Some(rate) = p.change_failure_rate {
                prop_assert!((0.0..=1.0).contains(&rate));
            }
            prop_assert!(p.failures <= p.deployments);
        }
        let total: usize = points.iter().map(|p| p.deployments).sum();
        prop_assert_eq!(total, compute(&deploys, from, to, to).deployments);
        for (_, svg) in dora_charts(&points) {
            parse_svg(&svg);
        }
    }

    #[test]
    fn charts_of_any_text_and_numbers_are_well_formed(
        title in any::<String>(),
        data in prop::collection::vec((any::<String>(), prop::option::of(any::<f64>())), 0..20),
        unit in prop_oneof![Just(Unit::Count), Just(Unit::Ratio), Just(Unit::DurationMs)],
    ) {
        let line = line_chart(&title, &data, unit);
        parse_svg(&line);
        let bars: Vec<(String, f64)> =
            data.into_iter().map(|(l, v)| (l, v.unwrap_or(f64::INFINITY))).collect();
        let (_, titles) = parse_svg(&bar_chart(&title, &bars, unit));
        let clean: String = title
            .chars()
            .map(|c| if (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}' { '\u{FFFD}' } else { c })
            .collect();
        // XML parsers normalise line ends; compare without them.
        prop_assert_eq!(titles[0].replace(['\r', '\n'], ""), clean.replace(['\r', '\n'], ""));
    }

    #[test]
    fn human_duration_never_panics(ms in any::<i64>()) {
        let s = human_duration(ms);
        prop_assert!(!s.is_empty());
        prop_assert_eq!(s.starts_with('-'), ms < 0);
    }
}
