//! Integration tests for the runner: real processes, real files, real tars.
//!
//! Every process test uses its own step token, so tests can run in parallel and check
//! through `/proc` that nothing they started survives.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_runner::{
    ArtifactError, Masker, Outcome, OutputLine, RunnerError, StepCommand, Stream, cache_key,
    collect_junit, kill_orphans, pack, processes_with_token, restore, save, spawn, unpack,
};
use tokio::sync::{mpsc, watch};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn token(name: &str) -> String {
    format!(
        "runner-test-{}-{name}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn step(command: &str, workdir: &Path) -> StepCommand {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned());
    StepCommand {
        command: command.to_owned(),
        workdir: workdir.to_path_buf(),
        env,
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(2),
        token: token("step"),
    }
}

async fn run_with(cmd: &StepCommand, masker: Masker) -> (Outcome, Vec<OutputLine>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = spawn(cmd, Arc::new(masker), tx).unwrap();
    let (_cancel_tx, cancel_rx) = watch::channel(false);
    let outcome = running.wait(cancel_rx).await;
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    (outcome, lines)
}

async fn run(cmd: &StepCommand) -> (Outcome, Vec<OutputLine>) {
    run_with(cmd, Masker::default()).await
}

fn texts(lines: &[OutputLine], stream: Stream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.line.as_str())
        .collect()
}

/// Polls until no process carries `token` (bounded: the kernel needs a moment to deliver
/// SIGKILL and tear processes down).
fn assert_no_survivors(token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with_token(token);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes survived their step: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn poll_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(&step("true", dir.path())).await.0, Outcome::Exited(0));
    let (outcome, _) = run(&step("exit 3", dir.path())).await;
    assert_eq!(outcome, Outcome::Exited(3));
    assert!(!outcome.success());
    assert_eq!(outcome.exit_code(), Some(3));
    let (outcome, _) = run(&step("kill -9 $$", dir.path())).await;
    assert_eq!(outcome, Outcome::Signalled(9));
    let (outcome, lines) = run(&step("no-such-command-xyz", dir.path())).await;
    assert_eq!(outcome, Outcome::Exited(127));
    assert_eq!(texts(&lines, Stream::Err).len(), 1);
}

#[tokio::test]
async fn captures_stdout_and_stderr_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step(
        r"echo out1; echo err1 >&2; printf 'crlf\r\nlast-no-newline'; printf 'bad \377 byte\n' >&2",
        dir.path(),
    );
    let (outcome, lines) = run(&cmd).await;
    assert!(outcome.success());
    assert_eq!(
        texts(&lines, Stream::Out),
        ["out1", "crlf", "last-no-newline"]
    );
    assert_eq!(texts(&lines, Stream::Err), ["err1", "bad \u{FFFD} byte"]);
}

#[tokio::test]
async fn splits_very_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step(
        "head -c 150000 /dev/zero | tr '\\0' x; echo; echo after",
        dir.path(),
    );
    let (outcome, lines) = run(&cmd).await;
    assert!(outcome.success());
    let out = texts(&lines, Stream::Out);
    let lens: Vec<usize> = out.iter().map(|l| l.len()).collect();
    assert_eq!(lens, [65536, 65536, 150000 - 2 * 65536, 5]);
    assert_eq!(out[3], "after");
}

#[tokio::test]
async fn environment_is_exactly_the_declared_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = step("env", dir.path());
    cmd.env
        .insert("DECLARED".to_owned(), "yes it is".to_owned());
    let (outcome, lines) = run(&cmd).await;
    assert!(outcome.success());
    let out = texts(&lines, Stream::Out);
    assert!(out.contains(&"DECLARED=yes it is"), "{out:?}");
    assert!(out.contains(&format!("SLUICE_STEP_TOKEN={}", cmd.token).as_str()));
    let child: Vec<&str> = out.iter().filter_map(|l| l.split('=').next()).collect();
    // The test process has variables (cargo sets several); none may leak into the step.
    let mut checked = 0;
    for (name, _) in std::env::vars() {
        if cmd.env.contains_key(&name) || matches!(name.as_str(), "PWD" | "SHLVL" | "_" | "OLDPWD")
        {
            continue;
        }
        checked += 1;
        assert!(
            !child.contains(&name.as_str()),
            "{name} leaked into the step"
        );
    }
    assert!(
        checked > 0,
        "the test process has no variables to check against"
    );
}

