//! Verification: replays a stream of entries against signed checkpoints and names every
//! problem found, first bad entry first.
//!
//! One pass over the entries, in memory proportional to the checkpoints (and the problems
//! found), not to the log. Entries are linked by their *stored* hashes, so one edited entry
//! is reported once rather than cascading; a rewrite that re-hashes everything after the
//! edit is caught by the first signed checkpoint that disagrees.

use crate::{Checkpoint, Hash, PublicKey, StoredEntry};

/// What [`verify()`] needs besides the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The current time, in milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// How often the server signs a checkpoint. Consecutive valid checkpoints further apart
    /// than 1.5 intervals, or a newest one older than 2 intervals, are reported. Zero or
    /// negative disables these time checks.
    pub checkpoint_interval_ms: i64,
}

/// One thing wrong with a log. `Display` says what and which seq.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The entry's fields do not hash to its stored hash: it was edited.
    #[error(
        "entry seq {seq} (position {position}) was altered: its fields do not hash to its stored hash"
    )]
    EntryAltered {
        /// The entry's seq.
        seq: i64,
        /// 0-based index of the entry in the input.
        position: u64,
    },
    /// Seqs `from..=to` are absent: the log jumps to `next_seq`.
    #[error("{} missing: the log jumps to seq {next_seq} at position {position}", seqs(*.from, *.to))]
    Missing {
        /// First missing seq.
        from: i64,
        /// Last missing seq.
        to: i64,
        /// The seq found instead.
        next_seq: i64,
        /// 0-based index of that entry in the input.
        position: u64,
    },
    /// The entry's seq is not greater than an earlier entry's: reordered or duplicated.
    #[error(
        "entry seq {seq} at position {position} comes after seq {after_seq}: entries were reordered or duplicated"
    )]
    OutOfOrder {
        /// The entry's seq.
        seq: i64,
        /// The highest seq seen before it.
        after_seq: i64,
        /// 0-based index of the entry in the input.
        position: u64,
    },
    /// The entry's `prev_hash` is not the previous entry's hash: one of them was replaced.
    #[error("entry seq {seq} (position {position}) does not chain to seq {}: its prev_hash differs from that entry's hash (one of them was replaced)", .seq - 1)]
    BrokenLink {
        /// The entry's seq.
        seq: i64,
        /// 0-based index of the entry in the input.
        position: u64,
    },
    /// A checkpoint's signature is forged, altered or from another key.
    #[error("checkpoint for seq {seq} at {time_ms} ms is invalid: {reason}")]
    BadCheckpoint {
        /// The checkpoint's seq.
        seq: i64,
        /// The checkpoint's time.
        time_ms: i64,
        /// Why it was rejected.
        reason: String,
    },
    /// A validly signed checkpoint names a different hash than the chain has at its seq.
    #[error("checkpoint for seq {seq} at {time_ms} ms signed a different hash than the log has: an entry in seq {}..={seq} was altered and the chain re-hashed", .last_good_seq + 1)]
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: i64,
        /// The checkpoint's time.
        time_ms: i64,
        /// The last seq a checkpoint confirmed (0: none); the change is after it.
        last_good_seq: i64,
    },
    /// A validly signed checkpoint covers seqs beyond the end of the log.
    #[error("log truncated: it ends at seq {last_seq} but the checkpoint at {checkpoint_time_ms} ms covers seq {checkpoint_seq} ({} missing)", seqs(.last_seq + 1, *.checkpoint_seq))]
    Truncated {
        /// The last seq present (0: none).
        last_seq: i64,
        /// The highest seq a valid checkpoint covers.
        checkpoint_seq: i64,
        /// That checkpoint's time.
        checkpoint_time_ms: i64,
    },
    /// The newest valid checkpoint is older than two intervals.
    #[error(
        "checkpoints stopped at {time_ms} ms: entries after seq {seq} cannot be proven complete"
    )]
    CheckpointsStopped {
        /// Its time.
        time_ms: i64,
        /// The seq it covers.
        seq: i64,
    },
    /// There is no validly signed checkpoint at all.
    #[error("no valid checkpoint: the log cannot be proven complete")]
    NoCheckpoints,
    /// Two consecutive valid checkpoints are more than 1.5 intervals apart.
    #[error(
        "no checkpoint between {from_ms} ms and {to_ms} ms: entries after seq {from_seq} up to seq {to_seq} cannot be proven complete"
    )]
    CheckpointGap {
        /// The earlier checkpoint's time.
        from_ms: i64,
        /// The later checkpoint's time.
        to_ms: i64,
        /// The earlier checkpoint's seq.
        from_seq: i64,
        /// The later checkpoint's seq.
        to_seq: i64,
    },
}

/// "entry seq 5 is" or "entries seq 5..=7 are", for messages.
fn seqs(from: i64, to: i64) -> String {
    if from == to {
        format!("entry seq {from} is")
    } else {
        format!("entries seq {from}..={to} are")
    }
}

