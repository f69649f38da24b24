//! The RFC 6962 log's generators against its verifiers, and its roots against a naive MTH written
//! here from the text of RFC 6962 section 2.1, for every index and size pair up to 64 leaves.

use keyfold_core::Hash;
use keyfold_core::log::{self, LogError};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const MAX_SIZE: usize = 64;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 6962 section 2.1, literally: MTH({}) = SHA-256(); MTH({d(0)}) = SHA-256(0x00 || d(0));
/// otherwise, with k the largest power of two smaller than n,
/// MTH(D\[n\]) = SHA-256(0x01 || MTH(D\[0:k\]) || MTH(D\[k:n\])).
fn naive_mth(data: &[Vec<u8>]) -> [u8; 32] {
    match data {
        [] => sha256(&[]),
        [d] => sha256(&[&[0x00], d]),
        _ => {
            let mut k = 1;
            while k * 2 < data.len() {
                k *= 2;
            }
            sha256(&[&[0x01], &naive_mth(&data[..k]), &naive_mth(&data[k..])])
        }
    }
}

/// Leaf data of varied lengths, some empty.
fn entries() -> Vec<Vec<u8>> {
    (0..MAX_SIZE).map(|i| format!("entry {i};").repeat(i % 4).into_bytes()).collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

#[test]
fn hashes_match_rfc6962_hasher_test() {
    // From transparency-dev/merkle `rfc6962/rfc6962_test.go` (commit 78493b07ef9b552e3379abf9e23d4da26fbe797c).
    assert_eq!(log::leaf_hash(b"").to_hex(), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    assert_eq!(log::leaf_hash(b"L123456").to_hex(), "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56");
    assert_eq!(log::empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let (a, b) = (log::leaf_hash(b"a"), log::leaf_hash(b"b"));
    assert_eq!(log::node_hash(&a, &b).0, sha256(&[&[0x01], &a.0, &b.0]));
    assert_ne!(log::node_hash(&a, &b), log::node_hash(&b, &a));
}

#[test]
fn roots_match_naive_mth() {
    let data = entries();
    let hashes: Vec<Hash> = data.iter().map(|d| log::leaf_hash(d)).collect();
    for n in 0..=MAX_SIZE {
        assert_eq!(log::root(&hashes[..n]).0, naive_mth(&data[..n]), "size {n}");
    }
}

#[test]
fn inclusion_proofs_verify_and_tampering_is_rejected() {
    let hashes: Vec<Hash> = entries().iter().map(|d| log::leaf_hash(d)).collect();
    for n in 1..=MAX_SIZE {
        let (tree, size) = (&hashes[..n], n as u64);
        let root = log::root(tree);
        for (i, leaf) in tree.iter().enumerate() {
            let index = i as u64;
            let proof = log::inclusion_proof(tree, index).unwrap();
            log::verify_inclusion(leaf, index, size, &proof, &root).unwrap();
            for j in 0..proof.len() {
                let mut bad = proof.clone();
                bad[j] = flip(&bad[j], j * 37 + i);
                let err = log::verify_inclusion(leaf, index, size, &bad, &root).unwrap_err();
                assert!(matches!(err, LogError::RootMismatch { .. }), "size {n} index {i} hash {j}: {err}");
            }
            assert!(log::verify_inclusion(&flip(leaf, i), index, size, &proof, &root).is_err());
            assert!(log::verify_inclusion(leaf, index, size, &proof, &flip(&root, i)).is_err());
            let mut longer = proof.clone();
            longer.push(root);
            assert!(log::verify_inclusion(leaf, index, size, &longer, &root).is_err());
            if let Some((_, shorter)) = proof.split_last() {
                assert!(log::verify_inclusion(leaf, index, size, shorter, &root).is_err());
            }
            if i + 1 < n {
                assert!(log::verify_inclusion(leaf, index + 1, size, &proof, &root).is_err());
            }
            // (Not checked: another size. A proof can also fit a larger tree whose path has the same
            // shape, e.g. leaf 0 of 3 and of 4; the size is bound by the signed tree head, not the proof.)
        }
        let past_end = log::inclusion_proof(tree, size).unwrap_err();
        assert_eq!(past_end, LogError::IndexOutOfRange { index: size, size });
    }
}

#[test]
fn consistency_proofs_verify_and_tampering_is_rejected() {
    let hashes: Vec<Hash> = entries().iter().map(|d| log::leaf_hash(d)).collect();
    let roots: Vec<Hash> = (0..=MAX_SIZE).map(|n| log::root(&hashes[..n])).collect();
    for n in 1..=MAX_SIZE {
        let new_size = n as u64;
        for m in 1..=n {
            let old_size = m as u64;
            let proof = log::consistency_proof(&hashes, old_size, new_size).unwrap();
            assert_eq!(proof.is_empty(), m == n, "sizes {m} -> {n}");
            log::verify_consistency(old_size, new_size, &roots[m], &roots[n], &proof).unwrap();
            for j in 0..proof.len() {
                let mut bad = proof.clone();
                bad[j] = flip(&bad[j], j * 41 + m + n);
                let err = log::verify_consistency(old_size, new_size, &roots[m], &roots[n], &bad).unwrap_err();
                assert!(matches!(err, LogError::RootMismatch { .. }), "sizes {m} -> {n} hash {j}: {err}");
            }
            let (old_root, new_root) = (flip(&roots[m], n), flip(&roots[n], m));
            assert!(log::verify_consistency(old_size, new_size, &old_root, &roots[n], &proof).is_err());
            assert!(log::verify_consistency(old_size, new_size, &roots[m], &new_root, &proof).is_err());
            let mut longer = proof.clone();
            longer.push(roots[n]);
            assert!(log::verify_consistency(old_size, new_size, &roots[m], &roots[n], &longer).is_err());
            if let Some((_, shorter)) = proof.split_last() {
                assert!(log::verify_consistency(old_size, new_size, &roots[m], &roots[n], shorter).is_err());
            }
        }
        let from_empty = log::consistency_proof(&hashes, 0, new_size).unwrap_err();
        assert_eq!(from_empty, LogError::EmptyOldTree { new_size });
        let err = log::verify_consistency(0, new_size, &roots[0], &roots[n], &[]).unwrap_err();
        assert_eq!(err, LogError::EmptyOldTree { new_size });
    }
}

#[test]
fn consistency_edge_cases() {
    let hashes: Vec<Hash> = entries().iter().map(|d| log::leaf_hash(d)).collect();
    let (r3, r5) = (log::root(&hashes[..3]), log::root(&hashes[..5]));
    let swapped = log::consistency_proof(&hashes, 5, 3).unwrap_err();
    assert_eq!(swapped, LogError::SizesOutOfOrder { old_size: 5, new_size: 3 });
    assert!(matches!(log::verify_consistency(5, 3, &r5, &r3, &[]), Err(LogError::SizesOutOfOrder { .. })));
    let beyond = log::consistency_proof(&hashes[..5], 3, 6).unwrap_err();
    assert_eq!(beyond, LogError::SizeExceedsLeaves { size: 6, available: 5 });
    log::verify_consistency(3, 3, &r3, &r3, &[]).unwrap();
    let fork = log::verify_consistency(3, 3, &r3, &r5, &[]).unwrap_err();
    assert!(matches!(fork, LogError::SameSizeDifferentRoots { size: 3, .. }));
    assert!(matches!(log::verify_consistency(3, 3, &r3, &r3, &[r3]), Err(LogError::WrongProofLength { .. })));
    let empty = log::empty_root();
    assert!(matches!(log::verify_consistency(0, 0, &empty, &empty, &[]), Err(LogError::EmptyOldTree { .. })));
    assert!(matches!(log::verify_inclusion(&empty, 0, 0, &[], &empty), Err(LogError::IndexOutOfRange { .. })));
}

proptest! {
    /// Hostile sizes, indices and proof lengths are answered with an error, never a panic.
    #[test]
    fn hostile_input_never_panics(
        a in prop_oneof![Just(0u64), Just(1), Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()],
        b in prop_oneof![Just(0u64), Just(1), Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()],
        len in prop_oneof![0usize..=70, Just(10_000)],
        seed in any::<u8>(),
    ) {
        let proof: Vec<Hash> = (0..len).map(|i| Hash([seed ^ u8::try_from(i % 256).unwrap(); 32])).collect();
        let h = Hash([seed; 32]);
        prop_assert!(log::verify_inclusion(&h, a, b, &proof, &h).is_err() || len <= 64);
        prop_assert!(log::verify_consistency(a, b, &h, &h, &proof).is_err() || len <= 64);
        let leaves = [h; 3];
        let _ = log::inclusion_proof(&leaves, a);
        let _ = log::consistency_proof(&leaves, a, b);
    }
}
