//! Helpers of the container-step tests (`tests/containers.rs`): the Docker daemon or a skip,
//! a server with one project from a repository of given files, running its pipelines to the
//! end, reading steps and logs, and a guard that removes the test's containers and images.

use std::path::Path;
use std::time::Duration;

use sluice_docker::Docker;
use sluice_server::{Server, ServerConfig};
use sluice_store::{LogFilter, LogLine, Release, ReleaseFilter, Run, RunFilter, Step};

use super::{Repo, config};

/// The Docker daemon, or `None` (after a note) when there is none and CI is not set; with CI
/// set a missing daemon fails the test.
pub async fn docker_or_skip() -> Option<Docker> {
    sluice_docker::testimage::daemon_or_skip().await
}

/// A server with project `shop` from a repository, and the guard over what Docker got.
pub struct World {
    pub server: Server,
    pub repo: Repo,
    pub project: String,
    pub docker: Docker,
    /// Declared last: dropped after the server, removes containers and images.
    pub cleanup: Cleanup,
    pub _tmp: tempfile::TempDir,
}

impl World {
    /// A repository holding `files` (path, text) in its first commit, a server (its config
    /// adjusted by `tweak`, before it starts, with the data directory's path known) and the
    /// project registered without polling. The first commit's runs are not waited for.
    pub async fn start(
        docker: &Docker,
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut ServerConfig, &Path),
    ) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        for (path, text) in files {
            repo.write(path, text);
        }
        repo.commit("first");
        let data = tmp.path().join("data");
        let mut c = config(&data);
        c.kill_grace = Duration::from_millis(500);
        tweak(&mut c, &data);
        let server = Server::start(c).await.expect("server starts");
        let cleanup = Cleanup {
            docker: docker.clone(),
            owner: format!("sluice.step-owner={}", server.engine.token_prefix()),
            images: Vec::new(),
        };
        let project = server
            .engine
            .add_project(&repo.path(), None, Some(0), None, "test")
            .await
            .expect("project added")
            .name;
        World {
            server,
            repo,
            project,
            docker: docker.clone(),
            cleanup,
            _tmp: tmp,
        }
    }

    /// Waits for every run of the project to finish; oldest first.
    pub async fn finish_all(&self) -> Vec<Run> {
        // The registration's sync runs in the background; a second one waits for it.
        self.server
            .engine
            .sync_project(&self.project, "poll", "test")
            .await
            .unwrap();
        let mut runs = self
            .server
            .engine
            .store
            .runs(&RunFilter {
                project: Some(self.project.clone()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        runs.reverse();
        let mut out = Vec::new();
        for r in runs {
            out.push(self.finish(&r).await);
        }
        out
    }

    /// The run of the first commit, finished.
    pub async fn first_run(&self) -> Run {
        let runs = self.finish_all().await;
        assert_eq!(runs.len(), 1, "one run for the first commit: {runs:?}");
        runs.into_iter().next().unwrap()
    }

    /// Writes `files`, commits, syncs and returns the new commit's run, finished.
    pub async fn commit_and_run(&self, files: &[(&str, &str)]) -> Run {
        let run = self.commit_and_start(files).await;
        self.finish(&run).await
    }

    /// Writes `files`, commits, syncs and returns the new commit's run as it starts.
    pub async fn commit_and_start(&self, files: &[(&str, &str)]) -> Run {
        self.finish_all().await;
        for (path, text) in files {
            self.repo.write(path, text);
        }
        self.repo.commit("change");
        let mut started = self
            .server
            .engine
            .sync_project(&self.project, "poll", "test")
            .await
            .unwrap();
        assert_eq!(started.len(), 1, "one run for the new commit: {started:?}");
        started.remove(0)
    }

    /// Waits (at most 5 minutes: image builds) until `run` finished.
    pub async fn finish(&self, run: &Run) -> Run {
        let r = self
            .server
            .engine
            .wait_run(run.id, Duration::from_secs(300))
            .await
            .unwrap();
        assert!(r.status.is_terminal(), "run {} did not finish", r.id);
        r
    }

    /// The step `name` (`service/step`) of `run`.
    pub async fn step(&self, run: &Run, name: &str) -> Step {
        self.server
            .engine
            .store
            .steps(run.id)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name} in run {}", run.id))
    }

    /// The log of step `name` of `run`.
    pub async fn log(&self, run: &Run, name: &str) -> Vec<LogLine> {
        self.server
            .engine
            .store
            .logs(&LogFilter {
                run_id: run.id,
                step: Some(name.to_string()),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// The log of step `name` of `run` as text, one line each.
    pub async fn log_text(&self, run: &Run, name: &str) -> String {
        let lines: Vec<String> = self
            .log(run, name)
            .await
            .into_iter()
            .map(|l| format!("[{}] {}", l.stream, l.line))
            .collect();
        lines.join("\n")
    }

    /// The releases `run` made.
    pub async fn releases(&self, run: &Run) -> Vec<Release> {
        self.server
            .engine
            .store
            .releases(&ReleaseFilter {
                project: Some(self.project.clone()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.run_id == run.id)
            .collect()
    }

    /// Step containers of `run` that exist now (running or not).
    pub async fn containers_of(&self, run: &Run) -> Vec<sluice_docker::ContainerSummary> {
        let run_label = format!("sluice.run={}", run.id);
        self.docker
            .list_containers(&[&self.cleanup.owner, &run_label])
            .await
            .unwrap()
    }
}

/// Removes the server's step containers and the images named in `images` when dropped, so
/// a failed test leaves nothing behind (the test images of sluice-docker are kept).
pub struct Cleanup {
    pub docker: Docker,
    /// `sluice.step-owner=<the server's token prefix>`.
    pub owner: String,
    pub images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let images = std::mem::take(&mut self.images);
        sluice_docker::testimage::remove_blocking(&self.docker, &self.owner, images);
    }
}
