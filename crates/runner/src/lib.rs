//! Step runner for sluice: executes pipeline steps as host processes on Linux.
//!
//! A step is `sh -c COMMAND` started in its own process group with exactly the environment
//! the caller declares ([`process`]). Its output is read line by line and passed through a
//! [`Masker`] before anyone sees it ([`mask`]). After the step, the caller can summarise
//! JUnit reports ([`junit`]), pack artifacts into content-addressed tars ([`artifact`]) and
//! save or restore caches ([`cache`]).
//!
//! Architecture invariant: this crate knows nothing about the store, HTTP or the pipeline
//! spec. It receives plain values (a command, a directory, an environment, globs) and hands
//! back plain values (an [`Outcome`], lines, summaries, digests). The file operations in
//! [`junit`], [`artifact`] and [`cache`] are synchronous; async callers run them on
//! `spawn_blocking`.

pub mod artifact;
pub mod cache;
pub mod junit;
pub mod mask;
pub mod process;
mod walk;

pub use artifact::{Artifact, ArtifactError, pack, unpack};
pub use cache::{CacheError, cache_key, restore, save};
pub use junit::{JunitError, JunitSummary, collect_junit, parse_junit};
pub use mask::Masker;
pub use process::{
    DRAIN_TIMEOUT, MAX_LINE_BYTES, Outcome, OutputLine, RunnerError, RunningStep, STEP_TOKEN_VAR,
    StepCommand, Stream, kill_orphans, processes_with_token, spawn,
};
