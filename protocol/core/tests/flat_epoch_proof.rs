//! `FlatEpochProof` (the auditor's decoding) against `EpochProof`'s tree and against roots
//! computed from scratch: on honest proofs of seeded random epochs, on proofs whose tree was
//! changed node by node, and on every cut and many byte flips of an encoding, both must accept
//! and refuse the same things, with the same messages and the same roots.

use keyfold_core::{
    Epoch, EpochProof, EpochProofError, FlatEpochProof, Hash, HashSuite, Index, KeyState, LeafValue, Proof, Pruned,
    Version, compute_root, prove_from_leaves,
};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

fn index(suite: HashSuite, rng: &mut ChaCha8Rng) -> Index {
    suite.index_of(&rng.random::<[u8; 16]>())
}

/// A map of `n` keys, some deleted (tombstones), and `touched`: `old` of its keys and `new` more.
fn epoch(
    suite: HashSuite,
    rng: &mut ChaCha8Rng,
    n: usize,
    old: usize,
    new: usize,
) -> (Vec<(Index, LeafValue)>, Vec<Index>) {
    let before: Vec<(Index, LeafValue)> = (0..n as u64)
        .map(|i| {
            let value = (i % 7 != 3).then(|| rng.random::<[u8; 8]>().to_vec());
            (
                index(suite, rng),
                LeafValue { version: Version(1 + i % 3), epoch: Epoch(1), previous: Hash(rng.random()), value },
            )
        })
        .collect();
    let mut touched: Vec<Index> = before.choose_multiple(rng, old).map(|(i, _)| *i).collect();
    touched.extend((0..new).map(|_| index(suite, rng)));
    touched.sort_unstable();
    touched.dedup();
    (before, touched)
}

fn proof_of(suite: HashSuite, before: &[(Index, LeafValue)], touched: &[Index]) -> EpochProof {
    let entries: Vec<(Proof, Option<LeafValue>)> = touched
        .iter()
        .map(|index| {
            let leaf = before.iter().find(|(i, _)| i == index).map(|(_, leaf)| leaf.clone());
            (prove_from_leaves(suite, Epoch(1), before, index), leaf)
        })
        .collect();
    EpochProof::from_proofs(suite, &entries).unwrap()
}

fn flat_leaves(flat: &FlatEpochProof, touched: &[Index]) -> Result<Vec<(Index, Option<KeyState>)>, EpochProofError> {
    let mut out: Vec<(Index, Option<KeyState>)> = touched.iter().map(|index| (*index, None)).collect();
    flat.leaves_before(touched, &mut |k, state| out[k].1 = Some(state))?;
    Ok(out)
}

/// Both decodings of `proof` agree on the old root, the touched keys' states (or the refusal),
/// and, where the proof fits, the new root with `changes` in place.
fn agree(proof: &EpochProof, touched: &[Index], changes: &[(Index, Hash)]) -> Option<Hash> {
    let flat = FlatEpochProof::from(proof);
    assert_eq!(flat.root_before(), proof.root_before());
    // Both accept the same proofs; where a proof has several faults, the tree reports the
    // first in pre-order and the flat decoding the shallowest, so only the kind is compared.
    let leaves = flat_leaves(&flat, touched);
    match (&leaves, proof.leaves_before(touched)) {
        (Ok(flat), Ok(tree)) => assert_eq!(*flat, tree),
        (Err(EpochProofError::Shape(_)), Err(EpochProofError::Shape(_))) => {}
        (flat, tree) => panic!("the flat decoding found {flat:?}, the tree {tree:?}"),
    }
    leaves.ok()?;
    let paths = flat.leaves_before(touched, &mut |_, _| {}).unwrap();
    let new_leaves: Vec<Option<Hash>> =
        touched.iter().map(|t| changes.binary_search_by_key(t, |(i, _)| *i).ok().map(|k| changes[k].1)).collect();
    let root = flat.root_after(touched, &paths, &new_leaves);
    assert_eq!(Ok(root), proof.root_after(changes));
    Some(root)
}

