//! Vulnerability scanning for sluice: which known advisories affect the packages a repository
//! or a built image ships, and whether that may pass a release gate.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`db`]: the offline advisory database. [`import`] reads OSV JSON/YAML files and the
//!   RustSec layout and writes a normalised OSV-JSON directory (one file per advisory);
//!   [`Database::open`] reads it back.
//! - [`inventory`]: the packages to check. [`scan_dir`] finds lockfiles in a checkout,
//!   [`scan_rootfs_tar`] reads a flat root-filesystem tar (`docker export`) for dpkg, apk and
//!   lockfiles, [`scan_path`] picks one of these for a path.
//! - [`version`]: each ecosystem's version ordering (semver, PEP 440, Debian, Alpine, Go), and
//!   [`range`], OSV's rules for "is this version inside this affected range".
//! - [`matcher`]: inventory × database → findings; [`cvss`] turns vectors into severities.
//! - [`policy`] and [`report`]: the gate ([`Policy`]: threshold, allowlist with expiry) and its
//!   [`Report`] (serde JSON, a plain-text table and Markdown for the run page).
//!
//! **Architecture invariant:** no network, no clock, no environment variables. File IO happens
//! only in the functions whose names say so (`import`, `Database::open`, `scan_*`); "today" is
//! always passed in. Every parser returns an error naming the file (and line or field where
//! known) instead of panicking, whatever the input.

pub mod cvss;
pub mod date;
pub mod db;
pub mod ecosystem;
mod error;
pub mod inventory;
pub mod matcher;
mod num;
pub mod osv;
pub mod policy;
pub mod range;
pub mod report;
pub mod rustsec;
pub mod version;

pub use cvss::Severity;
pub use date::Date;
pub use db::{Database, ImportOptions, ImportStats, RejectedFile, import};
pub use ecosystem::Ecosystem;
pub use error::Error;
pub use inventory::{
    Inventory, InventoryError, Package, Skipped, scan_dir, scan_file, scan_path, scan_rootfs_tar,
};
pub use policy::{AllowEntry, Policy, PolicyFile};
pub use report::{Counts, Finding, Report, gate};
