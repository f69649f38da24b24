//! Epoch proofs decoded flat, for auditing (SPEC section 3.2). The pre-order encoding becomes
//! one array of fixed-size entries ordered by depth (pre-order within a depth) and one array per
//! kind of terminal. In that order the children of the `i`-th node of a level are entries `2i` and
//! `2i + 1` of the level below, so a root is computed a level at a time, deepest first, reading
//! each level once in order, and a level's node hashes go through BLAKE3's multi-input SIMD path
//! together. Every leaf's hash is computed once, when decoding. It checks and computes exactly
//! what [`EpochProof`]'s tree does (tests compare the two on the same proofs), without an
//! allocation or a pointer chase per node.

use super::{EpochProof, EpochProofError, Reader, shape, too_deep};
use super::{TAG_EMPTY, TAG_NODE, TAG_OPAQUE, TAG_OTHER_LEAF, TAG_TOUCHED};
use crate::hash::HashSuite;
use crate::tree::{Node, combine, subtree};
use crate::types::{Hash, Index, KeyState, Version};
use rayon::prelude::*;

/// Levels with more node hashes than this are hashed on several threads.
const PARALLEL_HASHES: usize = 8192;
/// Inputs per task when a level is hashed on several threads.
const HASH_CHUNK: usize = 2048;
/// New subtrees holding more leaves than this are built on several threads.
const PARALLEL_LEAVES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Opaque,
    Other,
    Touched,
    Node,
}

/// One node of the encoding.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    /// A node: its number among the nodes of its level (its children are entries `2a` and
    /// `2a + 1` of the level below). Any other kind (a terminal): its number among the
    /// terminals, in pre-order (index order).
    a: u32,
    /// An opaque subtree, other leaf or touched leaf: its position in that kind's array.
    b: u32,
}

/// A touched key's leaf before the epoch.
#[derive(Debug, Clone, Copy)]
struct TouchedLeaf {
    index: Index,
    version: Version,
    has_value: bool,
    entry: Hash,
}

/// A subtree as its parent sees it ([`Node`] without the index of a single leaf, which no hash
/// above it uses).
#[derive(Debug, Clone, Copy)]
enum Value {
    Empty,
    Leaf(Hash),
    Internal(Hash),
}

impl Value {
    fn of(node: Node) -> Value {
        match node {
            Node::Empty => Value::Empty,
            Node::Leaf { hash, .. } => Value::Leaf(hash),
            Node::Internal { hash } => Value::Internal(hash),
        }
    }

    fn hash(self, suite: HashSuite) -> Hash {
        match self {
            Value::Empty => suite.empty_hash(),
            Value::Leaf(hash) | Value::Internal(hash) => hash,
        }
    }
}

/// An epoch proof (the same encoding as [`EpochProof`]) decoded for auditing. Memory is linear
/// in the encoding: 12 bytes per entry (a node is one encoded byte), and while a root is computed
/// 33 bytes per entry of the two widest adjacent levels.
#[derive(Debug, Clone)]
pub struct FlatEpochProof {
    suite: HashSuite,
    /// Every entry, by depth, in pre-order within a depth.
    entries: Vec<Entry>,
    /// Level `d` is `entries[level_starts[d]..level_starts[d + 1]]`.
    level_starts: Vec<usize>,
    opaque: Vec<Hash>,
    /// Each other leaf's index and commitment.
    others: Vec<(Index, Hash)>,
    touched: Vec<TouchedLeaf>,
    other_hashes: Vec<Hash>,
    touched_commitments: Vec<Hash>,
    touched_hashes: Vec<Hash>,
    terminals: usize,
}

/// Where each touched key's path ends in a proof: what [`FlatEpochProof::leaves_before`] checked,
/// for [`FlatEpochProof::root_after`].
#[derive(Debug, Clone)]
pub struct TouchedPaths {
    /// Terminal `t` (pre-order) holds the touched keys `starts[t]..starts[t + 1]`: terminals are
    /// in index order, so they cut the ascending touched keys into consecutive runs.
    starts: Vec<u32>,
}

/// An entry as the encoding gives it.
enum Item {
    Empty,
    Opaque(Hash),
    Other(Index, Hash),
    Touched(TouchedLeaf),
    Node,
}

