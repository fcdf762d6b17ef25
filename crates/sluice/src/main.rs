//! The `sluice` command line (in progress).
fn main() {}