#[tokio::test]
async fn workdir_is_respected_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = run(&step("pwd -P", dir.path())).await;
    let expected = dir.path().canonicalize().unwrap();
    assert_eq!(texts(&lines, Stream::Out), [expected.to_str().unwrap()]);

    let (tx, _rx) = mpsc::unbounded_channel();
    let missing = step("true", &dir.path().join("does-not-exist"));
    let err = spawn(&missing, Arc::new(Masker::default()), tx.clone()).unwrap_err();
    assert!(matches!(err, RunnerError::Workdir { .. }));
    assert!(err.to_string().contains("does-not-exist"));
    let relative = step("true", Path::new("relative/dir"));
    assert!(spawn(&relative, Arc::new(Masker::default()), tx).is_err());
}

#[tokio::test]
async fn output_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-Value/42";
    let mut cmd = step(
        "echo \"token=$TOKEN here\"; printf %s \"$TOKEN\" | base64; echo safe line >&2",
        dir.path(),
    );
    cmd.env.insert("TOKEN".to_owned(), secret.to_owned());
    let (outcome, lines) = run_with(&cmd, Masker::new([secret.to_owned()])).await;
    assert!(outcome.success());
    assert_eq!(
        texts(&lines, Stream::Out),
        ["token=[MASKED] here", "[MASKED]"]
    );
    assert_eq!(texts(&lines, Stream::Err), ["safe line"]);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = step("sleep 300 & sleep 300", dir.path());
    cmd.timeout = Duration::from_millis(300);
    cmd.kill_grace = Duration::from_secs(5);
    let started = Instant::now();
    let (outcome, _) = run(&cmd).await;
    assert_eq!(outcome, Outcome::TimedOut);
    // sleep dies of SIGTERM, so the grace period is not used up.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn sigkill_follows_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = step("trap '' TERM; echo ready; sleep 300 & wait", dir.path());
    cmd.timeout = Duration::from_millis(200);
    cmd.kill_grace = Duration::from_millis(300);
    let started = Instant::now();
    let (outcome, _) = run(&cmd).await;
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step("echo started; sleep 300 & sleep 300", dir.path());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = spawn(&cmd, Arc::new(Masker::default()), tx).unwrap();
    assert!(running.pgid() > 1);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let waiter = tokio::spawn(running.wait(cancel_rx));
    let first = rx.recv().await.unwrap();
    assert_eq!(first.line, "started");
    cancel_tx.send(true).unwrap();
    assert_eq!(waiter.await.unwrap(), Outcome::Cancelled);
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn background_children_die_with_a_finished_step() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step("sleep 300 & echo done", dir.path());
    let started = Instant::now();
    let (outcome, lines) = run(&cmd).await;
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(texts(&lines, Stream::Out), ["done"]);
    // The background sleep held stdout open; killing the group ended the drain at once.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn escaped_grandchild_holding_the_pipes_does_not_hang_the_step() {
    let dir = tempfile::tempdir().unwrap();
    // The step waits until the grandchild has left the group (it writes the marker after
    // setsid), so the group kill at exit cannot race with it.
    let cmd = step(
        "setsid sh -c 'touch escaped; exec sleep 300' & while [ ! -e escaped ]; do :; done; echo done",
        dir.path(),
    );
    let started = Instant::now();
    let (outcome, lines) = run(&cmd).await;
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(texts(&lines, Stream::Out), ["done"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // It left the process group, but the token still finds it.
    poll_until("the escaped process to show up", || {
        !processes_with_token(&cmd.token).is_empty()
    });
    assert!(!kill_orphans(&cmd.token).is_empty());
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn dropping_a_running_step_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step("echo up; sleep 300 & sleep 300", dir.path());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = spawn(&cmd, Arc::new(Masker::default()), tx).unwrap();
    assert_eq!(rx.recv().await.unwrap().line, "up");
    drop(running);
    assert_no_survivors(&cmd.token);
}

#[tokio::test]
async fn dropped_cancel_sender_means_never_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = step("echo fine", dir.path());
    let (tx, _rx) = mpsc::unbounded_channel();
    let running = spawn(&cmd, Arc::new(Masker::default()), tx).unwrap();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    drop(cancel_tx);
    assert_eq!(running.wait(cancel_rx).await, Outcome::Exited(0));
}

