//! End-to-end tests with real SHA-256 and Ed25519: a chain of entries with checkpoints,
//! every tampering kind named by its first bad seq, the export format and the key file.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sluice_audit::*;

const BASE: i64 = 1_700_000_000_000;
const INTERVAL: i64 = 1_000;
const EVERY: i64 = 5;

fn signer() -> Signer {
    Signer::from_seed(&[7; 32])
}

fn opts(now_ms: i64) -> VerifyOptions {
    VerifyOptions {
        now_ms,
        checkpoint_interval_ms: INTERVAL,
    }
}

/// `n` chained entries; seq `s` is recorded at `BASE + s * INTERVAL / EVERY - 1`.
fn chain(n: i64) -> Vec<StoredEntry> {
    let mut prev = Hash::GENESIS;
    (1..=n)
        .map(|seq| {
            let payload = format!(r#"{{"n":{seq}}}"#);
            let project = format!("p{}", seq % 3);
            let e = StoredEntry::new(
                prev,
                &EntryFields {
                    seq,
                    time_ms: BASE + seq * INTERVAL / EVERY - 1,
                    kind: "run.started",
                    actor: "alice",
                    subject: "run/1",
                    project: (seq % 2 == 0).then_some(project.as_str()),
                    payload: &payload,
                    source: (seq % 3 == 0).then_some("10.0.0.1"),
                    request_id: (seq % 4 == 0).then_some("req-1"),
                },
            );
            prev = e.hash;
            e
        })
        .collect()
}

/// A checkpoint at every `EVERY`-th seq (and seq 0), one `INTERVAL` apart, plus one for the
/// head if it is not on the grid.
fn checkpoints(s: &Signer, entries: &[StoredEntry]) -> Vec<Checkpoint> {
    let n = entries.len() as i64;
    let mut seqs: Vec<i64> = (0..=n).step_by(EVERY as usize).collect();
    if n % EVERY != 0 {
        seqs.push(n);
    }
    seqs.iter()
        .enumerate()
        .map(|(k, &seq)| {
            let hash = if seq == 0 {
                Hash::GENESIS
            } else {
                entries[seq as usize - 1].hash
            };
            s.sign(seq, hash, BASE + k as i64 * INTERVAL)
        })
        .collect()
}

fn check(entries: &[StoredEntry], cps: &[Checkpoint]) -> VerifyReport {
    let now = cps.iter().map(|c| c.time_ms).max().unwrap_or(BASE) + 100;
    verify(entries.to_vec(), cps, &signer().public_key(), opts(now))
}

fn first(entries: &[StoredEntry], cps: &[Checkpoint]) -> Problem {
    let r = check(entries, cps);
    r.first_problem()
        .cloned()
        .unwrap_or_else(|| panic!("tampering not detected: {r:?}"))
}

fn setup() -> (Vec<StoredEntry>, Vec<Checkpoint>) {
    let entries = chain(50);
    let cps = checkpoints(&signer(), &entries);
    (entries, cps)
}

/// Re-chains `entries` from index `from` on, as an attacker without the key would.
fn rehash_from(entries: &mut [StoredEntry], from: usize) {
    for i in from..entries.len() {
        entries[i].prev_hash = if i == 0 {
            Hash::GENESIS
        } else {
            entries[i - 1].hash
        };
        entries[i].hash = entries[i].recompute();
    }
}

#[test]
fn intact_chain_verifies() {
    let (entries, cps) = setup();
    let r = check(&entries, &cps);
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.entries_checked, r.checkpoints_checked), (50, 11));
}

#[test]
fn edited_payload_and_actor_are_named() {
    let (mut entries, cps) = setup();
    entries[16].payload = r#"{"n":999}"#.into();
    let r = check(&entries, &cps);
    assert_eq!(
        r.problems,
        vec![Problem::EntryAltered {
            seq: 17,
            position: 16
        }]
    );
    assert!(r.problems[0].to_string().contains("entry seq 17"));

    let (mut entries, cps) = setup();
    entries[32].actor = "mallory".into();
    assert_eq!(
        first(&entries, &cps),
        Problem::EntryAltered {
            seq: 33,
            position: 32
        }
    );
}

