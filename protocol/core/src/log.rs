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
    if index >= size {
        return Err(LogError::IndexOutOfRange { index, size });
    }
    Ok(inclusion_path(index, size, &|lo, hi| subtree_root(&leaf_hashes[to_usize(lo)..to_usize(hi)])))
}

/// `x` as an index into a slice it is known to fit (it is at most the slice's length).
fn to_usize(x: u64) -> usize {
    usize::try_from(x).expect("bounded by a slice length")
}

/// MTH(D\[lo:hi\]) for `lo < hi <= size`, from whatever holds the tree.
type Mth<'a> = &'a dyn Fn(u64, u64) -> Hash;

/// PATH(index, D\[size\]) for `index < size`: walk down from the root; each level contributes the
/// sibling subtree's MTH, which the RFC's recursion appends after the deeper path, so the list is
/// reversed at the end.
fn inclusion_path(index: u64, size: u64, mth: Mth<'_>) -> Vec<Hash> {
    let (mut lo, mut hi) = (0, size);
    let mut top_down = Vec::new();
    while hi - lo > 1 {
        let k = split_point_u64(hi - lo);
        if index < lo + k {
            top_down.push(mth(lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push(mth(lo, lo + k));
            lo += k;
        }
    }
    top_down.reverse();
    top_down
}

/// PROOF(old, D\[new\]) for `0 < old < new` (RFC 6962 section 2.1.2's SUBPROOF, unrolled: each
/// level appends one MTH after the deeper part).
fn consistency_path(old_size: u64, new_size: u64, mth: Mth<'_>) -> Vec<Hash> {
    let (mut lo, mut hi) = (0, new_size);
    let mut top_down = Vec::new();
    let mut whole_old_subtree_known = true; // the RFC's b
    while old_size != hi {
        let k = split_point_u64(hi - lo);
        if old_size - lo <= k {
            top_down.push(mth(lo + k, hi));
            hi = lo + k;
        } else {
            top_down.push(mth(lo, lo + k));
            lo += k;
            whole_old_subtree_known = false;
        }
    }
    if !whole_old_subtree_known {
        top_down.push(mth(lo, hi));
    }
    top_down.reverse();
    top_down
}

/// The largest power of two strictly smaller than `n`, for `n >= 2`.
fn split_point_u64(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
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
    Ok(consistency_path(old_size, new_size, &|lo, hi| subtree_root(&leaf_hashes[to_usize(lo)..to_usize(hi)])))
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

/// The right edge of a log: the roots of its complete subtrees, largest (leftmost) first, one per
/// set bit of its size. Enough to compute the root and append, in O(log n) memory: what a verifier
/// that sees every leaf (a monitor) keeps instead of the whole tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the complete subtrees, largest (leftmost) first: what a monitor saves to
    /// resume ([`Frontier::from_peaks`]).
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The right edge of a log of `size` leaves from its saved peaks; `None` unless there is one
    /// peak per set bit of `size`. Nothing else can be checked here: the caller compares
    /// [`Frontier::root`] with a signed checkpoint's root before it trusts the peaks.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Frontier> {
        (peaks.len() == size.count_ones() as usize).then_some(Frontier { size, peaks })
    }

    /// Appends one leaf hash (binary carry: equal-sized subtrees to its left merge).
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut carry = self.size;
        while carry & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit of the size");
            hash = node_hash(&left, &hash);
            carry >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
        debug_assert_eq!(self.peaks.len(), self.size.count_ones() as usize);
    }

    /// MTH of the leaves so far: the peaks folded from the right.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Hashes in one full tile (C2SP tlog-tiles): 256, each of a subtree 8 levels below.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels one tile level spans.
pub const TILE_HEIGHT: u32 = 8;

/// A whole log held in memory as its complete subtree hashes: `levels[k][i]` is MTH of leaves
/// `[i * 2^k, (i + 1) * 2^k)`. About 64 bytes per leaf; any root, proof or tile is O(log n) hash
/// work (an MTH of a range is at most one stored hash per level of its right edge).
#[derive(Debug, Clone, Default)]
pub struct LogTree {
    levels: Vec<Vec<Hash>>,
}

impl LogTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| len_u64(leaves))
    }

    /// Bytes of hashes held (the bound on this structure's memory: 2 hashes per leaf at most).
    pub fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.capacity() * std::mem::size_of::<Hash>()).sum()
    }

    /// Appends one leaf hash and every subtree it completes.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
        }
    }

    /// The leaf hash at `index`, if the log has it.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?).copied()
    }

    /// MTH(D\[lo:hi\]) for `lo < hi <= size`: a stored hash when the range is one aligned complete
    /// subtree, else split as RFC 6962 splits it.
    fn mth(&self, lo: u64, hi: u64) -> Hash {
        debug_assert!(lo < hi && hi <= self.size());
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][to_usize(lo >> k)];
        }
        let k = split_point_u64(n);
        node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
    }

    fn check_size(&self, size: u64) -> Result<(), LogError> {
        let available = self.size();
        if size > available { Err(LogError::SizeExceedsLeaves { size, available }) } else { Ok(()) }
    }

    /// The root of the log's first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, LogError> {
        self.check_size(size)?;
        Ok(if size == 0 { empty_root() } else { self.mth(0, size) })
    }

    /// The right edge of the first `size` leaves.
    pub fn frontier(&self, size: u64) -> Result<Frontier, LogError> {
        self.check_size(size)?;
        let mut peaks = Vec::new();
        let mut offset = 0;
        for k in (0..u64::BITS).rev().filter(|k| size >> k & 1 == 1) {
            peaks.push(self.levels[k as usize][to_usize(offset >> k)]);
            offset += 1 << k;
        }
        Ok(Frontier { size, peaks })
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(size)?;
        if index >= size {
            return Err(LogError::IndexOutOfRange { index, size });
        }
        Ok(inclusion_path(index, size, &|lo, hi| self.mth(lo, hi)))
    }

    /// The consistency proof from the first `old_size` to the first `new_size` leaves (an old
    /// size of 0 is refused, as [`consistency_proof`] does).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(new_size)?;
        if check_sizes(old_size, new_size)? {
            return Ok(Vec::new());
        }
        Ok(consistency_path(old_size, new_size, &|lo, hi| self.mth(lo, hi)))
    }

    /// The bytes of hash tile `index` at tile `level` with `width` hashes (C2SP tlog-tiles): the
    /// MTHs of `width` consecutive subtrees of 256^level leaves. `None` unless the log has them all.
    pub fn tile(&self, level: u8, index: u64, width: u64) -> Option<Vec<u8>> {
        let height = usize::from(level) * TILE_HEIGHT as usize;
        if !(1..=TILE_WIDTH).contains(&width) {
            return None;
        }
        let row = self.levels.get(height)?;
        let start = usize::try_from(index.checked_mul(TILE_WIDTH)?).ok()?;
        let hashes = row.get(start..start.checked_add(to_usize(width))?)?;
        Some(hashes.iter().flat_map(|h| h.0).collect())
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn log_tree_and_frontier_agree_with_the_list_functions() {
        let all = leaves(70);
        let mut tree = LogTree::new();
        let mut frontier = Frontier::new();
        for (n, leaf) in all.iter().enumerate() {
            tree.push(*leaf);
            frontier.push(*leaf);
            let size = n as u64 + 1;
            assert_eq!(frontier.root(), root(&all[..=n]), "size {size}");
            assert_eq!(tree.frontier(size).unwrap(), frontier);
            // A saved right edge comes back only with one peak per set bit of its size.
            assert_eq!(Frontier::from_peaks(size, frontier.peaks().to_vec()).as_ref(), Some(&frontier));
            assert!(Frontier::from_peaks(size, frontier.peaks()[1..].to_vec()).is_none());
        }
        for size in 1..=70u64 {
            let prefix = &all[..usize::try_from(size).unwrap()];
            assert_eq!(tree.root(size).unwrap(), root(prefix));
            for index in 0..size {
                assert_eq!(tree.inclusion_proof(index, size).unwrap(), inclusion_proof(prefix, index).unwrap());
            }
            for old in 1..=size {
                assert_eq!(tree.consistency_proof(old, size).unwrap(), consistency_proof(prefix, old, size).unwrap());
            }
        }
        assert_eq!(tree.root(0).unwrap(), empty_root());
        assert!(tree.root(71).is_err() && tree.inclusion_proof(70, 70).is_err());
    }

    #[test]
    fn tiles_hold_the_subtree_hashes_of_their_level() {
        let all = leaves(600);
        let mut tree = LogTree::new();
        all.iter().for_each(|l| tree.push(*l));
        let level0 = tree.tile(0, 1, 256).unwrap();
        assert_eq!(level0[..32], all[256].0);
        assert_eq!(tree.tile(0, 2, 88).unwrap().len(), 88 * 32);
        assert!(tree.tile(0, 2, 89).is_none(), "beyond the log");
        assert_eq!(tree.tile(1, 0, 2).unwrap()[32..], root(&all[256..512]).0);
        assert!(tree.tile(1, 0, 3).is_none() && tree.tile(0, 0, 0).is_none() && tree.tile(0, 0, 257).is_none());
    }
}
