//! Running one step as a host process.
//!
//! [`spawn`] starts `/bin/sh -c COMMAND` in a fresh process group with a cleared
//! environment (exactly [`StepCommand::env`] plus [`STEP_TOKEN_VAR`]), stdin at
//! `/dev/null` and both output pipes read concurrently by two small tasks. Every line is
//! masked before it is sent. [`RunningStep::wait`] resolves to an [`Outcome`] when the
//! process exits, the timeout passes or the caller cancels; in every case the whole process
//! group is killed before it returns, so background children never outlive their step.
//!
//! Architecture invariant: nothing here blocks the async runtime and nothing sleeps on the
//! normal path; a trivial step costs one fork/exec and a handful of wake-ups. The token in
//! the environment lets [`kill_orphans`] find leftovers after a crash of the whole server,
//! when no in-memory handle survives.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid, getpgrp};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::mask::Masker;

/// The environment variable carrying [`StepCommand::token`] into the step's processes.
pub const STEP_TOKEN_VAR: &str = "SLUICE_STEP_TOKEN";

/// Lines longer than this many bytes are delivered in pieces of at most this size.
///
/// Pieces are cut at UTF-8 character boundaries and masked separately, so a secret that
/// straddles a cut in a 64 KiB line is not masked; that trade-off bounds memory per step.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long [`RunningStep::wait`] keeps reading output after the process group is gone.
///
/// Normally the pipes reach end-of-file at once. A grandchild that left the process group
/// (`setsid`, a daemonising tool) can keep them open forever; after this bound the rest of
/// its output is dropped rather than hanging the step.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for the main process to be reaped after SIGKILL before giving up on it
/// (a process stuck in uninterruptible IO); tokio reaps it later in the background.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of one read from an output pipe.
const READ_CHUNK: usize = 16 * 1024;

/// Everything needed to start one step.
#[derive(Debug, Clone)]
pub struct StepCommand {
    /// Shell command line, run as `sh -c COMMAND`.
    pub command: String,
    /// Absolute working directory; must exist.
    pub workdir: PathBuf,
    /// The complete environment: the child gets exactly these variables plus
    /// [`STEP_TOKEN_VAR`], nothing inherited from the server.
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit for the step.
    pub timeout: Duration,
    /// On timeout or cancel the group gets SIGTERM, then SIGKILL after this long.
    pub kill_grace: Duration,
    /// Put into the child environment as [`STEP_TOKEN_VAR`] so [`kill_orphans`] can find the
    /// step's processes after a crash.
    pub token: String,
}

/// Which output pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// One line of step output, already masked, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The pipe the line was read from.
    pub stream: Stream,
    /// The masked text, decoded as lossy UTF-8.
    pub line: String,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The main process exited with this code.
    Exited(i32),
    /// The main process was killed by this signal (not by the runner).
    Signalled(i32),
    /// The step ran longer than its timeout and was killed.
    TimedOut,
    /// The caller cancelled the step and it was killed.
    Cancelled,
    /// The step could not be started or waited for; the text says why.
    SpawnFailed(String),
}

impl Outcome {
    /// Returns true only for an exit with code 0.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }

    /// Returns the exit code when the process exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Exited(code) => Some(*code),
            _ => None,
        }
    }
}

