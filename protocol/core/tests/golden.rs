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

/// `n` leaves: key `user{i:012}@example.com`, version 1, value = the key's bytes.
fn leaves(suite: HashSuite, n: usize) -> Vec<(Index, LeafValue)> {
    (0..n).map(|i| (suite.index_of(&map_key(i)), LeafValue::present(Version(1), map_key(i)))).collect()
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
        ("version 1, tombstone", LeafValue::tombstone(Version(1))),
        ("version 1, value utf8 \"pk\"", LeafValue::present(Version(1), b"pk".to_vec())),
        ("version 2, value 200 bytes 0xab", LeafValue::present(Version(2), vec![0xab; 200])),
    ];
    for (desc, leaf) in &commitments {
        push("value_commitment", (*desc).into(), suite.value_commitment(leaf).to_hex());
    }
    let alice = suite.index_of(b"alice@example.com");
    let c = suite.value_commitment(&commitments[1].1);
    push(
        "leaf_hash",
        "index_of(\"alice@example.com\"), value_commitment(version 1, \"pk\")".into(),
        suite.leaf_hash(&alice, &c).to_hex(),
    );
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
        let input = format!("{n} leaves: key user{{i:012}}@example.com for i in 0..{n}, version 1, value = key bytes");
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

/// An epoch proof (SPEC section 3.2) against the 100-leaf map: the epoch touches keys 3 and 42
/// and the two probe keys (absent: one at an empty subtree, one beside another leaf); after it,
/// key 3 holds "v2" at version 2, key 42 a tombstone at version 2, each probe "new" at version 1.
fn epoch_proof_vectors(
    suite: HashSuite,
    before: &[(Index, LeafValue)],
    probes: [&str; 2],
    push: &mut impl FnMut(&str, String, String),
) {
    let mut after: Vec<(Index, LeafValue)> = vec![
        (suite.index_of(&map_key(3)), LeafValue::present(Version(2), b"v2".to_vec())),
        (suite.index_of(&map_key(42)), LeafValue::tombstone(Version(2))),
    ];
    after
        .extend(probes.iter().map(|k| (suite.index_of(k.as_bytes()), LeafValue::present(Version(1), b"new".to_vec()))));
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
        "the epoch_proof above with key 3 = \"v2\" at version 2, key 42 a tombstone at version 2 and both probes \
         = \"new\" at version 1"
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
