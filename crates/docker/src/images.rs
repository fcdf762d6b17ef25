//! Images: builds from a context directory (the classic builder's `POST /build`, with layer
//! caching), imports of a root filesystem tar, inspection and removal.
//!
//! A build context is tarred on a blocking thread while it is being sent, so its size is not
//! limited by memory; the build's output is handed to the caller line by line as the daemon
//! sends it.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::transport::{Call, JsonMessages, channel_body, seg};
use crate::{Docker, DockerError};

/// How many lines of build output a failed build's error keeps.
const ERROR_TAIL_LINES: usize = 40;

/// Limit until a build's answer starts: the daemon reads the whole context first.
const BUILD_HEAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What to build and how (`POST /build` parameters).
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The context directory, sent whole (symlinks are sent as symlinks). `.dockerignore` is
    /// not read: pass a directory holding only what the build needs.
    pub context: PathBuf,
    /// The Dockerfile's path relative to the context; `Dockerfile` when empty.
    pub dockerfile: String,
    /// Name the image, e.g. `shop/web:v12`.
    pub tag: Option<String>,
    /// `ARG` values.
    pub build_args: BTreeMap<String, String>,
    /// Labels set on the image (e.g. the commit and release).
    pub labels: BTreeMap<String, String>,
    /// Build only up to this stage of a multi-stage Dockerfile.
    pub target: Option<String>,
    /// Ignore the layer cache (normally false, so unchanged steps are reused).
    pub nocache: bool,
}

/// A finished build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image id, `sha256:<hex>`.
    pub id: String,
    /// Steps the Dockerfile had.
    pub steps: usize,
    /// Steps taken from the layer cache.
    pub cached_steps: usize,
}

/// What `GET /images/{name}/json` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image id, `sha256:<hex>`.
    pub id: String,
    /// Names it has, e.g. `["shop/web:v12"]`.
    pub tags: Vec<String>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
    /// Size in bytes.
    pub size: u64,
    /// RFC 3339 creation time.
    pub created: String,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "RepoTags", default)]
    tags: Option<Vec<String>>,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "Created", default)]
    created: String,
    #[serde(rename = "Config", default)]
    config: Option<RawImageConfig>,
}