/// Errors starting a step.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The working directory is not an absolute path to an existing directory.
    #[error(
        "working directory {path} does not exist or is not an absolute directory path; check out the workspace before starting the step"
    )]
    Workdir {
        /// The offending path.
        path: PathBuf,
    },
    /// The operating system refused to start the shell.
    #[error(
        "could not start the step with /bin/sh: {source}; check that /bin/sh exists and the environment has no NUL bytes"
    )]
    Spawn {
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A started step. Dropping it kills its whole process group.
#[derive(Debug)]
pub struct RunningStep {
    child: Option<Child>,
    pgid: i32,
    timeout: Duration,
    kill_grace: Duration,
    readers: Vec<JoinHandle<()>>,
    /// Set once `wait` has killed the group, so `Drop` does not signal a group id that may
    /// by then belong to somebody else.
    finished: bool,
}

/// Starts a step. Must be called from within a Tokio runtime with IO and time enabled.
///
/// Output lines go to `lines` as they arrive, masked by `masker`. If the receiver is
/// dropped the output is still read (and discarded) so the step never blocks on a full pipe.
pub fn spawn(
    cmd: &StepCommand,
    masker: Arc<Masker>,
    lines: mpsc::UnboundedSender<OutputLine>,
) -> Result<RunningStep, RunnerError> {
    if !cmd.workdir.is_absolute() || !cmd.workdir.is_dir() {
        return Err(RunnerError::Workdir {
            path: cmd.workdir.clone(),
        });
    }
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&cmd.command)
        .env_clear()
        .envs(&cmd.env)
        .env(STEP_TOKEN_VAR, &cmd.token)
        .current_dir(&cmd.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command
        .spawn()
        .map_err(|source| RunnerError::Spawn { source })?;
    // With process_group(0) the group id is the child's pid. A pid is only absent once the
    // child has been reaped, which cannot have happened yet.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            out,
            Stream::Out,
            Arc::clone(&masker),
            lines.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, Stream::Err, masker, lines)));
    }
    Ok(RunningStep {
        child: Some(child),
        pgid,
        timeout: cmd.timeout,
        kill_grace: cmd.kill_grace,
        readers,
        finished: false,
    })
}

impl RunningStep {
    /// The process group id of the step (equal to the pid of its shell).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the step: returns when the process exited (and its output was drained),
    /// the timeout passed, or `cancel` became true.
    ///
    /// Whatever the reason, the whole process group is SIGKILLed before this returns
    /// (after SIGTERM and [`StepCommand::kill_grace`] on timeout or cancel), and output is
    /// drained for at most [`DRAIN_TIMEOUT`] afterwards. A dropped cancel sender means
    /// "never cancelled".
    pub async fn wait(mut self, mut cancel: watch::Receiver<bool>) -> Outcome {
        let Some(mut child) = self.child.take() else {
            return Outcome::SpawnFailed("the step was already waited for".to_owned());
        };
        let cancelled = async move {
            if cancel.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let ended = tokio::select! {
            biased;
            status = child.wait() => Ok(status),
            () = cancelled => Err(Outcome::Cancelled),
            () = tokio::time::sleep(self.timeout) => Err(Outcome::TimedOut),
        };
        let outcome = match ended {
            Ok(Ok(status)) => outcome_of(status),
            Ok(Err(err)) => Outcome::SpawnFailed(format!("waiting for the step failed: {err}")),
            Err(outcome) => {
                self.terminate(&mut child).await;
                outcome
            }
        };
        // Background children left behind by a finished shell die with the group.
        signal_group(self.pgid, Signal::SIGKILL);
        self.finished = true;
        self.drain().await;
        outcome
    }

    /// SIGTERM to the group, SIGKILL after the grace period, then reap the main process.
    async fn terminate(&self, child: &mut Child) {
        signal_group(self.pgid, Signal::SIGTERM);
        if tokio::time::timeout(self.kill_grace, child.wait())
            .await
            .is_err()
        {
            signal_group(self.pgid, Signal::SIGKILL);
            let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
        }
    }

    /// Waits for both readers to reach end-of-file, at most [`DRAIN_TIMEOUT`].
    async fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for mut reader in std::mem::take(&mut self.readers) {
            if tokio::time::timeout_at(deadline, &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
    }
}

impl Drop for RunningStep {
    fn drop(&mut self) {
        if !self.finished {
            signal_group(self.pgid, Signal::SIGKILL);
        }
        for reader in &self.readers {
            reader.abort();
        }
    }
}

fn outcome_of(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(signal)) => Outcome::Signalled(signal),
        (None, None) => Outcome::SpawnFailed(format!("the step ended with status {status}")),
    }
}

