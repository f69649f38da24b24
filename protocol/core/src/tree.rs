//! The compressed sparse Merkle tree rules, and a naive reference implementation of them.
//!
//! A subtree with no leaf is `Empty` (hash = the suite's empty hash). A subtree with exactly one leaf
//! *is* that leaf: the leaf sits at the top of its otherwise empty subtree, and its hash binds its full
//! index so its position is unambiguous. A subtree with two or more leaves is `Internal`, hashed as
//! `node_hash(left, right)`. This makes the map root independent of the shard count.

use crate::hash::HashSuite;
use crate::proof::{Proof, Terminal};
use crate::types::Hash;
use crate::types::{Epoch, Index, LeafValue};

/// What a subtree is, as seen from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Empty,
    /// Exactly one leaf in the subtree: its index and leaf hash.
    Leaf {
        index: Index,
        hash: Hash,
    },
    /// Two or more leaves.
    Internal {
        hash: Hash,
    },
}

impl Node {
    #[inline]
    pub fn hash(&self, suite: HashSuite) -> Hash {
        match self {
            Node::Empty => suite.empty_hash(),
            Node::Leaf { hash, .. } | Node::Internal { hash } => *hash,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Node::Empty)
    }
}

/// The parent of two sibling subtrees under the compression rule.
#[inline]
pub fn combine(suite: HashSuite, left: &Node, right: &Node) -> Node {
    match (left, right) {
        (Node::Empty, Node::Empty) => Node::Empty,
        (Node::Empty, leaf @ Node::Leaf { .. }) | (leaf @ Node::Leaf { .. }, Node::Empty) => *leaf,
        _ => Node::Internal { hash: suite.node_hash(&left.hash(suite), &right.hash(suite)) },
    }
}

/// The subtree at `depth` holding exactly `leaves` (ascending, distinct, all under it).
pub(crate) fn subtree(suite: HashSuite, depth: usize, leaves: &[(Index, Hash)]) -> Node {
    match leaves {
        [] => Node::Empty,
        [(index, hash)] => Node::Leaf { index: *index, hash: *hash },
        _ => {
            assert!(depth < 256, "two leaves share all 256 index bits: duplicate index");
            let split = leaves.partition_point(|(i, _)| !i.bit(depth));
            let left = subtree(suite, depth + 1, &leaves[..split]);
            let right = subtree(suite, depth + 1, &leaves[split..]);
            combine(suite, &left, &right)
        }
    }
}

fn sorted_leaf_hashes(suite: HashSuite, leaves: &[(Index, LeafValue)]) -> Vec<(Index, Hash)> {
    let mut hashed: Vec<(Index, Hash)> = leaves.iter().map(|(i, v)| (*i, suite.leaf_hash_of(i, v))).collect();
    hashed.sort_unstable_by_key(|leaf| leaf.0);
    assert!(hashed.windows(2).all(|w| w[0].0 != w[1].0), "duplicate index in leaf set");
    hashed
}

/// The root of the map holding exactly `leaves` (any order; indexes must be distinct), computed
/// from scratch. The reference the incremental tree is tested against, and what a monitor can use.
pub fn compute_root(suite: HashSuite, leaves: &[(Index, LeafValue)]) -> Node {
    subtree(suite, 0, &sorted_leaf_hashes(suite, leaves))
}

/// A proof for `index` against the map holding exactly `leaves`, built from scratch (reference
/// implementation; the server builds proofs from its stored nodes).
pub fn prove_from_leaves(suite: HashSuite, epoch: Epoch, leaves: &[(Index, LeafValue)], index: &Index) -> Proof {
    let hashed = sorted_leaf_hashes(suite, leaves);
    let mut slice: &[(Index, Hash)] = &hashed;
    let mut siblings = Vec::new();
    let mut depth = 0usize;
    loop {
        match slice {
            [] => break Proof::new(suite, epoch, *index, siblings, Terminal::Empty),
            [(i, _)] if i == index => break Proof::new(suite, epoch, *index, siblings, Terminal::Included),
            [(i, _)] => {
                let leaf = leaves.iter().find(|(li, _)| li == i).expect("leaf present");
                let commitment = suite.value_commitment(&leaf.1);
                break Proof::new(suite, epoch, *index, siblings, Terminal::OtherLeaf { index: *i, commitment });
            }
            _ => {
                let split = slice.partition_point(|(i, _)| !i.bit(depth));
                let (left, right) = slice.split_at(split);
                let (path, other) = if index.bit(depth) { (right, left) } else { (left, right) };
                siblings.push(subtree(suite, depth + 1, other).hash(suite));
                slice = path;
                depth += 1;
            }
        }
    }
}