#[test]
fn deleted_entries_are_named() {
    let (mut entries, cps) = setup();
    entries.remove(24);
    let r = check(&entries, &cps);
    let gap = Problem::Missing {
        from: 25,
        to: 25,
        next_seq: 26,
        position: 24,
    };
    assert_eq!(r.problems, vec![gap]);
    assert!(
        r.problems[0]
            .to_string()
            .contains("entry seq 25 is missing")
    );

    let (mut entries, cps) = setup();
    entries.remove(0);
    let gap = Problem::Missing {
        from: 1,
        to: 1,
        next_seq: 2,
        position: 0,
    };
    assert_eq!(first(&entries, &cps), gap);
}

#[test]
fn swapped_entries_are_named() {
    let (mut entries, cps) = setup();
    entries.swap(20, 21);
    let r = check(&entries, &cps);
    assert_eq!(r.first_problem().map(Problem::seq), Some(21));
    let reorder = Problem::OutOfOrder {
        seq: 21,
        after_seq: 22,
        position: 21,
    };
    assert!(r.problems.contains(&reorder), "{:?}", r.problems);
}

#[test]
fn truncated_tail_is_named() {
    let (mut entries, cps) = setup();
    entries.truncate(42);
    let p = first(&entries, &cps);
    assert!(
        matches!(
            p,
            Problem::Truncated {
                last_seq: 42,
                checkpoint_seq: 50,
                ..
            }
        ),
        "{p}"
    );
    assert_eq!(p.seq(), 43);

    // Truncating the checkpoints too leaves them stale.
    let cps: Vec<_> = cps.into_iter().filter(|c| c.seq <= 40).collect();
    let now = BASE + 10 * INTERVAL + 100;
    let r = verify(entries, &cps, &signer().public_key(), opts(now));
    let stopped = Problem::CheckpointsStopped {
        time_ms: BASE + 8 * INTERVAL,
        seq: 40,
    };
    assert_eq!(r.problems, vec![stopped]);
    assert!(
        r.problems[0]
            .to_string()
            .contains("entries after seq 40 cannot be proven")
    );
}

#[test]
fn dropped_checkpoint_is_named() {
    let (entries, mut cps) = setup();
    cps.remove(5); // the one for seq 25
    let p = first(&entries, &cps);
    assert!(
        matches!(
            p,
            Problem::CheckpointGap {
                from_seq: 20,
                to_seq: 30,
                ..
            }
        ),
        "{p}"
    );
    assert!(!p.is_tampering());
}

#[test]
fn forged_checkpoints_are_named() {
    let mallory = Signer::from_seed(&[9; 32]);
    let (entries, cps) = setup();
    let mut forged = cps.clone();
    forged[6] = mallory.sign(30, Hash([1; 32]), cps[6].time_ms);
    let p = first(&entries, &forged);
    assert!(matches!(p, Problem::BadCheckpoint { seq: 30, .. }), "{p}");
    assert!(p.to_string().contains("unknown key"), "{p}");

    // Claiming our key id does not help.
    forged[6].key_id = signer().key_id().to_owned();
    let p = first(&entries, &forged);
    assert!(matches!(p, Problem::BadCheckpoint { seq: 30, .. }), "{p}");
    assert!(p.to_string().contains("does not verify"), "{p}");
}

#[test]
fn rehashed_edit_is_caught_by_checkpoint() {
    let (mut entries, cps) = setup();
    entries[22].payload = r#"{"n":"rewritten"}"#.into();
    rehash_from(&mut entries, 22);
    let r = check(&entries, &cps);
    let p = Problem::CheckpointMismatch {
        seq: 25,
        time_ms: BASE + 5 * INTERVAL,
        last_good_seq: 20,
    };
    assert_eq!(r.problems, vec![p]);
    assert!(r.problems[0].to_string().contains("seq 21..=25"));
}

#[test]
fn empty_log_and_missing_checkpoints() {
    let s = signer();
    let r = verify(
        vec![],
        &[s.sign(0, Hash::GENESIS, BASE)],
        &s.public_key(),
        opts(BASE),
    );
    assert!(r.is_ok(), "{:?}", r.problems);
    let r = verify(vec![], &[], &s.public_key(), opts(BASE));
    assert_eq!(r.first_problem(), Some(&Problem::NoCheckpoints));
}

