//! Flap detection for one alert, with hysteresis.
//!
//! An alert that keeps switching between firing and resolved pages people again and again
//! without adding information. A [`FlapDetector`] counts the alert's state changes within a
//! sliding window:
//!
//! * it **starts** flapping when at least `enter` changes happened within the window;
//! * it **stops** flapping when the changes within the window drop to `leave` or fewer.
//!
//! `leave < enter`, so an alert hovering around one threshold does not itself flap between
//! "flapping" and "not flapping". A change at time `t` is within the window at `now` while
//! `now - t < window_ms`.
//!
//! Defaults ([`FlapConfig::default`]): a 10 minute window, enter at 4 changes, leave at 1 or
//! fewer. Four changes in ten minutes is two complete fire/resolve cycles; an alert that then
//! settles stops flapping once only its last change remains in the window, i.e. ten minutes
//! after its second-to-last change.
//!
//! Memory is bounded: a detector keeps at most `enter` change times, which is enough to decide
//! both thresholds exactly (see [`FlapDetector::record`]).

use std::collections::VecDeque;

use thiserror::Error;

/// The state an alert changed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// The alert started firing.
    Firing,
    /// The alert resolved.
    Resolved,
}

/// Whether the flapping status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlapChange {
    /// The alert is now flapping.
    Started,
    /// The alert is no longer flapping.
    Stopped,
    /// No change.
    None,
}

/// Why a flap configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlapConfigError {
    /// The window is zero or negative.
    #[error("the flap window must be positive, got {window_ms} ms")]
    Window {
        /// The rejected window.
        window_ms: i64,
    },
    /// The thresholds leave no hysteresis or cannot be reached.
    #[error(
        "flap thresholds need 1 <= leave + 1 <= enter, got enter {enter} and leave {leave}; choose leave below enter"
    )]
    Thresholds {
        /// The rejected enter threshold.
        enter: usize,
        /// The rejected leave threshold.
        leave: usize,
    },
}

/// Thresholds for flap detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapConfig {
    window_ms: i64,
    enter: usize,
    leave: usize,
}

impl Default for FlapConfig {
    /// 10 minute window, enter at 4 changes, leave at 1 change or fewer.
    fn default() -> Self {
        FlapConfig {
            window_ms: 10 * 60 * 1000,
            enter: 4,
            leave: 1,
        }
    }
}

impl FlapConfig {
    /// Builds a configuration; requires `window_ms > 0` and `leave < enter`.
    pub fn new(window_ms: i64, enter: usize, leave: usize) -> Result<FlapConfig, FlapConfigError> {
        if window_ms <= 0 {
            return Err(FlapConfigError::Window { window_ms });
        }
        if enter == 0 || leave >= enter {
            return Err(FlapConfigError::Thresholds { enter, leave });
        }
        Ok(FlapConfig {
            window_ms,
            enter,
            leave,
        })
    }

    /// The sliding window length.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Changes within the window at which flapping starts.
    pub fn enter(&self) -> usize {
        self.enter
    }

    /// Changes within the window at or below which flapping stops.
    pub fn leave(&self) -> usize {
        self.leave
    }
}

/// Flap state of one alert.
#[derive(Debug, Clone)]
pub struct FlapDetector {
    config: FlapConfig,
    /// Times of the most recent changes, oldest first, at most `config.enter` of them.
    changes: VecDeque<i64>,
    last_state: Option<AlertState>,
    flapping: bool,
}

impl FlapDetector {
    /// A detector for an alert with no recorded history.
    pub fn new(config: FlapConfig) -> FlapDetector {
        FlapDetector {
            config,
            changes: VecDeque::with_capacity(config.enter),
            last_state: None,
            flapping: false,
        }
    }

    /// Whether the alert is currently considered flapping.
    pub fn is_flapping(&self) -> bool {
        self.flapping
    }

    /// The configuration in use.
    pub fn config(&self) -> FlapConfig {
        self.config
    }

    /// Records that the alert is now in `state` at `now_ms`.
    ///
    /// Recording the same state twice in a row is not a change and is ignored (apart from
    /// expiring old changes). The first state ever recorded counts as a change.
    ///
    /// Only the newest `enter` change times are kept. That is exact: if at least `enter`
    /// changes are in the window, the newest `enter` are; if fewer are, all of them are kept.
    /// Either way the kept count in the window is `min(true count, enter)`, and both `>= enter`
    /// and `<= leave` (with `leave < enter`) read the same on it as on the true count.
    pub fn record(&mut self, state: AlertState, now_ms: i64) -> FlapChange {
        if self.last_state != Some(state) {
            self.last_state = Some(state);
            // Keep times sorted even if the caller's clock stepped back.
            let at = self.changes.partition_point(|&t| t <= now_ms);
            self.changes.insert(at, now_ms);
            while self.changes.len() > self.config.enter {
                self.changes.pop_front();
            }
        }
        self.update(now_ms)
    }

    /// Re-evaluates at `now_ms` without a new change; call it periodically (or at
    /// [`FlapDetector::next_deadline`]) so that a quiet alert stops flapping.
    pub fn tick(&mut self, now_ms: i64) -> FlapChange {
        self.update(now_ms)
    }

    /// The instant at which a flapping alert will stop flapping if nothing else changes, so the
    /// server can schedule a [`FlapDetector::tick`]. `None` when not flapping.
    pub fn next_deadline(&self) -> Option<i64> {
        if !self.flapping {
            return None;
        }
        // Flapping stops once only `leave` changes remain: when the change just older than the
        // newest `leave` ones leaves the window.
        let index = self.changes.len().checked_sub(self.config.leave + 1)?;
        self.changes
            .get(index)
            .map(|t| t.saturating_add(self.config.window_ms))
    }

    /// Whether the detector holds nothing worth keeping at `now_ms`: not flapping and no change
    /// within the window. The server may drop idle detectors to bound memory across alerts
    /// (the next recorded state then counts as a change).
    pub fn is_idle(&self, now_ms: i64) -> bool {
        !self.flapping && self.count_in_window(now_ms) == 0
    }

    /// Number of recorded changes within the window at `now_ms` (capped at `enter`).
    pub fn changes_in_window(&self, now_ms: i64) -> usize {
        self.count_in_window(now_ms)
    }

    fn count_in_window(&self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.config.window_ms);
        self.changes.iter().filter(|&&t| t > cutoff).count()
    }

    fn update(&mut self, now_ms: i64) -> FlapChange {
        let cutoff = now_ms.saturating_sub(self.config.window_ms);
        while self.changes.front().is_some_and(|&t| t <= cutoff) {
            self.changes.pop_front();
        }
        let count = self.count_in_window(now_ms);
        if !self.flapping && count >= self.config.enter {
            self.flapping = true;
            FlapChange::Started
        } else if self.flapping && count <= self.config.leave {
            self.flapping = false;
            FlapChange::Stopped
        } else {
            FlapChange::None
        }
    }
}
