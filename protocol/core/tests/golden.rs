//! Golden vectors: every hashed byte of SPEC.md, pinned for both suites.
//!
//! `protocol/core/tests/vectors/golden.json` is committed. This test recomputes each vector from its
//! described input and compares. To regenerate after a deliberate format change (which must also
//! change SPEC.md in the same commit): `KEYFOLD_BLESS=1 cargo test -p keyfold-core --test golden`.
#![allow(clippy::too_many_lines)] // a test scenario reads top to bottom; production code keeps the 70-line limit

use keyfold_core::{
    Epoch, Hash, HashSuite, Head, HeadCounts, Index, LeafValue, Mutation, SigningKey, Terminal, Version, compute_root,
    prove_from_leaves,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vector {
    name: String,
    suite: String,
    input: String,
    output: String,
}

fn map_key(i: usize) -> Vec<u8> {
    format!("user{i:012}@example.com").into_bytes()
}

/// `n` leaves: key `user{i:012}@example.com`, version 1 applied by epoch 1 (previous 32 x 0x00),
/// value = the key's bytes.
fn leaves(suite: HashSuite, n: usize) -> Vec<(Index, LeafValue)> {
    let leaf = |i| LeafValue::new(Version(1), Epoch(1), Hash::default(), Some(map_key(i)));
    (0..n).map(|i| (suite.index_of(&map_key(i)), leaf(i))).collect()
}

fn probe_with(suite: HashSuite, set: &[(Index, LeafValue)], want: fn(&Terminal) -> bool) -> String {
    (0..)
        .map(|i| format!("absent-{i}"))
        .find(|k| {
            let p = prove_from_leaves(suite, Epoch(7), set, &suite.index_of(k.as_bytes()));
            want(&p.terminal)
        })
        .expect("some probe key matches")
}

fn vectors_for(suite: HashSuite) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut push = |name: &str, input: String, output: String| {
        out.push(Vector { name: name.into(), suite: suite.name().into(), input, output });
    };
    for key in ["", "alice@example.com", "bob"] {
        push("index_of", format!("key utf8 {key:?}"), suite.index_of(key.as_bytes()).to_hex());
    }
    let commitments = [
        (
            "version 1, epoch 1, previous 32 x 0x00, tombstone",
            LeafValue::new(Version(1), Epoch(1), Hash::default(), None),
        ),
        (
            "version 1, epoch 1, previous 32 x 0x00, value utf8 \"pk\"",
            LeafValue::new(Version(1), Epoch(1), Hash::default(), Some(b"pk".to_vec())),
        ),
        (
            "version 2, epoch 5, previous 32 x 0x11, value 200 bytes 0xab",
            LeafValue::new(Version(2), Epoch(5), Hash([0x11; 32]), Some(vec![0xab; 200])),
        ),
    ];
    for (desc, leaf) in &commitments {
        let entry = suite.entry_hash(&leaf.previous, leaf.epoch, leaf.value.as_deref());
        push("version_entry", (*desc).into(), entry.to_hex());
        push("value_commitment", (*desc).into(), suite.value_commitment(leaf).to_hex());
    }
    let alice = suite.index_of(b"alice@example.com");
    let c = suite.value_commitment(&commitments[1].1);
    push(
        "leaf_hash",
        "index_of(\"alice@example.com\"), value_commitment(version 1, epoch 1, previous 32 x 0x00, \"pk\")".into(),
        suite.leaf_hash(&alice, &c).to_hex(),
    );
    history_vectors(suite, &mut push);
    push(
        "node_hash",
        "left 32 x 0x00, right 32 x 0x01".into(),
        suite.node_hash(&Hash([0; 32]), &Hash([1; 32])).to_hex(),
    );
    push(
        "node_hash",
        "left = right = empty_hash".into(),
        suite.node_hash(&suite.empty_hash(), &suite.empty_hash()).to_hex(),
    );
    push("empty_hash", String::new(), suite.empty_hash().to_hex());
    for n in [0usize, 1, 2, 5, 100] {
        let input = format!(
            "{n} leaves: key user{{i:012}}@example.com for i in 0..{n}, version 1 applied by epoch 1, previous 32 x 0x00, value = key bytes"
        );
        push("map_root", input, compute_root(suite, &leaves(suite, n)).hash(suite).to_hex());
    }
    let set100 = leaves(suite, 100);
    let included = prove_from_leaves(suite, Epoch(7), &set100, &suite.index_of(&map_key(42)));
    push(
        "proof",
        "epoch 7, 100-leaf map above, inclusion of user000000000042@example.com".into(),
        hex::encode(included.encode()),
    );
    let empty_probe = probe_with(suite, &set100, |t| matches!(t, Terminal::Empty));
    let p = prove_from_leaves(suite, Epoch(7), &set100, &suite.index_of(empty_probe.as_bytes()));
    push(
        "proof",
        format!("epoch 7, 100-leaf map above, absence of {empty_probe:?} (empty subtree)"),
        hex::encode(p.encode()),
    );
    let other_probe = probe_with(suite, &set100, |t| matches!(t, Terminal::OtherLeaf { .. }));
    let p = prove_from_leaves(suite, Epoch(7), &set100, &suite.index_of(other_probe.as_bytes()));
    push(
        "proof",
        format!("epoch 7, 100-leaf map above, absence of {other_probe:?} (other leaf)"),
        hex::encode(p.encode()),
    );
    epoch_proof_vectors(suite, &set100, [&empty_probe, &other_probe], &mut push);
    let mutations = [
        (
            "key \"alice@example.com\", value \"pk-alice\", expected version 0, no signature",
            Mutation {
                key: b"alice@example.com".to_vec(),
                value: Some(b"pk-alice".to_vec()),
                expected_version: Version(0),
                owner_signature: None,
            },
        ),
        (
            "key \"bob\", tombstone, expected version 3, signature 64 x 0x07",
            Mutation {
                key: b"bob".to_vec(),
                value: None,
                expected_version: Version(3),
                owner_signature: Some(vec![7; 64]),
            },
        ),
    ];
    for (desc, m) in &mutations {
        push("mutation_encoding", (*desc).into(), hex::encode(m.encode()));
        push("mutation_id", (*desc).into(), m.id(suite).to_hex());
    }
    let head = Head {
        origin: "example.com/keyfold".into(),
        suite,
        epoch: Epoch(7),
        root: compute_root(suite, &set100).hash(suite),
        previous: Hash([0x11; 32]),
        archive: Hash([0; 32]),
        time_ms: 1_763_900_000_000,
        counts: HeadCounts { mutations: 12, applied: 9, rejected: 2, duplicates: 1 },
        next_key: None,
    };
    let head_desc = "origin example.com/keyfold, epoch 7, root = map_root of the 100-leaf map, previous 32 x 0x11, \
                     archive zero, time 1763900000000, counts 12/9/2/1";
    push("head_body", head_desc.into(), head.body());
    push("head_hash", head_desc.into(), head.hash().to_hex());
    push(
        "log_leaf_hash",
        format!("RFC 6962 leaf hash of the head_body above ({head_desc})"),
        head.leaf_hash().to_hex(),
    );
    // The log of 8 map heads whose leaf i is the head above with epoch i (leaf 7 is the head itself).
    let log_desc = "log of 8 leaves, leaf i = head_body of the head above with epoch i";
    let log_leaves: Vec<Hash> = (0..8).map(|i| Head { epoch: Epoch(i), ..head.clone() }.leaf_hash()).collect();
    let log_root = keyfold_core::log::root(&log_leaves);
    push("log_root", format!("{log_desc}, size 8"), log_root.to_hex());
    push("log_root", format!("{log_desc}, size 3"), keyfold_core::log::root(&log_leaves[..3]).to_hex());
    let concat = |proof: Vec<Hash>| proof.iter().map(|h| h.to_hex()).collect::<String>();
    let inclusion = keyfold_core::log::inclusion_proof(&log_leaves[..5], 2).unwrap();
    push(
        "log_inclusion_proof",
        format!("{log_desc}: leaf 2 in the tree of size 5, hashes concatenated"),
        concat(inclusion),
    );
    let consistency = keyfold_core::log::consistency_proof(&log_leaves, 3, 8).unwrap();
    push(
        "log_consistency_proof",
        format!("{log_desc}: from size 3 to size 8, hashes concatenated"),
        concat(consistency),
    );
    push(
        "checkpoint_text",
        "checkpoint of the head above: size 8, root = log_root of size 8".into(),
        head.checkpoint(log_root).text(),
    );
    let key = SigningKey::from_bytes(&[7; 32]);
    let note = head.sign(&key, log_root);
    push("head_note", "checkpoint_text above signed with the ed25519 key from seed 32 x 0x07".into(), note.clone());
    push(
        "vkey",
        "C2SP verifier key of example.com/keyfold, ed25519 key from seed 32 x 0x07".into(),
        keyfold_core::vkey("example.com/keyfold", &key.verifying_key()),
    );
    let witness = SigningKey::from_bytes(&[9; 32]);
    let line = keyfold_core::cosign(&note, "witness.example", &witness, 1_763_900_100).unwrap();
    push(
        "cosignature_line",
        "cosignature/v1 of the head_note (checkpoint) above by witness.example, ed25519 key from seed 32 x 0x09, time 1763900100"
            .into(),
        line,
    );
    rollover_vectors(&head, &log_leaves[..7], &mut push);
    let set1 = leaves(suite, 1);
    let p = prove_from_leaves(suite, Epoch(1), &set1, &suite.index_of(b"bob"));
    push(
        "proof",
        "epoch 1, 1-leaf map above, absence of \"bob\" (other leaf at the root)".into(),
        hex::encode(p.encode()),
    );
    out
}