#[test]
fn export_round_trip_preserves_verification() {
    let (entries, cps) = setup();
    let text: String = entries.iter().map(|e| export_line(e) + "\n").collect();
    let parsed: Vec<_> = read_export(text.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(parsed, entries);
    assert!(check(&parsed, &cps).is_ok());

    let edited = text.replacen(r#"{\"n\":7}"#, r#"{\"n\":8}"#, 1);
    let parsed: Vec<_> = read_export(edited.as_bytes()).map(Result::unwrap).collect();
    assert_eq!(
        first(&parsed, &cps),
        Problem::EntryAltered {
            seq: 7,
            position: 6
        }
    );

    let broken = text.replacen(r#""seq":3,"#, r#""seq":3,"extra":1,"#, 1);
    let err = read_export(broken.as_bytes())
        .find_map(Result::err)
        .unwrap();
    assert!(err.to_string().starts_with("line 3: export line"), "{err}");
    assert!(parse_line("{}").is_err());
}

#[test]
fn texts_round_trip() {
    let s = signer();
    let key = s.public_key();
    assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    assert_eq!(key.key_id().len(), 16);
    assert!("sluice-audit-ed25519 AAAA".parse::<PublicKey>().is_err());

    let cp = s.sign(3, Hash([5; 32]), BASE);
    let json = serde_json::to_string(&cp).unwrap();
    let back: Checkpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cp);
    key.verify(&back).unwrap();
    assert_eq!(
        Hash::GENESIS.to_string().parse::<Hash>().unwrap(),
        Hash::GENESIS
    );
    assert!("abc".parse::<Hash>().is_err());
}

#[test]
fn encoding_is_pinned_and_unambiguous() {
    let e = EntryFields {
        seq: 1,
        time_ms: 2,
        kind: "k",
        actor: "a",
        subject: "s",
        project: None,
        payload: "{}",
        source: None,
        request_id: None,
    };
    let h = entry_hash(&Hash::GENESIS, &e);
    assert_eq!(
        h.to_string(),
        "71fedf0e630a56c1918bc51cd1b44e302663c4912f2e3aef2d779377d0ef586f"
    );
    let some_empty = EntryFields {
        project: Some(""),
        ..e
    };
    assert_ne!(entry_hash(&Hash::GENESIS, &some_empty), h);
    let shifted = EntryFields {
        kind: "ka",
        actor: "",
        ..e
    };
    assert_ne!(entry_hash(&Hash::GENESIS, &shifted), h);
}

#[test]
fn key_file_is_created_reloaded_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/audit.key");
    let a = Signer::load_or_create(&path).unwrap();
    let b = Signer::load_or_create(&path).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    let err = Signer::load_or_create(&bad).unwrap_err();
    assert!(matches!(err, AuditError::MalformedKeyFile { .. }));
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "not a key\n");
}

/// One tampering of a valid chain (indices are reduced modulo the chain length).
#[derive(Debug, Clone)]
enum Mutation {
    Edit(usize, u8),
    Delete(usize),
    Swap(usize),
    Truncate(usize),
    Rehash(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, f)| Mutation::Edit(i, f)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Swap),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::Rehash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn any_single_mutation_is_detected(n in 2i64..40, m in mutation()) {
        let mut entries = chain(n);
        let cps = checkpoints(&signer(), &entries);
        let len = entries.len();
        // The first seq that is no longer as originally written.
        let bad_seq = match m {
            Mutation::Edit(i, field) => {
                let e = &mut entries[i % len];
                match field {
                    0 => e.payload.push(' '),
                    1 => e.actor.push('x'),
                    2 => e.kind.push('x'),
                    3 => e.subject.push('x'),
                    4 => e.project = if e.project.is_some() { None } else { Some(String::new()) },
                    5 => e.source = if e.source.is_some() { None } else { Some(String::new()) },
                    6 => e.time_ms += 1,
                    _ => e.prev_hash.0[0] ^= 1,
                }
                e.seq
            }
            Mutation::Delete(i) => entries.remove(i % len).seq,
            Mutation::Swap(i) => {
                let i = i % (len - 1);
                entries.swap(i, i + 1);
                entries[i + 1].seq
            }
            Mutation::Truncate(i) => {
                entries.truncate(i % len);
                entries.len() as i64 + 1
            }
            Mutation::Rehash(i) => {
                let i = i % len;
                entries[i].subject.push('x');
                rehash_from(&mut entries, i);
                entries[i].seq
            }
        };
        let p = check(&entries, &cps).first_problem().cloned();
        prop_assert!(p.is_some(), "{:?} not detected", m);
        let p = p.unwrap_or(Problem::NoCheckpoints);
        prop_assert!(p.is_tampering(), "{p}");
        if let Problem::CheckpointMismatch { seq, .. } = p {
            prop_assert!(p.seq() <= bad_seq && bad_seq <= seq, "{p} vs {bad_seq}");
        } else {
            prop_assert_eq!(p.seq(), bad_seq, "{}", p);
        }
    }
}
