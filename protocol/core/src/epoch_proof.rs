//! Epoch proofs (SPEC section 3.2): the part of the map at the previous epoch an auditor needs to
//! recompute an epoch's old and new map roots without holding the map. It is the union of the
//! proofs of every key the epoch touched: a pruned tree in which each touched key's path is
//! expanded down to where it ends (an empty subtree, the key's own leaf with its state, or another
//! key's leaf) and every subtree no touched path enters is one opaque hash. Shared siblings appear
//! once; the pre-order encoding keeps each shard's part contiguous.

use crate::hash::HashSuite;
use crate::proof::{Proof, Terminal};
use crate::tree::{Node, combine, subtree};
use crate::types::{Hash, Index, KeyState, LeafValue, Version};
use thiserror::Error;

mod flat;
pub use flat::{FlatEpochProof, TouchedPaths};

/// The only epoch proof encoding version this crate produces and accepts.
pub const EPOCH_PROOF_FORMAT_V1: u8 = 1;
/// Depths above this are hashed in parallel (both children of a node at a time).
const PARALLEL_DEPTH: usize = 10;

const TAG_EMPTY: u8 = 0;
const TAG_OPAQUE: u8 = 1;
const TAG_OTHER_LEAF: u8 = 2;
const TAG_TOUCHED: u8 = 3;
const TAG_NODE: u8 = 4;

/// A subtree of the map at the previous epoch, pruned to the touched keys' paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    /// No leaf.
    Empty,
    /// Two or more leaves, none of them touched: only the subtree's hash.
    Opaque(Hash),
    /// The subtree's only leaf, where touched paths end: an untouched key's index and commitment.
    OtherLeaf { index: Index, commitment: Hash },
    /// The subtree's only leaf, where touched paths end: a touched key and its state before (its
    /// version, whether it holds a value, and its version entry: SPEC section 1.3).
    Touched { index: Index, version: Version, has_value: bool, entry: Hash },
    /// Two or more leaves, on a touched path: the left and the right subtree (one allocation).
    Node(Box<[Pruned; 2]>),
}

/// Why an epoch proof cannot be decoded or does not fit the epoch it is for. Every variant names
/// the key index or depth at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EpochProofError {
    #[error("undecodable epoch proof: {0}")]
    Decode(String),
    #[error("the epoch proof does not fit the epoch's keys: {0}")]
    Shape(String),
}

fn shape(message: impl Into<String>) -> EpochProofError {
    EpochProofError::Shape(message.into())
}

/// An epoch proof: the pruned map of the previous epoch under one hash suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochProof {
    pub suite: HashSuite,
    pub tree: Pruned,
}

impl EpochProof {
    /// Merges the proofs of every touched key against one root (ascending by index, one per
    /// index), each with the key's leaf when its proof includes it.
    pub fn from_proofs(
        suite: HashSuite,
        entries: &[(Proof, Option<LeafValue>)],
    ) -> Result<EpochProof, EpochProofError> {
        if entries.windows(2).any(|w| w[0].0.index >= w[1].0.index) {
            return Err(shape("the proofs are not ascending by index, one per index"));
        }
        let tree = if entries.is_empty() { Pruned::Empty } else { merge(suite, 0, entries)? };
        Ok(EpochProof { suite, tree })
    }

    /// The previous epoch's map root, as the proof implies it.
    pub fn root_before(&self) -> Hash {
        self.tree.node(self.suite, 0).hash(self.suite)
    }

    /// Checks that the tree is exactly the union of the paths of `touched` (ascending, one per
    /// index): every touched key's path ends inside it (never in an opaque subtree) and every
    /// expanded node or leaf lies on such a path, compressed as the map compresses. Returns each
    /// touched key's state before the epoch (`None`: absent).
    pub fn leaves_before(&self, touched: &[Index]) -> Result<Vec<(Index, Option<KeyState>)>, EpochProofError> {
        if touched.is_empty() {
            return match self.tree {
                Pruned::Empty | Pruned::Opaque(_) => Ok(Vec::new()),
                _ => Err(shape("the epoch touched no key but the proof expands the map")),
            };
        }
        let mut out = Vec::with_capacity(touched.len());
        self.tree.walk(self.suite, 0, touched, &mut |index, state| out.push((index, state)))?;
        Ok(out)
    }

