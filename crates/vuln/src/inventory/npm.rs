//! `package-lock.json` (and `npm-shrinkwrap.json`), lockfileVersion 1, 2 and 3.
//!
//! Versions 2 and 3 list every installed package under `packages`, keyed by its path
//! (`node_modules/a/node_modules/@scope/b`); the name is the part after the last
//! `node_modules/` unless the entry says `name` (aliases). Version 1 nests packages under
//! `dependencies`, recursively; an aliased package's version reads `npm:real-name@1.2.3`.
//! Version 2 carries both forms; `packages` is used.
//!
//! Checked: packages with a semver version from the registry. Skipped (listed): the root
//! project and workspace packages (keys without `node_modules/`), links, and packages from git,
//! local files or tarball URLs, whose version does not identify a registry release. The same
//! name and version installed at several paths is one package.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::ecosystem::Ecosystem;
use crate::error::{Error, one_line};
use crate::inventory::Inventory;
use crate::version::semver::SemVer;

/// Reads a package-lock.json.
pub fn parse(text: &str, file: &str, inv: &mut Inventory) -> Result<(), Error> {
    let root: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
        path: file.to_owned(),
        line: (e.line() > 0).then_some(e.line()),
        field: None,
        message: format!(
            "{}; is this a package-lock.json written by npm?",
            one_line(&e.to_string())
        ),
    })?;
    let version = root
        .get("lockfileVersion")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            Error::parse_field(
                file,
                "lockfileVersion",
                "missing or not a number; npm writes 1, 2 or 3 here",
            )
        })?;
    let mut seen = BTreeSet::new();
    match version {
        2 | 3 => {
            let packages = root
                .get("packages")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    Error::parse_field(
                        file,
                        "packages",
                        "missing or not an object (lockfileVersion 2 and 3 list packages here)",
                    )
                })?;
            for (key, entry) in packages {
                if key.is_empty() {
                    continue;
                }
                let field = format!("packages[\"{key}\"]");
                let obj = entry
                    .as_object()
                    .ok_or_else(|| Error::parse_field(file, &field, "not an object"))?;
                let name = obj
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| key.rsplit_once("node_modules/").map(|(_, n)| n.to_owned()))
                    .unwrap_or_else(|| key.clone());
                let version = obj.get("version").and_then(Value::as_str);
                if obj.get("link").and_then(Value::as_bool) == Some(true) {
                    inv.skip(file, &name, version, "link to a local package");
                    continue;
                }
                if !key.contains("node_modules/") {
                    inv.skip(
                        file,
                        &name,
                        version,
                        "workspace package (not from the registry)",
                    );
                    continue;
                }
                let resolved = obj.get("resolved").and_then(Value::as_str);
                add(inv, &mut seen, file, &name, version, resolved);
            }
        }
        1 => walk_v1(&root, file, inv, &mut seen, 0)?,
        other => {
            return Err(Error::parse_field(
                file,
                "lockfileVersion",
                format!("{other} is not supported; sluice reads lockfileVersion 1, 2 and 3"),
            ));
        }
    }
    Ok(())
}

fn walk_v1(
    node: &Value,
    file: &str,
    inv: &mut Inventory,
    seen: &mut BTreeSet<(String, String)>,
    depth: usize,
) -> Result<(), Error> {
    if depth > 256 {
        return Err(Error::parse_field(
            file,
            "dependencies",
            "nested more than 256 levels deep",
        ));
    }
    let Some(deps) = node.get("dependencies") else {
        return Ok(());
    };
    let deps = deps
        .as_object()
        .ok_or_else(|| Error::parse_field(file, "dependencies", "not an object"))?;
    for (name, entry) in deps {
        if !entry.is_object() {
            return Err(Error::parse_field(
                file,
                format!("dependencies[\"{name}\"]"),
                "not an object",
            ));
        }
        let version = entry.get("version").and_then(Value::as_str);
        let resolved = entry.get("resolved").and_then(Value::as_str);
        match version.and_then(|v| v.strip_prefix("npm:")) {
            Some(alias) => {
                // `npm:real-name@1.2.3`; the name may itself start with `@scope/`.
                match alias.rsplit_once('@').filter(|(n, _)| !n.is_empty()) {
                    Some((real, v)) => add(inv, seen, file, real, Some(v), resolved),
                    None => inv.skip(file, name, version, "alias without a version"),
                }
            }
            None => add(inv, seen, file, name, version, resolved),
        }
        walk_v1(entry, file, inv, seen, depth + 1)?;
    }
    Ok(())
}

