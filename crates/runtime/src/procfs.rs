//! Small readers of `/proc` and process-group signalling.
//!
//! A restarted control plane cannot `wait()` for processes it did not fork, so liveness of
//! adopted instances, "is the whole group gone" and "is this pid still the process we
//! started" are answered from `/proc/<pid>/stat` and `/proc/<pid>/environ`. Zombies count
//! as gone: their parent (init, or a dead control plane's reaper) may never collect them.
//!
//! Everything here is synchronous; the scans of all of `/proc` belong on `spawn_blocking`.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};

use crate::spec::INSTANCE_TOKEN_VAR;

/// The fields of `/proc/<pid>/stat` the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks after boot; with the pid it identifies a process.
    pub starttime: u64,
    /// CPU time in user and kernel mode, clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// A zombie or a dead task is not running.
    pub fn running(&self) -> bool {
        !matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist (or is unreadable).
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of `/proc/<pid>/stat`. The command name sits in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Field n of proc(5) (1-based, counting the pid and the name) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).copied();
    let number = |n: usize| field(n).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        state: *field(3)?.as_bytes().first()?,
        pgrp: field(5)?.parse().ok()?,
        starttime: number(22)?,
        cpu_ticks: number(14)?.saturating_add(number(15)?),
        rss_pages: number(24).unwrap_or(0),
    })
}

/// CPU time (nanoseconds) and resident memory (bytes) summed over the running members of
/// process group `pgid`; `None` when none runs. Scans all of `/proc`.
pub(crate) fn group_usage(pgid: i32) -> Option<(u64, u64)> {
    use nix::unistd::{SysconfVar, sysconf};
    if pgid <= 1 {
        return None;
    }
    let positive = |v: Option<i64>, default: u64| {
        v.and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    let ticks_per_second = positive(sysconf(SysconfVar::CLK_TCK).ok().flatten(), 100);
    let page_size = positive(sysconf(SysconfVar::PAGE_SIZE).ok().flatten(), 4096);
    let (mut ticks, mut pages, mut members) = (0u64, 0u64, 0usize);
    for pid in all_pids() {
        if let Some(s) = stat(pid).filter(|s| s.pgrp == pgid && s.running()) {
            ticks = ticks.saturating_add(s.cpu_ticks);
            pages = pages.saturating_add(s.rss_pages);
            members += 1;
        }
    }
    (members > 0).then(|| {
        (
            ticks.saturating_mul(1_000_000_000 / ticks_per_second),
            pages.saturating_mul(page_size),
        )
    })
}

/// Whether `pid` is a running (non-zombie) process, and, when `starttime` is given, the
/// same process that was recorded (not a recycled pid).
pub(crate) fn is_running(pid: i32, starttime: Option<u64>) -> bool {
    match stat(pid) {
        Some(s) => s.running() && starttime.is_none_or(|t| t == s.starttime),
        None => false,
    }
}

/// The value of [`INSTANCE_TOKEN_VAR`] in the initial environment of `pid`, if any.
pub(crate) fn token_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let needle = format!("{INSTANCE_TOKEN_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(needle.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Running processes whose token starts with `token_prefix`, as `(pid, token)`, sorted by
/// pid. This process is never included, and neither are processes in another pid namespace
/// (inside containers: they belong to the Docker runtime, even with the same token).
pub(crate) fn processes_with_token_prefix(token_prefix: &str) -> Vec<(i32, String)> {
    let me = std::process::id();
    let own_ns = pid_namespace("self");
    let mut found: Vec<(i32, String)> = all_pids()
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter_map(|pid| {
            let token = token_of(pid)?;
            let ours = token.starts_with(token_prefix)
                && is_running(pid, None)
                && pid_namespace(&pid.to_string()) == own_ns;
            ours.then_some((pid, token))
        })
        .collect();
    found.sort_unstable();
    found
}

/// The pid namespace of `/proc/<which>` (`self` or a pid), e.g. `pid:[4026531836]`.
fn pid_namespace(which: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{which}/ns/pid")).ok()
}

/// Whether any non-zombie process is left in group `pgid`.
pub(crate) fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // Signal 0 is a cheap first answer: an empty group is ESRCH. A group that only has
    // zombies still answers, so the slow path scans /proc.
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    all_pids().any(|pid| stat(pid).is_some_and(|s| s.pgrp == pgid && s.running()))
}

/// Sends `signal` to group `pgid`, and to `pid` itself, never to our own group or to
/// pid/group 0 and 1. Errors (the group is already gone) are ignored.
pub(crate) fn signal_group(pgid: i32, pid: i32, signal: Signal) {
    let own = getpgrp().as_raw();
    if pgid > 1 && pgid != own {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
    if pid > 1 && pid != own && u32::try_from(pid).is_ok_and(|p| p != std::process::id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGKILL to `pid` and to the process group it is in now (its own pid as the group when
/// `/proc` no longer shows it).
pub(crate) fn kill_with_group(pid: i32) {
    let pgid = stat(pid).map_or(pid, |s| s.pgrp);
    signal_group(pgid, pid, Signal::SIGKILL);
}

fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.starttime, 98765);
        assert_eq!(s.cpu_ticks, 3);
        assert_eq!(s.rss_pages, 10);
        assert!(s.running());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn our_own_process_is_running() {
        let me = i32::try_from(std::process::id()).unwrap();
        let s = stat(me).unwrap();
        assert!(is_running(me, Some(s.starttime)));
        assert!(!is_running(me, Some(s.starttime + 1)));
        let group = getpgrp().as_raw();
        if group > 1 {
            let (_, rss) = group_usage(group).unwrap();
            assert!(rss > 0);
        }
    }
}