    /// [`EpochProof::leaves_before`] handing each touched key's state to `each`, ascending by
    /// index, instead of collecting them (an auditor of a large epoch keeps them its own way).
    pub fn for_each_leaf_before(
        &self,
        touched: &[Index],
        each: &mut dyn FnMut(Index, Option<KeyState>),
    ) -> Result<(), EpochProofError> {
        match self.tree {
            Pruned::Empty | Pruned::Opaque(_) if touched.is_empty() => Ok(()),
            _ if touched.is_empty() => Err(shape("the epoch touched no key but the proof expands the map")),
            _ => self.tree.walk(self.suite, 0, touched, each),
        }
    }

    /// The map root after the epoch: the tree with `updates` (a touched key's new leaf hash,
    /// ascending, one per index) in place; touched keys without an update keep their leaf.
    pub fn root_after(&self, updates: &[(Index, Hash)]) -> Result<Hash, EpochProofError> {
        Ok(self.tree.node_after(self.suite, 0, updates)?.hash(self.suite))
    }
}

/// The pruned subtree at `depth` holding the paths of `entries` (non-empty, ascending).
fn merge(suite: HashSuite, depth: usize, entries: &[(Proof, Option<LeafValue>)]) -> Result<Pruned, EpochProofError> {
    let ends_here = |(proof, _): &(Proof, Option<LeafValue>)| proof.siblings.len() == depth;
    if entries.iter().all(ends_here) {
        return terminal(suite, entries);
    }
    if entries.iter().any(ends_here) || depth >= 256 {
        return Err(shape(format!("at depth {depth} some paths end and others go deeper")));
    }
    let split = entries.partition_point(|(proof, _)| !proof.index.bit(depth));
    let (left, right) = entries.split_at(split);
    let side = |group: &[(Proof, Option<LeafValue>)], other: &[(Proof, Option<LeafValue>)]| {
        if !group.is_empty() {
            return merge(suite, depth + 1, group);
        }
        let sibling = other[0].0.siblings[depth];
        Ok(if sibling == suite.empty_hash() { Pruned::Empty } else { Pruned::Opaque(sibling) })
    };
    Ok(Pruned::Node(Box::new([side(left, right)?, side(right, left)?])))
}

/// Where the paths of `entries` end together: an empty subtree, or one leaf (the proof of its
/// own key includes it, every other entry names it as the other leaf).
fn terminal(suite: HashSuite, entries: &[(Proof, Option<LeafValue>)]) -> Result<Pruned, EpochProofError> {
    let own = entries.iter().find(|(proof, _)| proof.is_inclusion());
    let node = match (own, &entries[0].0.terminal) {
        (Some((proof, Some(leaf))), _) => Pruned::Touched {
            index: proof.index,
            version: leaf.version,
            has_value: leaf.value.is_some(),
            entry: suite.entry_hash(&leaf.previous, leaf.epoch, leaf.value.as_deref()),
        },
        (Some((proof, None)), _) => return Err(shape(format!("no leaf given for index {}", proof.index.to_hex()))),
        (None, Terminal::Empty) => Pruned::Empty,
        (None, Terminal::OtherLeaf { index, commitment }) => {
            Pruned::OtherLeaf { index: *index, commitment: *commitment }
        }
        (None, Terminal::Included) => unreachable!("an inclusion proof was looked for first"),
    };
    let agrees = |proof: &Proof| match (&node, &proof.terminal) {
        (Pruned::Empty, Terminal::Empty) => true,
        (Pruned::OtherLeaf { index, commitment }, Terminal::OtherLeaf { index: i, commitment: c }) => {
            index == i && commitment == c
        }
        (Pruned::Touched { index, version, has_value, entry }, Terminal::OtherLeaf { index: i, commitment: c }) => {
            index == i && suite.version_commitment(*version, *has_value, entry) == *c
        }
        (Pruned::Touched { index, .. }, Terminal::Included) => *index == proof.index,
        _ => false,
    };
    match entries.iter().find(|(proof, _)| !agrees(proof)) {
        Some((proof, _)) => {
            Err(shape(format!("the proof of index {} ends elsewhere than its neighbours'", proof.index.to_hex())))
        }
        None => Ok(node),
    }
}

