//! Running the `git` executable with a controlled environment.
//!
//! Every git process gets the same treatment: no system config, no pager, no prompts for
//! credentials (ssh in batch mode), English messages, and none of the `GIT_DIR`-style
//! variables that could leak in when sluice itself runs inside a git hook.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::GitError;

/// Limit for local, read-only git commands (they normally take milliseconds).
pub(crate) const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variables that would redirect git to another repository or object store.
const SCRUBBED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
];

/// A `git` command with the controlled environment, optionally on the repository `git_dir`.
pub(crate) fn git(git_dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        // An empty askpass is skipped by git, and with terminal prompts off it fails
        // instead of asking.
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_PAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.args([
        "-c",
        "protocol.file.allow=always",
        "-c",
        // GIT_SSH_COMMAND in the environment still wins over this, as users expect.
        "core.sshCommand=ssh -o BatchMode=yes -o ConnectTimeout=20",
        "-c",
        "core.quotePath=false",
        "-c",
        "credential.interactive=false",
    ]);
    if let Some(dir) = git_dir {
        cmd.arg("--git-dir").arg(dir);
    }
    cmd
}

/// What a finished git process left behind.
pub(crate) struct Finished {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The git arguments of `cmd`, for error messages (without the fixed `-c` prefix).
pub(crate) fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Skip the `-c key=value` pairs and `--git-dir <dir>` that every command carries.
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-c" || args[i] == "--git-dir" {
            i += 2;
            continue;
        }
        out.push(args[i].clone());
        i += 1;
    }
    out.join(" ")
}

/// Runs `cmd` to completion with `stdin` fed in, killing it after `timeout`.
/// Err(None) means the timeout passed; Err(Some(e)) that it could not be spawned.
pub(crate) async fn run(
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Finished, Option<std::io::Error>> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(Some)?;
    let feed = child.stdin.take();
    let work = async move {
        if let (Some(mut pipe), Some(data)) = (feed, stdin) {
            // A write error means git exited early; its status and stderr say why.
            let _ = pipe.write_all(&data).await;
            drop(pipe);
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(out)) => Ok(Finished {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Runs a local git command and returns its stdout, or `GitError::Command`.
pub(crate) async fn output(cmd: Command, stdin: Option<Vec<u8>>) -> Result<Vec<u8>, GitError> {
    let args = describe(&cmd);
    let done = finish(&args, run(cmd, stdin, LOCAL_TIMEOUT).await)?;
    if done.success() {
        Ok(done.stdout)
    } else {
        Err(GitError::Command {
            args,
            stderr: done.stderr,
        })
    }
}

/// Turns a spawn error or timeout into a `GitError`.
pub(crate) fn finish(
    args: &str,
    result: Result<Finished, Option<std::io::Error>>,
) -> Result<Finished, GitError> {
    match result {
        Ok(done) => Ok(done),
        Err(Some(e)) => Err(GitError::Io(e)),
        Err(None) => Err(GitError::Command {
            args: args.to_string(),
            stderr: format!("timed out after {} s", LOCAL_TIMEOUT.as_secs()),
        }),
    }
}

/// The answer of `git cat-file --batch` to one request.
pub(crate) enum CatFile {
    /// The object is a blob with these bytes.
    Blob(Vec<u8>),
    /// The object is a blob of this size, over the limit; it was not read.
    TooLarge(u64),
    /// No such object, or not a blob (a directory or submodule).
    Missing,
    /// git failed; its stderr or a description.
    Failed(String),
}

/// Sends `request` (one line) to `cmd` (a `cat-file --batch`) and reads the answer,
/// reading at most `max` bytes of content.
pub(crate) async fn cat_file(cmd: Command, request: String, max: u64) -> std::io::Result<CatFile> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true).stdin(Stdio::piped());
    let mut child = cmd.spawn()?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Ok(CatFile::Failed("git cat-file has no pipes".to_string()));
    };
    // The request is one short line, far below the pipe buffer, so this cannot block on
    // git's output.
    let _ = stdin.write_all(request.as_bytes()).await;
    drop(stdin);
    let mut reader = BufReader::new(stdout);
    let mut header = String::new();
    reader.read_line(&mut header).await?;
    let header = header.trim_end_matches('\n');
    let mut fields = header.rsplitn(3, ' ');
    let (last, kind) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    if header.is_empty() {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        let _ = child.wait().await;
        return Ok(CatFile::Failed(text.trim().to_string()));
    }
    if last == "missing" || last == "ambiguous" || kind != "blob" {
        return Ok(CatFile::Missing);
    }
    let Ok(size) = last.parse::<u64>() else {
        return Ok(CatFile::Failed(format!(
            "unexpected cat-file header {header:?}"
        )));
    };
    if size > max {
        return Ok(CatFile::TooLarge(size));
    }
    let mut bytes = vec![0; size as usize];
    reader.read_exact(&mut bytes).await?;
    let _ = child.wait().await;
    Ok(CatFile::Blob(bytes))
}
