//! An append-only journal of opaque entries in checksummed segment files, made durable with
//! one `fdatasync` per append call (group commit: the caller gathers whatever is waiting).
//!
//! sluice's alert ingest writes every accepted request here before it answers, and the
//! incident engine reads the entries back in order and applies them. A file of its own (not
//! a database table) keeps the ingest path to one sequential write and one sync, with no
//! lock shared with the database's other writers.
//!
//! Layout: a directory of segments named by the sequence number of their first entry
//! (`00000000000000000001.log`, 20 digits). Each entry is framed as
//! `len: u32 | crc32c: u32 | seq: u64 | received_ms: i64 | body[len]` (little endian), the
//! checksum covering `seq`, `received_ms` and the body. Sequence numbers rise by one within a
//! segment and may jump between segments (see [`Journal::open`]'s `min_next`).
//!
//! Guarantees:
//! - [`Journal::append`] returns only after the entries and the file's new size are on disk;
//!   a new segment's directory entry is synced before anything is written to it.
//! - After a crash, [`Journal::open`] keeps the longest valid prefix of the last segment and
//!   cuts off a torn or corrupt tail, so an entry either survives whole or not at all, and
//!   every entry whose append returned survives.
//! - A [`Reader`] never sees an entry before its append returned (it reads up to the last
//!   committed sequence number only).
//!
//! Deliberately not here: what an entry means (the server encodes signals into the body),
//! async (callers run it on a thread of their own), and replication.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of an entry's frame before its body.
const HEADER: usize = 24;
/// The largest body an entry may have.
pub const MAX_BODY: usize = 64 << 20;
/// A segment is sealed and a new one begun once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("alert journal {path}: {source}; check the data directory's disk and permissions")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An entry is larger than [`MAX_BODY`].
    #[error("alert journal entry of {len} bytes exceeds the limit of {MAX_BODY} bytes")]
    TooLarge {
        /// The entry's size.
        len: usize,
    },
    /// An earlier write failed and could not be undone; reopen the journal.
    #[error("alert journal {path} failed earlier and must be reopened (restart the server)")]
    Broken {
        /// The segment.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// When it was received (milliseconds since the epoch), as the writer said.
    pub received_ms: i64,
    /// The body, as written.
    pub body: Vec<u8>,
}

/// What the writer and its readers share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// The last sequence number whose append returned (0: none).
    committed: AtomicU64,
}

/// Tuning, for tests and tools.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bytes after which a segment is sealed.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// The writing end; one per directory.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    options: Options,
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    broken: bool,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segments in `dir`, by first sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20
            && let Ok(first) = stem.parse::<u64>()
        {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads one entry framed at the reader's position. `Ok(None)`: the end of the data, a torn
/// frame or a checksum mismatch (what follows is not trusted).
fn read_frame(r: &mut impl Read, expect_seq: u64) -> io::Result<Option<(Entry, u64)>> {
    let mut head = [0u8; HEADER];
    if !read_full(r, &mut head)? {
        return Ok(None);
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let len = word(0) as usize;
    let crc = word(4);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&head[8..16]);
    let mut ms_bytes = [0u8; 8];
    ms_bytes.copy_from_slice(&head[16..24]);
    let seq = u64::from_le_bytes(seq_bytes);
    if len > MAX_BODY || seq != expect_seq {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    if !read_full(r, &mut body)? {
        return Ok(None);
    }
    let mut digest = CRC.digest();
    digest.update(&head[8..24]);
    digest.update(&body);
    if digest.finalize() != crc {
        return Ok(None);
    }
    let entry = Entry {
        seq,
        received_ms: i64::from_le_bytes(ms_bytes),
        body,
    };
    Ok(Some((entry, (HEADER + len) as u64)))
}

/// Fills `buf`; false when the data ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn encode(buf: &mut Vec<u8>, seq: u64, received_ms: i64, body: &[u8]) {
    let mut digest = CRC.digest();
    digest.update(&seq.to_le_bytes());
    digest.update(&received_ms.to_le_bytes());
    digest.update(body);
    // The length fits: bodies are checked against MAX_BODY first.
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&digest.finalize().to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&received_ms.to_le_bytes());
    buf.extend_from_slice(body);
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, cutting off a torn tail left by a
    /// crash. New entries get sequence numbers of at least `min_next` (so a journal that
    /// replaces an older one, or whose files were removed, never reuses a number the reader
    /// has already applied).
    pub fn open(dir: &Path, min_next: u64) -> Result<Journal, JournalError> {
        Journal::open_with(dir, min_next, Options::default())
    }

    /// [`Journal::open`] with explicit options.
    pub fn open_with(dir: &Path, min_next: u64, options: Options) -> Result<Journal, JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let min_next = min_next.max(1);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            committed: AtomicU64::new(0),
        });
        let (path, next_seq, len) = match segments(dir)?.pop() {
            Some((first, path)) => {
                let (next, valid) = scan(&path, first)?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let on_disk = file.metadata().map_err(io_err(&path))?.len();
                if on_disk != valid {
                    file.set_len(valid).map_err(io_err(&path))?;
                    file.sync_all().map_err(io_err(&path))?;
                }
                (path, next, valid)
            }
            None => {
                let path = dir.join(segment_name(min_next));
                (path, min_next, 0)
            }
        };
        shared
            .committed
            .store(next_seq.saturating_sub(1), Ordering::Release);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if len == 0 {
            sync_dir(dir)?;
        }
        let mut journal = Journal {
            shared,
            options,
            file,
            path,
            len,
            next_seq,
            buf: Vec::new(),
            broken: false,
        };
        if journal.next_seq < min_next {
            journal.start_segment(min_next)?;
        }
        Ok(journal)
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sequence number whose append returned (0: none yet).
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// A reader over this journal.
    pub fn reader(&self) -> Reader {
        Reader {
            shared: self.shared.clone(),
            cursor: None,
        }
    }

    fn start_segment(&mut self, first: u64) -> Result<(), JournalError> {
        let path = self.shared.dir.join(segment_name(first));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // The new name must be durable before an acknowledged entry depends on it.
        sync_dir(&self.shared.dir)?;
        self.file = file;
        self.path = path;
        self.len = 0;
        self.next_seq = first;
        Ok(())
    }

    /// Appends the entries (received time, body) and syncs them to disk; returns the first
    /// one's sequence number (the others follow by one). All or nothing: on error none of
    /// them is in the journal.
    pub fn append(&mut self, entries: &[(i64, &[u8])]) -> Result<u64, JournalError> {
        if self.broken {
            return Err(JournalError::Broken {
                path: self.path.clone(),
            });
        }
        if let Some((_, body)) = entries.iter().find(|(_, b)| b.len() > MAX_BODY) {
            return Err(JournalError::TooLarge { len: body.len() });
        }
        if entries.is_empty() {
            return Ok(self.next_seq);
        }
        if self.len >= self.options.segment_bytes {
            self.start_segment(self.next_seq)?;
        }
        let first = self.next_seq;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for (i, (received_ms, body)) in entries.iter().enumerate() {
            encode(&mut buf, first + i as u64, *received_ms, body);
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        let wrote = buf.len() as u64;
        // Keep the buffer's capacity for the next group, unless one huge batch inflated it.
        if buf.capacity() <= 4 << 20 {
            self.buf = buf;
        }
        if let Err(e) = written {
            // Undo a partial write so the next append starts on a frame boundary.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(JournalError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.len += wrote;
        self.next_seq = first + entries.len() as u64;
        self.shared
            .committed
            .store(self.next_seq - 1, Ordering::Release);
        Ok(first)
    }
}

/// The next sequence number and the valid length of a segment starting at `first`.
fn scan(path: &Path, first: u64) -> Result<(u64, u64), JournalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let (mut next, mut valid) = (first, 0u64);
    while let Some((_, size)) = read_frame(&mut r, next).map_err(io_err(path))? {
        next += 1;
        valid += size;
    }
    Ok((next, valid))
}

