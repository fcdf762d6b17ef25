//! Tests of the Docker client against the real daemon on this machine: the test images,
//! image builds (build args, labels, the layer cache, a failing step, output streaming while
//! the build runs), the container life cycle (labels, env, ports on 127.0.0.1, limits, bind
//! mounts, logs, stats, wait, exec, list by label) and filesystem exports.
//!
//! With env `CI` set the tests fail when no daemon answers; otherwise they print a note and
//! skip. Every container a test makes carries a label unique to the test and is removed at
//! the end (also when the test fails); built images are removed too. The test images are kept:
//! they are cached by a fingerprint of their contents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use sluice_docker::{
    Bind, BuildOptions, ContainerConfig, Docker, DockerError, LogOptions, LogStream, PortBinding,
    testimage,
};

/// The daemon, or `None` (after a note) when there is none and CI is not set.
async fn docker() -> Option<Docker> {
    testimage::daemon_or_skip().await
}

/// Removes the containers carrying `sluice.test=<name>` and the images named `images` when
/// dropped, so a failed test leaves nothing behind.
struct Cleanup {
    docker: Docker,
    label: String,
    images: Vec<String>,
}

impl Cleanup {
    fn new(docker: &Docker, test: &str) -> Cleanup {
        Cleanup {
            docker: docker.clone(),
            label: format!("sluice.test=docker-{test}-{}", std::process::id()),
            images: Vec::new(),
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let (k, v) = self.label.split_once('=').unwrap();
        BTreeMap::from([(k.to_owned(), v.to_owned())])
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let images = std::mem::take(&mut self.images);
        sluice_docker::testimage::remove_blocking(&self.docker, &self.label, images);
    }
}

fn nonce() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A context directory with `files`.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Runs `cmd` in `image` to completion; returns (exit code, stdout, stderr).
async fn run(
    docker: &Docker,
    cleanup: &Cleanup,
    image: &str,
    cmd: &[&str],
) -> (i64, String, String) {
    let id = docker
        .create_container(&ContainerConfig {
            image: image.to_owned(),
            cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
            labels: cleanup.labels(),
            ..Default::default()
        })
        .await
        .unwrap();
    docker.start_container(&id).await.unwrap();
    let code = docker.wait_container(&id).await.unwrap();
    let mut logs = docker.logs(&id, &LogOptions::default()).await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(chunk) = logs.next().await {
        let chunk = chunk.unwrap();
        let text = String::from_utf8_lossy(&chunk.data);
        match chunk.stream {
            LogStream::Stdout => out.push_str(&text),
            LogStream::Stderr => err.push_str(&text),
        }
    }
    docker.remove_container(&id, true).await.unwrap();
    (code, out, err)
}

#[tokio::test]
async fn test_images_run_shell_and_python() {
    let Some(docker) = docker().await else { return };
    let cleanup = Cleanup::new(&docker, "images");
    let version = docker.version().await.unwrap();
    assert!(version.api_version.as_str() >= "1.41", "{version:?}");
    let busybox = testimage::busybox(&docker).await.unwrap();
    // Idempotent: the same reference, and the image carries its label.
    assert_eq!(testimage::busybox(&docker).await.unwrap(), busybox);
    let info = docker.inspect_image(&busybox).await.unwrap();
    assert_eq!(info.labels[testimage::LABEL], "busybox");

    let (code, out, err) = run(
        &docker,
        &cleanup,
        &busybox,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 4"],
    )
    .await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (4, "to-out\n", "to-err\n")
    );

