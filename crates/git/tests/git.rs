//! Integration tests for sluice-git against real git repositories in temporary directories.
//!
//! Each test builds a working repository with the `git` CLI (author and committer set
//! through the environment, since the machine has no global identity), mirrors it with
//! [`Mirror`], and checks what the engine would read.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_git::{GitError, Mirror, ls_remote};

/// A working repository driven through the git CLI.
struct Work {
    dir: PathBuf,
}

impl Work {
    fn new(root: &Path) -> Work {
        let dir = root.join("work");
        std::fs::create_dir_all(&dir).unwrap();
        let work = Work { dir };
        work.git(&["init", "--quiet", "--initial-branch=main"]);
        work
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Ada Tester")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada Tester")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn write(&self, path: &str, content: &str) {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    /// Stages everything and commits; returns the new sha.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A temp dir with a working repo (one commit on main) and an opened, fetched mirror.
async fn setup() -> (tempfile::TempDir, Work, Mirror) {
    let tmp = tempfile::tempdir().unwrap();
    let work = Work::new(tmp.path());
    work.write("README.md", "hello\n");
    work.write("src/main.rs", "fn main() {}\n");
    work.commit("first commit");
    let mirror = Mirror::open(&tmp.path().join("mirror"), work.dir.to_str().unwrap())
        .await
        .unwrap();
    mirror.fetch().await.unwrap();
    (tmp, work, mirror)
}

#[tokio::test]
async fn open_fetch_and_branches() {
    let (_tmp, work, mirror) = setup().await;
    let main = work.head();
    work.git(&["branch", "feature/x"]);
    mirror.fetch().await.unwrap();
    assert_eq!(
        mirror.branches().await.unwrap(),
        vec![
            ("feature/x".to_string(), main.clone()),
            ("main".to_string(), main.clone())
        ]
    );
    assert!(mirror.dir().join("HEAD").is_file(), "a bare repo");
    // Opening again reuses the existing mirror.
    let again = Mirror::open(mirror.dir(), mirror.source()).await.unwrap();
    assert_eq!(again.resolve("main").await.unwrap(), main);
}

#[tokio::test]
async fn relative_source_and_bare_source() {
    let tmp = tempfile::tempdir().unwrap();
    let work = Work::new(tmp.path());
    let sha = work.commit("one");
    let bare = tmp.path().join("bare.git");
    work.git(&["clone", "--quiet", "--bare", ".", bare.to_str().unwrap()]);
    let mirror = Mirror::open(&tmp.path().join("m"), bare.to_str().unwrap())
        .await
        .unwrap();
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), sha);
    // A file:// URL works too.
    let url = format!("file://{}", bare.display());
    let mirror = Mirror::open(&tmp.path().join("m2"), &url).await.unwrap();
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), sha);
    // A relative path is made absolute at open, so the mirror does not depend on the cwd.
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(&work.dir, &cwd);
    let mirror = Mirror::open(&tmp.path().join("m3"), &relative)
        .await
        .unwrap();
    assert!(Path::new(mirror.source()).is_absolute());
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), sha);
}

/// `path` relative to `base` (both absolute), with `..` steps.
fn pathdiff(path: &Path, base: &Path) -> String {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out.to_string_lossy().into_owned()
}

#[tokio::test]
async fn new_commits_are_seen_after_fetch() {
    let (_tmp, work, mirror) = setup().await;
    let first = work.head();
    work.write("README.md", "hello again\n");
    let second = work.commit("second commit");
    assert_eq!(
        mirror.resolve("main").await.unwrap(),
        first,
        "not fetched yet"
    );
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), second);
    assert!(mirror.is_ancestor(&first, &second).await.unwrap());
    assert!(!mirror.is_ancestor(&second, &first).await.unwrap());
    assert_eq!(
        mirror.changed_files(&first, &second).await.unwrap(),
        vec!["README.md"]
    );
}

#[tokio::test]
async fn force_push_is_seen_and_diffs_across_it() {
    let (_tmp, work, mirror) = setup().await;
    let base = work.head();
    work.write("a.txt", "a\n");
    let old = work.commit("add a");
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), old);

    // Rewrite history: amend replaces a.txt by b.txt.
    work.git(&["rm", "--quiet", "a.txt"]);
    work.write("b.txt", "b\n");
    work.git(&["add", "-A"]);
    work.git(&["commit", "--quiet", "--amend", "-m", "add b instead"]);
    let new = work.head();
    assert_ne!(old, new);
    mirror.fetch().await.unwrap();
    assert_eq!(mirror.resolve("main").await.unwrap(), new);

    // The old head is still in the mirror but not an ancestor of the new one.
    assert!(!mirror.is_ancestor(&old, &new).await.unwrap());
    assert!(mirror.is_ancestor(&base, &new).await.unwrap());
    assert_eq!(
        mirror.changed_files(&old, &new).await.unwrap(),
        vec!["a.txt", "b.txt"]
    );
}

