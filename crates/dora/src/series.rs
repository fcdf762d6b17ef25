//! [`series`]: the DORA metrics per UTC day or ISO week, for charts. Counted exactly as
//! [`crate::compute`] counts a window, each bucket being the window.

use serde::{Deserialize, Serialize};

use crate::metrics::{clamped_diff, in_window, lead_samples, percentile};
use crate::model::ProdDeploy;
use crate::time::{DAY_MS, MONDAY_OFFSET, WEEK_MS, align, sat};

/// The most buckets [`series`] returns (ten years of days); longer ranges keep the newest.
pub const MAX_BUCKETS: usize = 3660;

/// The width of a bucket of [`series`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// A UTC day, 00:00 to 24:00 UTC.
    Day,
    /// An ISO week, Monday 00:00 UTC to the next Monday 00:00 UTC.
    Week,
}

impl Bucket {
    fn len_and_offset(self) -> (i128, i128) {
        match self {
            Bucket::Day => (i128::from(DAY_MS), 0),
            Bucket::Week => (i128::from(WEEK_MS), MONDAY_OFFSET),
        }
    }
}

/// The DORA figures of one bucket. A deploy belongs to the bucket holding its
/// `finished_at_ms`; so do its failure and its changes' lead times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The bucket's start (00:00 UTC of the day, or Monday 00:00 UTC of the week).
    pub start_ms: i64,
    /// Deployments to production that finished in the bucket.
    pub deployments: usize,
    /// Of those, the ones that caused a failure in production.
    pub failures: usize,
    /// Median change lead time of the changes first deployed successfully in the bucket.
    pub lead_time_median_ms: Option<i64>,
    /// Median recovery time of the restored failures of the bucket's deployments.
    pub recovery_median_ms: Option<i64>,
    /// `failures / deployments`; `None` without deployments.
    pub change_failure_rate: Option<f64>,
}

/// The DORA figures per `bucket` over `[from_ms, to_ms)`: one [`Point`] per bucket that
/// overlaps the window, oldest first, including empty buckets (so charts show gaps). The
/// first and last buckets only count the part inside the window. At most [`MAX_BUCKETS`]
/// points: a longer window keeps the newest. An empty or inverted window gives no points.
pub fn series(deploys: &[ProdDeploy], from_ms: i64, to_ms: i64, bucket: Bucket) -> Vec<Point> {
    if from_ms >= to_ms {
        return Vec::new();
    }
    let (len, offset) = bucket.len_and_offset();
    let (from, to) = (i128::from(from_ms), i128::from(to_ms));
    let mut first = align(from, len, offset);
    let last = align(to - 1, len, offset);
    let mut count = (last - first) / len + 1;
    let max = MAX_BUCKETS as i128;
    if count > max {
        first = last - (max - 1) * len;
        count = max;
    }
    // The part of the window the points cover.
    let (from_ms, to_ms) = (sat(from.max(first)), to_ms);
    let index = |t: i64| -> Option<usize> {
        if !in_window(t, from_ms, to_ms) {
            return None;
        }
        usize::try_from((i128::from(t) - first) / len).ok()
    };

    let n = usize::try_from(count).unwrap_or(0);
    let mut deployments = vec![0usize; n];
    let mut failures = vec![0usize; n];
    let mut lead: Vec<Vec<i64>> = vec![Vec::new(); n];
    let mut recovery: Vec<Vec<i64>> = vec![Vec::new(); n];

    for d in deploys.iter().filter(|d| d.reached_production()) {
        let Some(i) = index(d.finished_at_ms).filter(|&i| i < n) else {
            continue;
        };
        deployments[i] += 1;
        if let Some(f) = &d.failure {
            failures[i] += 1;
            if let Some(restored) = f.restored_at_ms {
                recovery[i].push(clamped_diff(restored, f.at_ms).0);
            }
        }
    }
    for s in lead_samples(deploys) {
        if let Some(i) = index(s.at_ms).filter(|&i| i < n) {
            lead[i].push(s.lead_ms);
        }
    }

    (0..n)
        .map(|i| {
            let median = |v: &mut Vec<i64>| {
                v.sort_unstable();
                percentile(v, 50)
            };
            Point {
                start_ms: sat(first + i as i128 * len),
                deployments: deployments[i],
                failures: failures[i],
                lead_time_median_ms: median(&mut lead[i]),
                recovery_median_ms: median(&mut recovery[i]),
                change_failure_rate: (deployments[i] > 0)
                    .then(|| (failures[i] as f64 / deployments[i] as f64).clamp(0.0, 1.0)),
            }
        })
        .collect()
}