/// A key's history (SPEC section 1.3): alice@example.com with five versions across three epochs
/// (two in epoch 2, a delete and a re-creation in epoch 3): each version's commitment, chained to
/// the one before, and the key's leaf hash after epoch 3.
fn history_vectors(suite: HashSuite, push: &mut impl FnMut(&str, String, String)) {
    let versions: [(u64, Option<&[u8]>); 5] =
        [(1, Some(b"pk1")), (2, Some(b"pk2")), (2, Some(b"pk3")), (3, None), (3, Some(b"pk5"))];
    let mut previous = Hash::default();
    let mut leaf = None;
    for (v, (epoch, value)) in (1..).zip(versions) {
        let this = LeafValue::new(Version(v), Epoch(epoch), previous, value.map(<[u8]>::to_vec));
        previous = suite.value_commitment(&this);
        let what = value.map_or("a tombstone".to_owned(), |v| format!("value utf8 {:?}", String::from_utf8_lossy(v)));
        push(
            "history_commitment",
            format!(
                "alice@example.com version {v}, epoch {epoch}, {what}, previous = the commitment of version {}",
                v - 1
            ),
            previous.to_hex(),
        );
        leaf = Some(this);
    }
    let leaf = leaf.expect("five versions");
    push(
        "history_leaf_hash",
        "the leaf of alice@example.com after epoch 3 (version 5 of the history above)".into(),
        suite.leaf_hash_of(&suite.index_of(b"alice@example.com"), &leaf).to_hex(),
    );
}

