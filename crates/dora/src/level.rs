//! Performance levels (Elite, High, Medium, Low) per metric, after the software delivery
//! performance clusters of the DORA 2024 report.
//!
//! The report describes four clusters of respondents, not cut-offs:
//!
//! | cluster | deployment frequency | change lead time | change fail rate | failed deployment recovery time |
//! |---|---|---|---|---|
//! | Elite (19%) | on demand (multiple deploys per day) | less than one day | 5% | less than one hour |
//! | High (22%) | between once per day and once per week | between one day and one week | 20% | less than one day |
//! | Medium (35%) | between once per week and once per month | between one week and one month | 10% | less than one day |
//! | Low (25%) | between once per month and once every six months | between one month and six months | 40% | between one week and one month |
//!
//! sluice turns them into bands where a better figure never gets a worse level:
//!
//! - deployment frequency and lead time: the cluster ranges as they are (below);
//! - change failure rate: the 2024 values are not monotonic (Medium 10% < High 20%), so the
//!   cluster values sorted become upper bounds: at most 5% Elite, at most 10% High, at most
//!   20% Medium, above 20% Low;
//! - recovery time: High and Medium share "less than one day", and nothing covers one day to
//!   one week, so: under an hour Elite, under a day High, under a week Medium, else Low.
//!
//! Every comparison is done in integers (counts and milliseconds), so a figure exactly on a
//! threshold always lands on the same side.

use serde::{Deserialize, Serialize};

use crate::time::{DAY_MS, HOUR_MS, WEEK_MS};

/// A performance level. Ordered from best to worst: `Elite < High < Medium < Low`, so the
/// worst of several levels is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The best cluster of the DORA 2024 report.
    Elite,
    /// The second cluster.
    High,
    /// The third cluster.
    Medium,
    /// The slowest or least stable cluster.
    Low,
}

impl Level {
    /// The level's name as shown to people: `Elite`, `High`, `Medium`, `Low`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Elite => "Elite",
            Level::High => "High",
            Level::Medium => "Medium",
            Level::Low => "Low",
        }
    }
}

/// A deployment frequency band, named as in the DORA report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrequencyBand {
    /// No deployment in the window.
    None,
    /// More than one deployment per day on average.
    OnDemand,
    /// At most one per day and at least one per week (7 days).
    DailyToWeekly,
    /// Less than one per week and at least one per month (30 days).
    WeeklyToMonthly,
    /// Less than one per month and at least one per six months (180 days).
    MonthlyToSixMonthly,
    /// Less than one per six months.
    RarerThanSixMonths,
}

impl FrequencyBand {
    /// The band as a phrase, e.g. `on demand (multiple per day)`.
    pub fn label(self) -> &'static str {
        match self {
            FrequencyBand::None => "no deployments in the period",
            FrequencyBand::OnDemand => "on demand (multiple per day)",
            FrequencyBand::DailyToWeekly => "between once per day and once per week",
            FrequencyBand::WeeklyToMonthly => "between once per week and once per month",
            FrequencyBand::MonthlyToSixMonthly => {
                "between once per month and once every six months"
            }
            FrequencyBand::RarerThanSixMonths => "less than once every six months",
        }
    }

    /// The band's level; `None` for no deployments (nothing to place).
    pub fn level(self) -> Option<Level> {
        match self {
            FrequencyBand::None => None,
            FrequencyBand::OnDemand => Some(Level::Elite),
            FrequencyBand::DailyToWeekly => Some(Level::High),
            FrequencyBand::WeeklyToMonthly => Some(Level::Medium),
            FrequencyBand::MonthlyToSixMonthly | FrequencyBand::RarerThanSixMonths => {
                Some(Level::Low)
            }
        }
    }
}

/// The frequency band of `deployments` over a window of `window_ms` milliseconds.
///
/// With `r = deployments / days`: `r > 1` on demand; `1 >= r >= 1/7` daily to weekly;
/// `1/7 > r >= 1/30` weekly to monthly; `1/30 > r >= 1/180` monthly to six-monthly; below
/// that rarer. A window of zero or negative length, or no deployments, is [`FrequencyBand::None`].
pub fn frequency_band(deployments: usize, window_ms: i64) -> FrequencyBand {
    if deployments == 0 || window_ms <= 0 {
        return FrequencyBand::None;
    }
    let n = deployments as i128;
    let w = i128::from(window_ms);
    let day = i128::from(DAY_MS);
    if n * day > w {
        FrequencyBand::OnDemand
    } else if n * 7 * day >= w {
        FrequencyBand::DailyToWeekly
    } else if n * 30 * day >= w {
        FrequencyBand::WeeklyToMonthly
    } else if n * 180 * day >= w {
        FrequencyBand::MonthlyToSixMonthly
    } else {
        FrequencyBand::RarerThanSixMonths
    }
}

/// The level of a (median) change lead time: under a day Elite, under a week High, under 30
/// days Medium, else Low.
pub fn lead_time_level(median_ms: i64) -> Level {
    if median_ms < DAY_MS {
        Level::Elite
    } else if median_ms < WEEK_MS {
        Level::High
    } else if median_ms < 30 * DAY_MS {
        Level::Medium
    } else {
        Level::Low
    }
}

/// The level of `failed` failed deployments out of `deployments`: at most 5% Elite, at most
/// 10% High, at most 20% Medium, else Low. `None` without deployments.
pub fn change_failure_level(failed: usize, deployments: usize) -> Option<Level> {
    if deployments == 0 {
        return None;
    }
    let (f, d) = (failed as u128 * 100, deployments as u128);
    Some(if f <= 5 * d {
        Level::Elite
    } else if f <= 10 * d {
        Level::High
    } else if f <= 20 * d {
        Level::Medium
    } else {
        Level::Low
    })
}

/// The level of a (median) failed deployment recovery time: under an hour Elite, under a day
/// High, under a week Medium, else Low.
pub fn recovery_level(median_ms: i64) -> Level {
    if median_ms < HOUR_MS {
        Level::Elite
    } else if median_ms < DAY_MS {
        Level::High
    } else if median_ms < WEEK_MS {
        Level::Medium
    } else {
        Level::Low
    }
}
