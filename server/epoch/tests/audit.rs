//! Auditing epochs without the map (SPEC section 3.2): each epoch's proof, built from the map of
//! the epoch before (`Map::epoch_proof`), lets `audit_epoch` recompute both roots and every
//! compare-and-set outcome from the two heads and the archive alone; every tampering with the
//! proof, the archive's outcomes or the previous root is caught and located.

use keyfold_archive::{ArchiveOutcome, read_archive, write_archive};
use keyfold_core::{
    Epoch, EpochProof, FlatEpochProof, HashSuite, Head, Index, Mutation, Pruned, SigningKey, Version, verify_head_note,
};
use keyfold_epoch::{EpochJob, HeadStore, MemoryArchives, MemoryHeadStore};
use keyfold_ingest::{MemoryQueue, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_verify::{AUDIT_HOLD_BYTES, Audited, Divergence, audit_epoch_holding};
use std::sync::Arc;

const ORIGIN: &str = "audit.test/keyfold";

type Job = EpochJob<MemoryQueue, MemoryStore, MemoryHeadStore>;

fn m(k: u32, value: Option<&str>, expected: u64) -> Mutation {
    Mutation {
        key: format!("k{k}").into_bytes(),
        value: value.map(|v| v.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// Epochs 1..=4: creations and a duplicate; updates, a stale write, deletes; a heartbeat; more
/// creations, a delete of a deleted key and a re-creation.
fn history() -> Job {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let queue = MemoryQueue::new(config.suite, 10_000);
    let archives = Arc::new(MemoryArchives::default());
    let job = EpochJob::open(
        queue,
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        archives,
        key,
        ORIGIN,
        1_000,
    )
    .unwrap();
    let epochs: Vec<Vec<Mutation>> = vec![
        (0..300).map(|i| m(i, Some("a"), 0)).chain([m(1, Some("dup"), 0), m(1, Some("dup"), 0)]).collect(),
        (0..40)
            .map(|i| m(i, Some("b"), 1))
            .chain([m(5, Some("c"), 2), m(6, None, 2), m(7, Some("stale"), 1), m(999, None, 0)])
            .chain((300..340).map(|i| m(i, Some("new"), 0)))
            .collect(),
        vec![],
        (500..560).map(|i| m(i, Some("d"), 0)).chain([m(6, None, 3), m(6, Some("back"), 3)]).collect(),
    ];
    for (e, ms) in epochs.into_iter().enumerate() {
        if !ms.is_empty() {
            job.queue().append(ms).unwrap();
        }
        job.run_epoch(2_000 + e as u64).unwrap();
    }
    job
}

fn head(job: &Job, epoch: u64) -> Head {
    let note = job.heads().get(Epoch(epoch)).unwrap().unwrap();
    verify_head_note(&note, ORIGIN, &job.public_key()).unwrap()
}

fn archive(job: &Job, epoch: u64) -> Vec<u8> {
    job.archives().get(Epoch(epoch)).unwrap().unwrap().to_vec()
}

/// The keys an archive touches, ascending and distinct.
fn touched(archive: &[u8]) -> Vec<Index> {
    let mut touched: Vec<Index> = read_archive(archive)
        .unwrap()
        .iter()
        .map(|row| HashSuite::Blake3.index_of(row.key.as_ref().unwrap()))
        .collect();
    touched.sort_unstable();
    touched.dedup();
    touched
}

/// Epoch `epoch`'s proof, as the server builds it from the map of the epoch before.
fn proof(job: &Job, epoch: u64) -> EpochProof {
    job.map().epoch_proof(&touched(&archive(job, epoch)), Epoch(epoch - 1)).unwrap()
}

/// Both ways of reading an archive: read twice, and held between the passes.
const HOLDS: [usize; 2] = [0, AUDIT_HOLD_BYTES];

fn audit_epoch(previous: &Head, head: &Head, archive: bytes::Bytes, proof: &EpochProof) -> Result<Audited, Divergence> {
    let flat = FlatEpochProof::from(proof);
    let [twice, held] = HOLDS.map(|hold| audit_epoch_holding(previous, head, archive.clone(), &flat, hold));
    assert_eq!(twice, held, "both ways of reading find the same");
    held
}

#[test]
fn every_honest_epoch_audits_from_its_proof_alone() {
    let job = history();
    for epoch in 1..=4 {
        let proof = proof(&job, epoch);
        let bytes = proof.encode();
        assert_eq!(EpochProof::decode(&bytes).unwrap(), proof, "epoch {epoch}: the encoding round-trips");
        for hold in HOLDS {
            let (previous, signed) = (head(&job, epoch - 1), head(&job, epoch));
            let flat = FlatEpochProof::decode(&bytes).unwrap();
            let audited = audit_epoch_holding(&previous, &signed, archive(&job, epoch).into(), &flat, hold)
                .unwrap_or_else(|d| panic!("epoch {epoch}, hold {hold}: {d}"));
            assert_eq!(audited.touched, touched(&archive(&job, epoch)).len() as u64);
        }
    }
}

/// The first node of `tree` (pre-order) that `pick` changes; true once one was changed.
fn change_first(tree: &mut Pruned, pick: &mut impl FnMut(&mut Pruned) -> bool) -> bool {
    if pick(tree) {
        return true;
    }
    match tree {
        Pruned::Node(children) => {
            let [left, right] = &mut **children;
            change_first(left, pick) || change_first(right, pick)
        }
        _ => false,
    }
}

#[test]
fn a_tampered_proof_archive_or_previous_root_is_caught_and_located() {
    let job = history();
    let (previous, signed, bytes) = (head(&job, 1), head(&job, 2), archive(&job, 2));
    let audit = |proof: &EpochProof| audit_epoch(&previous, &signed, bytes.clone().into(), proof).unwrap_err();
    let honest = proof(&job, 2);

    // A changed sibling hash.
    let mut tampered = honest.clone();
    assert!(change_first(&mut tampered.tree, &mut |node| match node {
        Pruned::Opaque(hash) => {
            hash.0[0] ^= 1;
            true
        }
        _ => false,
    }));
    assert_eq!(audit(&tampered).what, "epoch proof: old map root");

    // A touched key dropped: its leaf hidden in an opaque hash (the old root is unchanged).
    let mut tampered = honest.clone();
    let mut hidden = None;
    assert!(change_first(&mut tampered.tree, &mut |node| match node {
        Pruned::Touched { index, version, has_value, entry } => {
            hidden = Some(*index);
            let suite = HashSuite::Blake3;
            *node = Pruned::Opaque(suite.leaf_hash(index, &suite.version_commitment(*version, *has_value, entry)));
            true
        }
        _ => false,
    }));
    assert_eq!(tampered.root_before(), honest.root_before());
    let d = audit(&tampered);
    assert_eq!(d.what, "epoch proof: touched paths", "{d}");
    assert!(hidden.is_some() && d.to_string().contains("enters an opaque subtree at depth"), "{d}");

    // A changed old leaf (its version), which would change compare-and-set outcomes.
    let mut tampered = honest.clone();
    assert!(change_first(&mut tampered.tree, &mut |node| match node {
        Pruned::Touched { version, .. } => {
            *version = Version(version.0 + 1);
            true
        }
        _ => false,
    }));
    assert_eq!(audit(&tampered).what, "epoch proof: old map root");

    // A changed old leaf history (its version entry), which would change the new versions' chain.
    let mut tampered = honest.clone();
    assert!(change_first(&mut tampered.tree, &mut |node| match node {
        Pruned::Touched { entry, .. } => {
            entry.0[0] ^= 1;
            true
        }
        _ => false,
    }));
    assert_eq!(audit(&tampered).what, "epoch proof: old map root");

    // A proof against another previous root: epoch 3's map instead of epoch 1's.
    let other = job.map().epoch_proof(&touched(&bytes), Epoch(3)).unwrap();
    assert_eq!(audit(&other).what, "epoch proof: old map root");

    // The honest proof for the wrong previous head.
    let d = audit_epoch(&head(&job, 0), &signed, bytes.clone().into(), &honest).unwrap_err();
    assert_eq!(d.what, "previous head");
}

#[test]
fn a_lying_outcome_is_caught_at_its_row() {
    let job = history();
    let (previous, signed, bytes) = (head(&job, 1), head(&job, 2), archive(&job, 2));
    let honest = proof(&job, 2);
    let mut rows = read_archive(&bytes).unwrap();
    // The stale write (expected version 1 where the key is at 2) archived as applied.
    let stale = rows.iter().position(|r| r.outcome == ArchiveOutcome::Rejected).unwrap();
    rows[stale].outcome = ArchiveOutcome::Applied;
    rows[stale].reason = None;
    rows[stale].new_version = Some(2);
    let lying = write_archive(&rows).unwrap();
    let forged = Head { archive: HashSuite::Blake3.archive_digest(&lying), ..signed };
    let d = audit_epoch(&previous, &forged, lying.into(), &honest).unwrap_err();
    assert_eq!(d.row, Some(stale), "{d}");

    // Epoch 1's exact duplicate archived as a rejection, and a first mutation as a duplicate.
    let (previous, signed, bytes) = (head(&job, 0), head(&job, 1), archive(&job, 1));
    let honest = proof(&job, 1);
    let rows = read_archive(&bytes).unwrap();
    let duplicate = rows.iter().position(|r| r.outcome == ArchiveOutcome::Duplicate).unwrap();
    let mut lies = rows.clone();
    lies[duplicate].outcome = ArchiveOutcome::Rejected;
    lies[duplicate].reason = Some("version_mismatch".into());
    let mut claimed = rows;
    claimed[0].outcome = ArchiveOutcome::Duplicate;
    (claimed[0].new_version, claimed[0].leaf_hash) = (None, None);
    for (lying, row) in [(lies, duplicate), (claimed, 0)] {
        let lying = write_archive(&lying).unwrap();
        let forged = Head { archive: HashSuite::Blake3.archive_digest(&lying), ..signed.clone() };
        let d = audit_epoch(&previous, &forged, lying.into(), &honest).unwrap_err();
        assert_eq!((d.row, d.what.as_str()), (Some(row), "outcome"), "{d}");
    }
}