/// An epoch proof (SPEC section 3.2) against the 100-leaf map of epoch 7, for epoch 8: the epoch
/// touches keys 3 and 42 and the two probe keys (absent: one at an empty subtree, one beside
/// another leaf); after it, key 3 holds "v2" at version 2, key 42 a tombstone at version 2 (both
/// chained to their version 1), each probe "new" at version 1, all applied by epoch 8.
fn epoch_proof_vectors(
    suite: HashSuite,
    before: &[(Index, LeafValue)],
    probes: [&str; 2],
    push: &mut impl FnMut(&str, String, String),
) {
    let old = |i: usize| {
        let index = suite.index_of(&map_key(i));
        suite.value_commitment(&before.iter().find(|(at, _)| *at == index).expect("in the map").1)
    };
    let mut after: Vec<(Index, LeafValue)> = vec![
        (suite.index_of(&map_key(3)), LeafValue::new(Version(2), Epoch(8), old(3), Some(b"v2".to_vec()))),
        (suite.index_of(&map_key(42)), LeafValue::new(Version(2), Epoch(8), old(42), None)),
    ];
    let new = || LeafValue::new(Version(1), Epoch(8), Hash::default(), Some(b"new".to_vec()));
    after.extend(probes.iter().map(|k| (suite.index_of(k.as_bytes()), new())));
    after.sort_unstable_by_key(|(index, _)| *index);
    let entries: Vec<(keyfold_core::Proof, Option<LeafValue>)> = after
        .iter()
        .map(|(index, _)| {
            let old = before.iter().find(|(i, _)| i == index).map(|(_, leaf)| leaf.clone());
            (prove_from_leaves(suite, Epoch(7), before, index), old)
        })
        .collect();
    let proof = keyfold_core::EpochProof::from_proofs(suite, &entries).unwrap();
    let desc = format!(
        "the 100-leaf map above pruned to the paths of user000000000003@example.com, user000000000042@example.com, \
         {:?} and {:?} (ascending by index)",
        probes[0], probes[1]
    );
    push("epoch_proof", desc, hex::encode(proof.encode()));
    push(
        "epoch_proof_root_before",
        "the epoch_proof above's old root (the 100-leaf map_root)".into(),
        proof.root_before().to_hex(),
    );
    let updates: Vec<(Index, keyfold_core::Hash)> =
        after.iter().map(|(index, leaf)| (*index, suite.leaf_hash_of(index, leaf))).collect();
    let mut whole: Vec<(Index, LeafValue)> =
        before.iter().filter(|(i, _)| after.iter().all(|(a, _)| a != i)).cloned().collect();
    whole.extend(after.iter().cloned());
    assert_eq!(proof.root_after(&updates).unwrap(), compute_root(suite, &whole).hash(suite), "the proof's new root");
    assert_eq!(proof.root_before(), compute_root(suite, before).hash(suite), "the proof's old root");
    push(
        "epoch_proof_root_after",
        "the epoch_proof above with key 3 = \"v2\" at version 2, key 42 a tombstone at version 2 (both chained to \
         their version 1) and both probes = \"new\" at version 1, all applied by epoch 8"
            .into(),
        proof.root_after(&updates).unwrap().to_hex(),
    );
}

