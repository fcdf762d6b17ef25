//! Images for tests, made from this host's files because no registry can be reached:
//!
//! - [`busybox`]: `/bin/busybox` (Debian's `busybox-static`) with a symlink for every applet
//!   (`/bin/sh`, `/bin/sleep`, `/usr/bin/env`, ...);
//! - [`python`]: the same plus Debian's `python3` interpreter (`/usr/bin/python3`), the shared
//!   libraries `ldd` lists for it and for its extension modules, and its standard library
//!   (`/usr/lib/python3.X` without `test/`, `__pycache__/` and the GUI and IDE packages), so
//!   `python3 app.py` services using the standard library run in it; and the host's GNU
//!   `sed` (as in Debian-based images), first on `PATH`.
//!
//! Both are imported as a root filesystem (`import_rootfs`) under a tag derived from a
//! fingerprint of their contents (every file's path, size and modification time, plus the
//! layout), so they are built once per machine and rebuilt when the host's files change.
//! They carry the label [`LABEL`]. Public because the server's and runner's tests use them
//! too; they are never removed automatically (that would only make the next test build them
//! again).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use crate::{Docker, DockerError};

/// Repository of the busybox test image.
pub const BUSYBOX_REPO: &str = "sluice-test-busybox";

/// Repository of the python test image.
pub const PYTHON_REPO: &str = "sluice-test-python";

/// Label every test image carries (value: `busybox` or `python`).
pub const LABEL: &str = "sluice.test-image";

/// Bumped when the layout below changes, so old images are not reused.
const LAYOUT_VERSION: &str = "sluice-testimage-2";

/// Directories of the standard library left out of the python image.
const SKIPPED_STDLIB: &[&str] = &[
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
];

static BUSYBOX: OnceCell<String> = OnceCell::const_new();
static PYTHON: OnceCell<String> = OnceCell::const_new();

/// The daemon of `DOCKER_HOST` for a test that needs one, or `None` after a note saying
/// how to get one (the test then skips). With env `CI` set a missing daemon is a failure:
/// it panics, so CI never silently skips the Docker tests.
pub async fn daemon_or_skip() -> Option<Docker> {
    let docker = match Docker::from_env() {
        Ok(d) => d,
        Err(e) => panic!("DOCKER_HOST is not usable: {e}"),
    };
    match docker.ping().await {
        Ok(()) => Some(docker),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but the docker daemon is unreachable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no docker daemon ({e}); start one with .ci/docker.sh");
            None
        }
    }
}

/// Removes (forcibly) every container matching the label filter `label` and then the
/// `images`, ignoring errors, and returns when done. Synchronous, for a test's `Drop` (which
/// cannot await, and may run inside or outside a tokio runtime): the work runs on a thread
/// of its own with its own runtime.
pub fn remove_blocking(docker: &Docker, label: &str, images: Vec<String>) {
    let (docker, label) = (docker.clone(), label.to_owned());
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            for c in docker.list_containers(&[&label]).await.unwrap_or_default() {
                let _ = docker.remove_container(&c.id, true).await;
            }
            for image in images {
                let _ = docker.remove_image(&image, true).await;
            }
        });
    })
    .join();
}

/// The busybox test image's reference (`sluice-test-busybox:<fingerprint>`), imported first
/// if it is not there yet.
pub async fn busybox(docker: &Docker) -> Result<String, DockerError> {
    BUSYBOX
        .get_or_try_init(|| ensure(docker, BUSYBOX_REPO, "busybox", false))
        .await
        .cloned()
}

/// The python test image's reference (`sluice-test-python:<fingerprint>`), imported first if
/// it is not there yet. Its `python3` is Debian's `/usr/bin/python3` of this host.
pub async fn python(docker: &Docker) -> Result<String, DockerError> {
    PYTHON
        .get_or_try_init(|| ensure(docker, PYTHON_REPO, "python", true))
        .await
        .cloned()
}

