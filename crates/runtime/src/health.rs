//! The probes behind [`HealthCheck`]: a minimal HTTP/1.1 GET, a TCP connect and a shell
//! command, each bounded by its own timeout.
//!
//! The HTTP probe is deliberately tiny (one request, `Connection: close`, only the status
//! line is read) so the runtime needs no HTTP client crate and a probe costs one connection.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::procfs;
use crate::spec::HealthCheck;

/// Most bytes read while looking for the end of the status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Runs one probe against an instance listening on `127.0.0.1:port`. `Ok(())` is healthy;
/// the error text says what failed (it ends up in `InstanceStatus::last_error`).
pub(crate) async fn probe(
    check: &HealthCheck,
    port: u16,
    workdir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    match check {
        HealthCheck::Http {
            path,
            expect_status,
            timeout,
        } => match http_status(port, path, *timeout).await {
            Ok(status) if status == *expect_status => Ok(()),
            Ok(status) => Err(format!(
                "health check GET {path} answered {status}, expected {expect_status}"
            )),
            Err(err) => Err(format!("health check GET {path} failed: {err}")),
        },
        HealthCheck::Tcp { timeout } => {
            match tokio::time::timeout(*timeout, TcpStream::connect(("127.0.0.1", port))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!(
                    "health check could not connect to port {port}: {err}"
                )),
                Err(_) => Err(format!(
                    "health check connect to port {port} timed out after {timeout:?}"
                )),
            }
        }
        HealthCheck::Command { run, timeout } => command(run, *timeout, workdir, env).await,
        HealthCheck::None => Ok(()),
    }
}

/// `GET path` on `127.0.0.1:port`; returns the response status code.
pub async fn http_status(port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to port {port}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: sluice-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send request: {e}"))?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                return parse_status_line(&head[..end]);
            }
            if head.len() > MAX_STATUS_LINE {
                return Err("the status line is longer than 8 KiB".to_owned());
            }
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("read response: {e}"))?;
            if n == 0 {
                return Err("the connection closed before a status line".to_owned());
            }
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// Parses `HTTP/1.x NNN reason` into `NNN`.
pub(crate) fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP/1.x status line: {text:?}"));
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .ok_or_else(|| format!("not an HTTP/1.x status line: {text:?}"))
}

/// `sh -c run` in its own process group; healthy on exit 0 within `timeout`. The whole
/// group is killed on timeout and after exit, so a probe leaves nothing behind.
async fn command(
    run: &str,
    timeout: Duration,
    workdir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(run)
        .env_clear()
        .envs(env)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("health check command could not start: {e}"))?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let result = tokio::time::timeout(timeout, child.wait()).await;
    // Leftover background children of the probe die with its group.
    procfs::signal_group(pid, 0, Signal::SIGKILL);
    match result {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("health check command failed: {status}")),
        Ok(Err(err)) => Err(format!(
            "health check command could not be waited for: {err}"
        )),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("health check command timed out after {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Ok(204));
        assert!(parse_status_line(b"HTTP/2 200").is_err());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2000 x").is_err());
        assert!(parse_status_line(b"HTTP/1.1 099 x").is_err());
        assert!(parse_status_line(b"").is_err());
    }
}
