//! Containers: create (labels, env, entrypoint and command, working directory, bind
//! mounts, ports published on 127.0.0.1 only, CPU and memory limits, restart policy "no"),
//! start, kill, stop, remove, inspect, list by label, wait, logs (demultiplexed), one-shot
//! stats computed like `docker stats`, exec, and filesystem export as a tar stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use crate::transport::{Call, seg};
use crate::{ByteStream, Docker, DockerError, parse_rfc3339_ms};

/// A bind mount of a host path into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A TCP port published on the host's loopback: `127.0.0.1:host_port` forwards to
/// `container_port`. Nothing is ever published on other host addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBinding {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on 127.0.0.1.
    pub host_port: u16,
}

/// What a new container is (`POST /containers/create`). The restart policy is always "no":
/// whoever runs containers through this crate supervises them itself.
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    /// Container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`); the daemon picks one when `None`.
    pub name: Option<String>,
    /// Image reference or id.
    pub image: String,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    pub cmd: Option<Vec<String>>,
    /// Environment, on top of the image's.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container.
    pub working_dir: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Published ports (127.0.0.1 only).
    pub ports: Vec<PortBinding>,
    /// CPU limit in billionths of a CPU (`NanoCpus`; 1.5 CPUs = 1_500_000_000).
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes (`Memory`); swap is not allowed on top of it.
    pub memory_bytes: Option<i64>,
    /// Run Docker's init (tini) as PID 1, which forwards signals to the command and reaps
    /// zombies; without it a command that is PID 1 ignores SIGTERM unless it handles it.
    pub init: bool,
}

/// The state part of `GET /containers/{id}/json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// Exit code of the last run (137 after SIGKILL).
    pub exit_code: i64,
    /// Whether the kernel's OOM killer killed it (memory limit reached).
    pub oom_killed: bool,
    /// Host pid of its main process while it runs (0 otherwise).
    pub pid: i64,
    /// The daemon's error for a container that failed to start.
    pub error: String,
    /// When it last started, epoch milliseconds.
    pub started_ms: Option<i64>,
    /// When it last stopped, epoch milliseconds.
    pub finished_ms: Option<i64>,
}

/// A published port as inspect reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPort {
    /// Port inside the container.
    pub container_port: u16,
    /// Host address it is published on.
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// What `GET /containers/{id}/json` reports (the parts sluice uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment as `K=V` entries (the image's and the container's).
    pub env: Vec<String>,
    /// Run state.
    pub state: ContainerState,
    /// CPU limit in billionths of a CPU, 0 when unlimited.
    pub nano_cpus: i64,
    /// Memory limit in bytes, 0 when unlimited.
    pub memory_bytes: i64,
    /// Memory plus swap limit in bytes, 0 when unset.
    pub memory_swap_bytes: i64,
    /// Restart policy name (`no`).
    pub restart_policy: String,
    /// Address on the default bridge network, while it runs.
    pub ip_address: Option<String>,
    /// Published ports.
    pub ports: Vec<PublishedPort>,
}

/// One entry of `GET /containers/json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `exited`, ...
    pub state: String,
    /// Human status, e.g. `Up 5 minutes`.
    pub status: String,
}

/// Which output stream a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a container's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// Where it came from.
    pub stream: LogStream,
    /// The bytes (usually one line with its newline).
    pub data: Bytes,
}

/// What `logs` returns.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Keep the stream open and deliver new output until the container stops.
    pub follow: bool,
    /// Only output produced at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last this many lines (before following).
    pub tail: Option<u64>,
}

/// State of an exec (`GET /exec/{id}/json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecState {
    /// Still running.
    pub running: bool,
    /// Exit code once it finished.
    pub exit_code: Option<i64>,
}