impl Pruned {
    /// This subtree as the map's compression sees it (an opaque subtree holds two or more leaves).
    fn node(&self, suite: HashSuite, depth: usize) -> Node {
        match self {
            Pruned::Empty => Node::Empty,
            Pruned::Opaque(hash) => Node::Internal { hash: *hash },
            Pruned::OtherLeaf { index, commitment } => {
                Node::Leaf { index: *index, hash: suite.leaf_hash(index, commitment) }
            }
            Pruned::Touched { index, version, has_value, entry } => {
                let commitment = suite.version_commitment(*version, *has_value, entry);
                Node::Leaf { index: *index, hash: suite.leaf_hash(index, &commitment) }
            }
            Pruned::Node(children) => {
                let [left, right] = &**children;
                let (l, r) = both(depth, || left.node(suite, depth + 1), || right.node(suite, depth + 1));
                combine(suite, &l, &r)
            }
        }
    }

    /// [`EpochProof::leaves_before`] for the subtree at `depth` whose touched indexes are `touched`.
    fn walk(
        &self,
        suite: HashSuite,
        depth: usize,
        touched: &[Index],
        out: &mut dyn FnMut(Index, Option<KeyState>),
    ) -> Result<(), EpochProofError> {
        let on_path = |index: &Index| index.common_prefix_len(&touched[0]) >= depth;
        match self {
            Pruned::Empty | Pruned::Opaque(_) if touched.is_empty() => Ok(()),
            _ if touched.is_empty() => Err(shape(format!("a subtree at depth {depth} lies on no touched key's path"))),
            Pruned::Empty => {
                touched.iter().for_each(|index| out(*index, None));
                Ok(())
            }
            Pruned::Opaque(_) => Err(shape(format!(
                "the path of touched index {} enters an opaque subtree at depth {depth}",
                touched[0].to_hex()
            ))),
            Pruned::OtherLeaf { index, .. } if touched.binary_search(index).is_ok() || !on_path(index) => {
                Err(shape(format!("the other leaf {} at depth {depth} is touched or off the path", index.to_hex())))
            }
            Pruned::OtherLeaf { .. } => {
                touched.iter().for_each(|index| out(*index, None));
                Ok(())
            }
            Pruned::Touched { index, version, has_value, entry } => {
                if touched.binary_search(index).is_err() || !on_path(index) {
                    return Err(shape(format!(
                        "the leaf of {} at depth {depth} is untouched or off the path",
                        index.to_hex()
                    )));
                }
                let commitment = suite.version_commitment(*version, *has_value, entry);
                let state = KeyState { version: *version, has_value: *has_value, commitment };
                touched.iter().for_each(|t| out(*t, (t == index).then_some(state)));
                Ok(())
            }
            Pruned::Node(children) => {
                let [left, right] = &**children;
                check_compressed(suite, depth, left, right)?;
                let split = touched.partition_point(|index| !index.bit(depth));
                left.walk(suite, depth + 1, &touched[..split], out)?;
                right.walk(suite, depth + 1, &touched[split..], out)
            }
        }
    }