#[tokio::test]
async fn deleted_branch_is_pruned() {
    let (_tmp, work, mirror) = setup().await;
    work.git(&["branch", "doomed"]);
    mirror.fetch().await.unwrap();
    let names = |b: Vec<(String, String)>| b.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(mirror.branches().await.unwrap()), ["doomed", "main"]);
    work.git(&["branch", "-D", "doomed"]);
    mirror.fetch().await.unwrap();
    assert_eq!(names(mirror.branches().await.unwrap()), ["main"]);
    assert!(matches!(
        mirror.resolve("doomed").await,
        Err(GitError::UnknownCommit(_))
    ));
}

#[tokio::test]
async fn resolve_branch_sha_and_short_sha() {
    let (_tmp, work, mirror) = setup().await;
    let sha = work.head();
    assert_eq!(mirror.resolve("main").await.unwrap(), sha);
    assert_eq!(mirror.resolve(&sha).await.unwrap(), sha);
    assert_eq!(mirror.resolve(&sha[..8]).await.unwrap(), sha);
    for unknown in ["nope", "0123456789abcdef0123456789abcdef01234567", "main~5"] {
        match mirror.resolve(unknown).await {
            Err(GitError::UnknownCommit(rev)) => assert_eq!(rev, unknown),
            other => panic!("{unknown}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn read_file_present_absent_and_limits() {
    let (_tmp, work, mirror) = setup().await;
    work.write("sluice.yml", "pipeline: {}\n");
    work.write("big.txt", &"x".repeat(1024 * 1024 + 1));
    std::fs::write(work.dir.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
    let sha = work.commit("files");
    mirror.fetch().await.unwrap();

    assert_eq!(
        mirror
            .read_file(&sha, "sluice.yml")
            .await
            .unwrap()
            .as_deref(),
        Some("pipeline: {}\n")
    );
    assert_eq!(
        mirror
            .read_file("main", "./src/main.rs")
            .await
            .unwrap()
            .as_deref(),
        Some("fn main() {}\n")
    );
    assert_eq!(mirror.read_file(&sha, "missing.yml").await.unwrap(), None);
    assert_eq!(mirror.read_file(&sha, "src").await.unwrap(), None, "a dir");
    // The file did not exist at the previous commit.
    assert_eq!(
        mirror.read_file("main~1", "sluice.yml").await.unwrap(),
        None
    );
    assert!(matches!(
        mirror.read_file("nope", "sluice.yml").await,
        Err(GitError::UnknownCommit(_))
    ));
    match mirror.read_file(&sha, "big.txt").await {
        Err(GitError::FileTooLarge { size, max, .. }) => {
            assert_eq!((size, max), (1024 * 1024 + 1, 1024 * 1024));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        mirror.read_file(&sha, "bin.dat").await,
        Err(GitError::NotText { .. })
    ));
}

#[tokio::test]
async fn list_files_is_recursive_and_sorted() {
    let (_tmp, work, mirror) = setup().await;
    work.write("deep/er/still/x.txt", "x");
    std::os::unix::fs::symlink("README.md", work.dir.join("link")).unwrap();
    let sha = work.commit("more");
    mirror.fetch().await.unwrap();
    assert_eq!(
        mirror.list_files(&sha).await.unwrap(),
        ["README.md", "deep/er/still/x.txt", "link", "src/main.rs"]
    );
    assert!(matches!(
        mirror.list_files("nope").await,
        Err(GitError::UnknownCommit(_))
    ));
}

#[tokio::test]
async fn changed_files_cases() {
    let (_tmp, work, mirror) = setup().await;
    work.write("keep.txt", "k");
    work.write("gone.txt", "g");
    work.write("old-name.txt", "some content that stays the same\n");
    let base = work.commit("base");
    work.write("keep.txt", "k2");
    std::fs::remove_file(work.dir.join("gone.txt")).unwrap();
    work.git(&["mv", "old-name.txt", "new-name.txt"]);
    work.write("added/file.txt", "a");
    let head = work.commit("changes");
    mirror.fetch().await.unwrap();
    assert_eq!(
        mirror.changed_files(&base, &head).await.unwrap(),
        [
            "added/file.txt",
            "gone.txt",
            "keep.txt",
            "new-name.txt",
            "old-name.txt"
        ]
    );
    // Reversed, the same paths.
    assert_eq!(mirror.changed_files(&head, &base).await.unwrap().len(), 5);
    assert!(mirror.changed_files(&head, &head).await.unwrap().is_empty());
    // An unknown base (e.g. garbage collected) tells the caller to fall back.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    match mirror.changed_files(unknown, &head).await {
        Err(GitError::UnknownCommit(rev)) => assert_eq!(rev, unknown),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn commit_info_fields() {
    let (_tmp, work, mirror) = setup().await;
    work.git(&[
        "commit",
        "--quiet",
        "--allow-empty",
        "--date=@1700000000 +0000",
        "-m",
        "fix: the subject line\n\nbody text",
    ]);
    let sha = work.head();
    mirror.fetch().await.unwrap();
    assert_eq!(
        mirror.commit_info("main").await.unwrap(),
        sluice_git::CommitInfo {
            sha,
            author: "Ada Tester".to_string(),
            time_s: 1_700_000_000,
            subject: "fix: the subject line".to_string(),
        }
    );
    assert!(matches!(
        mirror.commit_info("nope").await,
        Err(GitError::UnknownCommit(_))
    ));
}

/// Lists a checked-out tree as (path, kind, mode-or-target, content) for comparison.
fn describe_tree(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, format!("link -> {}", target.display())));
            } else if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                let content = std::fs::read_to_string(&path).unwrap();
                out.push((rel, format!("{mode:o} {content:?}")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn checkout_exact_tree_twice_from_snapshot() {
    let (tmp, work, mirror) = setup().await;
    work.write("run.sh", "#!/bin/sh\necho hi\n");
    let mut perms = std::fs::metadata(work.dir.join("run.sh"))
        .unwrap()
        .permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(work.dir.join("run.sh"), perms).unwrap();
    std::os::unix::fs::symlink("src/main.rs", work.dir.join("entry.rs")).unwrap();
    // export-ignore must not drop files from the checkout.
    work.write(".gitattributes", "ignored.txt export-ignore\n");
    work.write("ignored.txt", "still here\n");
    let sha = work.commit("tree");
    mirror.fetch().await.unwrap();

    let expected = vec![
        (
            ".gitattributes".to_string(),
            "644 \"ignored.txt export-ignore\\n\"".to_string(),
        ),
        ("README.md".into(), "644 \"hello\\n\"".into()),
        ("entry.rs".into(), "link -> src/main.rs".into()),
        ("ignored.txt".into(), "644 \"still here\\n\"".into()),
        ("run.sh".into(), "755 \"#!/bin/sh\\necho hi\\n\"".into()),
        ("src/main.rs".into(), "644 \"fn main() {}\\n\"".into()),
    ];

    let first = tmp.path().join("run1");
    mirror.checkout("main", &first).await.unwrap();
    assert_eq!(describe_tree(&first), expected);
    assert!(!first.join(".git").exists());
    assert!(mirror.dir().join("snapshots").join(&sha).is_dir());

    // The second checkout must come from the snapshot alone: hide the object store so any
    // git process would fail.
    let objects = mirror.dir().join("objects");
    let hidden = mirror.dir().join("objects.hidden");
    std::fs::rename(&objects, &hidden).unwrap();
    let second = tmp.path().join("run2");
    std::fs::create_dir(&second).unwrap(); // empty dirs are fine
    let result = mirror.checkout(&sha, &second).await;
    std::fs::rename(&hidden, &objects).unwrap();
    result.unwrap();
    assert_eq!(describe_tree(&second), expected);

    // Real copies, not hard links: changing one checkout leaves the other and the cache.
    let a = std::fs::metadata(first.join("README.md")).unwrap();
    let b = std::fs::metadata(second.join("README.md")).unwrap();
    assert_ne!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 1);
    std::fs::write(first.join("README.md"), "changed").unwrap();
    assert_eq!(
        std::fs::read_to_string(second.join("README.md")).unwrap(),
        "hello\n"
    );
    let third = tmp.path().join("run3");
    mirror.checkout(&sha, &third).await.unwrap();
    assert_eq!(describe_tree(&third), expected);
}

#[tokio::test]
async fn checkout_refuses_non_empty_dest_and_unknown_commit() {
    let (tmp, _work, mirror) = setup().await;
    let dest = tmp.path().join("busy");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("x"), "x").unwrap();
    let err = mirror.checkout("main", &dest).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(matches!(
        mirror.checkout("nope", &tmp.path().join("new")).await,
        Err(GitError::UnknownCommit(_))
    ));
}

#[tokio::test]
async fn prune_snapshots_keeps_the_most_recent() {
    let (tmp, work, mirror) = setup().await;
    let mut shas = vec![work.head()];
    for i in 0..3 {
        work.write("n.txt", &i.to_string());
        shas.push(work.commit(&format!("c{i}")));
    }
    mirror.fetch().await.unwrap();
    for (i, sha) in shas.iter().enumerate() {
        mirror
            .checkout(sha, &tmp.path().join(format!("d{i}")))
            .await
            .unwrap();
        // Distinct modification times for a stable order.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Use the first one again: it becomes the most recent.
    mirror
        .checkout(&shas[0], &tmp.path().join("again"))
        .await
        .unwrap();
    assert_eq!(mirror.prune_snapshots(2).unwrap(), 2);
    let snaps = mirror.dir().join("snapshots");
    let mut left: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec![shas[0].clone(), shas[3].clone()];
    want.sort();
    assert_eq!(left, want);
    // A pruned commit is rebuilt on demand.
    mirror
        .checkout(&shas[1], &tmp.path().join("rebuilt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("rebuilt/n.txt")).unwrap(),
        "0"
    );
}

#[tokio::test]
async fn ls_remote_good_and_missing_sources() {
    let (tmp, work, _mirror) = setup().await;
    work.git(&["branch", "dev"]);
    let sha = work.head();
    assert_eq!(
        ls_remote(work.dir.to_str().unwrap()).await.unwrap(),
        vec![("dev".to_string(), sha.clone()), ("main".to_string(), sha)]
    );
    let started = Instant::now();
    let missing = tmp.path().join("does-not-exist");
    match ls_remote(missing.to_str().unwrap()).await {
        Err(GitError::Unreachable { source, reason }) => {
            assert_eq!(source, missing.to_str().unwrap());
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // A refused connection fails fast and never prompts.
    let err = ls_remote("http://127.0.0.1:9/repo.git").await.unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn fetch_from_a_vanished_source_is_unreachable() {
    let (tmp, _work, _mirror) = setup().await;
    let mirror = Mirror::open(
        &tmp.path().join("m"),
        tmp.path().join("nothing").to_str().unwrap(),
    )
    .await
    .unwrap();
    assert!(matches!(
        mirror.fetch().await,
        Err(GitError::Unreachable { .. })
    ));
    assert!(mirror.branches().await.unwrap().is_empty());
}

#[tokio::test]
async fn option_injection_is_refused() {
    let (tmp, _work, mirror) = setup().await;
    let marker = tmp.path().join("pwned");
    let evil_source = format!("--upload-pack=touch {}", marker.display());
    let refused = |r: Result<(), GitError>| {
        assert!(matches!(r, Err(GitError::InvalidArgument { .. })), "{r:?}")
    };
    refused(ls_remote(&evil_source).await.map(|_| ()));
    refused(
        Mirror::open(&tmp.path().join("m"), &evil_source)
            .await
            .map(|_| ()),
    );
    refused(mirror.resolve("--output=/tmp/x").await.map(|_| ()));
    refused(mirror.resolve("main\n--all").await.map(|_| ()));
    refused(mirror.resolve("main:README.md").await.map(|_| ()));
    refused(mirror.read_file("-p", "README.md").await.map(|_| ()));
    refused(mirror.read_file("main", "--help").await.map(|_| ()));
    refused(mirror.read_file("main", "a\0b").await.map(|_| ()));
    refused(mirror.read_file("main", "../outside").await.map(|_| ()));
    refused(mirror.list_files("--format=x").await.map(|_| ()));
    refused(mirror.changed_files("-R", "main").await.map(|_| ()));
    refused(mirror.is_ancestor("main", "--all").await.map(|_| ()));
    refused(mirror.commit_info("--exec=x").await.map(|_| ()));
    refused(mirror.checkout("--output=x", &tmp.path().join("c")).await);
    assert!(!marker.exists());
    let err = mirror.resolve("-x").await.unwrap_err().to_string();
    assert!(err.contains("option"), "{err}");
}

#[tokio::test]
async fn reads_while_fetching() {
    let (_tmp, work, mirror) = setup().await;
    let first = work.head();
    work.write("more.txt", "m");
    let second = work.commit("more");
    let other = mirror.clone();
    let (fetched, resolved) = tokio::join!(mirror.fetch(), other.resolve("main"));
    fetched.unwrap();
    let seen = resolved.unwrap();
    assert!(seen == first || seen == second);
    assert_eq!(mirror.resolve("main").await.unwrap(), second);
}