/// A key rollover (SPEC section 6.6): the head above announces the key from seed 32 x 0x08 in its
/// next-key line and is signed by the key from seed 32 x 0x07 as leaf 7 after `earlier`; the head
/// of epoch 8 is signed by the new key.
fn rollover_vectors(head: &Head, earlier: &[Hash], push: &mut impl FnMut(&str, String, String)) {
    let (old, new) = (SigningKey::from_bytes(&[7; 32]), SigningKey::from_bytes(&[8; 32]));
    let announcement = Head { next_key: Some(new.verifying_key()), ..head.clone() };
    let mut leaves = earlier.to_vec();
    leaves.push(announcement.leaf_hash());
    let note = announcement.sign(&old, keyfold_core::log::root(&leaves));
    let desc = "the head_note above with the ninth line next-key <vkey of example.com/keyfold, ed25519 key from seed \
                32 x 0x08>, as leaf 7 after the log_root leaves 0..6, signed with seed 32 x 0x07";
    push("rollover_announcement_note", desc.into(), note);
    let next = Head { epoch: Epoch(8), previous: announcement.hash(), time_ms: head.time_ms + 1, ..head.clone() };
    leaves.push(next.leaf_hash());
    let desc = "the head of epoch 8 after the announcement (previous = its head hash, time + 1, the same root and \
                counts, no next-key), leaf 8, signed with the new key from seed 32 x 0x08";
    push("rollover_next_note", desc.into(), next.sign(&new, keyfold_core::log::root(&leaves)));
}

#[test]
fn golden_vectors_match() {
    let computed: Vec<Vector> = [HashSuite::Blake3, HashSuite::Sha256].into_iter().flat_map(vectors_for).collect();
    assert!(computed.len() >= 30, "SPEC requires at least 30 vectors");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/golden.json");
    if std::env::var_os("KEYFOLD_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let stored: Vec<Vector> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored.len(), computed.len(), "vector count changed");
    for (s, c) in stored.iter().zip(&computed) {
        assert_eq!(s, c, "golden vector differs: the byte-level format changed");
    }
}

#[test]
fn stored_proof_vectors_decode_and_verify() {
    let stored: Vec<Vector> = serde_json::from_str(include_str!("vectors/golden.json")).unwrap();
    let mut checked = 0;
    for v in stored.iter().filter(|v| v.name == "proof") {
        let proof = keyfold_core::Proof::decode(&hex::decode(&v.output).unwrap()).unwrap();
        assert_eq!(hex::encode(proof.encode()), v.output, "re-encoding is canonical");
        checked += 1;
    }
    assert_eq!(checked, 8);
    for v in stored.iter().filter(|v| v.name == "head_note") {
        let public = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        keyfold_core::verify_head_note(&v.output, "example.com/keyfold", &public).unwrap();
    }
    let public = |seed: u8| SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes();
    let (old, new) = (public(7), public(8));
    for v in stored.iter().filter(|v| v.name == "rollover_announcement_note") {
        let head = keyfold_core::verify_head_note(&v.output, "example.com/keyfold", &old).unwrap();
        assert_eq!(head.next_key.map(|k| k.to_bytes()), Some(new));
    }
    for v in stored.iter().filter(|v| v.name == "rollover_next_note") {
        keyfold_core::verify_head_note(&v.output, "example.com/keyfold", &new).unwrap();
        assert!(keyfold_core::verify_head_note(&v.output, "example.com/keyfold", &old).is_err());
    }
    let notes: Vec<&Vector> = stored.iter().filter(|v| v.name == "head_note").collect();
    let lines: Vec<&Vector> = stored.iter().filter(|v| v.name == "cosignature_line").collect();
    assert_eq!(lines.len(), 2, "one per hash suite");
    for (note, line) in notes.iter().zip(&lines) {
        let served = keyfold_core::with_cosignatures(&note.output, std::slice::from_ref(&line.output));
        let witness = keyfold_core::Witness {
            name: "witness.example".into(),
            public_key: SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes(),
        };
        assert_eq!(keyfold_core::verify_cosignature(&served, &witness).unwrap(), 1_763_900_100);
    }
}