/// One stats sample of a container. CPU figures are cumulative nanoseconds; see
/// [`Stats::cpu_cores`] and [`cpu_cores_between`] for rates.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// When the daemon read the sample, epoch milliseconds.
    pub read_ms: Option<i64>,
    /// CPU time the container used, nanoseconds.
    pub cpu_total_ns: u64,
    /// CPU time the whole host used (all CPUs), nanoseconds.
    pub system_cpu_ns: u64,
    /// CPUs of the host.
    pub online_cpus: u32,
    /// The same two figures one sample earlier (zero for a one-shot sample).
    pub pre_cpu_total_ns: u64,
    /// See `pre_cpu_total_ns`.
    pub pre_system_cpu_ns: u64,
    /// Memory in use without the reclaimable page cache, as `docker stats` shows it.
    pub memory_usage_bytes: u64,
    /// The memory limit (the host's memory when the container has none).
    pub memory_limit_bytes: u64,
}

impl Stats {
    /// CPU cores used between the previous and this sample, computed like `docker stats`
    /// (container CPU delta / host CPU delta x online CPUs). `None` without a previous
    /// sample.
    pub fn cpu_cores(&self) -> Option<f64> {
        let delta = self.cpu_total_ns.checked_sub(self.pre_cpu_total_ns)?;
        let system = self.system_cpu_ns.checked_sub(self.pre_system_cpu_ns)?;
        if self.pre_system_cpu_ns == 0 || system == 0 {
            return None;
        }
        Some(delta as f64 / system as f64 * f64::from(self.online_cpus.max(1)))
    }

    /// [`Stats::cpu_cores`] as a fraction of `cpus` (the container's CPU limit) or, when
    /// it has none, of the host's CPUs: 1.0 means fully busy.
    pub fn cpu_fraction(&self, cpus: Option<f64>) -> Option<f64> {
        let of = cpus
            .filter(|c| *c > 0.0)
            .unwrap_or(f64::from(self.online_cpus.max(1)));
        self.cpu_cores().map(|c| c / of)
    }

    /// Memory in use as a fraction of the limit.
    pub fn memory_fraction(&self) -> Option<f64> {
        (self.memory_limit_bytes > 0)
            .then(|| self.memory_usage_bytes as f64 / self.memory_limit_bytes as f64)
    }
}

/// CPU cores used between two samples of the same container, like `docker stats`.
/// `None` when they are not in order or the host clock did not advance.
pub fn cpu_cores_between(previous: &Stats, current: &Stats) -> Option<f64> {
    let delta = current.cpu_total_ns.checked_sub(previous.cpu_total_ns)?;
    let system = current.system_cpu_ns.checked_sub(previous.system_cpu_ns)?;
    if system == 0 {
        return None;
    }
    Some(delta as f64 / system as f64 * f64::from(current.online_cpus.max(1)))
}

