//! Helpers shared by the server's integration tests: a git CLI with a fixed identity, a
//! repository whose commits change `version.txt`, a free loopback port, and a bounded wait.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `git -C dir ARGS` with a test identity; panics with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "sluice test")
        .env("GIT_AUTHOR_EMAIL", "test@sluice.invalid")
        .env("GIT_COMMITTER_NAME", "sluice test")
        .env("GIT_COMMITTER_EMAIL", "test@sluice.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("the git CLI must be installed");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository whose commits set `version.txt` (the test apps read it).
pub struct Repo(pub PathBuf);

impl Repo {
    /// `git ARGS` in the repository.
    pub fn git(&self, args: &[&str]) {
        git(&self.0, args);
    }

    /// Commits everything with `version.txt` set to `version`.
    pub fn commit(&self, version: &str) {
        std::fs::write(self.0.join("version.txt"), version).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", version]);
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