    /// [`EpochProof::root_after`] for the subtree at `depth` whose updates are `updates`.
    fn node_after(&self, suite: HashSuite, depth: usize, updates: &[(Index, Hash)]) -> Result<Node, EpochProofError> {
        if updates.is_empty() {
            return Ok(self.node(suite, depth));
        }
        let with = |index: &Index, hash: Hash| {
            let mut leaves = updates.to_vec();
            if let Err(at) = leaves.binary_search_by_key(index, |(i, _)| *i) {
                leaves.insert(at, (*index, hash));
            }
            subtree(suite, depth, &leaves)
        };
        match self {
            Pruned::Empty => Ok(subtree(suite, depth, updates)),
            Pruned::Opaque(_) => Err(shape(format!(
                "the update of index {} falls in an opaque subtree at depth {depth}",
                updates[0].0.to_hex()
            ))),
            Pruned::OtherLeaf { index, commitment } => Ok(with(index, suite.leaf_hash(index, commitment))),
            Pruned::Touched { index, version, has_value, entry } => {
                Ok(with(index, suite.leaf_hash(index, &suite.version_commitment(*version, *has_value, entry))))
            }
            Pruned::Node(children) => {
                let [left, right] = &**children;
                let split = updates.partition_point(|(index, _)| !index.bit(depth));
                let (l, r) = both(
                    depth,
                    || left.node_after(suite, depth + 1, &updates[..split]),
                    || right.node_after(suite, depth + 1, &updates[split..]),
                );
                Ok(combine(suite, &l?, &r?))
            }
        }
    }
}

/// A node is expanded only where the map has two or more leaves below it: never two empty
/// children, nor one empty child beside a single leaf (the map lifts that leaf instead).
fn check_compressed(suite: HashSuite, depth: usize, left: &Pruned, right: &Pruned) -> Result<(), EpochProofError> {
    let single = |p: &Pruned| matches!(p, Pruned::OtherLeaf { .. } | Pruned::Touched { .. });
    let lifted = matches!((left, right), (Pruned::Empty, Pruned::Empty))
        || (matches!(left, Pruned::Empty) && single(right))
        || (matches!(right, Pruned::Empty) && single(left));
    let empty_opaque = [left, right].iter().any(|p| matches!(p, Pruned::Opaque(h) if *h == suite.empty_hash()));
    if lifted || empty_opaque {
        return Err(shape(format!("a node at depth {depth} is not compressed as the map compresses")));
    }
    Ok(())
}

/// Both closures, in parallel near the root (where subtrees are large), in turn below.
fn both<A: Send, B: Send>(depth: usize, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    if depth < PARALLEL_DEPTH { rayon::join(a, b) } else { (a(), b()) }
}

/// Writes an epoch proof's encoding node by node in pre-order, for a builder that walks the map
/// without building a [`Pruned`] tree (the server: [`EpochProof::encode`]'s bytes, fewer copies).
#[derive(Debug, Default)]
pub struct ProofWriter {
    pub bytes: Vec<u8>,
}

impl ProofWriter {
    /// The format and suite header.
    pub fn header(suite: HashSuite) -> ProofWriter {
        ProofWriter { bytes: vec![EPOCH_PROOF_FORMAT_V1, suite.id()] }
    }

    pub fn empty(&mut self) {
        self.bytes.push(TAG_EMPTY);
    }

    pub fn opaque(&mut self, hash: &Hash) {
        self.bytes.push(TAG_OPAQUE);
        self.bytes.extend_from_slice(&hash.0);
    }

    pub fn other_leaf(&mut self, index: &Index, commitment: &Hash) {
        self.bytes.push(TAG_OTHER_LEAF);
        self.bytes.extend_from_slice(&index.0);
        self.bytes.extend_from_slice(&commitment.0);
    }

