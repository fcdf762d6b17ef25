//! Cheap change detection for local sources: reading branch heads straight from a local
//! repository's ref files, so polling a local path costs no git process when nothing moved.
//! Anything unusual (reftable, unreadable files, a URL source) answers `None`, and the caller
//! falls back to a real `git fetch`.

use std::path::{Path, PathBuf};

/// Branch heads of a local repository (working tree or bare), sorted by name, or None when
/// they cannot be read reliably without git.
pub fn local_branch_heads(source: &str) -> Option<Vec<(String, String)>> {
    let git_dir = git_dir(Path::new(source))?;
    if git_dir.join("reftable").exists() {
        return None;
    }
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(c) => git_dir.join(c.trim()),
        Err(_) => git_dir.clone(),
    };
    let mut heads = std::collections::BTreeMap::new();
    if let Ok(packed) = std::fs::read_to_string(common.join("packed-refs")) {
        for line in packed.lines() {
            if line.starts_with('#') || line.starts_with('^') {
                continue;
            }
            let (sha, name) = line.split_once(' ')?;
            if let Some(branch) = name.strip_prefix("refs/heads/") {
                heads.insert(branch.to_string(), valid_sha(sha)?);
            }
        }
    }
    let refs = common.join("refs/heads");
    if !refs.is_dir() {
        return None;
    }
    walk(&refs, &refs, &mut heads)?;
    Some(heads.into_iter().collect())
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut std::collections::BTreeMap<String, String>,
) -> Option<()> {
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let path = entry.path();
        let ft = entry.file_type().ok()?;
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let name = path.strip_prefix(root).ok()?.to_str()?.to_string();
            if name.ends_with(".lock") {
                continue;
            }
            let text = std::fs::read_to_string(&path).ok()?;
            out.insert(name, valid_sha(text.trim())?);
        }
    }
    Some(())
}

fn valid_sha(s: &str) -> Option<String> {
    let ok = (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_ascii_lowercase())
}

fn git_dir(src: &Path) -> Option<PathBuf> {
    if src.as_os_str().is_empty() || src.to_str()?.contains("://") {
        return None;
    }
    let dot = src.join(".git");
    if dot.is_dir() {
        return Some(dot);
    }
    if dot.is_file() {
        let text = std::fs::read_to_string(&dot).ok()?;
        let target = text.trim().strip_prefix("gitdir:")?.trim();
        let p = Path::new(target);
        return Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            src.join(p)
        });
    }
    if src.join("HEAD").is_file() && src.join("refs").is_dir() {
        return Some(src.to_path_buf());
    }
    None
}