/// Reads the subtree at `depth` in pre-order, handing each entry to `visit`; refuses what
/// [`EpochProof::decode`] refuses.
fn parse(r: &mut Reader<'_>, depth: usize, visit: &mut impl FnMut(usize, Item)) -> Result<(), EpochProofError> {
    let item = match r.u8()? {
        TAG_EMPTY => Item::Empty,
        TAG_OPAQUE => Item::Opaque(Hash(r.array()?)),
        TAG_OTHER_LEAF => Item::Other(Index(r.array()?), Hash(r.array()?)),
        TAG_TOUCHED => {
            let (index, version, has_value, entry) = r.touched()?;
            Item::Touched(TouchedLeaf { index, version, has_value, entry })
        }
        TAG_NODE if depth < 256 => {
            visit(depth, Item::Node);
            parse(r, depth + 1, visit)?;
            return parse(r, depth + 1, visit);
        }
        TAG_NODE => return Err(too_deep()),
        tag => return Err(r.unknown(tag)),
    };
    visit(depth, item);
    Ok(())
}

/// Per depth: where the next entry, node rank and terminal of each kind go.
#[derive(Clone, Default)]
struct Cursor {
    entry: usize,
    node: u32,
    opaque: usize,
    other: usize,
    touched: usize,
}

fn position(n: usize) -> u32 {
    u32::try_from(n).expect("fewer entries than encoded bytes, checked under 4 GiB")
}

/// Writes `item` at `*at` and moves `at` on; returns where it went.
fn put<T>(list: &mut [T], at: &mut usize, item: T) -> u32 {
    list[*at] = item;
    *at += 1;
    position(*at - 1)
}

fn pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(a);
    out[32..].copy_from_slice(b);
    out
}

/// `hash` of every 64-byte input, in order; large sets on several threads.
fn hash_all(inputs: &[[u8; 64]], hash: impl Fn(&[[u8; 64]], &mut Vec<Hash>) + Sync) -> Vec<Hash> {
    if inputs.len() <= PARALLEL_HASHES {
        let mut out = Vec::with_capacity(inputs.len());
        hash(inputs, &mut out);
        return out;
    }
    inputs
        .par_chunks(HASH_CHUNK)
        .flat_map_iter(|chunk| {
            let mut out = Vec::with_capacity(chunk.len());
            hash(chunk, &mut out);
            out
        })
        .collect()
}

/// The subtree at `depth` holding exactly `leaves` (ascending, distinct), large ones on several
/// threads.
fn build(suite: HashSuite, depth: usize, leaves: &[(Index, Hash)]) -> Node {
    if leaves.len() <= PARALLEL_LEAVES {
        return subtree(suite, depth, leaves);
    }
    let split = leaves.partition_point(|(index, _)| !index.bit(depth));
    let (left, right) =
        rayon::join(|| build(suite, depth + 1, &leaves[..split]), || build(suite, depth + 1, &leaves[split..]));
    combine(suite, &left, &right)
}

/// [`build`] of the keys among `keys` (ascending, distinct) that have a leaf in `leaves` (one
/// each), without gathering them first.
fn build_sparse(suite: HashSuite, depth: usize, keys: &[Index], leaves: &[Option<Hash>]) -> Node {
    if keys.len() <= PARALLEL_LEAVES {
        let gathered: Vec<(Index, Hash)> =
            keys.iter().zip(leaves).filter_map(|(index, leaf)| leaf.map(|hash| (*index, hash))).collect();
        return subtree(suite, depth, &gathered);
    }
    let split = keys.partition_point(|index| !index.bit(depth));
    let (left, right) = rayon::join(
        || build_sparse(suite, depth + 1, &keys[..split], &leaves[..split]),
        || build_sparse(suite, depth + 1, &keys[split..], &leaves[split..]),
    );
    combine(suite, &left, &right)
}

impl From<&EpochProof> for FlatEpochProof {
    fn from(proof: &EpochProof) -> FlatEpochProof {
        FlatEpochProof::decode(&proof.encode()).expect("a proof's own encoding decodes")
    }
}