#[derive(Deserialize, Default)]
struct RawImageConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Docker {
    /// Builds an image from `options.context`, calling `on_line` with each line of output
    /// (steps, the steps' own output, cache hits) as it arrives. Returns the image id; a
    /// failed build is [`DockerError::Build`] with the daemon's message and the last lines of
    /// output (which hold the failing step's output).
    pub async fn build_image(
        &self,
        options: &BuildOptions,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<BuiltImage, DockerError> {
        let context = options.context.clone();
        if !context.is_dir() {
            return Err(DockerError::Io {
                action: "use as a build context",
                path: context,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "it is not a directory"),
            });
        }
        let dockerfile = if options.dockerfile.is_empty() {
            "Dockerfile".to_owned()
        } else {
            options.dockerfile.clone()
        };
        let (tx, rx) = mpsc::channel(8);
        let tar_dir = context.clone();
        let tar_task = tokio::task::spawn_blocking(move || tar_directory(&tar_dir, tx));
        let mut call = Call::post("/build")
            .query("dockerfile", &dockerfile)
            .query("rm", 1)
            .query("forcerm", 1)
            .query("nocache", options.nocache);
        if let Some(tag) = &options.tag {
            call = call.query("t", tag);
        }
        if let Some(target) = &options.target {
            call = call.query("target", target);
        }
        if !options.build_args.is_empty() {
            call = call.query("buildargs", json_text(&options.build_args));
        }
        if !options.labels.is_empty() {
            call = call.query("labels", json_text(&options.labels));
        }
        let call = call
            .body(channel_body(rx), "application/x-tar")
            .timeout(BUILD_HEAD_TIMEOUT);
        let context_name = call.context();
        let sent = self.send(call).await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                // A context that could not be read explains a refused request best.
                return Err(tar_failure(tar_task.await, &context).unwrap_or(err));
            }
        };
        let mut body = self.body_stream(response, context_name.clone());
        let mut messages = JsonMessages::default();
        let mut lines = LineSplitter::default();
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut id: Option<String> = None;
        let mut failure: Option<String> = None;
        let (mut steps, mut cached_steps) = (0usize, 0usize);
        let mut take_line = |line: &str| {
            if line.starts_with("Step ") {
                steps += 1;
            }
            if line.trim() == "---> Using cache" {
                cached_steps += 1;
            }
            if tail.len() == ERROR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
            on_line(line);
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let values = messages
                .push(&chunk)
                .map_err(|reason| DockerError::Protocol {
                    context: context_name.clone(),
                    reason: format!("the build output is not JSON: {reason}"),
                })?;
            for value in values {
                if let Some(text) = value.get("stream").and_then(|v| v.as_str()) {
                    for line in lines.push(text) {
                        take_line(&line);
                    }
                }
                if let Some(status) = value.get("status").and_then(|v| v.as_str()) {
                    take_line(status);
                }
                if let Some(aux) = value.get("aux").and_then(|a| a.get("ID")) {
                    id = aux.as_str().map(str::to_owned);
                }
                if let Some(error) = value.get("error").and_then(|v| v.as_str()) {
                    failure = Some(error.trim().to_owned());
                }
            }
        }
        if let Some(rest) = lines.finish() {
            take_line(&rest);
        }
        if failure.is_none() && !messages.is_empty() {
            failure = Some("the build output ended in the middle of a message".to_owned());
        }
        if let Some(err) = tar_failure(tar_task.await, &context) {
            return Err(err);
        }
        if let Some(message) = failure {
            return Err(DockerError::Build {
                message,
                output: tail.into_iter().collect::<Vec<_>>().join("\n"),
            });
        }
        let id = match id {
            Some(id) => id,
            // Older daemons only print it.
            None => match tail
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("Successfully built "))
            {
                Some(short) => self.inspect_image(short.trim()).await?.id,
                None => {
                    return Err(DockerError::Protocol {
                        context: context_name,
                        reason: "the build ended without an image id or an error".into(),
                    });
                }
            },
        };
        Ok(BuiltImage {
            id,
            steps,
            cached_steps,
        })
    }

    /// Imports the root filesystem in the tar file `tar` as image `reference`
    /// (`repo[:tag]`), with Dockerfile-style `changes` applied (e.g. `CMD ["/bin/sh"]`,
    /// `ENV PATH=/usr/bin:/bin`). Returns the image id. Nothing is pulled from a registry.
    pub async fn import_rootfs(
        &self,
        tar: &Path,
        reference: &str,
        changes: &[&str],
    ) -> Result<String, DockerError> {
        let (repo, tag) = split_reference(reference);
        if repo.is_empty() {
            return Err(DockerError::Invalid(format!(
                "{reference:?} is not an image reference"
            )));
        }
        let file = std::fs::File::open(tar).map_err(|source| DockerError::Io {
            action: "open the root filesystem tar",
            path: tar.to_path_buf(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(8);
        let reader = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut writer = ChannelWriter::new(tx);
            std::io::copy(&mut file, &mut writer)?;
            writer.flush()
        });
        let mut call = Call::post("/images/create")
            .query("fromSrc", "-")
            .query("repo", repo);
        if let Some(tag) = tag {
            call = call.query("tag", tag);
        }
        for change in changes {
            call = call.query("changes", change);
        }
        let call = call
            .body(channel_body(rx), "application/x-tar")
            .timeout(BUILD_HEAD_TIMEOUT);
        let context = call.context();
        let response = self.send(call).await?;
        let mut body = self.body_stream(response, context.clone());
        let mut messages = JsonMessages::default();
        while let Some(chunk) = body.next().await {
            for value in messages
                .push(&chunk?)
                .map_err(|reason| DockerError::Protocol {
                    context: context.clone(),
                    reason,
                })?
            {
                if let Some(error) = value.get("error").and_then(|v| v.as_str()) {
                    return Err(DockerError::Api {
                        context,
                        status: 500,
                        message: error.to_owned(),
                    });
                }
            }
        }
        if let Some(err) = tar_failure(reader.await, tar) {
            return Err(err);
        }
        Ok(self.inspect_image(reference).await?.id)
    }

    /// `GET /images/{name}/json`.
    pub async fn inspect_image(&self, name: &str) -> Result<ImageInfo, DockerError> {
        let raw: RawImage = self
            .call_json(Call::get(format!("/images/{}/json", seg(name))))
            .await?;
        Ok(ImageInfo {
            id: raw.id,
            tags: raw.tags.unwrap_or_default(),
            labels: raw.config.unwrap_or_default().labels.unwrap_or_default(),
            size: raw.size,
            created: raw.created,
        })
    }

    /// Whether an image with this name or id exists.
    pub async fn image_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.inspect_image(name).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /images/{name}`: removes a tag, and the image once no tag is left. `force`
    /// also removes an image that stopped containers use.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<(), DockerError> {
        self.call(Call::delete(format!("/images/{}", seg(name))).query("force", force))
            .await
            .map(drop)
    }
}

/// `repo[:tag]` split at the tag's colon (a registry port's colon comes before a `/`).
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (reference, None),
    }
}

fn json_text(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

/// The error a blocking tar or copy task ended with, if any.
fn tar_failure(
    joined: Result<std::io::Result<()>, tokio::task::JoinError>,
    path: &Path,
) -> Option<DockerError> {
    let source = match joined {
        Ok(Ok(())) => return None,
        // The daemon stopped reading (it refused the request): its answer says why.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return None,
        Ok(Err(e)) => e,
        Err(e) => std::io::Error::other(e.to_string()),
    };
    Some(DockerError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Tars the directory `dir` (its contents at the archive's root) into `tx`.
fn tar_directory(
    dir: &Path,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> std::io::Result<()> {
    let mut writer = ChannelWriter::new(tx.clone());
    let result = (|| {
        let mut builder = tar::Builder::new(&mut writer);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Complete);
        builder.append_dir_all(".", dir)?;
        builder.finish()
    })();
    match result {
        Ok(()) => writer.flush(),
        Err(e) => {
            // Fail the request body too, so the daemon does not build half a context.
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
            Err(e)
        }
    }
}

/// A blocking writer that sends 64 KiB chunks into a request body channel.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(64 * 1024),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the docker daemon stopped reading the request body",
            )
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Turns a stream of text pieces into whole lines (without the newline); `\r` is dropped.
#[derive(Default)]
struct LineSplitter {
    partial: String,
}

impl LineSplitter {
    fn push(&mut self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for c in text.chars() {
            match c {
                '\n' => out.push(std::mem::take(&mut self.partial)),
                '\r' => {}
                c => self.partial.push(c),
            }
        }
        out
    }

    fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", None));
        assert_eq!(split_reference("a/b:1"), ("a/b", Some("1")));
        assert_eq!(
            split_reference("localhost:5000/a/b"),
            ("localhost:5000/a/b", None)
        );
        assert_eq!(
            split_reference("localhost:5000/a:v2"),
            ("localhost:5000/a", Some("v2"))
        );
    }

    #[test]
    fn lines_are_split_across_pieces() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push("Step 1/2 : FROM x\n ---> ab"), ["Step 1/2 : FROM x"]);
        assert_eq!(s.push("c\r\nhello"), [" ---> abc"]);
        assert_eq!(s.finish().as_deref(), Some("hello"));
        assert_eq!(s.finish(), None);
    }
}