#[derive(Deserialize)]
struct RawCreated {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "State")]
    state: RawState,
    #[serde(rename = "Config")]
    config: RawConfig,
    #[serde(rename = "HostConfig")]
    host: RawHost,
    #[serde(rename = "NetworkSettings")]
    network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawState {
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Running")]
    running: bool,
    #[serde(rename = "OOMKilled")]
    oom_killed: bool,
    #[serde(rename = "Pid")]
    pid: i64,
    #[serde(rename = "ExitCode")]
    exit_code: i64,
    #[serde(rename = "Error")]
    error: String,
    #[serde(rename = "StartedAt")]
    started_at: String,
    #[serde(rename = "FinishedAt")]
    finished_at: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHost {
    #[serde(rename = "NanoCpus")]
    nano_cpus: i64,
    #[serde(rename = "Memory")]
    memory: i64,
    #[serde(rename = "MemorySwap")]
    memory_swap: i64,
    #[serde(rename = "RestartPolicy")]
    restart: Option<RawRestart>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRestart {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawNetwork {
    #[serde(rename = "IPAddress")]
    ip_address: String,
    #[serde(rename = "Ports")]
    ports: Option<BTreeMap<String, Option<Vec<RawHostPort>>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHostPort {
    #[serde(rename = "HostIp")]
    host_ip: String,
    #[serde(rename = "HostPort")]
    host_port: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSummary {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names")]
    names: Option<Vec<String>>,
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "Status")]
    status: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStats {
    read: String,
    cpu_stats: RawCpu,
    precpu_stats: RawCpu,
    memory_stats: RawMemory,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCpu {
    cpu_usage: RawCpuUsage,
    system_cpu_usage: u64,
    online_cpus: u32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCpuUsage {
    total_usage: u64,
    percpu_usage: Option<Vec<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMemory {
    usage: u64,
    limit: u64,
    stats: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct RawWait {
    #[serde(rename = "StatusCode")]
    status_code: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawExec {
    #[serde(rename = "Running")]
    running: bool,
    #[serde(rename = "ExitCode")]
    exit_code: Option<i64>,
}

impl Docker {
    /// `POST /containers/create`; returns the new container's id.
    pub async fn create_container(&self, config: &ContainerConfig) -> Result<String, DockerError> {
        let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let binds: Vec<String> = config
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{}:{}{}",
                    b.host.display(),
                    b.container,
                    if b.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        let mut exposed = serde_json::Map::new();
        let mut published = serde_json::Map::new();
        for p in &config.ports {
            let key = format!("{}/tcp", p.container_port);
            exposed.insert(key.clone(), json!({}));
            published.insert(
                key,
                json!([{ "HostIp": "127.0.0.1", "HostPort": p.host_port.to_string() }]),
            );
        }
        let mut host = json!({
            "Binds": binds,
            "PortBindings": published,
            "RestartPolicy": { "Name": "no" },
            "Init": config.init,
        });
        if let Some(n) = config.nano_cpus {
            host["NanoCpus"] = json!(n);
        }
        if let Some(m) = config.memory_bytes {
            host["Memory"] = json!(m);
            host["MemorySwap"] = json!(m);
        }
        let mut body = json!({
            "Image": config.image,
            "Env": env,
            "Labels": config.labels,
            "ExposedPorts": exposed,
            "HostConfig": host,
        });
        if let Some(e) = &config.entrypoint {
            body["Entrypoint"] = json!(e);
        }
        if let Some(c) = &config.cmd {
            body["Cmd"] = json!(c);
        }
        if let Some(w) = &config.working_dir {
            body["WorkingDir"] = json!(w);
        }
        let mut call = Call::post("/containers/create");
        if let Some(name) = &config.name {
            call = call.query("name", name);
        }
        let created: RawCreated = self.call_json(call.json(&body)?).await?;
        Ok(created.id)
    }

    /// `POST /containers/{id}/start`; starting a running container is fine.
    pub async fn start_container(&self, id: &str) -> Result<(), DockerError> {
        self.call(Call::post(format!("/containers/{}/start", seg(id))))
            .await
            .map(drop)
    }

    /// `POST /containers/{id}/stop`: the stop signal, SIGKILL after `timeout` (whole
    /// seconds, rounded up). Stopping a stopped container is fine.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), DockerError> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        self.call(
            Call::post(format!("/containers/{}/stop", seg(id)))
                .query("t", secs)
                .timeout(self.timeout + Duration::from_secs(secs)),
        )
        .await
        .map(drop)
    }

    /// `POST /containers/{id}/kill` with `signal` (e.g. `SIGTERM`, `SIGKILL`). A container
    /// that does not run answers 409 ([`DockerError::Api`]).
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        self.call(Call::post(format!("/containers/{}/kill", seg(id))).query("signal", signal))
            .await
            .map(drop)
    }

    /// `DELETE /containers/{id}` with its anonymous volumes; `force` kills it first if it
    /// runs. A missing container is [`DockerError::is_not_found`].
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<(), DockerError> {
        self.call(
            Call::delete(format!("/containers/{}", seg(id)))
                .query("force", force)
                .query("v", true),
        )
        .await
        .map(drop)
    }

    /// `GET /containers/{id}/json`.
    pub async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        let raw: RawInspect = self
            .call_json(Call::get(format!("/containers/{}/json", seg(id))))
            .await?;
        let mut ports = Vec::new();
        for (key, bindings) in raw.network.ports.unwrap_or_default() {
            let Some(container_port) = key.split('/').next().and_then(|p| p.parse().ok()) else {
                continue;
            };
            for b in bindings.unwrap_or_default() {
                if let Ok(host_port) = b.host_port.parse() {
                    ports.push(PublishedPort {
                        container_port,
                        host_ip: b.host_ip,
                        host_port,
                    });
                }
            }
        }
        Ok(ContainerInfo {
            id: raw.id,
            name: raw.name.trim_start_matches('/').to_owned(),
            image: raw.config.image,
            labels: raw.config.labels.unwrap_or_default(),
            env: raw.config.env.unwrap_or_default(),
            state: ContainerState {
                status: raw.state.status,
                running: raw.state.running,
                exit_code: raw.state.exit_code,
                oom_killed: raw.state.oom_killed,
                pid: raw.state.pid,
                error: raw.state.error,
                started_ms: parse_rfc3339_ms(&raw.state.started_at),
                finished_ms: parse_rfc3339_ms(&raw.state.finished_at),
            },
            nano_cpus: raw.host.nano_cpus,
            memory_bytes: raw.host.memory,
            memory_swap_bytes: raw.host.memory_swap,
            restart_policy: raw.host.restart.unwrap_or_default().name,
            ip_address: Some(raw.network.ip_address).filter(|a| !a.is_empty()),
            ports,
        })
    }

    /// `GET /containers/json?all=true` restricted to containers carrying every label
    /// filter in `labels` (`key` or `key=value`), running or not.
    pub async fn list_containers(
        &self,
        labels: &[&str],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = json!({ "label": labels }).to_string();
        let raw: Vec<RawSummary> = self
            .call_json(
                Call::get("/containers/json")
                    .query("all", true)
                    .query("filters", filters),
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|r| ContainerSummary {
                id: r.id,
                name: r
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                labels: r.labels.unwrap_or_default(),
                state: r.state,
                status: r.status,
            })
            .collect())
    }

    /// `POST /containers/{id}/wait?condition=not-running`: resolves when the container is
    /// not running (at once if it already stopped), with its exit code. Not limited in
    /// time; a daemon that goes away ends it with [`DockerError::Connection`].
    pub async fn wait_container(&self, id: &str) -> Result<i64, DockerError> {
        let call =
            Call::post(format!("/containers/{}/wait", seg(id))).query("condition", "not-running");
        let context = call.context();
        let response = self.send(call).await?;
        let mut body = self.body_stream(response, context.clone());
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        let raw: RawWait = serde_json::from_slice(&bytes).map_err(|e| DockerError::Protocol {
            context,
            reason: format!("cannot decode the JSON answer: {e}"),
        })?;
        Ok(raw.status_code)
    }

    /// `GET /containers/{id}/logs` with stdout and stderr, demultiplexed into chunks. With
    /// `follow` the stream lasts until the container stops.
    pub async fn logs(
        &self,
        id: &str,
        options: &LogOptions,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<LogChunk, DockerError>>, DockerError>
    {
        let mut call = Call::get(format!("/containers/{}/logs", seg(id)))
            .query("stdout", true)
            .query("stderr", true)
            .query("follow", options.follow);
        if let Some(since) = options.since {
            let d = since.duration_since(UNIX_EPOCH).unwrap_or_default();
            call = call.query("since", format!("{}.{:09}", d.as_secs(), d.subsec_nanos()));
        }
        if let Some(tail) = options.tail {
            call = call.query("tail", tail);
        }
        let context = call.context();
        let response = self.send(call).await?;
        Ok(demultiplex(self.body_stream(response, context)))
    }

    /// `GET /containers/{id}/stats?stream=false`: a sample with the previous one filled
    /// in, so [`Stats::cpu_cores`] works; the daemon takes about a second to answer. A
    /// container that does not run reports zeros.
    pub async fn stats(&self, id: &str) -> Result<Stats, DockerError> {
        self.stats_call(Call::get(format!("/containers/{}/stats", seg(id))).query("stream", false))
            .await
    }

    /// `GET /containers/{id}/stats?stream=false&one-shot=true`: one sample at once,
    /// without a previous one; compute rates between two of them with
    /// [`cpu_cores_between`].
    pub async fn stats_sample(&self, id: &str) -> Result<Stats, DockerError> {
        self.stats_call(
            Call::get(format!("/containers/{}/stats", seg(id)))
                .query("stream", false)
                .query("one-shot", true),
        )
        .await
    }

    async fn stats_call(&self, call: Call) -> Result<Stats, DockerError> {
        let raw: RawStats = self.call_json(call).await?;
        let online = |c: &RawCpu| {
            if c.online_cpus > 0 {
                c.online_cpus
            } else {
                c.cpu_usage
                    .percpu_usage
                    .as_ref()
                    .map_or(1, |p| u32::try_from(p.len()).unwrap_or(1))
            }
        };
        // `docker stats` leaves out the inactive page cache: cgroup v1 reports it as
        // total_inactive_file, v2 as inactive_file.
        let memory = &raw.memory_stats;
        let cache = memory
            .stats
            .get("total_inactive_file")
            .or_else(|| memory.stats.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        let usage = if cache < memory.usage {
            memory.usage - cache
        } else {
            memory.usage
        };
        Ok(Stats {
            read_ms: parse_rfc3339_ms(&raw.read),
            cpu_total_ns: raw.cpu_stats.cpu_usage.total_usage,
            system_cpu_ns: raw.cpu_stats.system_cpu_usage,
            online_cpus: online(&raw.cpu_stats),
            pre_cpu_total_ns: raw.precpu_stats.cpu_usage.total_usage,
            pre_system_cpu_ns: raw.precpu_stats.system_cpu_usage,
            memory_usage_bytes: usage,
            memory_limit_bytes: memory.limit,
        })
    }

    /// `GET /containers/{id}/export`: the container's filesystem as a tar stream (works on
    /// stopped containers too).
    pub async fn export_container(&self, id: &str) -> Result<ByteStream, DockerError> {
        let call = Call::get(format!("/containers/{}/export", seg(id)));
        let context = call.context();
        let response = self.send(call).await?;
        Ok(self.body_stream(response, context))
    }

    /// Starts `cmd` detached inside running container `id` (`docker exec -d`), in
    /// `working_dir` when given; it inherits the container's environment. Returns the exec
    /// id for [`Docker::exec_state`].
    pub async fn exec_start(
        &self,
        id: &str,
        cmd: &[String],
        working_dir: Option<&str>,
    ) -> Result<String, DockerError> {
        let mut body = json!({
            "Cmd": cmd,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
        });
        if let Some(w) = working_dir {
            body["WorkingDir"] = json!(w);
        }
        let created: RawCreated = self
            .call_json(Call::post(format!("/containers/{}/exec", seg(id))).json(&body)?)
            .await?;
        self.call(
            Call::post(format!("/exec/{}/start", seg(&created.id)))
                .json(&json!({ "Detach": true, "Tty": false }))?,
        )
        .await?;
        Ok(created.id)
    }

    /// `GET /exec/{id}/json`.
    pub async fn exec_state(&self, exec_id: &str) -> Result<ExecState, DockerError> {
        let raw: RawExec = self
            .call_json(Call::get(format!("/exec/{}/json", seg(exec_id))))
            .await?;
        Ok(ExecState {
            running: raw.running,
            exit_code: if raw.running { None } else { raw.exit_code },
        })
    }

    /// Runs `cmd` in container `id` and waits (polling) for its exit code, at most
    /// `timeout`: `Ok(None)` when it did not finish in time. Docker cannot kill an exec, so
    /// a command that overran goes on until it ends or the container stops.
    pub async fn exec_status(
        &self,
        id: &str,
        cmd: &[String],
        working_dir: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<i64>, DockerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let exec = self.exec_start(id, cmd, working_dir).await?;
        let mut pause = Duration::from_millis(5);
        loop {
            let state = self.exec_state(&exec).await?;
            if !state.running {
                return Ok(Some(state.exit_code.unwrap_or(-1)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Splits Docker's multiplexed stream (8-byte headers: stream type, three zero bytes, a
/// big-endian length) into chunks. A stream without such headers (a TTY container) is
/// passed on as stdout.
fn demultiplex(
    body: ByteStream,
) -> futures_util::stream::BoxStream<'static, Result<LogChunk, DockerError>> {
    struct State {
        body: ByteStream,
        buf: BytesMut,
        raw: Option<bool>,
        done: bool,
    }
    let state = State {
        body,
        buf: BytesMut::new(),
        raw: None,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.raw == Some(true) && !s.buf.is_empty() {
                let data = s.buf.split().freeze();
                return Some((
                    Ok(LogChunk {
                        stream: LogStream::Stdout,
                        data,
                    }),
                    s,
                ));
            }
            if s.buf.len() >= 8 {
                let header = &s.buf[..8];
                let framed = matches!(header[0], 0..=2) && header[1..4] == [0, 0, 0];
                if s.raw.is_none() {
                    s.raw = Some(!framed);
                    continue;
                }
                if !framed {
                    s.raw = Some(true);
                    continue;
                }
                let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                if s.buf.len() >= 8 + len {
                    let stream = if header[0] == 2 {
                        LogStream::Stderr
                    } else {
                        LogStream::Stdout
                    };
                    s.buf.advance(8);
                    let data = s.buf.split_to(len).freeze();
                    return Some((Ok(LogChunk { stream, data }), s));
                }
            }
            if s.done {
                if !s.buf.is_empty() && s.raw != Some(false) {
                    let data = s.buf.split().freeze();
                    return Some((
                        Ok(LogChunk {
                            stream: LogStream::Stdout,
                            data,
                        }),
                        s,
                    ));
                }
                return None;
            }
            match s.body.next().await {
                Some(Ok(chunk)) => s.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.done = true;
                    s.buf.clear();
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    if s.raw.is_none() && !s.buf.is_empty() {
                        s.raw = Some(true);
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 0, 0, 0];
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    async fn collect(pieces: Vec<Vec<u8>>) -> Vec<LogChunk> {
        let body: ByteStream = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|p| Ok::<_, DockerError>(Bytes::from(p))),
        )
        .boxed();
        demultiplex(body)
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
    }

    #[tokio::test]
    async fn frames_are_demultiplexed_across_chunk_boundaries() {
        let mut all = frame(1, b"out\n");
        all.extend(frame(2, b"err\n"));
        all.extend(frame(1, b""));
        all.extend(frame(1, b"more\n"));
        // Split at every awkward place.
        let pieces: Vec<Vec<u8>> = all.chunks(3).map(<[u8]>::to_vec).collect();
        let chunks = collect(pieces).await;
        let got: Vec<(LogStream, &[u8])> =
            chunks.iter().map(|c| (c.stream, c.data.as_ref())).collect();
        assert_eq!(
            got,
            [
                (LogStream::Stdout, &b"out\n"[..]),
                (LogStream::Stderr, &b"err\n"[..]),
                (LogStream::Stdout, &b""[..]),
                (LogStream::Stdout, &b"more\n"[..]),
            ]
        );
    }

    #[tokio::test]
    async fn unframed_output_is_stdout() {
        let chunks = collect(vec![b"plain tty output\n".to_vec(), b"x".to_vec()]).await;
        let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(text, b"plain tty output\nx");
        assert!(chunks.iter().all(|c| c.stream == LogStream::Stdout));
        assert!(collect(vec![b"hi".to_vec()]).await[0].data == "hi");
    }

    #[test]
    fn cpu_figures_like_docker_stats() {
        let s = Stats {
            read_ms: None,
            cpu_total_ns: 1_500_000_000,
            system_cpu_ns: 12_000_000_000,
            online_cpus: 2,
            pre_cpu_total_ns: 1_000_000_000,
            pre_system_cpu_ns: 10_000_000_000,
            memory_usage_bytes: 50,
            memory_limit_bytes: 200,
        };
        // 0.5 s of CPU while the 2-CPU host advanced 2 s in total (1 s of wall time).
        assert_eq!(s.cpu_cores(), Some(0.5));
        assert_eq!(s.cpu_fraction(None), Some(0.25));
        assert_eq!(s.cpu_fraction(Some(0.5)), Some(1.0));
        assert_eq!(s.memory_fraction(), Some(0.25));
        let mut first = s.clone();
        first.pre_cpu_total_ns = 0;
        first.pre_system_cpu_ns = 0;
        assert_eq!(first.cpu_cores(), None);
        let mut later = s.clone();
        later.cpu_total_ns += 1_000_000_000;
        later.system_cpu_ns += 2_000_000_000;
        assert_eq!(cpu_cores_between(&s, &later), Some(1.0));
        assert_eq!(cpu_cores_between(&later, &s), None);
    }
}
