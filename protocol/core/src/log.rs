//! An RFC 6962 / RFC 9162 Merkle tree log over SHA-256, the tree C2SP tlog-tiles checkpoints commit to.
//!
//! This is a different tree from the sparse map ([`crate::compute_root`]): an append-only list of leaves,
//! hashed with the RFC 6962 domain separation (`0x00` before a leaf, `0x01` before two children).
//! Generation works from the full list of leaf hashes; verification needs only sizes, roots and the
//! proof. Sizes and indices are `u64`, and every function returns an error rather than panicking on
//! hostile input (out-of-range indices, swapped sizes, proofs of any length).
//!
//! ```
//! use keyfold_core::log;
//! let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|d| log::leaf_hash(*d)).collect();
//! let root = log::root(&leaves);
//! let proof = log::inclusion_proof(&leaves, 2).unwrap();
//! log::verify_inclusion(&leaves[2], 2, 3, &proof, &root).unwrap();
//! let old_root = log::root(&leaves[..2]);
//! let proof = log::consistency_proof(&leaves, 2, 3).unwrap();
//! log::verify_consistency(2, 3, &old_root, &root, &proof).unwrap();
//! ```

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::types::Hash;

/// Why a log proof could not be generated or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    #[error("leaf index {index} is out of range for a tree of {size} leaves (valid indices are 0..{size})")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}: a log only grows, so the sizes are \
         swapped or the newer tree head is a rollback"
    )]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("tree size {size} is larger than the {available} leaf hashes given")]
    SizeExceedsLeaves { size: u64, available: u64 },
    #[error(
        "no consistency proof exists from the empty tree (old size 0) to size {new_size}: every tree extends \
         the empty one, so check the size-{new_size} root on its own instead"
    )]
    EmptyOldTree { new_size: u64 },
    #[error(
        "{kind} proof has {found} hashes, but one for this index and size(s) has exactly {expected}: it is \
         truncated, padded or for another position"
    )]
    WrongProofLength { kind: &'static str, expected: usize, found: usize },
    #[error("{which} recomputed from the proof is {} but the given one is {}", .computed.to_hex(), .expected.to_hex())]
    RootMismatch { which: &'static str, expected: Hash, computed: Hash },
    #[error(
        "two tree heads of the same size {size} have different roots ({} and {}): one of them is wrong, or the \
         log has forked",
        .old_root.to_hex(),
        .new_root.to_hex()
    )]
    SameSizeDifferentRoots { size: u64, old_root: Hash, new_root: Hash },
}

/// The hash of a leaf's data: SHA-256(0x00 || data) (RFC 6962 section 2.1, RFC 9162 section 2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an interior node: SHA-256(0x01 || left || right) (RFC 6962 section 2.1, RFC 9162 section 2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 section 2.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The Merkle Tree Hash MTH(D\[n\]) of a list of leaf hashes (RFC 6962 section 2.1, RFC 9162 section 2.1.1).
///
/// The leaves are already hashed with [`leaf_hash`]; the empty list gives [`empty_root`].
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => empty_root(),
        _ => subtree_root(leaf_hashes),
    }
}

/// MTH of a non-empty list: split at the largest power of two below its length (RFC 6962 section 2.1).
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split_point(leaves.len());
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2` (RFC 6962 section 2.1's k).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn len_u64(leaves: &[Hash]) -> u64 {
    u64::try_from(leaves.len()).unwrap_or(u64::MAX)
}

/// The audit path PATH(m, D\[n\]) of leaf `index` in the tree of all `leaf_hashes` (RFC 6962 section
/// 2.1.1, RFC 9162 section 2.1.3.1), ordered from the leaf's sibling up to the root's child.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, LogError> {
    let size = len_u64(leaf_hashes);
    let out_of_range = LogError::IndexOutOfRange { index, size };
    let mut m = usize::try_from(index).map_err(|_| out_of_range.clone())?;
    if m >= leaf_hashes.len() {
        return Err(out_of_range);
    }
    // Walk down from the root; each level contributes the sibling subtree's MTH, which the
    // recursion in the RFC appends after the deeper path, so the list is reversed at the end.
    let mut tree = leaf_hashes;
    let mut top_down = Vec::new();
    while tree.len() > 1 {
        let k = split_point(tree.len());
        if m < k {
            top_down.push(subtree_root(&tree[k..]));
            tree = &tree[..k];
        } else {
            top_down.push(subtree_root(&tree[..k]));
            tree = &tree[k..];
            m -= k;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size` leaves, for `index < size`:
