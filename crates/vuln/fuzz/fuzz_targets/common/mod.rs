//! Helpers shared by the fuzz targets: run what parsed through the gate and the renderers.

#![allow(dead_code)]

use sluice_vuln::inventory::{self, FileKind, OsRelease};
use sluice_vuln::osv::Advisory;
use sluice_vuln::{Database, Date, Ecosystem, Inventory, Package, Policy, gate};
/// Matches a parsed advisory against a package of each ecosystem it names.
pub fn exercise_advisory(a: Advisory) {
    let packages: Vec<Package> = a
        .affected
        .iter()
        .filter_map(|x| x.package.as_ref())
        .flat_map(|p| {
            [
                "0",
                "1.0.0",
                "1.0",
                "1:2.3-4",
                "v0.0.0-20200101000000-abcdefabcdef",
            ]
            .map(|v| Package {
                ecosystem: Ecosystem::parse(&p.ecosystem),
                name: p.name.clone(),
                version: v.to_owned(),
                source_package: None,
                source_file: "fuzz".to_owned(),
            })
        })
        .collect();
    let inv = Inventory {
        packages,
        ..Inventory::default()
    };
    let db = Database::from_advisories(vec![a]);
    let _ = gate(&db, &inv, &Policy::default(), today()).to_markdown();
}

pub fn lockfile(kind: FileKind, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(inv) = inventory::parse_file(kind, &text, "fuzz", &OsRelease::default()) {
        gate_on(&inv);
    }
}

pub fn gate_on(inv: &Inventory) {
    let _ = gate(&Database::default(), inv, &Policy::default(), today()).to_text();
}

pub fn today() -> Date {
    Date::from_unix_days(20_000).unwrap_or_else(|| unreachable!())
}
