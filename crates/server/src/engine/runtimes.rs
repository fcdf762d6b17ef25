//! The two runtimes the deploy controller drives as one: host processes (the default) and
//! Docker containers (`deploy.runtime: docker`).
//!
//! [`Runtimes`] implements [`Runtime`] over both, so the controller lists, stops, forgets and
//! observes instances without asking where they run: an instance id lives in exactly one of
//! them (ids carry the service, environment and release, and a service has one runtime per
//! release). Only starting needs to say where ([`Runtimes::start_in`]). The Docker side is
//! touched only once a service uses it or the daemon answered at start-up, so servers without
//! Docker never see Docker errors.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_runtime::{
    Adopted, DockerRuntime, InstanceSpec, InstanceStatus, ProcessRuntime, Runtime, RuntimeError,
    Usage,
};
use tokio::sync::watch;

/// Where an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// A host process group.
    Process,
    /// A Docker container.
    Docker,
}

/// Process and Docker instances behind one [`Runtime`].
pub struct Runtimes {
    /// Host processes.
    pub process: ProcessRuntime,
    /// Containers.
    pub docker: DockerRuntime,
    /// Whether the Docker side was adopted (at start-up if the daemon answered, else before
    /// its first start).
    docker_adopted: AtomicBool,
    changes: watch::Sender<u64>,
}

impl Runtimes {
    /// Both runtimes under `root` (`root` for processes, `root/docker` for containers), with
    /// `token_prefix` telling this server's instances from others'.
    pub fn new(
        root: PathBuf,
        token_prefix: String,
        docker: sluice_docker::Docker,
        base_image: String,
    ) -> Result<Runtimes, RuntimeError> {
        let docker_root = root.join("docker");
        let process = ProcessRuntime::new(root, token_prefix.clone())?;
        let docker = DockerRuntime::new(docker, docker_root, token_prefix, base_image)?;
        let (changes, _) = watch::channel(0);
        let runtimes = Runtimes {
            process,
            docker,
            docker_adopted: AtomicBool::new(false),
            changes,
        };
        runtimes.forward_changes();
        Ok(runtimes)
    }

    /// Bumps the combined counter whenever either runtime's counter moves.
    fn forward_changes(&self) {
        let mut a = self.process.subscribe();
        let mut b = self.docker.subscribe();
        let tx = self.changes.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            loop {
                tokio::select! {
                    r = a.changed() => if r.is_err() { return },
                    r = b.changed() => if r.is_err() { return },
                }
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        });
    }

    /// Starts `spec` with `driver`. A Docker start first adopts what a previous server left
    /// (once), so a restarted control plane never starts duplicates of running containers.
    pub async fn start_in(&self, driver: Driver, spec: InstanceSpec) -> Result<(), RuntimeError> {
        match driver {
            Driver::Process => self.process.start(spec).await,
            Driver::Docker => {
                self.adopt_docker().await?;
                self.docker.start(spec).await
            }
        }
    }

    async fn adopt_docker(&self) -> Result<Vec<Adopted>, RuntimeError> {
        if self.docker_adopted.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        let found = self.docker.adopt().await?;
        self.docker_adopted.store(true, Ordering::Release);
        Ok(found)
    }

    /// The runtime holding instance `id`, if either knows it.
    fn holder(&self, id: &str) -> Option<&dyn Runtime> {
        if self.process.status(id).is_some() {
            Some(&self.process)
        } else if self.docker.status(id).is_some() {
            Some(&self.docker)
        } else {
            None
        }
    }
}

#[async_trait::async_trait]
impl Runtime for Runtimes {
    /// Starts a host process (use [`Runtimes::start_in`] for containers).
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        self.start_in(Driver::Process, spec).await
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        match self.holder(id) {
            Some(r) => r.stop(id).await,
            None => Ok(()),
        }
    }

    fn forget(&self, id: &str) -> bool {
        self.process.forget(id) || self.docker.forget(id)
    }

    fn status(&self, id: &str) -> Option<InstanceStatus> {
        self.process.status(id).or_else(|| self.docker.status(id))
    }

    fn list(&self) -> Vec<InstanceStatus> {
        let mut all = self.process.list();
        all.extend(self.docker.list());
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Adopts host processes always, containers when the daemon answers (otherwise before
    /// the first container start).
    async fn adopt(&self) -> Result<Vec<Adopted>, RuntimeError> {
        let mut found = self.process.adopt().await?;
        if self.docker.docker().ping().await.is_ok() {
            match self.adopt_docker().await {
                Ok(more) => found.extend(more),
                Err(e) => tracing::warn!(error = %e, "adopting containers failed"),
            }
        }
        Ok(found)
    }

    fn log_path(&self, id: &str) -> PathBuf {
        match self.docker.status(id) {
            Some(_) => self.docker.log_path(id),
            None => self.process.log_path(id),
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn usage(&self, id: &str) -> Option<Usage> {
        match self.holder(id) {
            Some(r) => r.usage(id).await,
            None => None,
        }
    }

    fn kill_all(&self) -> Vec<i32> {
        let mut pids = self.process.kill_all();
        if self.docker_adopted.load(Ordering::Acquire) {
            pids.extend(self.docker.kill_all());
        }
        pids
    }
}
