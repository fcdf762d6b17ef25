//! [`compute`]: the four DORA metrics over one window, with a level per metric and overall.
//! Also the per-deploy facts (lead time samples, recovery samples) that [`crate::series`]
//! shares, so a chart and the summary above it always agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::level::{Level, change_failure_level, frequency_band, lead_time_level, recovery_level};
use crate::model::{FailureKind, ProdDeploy};
use crate::time::{DAY_MS, sat};

/// Distribution of a duration metric over a window.
///
/// Percentiles interpolate linearly between the two nearest samples (as SQL's
/// `PERCENTILE_CONT`, which Google's Four Keys uses): the median of an even number of
/// samples is the mean of the middle two, rounded down to a whole millisecond.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The median (50th percentile); `None` without samples.
    pub median_ms: Option<i64>,
    /// The 90th percentile; `None` without samples.
    pub p90_ms: Option<i64>,
    /// How many samples there are.
    pub samples: usize,
    /// How many samples were negative (clock skew: a commit dated after the deploy that
    /// brought it, a restore dated before its failure) and were counted as 0.
    pub clamped: usize,
}

impl Stats {
    /// The statistics of `values` (in any order), `clamped` of which were clamped to 0.
    pub(crate) fn of(mut values: Vec<i64>, clamped: usize) -> Stats {
        values.sort_unstable();
        Stats {
            median_ms: percentile(&values, 50),
            p90_ms: percentile(&values, 90),
            samples: values.len(),
            clamped,
        }
    }
}

/// The `p`th percentile (0..=100) of sorted `values`, interpolated linearly between the two
/// nearest ranks and rounded down; exact integer arithmetic.
pub(crate) fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = u128::from(p.min(100)) * last as u128;
    let (lo, rem) = ((rank / 100) as usize, (rank % 100) as i128);
    let a = i128::from(*sorted.get(lo)?);
    if rem == 0 {
        return Some(sat(a));
    }
    let b = i128::from(*sorted.get(lo + 1)?);
    Some(sat(a + ((b - a) * rem).div_euclid(100)))
}

/// Failed deployments by the way they showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounts {
    /// Deployments that finished and were rolled back.
    pub rolled_back: usize,
    /// Deployments linked to an incident.
    pub incident: usize,
    /// Deployments that failed in production while rolling out.
    pub failed_deploy: usize,
}

/// The performance level of each metric and overall; `None` where there is nothing to
/// place (no deployments, no changes, no failures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Levels {
    /// From the deployment frequency band.
    pub deployment_frequency: Option<Level>,
    /// From the median change lead time.
    pub lead_time: Option<Level>,
    /// From the change failure rate.
    pub change_failure_rate: Option<Level>,
    /// From the median recovery time, counting still-unrecovered failures with their age.
    pub recovery: Option<Level>,
    /// The worst of the four that are known; `None` when there were no deployments.
    pub overall: Option<Level>,
}

/// The four DORA metrics over one window `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Start of the window (inclusive), milliseconds since the epoch.
    pub from_ms: i64,
    /// End of the window (exclusive).
    pub to_ms: i64,
    /// Deployments to production that finished in the window (successful or failed).
    pub deployments: usize,
    /// Deploys that finished in the window without ever reaching production (not counted
    /// anywhere else; shown so that nobody wonders where they went).
    pub aborted: usize,
    /// Deployments per day: `deployments` over the window's length in days, the window
    /// ending at `now_ms` when that falls inside it.
    pub deploys_per_day: f64,
    /// The deployment frequency band as a phrase, e.g. `on demand (multiple per day)`.
    pub deployment_frequency_label: String,
    /// Change lead time: per change (commit), from its commit time to the end of the first
    /// successful production deploy that contained it, for changes whose deploy finished in
    /// the window.
    pub lead_time: Stats,
    /// `failed_deploys / deployments`, in `[0, 1]`; `None` without deployments.
    pub change_failure_rate: Option<f64>,
    /// Deployments in the window that caused a failure in production.
    pub failed_deploys: usize,
    /// `failed_deploys` by kind.
    pub failures: FailureCounts,
    /// Failed deployment recovery time: from each failure's start to its restore, over the
    /// restored failures of the window's failed deployments.
    pub recovery: Stats,
    /// Failed deployments of the window whose service is not restored yet.
    pub unrecovered_failures: usize,
    /// The age at `now_ms` of the oldest unrecovered failure.
    pub longest_unrecovered_ms: Option<i64>,
    /// Performance level per metric and overall.
    pub levels: Levels,
}

/// One change's lead time, dated by the end of the deploy that brought it.
pub(crate) struct LeadSample {
    pub(crate) at_ms: i64,
    pub(crate) lead_ms: i64,
    pub(crate) clamped: bool,
}

/// The lead time of every change in `deploys`: each commit counts once, ending at the
/// earliest-finishing `succeeded` deploy that lists it (ties: the lowest id).
pub(crate) fn lead_samples(deploys: &[ProdDeploy]) -> Vec<LeadSample> {
    let mut first: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for d in deploys.iter().filter(|d| d.succeeded) {
        for c in &d.changes {
            let candidate = (d.finished_at_ms, d.id, c.committed_at_ms);
            first
                .entry(c.commit.as_str())
                .and_modify(|best| {
                    if (candidate.0, candidate.1) < (best.0, best.1) {
                        *best = candidate;
                    }
                })
                .or_insert(candidate);
        }
    }
    first
        .into_values()
        .map(|(finished, _, committed)| {
            let (lead_ms, clamped) = clamped_diff(finished, committed);
            LeadSample {
                at_ms: finished,
                lead_ms,
                clamped,
            }
        })
        .collect()
}