impl FlatEpochProof {
    /// Decodes an epoch proof, refusing exactly what [`EpochProof::decode`] refuses, and hashes
    /// its leaves.
    pub fn decode(bytes: &[u8]) -> Result<FlatEpochProof, EpochProofError> {
        if u32::try_from(bytes.len()).is_err() {
            return Err(EpochProofError::Decode(format!("{} bytes: over 4 GiB", bytes.len())));
        }
        let mut r = Reader { bytes, at: 0 };
        let suite = r.header()?;
        let mut proof = FlatEpochProof {
            suite,
            entries: Vec::new(),
            level_starts: vec![0],
            opaque: Vec::new(),
            others: Vec::new(),
            touched: Vec::new(),
            other_hashes: Vec::new(),
            touched_commitments: Vec::new(),
            touched_hashes: Vec::new(),
            terminals: 0,
        };
        // Two passes: the first counts each depth's entries and terminals, the second writes
        // each entry where the level order puts it.
        let mut counts: Vec<Cursor> = Vec::new();
        parse(&mut r, 0, &mut |depth, item| {
            if counts.len() <= depth {
                counts.resize(depth + 1, Cursor::default());
            }
            let count = &mut counts[depth];
            count.entry += 1;
            match item {
                Item::Opaque(_) => count.opaque += 1,
                Item::Other(..) => count.other += 1,
                Item::Touched(_) => count.touched += 1,
                Item::Empty | Item::Node => {}
            }
        })?;
        r.end()?;
        let mut r = Reader { bytes, at: 0 };
        r.header()?;
        let mut cursors = proof.lay_out(&counts);
        parse(&mut r, 0, &mut |depth, item| proof.place(&mut cursors[depth], item))?;
        proof.hash_leaves();
        Ok(proof)
    }

    pub fn suite(&self) -> HashSuite {
        self.suite
    }

    /// Sizes the arrays for `counts` (per depth) and returns where each depth's part starts.
    fn lay_out(&mut self, counts: &[Cursor]) -> Vec<Cursor> {
        let mut at = Cursor::default();
        let starts: Vec<Cursor> = counts
            .iter()
            .map(|count| {
                let start = at.clone();
                at.entry += count.entry;
                at.opaque += count.opaque;
                at.other += count.other;
                at.touched += count.touched;
                self.level_starts.push(at.entry);
                start
            })
            .collect();
        let blank = TouchedLeaf { index: Index([0; 32]), version: Version(0), has_value: false, entry: Hash([0; 32]) };
        self.entries = vec![Entry { kind: Kind::Empty, a: 0, b: 0 }; at.entry];
        self.opaque = vec![Hash([0; 32]); at.opaque];
        self.others = vec![(Index([0; 32]), Hash([0; 32])); at.other];
        self.touched = vec![blank; at.touched];
        starts
    }

    /// Writes the next entry of a depth at that depth's `cursor`.
    fn place(&mut self, cursor: &mut Cursor, item: Item) {
        let (kind, a, b) = match item {
            Item::Node => {
                cursor.node += 1;
                (Kind::Node, cursor.node - 1, 0)
            }
            Item::Empty => (Kind::Empty, position(self.terminals), 0),
            Item::Opaque(hash) => {
                (Kind::Opaque, position(self.terminals), put(&mut self.opaque, &mut cursor.opaque, hash))
            }
            Item::Other(index, commitment) => {
                (Kind::Other, position(self.terminals), put(&mut self.others, &mut cursor.other, (index, commitment)))
            }
            Item::Touched(leaf) => {
                (Kind::Touched, position(self.terminals), put(&mut self.touched, &mut cursor.touched, leaf))
            }
        };
        if kind != Kind::Node {
            self.terminals += 1;
        }
        put(&mut self.entries, &mut cursor.entry, Entry { kind, a, b });
    }

    /// Every touched leaf's version commitment, and every leaf's hash, as before the epoch.
    fn hash_leaves(&mut self) {
        let suite = self.suite;
        self.touched_commitments = (self.touched.par_iter().with_min_len(1024))
            .map(|t| suite.version_commitment(t.version, t.has_value, &t.entry))
            .collect();
        let others: Vec<[u8; 64]> = self.others.iter().map(|(index, c)| pair(&index.0, &c.0)).collect();
        self.other_hashes = hash_all(&others, |inputs, out| suite.leaf_hashes(inputs, out));
        let touched: Vec<[u8; 64]> =
            self.touched.iter().zip(&self.touched_commitments).map(|(t, c)| pair(&t.index.0, &c.0)).collect();
        self.touched_hashes = hash_all(&touched, |inputs, out| suite.leaf_hashes(inputs, out));
    }

