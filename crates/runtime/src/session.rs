//! Starting instance processes in a session of their own.
//!
//! `setsid(2)` in the child between fork and exec makes the instance a session and process
//! group leader (pgid = sid = pid) with no controlling terminal: signals aimed at the
//! control plane's group or terminal (Ctrl-C, a closed terminal's SIGHUP) never reach it,
//! and it keeps running when the control plane dies. That is the one place the runtime
//! needs `unsafe`, because `pre_exec` is unsafe.
#![allow(unsafe_code)]

use tokio::process::Command;

/// Makes `cmd` call `setsid()` in the child just before `exec`.
///
/// Do not combine with `process_group(0)`: `setsid` fails for a process that already leads
/// a group, and it creates a new group by itself.
pub(crate) fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It makes one system call (setsid) and turns its
    // errno into an io::Error with `from_raw_os_error`, which neither allocates nor takes
    // a lock; it touches no state shared with other threads of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))
        });
    }
}