    /// A touched key's leaf: its index, version, tag and version entry (SPEC section 1.3).
    pub fn touched(&mut self, index: &Index, version: Version, has_value: bool, entry: &Hash) {
        let out = &mut self.bytes;
        out.push(TAG_TOUCHED);
        out.extend_from_slice(&index.0);
        out.extend_from_slice(&version.0.to_be_bytes());
        out.push(u8::from(has_value));
        out.extend_from_slice(&entry.0);
    }

    /// A node: its left then its right subtree follow.
    pub fn node(&mut self) {
        self.bytes.push(TAG_NODE);
    }
}

impl EpochProof {
    /// The canonical encoding (SPEC section 3.2): format, suite, then the tree in pre-order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = ProofWriter::header(self.suite);
        encode_node(&self.tree, &mut out);
        out.bytes
    }

    /// Decodes [`EpochProof::encode`]'s bytes; anything else (another format or suite, an
    /// unknown tag, a path deeper than 256, an opaque or other-leaf commitment hash field
    /// truncated, trailing bytes) is refused. Allocates no more than the input's size.
    pub fn decode(bytes: &[u8]) -> Result<EpochProof, EpochProofError> {
        let mut r = Reader { bytes, at: 0 };
        let suite = r.header()?;
        let tree = decode_node(&mut r, 0)?;
        r.end()?;
        Ok(EpochProof { suite, tree })
    }
}

fn encode_node(node: &Pruned, out: &mut ProofWriter) {
    match node {
        Pruned::Empty => out.empty(),
        Pruned::Opaque(hash) => out.opaque(hash),
        Pruned::OtherLeaf { index, commitment } => out.other_leaf(index, commitment),
        Pruned::Touched { index, version, has_value, entry } => out.touched(index, *version, *has_value, entry),
        Pruned::Node(children) => {
            out.node();
            encode_node(&children[0], out);
            encode_node(&children[1], out);
        }
    }
}

fn decode_node(r: &mut Reader<'_>, depth: usize) -> Result<Pruned, EpochProofError> {
    Ok(match r.u8()? {
        TAG_EMPTY => Pruned::Empty,
        TAG_OPAQUE => Pruned::Opaque(Hash(r.array()?)),
        TAG_OTHER_LEAF => Pruned::OtherLeaf { index: Index(r.array()?), commitment: Hash(r.array()?) },
        TAG_TOUCHED => {
            let (index, version, has_value, entry) = r.touched()?;
            Pruned::Touched { index, version, has_value, entry }
        }
        TAG_NODE if depth < 256 => {
            let left = decode_node(r, depth + 1)?;
            Pruned::Node(Box::new([left, decode_node(r, depth + 1)?]))
        }
        TAG_NODE => return Err(too_deep()),
        tag => return Err(r.unknown(tag)),
    })
}

fn too_deep() -> EpochProofError {
    EpochProofError::Decode("a path deeper than 256 levels".into())
}

