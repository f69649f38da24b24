//! Proof properties: every generated proof verifies; every tampered proof is rejected.

use keyfold_core::{
    Epoch, Hash, HashSuite, Index, LeafValue, MapRoot, Proof, Terminal, Version, compute_root, prove_from_leaves,
};
use proptest::prelude::*;

fn leaf_set(suite: HashSuite, keys: &[u32]) -> Vec<(Index, LeafValue)> {
    let mut seen = std::collections::BTreeSet::new();
    keys.iter()
        .filter(|k| seen.insert(**k))
        .map(|k| {
            let value = if k % 7 == 0 {
                LeafValue::tombstone(Version(u64::from(*k % 5 + 1)))
            } else {
                LeafValue::present(Version(1), k.to_le_bytes().to_vec())
            };
            (suite.index_of(&k.to_be_bytes()), value)
        })
        .collect()
}

fn suites() -> impl Strategy<Value = HashSuite> {
    prop_oneof![Just(HashSuite::Blake3), Just(HashSuite::Sha256)]
}

/// Every way of breaking `proof` that a verifier must notice, each checked against `root`.
fn assert_tampering_rejected(
    suite: HashSuite,
    root: &MapRoot,
    key: &[u8],
    expected: Option<&LeafValue>,
    proof: &Proof,
) {
    let reject = |p: &Proof, what: &str| {
        assert!(p.verify(suite, root, key, expected).is_err(), "accepted a proof with {what}");
    };
    let bytes = proof.encode();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 0x80 >> (bit % 8);
        if let Ok(p) = Proof::decode(&flipped) {
            reject(&p, &format!("bit {bit} flipped"));
        }
    }
    for len in 0..bytes.len() {
        assert!(Proof::decode(&bytes[..len]).is_err(), "decoded a proof truncated to {len} bytes");
    }
    let mut extended = bytes.clone();
    extended.push(0);
    assert!(Proof::decode(&extended).is_err(), "decoded a proof with a trailing byte");

    let mut p = proof.clone();
    p.epoch = Epoch(root.epoch.0 + 1);
    reject(&p, "the wrong epoch");
    let mut p = proof.clone();
    p.suite = if suite == HashSuite::Blake3 { HashSuite::Sha256 } else { HashSuite::Blake3 };
    reject(&p, "the wrong suite");
    if !proof.siblings.is_empty() {
        let mut p = proof.clone();
        p.siblings.pop();
        reject(&p, "a truncated path");
        let mut p = proof.clone();
        p.siblings.remove(0);
        reject(&p, "the top sibling removed");
    }
    let mut p = proof.clone();
    p.siblings.push(Hash([9; 32]));
    reject(&p, "an extended path");
    let mut p = proof.clone();
    p.siblings.push(suite.empty_hash());
    reject(&p, "an extended path ending in an empty sibling");
    for i in 0..proof.siblings.len() {
        let mut p = proof.clone();
        p.siblings[i].0[31] ^= 1;
        reject(&p, &format!("sibling {i} altered"));
    }
    // Claiming the opposite, or another value, or another key.
    let wrong_value = LeafValue::present(Version(99), b"forged".to_vec());
    match expected {
        Some(v) => {
            assert!(proof.verify(suite, root, key, None).is_err(), "inclusion proof accepted as absence");
            assert!(proof.verify(suite, root, key, Some(&wrong_value)).is_err(), "accepted a wrong value");
            let mut bumped = v.clone();
            bumped.version = Version(v.version.0 + 1);
            assert!(proof.verify(suite, root, key, Some(&bumped)).is_err(), "accepted a wrong version");
        }
        None => {
            assert!(proof.verify(suite, root, key, Some(&wrong_value)).is_err(), "absence proof accepted as inclusion")
        }
    }
    assert!(proof.verify(suite, root, b"some other key", expected).is_err(), "accepted for another key");
    let mut p = proof.clone();
    p.terminal = match proof.terminal {
        Terminal::Empty => Terminal::Included,
        Terminal::Included => Terminal::Empty,
        Terminal::OtherLeaf { .. } => Terminal::Empty,
    };
    reject(&p, "a swapped terminal");
    if let Terminal::OtherLeaf { index, .. } = proof.terminal {
        let mut p = proof.clone();
        p.terminal = Terminal::OtherLeaf { index, commitment: Hash([0; 32]) };
        reject(&p, "another leaf commitment");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn proofs_verify_and_tampering_is_rejected(
        suite in suites(),
        keys in proptest::collection::vec(0u32..5000, 0..120),
        probes in proptest::collection::vec(0u32..5000, 1..6),
        epoch in 0u64..1000,
    ) {
        let set = leaf_set(suite, &keys);
        let root = MapRoot { epoch: Epoch(epoch), hash: compute_root(suite, &set).hash(suite) };
        for probe in probes.iter().chain(keys.iter().take(3)) {
            let key = probe.to_be_bytes();
            let index = suite.index_of(&key);
            let proof = prove_from_leaves(suite, Epoch(epoch), &set, &index);
            let expected = set.iter().find(|(i, _)| *i == index).map(|(_, v)| v);
            prop_assert_eq!(proof.is_inclusion(), expected.is_some());
            proof.verify(suite, &root, &key, expected).unwrap();
            let decoded = Proof::decode(&proof.encode()).unwrap();
            prop_assert_eq!(&decoded, &proof);
            decoded.verify(suite, &root, &key, expected).unwrap();
            assert_tampering_rejected(suite, &root, &key, expected, &proof);
        }
    }
}

