//! Git sources for sluice (stub; see the git helper's brief).
