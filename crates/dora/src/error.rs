//! Errors of this crate. Only parsing user input can fail: every computation accepts any
//! input and never fails.

use thiserror::Error;

/// What went wrong parsing user input for the DORA views.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DoraError {
    /// A `--since` / `since=` value that is not a whole number followed by `h`, `d` or `w`.
    #[error(
        "since value `{value}` is not a duration: write a whole number followed by h, d or w (e.g. 30d)"
    )]
    InvalidSince {
        /// The value as given.
        value: String,
    },
    /// A `--since` / `since=` value longer than the longest window sluice charts.
    #[error("since value `{value}` is longer than {max_days} days: pick a shorter window")]
    SinceTooLong {
        /// The value as given.
        value: String,
        /// The longest window accepted, in days.
        max_days: i64,
    },
}
