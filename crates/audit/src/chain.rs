//! The hash chain itself: the canonical entry hash and the JSON-lines export format.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{AuditError, Hash, put_opt, put_str};

/// Domain separator of entry hashes (see the crate docs for the full encoding).
const ENTRY_DOMAIN: &[u8] = b"sluice-audit-entry-v1\0";

/// Longest excerpt of a bad line quoted in [`AuditError::BadLine`], in characters.
const EXCERPT_CHARS: usize = 80;

/// The hashed fields of one event, borrowed from wherever the caller holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFields<'a> {
    /// Position in the log, gap-free from 1.
    pub seq: i64,
    /// When the event was recorded, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The event kind's stable string form.
    pub kind: &'a str,
    /// Who caused the event.
    pub actor: &'a str,
    /// What the event is about.
    pub subject: &'a str,
    /// The project, for project-scoped events.
    pub project: Option<&'a str>,
    /// The event's JSON payload, exactly as stored.
    pub payload: &'a str,
    /// The client address that caused the event, when it came from a request.
    pub source: Option<&'a str>,
    /// The request id that caused the event, when it came from a request.
    pub request_id: Option<&'a str>,
}

/// The hash of the entry `e` following an entry whose hash is `prev`
/// ([`Hash::GENESIS`] for seq 1). The encoding is specified in the crate docs.
pub fn entry_hash(prev: &Hash, e: &EntryFields<'_>) -> Hash {
    let mut buf = Vec::with_capacity(
        ENTRY_DOMAIN.len() + 64 + e.kind.len() + e.actor.len() + e.subject.len() + e.payload.len(),
    );
    buf.extend_from_slice(ENTRY_DOMAIN);
    buf.extend_from_slice(&prev.0);
    buf.extend_from_slice(&e.seq.to_be_bytes());
    buf.extend_from_slice(&e.time_ms.to_be_bytes());
    put_str(&mut buf, e.kind);
    put_str(&mut buf, e.actor);
    put_str(&mut buf, e.subject);
    put_opt(&mut buf, e.project);
    put_str(&mut buf, e.payload);
    put_opt(&mut buf, e.source);
    put_opt(&mut buf, e.request_id);
    Hash(Sha256::digest(&buf).into())
}

/// One chained entry as stored and exported: the event's fields, the previous entry's hash
/// and its own. Serialises as one JSON object (`prev_hash` and `hash` as hex); unknown
/// fields are rejected, since they would not be covered by the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEntry {
    /// Position in the log, gap-free from 1.
    pub seq: i64,
    /// When the event was recorded, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The event kind's stable string form.
    pub kind: String,
    /// Who caused the event.
    pub actor: String,
    /// What the event is about.
    pub subject: String,
    /// The project, for project-scoped events.
    pub project: Option<String>,
    /// The event's JSON payload, exactly as stored (a JSON string holding JSON text).
    pub payload: String,
    /// The client address that caused the event, when it came from a request.
    pub source: Option<String>,
    /// The request id that caused the event, when it came from a request.
    pub request_id: Option<String>,
    /// The previous entry's hash ([`Hash::GENESIS`] for seq 1).
    pub prev_hash: Hash,
    /// This entry's hash as stored: [`entry_hash`]`(prev_hash, fields)` unless tampered with.
    pub hash: Hash,
}

impl StoredEntry {
    /// Chains `fields` after an entry whose hash is `prev`, computing the entry's hash.
    pub fn new(prev: Hash, fields: &EntryFields<'_>) -> StoredEntry {
        StoredEntry {
            seq: fields.seq,
            time_ms: fields.time_ms,
            kind: fields.kind.to_owned(),
            actor: fields.actor.to_owned(),
            subject: fields.subject.to_owned(),
            project: fields.project.map(str::to_owned),
            payload: fields.payload.to_owned(),
            source: fields.source.map(str::to_owned),
            request_id: fields.request_id.map(str::to_owned),
            prev_hash: prev,
            hash: entry_hash(&prev, fields),
        }
    }

    /// The hashed fields, borrowed.
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            seq: self.seq,
            time_ms: self.time_ms,
            kind: &self.kind,
            actor: &self.actor,
            subject: &self.subject,
            project: self.project.as_deref(),
            payload: &self.payload,
            source: self.source.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }

    /// The hash the entry should have given its fields and `prev_hash`.
    pub fn recompute(&self) -> Hash {
        entry_hash(&self.prev_hash, &self.fields())
    }
}

/// One line of the `sluice audit export` JSON-lines format (without the newline).
pub fn export_line(entry: &StoredEntry) -> String {
    // Serialising a struct of strings, integers and hex hashes cannot fail.
    serde_json::to_string(entry).unwrap_or_default()
}

/// Parses one export line. Errors quote the start of the line.
pub fn parse_line(line: &str) -> Result<StoredEntry, AuditError> {
    serde_json::from_str(line).map_err(|e| AuditError::BadLine {
        line: None,
        excerpt: line.chars().take(EXCERPT_CHARS).collect(),
        reason: e.to_string(),
    })
}

/// Streams the entries of a whole export, skipping blank lines. Errors carry the 1-based
/// line number.
pub fn read_export<R: BufRead>(reader: R) -> impl Iterator<Item = Result<StoredEntry, AuditError>> {
    reader
        .lines()
        .enumerate()
        .filter_map(|(i, line)| match line {
            Err(source) => Some(Err(AuditError::Read {
                line: i + 1,
                source,
            })),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(parse_line(&l).map_err(|e| match e {
                AuditError::BadLine {
                    excerpt, reason, ..
                } => AuditError::BadLine {
                    line: Some(i + 1),
                    excerpt,
                    reason,
                },
                other => other,
            })),
        })
}