    let python = testimage::python(&docker).await.unwrap();
    let (code, out, err) = run(
        &docker,
        &cleanup,
        &python,
        &[
            "python3",
            "-c",
            "import http.server, json, threading, signal, sys; print(json.dumps({'ok': sys.version_info[0]}))",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "{\"ok\": 3}\n");
    assert_eq!(err, "", "python must start without warnings");
}

#[tokio::test]
async fn builds_use_args_labels_and_the_layer_cache() {
    let Some(docker) = docker().await else { return };
    let mut cleanup = Cleanup::new(&docker, "build");
    let base = testimage::busybox(&docker).await.unwrap();
    let ctx = context(&[
        (
            "build/Containerfile",
            &format!(
                "FROM {base}\nARG GREETING=unset\nCOPY hello.txt /hello.txt\nRUN echo \"$GREETING\" > /greeting.txt\nCMD [\"cat\", \"/greeting.txt\"]\n"
            ),
        ),
        ("hello.txt", "hello from the context\n"),
    ]);
    let tag = format!("sluice-test-build:{}", nonce());
    cleanup.images.push(tag.clone());
    let options = BuildOptions {
        context: ctx.path().to_path_buf(),
        dockerfile: "build/Containerfile".into(),
        tag: Some(tag.clone()),
        build_args: BTreeMap::from([("GREETING".into(), format!("hi {}", nonce()))]),
        labels: BTreeMap::from([
            ("sluice.commit".into(), "abc123".into()),
            ("sluice.release".into(), "7".into()),
        ]),
        ..Default::default()
    };
    let mut lines = Vec::new();
    let first = docker
        .build_image(&options, |l| lines.push(l.to_owned()))
        .await
        .unwrap();
    assert!(first.id.starts_with("sha256:"), "{first:?}");
    // FROM, ARG, COPY, RUN, CMD, and one LABEL step per label.
    assert_eq!(first.steps, 7, "{lines:#?}");
    let info = docker.inspect_image(&tag).await.unwrap();
    assert_eq!(info.id, first.id);
    assert_eq!(info.labels["sluice.commit"], "abc123");
    assert_eq!(info.labels["sluice.release"], "7");
    assert!(info.tags.contains(&tag));
    let (code, out, _) = run(
        &docker,
        &cleanup,
        &tag,
        &["cat", "/greeting.txt", "/hello.txt"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with("hi "), "the build arg reached RUN: {out}");
    assert!(out.ends_with("hello from the context\n"), "{out}");

    // Nothing changed: every step after FROM comes from the cache, and so does the image.
    let mut again = Vec::new();
    let second = docker
        .build_image(&options, |l| again.push(l.to_owned()))
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.cached_steps, 6, "{again:#?}");
    assert!(again.iter().any(|l| l.contains("Using cache")));
}

#[tokio::test]
async fn a_failing_build_reports_the_failing_steps_output() {
    let Some(docker) = docker().await else { return };
    let _cleanup = Cleanup::new(&docker, "fail");
    let base = testimage::busybox(&docker).await.unwrap();
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN echo step-one-ok\nRUN echo \"compiler says: missing semicolon {}\" && exit 3\n",
            nonce()
        ),
    )]);
    let err = docker
        .build_image(
            &BuildOptions {
                context: ctx.path().to_path_buf(),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap_err();
    let DockerError::Build { message, output } = &err else {
        panic!("expected a build error, got {err}")
    };
    assert!(message.contains("returned a non-zero code: 3"), "{message}");
    assert!(
        output.contains("compiler says: missing semicolon"),
        "{output}"
    );
    assert!(err.to_string().contains("compiler says"), "{err}");

    // A context that is not a directory is refused before anything is sent.
    let err = docker
        .build_image(
            &BuildOptions {
                context: ctx.path().join("missing"),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::Io { .. }), "{err}");
}

#[tokio::test]
async fn build_output_arrives_while_the_build_runs() {
    let Some(docker) = docker().await else { return };
    let mut cleanup = Cleanup::new(&docker, "stream");
    let base = testimage::busybox(&docker).await.unwrap();
    // The nonce build arg makes the RUN step miss the cache every time.
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nARG NONCE\nRUN echo first-line-$NONCE && sleep 3 && echo last-line\n"
        ),
    )]);
    let tag = format!("sluice-test-stream:{}", nonce());
    cleanup.images.push(tag.clone());
    let options = BuildOptions {
        context: ctx.path().to_path_buf(),
        tag: Some(tag),
        build_args: BTreeMap::from([("NONCE".into(), nonce())]),
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let build = docker.build_image(&options, move |l| {
        let _ = tx.send(l.to_owned());
    });
    tokio::pin!(build);
    // The first line must be delivered while the build future is still pending.
    let seen_early = loop {
        tokio::select! {
            biased;
            line = rx.recv() => {
                if line.as_deref().is_some_and(|l| l.starts_with("first-line-")) {
                    break true;
                }
            }
            result = &mut build => {
                result.unwrap();
                break false;
            }
        }
    };
    assert!(seen_early, "output was only delivered once the build ended");
    build.await.unwrap();
}

#[tokio::test]
async fn export_holds_the_containers_files() {
    let Some(docker) = docker().await else { return };
    let cleanup = Cleanup::new(&docker, "export");
    let base = testimage::busybox(&docker).await.unwrap();
    let id = docker
        .create_container(&ContainerConfig {
            image: base,
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "mkdir -p /var/lib/dpkg && echo 'Package: demo' > /var/lib/dpkg/status".into(),
            ]),
            labels: cleanup.labels(),
            ..Default::default()
        })
        .await
        .unwrap();
    docker.start_container(&id).await.unwrap();
    assert_eq!(docker.wait_container(&id).await.unwrap(), 0);
    let mut stream = docker.export_container(&id).await.unwrap();
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar_bytes.extend_from_slice(&chunk.unwrap());
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut found = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path == "var/lib/dpkg/status" || path == "bin/busybox" {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut text).unwrap();
            found.insert(path, text.len());
        }
    }
    assert_eq!(found.get("var/lib/dpkg/status"), Some(&14), "{found:?}");
    assert!(
        found.get("bin/busybox").is_some_and(|n| *n > 100_000),
        "{found:?}"
    );
}