    /// The entries at `depth`, in pre-order.
    fn level(&self, depth: usize) -> &[Entry] {
        &self.entries[self.level_starts[depth]..self.level_starts[depth + 1]]
    }

    /// The depth of the deepest entry.
    fn deepest(&self) -> usize {
        self.level_starts.len() - 2
    }

    /// A terminal as it was before the epoch.
    fn before(&self, e: &Entry) -> Value {
        let b = e.b as usize;
        match e.kind {
            Kind::Empty => Value::Empty,
            Kind::Opaque => Value::Internal(self.opaque[b]),
            Kind::Other => Value::Leaf(self.other_hashes[b]),
            Kind::Touched => Value::Leaf(self.touched_hashes[b]),
            Kind::Node => unreachable!("a node is not a terminal"),
        }
    }

    /// The root of the tree whose terminals are as before the epoch except those in `changed`
    /// (entry positions, ascending): one level at a time, deepest first, each level's node
    /// hashes together.
    fn evaluate(&self, changed: &[(u32, Value)]) -> Value {
        let suite = self.suite;
        let (mut below, mut here): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
        let (mut inputs, mut pending) = (Vec::new(), Vec::new());
        for depth in (0..=self.deepest()).rev() {
            here.clear();
            inputs.clear();
            pending.clear();
            let first = self.level_starts[depth];
            let mut changed = changed[changed.partition_point(|(at, _)| (*at as usize) < first)..].iter().peekable();
            let mut children = below.iter();
            for (at, e) in (first..).zip(self.level(depth)) {
                if e.kind != Kind::Node {
                    let new = changed.next_if(|(c, _)| *c as usize == at);
                    here.push(new.map_or_else(|| self.before(e), |(_, value)| *value));
                    continue;
                }
                let (left, right) = (children.next(), children.next());
                let (&left, &right) = left.zip(right).expect("two entries below each node");
                // The map's compression (`combine`), with the hash left for the level's batch.
                here.push(match (left, right) {
                    (Value::Empty, Value::Empty) => Value::Empty,
                    (Value::Empty, leaf @ Value::Leaf(_)) | (leaf @ Value::Leaf(_), Value::Empty) => leaf,
                    _ => {
                        inputs.push(pair(&left.hash(suite).0, &right.hash(suite).0));
                        pending.push(here.len());
                        Value::Empty
                    }
                });
            }
            assert!(children.next().is_none(), "every entry below a node is its child");
            let hashes = hash_all(&inputs, |inputs, out| suite.node_hashes(inputs, out));
            for (&at, hash) in pending.iter().zip(hashes) {
                here[at] = Value::Internal(hash);
            }
            std::mem::swap(&mut below, &mut here);
        }
        below[0]
    }

    /// The previous epoch's map root, as the proof implies it.
    pub fn root_before(&self) -> Hash {
        self.evaluate(&[]).hash(self.suite)
    }

    /// [`EpochProof::for_each_leaf_before`]: checks that the proof is exactly the union of the
    /// paths of `touched` (ascending, one per index), hands `each` the position in `touched` and
    /// the state before the epoch of every touched key the proof holds a leaf of (the others
    /// were absent), and returns where each path ends. A level at a time, from the root, each
    /// entry with the touched keys whose paths pass through it.
    pub fn leaves_before(
        &self,
        touched: &[Index],
        each: &mut dyn FnMut(usize, KeyState),
    ) -> Result<TouchedPaths, EpochProofError> {
        let mut starts = vec![0u32; self.terminals + 1];
        match self.entries[0].kind {
            Kind::Empty | Kind::Opaque if touched.is_empty() => {}
            _ if touched.is_empty() => return Err(shape("the epoch touched no key but the proof expands the map")),
            _ => {
                let mut spans = vec![(0, touched.len())];
                for depth in 0..=self.deepest() {
                    let mut below = Vec::with_capacity(2 * spans.len());
                    for (e, &span) in self.level(depth).iter().zip(&spans) {
                        if e.kind == Kind::Node {
                            let (lo, hi) = span;
                            if lo == hi {
                                return Err(shape(format!("a subtree at depth {depth} lies on no touched key's path")));
                            }
                            self.check_compressed(depth, 2 * e.a as usize)?;
                            let split = lo + touched[lo..hi].partition_point(|index| !index.bit(depth));
                            below.extend([(lo, split), (split, hi)]);
                        } else {
                            starts[e.a as usize] = position(span.0);
                            self.check_terminal(e, depth, touched, span, each)?;
                        }
                    }
                    spans = below;
                }
            }
        }
        starts[self.terminals] = position(touched.len());
        Ok(TouchedPaths { starts })
    }

