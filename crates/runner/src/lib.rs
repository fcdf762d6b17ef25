//! Step runner for sluice (stub; see the runner helper's brief).