#[tokio::test]
async fn container_life_cycle() {
    let Some(docker) = docker().await else { return };
    let cleanup = Cleanup::new(&docker, "life");
    let base = testimage::busybox(&docker).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "served from a bind mount\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut labels = cleanup.labels();
    labels.insert("sluice.instance".into(), "web-1".into());
    let config = ContainerConfig {
        name: Some(format!("sluice-test-life-{}", nonce())),
        image: base,
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![
            "echo started with $GREETING; exec httpd -f -p $PORT -h /www".into(),
        ]),
        env: BTreeMap::from([
            ("GREETING".into(), "hello there".into()),
            ("PORT".into(), port.to_string()),
        ]),
        working_dir: Some("/www".into()),
        labels,
        binds: vec![Bind {
            host: dir.path().to_path_buf(),
            container: "/www".into(),
            read_only: true,
        }],
        ports: vec![PortBinding {
            container_port: port,
            host_port: port,
        }],
        nano_cpus: Some(500_000_000),
        memory_bytes: Some(64 << 20),
        init: true,
    };
    let id = docker.create_container(&config).await.unwrap();
    // The same name twice is a conflict.
    let err = docker.create_container(&config).await.unwrap_err();
    assert!(matches!(err, DockerError::Api { status: 409, .. }), "{err}");
    docker.start_container(&id).await.unwrap();

    let info = docker.inspect_container(&id).await.unwrap();
    assert!(info.state.running);
    assert!(info.state.pid > 0);
    assert!(info.state.started_ms.is_some());
    assert_eq!(info.nano_cpus, 500_000_000);
    assert_eq!(info.memory_bytes, 64 << 20);
    assert_eq!(info.memory_swap_bytes, 64 << 20);
    assert_eq!(info.restart_policy, "no");
    assert_eq!(info.labels["sluice.instance"], "web-1");
    assert!(info.env.contains(&"GREETING=hello there".to_owned()));
    assert_eq!(info.ports.len(), 1, "{:?}", info.ports);
    assert_eq!(info.ports[0].host_ip, "127.0.0.1");
    assert_eq!(info.ports[0].host_port, port);

    // Served through the published port, from the bind mount.
    let body = poll_http(port).await;
    assert_eq!(body, "served from a bind mount\n");

    let listed = docker
        .list_containers(&[&cleanup.label, "sluice.instance=web-1"])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, "running");
    assert!(
        docker
            .list_containers(&[&cleanup.label, "sluice.instance=other"])
            .await
            .unwrap()
            .is_empty()
    );

    let stats = docker.stats_sample(&id).await.unwrap();
    assert!(stats.memory_usage_bytes > 0, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, 64 << 20);
    assert!(stats.cpu_total_ns > 0);
    let full = docker.stats(&id).await.unwrap();
    assert!(full.cpu_cores().is_some(), "{full:?}");

    assert_eq!(
        docker
            .exec_status(
                &id,
                &[
                    "sh".into(),
                    "-c".into(),
                    "test -f index.html && test \"$GREETING\" = 'hello there'".into()
                ],
                None,
                Duration::from_secs(10)
            )
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        docker
            .exec_status(
                &id,
                &["sh".into(), "-c".into(), "exit 5".into()],
                Some("/"),
                Duration::from_secs(10)
            )
            .await
            .unwrap(),
        Some(5)
    );
    assert_eq!(
        docker
            .exec_status(
                &id,
                &["sleep".into(), "5".into()],
                None,
                Duration::from_millis(200)
            )
            .await
            .unwrap(),
        None
    );

    let mut logs = docker
        .logs(
            &id,
            &LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = logs.next().await.unwrap().unwrap();
    assert_eq!(first.stream, LogStream::Stdout);
    assert_eq!(first.data.as_ref(), b"started with hello there\n");

    // SIGTERM reaches httpd through init; the followed log ends with the container.
    docker.kill_container(&id, "SIGTERM").await.unwrap();
    let code = docker.wait_container(&id).await.unwrap();
    assert_eq!(code, 143, "httpd dies of SIGTERM");
    while let Some(chunk) = logs.next().await {
        chunk.unwrap();
    }
    let info = docker.inspect_container(&id).await.unwrap();
    assert!(!info.state.running);
    assert!(!info.state.oom_killed);
    assert_eq!(info.state.exit_code, 143);
    assert!(info.state.finished_ms.is_some());
    let err = docker.kill_container(&id, "SIGKILL").await.unwrap_err();
    assert!(matches!(err, DockerError::Api { status: 409, .. }), "{err}");

    docker.remove_container(&id, false).await.unwrap();
    let err = docker.inspect_container(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        docker
            .remove_container(&id, true)
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// `GET /` on 127.0.0.1:port until it answers (the server starts asynchronously).
async fn poll_http(port: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), get(port)).await {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing answered on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head[8..].starts_with(" 200") => {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!("not a 200: {text:?}"))),
    }
}

#[tokio::test]
async fn an_unreachable_daemon_gives_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-daemon.sock");
    let docker = Docker::new(&socket);
    let err = docker.ping().await.unwrap_err();
    assert!(err.is_unreachable());
    let text = err.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("is dockerd running"), "{text}");
    let err = docker.list_containers(&["a=b"]).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}