/// Where a reader is.
#[derive(Debug)]
struct Cursor {
    first: u64,
    file: BufReader<File>,
    next_seq: u64,
}

/// A reading end: entries in order, only those whose append returned.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    cursor: Option<Cursor>,
}

impl Reader {
    /// Up to `max` entries with sequence numbers above `after`, in order.
    pub fn read(&mut self, after: u64, max: usize) -> Result<Vec<Entry>, JournalError> {
        let committed = self.shared.committed.load(Ordering::Acquire);
        let mut out = Vec::new();
        if after >= committed || max == 0 {
            return Ok(out);
        }
        if self.cursor.as_ref().is_none_or(|c| c.next_seq != after + 1) {
            self.cursor = self.seek(after + 1)?;
        }
        while out.len() < max {
            let Some(cursor) = self.cursor.as_mut() else {
                break;
            };
            if cursor.next_seq > committed {
                break;
            }
            let dir = self.shared.dir.clone();
            match read_frame(&mut cursor.file, cursor.next_seq).map_err(io_err(&dir))? {
                Some((entry, _)) => {
                    cursor.next_seq += 1;
                    if entry.seq > after {
                        out.push(entry);
                    }
                }
                None => {
                    // The end of this segment (or a damaged frame, sealed behind a crash):
                    // go on in the next segment, if there is one.
                    let first = cursor.first;
                    match self.next_segment(first)? {
                        Some(c) => self.cursor = Some(c),
                        None => {
                            self.cursor = None;
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// A cursor at the first entry numbered `seq` or later.
    fn seek(&self, seq: u64) -> Result<Option<Cursor>, JournalError> {
        let all = segments(&self.shared.dir)?;
        let at = all
            .iter()
            .rposition(|(first, _)| *first <= seq)
            .unwrap_or(0);
        let Some((first, path)) = all.get(at) else {
            return Ok(None);
        };
        let mut cursor = open_cursor(*first, path)?;
        // Skip the entries before `seq` (their bodies are read, but a reader seeks only
        // when it starts or falls out of step).
        while cursor.next_seq < seq {
            let dir = &self.shared.dir;
            match read_frame(&mut cursor.file, cursor.next_seq).map_err(io_err(dir))? {
                Some(_) => cursor.next_seq += 1,
                None => return self.next_segment(cursor.first),
            }
        }
        Ok(Some(cursor))
    }

    /// A cursor at the start of the segment after the one starting at `first`.
    fn next_segment(&self, first: u64) -> Result<Option<Cursor>, JournalError> {
        let all = segments(&self.shared.dir)?;
        match all.into_iter().find(|(f, _)| *f > first) {
            Some((f, path)) => Ok(Some(open_cursor(f, &path)?)),
            None => Ok(None),
        }
    }

    /// Removes the sealed segments whose entries are all numbered `upto` or below; returns
    /// how many. The segment being written is never removed.
    pub fn prune(&self, upto: u64) -> Result<usize, JournalError> {
        let all = segments(&self.shared.dir)?;
        let mut removed = 0;
        for pair in all.windows(2) {
            let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
            if *next_first <= upto.saturating_add(1) {
                fs::remove_file(path).map_err(io_err(path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.shared.dir)?;
        }
        Ok(removed)
    }

    /// The last committed sequence number (0: none).
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Acquire)
    }
}

fn open_cursor(first: u64, path: &Path) -> Result<Cursor, JournalError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    Ok(Cursor {
        first,
        file: BufReader::with_capacity(256 << 10, file),
        next_seq: first,
    })
}