    /// A terminal at `depth` whose touched keys are `touched[lo..hi]`: a touched path may end in
    /// an empty subtree or at another key's leaf, and a touched key's own leaf must be one of
    /// them; an opaque subtree holds none.
    fn check_terminal(
        &self,
        e: &Entry,
        depth: usize,
        touched: &[Index],
        (lo, hi): (usize, usize),
        each: &mut dyn FnMut(usize, KeyState),
    ) -> Result<(), EpochProofError> {
        let span = &touched[lo..hi];
        let b = e.b as usize;
        match e.kind {
            Kind::Empty | Kind::Opaque if span.is_empty() => Ok(()),
            _ if span.is_empty() => Err(shape(format!("a subtree at depth {depth} lies on no touched key's path"))),
            Kind::Empty => Ok(()),
            Kind::Opaque => Err(shape(format!(
                "the path of touched index {} enters an opaque subtree at depth {depth}",
                span[0].to_hex()
            ))),
            Kind::Other => {
                let index = self.others[b].0;
                if span.binary_search(&index).is_ok() || index.common_prefix_len(&span[0]) < depth {
                    return Err(shape(format!(
                        "the other leaf {} at depth {depth} is touched or off the path",
                        index.to_hex()
                    )));
                }
                Ok(())
            }
            Kind::Touched => {
                let leaf = self.touched[b];
                let found = span.binary_search(&leaf.index);
                match found {
                    Ok(k) if leaf.index.common_prefix_len(&span[0]) >= depth => {
                        let commitment = self.touched_commitments[b];
                        each(lo + k, KeyState { version: leaf.version, has_value: leaf.has_value, commitment });
                        Ok(())
                    }
                    _ => Err(shape(format!(
                        "the leaf of {} at depth {depth} is untouched or off the path",
                        leaf.index.to_hex()
                    ))),
                }
            }
            Kind::Node => unreachable!("a node is not a terminal"),
        }
    }

    /// A node is expanded only where the map has two or more leaves below it: never two empty
    /// children, nor one empty child beside a single leaf (the map lifts that leaf instead). The
    /// node's children are entries `left` and `left + 1` of the level below `depth`.
    fn check_compressed(&self, depth: usize, left: usize) -> Result<(), EpochProofError> {
        let (left, right) = (self.level(depth + 1)[left], self.level(depth + 1)[left + 1]);
        let empty = |e: Entry| e.kind == Kind::Empty;
        let single = |e: Entry| matches!(e.kind, Kind::Other | Kind::Touched);
        let lifted = (empty(left) && (empty(right) || single(right))) || (empty(right) && single(left));
        let empty_hash = self.suite.empty_hash();
        let empty_opaque =
            [left, right].iter().any(|e| e.kind == Kind::Opaque && self.opaque[e.b as usize] == empty_hash);
        if lifted || empty_opaque {
            return Err(shape(format!("a node at depth {depth} is not compressed as the map compresses")));
        }
        Ok(())
    }