/// A cursor over the encoding; a read past the end is a decode error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EpochProofError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| EpochProofError::Decode(format!("truncated at byte {}", self.at)))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, EpochProofError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EpochProofError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    /// The format and suite header.
    fn header(&mut self) -> Result<HashSuite, EpochProofError> {
        let format = self.u8()?;
        if format != EPOCH_PROOF_FORMAT_V1 {
            return Err(EpochProofError::Decode(format!("unsupported format {format} (this verifier knows 1)")));
        }
        let id = self.u8()?;
        HashSuite::from_id(id).ok_or_else(|| EpochProofError::Decode(format!("unknown suite id {id}")))
    }

    /// A touched leaf's fields after its tag: index, version, value tag and version entry.
    fn touched(&mut self) -> Result<(Index, Version, bool, Hash), EpochProofError> {
        let index = Index(self.array()?);
        let version = Version(u64::from_be_bytes(self.array()?));
        let has_value = match self.u8()? {
            0 => false,
            1 => true,
            tag => return Err(EpochProofError::Decode(format!("unknown value tag {tag}"))),
        };
        Ok((index, version, has_value, Hash(self.array()?)))
    }

    /// The error for the tag just read.
    fn unknown(&self, tag: u8) -> EpochProofError {
        EpochProofError::Decode(format!("unknown node tag {tag} at byte {}", self.at - 1))
    }

    /// Nothing may follow the tree.
    fn end(&self) -> Result<(), EpochProofError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            left => Err(EpochProofError::Decode(format!("{left} bytes after the tree"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{compute_root, prove_from_leaves};
    use crate::types::Epoch;

    fn leaves(n: u32) -> Vec<(Index, LeafValue)> {
        let suite = HashSuite::Blake3;
        (0..n)
            .map(|i| {
                (
                    suite.index_of(format!("user{i}").as_bytes()),
                    LeafValue::present(Version(1), i.to_be_bytes().to_vec()),
                )
            })
            .collect()
    }

    /// The proof of `touched` against the map `before`, built from individual proofs.
    fn proof_of(before: &[(Index, LeafValue)], touched: &[Index]) -> EpochProof {
        let suite = HashSuite::Blake3;
        let entries: Vec<(Proof, Option<LeafValue>)> = touched
            .iter()
            .map(|index| {
                let proof = prove_from_leaves(suite, Epoch(1), before, index);
                let leaf = before.iter().find(|(i, _)| i == index).map(|(_, leaf)| leaf.clone());
                (proof, leaf)
            })
            .collect();
        EpochProof::from_proofs(suite, &entries).unwrap()
    }

    #[test]
    fn both_roots_follow_from_the_touched_paths_alone() {
        let suite = HashSuite::Blake3;
        let before = leaves(300);
        let mut touched: Vec<Index> = before.iter().step_by(7).map(|(i, _)| *i).collect();
        touched.extend((0..40).map(|i| suite.index_of(format!("new{i}").as_bytes())));
        touched.sort_unstable();
        let proof = proof_of(&before, &touched);
        assert_eq!(proof.root_before(), compute_root(suite, &before).hash(suite));
        assert_eq!(EpochProof::decode(&proof.encode()).unwrap(), proof);
        let olds = proof.leaves_before(&touched).unwrap();
        assert_eq!(olds.iter().filter(|(_, leaf)| leaf.is_some()).count(), 43);
        // Every touched key gets a new value (updates and inserts).
        let new: Vec<(Index, LeafValue)> =
            touched.iter().map(|i| (*i, LeafValue::present(Version(9), b"x".to_vec()))).collect();
        let mut after = before.clone();
        after.retain(|(i, _)| touched.binary_search(i).is_err());
        after.extend(new.iter().cloned());
        let updates: Vec<(Index, Hash)> = new.iter().map(|(i, leaf)| (*i, suite.leaf_hash_of(i, leaf))).collect();
        assert_eq!(proof.root_after(&updates).unwrap(), compute_root(suite, &after).hash(suite));
        // A touched key the proof does not cover, or one it covers that is not touched, is refused.
        let mut fewer = touched.clone();
        fewer.retain(|i| *i != before[0].0);
        assert!(proof.leaves_before(&fewer).is_err());
        let mut more = touched.clone();
        more.push(before[1].0);
        more.sort_unstable();
        assert!(proof.leaves_before(&more).is_err());
    }

    #[test]
    fn the_empty_map_and_any_cut_encoding() {
        let suite = HashSuite::Sha256;
        let touched = [suite.index_of(b"alice")];
        let entries = [(prove_from_leaves(suite, Epoch(0), &[], &touched[0]), None)];
        let proof = EpochProof::from_proofs(suite, &entries).unwrap();
        assert_eq!((proof.root_before(), proof.tree.clone()), (suite.empty_hash(), Pruned::Empty));
        let bytes = proof_of(&leaves(50), &[leaves(50)[3].0]).encode();
        for cut in 0..bytes.len() {
            assert!(EpochProof::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