fn add(
    inv: &mut Inventory,
    seen: &mut BTreeSet<(String, String)>,
    file: &str,
    name: &str,
    version: Option<&str>,
    resolved: Option<&str>,
) {
    let Some(version) = version else {
        inv.skip(file, name, None, "no version recorded");
        return;
    };
    let from_elsewhere = resolved.is_some_and(|r| {
        r.starts_with("git") || r.starts_with("file:") || r.starts_with("github:")
    });
    if from_elsewhere || SemVer::parse(version).is_err() {
        inv.skip(
            file,
            name,
            Some(version),
            "not a registry release (git, local file or URL)",
        );
        return;
    }
    if seen.insert((name.to_owned(), version.to_owned())) {
        inv.add(Ecosystem::Npm, name, version, file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Inventory, Error> {
        let mut inv = Inventory::default();
        parse(text, "package-lock.json", &mut inv).map(|()| inv)
    }

    fn names(inv: &Inventory) -> Vec<String> {
        let mut v: Vec<String> = inv
            .packages
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn v3_packages() {
        let text = r#"{"name": "app", "lockfileVersion": 3, "packages": {
            "": {"name": "app", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.20", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"},
            "node_modules/a/node_modules/@scope/b": {"version": "2.0.0"},
            "node_modules/x/node_modules/lodash": {"version": "4.17.20"},
            "node_modules/alias": {"name": "real", "version": "1.0.0"},
            "node_modules/local": {"resolved": "packages/local", "link": true},
            "packages/local": {"name": "local", "version": "0.1.0"},
            "node_modules/g": {"version": "1.0.0", "resolved": "git+ssh://git@example.invalid/g.git#abc"}
        }}"#;
        let inv = read(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            names(&inv),
            ["@scope/b@2.0.0", "lodash@4.17.20", "real@1.0.0"]
        );
        assert_eq!(inv.skipped.len(), 3);
    }

    #[test]
    fn v1_nested_and_aliases() {
        let text = r#"{"lockfileVersion": 1, "dependencies": {
            "minimist": {"version": "0.0.8", "dependencies": {"minimist": {"version": "1.2.0"}}},
            "sw": {"version": "npm:string-width@4.2.3"},
            "sc": {"version": "npm:@scope/pkg@1.0.0"},
            "gh": {"version": "github:user/repo#abc"}
        }}"#;
        let inv = read(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            names(&inv),
            [
                "@scope/pkg@1.0.0",
                "minimist@0.0.8",
                "minimist@1.2.0",
                "string-width@4.2.3"
            ]
        );
        assert_eq!(inv.skipped.len(), 1);
    }

    #[test]
    fn errors() {
        let msg = |t: &str| read(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg("{\"lockfileVersion\": 4, \"packages\": {}}").contains("4 is not supported"));
        assert!(msg("{}").contains("field `lockfileVersion`"));
        assert!(
            msg("{\n\"lockfileVersion\": 3,\n").starts_with("package-lock.json:3"),
            "{}",
            msg("{\n\"lockfileVersion\": 3,\n")
        );
        assert!(
            msg("{\"lockfileVersion\": 3, \"packages\": {\"node_modules/a\": 5}}")
                .contains("not an object")
        );
    }
}
