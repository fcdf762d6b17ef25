//! Python: `requirements*.txt` pins and `poetry.lock`.
//!
//! requirements.txt: only exact pins identify what gets installed, so only `name==version`
//! (and `name===version`) lines are checked, with extras and environment markers allowed
//! (`name[extra]==1.0 ; python_version < "3.12"`, `--hash` options, `\` continuations).
//! Every other requirement (ranges, unpinned names, URLs, `-e`, `-r` includes) is listed as
//! skipped with the reason, never guessed at. Comments and pip options are ignored.
//!
//! poetry.lock: every `[[package]]` from PyPI is checked. Packages with a `[package.source]`
//! (git, a directory, a file, a URL or another index) are listed as skipped.

use serde::Deserialize;

use crate::ecosystem::{Ecosystem, pep503};
use crate::error::{Error, line_of, one_line};
use crate::inventory::Inventory;
use crate::version::pep440::Pep440;

/// Reads a requirements file. Never fails: what is not a pin is listed as skipped.
pub fn parse_requirements(text: &str, file: &str, inv: &mut Inventory) {
    let mut logical = String::new();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let line = strip_comment(raw);
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        lines.push(std::mem::take(&mut logical));
    }
    if !logical.trim().is_empty() {
        lines.push(logical);
    }
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            let opt = line.split_whitespace().next().unwrap_or(line);
            if matches!(opt, "-e" | "--editable") {
                inv.skip(file, line, None, "editable install (not a pinned release)");
            } else if matches!(opt, "-r" | "--requirement" | "-c" | "--constraint") {
                inv.skip(
                    file,
                    line,
                    None,
                    "included file is not followed; scan it directly",
                );
            }
            continue;
        }
        // Environment markers do not change what a pin names; they are not evaluated.
        let spec = line.split(';').next().unwrap_or(line).trim();
        // Per-requirement options such as `--hash=...` follow the specifier.
        let spec = spec.split(" --").next().unwrap_or(spec).trim();
        match pin(spec) {
            Ok((name, version)) => inv.add(Ecosystem::PyPI, &name, &version, file),
            Err(reason) => {
                let name = spec
                    .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                    .next()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(spec);
                inv.skip(file, name, None, reason);
            }
        }
    }
}

fn strip_comment(line: &str) -> &str {
    // `#` starts a comment at the start of a line or after whitespace (not inside a URL
    // fragment such as `#egg=`).
    let b = line.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// `name[extras] == version` -> (normalised name, version).
fn pin(spec: &str) -> Result<(String, String), &'static str> {
    if spec.contains(" @ ") || spec.contains("://") {
        return Err("direct reference (URL), not a pinned release");
    }
    let (name_part, version) = if let Some((n, v)) = spec.split_once("===") {
        (n, v)
    } else if let Some((n, v)) = spec.split_once("==") {
        (n, v)
    } else {
        return Err("not pinned with `==`");
    };
    let name = name_part.split('[').next().unwrap_or(name_part).trim();
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("not a valid requirement name");
    }
    let version = version.trim();
    if version.contains(',') || version.contains('*') {
        return Err("not pinned to one version");
    }
    if Pep440::parse(version).is_err() {
        return Err("the pinned version is not a PEP 440 version");
    }
    Ok((pep503(name), version.to_owned()))
}

#[derive(Deserialize)]
struct PoetryLock {
    #[serde(default)]
    package: Vec<PoetryPackage>,
}

#[derive(Deserialize)]
struct PoetryPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<PoetrySource>,
}

#[derive(Deserialize)]
struct PoetrySource {
    #[serde(rename = "type", default)]
    kind: String,
}

/// Reads a poetry.lock.
pub fn parse_poetry(text: &str, file: &str, inv: &mut Inventory) -> Result<(), Error> {
    let lock: PoetryLock = toml::from_str(text).map_err(|e| Error::Parse {
        path: file.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)),
        field: None,
        message: format!(
            "{}; is this a poetry.lock written by Poetry?",
            one_line(e.message())
        ),
    })?;
    for (i, p) in lock.package.iter().enumerate() {
        if let Err(e) = Pep440::parse(&p.version) {
            return Err(Error::parse_field(
                file,
                format!("package[{i}].version"),
                format!("{e} (package `{}`)", p.name),
            ));
        }
        match &p.source {
            None => inv.add(Ecosystem::PyPI, &pep503(&p.name), &p.version, file),
            Some(s) => inv.skip(
                file,
                &p.name,
                Some(&p.version),
                &format!("installed from a `{}` source, not PyPI", s.kind),
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pins_and_the_rest() {
        let text = "# comment\nDjango==3.2.0\nrequests[security] == 2.25.1 ; python_version < \"3.8\" \\\n    --hash=sha256:abc\nflask>=1.0\nnumpy\n-r other.txt\n--index-url https://example.invalid\nsix===1.16.0  # trailing\npkg @ https://example.invalid/pkg.tar.gz\nbad==1.*\n-e .\nzope.interface==5.4.0\n";
        let mut inv = Inventory::default();
        parse_requirements(text, "requirements.txt", &mut inv);
        let got: Vec<String> = inv
            .packages
            .iter()
            .map(|p| format!("{}=={}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [
                "django==3.2.0",
                "requests==2.25.1",
                "six==1.16.0",
                "zope-interface==5.4.0"
            ]
        );
        let skipped: Vec<&str> = inv.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            skipped,
            ["flask", "numpy", "-r other.txt", "pkg", "bad", "-e ."]
        );
    }

    #[test]
    fn poetry_lock() {
        let text = "[[package]]\nname = \"Jinja2\"\nversion = \"2.10\"\n\n[[package]]\nname = \"mine\"\nversion = \"0.1.0\"\n\n[package.source]\ntype = \"git\"\nurl = \"https://example.invalid/mine\"\n\n[metadata]\nlock-version = \"2.0\"\n";
        let mut inv = Inventory::default();
        parse_poetry(text, "poetry.lock", &mut inv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].name, "jinja2");
        assert_eq!(inv.skipped.len(), 1);
        let e = parse_poetry(
            "[[package]]\nname = 1\n",
            "poetry.lock",
            &mut Inventory::default(),
        );
        assert!(
            e.err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .starts_with("poetry.lock:2")
        );
    }
}