#[test]
fn kill_orphans_kills_matching_tokens_only() {
    let prefix = token("orphan");
    let other = token("bystander");
    let start = |tok: &str| {
        std::process::Command::new("setsid")
            .args(["sleep", "300"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SLUICE_STEP_TOKEN", tok)
            .spawn()
            .unwrap()
    };
    let mut target = start(&format!("{prefix}-step-1"));
    let mut bystander = start(&other);
    let target_pid = i32::try_from(target.id()).unwrap();
    poll_until("both processes to exec", || {
        processes_with_token(&prefix).contains(&target_pid)
            && !processes_with_token(&other).is_empty()
    });

    let killed = kill_orphans(&prefix);
    assert_eq!(killed, [target_pid]);
    let status = target.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was killed"
    );
    assert!(kill_orphans(&prefix).is_empty());

    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

// ---------------------------------------------------------------------------------------
// Files: JUnit collection, artifacts, caches.

fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn collect_junit_merges_matching_reports() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "reports/unit.xml",
        r#"<testsuite><testcase classname="a" name="ok"/><testcase classname="a" name="bad"><failure/></testcase></testsuite>"#,
    );
    write(
        root.path(),
        "reports/sub/int.xml",
        r#"<testsuites><testsuite><testcase name="skip"><skipped/></testcase></testsuite></testsuites>"#,
    );
    write(
        root.path(),
        "other/ignored.xml",
        "<testsuite><testcase name=\"x\"/></testsuite>",
    );
    write(root.path(), "reports/notes.txt", "not xml");

    let summary = collect_junit(root.path(), &["reports/**/*.xml".to_owned()]).unwrap();
    assert_eq!((summary.passed, summary.failed, summary.skipped), (1, 1, 1));
    assert_eq!(summary.failing, ["a.bad"]);

    let shallow = collect_junit(root.path(), &["reports/*.xml".to_owned()]).unwrap();
    assert_eq!(shallow.total(), 2);

    let none = collect_junit(root.path(), &["missing/*.xml".to_owned()]).unwrap();
    assert_eq!(none.total(), 0);

    write(root.path(), "broken/x.xml", "<testsuite>\n<testcase>");
    let err = collect_junit(root.path(), &["broken/*.xml".to_owned()]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("broken/x.xml") && text.contains("line"),
        "{text}"
    );
}

fn build_tree(root: &Path, mtime: u64) {
    // Created in a different order from the sorted one on purpose.
    for (rel, content) in [
        ("dist/z.js", "z"),
        ("dist/a/b.css", "b"),
        ("dist/run.sh", "#!/bin/sh\necho hi\n"),
        ("dist/a/index.html", "<html/>"),
    ] {
        let path = write(root, rel, content);
        set_mtime(&path, mtime);
    }
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        root.join("dist/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a/index.html", root.join("dist/index.html")).unwrap();
}

#[test]
fn pack_is_deterministic_and_content_addressed() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    build_tree(one.path(), 1_000_000);
    build_tree(two.path(), 2_000_000);
    let patterns = ["dist".to_owned()];
    let a = pack(one.path(), &patterns, store.path()).unwrap();
    let b = pack(two.path(), &patterns, store.path()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.files, 5);
    // One stored file, no temporary leftovers.
    let stored: Vec<_> = std::fs::read_dir(store.path()).unwrap().collect();
    assert_eq!(stored.len(), 1);

    write(two.path(), "dist/z.js", "changed");
    let c = pack(two.path(), &patterns, store.path()).unwrap();
    assert_ne!(a.sha256, c.sha256);

    let dest = tempfile::tempdir().unwrap();
    unpack(&a.path, dest.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.path().join("dist/index.html")).unwrap(),
        "<html/>"
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("dist/z.js")).unwrap(),
        "z"
    );
}

/// A hand-made tar entry: name, type, data (or link target for symlinks).
type TarEntry<'a> = (&'a str, tar::EntryType, &'a str);