/// the levels where the paths to `index` and `size - 1` differ, plus the left siblings above them.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf_hash: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), LogError> {
    if index >= size {
        return Err(LogError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let wrong_length = LogError::WrongProofLength { kind: "inclusion", expected, found: proof.len() };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    check_root("tree root", root, r)
}

fn check_root(which: &'static str, expected: &Hash, computed: Hash) -> Result<(), LogError> {
    if computed == *expected { Ok(()) } else { Err(LogError::RootMismatch { which, expected: *expected, computed }) }
}

/// Rejects size pairs no consistency proof exists for; `Ok(true)` when the sizes are equal (empty proof).
fn check_sizes(old_size: u64, new_size: u64) -> Result<bool, LogError> {
    if old_size > new_size {
        return Err(LogError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(LogError::EmptyOldTree { new_size });
    }
    Ok(old_size == new_size)
}

/// The consistency proof PROOF(m, D\[n\]) between the first `old_size` and the first `new_size` of
/// `leaf_hashes` (RFC 6962 section 2.1.2, SUBPROOF; RFC 9162 section 2.1.4.1).
///
/// Equal sizes give the empty proof; an old size of 0 is refused ([`LogError::EmptyOldTree`]).
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError> {
    let available = len_u64(leaf_hashes);
    if new_size > available {
        return Err(LogError::SizeExceedsLeaves { size: new_size, available });
    }
    if check_sizes(old_size, new_size)? {
        return Ok(Vec::new());
    }
    // Both fit in usize: they are at most leaf_hashes.len().
    let too_big = LogError::SizeExceedsLeaves { size: new_size, available };
    let mut m = usize::try_from(old_size).map_err(|_| too_big.clone())?;
    let mut tree = &leaf_hashes[..usize::try_from(new_size).map_err(|_| too_big)?];
    // SUBPROOF(m, D[n], b), unrolled: each level appends one MTH after the deeper part.
    let mut top_down = Vec::new();
    let mut whole_old_subtree_known = true; // the RFC's b
    while m != tree.len() {
        let k = split_point(tree.len());
        if m <= k {
            top_down.push(subtree_root(&tree[k..]));
            tree = &tree[..k];
        } else {
            top_down.push(subtree_root(&tree[..k]));
            tree = &tree[k..];
            m -= k;
            whole_old_subtree_known = false;
        }
    }
    if !whole_old_subtree_known {
        top_down.push(subtree_root(tree));
    }
    top_down.reverse();
    Ok(top_down)
}

/// The number of hashes in the consistency proof between sizes `0 < old_size < new_size`.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let shift = old_size.trailing_zeros();
    let seeded = usize::from(old_size != 1 << shift);
    let inner = u64::BITS - ((old_size - 1) ^ (new_size - 1)).leading_zeros();
    let border = (old_size - 1).checked_shr(inner).unwrap_or(0).count_ones();
    // inner > shift: the paths to old_size - 1 and new_size - 1 part above the power-of-two subtree.
    seeded + (inner.saturating_sub(shift) + border) as usize
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of `old_size`
/// leaves with root `old_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 is refused
/// ([`LogError::EmptyOldTree`]), as in the transparency-dev test vectors: there is nothing to prove.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LogError> {
    if check_sizes(old_size, new_size)? {
        if !proof.is_empty() {
            return Err(LogError::WrongProofLength { kind: "consistency", expected: 0, found: proof.len() });
        }
        if old_root != new_root {
            return Err(LogError::SameSizeDifferentRoots { size: old_size, old_root: *old_root, new_root: *new_root });
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old_size, new_size);
    let wrong_length = LogError::WrongProofLength { kind: "consistency", expected, found: proof.len() };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // Step 2: a power-of-two old tree is itself a node of the new tree; its root seeds the path.
    let seed = (old_size.is_power_of_two()).then_some(old_root);
    let mut path = seed.into_iter().chain(proof);
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let first = path.next().ok_or_else(|| wrong_length.clone())?;
    let (mut f_r, mut s_r) = (*first, *first);
    for c in path {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(wrong_length);
    }
    check_root("old root", old_root, f_r)?;
    check_root("new root", new_root, s_r)
}