async fn ensure(
    docker: &Docker,
    repo: &str,
    kind: &'static str,
    with_python: bool,
) -> Result<String, DockerError> {
    let plan = tokio::task::spawn_blocking(move || Plan::make(with_python))
        .await
        .map_err(|e| {
            DockerError::Invalid(format!("planning the {kind} test image failed: {e}"))
        })??;
    let reference = format!("{repo}:{}", plan.fingerprint());
    if docker.image_exists(&reference).await? {
        return Ok(reference);
    }
    let tar = tokio::task::spawn_blocking(move || plan.write_tar())
        .await
        .map_err(|e| {
            DockerError::Invalid(format!("writing the {kind} test image failed: {e}"))
        })??;
    let label = format!("LABEL {LABEL}={kind}");
    docker
        .import_rootfs(
            tar.path(),
            &reference,
            &[
                r#"CMD ["/bin/sh"]"#,
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                &label,
            ],
        )
        .await?;
    tracing::info!(image = %reference, "imported a test image");
    Ok(reference)
}

/// One thing in the root filesystem.
enum Item {
    /// A host file copied (its content, following symlinks) to `dst`.
    File { src: PathBuf, dst: String },
    /// A symlink.
    Link { dst: String, target: String },
    /// A small file with the given text.
    Text { dst: String, text: &'static str },
}

struct Plan {
    items: Vec<Item>,
    /// Fingerprint input gathered while planning (paths, sizes, times).
    hasher: Sha256,
}

impl Plan {
    fn make(with_python: bool) -> Result<Plan, DockerError> {
        let mut plan = Plan {
            items: Vec::new(),
            hasher: Sha256::new(),
        };
        plan.hasher.update(LAYOUT_VERSION.as_bytes());
        plan.busybox()?;
        if with_python {
            plan.python()?;
        }
        plan.text(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        );
        plan.text("etc/group", "root:x:0:\nnogroup:x:65534:\n");
        Ok(plan)
    }

    fn fingerprint(&self) -> String {
        let digest = self.hasher.clone().finalize();
        hex::encode(&digest[..8])
    }

    fn file(&mut self, src: &Path, dst: &str) -> Result<(), DockerError> {
        let meta = std::fs::metadata(src).map_err(|source| DockerError::Io {
            action: "read",
            path: src.to_path_buf(),
            source,
        })?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        self.hasher
            .update(format!("F {dst} {} {mtime}\n", meta.len()).as_bytes());
        self.items.push(Item::File {
            src: src.to_path_buf(),
            dst: dst.trim_start_matches('/').to_owned(),
        });
        Ok(())
    }

    fn link(&mut self, dst: &str, target: &str) {
        self.hasher.update(format!("L {dst} {target}\n").as_bytes());
        self.items.push(Item::Link {
            dst: dst.trim_start_matches('/').to_owned(),
            target: target.to_owned(),
        });
    }

    fn text(&mut self, dst: &str, text: &'static str) {
        self.hasher.update(format!("T {dst} {text}\n").as_bytes());
        self.items.push(Item::Text {
            dst: dst.to_owned(),
            text,
        });
    }

    fn busybox(&mut self) -> Result<(), DockerError> {
        let busybox = Path::new("/bin/busybox");
        let out = std::process::Command::new(busybox)
            .arg("--list-full")
            .output()
            .map_err(|source| DockerError::Io {
                action: "run (install Debian's busybox-static: .ci/docker.sh does)",
                path: busybox.to_path_buf(),
                source,
            })?;
        self.file(busybox, "bin/busybox")?;
        let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_owned())
            .filter(|l| !l.is_empty() && l != "bin/busybox")
            .collect();
        applets.sort();
        applets.dedup();
        for applet in applets {
            self.link(&applet, "/bin/busybox");
        }
        Ok(())
    }

    fn python(&mut self) -> Result<(), DockerError> {
        let missing = |what: &str| {
            DockerError::Invalid(format!(
                "the python test image needs Debian's python3 ({what} is missing); install it with apt-get install python3"
            ))
        };
        let exe =
            std::fs::canonicalize("/usr/bin/python3").map_err(|_| missing("/usr/bin/python3"))?;
        let name = exe
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| missing("a python3.X binary"))?
            .to_owned();
        let stdlib = PathBuf::from("/usr/lib").join(&name);
        if !stdlib.join("os.py").is_file() {
            return Err(missing(&format!("{}/os.py", stdlib.display())));
        }
        self.file(&exe, &format!("usr/bin/{name}"))?;
        self.link("usr/bin/python3", &name);
        self.link("usr/bin/python", &name);
        // GNU sed, as Debian-based images have it (BusyBox's lacks `-u`, which sluice's log
        // masking uses when it is there); first on PATH.
        let sed = Path::new("/bin/sed");
        if sed.is_file() {
            self.file(sed, "usr/local/bin/sed")?;
        }

