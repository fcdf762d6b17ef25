//! The sluice server (in progress).