/// Builds a tar by hand, writing names into the header raw so `..` and absolute paths
/// (which the tar crate refuses to write) can be tested.
fn evil_tar(path: &Path, entries: &[TarEntry]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_old();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            let link = &mut header.as_old_mut().linkname;
            link[..data.len()].copy_from_slice(data.as_bytes());
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        } else {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data.as_bytes()).unwrap();
        }
    }
    builder.finish().unwrap();
}

#[test]
fn unpack_refuses_traversal() {
    use tar::EntryType::{Regular, Symlink};
    let work = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<TarEntry>); 5] = [
        ("dotdot", vec![("../evil.txt", Regular, "x")]),
        ("nested-dotdot", vec![("ok/../../evil.txt", Regular, "x")]),
        ("absolute", vec![("/tmp/sluice-evil-abs.txt", Regular, "x")]),
        (
            "abs-link",
            vec![("etc", Symlink, "/etc"), ("etc/evil.txt", Regular, "x")],
        ),
        (
            "climbing-link",
            vec![("up", Symlink, "../.."), ("up/evil.txt", Regular, "x")],
        ),
    ];
    for (name, entries) in cases {
        let tar_path = work.path().join(format!("{name}.tar"));
        evil_tar(&tar_path, &entries);
        let dest = work.path().join(name).join("dest");
        let err = unpack(&tar_path, &dest).unwrap_err();
        assert!(
            matches!(
                err,
                ArtifactError::UnsafePath { .. } | ArtifactError::UnsafeLink { .. }
            ),
            "{name}: {err}"
        );
        assert!(!dest.parent().unwrap().join("evil.txt").exists(), "{name}");
    }
    assert!(!Path::new("/tmp/sluice-evil-abs.txt").exists());

    // A symlink already in the destination may not be written through either.
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let dest = work.path().join("pre-existing");
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("out")).unwrap();
    let tar_path = work.path().join("through.tar");
    evil_tar(&tar_path, &[("out/evil.txt", Regular, "x")]);
    assert!(unpack(&tar_path, &dest).is_err());
    assert!(!outside.join("evil.txt").exists());

    // Fifos and other special entries are refused.
    let tar_path = work.path().join("fifo.tar");
    evil_tar(&tar_path, &[("pipe", tar::EntryType::Fifo, "")]);
    let err = unpack(&tar_path, &work.path().join("fifo")).unwrap_err();
    assert!(
        matches!(err, ArtifactError::UnsupportedEntry { .. }),
        "{err}"
    );
}

#[test]
fn cache_round_trip_and_key_changes() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    write(root.path(), "Cargo.lock", "version = 3\n");
    write(root.path(), "target/debug/app", "binary");
    write(root.path(), "target/debug/deps/lib.rlib", "rlib");
    write(root.path(), "src/main.rs", "fn main() {}");
    let paths = ["target".to_owned(), "missing-dir".to_owned()];
    let key_files = ["Cargo.lock".to_owned(), "**/package-lock.json".to_owned()];

    let key = cache_key(root.path(), &paths, &key_files).unwrap();
    assert_eq!(key, cache_key(root.path(), &paths, &key_files).unwrap());
    assert!(!restore(cache_dir.path(), &key, root.path()).unwrap());
    save(cache_dir.path(), &key, root.path(), &paths).unwrap();
    let stored: Vec<_> = std::fs::read_dir(cache_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(stored, [format!("{key}.tar")]);

    // Saving the same key again is a no-op, even if the content changed meanwhile.
    write(root.path(), "target/debug/app", "newer binary");
    save(cache_dir.path(), &key, root.path(), &paths).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    assert!(restore(cache_dir.path(), &key, fresh.path()).unwrap());
    assert_eq!(
        std::fs::read_to_string(fresh.path().join("target/debug/app")).unwrap(),
        "binary"
    );
    assert_eq!(
        std::fs::read_to_string(fresh.path().join("target/debug/deps/lib.rlib")).unwrap(),
        "rlib"
    );
    assert!(
        !fresh.path().join("src").exists(),
        "only cache paths are saved"
    );

    write(root.path(), "Cargo.lock", "version = 4\n");
    let changed = cache_key(root.path(), &paths, &key_files).unwrap();
    assert_ne!(key, changed);
    write(root.path(), "web/package-lock.json", "{}");
    assert_ne!(changed, cache_key(root.path(), &paths, &key_files).unwrap());

    assert!(restore(cache_dir.path(), "../escape", root.path()).is_err());
}