        let mut modules = Vec::new();
        let mut files = Vec::new();
        walk(&stdlib, &stdlib, &mut files).map_err(|source| DockerError::Io {
            action: "list",
            path: stdlib.clone(),
            source,
        })?;
        files.sort();
        for rel in files {
            let src = stdlib.join(&rel);
            if rel.extension().is_some_and(|e| e == "so") {
                modules.push(src.clone());
            }
            let dst = format!("usr/lib/{name}/{}", rel.display());
            self.file(&src, &dst)?;
        }

        // The shared libraries of the interpreter and of its extension modules, at the
        // paths the loader looks for them.
        let mut libs = BTreeSet::new();
        let sed = std::iter::once(sed.to_path_buf()).filter(|s| s.is_file());
        for object in std::iter::once(exe.clone()).chain(sed).chain(modules) {
            let out = std::process::Command::new("ldd")
                .arg(&object)
                .output()
                .map_err(|source| DockerError::Io {
                    action: "run ldd on",
                    path: object.clone(),
                    source,
                })?;
            libs.extend(ldd_paths(&String::from_utf8_lossy(&out.stdout)));
        }
        for lib in libs {
            self.file(Path::new(&lib), &lib)?;
        }
        Ok(())
    }

    /// Writes the root filesystem into a temporary tar file.
    fn write_tar(self) -> Result<tempfile::NamedTempFile, DockerError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| DockerError::Io {
                action,
                path,
                source,
            }
        };
        let tmp = tempfile::Builder::new()
            .prefix("sluice-testimage-")
            .suffix(".tar")
            .tempfile()
            .map_err(io("create a temporary file in", &std::env::temp_dir()))?;
        let tmp_path = tmp.path().to_path_buf();
        let mut builder = tar::Builder::new(std::io::BufWriter::new(
            tmp.reopen().map_err(io("open", &tmp_path))?,
        ));
        let mut dirs = BTreeSet::new();
        for item in &self.items {
            let dst = match item {
                Item::File { dst, .. } | Item::Link { dst, .. } | Item::Text { dst, .. } => dst,
            };
            let mut parent = Path::new(dst).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_path_buf());
                parent = p.parent();
            }
        }
        for extra in ["tmp", "root", "proc", "sys", "dev", "etc", "app"] {
            dirs.insert(PathBuf::from(extra));
        }
        let write = |e| DockerError::Io {
            action: "write",
            path: tmp_path.clone(),
            source: e,
        };
        for dir in &dirs {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(if dir == Path::new("tmp") {
                0o1777
            } else {
                0o755
            });
            header.set_size(0);
            header.set_mtime(0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .map_err(write)?;
        }
        for item in &self.items {
            match item {
                Item::File { src, dst } => {
                    let mut file = std::fs::File::open(src).map_err(io("open", src))?;
                    builder.append_file(dst, &mut file).map_err(write)?;
                }
                Item::Link { dst, target } => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_mtime(0);
                    builder
                        .append_link(&mut header, dst, target)
                        .map_err(write)?;
                }
                Item::Text { dst, text } => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(text.len() as u64);
                    header.set_mtime(0);
                    builder
                        .append_data(&mut header, dst, text.as_bytes())
                        .map_err(write)?;
                }
            }
        }
        let mut out = builder.into_inner().map_err(write)?;
        std::io::Write::flush(&mut out).map_err(write)?;
        Ok(tmp)
    }
}

/// Collects the regular files under `dir` (paths relative to `root`), following symlinks
/// to files and skipping dangling ones, `__pycache__`, and [`SKIPPED_STDLIB`] and the
/// build configuration (`config-3.X-...`) at the top.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let skipped_top = SKIPPED_STDLIB.contains(&name.as_ref()) || name.starts_with("config-");
        if name == "__pycache__" || (dir == root && skipped_top) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !entry.file_type()?.is_symlink() {
                walk(root, &path, out)?;
            }
        } else if meta.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// Absolute library paths in `ldd` output (`libc.so.6 => /lib/.../libc.so.6 (0x..)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x..)`).
fn ldd_paths(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_read() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f)\n\tlibfoo.so => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            ldd_paths(out),
            [
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
