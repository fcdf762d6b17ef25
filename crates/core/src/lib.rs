//! Domain core of sluice.
//!
//! This crate holds the vocabulary every other crate shares: the event kinds of the
//! append-only log ([`event`]), run and step statuses ([`status`]), calendar formatting
//! ([`time`]) and the pure pipeline
//! planner ([`plan`]) that decides which steps start next. It does no IO, owns no clock
//! and spawns nothing: callers pass observations and time in and carry actions out.
//! Architecture invariant: nothing here knows about HTTP, SQL, git or processes.

pub mod event;
pub mod plan;
pub mod status;
pub mod time;

pub use event::{EventKind, NewEvent};
pub use status::{DeployStatus, RunStatus, StepStatus};
