//! The four DORA software delivery metrics of sluice, as defined by the DORA 2024 report, over
//! the production deploys the server extracts from its event log; their time series; and
//! dependency-free SVG charts of them for the UI.
//!
//! The server builds one [`ProdDeploy`] per deployment to a production environment (with the
//! commits it brought to production for the first time and, when it failed, the
//! [`Failure`]), optionally narrows them with [`for_service`], and calls:
//!
//! - [`compute`] for the figures of one window: deployment frequency, change lead time
//!   (median and p90 per change), change failure rate, failed deployment recovery time, and a
//!   [`Level`] (Elite, High, Medium, Low) per metric and overall;
//! - [`series`] for the same figures per UTC day or ISO week, for charts;
//! - [`svg::dora_charts`] (or [`svg::bar_chart`], [`svg::line_chart`]) to draw them.
//!
//! How each metric is counted (what is a deployment, a change, a failure, a restore), the
//! performance level thresholds and their sources are in `docs/dora.md`; the rules are
//! repeated on the items below.
//!
//! Architecture invariant: pure logic. No IO, no clock (the caller passes `now_ms`), no
//! environment, no async, no HTTP or SQL types, and no panics on any input (property-tested).
//! This crate deliberately does NOT decide which deploys were production deploys, which
//! commits a deploy brought, or which incident belongs to which deploy: the server knows its
//! event log and states those facts in the [`ProdDeploy`] it passes in. It does not format
//! tables or JSON either; [`Metrics`] and [`Point`] are serde types for the callers to print.

mod error;
mod level;
mod metrics;
mod model;
mod series;
pub mod svg;
mod time;

pub use error::DoraError;
pub use level::{
    FrequencyBand, Level, change_failure_level, frequency_band, lead_time_level, recovery_level,
};
pub use metrics::{FailureCounts, Levels, Metrics, Stats, compute};
pub use model::{Change, Failure, FailureKind, ProdDeploy};
pub use series::{Bucket, MAX_BUCKETS, Point, series};
pub use time::{
    DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, WEEK_MS, day_start, human_duration, iso_week_start,
    parse_since, utc_date,
};

/// The deploys of one service: `service` is either a service name (`api`, matching that
/// service in every project) or `project/service` (`shop/api`, only that project's).
///
/// Returns copies in the input order, so the result can be passed straight to [`compute`] or
/// [`series`].
pub fn for_service(deploys: &[ProdDeploy], service: &str) -> Vec<ProdDeploy> {
    let (project, name) = match service.split_once('/') {
        Some((project, name)) => (Some(project), name),
        None => (None, service),
    };
    deploys
        .iter()
        .filter(|d| d.service == name && project.is_none_or(|p| d.project == p))
        .cloned()
        .collect()
}