/// `end - start`, clamped to `[0, i64::MAX]`, and whether it was negative.
pub(crate) fn clamped_diff(end: i64, start: i64) -> (i64, bool) {
    let diff = i128::from(end) - i128::from(start);
    if diff < 0 {
        (0, true)
    } else {
        (sat(diff), false)
    }
}

/// Whether `t` is in `[from, to)`.
pub(crate) fn in_window(t: i64, from: i64, to: i64) -> bool {
    from <= t && t < to
}

/// Computes the four DORA metrics over the deploys that finished in `[from_ms, to_ms)`.
///
/// - **Deployments**: deploys that reached production ([`ProdDeploy::reached_production`]);
///   deploys that never did are only counted in `aborted`.
/// - **Deployment frequency**: deployments per day over the window, which ends at `now_ms`
///   when `now_ms` lies inside it (the future cannot hold deployments yet).
/// - **Change lead time**: per change, see [`Metrics::lead_time`]. All of `deploys` is
///   searched for a change's first successful deploy, so pass deploys from before the window
///   too when a commit may have been deployed earlier.
/// - **Change failure rate**: failed deployments / deployments.
/// - **Recovery time**: `restored_at - at` of each restored failure; unrecovered failures
///   are counted, and for the recovery *level* only they count with their age at `now_ms`
///   (a lower bound), so an outage still going on cannot make the level look better.
///
/// Never panics; an empty or inverted window gives zero deployments.
pub fn compute(deploys: &[ProdDeploy], from_ms: i64, to_ms: i64, now_ms: i64) -> Metrics {
    let window: Vec<&ProdDeploy> = deploys
        .iter()
        .filter(|d| in_window(d.finished_at_ms, from_ms, to_ms))
        .collect();

    let deployments = window.iter().filter(|d| d.reached_production()).count();
    let aborted = window.len() - deployments;

    let mut failures = FailureCounts::default();
    let mut recovered = Vec::new();
    let mut recovered_clamped = 0;
    let mut open_ages = Vec::new();
    for f in window.iter().filter_map(|d| d.failure.as_ref()) {
        match f.kind {
            FailureKind::RolledBack => failures.rolled_back += 1,
            FailureKind::Incident => failures.incident += 1,
            FailureKind::FailedDeploy => failures.failed_deploy += 1,
        }
        match f.restored_at_ms {
            Some(restored) => {
                let (ms, clamped) = clamped_diff(restored, f.at_ms);
                recovered.push(ms);
                recovered_clamped += usize::from(clamped);
            }
            None => open_ages.push(clamped_diff(now_ms, f.at_ms).0),
        }
    }
    let failed_deploys = failures.rolled_back + failures.incident + failures.failed_deploy;

    let (lead, lead_clamped) = lead_samples(deploys)
        .into_iter()
        .filter(|s| in_window(s.at_ms, from_ms, to_ms))
        .fold((Vec::new(), 0), |(mut v, n), s| {
            v.push(s.lead_ms);
            (v, n + usize::from(s.clamped))
        });
    let lead_time = Stats::of(lead, lead_clamped);

    // The recovery level counts open failures with their age so far.
    let mut for_level = recovered.clone();
    for_level.extend_from_slice(&open_ages);
    for_level.sort_unstable();
    let recovery_level_ms = percentile(&for_level, 50);
    let recovery = Stats::of(recovered, recovered_clamped);

    let end = if from_ms < now_ms && now_ms < to_ms {
        now_ms
    } else {
        to_ms
    };
    let window_ms = sat(i128::from(end) - i128::from(from_ms));
    let deploys_per_day = if window_ms > 0 {
        deployments as f64 * DAY_MS as f64 / window_ms as f64
    } else {
        0.0
    };
    let band = frequency_band(deployments, window_ms);

    let change_failure_rate =
        (deployments > 0).then(|| (failed_deploys as f64 / deployments as f64).clamp(0.0, 1.0));

    let mut levels = Levels {
        deployment_frequency: band.level(),
        lead_time: lead_time.median_ms.map(lead_time_level),
        change_failure_rate: change_failure_level(failed_deploys, deployments),
        recovery: recovery_level_ms.map(recovery_level),
        overall: None,
    };
    if deployments > 0 {
        levels.overall = [
            levels.deployment_frequency,
            levels.lead_time,
            levels.change_failure_rate,
            levels.recovery,
        ]
        .into_iter()
        .flatten()
        .max();
    }

    Metrics {
        from_ms,
        to_ms,
        deployments,
        aborted,
        deploys_per_day,
        deployment_frequency_label: band.label().to_owned(),
        lead_time,
        change_failure_rate,
        failed_deploys,
        failures,
        recovery,
        unrecovered_failures: open_ages.len(),
        longest_unrecovered_ms: open_ages.iter().copied().max(),
        levels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_between_ranks() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        // Even count: mean of the middle two, rounded down.
        assert_eq!(percentile(&[1, 2, 4, 10], 50), Some(3));
        assert_eq!(percentile(&[1, 2], 50), Some(1));
        // p90 of 1..=10: rank 8.1 -> 9 + 0.1 * (10 - 9) = 9.1 -> 9.
        let v: Vec<i64> = (1..=10).map(|x| x * 100).collect();
        assert_eq!(percentile(&v, 90), Some(910));
        // Extremes do not overflow.
        assert_eq!(percentile(&[0, i64::MAX], 50), Some(i64::MAX / 2));
    }
}
