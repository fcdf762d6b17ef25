//! State records: `root/state/<id>.json`, one per instance whose process is running.
//!
//! A record is written atomically (temporary file, fsync, rename, fsync of the directory)
//! whenever a process of the instance starts, and removed when the instance stops or gives
//! up. It is the only thing a restarted control plane knows about instances started before
//! the crash, so it holds the whole spec plus the identity of the process (pid, group and
//! the kernel's start time, which tells a recycled pid apart).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RuntimeError;
use crate::spec::InstanceSpec;

/// Version of the record format; records of another version are reported, not adopted.
pub(crate) const RECORD_FORMAT: u32 = 1;

/// What is persisted about one running instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub format: u32,
    pub spec: InstanceSpec,
    pub pid: i32,
    pub pgid: i32,
    /// `starttime` from `/proc/<pid>/stat`, when it could be read.
    pub proc_start: Option<u64>,
    /// Wall-clock start of this process, epoch milliseconds.
    pub started_ms: i64,
    /// Restarts so far (carried over on adoption).
    pub restarts: u32,
}

/// Writes `record` to `dir/<id>.json` atomically. Synchronous.
pub(crate) fn write(dir: &Path, record: &Record) -> Result<(), RuntimeError> {
    let path = record_path(dir, &record.spec.id);
    let tmp = dir.join(format!(".{}.json.tmp", record.spec.id));
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::Io {
        action: "encode the state record for",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| RuntimeError::Io {
            action,
            path: p,
            source,
        }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
    // The rename is durable only once the directory entry is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the record of `id`; a missing record is fine. Synchronous.
pub(crate) fn remove(dir: &Path, id: &str) -> Result<(), RuntimeError> {
    let path = record_path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Io {
            action: "remove",
            path,
            source,
        }),
    }
}

/// One entry of the state directory as read by [`read_all`].
pub(crate) enum Found {
    /// A readable record.
    Record(Box<Record>),
    /// A `*.json` file that is not a usable record, with the reason.
    Unreadable { id: String, reason: String },
}

/// Reads every `*.json` record in `dir`, sorted by file name. Synchronous.
pub(crate) fn read_all(dir: &Path) -> Result<Vec<Found>, RuntimeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RuntimeError::Io {
        action: "list",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let id = name.trim_end_matches(".json").to_owned();
        let path = dir.join(&name);
        let parsed = std::fs::read(&path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))
            .and_then(|bytes| {
                serde_json::from_slice::<Record>(&bytes)
                    .map_err(|e| format!("{} is not a state record: {e}", path.display()))
            })
            .and_then(|r| {
                if r.format != RECORD_FORMAT {
                    Err(format!(
                        "{} has record format {}, this binary reads {RECORD_FORMAT}",
                        path.display(),
                        r.format
                    ))
                } else if r.spec.id != id {
                    Err(format!(
                        "{} holds instance {:?}, not {id:?}",
                        path.display(),
                        r.spec.id
                    ))
                } else {
                    Ok(r)
                }
            });
        found.push(match parsed {
            Ok(r) => Found::Record(Box::new(r)),
            Err(reason) => Found::Unreadable { id, reason },
        });
    }
    Ok(found)
}

/// `dir/<id>.json`.
pub(crate) fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}