impl Problem {
    /// The first seq the problem concerns (the start of the suspect range).
    pub fn seq(&self) -> i64 {
        match *self {
            Problem::EntryAltered { seq, .. }
            | Problem::OutOfOrder { seq, .. }
            | Problem::BrokenLink { seq, .. }
            | Problem::BadCheckpoint { seq, .. } => seq,
            Problem::Missing { from, .. } => from,
            Problem::CheckpointMismatch {
                last_good_seq: s, ..
            }
            | Problem::Truncated { last_seq: s, .. }
            | Problem::CheckpointsStopped { seq: s, .. }
            | Problem::CheckpointGap { from_seq: s, .. } => s.saturating_add(1),
            Problem::NoCheckpoints => 1,
        }
    }

    /// True when the problem proves tampering (or corruption); false when it only means
    /// that completeness cannot be proven for a while (missing or late checkpoints).
    pub fn is_tampering(&self) -> bool {
        !matches!(
            self,
            Problem::CheckpointsStopped { .. }
                | Problem::NoCheckpoints
                | Problem::CheckpointGap { .. }
        )
    }
}

/// The outcome of [`verify()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries were read.
    pub entries_checked: u64,
    /// How many checkpoints were given (valid or not).
    pub checkpoints_checked: usize,
    /// Every problem, most important first: tampering before completeness problems, each
    /// by [`Problem::seq`].
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The most important problem: the tampering problem with the lowest [`Problem::seq`],
    /// or else the earliest completeness problem.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// Verifies `entries` (in log order) against `checkpoints` signed by `key`.
pub fn verify(
    entries: impl IntoIterator<Item = StoredEntry>,
    checkpoints: &[Checkpoint],
    key: &PublicKey,
    opts: VerifyOptions,
) -> VerifyReport {
    let mut problems = Vec::new();
    let mut valid: Vec<&Checkpoint> = Vec::with_capacity(checkpoints.len());
    for cp in checkpoints {
        match key.verify(cp) {
            Ok(()) => valid.push(cp),
            Err(e) => problems.push(Problem::BadCheckpoint {
                seq: cp.seq,
                time_ms: cp.time_ms,
                reason: match e {
                    crate::AuditError::BadSignature { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
    valid.sort_by_key(|cp| (cp.seq, cp.time_ms));

    // Checkpoint matching state: `next_cp` indexes `valid` (sorted by seq).
    let mut next_cp = 0;
    let mut last_good = 0;
    let mut in_bad_run = false;
    let mut check_at = |seq: i64, hash: &Hash, problems: &mut Vec<Problem>| {
        while let Some(cp) = valid.get(next_cp).filter(|cp| cp.seq <= seq) {
            next_cp += 1;
            if cp.seq < seq {
                continue; // its entry is missing or out of order: reported elsewhere
            }
            if cp.hash == *hash {
                last_good = seq;
                in_bad_run = false;
            } else if !in_bad_run {
                in_bad_run = true;
                problems.push(Problem::CheckpointMismatch {
                    seq,
                    time_ms: cp.time_ms,
                    last_good_seq: last_good,
                });
            }
        }
    };
    check_at(0, &Hash::GENESIS, &mut problems);

    let (mut max_seq, mut head) = (0i64, Hash::GENESIS);
    let mut position = 0u64;
    for e in entries {
        if e.recompute() != e.hash {
            problems.push(Problem::EntryAltered {
                seq: e.seq,
                position,
            });
        }
        if e.seq <= max_seq {
            problems.push(Problem::OutOfOrder {
                seq: e.seq,
                after_seq: max_seq,
                position,
            });
        } else {
            if e.seq - max_seq > 1 {
                problems.push(Problem::Missing {
                    from: max_seq + 1,
                    to: e.seq - 1,
                    next_seq: e.seq,
                    position,
                });
            } else if e.prev_hash != head {
                problems.push(Problem::BrokenLink {
                    seq: e.seq,
                    position,
                });
            }
            (max_seq, head) = (e.seq, e.hash);
            check_at(e.seq, &e.hash, &mut problems);
        }
        position += 1;
    }

    if let Some(cp) = valid.iter().rfind(|cp| cp.seq > max_seq) {
        problems.push(Problem::Truncated {
            last_seq: max_seq,
            checkpoint_seq: cp.seq,
            checkpoint_time_ms: cp.time_ms,
        });
    }

    if opts.checkpoint_interval_ms > 0 {
        let interval = opts.checkpoint_interval_ms;
        valid.sort_by_key(|cp| (cp.time_ms, cp.seq));
        for pair in valid.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.time_ms.saturating_sub(a.time_ms) > interval.saturating_add(interval / 2) {
                problems.push(Problem::CheckpointGap {
                    from_ms: a.time_ms,
                    to_ms: b.time_ms,
                    from_seq: a.seq,
                    to_seq: b.seq,
                });
            }
        }
        match valid.last() {
            None => problems.push(Problem::NoCheckpoints),
            Some(cp) if opts.now_ms.saturating_sub(cp.time_ms) > interval.saturating_mul(2) => {
                problems.push(Problem::CheckpointsStopped {
                    time_ms: cp.time_ms,
                    seq: cp.seq,
                });
            }
            Some(_) => {}
        }
    }

    problems.sort_by_key(|p| (!p.is_tampering(), p.seq()));
    VerifyReport {
        entries_checked: position,
        checkpoints_checked: checkpoints.len(),
        problems,
    }
}
