//! The journal's guarantees, on real files: order, segments, pruning, torn and corrupt tails
//! after a crash (including a real `kill -9` of a writing process), and that no input makes it
//! panic or lose an acknowledged entry.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use sluice_journal::{Entry, Journal, JournalError, Options, Reader};

fn body(seq: u64) -> Vec<u8> {
    format!("entry {seq} {}", "x".repeat((seq % 37) as usize)).into_bytes()
}

fn append_n(j: &mut Journal, n: u64) -> u64 {
    let start = j.next_seq();
    let bodies: Vec<Vec<u8>> = (start..start + n).map(body).collect();
    let entries: Vec<(i64, &[u8])> = bodies
        .iter()
        .zip(start..)
        .map(|(b, s)| (s as i64 * 10, b.as_slice()))
        .collect();
    j.append(&entries).unwrap()
}

fn read_all(r: &mut Reader, after: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = after;
    loop {
        let page = r.read(at, 7).unwrap();
        if page.is_empty() {
            return out;
        }
        at = page.last().unwrap().seq;
        out.extend(page);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn entries_come_back_in_order_with_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 1).unwrap();
    assert_eq!(j.committed(), 0);
    assert_eq!(append_n(&mut j, 3), 1);
    assert_eq!(append_n(&mut j, 2), 4);
    assert_eq!(j.committed(), 5);
    let mut r = j.reader();
    let all = read_all(&mut r, 0);
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(
        all.iter()
            .all(|e| e.body == body(e.seq) && e.received_ms == e.seq as i64 * 10)
    );
    // From the middle, and again from an earlier point (the reader seeks back).
    assert_eq!(r.read(3, 10).unwrap().len(), 2);
    assert_eq!(r.read(1, 1).unwrap()[0].seq, 2);
    assert!(r.read(5, 10).unwrap().is_empty());
    // Entries appended after the reader caught up are seen next time.
    append_n(&mut j, 1);
    assert_eq!(r.read(5, 10).unwrap()[0].seq, 6);
}

#[test]
fn segments_rotate_are_read_across_and_pruned_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_bytes: 200 };
    let mut j = Journal::open_with(dir.path(), 1, opts).unwrap();
    for _ in 0..20 {
        append_n(&mut j, 2);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 3, "{files:?}");
    let mut r = j.reader();
    let all = read_all(&mut r, 0);
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // Pruning up to 20 removes only segments wholly at or below 20, never the last one.
    let removed = r.prune(20).unwrap();
    assert!(removed > 0);
    let left = read_all(&mut j.reader(), 0);
    assert!(left.first().unwrap().seq <= 21, "{:?}", left.first());
    assert_eq!(left.last().unwrap().seq, 40);
    r.prune(u64::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    append_n(&mut j, 1);
    assert_eq!(r.read(40, 5).unwrap()[0].seq, 41);
}

#[test]
fn reopening_continues_the_numbering_and_honours_min_next() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path(), 1).unwrap();
        append_n(&mut j, 4);
    }
    let j = Journal::open(dir.path(), 1).unwrap();
    assert_eq!(j.next_seq(), 5);
    assert_eq!(j.committed(), 4);
    drop(j);
    // A caller that has applied up to 100 elsewhere: numbering jumps, nothing is lost.
    let mut j = Journal::open(dir.path(), 101).unwrap();
    assert_eq!(append_n(&mut j, 2), 101);
    let seqs: Vec<u64> = read_all(&mut j.reader(), 0).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 101, 102]);
    assert_eq!(j.reader().read(4, 10).unwrap()[0].seq, 101);
    assert_eq!(j.reader().read(50, 10).unwrap()[0].seq, 101);
}