/// Sends `signal` to process group `pgid`, never to our own group or to group 0/1.
fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return;
    }
    // ESRCH (the group is already empty) is the expected result after a clean exit.
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// Reads `reader` to end-of-file, sending each masked line.
async fn read_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    masker: Arc<Masker>,
    tx: mpsc::UnboundedSender<OutputLine>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let send = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let line = masker.mask(&text).into_owned();
        // A closed receiver means nobody wants the output; keep reading anyway so the
        // step does not block on a full pipe.
        let _ = tx.send(OutputLine { stream, line });
    };
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut chunk = &buf[..n];
        while let Some(pos) = chunk.iter().position(|b| *b == b'\n') {
            pending.extend_from_slice(&chunk[..pos]);
            if pending.last() == Some(&b'\r') {
                pending.pop();
            }
            emit_split(&pending, &send);
            pending.clear();
            chunk = &chunk[pos + 1..];
        }
        pending.extend_from_slice(chunk);
        // Deliver over-long unterminated lines in pieces instead of buffering without bound.
        let mut start = 0;
        while pending.len() - start > MAX_LINE_BYTES {
            let cut = split_point(&pending[start..], MAX_LINE_BYTES);
            send(&pending[start..start + cut]);
            start += cut;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        if pending.last() == Some(&b'\r') {
            pending.pop();
        }
        emit_split(&pending, &send);
    }
}

/// Sends `line` in pieces of at most [`MAX_LINE_BYTES`].
fn emit_split(mut line: &[u8], send: &impl Fn(&[u8])) {
    while line.len() > MAX_LINE_BYTES {
        let cut = split_point(line, MAX_LINE_BYTES);
        send(&line[..cut]);
        line = &line[cut..];
    }
    send(line);
}

/// Where to cut `bytes` to at most `max` bytes without splitting a UTF-8 sequence.
fn split_point(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    let mut cut = max;
    while cut > max.saturating_sub(3) && cut > 0 && is_continuation(bytes[cut]) {
        cut -= 1;
    }
    if cut == 0 || is_continuation(bytes[cut]) {
        max
    } else {
        cut
    }
}

/// Returns the pids whose initial environment has [`STEP_TOKEN_VAR`] starting with
/// `token_prefix`, in ascending order (this process excluded).
///
/// Reads `/proc/*/environ`, so it only sees processes this user may inspect. It is
/// synchronous; call it from `spawn_blocking` on a busy runtime. Zombies have no
/// environment and are not reported.
pub fn processes_with_token(token_prefix: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = format!("{STEP_TOKEN_VAR}=");
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ.split(|b| *b == 0).any(|var| {
                    var.strip_prefix(needle.as_bytes())
                        .is_some_and(|value| value.starts_with(token_prefix.as_bytes()))
                })
            })
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Kills leftover step processes after a crash: every process whose [`STEP_TOKEN_VAR`]
/// starts with `token_prefix`, and its process group, gets SIGKILL. Returns the pids killed.
///
/// An empty prefix matches every sluice step on the machine; pass the server's own token
/// prefix. The scan is repeated (up to three rounds) to catch processes forked between the
/// scan and the kill. Our own process group is never signalled. Synchronous, like
/// [`processes_with_token`].
pub fn kill_orphans(token_prefix: &str) -> Vec<i32> {
    let own_group = getpgrp();
    let mut killed = Vec::new();
    for _ in 0..3 {
        let found = processes_with_token(token_prefix);
        if found.is_empty() {
            break;
        }
        for pid in found {
            let target = Pid::from_raw(pid);
            if let Ok(group) = getpgid(Some(target))
                && group != own_group
                && group.as_raw() > 1
            {
                let _ = killpg(group, Signal::SIGKILL);
            }
            // The group kill may already have taken it; a zombie still accepts the signal,
            // and a process reaped in between (ESRCH) is dead all the same.
            match kill(target, Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => killed.push(pid),
                Err(_) => {}
            }
        }
    }
    killed.sort_unstable();
    killed.dedup();
    killed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_point_respects_utf8_boundaries() {
        let text = "aé".repeat(10); // 'é' is two bytes
        let bytes = text.as_bytes();
        for max in 1..bytes.len() {
            let cut = split_point(bytes, max);
            assert!(cut <= max);
            assert!(std::str::from_utf8(&bytes[..cut]).is_ok() || max == 1);
        }
        assert_eq!(split_point(b"abc", 10), 3);
    }

    #[test]
    fn outcome_helpers() {
        assert!(Outcome::Exited(0).success());
        assert!(!Outcome::Exited(1).success());
        assert!(!Outcome::TimedOut.success());
        assert_eq!(Outcome::Exited(3).exit_code(), Some(3));
        assert_eq!(Outcome::Signalled(9).exit_code(), None);
        assert_eq!(Outcome::Cancelled.exit_code(), None);
    }
}