    /// The map root after the epoch: `paths` (from [`FlatEpochProof::leaves_before`] of the same
    /// `touched`) with each touched key's new leaf hash in place (`new_leaves[k]` for
    /// `touched[k]`; `None`: the key is as it was).
    pub fn root_after(&self, touched: &[Index], paths: &TouchedPaths, new_leaves: &[Option<Hash>]) -> Hash {
        assert_eq!(touched.len(), new_leaves.len(), "one new leaf or none per touched key");
        assert_eq!(paths.starts.len(), self.terminals + 1, "the paths of this proof");
        assert_eq!(paths.starts[self.terminals] as usize, touched.len(), "the paths of these keys");
        // Each terminal with a changed key below it, and its new subtree.
        let mut changed = Vec::new();
        for depth in 0..=self.deepest() {
            let first = self.level_starts[depth];
            for (at, e) in (first..).zip(self.level(depth)).filter(|(_, e)| e.kind != Kind::Node) {
                let t = e.a as usize;
                let (lo, hi) = (paths.starts[t] as usize, paths.starts[t + 1] as usize);
                if new_leaves[lo..hi].iter().any(Option::is_some) {
                    let node = self.after(e, depth, &touched[lo..hi], &new_leaves[lo..hi]);
                    changed.push((position(at), Value::of(node)));
                }
            }
        }
        self.evaluate(&changed).hash(self.suite)
    }

    /// The subtree at terminal `e` (at `depth`) after the epoch: the changed keys among `keys`,
    /// and its leaf if it held one (unless that key changed).
    fn after(&self, e: &Entry, depth: usize, keys: &[Index], new_leaves: &[Option<Hash>]) -> Node {
        if e.kind == Kind::Empty {
            return build_sparse(self.suite, depth, keys, new_leaves);
        }
        let mut leaves: Vec<(Index, Hash)> =
            keys.iter().zip(new_leaves).filter_map(|(index, leaf)| leaf.map(|hash| (*index, hash))).collect();
        let b = e.b as usize;
        let (index, hash) = match e.kind {
            Kind::Other => (self.others[b].0, self.other_hashes[b]),
            Kind::Touched => (self.touched[b].index, self.touched_hashes[b]),
            Kind::Empty | Kind::Opaque | Kind::Node => unreachable!("a leaf, where touched paths end"),
        };
        if let Err(at) = leaves.binary_search_by_key(&index, |(i, _)| *i) {
            leaves.insert(at, (index, hash));
        }
        build(self.suite, depth, &leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct inputs: two hashes of a counter.
    fn inputs(n: usize) -> Vec<[u8; 64]> {
        (0..n as u64)
            .map(|i| {
                pair(&HashSuite::Blake3.index_of(&i.to_be_bytes()).0, &HashSuite::Sha256.index_of(&i.to_be_bytes()).0)
            })
            .collect()
    }

    #[test]
    fn levels_hashed_on_several_threads_equal_one_at_a_time() {
        for suite in [HashSuite::Blake3, HashSuite::Sha256] {
            let inputs = inputs(PARALLEL_HASHES * 2 + 7);
            let hashes = hash_all(&inputs, |inputs, out| suite.node_hashes(inputs, out));
            let one_by_one: Vec<Hash> = inputs
                .iter()
                .map(|i| suite.node_hash(&Hash(i[..32].try_into().unwrap()), &Hash(i[32..].try_into().unwrap())))
                .collect();
            assert_eq!(hashes, one_by_one);
        }
    }

    #[test]
    fn subtrees_built_on_several_threads_equal_one_thread() {
        let suite = HashSuite::Sha256;
        let keys: Vec<Index> = {
            let mut keys: Vec<Index> =
                (0..PARALLEL_LEAVES as u64 * 3).map(|i| suite.index_of(&i.to_be_bytes())).collect();
            keys.sort_unstable();
            keys
        };
        let leaves: Vec<Option<Hash>> = (0u32..).zip(&keys).map(|(i, k)| (i % 3 != 0).then_some(Hash(k.0))).collect();
        let gathered: Vec<(Index, Hash)> = keys.iter().zip(&leaves).filter_map(|(k, l)| l.map(|h| (*k, h))).collect();
        assert_eq!(build_sparse(suite, 0, &keys, &leaves), subtree(suite, 0, &gathered));
        let suite = HashSuite::Blake3;
        let mut leaves: Vec<(Index, Hash)> = (0..PARALLEL_LEAVES as u64 * 3)
            .map(|i| (suite.index_of(&i.to_be_bytes()), Hash(suite.index_of(&i.to_le_bytes()).0)))
            .collect();
        leaves.sort_unstable();
        assert_eq!(build(suite, 0, &leaves), subtree(suite, 0, &leaves));
        assert_eq!(build(suite, 0, &leaves[..1]), subtree(suite, 0, &leaves[..1]));
    }
}