#[test]
fn honest_epochs_give_the_roots_of_the_maps_before_and_after() {
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    for (suite, n, old, new) in [
        (HashSuite::Blake3, 0, 0, 30),
        (HashSuite::Blake3, 1, 1, 0),
        (HashSuite::Blake3, 300, 40, 25),
        (HashSuite::Sha256, 200, 200, 0),
        (HashSuite::Blake3, 500, 3, 200),
        (HashSuite::Sha256, 64, 0, 1),
    ] {
        let (before, touched) = epoch(suite, &mut rng, n, old, new);
        let proof = proof_of(suite, &before, &touched);
        assert_eq!(FlatEpochProof::from(&proof).root_before(), compute_root(suite, &before).hash(suite));
        // Some touched keys change (updates, deletes, inserts); the others stay as they were.
        let mut after = before.clone();
        let mut changes = Vec::new();
        for t in &touched {
            if !rng.random_bool(0.7) {
                continue;
            }
            let value = rng.random_bool(0.8).then(|| b"new".to_vec());
            let leaf = LeafValue { version: Version(9), epoch: Epoch(2), previous: Hash([7; 32]), value };
            changes.push((*t, suite.leaf_hash_of(t, &leaf)));
            after.retain(|(i, _)| i != t);
            after.push((*t, leaf));
        }
        let root = agree(&proof, &touched, &changes).expect("an honest proof fits its keys");
        assert_eq!(root, compute_root(suite, &after).hash(suite), "{n} keys, {} touched", touched.len());
        // A touched key left out, or an untouched key added, is refused by both the same way.
        // (A key that was in the map: its leaf is in the proof.)
        if let Some(dropped) = touched.iter().find(|t| before.iter().any(|(i, _)| i == *t)) {
            let fewer: Vec<Index> = touched.iter().filter(|i| *i != dropped).copied().collect();
            assert!(agree(&proof, &fewer, &[]).is_none());
        }
        if let Some((extra, _)) = before.iter().find(|(i, _)| touched.binary_search(i).is_err()) {
            let mut more = touched.clone();
            more.push(*extra);
            more.sort_unstable();
            assert!(agree(&proof, &more, &[]).is_none());
        }
    }
}

/// Changes the `k`-th subtree in pre-order with `change`; false when there are fewer.
fn change_nth(tree: &mut Pruned, k: &mut usize, change: &mut dyn FnMut(&mut Pruned)) -> bool {
    if *k == 0 {
        change(tree);
        return true;
    }
    *k -= 1;
    match tree {
        Pruned::Node(children) => {
            let [left, right] = &mut **children;
            change_nth(left, k, change) || change_nth(right, k, change)
        }
        _ => false,
    }
}

#[test]
fn changed_trees_are_refused_or_accepted_alike() {
    let mut rng = ChaCha8Rng::seed_from_u64(1818);
    let suite = HashSuite::Blake3;
    let (before, touched) = epoch(suite, &mut rng, 120, 12, 6);
    let honest = proof_of(suite, &before, &touched);
    let changes: Vec<(Index, Hash)> = touched.iter().map(|t| (*t, Hash([1; 32]))).collect();
    let mut refused = 0;
    for round in 0..400 {
        let mut tree = honest.tree.clone();
        let (kind, opaque) = (round % 5, Hash(rng.random()));
        let change = &mut |node: &mut Pruned| {
            *node = match (kind, node.clone()) {
                (0, _) => Pruned::Empty,
                (1, _) => Pruned::Opaque(opaque),
                (2, _) => Pruned::Opaque(suite.empty_hash()),
                (3, Pruned::Node(children)) => {
                    let [left, right] = *children;
                    Pruned::Node(Box::new([right, left]))
                }
                (_, Pruned::Touched { index, version, has_value, entry }) => {
                    Pruned::OtherLeaf { index, commitment: suite.version_commitment(version, has_value, &entry) }
                }
                (_, other) => Pruned::Node(Box::new([other, Pruned::Empty])),
            }
        };
        if !change_nth(&mut tree, &mut rng.random_range(0..200), change) {
            continue;
        }
        let changed = EpochProof { suite, tree };
        if agree(&changed, &touched, &changes).is_none() {
            refused += 1;
        }
    }
    assert!(refused > 100, "most changes to the shape are refused ({refused})");
}

#[test]
fn encodings_cut_or_flipped_decode_alike() {
    let mut rng = ChaCha8Rng::seed_from_u64(181818);
    let suite = HashSuite::Sha256;
    let (before, touched) = epoch(suite, &mut rng, 60, 5, 3);
    let bytes = proof_of(suite, &before, &touched).encode();
    for cut in 0..bytes.len() {
        let err = |r: Result<(), String>| r.unwrap_err();
        assert_eq!(
            err(FlatEpochProof::decode(&bytes[..cut]).map(|_| ()).map_err(|e| e.to_string())),
            err(EpochProof::decode(&bytes[..cut]).map(|_| ()).map_err(|e| e.to_string())),
            "cut at {cut}"
        );
    }
    for _ in 0..2000 {
        let mut flipped = bytes.clone();
        let at = rng.random_range(0..flipped.len());
        flipped[at] = rng.random();
        let tree = EpochProof::decode(&flipped);
        match FlatEpochProof::decode(&flipped) {
            Ok(_) => {
                agree(&tree.expect("both decode"), &touched, &[]);
            }
            Err(e) => assert_eq!(Err(e), tree.map(|_| ())),
        }
    }
}