#[test]
fn absence_proofs_for_keys_never_inserted() {
    for suite in [HashSuite::Blake3, HashSuite::Sha256] {
        let set = leaf_set(suite, &(0..500).collect::<Vec<_>>());
        let root = MapRoot { epoch: Epoch(3), hash: compute_root(suite, &set).hash(suite) };
        let (mut empty, mut other) = (0, 0);
        for k in 10_000u32..10_400 {
            let proof = prove_from_leaves(suite, Epoch(3), &set, &suite.index_of(&k.to_be_bytes()));
            proof.verify(suite, &root, &k.to_be_bytes(), None).unwrap();
            match proof.terminal {
                Terminal::Empty => empty += 1,
                Terminal::OtherLeaf { .. } => other += 1,
                Terminal::Included => panic!("key {k} was never inserted"),
            }
        }
        assert!(empty > 0 && other > 0, "both absence shapes are exercised ({empty} empty, {other} other)");
    }
}

#[test]
fn non_canonical_encodings_are_rejected() {
    let suite = HashSuite::Blake3;
    let set = leaf_set(suite, &(0..50).collect::<Vec<_>>());
    let proof = prove_from_leaves(suite, Epoch(1), &set, &suite.index_of(&7u32.to_be_bytes()));
    let bytes = proof.encode();
    // Header: format 1, suite 1, epoch 8, index 32, depth 2 = 44 bytes, then the bitmap.
    let mut bad = bytes.clone();
    bad[0] = 2;
    assert!(matches!(Proof::decode(&bad), Err(keyfold_core::DecodeError::UnsupportedFormat(2))));
    let mut bad = bytes.clone();
    bad[1] = 9;
    assert!(matches!(Proof::decode(&bad), Err(keyfold_core::DecodeError::UnknownSuite(9))));
    let mut bad = bytes.clone();
    bad[42..44].copy_from_slice(&300u16.to_be_bytes());
    assert!(matches!(Proof::decode(&bad), Err(keyfold_core::DecodeError::DepthTooLarge(300))));
    // An empty sibling encoded explicitly is not canonical.
    let mut p = proof.clone();
    p.siblings.insert(0, suite.empty_hash());
    let mut raw = p.encode();
    let depth = p.siblings.len();
    raw[44] |= 0x80; // mark sibling 0 present...
    raw.splice(44 + depth.div_ceil(8)..44 + depth.div_ceil(8), suite.empty_hash().0); // ...and encode it
    assert!(matches!(Proof::decode(&raw), Err(keyfold_core::DecodeError::NonCanonical(_))));
}