#[test]
fn a_torn_tail_is_cut_at_every_possible_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 1).unwrap();
    append_n(&mut j, 3);
    let before = std::fs::metadata(&segment_files(dir.path())[0])
        .unwrap()
        .len();
    append_n(&mut j, 1);
    drop(j);
    let file = segment_files(dir.path())[0].clone();
    let full = std::fs::read(&file).unwrap();
    for cut in before..full.len() as u64 {
        std::fs::write(&file, &full[..cut as usize]).unwrap();
        let mut j = Journal::open(dir.path(), 1).unwrap();
        assert_eq!(j.next_seq(), 4, "cut at {cut}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), before);
        // The next append lands on a clean frame boundary.
        append_n(&mut j, 1);
        let seqs: Vec<u64> = read_all(&mut j.reader(), 0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }
}

#[test]
fn a_corrupt_tail_is_cut_and_garbage_after_it_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 1).unwrap();
    append_n(&mut j, 5);
    drop(j);
    let file = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let last_body = bytes.len() - 3;
    bytes[last_body] ^= 0xff;
    bytes.extend_from_slice(b"garbage after the end");
    std::fs::write(&file, &bytes).unwrap();
    let j = Journal::open(dir.path(), 1).unwrap();
    assert_eq!(j.next_seq(), 5);
    let seqs: Vec<u64> = read_all(&mut j.reader(), 0).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[test]
fn an_oversized_entry_is_refused_and_nothing_of_its_batch_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 1).unwrap();
    let big = vec![0u8; sluice_journal::MAX_BODY + 1];
    let err = j.append(&[(1, b"ok"), (2, &big)]).unwrap_err();
    assert!(matches!(err, JournalError::TooLarge { .. }), "{err}");
    assert_eq!(j.committed(), 0);
    assert!(read_all(&mut j.reader(), 0).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever is written, and wherever the last segment is cut or scribbled on, reopening
    /// never panics and keeps exactly a prefix of the entries, all of them intact.
    #[test]
    fn any_damage_to_the_tail_keeps_an_intact_prefix(
        batches in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..5), 1..8),
        cut_back in 0usize..200,
        scribble in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_with(dir.path(), 1, Options { segment_bytes: 300 }).unwrap();
        let mut written = Vec::new();
        for b in &batches {
            let entries: Vec<(i64, &[u8])> = b.iter().map(|x| (7, x.as_slice())).collect();
            let first = j.append(&entries).unwrap();
            for (i, x) in b.iter().enumerate() {
                written.push((first + i as u64, x.clone()));
            }
        }
        drop(j);
        let last = segment_files(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        bytes.truncate(bytes.len().saturating_sub(cut_back));
        bytes.extend_from_slice(&scribble);
        std::fs::write(&last, &bytes).unwrap();
        let j = Journal::open_with(dir.path(), 1, Options { segment_bytes: 300 }).unwrap();
        let got = read_all(&mut j.reader(), 0);
        prop_assert!(got.len() <= written.len());
        for (e, (seq, b)) in got.iter().zip(&written) {
            prop_assert_eq!(e.seq, *seq);
            prop_assert_eq!(&e.body, b);
        }
        prop_assert_eq!(j.next_seq(), got.last().map_or(1, |e| e.seq + 1));
    }
}

/// The writing child of the kill -9 test: appends batches forever, printing the last
/// acknowledged sequence number after each append returns.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("SLUICE_JOURNAL_CRASH_DIR") else {
        return;
    };
    let mut j = Journal::open(Path::new(&dir), 1).unwrap();
    let mut out = std::io::stdout();
    loop {
        let start = j.next_seq();
        let bodies: Vec<Vec<u8>> = (start..start + 5).map(body).collect();
        let entries: Vec<(i64, &[u8])> = bodies.iter().map(|b| (1, b.as_slice())).collect();
        j.append(&entries).unwrap();
        writeln!(out, "acked {}", j.committed()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_of_a_writer_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SLUICE_JOURNAL_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = 0u64;
        let mut seen = 0;
        while seen < 50 + round * 37 {
            let line = lines.next().unwrap().unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
                seen += 1;
            }
        }
        // SIGKILL while it keeps appending.
        child.kill().unwrap();
        child.wait().unwrap();
        let j = Journal::open(dir.path(), 1).unwrap();
        let got = read_all(&mut j.reader(), 0);
        assert!(
            got.len() as u64 >= acked,
            "round {round}: acked {acked}, kept {}",
            got.len()
        );
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.body, body(e.seq));
        }
    }
}
