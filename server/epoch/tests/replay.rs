//! A monitor replays every epoch from the archives, the heads and the public key alone, and
//! locates the first divergence of any tampering.

use keyfold_archive::{ArchiveOutcome, read_archive, write_archive};
use keyfold_core::{Epoch, HashSuite, Head, Mutation, SigningKey, Version, verify_head_note};
use keyfold_epoch::{EpochJob, HeadStore, MemoryArchives, MemoryHeadStore};
use keyfold_ingest::{MemoryQueue, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_verify::Replayer;
use std::sync::Arc;

const ORIGIN: &str = "replay.test/keyfold";
const BITS: u8 = 4;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn m(k: u32, value: Option<&str>, expected: u64) -> Mutation {
    Mutation {
        key: format!("k{k}").into_bytes(),
        value: value.map(|v| v.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// Published history: (note, archive) for epochs 1..=4, and the genesis note.
fn history() -> (String, Vec<(String, Vec<u8>)>) {
    let config = TreeConfig::new(HashSuite::Blake3, BITS).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 10_000),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(MemoryArchives::default()),
        key(),
        ORIGIN,
        1_000,
    )
    .unwrap();
    let epochs: Vec<Vec<Mutation>> = vec![
        (0..40).map(|i| m(i, Some("a"), 0)).chain([m(1, Some("dup"), 0), m(1, Some("dup"), 0)]).collect(),
        (0..20)
            .map(|i| m(i, Some("b"), 1))
            .chain([m(5, Some("c"), 2), m(6, None, 2), m(7, Some("stale"), 1), m(99, None, 0)])
            .collect(),
        vec![],
        // Key 6 was deleted in epoch 2 (version 3): deleting it again is rejected, setting it
        // again applies (the replay reads both from its own record of key states).
        (30..60).map(|i| m(i, Some("d"), u64::from(i < 40))).chain([m(6, None, 3), m(6, Some("back"), 3)]).collect(),
    ];
    let mut out = Vec::new();
    for (e, ms) in epochs.into_iter().enumerate() {
        if !ms.is_empty() {
            job.queue().append(ms).unwrap();
        }
        let report = job.run_epoch(2_000 + e as u64).unwrap();
        out.push((report.note, job.archives().get(report.head.epoch).unwrap().unwrap().to_vec()));
    }
    let genesis = job.heads().get(Epoch(0)).unwrap().unwrap();
    (genesis, out)
}

fn replay_all(genesis: &str, history: &[(String, Vec<u8>)]) -> Result<Head, keyfold_verify::Divergence> {
    let public = key().verifying_key().to_bytes();
    let mut replayer = Replayer::from_genesis(genesis, ORIGIN, &public, BITS)?;
    for (note, archive) in history {
        replayer.replay(note, archive.clone().into())?;
    }
    Ok(replayer.head().clone())
}

/// What a malicious directory would publish: `rows` re-archived under a correctly signed head,
/// the checkpoint of the log of the `earlier` heads and this one.
fn resign(earlier: &[&str], note: &str, rows: &[keyfold_archive::ArchiveRow]) -> (String, Vec<u8>) {
    let public = key().verifying_key().to_bytes();
    let head = verify_head_note(note, ORIGIN, &public).unwrap();
    let bytes = write_archive(rows).unwrap();
    let forged = Head { archive: head.suite.archive_digest(&bytes), ..head };
    let mut leaves: Vec<_> =
        earlier.iter().map(|n| verify_head_note(n, ORIGIN, &public).unwrap().leaf_hash()).collect();
    leaves.push(forged.leaf_hash());
    (forged.sign(&key(), keyfold_core::log::root(&leaves)), bytes)
}

#[test]
fn honest_history_replays() {
    let (genesis, history) = history();
    let head = replay_all(&genesis, &history).unwrap();
    assert_eq!(head.epoch, Epoch(4));
    let rows = read_archive(&history[0].1).unwrap();
    assert!(rows.iter().any(|r| r.outcome == ArchiveOutcome::Duplicate));
    let rows = read_archive(&history[1].1).unwrap();
    assert!(rows.iter().any(|r| r.outcome == ArchiveOutcome::Rejected && r.reason.is_some()));
    assert!(rows.iter().any(|r| r.tombstone && r.outcome == ArchiveOutcome::Applied));
    assert!(read_archive(&history[2].1).unwrap().is_empty(), "heartbeat epochs have an empty archive");
    let rows = read_archive(&history[3].1).unwrap();
    let (delete_again, set_again) = (&rows[rows.len() - 2], &rows[rows.len() - 1]);
    assert_eq!(delete_again.reason.as_deref(), Some("nothing_to_delete"));
    assert_eq!((set_again.outcome, set_again.new_version), (ArchiveOutcome::Applied, Some(4)));
    // `replay_rows` hands back exactly the archive's rows.
    let mut replayer = Replayer::from_genesis(&genesis, ORIGIN, &key().verifying_key().to_bytes(), BITS).unwrap();
    for (note, archive) in &history {
        let (_, rows) = replayer.replay_rows(note, archive.clone().into()).unwrap();
        assert_eq!(rows, read_archive(archive).unwrap());
    }
}

#[test]
fn every_tampering_is_caught_and_located() {
    let (genesis, history) = history();
    let at_epoch_2 = |history: Vec<(String, Vec<u8>)>| replay_all(&genesis, &history).unwrap_err();

    // A flipped byte in an archive.
    let mut h = history.clone();
    let n = h[1].1.len();
    h[1].1[n / 2] ^= 0x01;
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.what.as_str()), (Epoch(2), "archive digest"), "{d}");

    // A head signed by another key.
    let mut h = history.clone();
    let signed = keyfold_core::verify_checkpoint_note(&h[1].0, ORIGIN, &key().verifying_key().to_bytes()).unwrap();
    h[1].0 = signed.head.sign(&SigningKey::from_bytes(&[6; 32]), signed.checkpoint.root);
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.what.as_str()), (Epoch(2), "head signature"), "{d}");

    // A correctly signed head in a checkpoint of another log (a rewritten earlier head).
    let mut h = history.clone();
    h[1].0 = signed.head.sign(&key(), keyfold_core::log::root(&[signed.head.leaf_hash()]));
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.what.as_str()), (Epoch(2), "log of heads"), "{d}");

    // A correctly signed head whose digest names another archive.
    let mut h = history.clone();
    h[1].1 = history[0].1.clone();
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.what.as_str()), (Epoch(2), "archive digest"), "{d}");

    // A dropped row, re-signed.
    let mut rows = read_archive(&history[1].1).unwrap();
    rows.remove(3);
    let mut h = history.clone();
    h[1] = resign(&[&genesis, &history[0].0], &history[1].0, &rows);
    let d = at_epoch_2(h);
    assert_eq!(d.epoch, Epoch(2), "{d}");

    // Two rows swapped (contents, positions kept): k5's second update now comes first.
    let mut rows = read_archive(&history[1].1).unwrap();
    let first = rows.iter().position(|r| r.key.as_deref() == Some(b"k5".as_slice())).unwrap();
    let second = rows.iter().rposition(|r| r.key.as_deref() == Some(b"k5".as_slice())).unwrap();
    let (p1, p2) = (rows[first].position, rows[second].position);
    rows.swap(first, second);
    rows[first].position = p1;
    rows[second].position = p2;
    let mut h = history.clone();
    h[1] = resign(&[&genesis, &history[0].0], &history[1].0, &rows);
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.row), (Epoch(2), Some(first)), "{d}");

    // A lying outcome: a rejected mutation claimed as applied.
    let mut rows = read_archive(&history[1].1).unwrap();
    let stale = rows.iter().position(|r| r.outcome == ArchiveOutcome::Rejected).unwrap();
    rows[stale].outcome = ArchiveOutcome::Applied;
    rows[stale].reason = None;
    let mut h = history.clone();
    h[1] = resign(&[&genesis, &history[0].0], &history[1].0, &rows);
    let d = at_epoch_2(h);
    assert_eq!((d.epoch, d.row, d.what.as_str()), (Epoch(2), Some(stale), "outcome"), "{d}");

    // A head out of order (epoch 3's head where epoch 2's belongs).
    let mut h = history.clone();
    h.swap(1, 2);
    let d = at_epoch_2(h);
    assert_eq!(d.epoch, Epoch(2), "{d}");
}
