//! Conventions enforced by a test rather than by memory: every Rust source file opens with a
//! `//!` header saying what it is for, and the code is formatted (`cargo fmt --check`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "corpus" | "artifacts" | "snapshots" | ".work"
            ) {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_rust_file_has_a_purpose_header() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(
        files.len() > 20,
        "found only {} files; is the walk broken?",
        files.len()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files lack a `//!` header: {missing:#?}"
    );
}

#[test]
fn code_is_formatted() {
    let out = std::process::Command::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root())
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "run `cargo fmt --all`:\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(e) => panic!("cannot run cargo fmt: {e}"),
    }
}
