//! The orchestrator: prepares epochs with the pure update, commits them, and serves proofs.

use crate::error::TreeError;
use crate::store::{Child, EpochBatch, NodeKey, Snapshot, TreeStore, check_leaf_read, check_node_read};
use crate::update::{prepare_epoch, prepare_epoch_hashed};
use keyfold_core::{
    Epoch, EpochProof, Hash, HashSuite, Index, KeyState, LeafValue, MapRoot, Node, Proof, ProofWriter, Terminal,
};

/// The answer to a lookup: the key's value at an epoch (if any) and the proof of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub value: Option<LeafValue>,
    pub proof: Proof,
}

/// A sparse Merkle map over a [`TreeStore`].
#[derive(Debug)]
pub struct Map<S: TreeStore> {
    store: S,
}

impl<S: TreeStore> Map<S> {
    pub fn new(store: S) -> Map<S> {
        Map { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn suite(&self) -> HashSuite {
        self.store.config().suite
    }

    pub fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        self.store.latest_epoch()
    }

    /// The map root at `epoch`.
    pub fn root(&self, epoch: Epoch) -> Result<MapRoot, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        Ok(MapRoot { epoch, hash: snapshot.root()?.node.hash(self.store.config().suite) })
    }

    /// Reads every record the tree of `epoch` reaches, each checked against its parent's pointer
    /// from the root down (so the records hash to the root), and each leaf at a position on its
    /// own index's path; returns the number of leaves (`keyfold fsck`).
    pub fn check_all(&self, epoch: Epoch) -> Result<u64, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        check_subtree(&snapshot, self.suite(), 0, Index([0; 32]), snapshot.root()?)
    }

    /// The batch that the next epoch would write for `updates` (one final value per index). Pure:
    /// reads the latest committed epoch, writes nothing.
    pub fn prepare(&self, updates: Vec<(Index, LeafValue)>) -> Result<EpochBatch, TreeError> {
        self.prepare_at(self.store.latest_epoch()?, updates)
    }

    /// The batch for epoch `base + 1` computed from epoch `base`, which may be older than the
    /// latest: recovery recomputes an epoch that is already committed to check it, never to write
    /// it again.
    pub fn prepare_at(&self, base: Epoch, updates: Vec<(Index, LeafValue)>) -> Result<EpochBatch, TreeError> {
        let snapshot = self.store.snapshot(base)?;
        prepare_epoch(self.store.config(), &snapshot, updates)
    }

    /// The values of `indexes` at `epoch` (`None` where absent), in the order given. Reads each
    /// node on the union of their paths once.
    pub fn get_many(&self, indexes: &[Index], epoch: Epoch) -> Result<Vec<Option<LeafValue>>, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        if indexes.windows(2).all(|w| w[0] < w[1]) {
            // Already ascending and distinct (as `read_touched` asks): no permutation to undo.
            let mut found = vec![None; indexes.len()];
            get_sorted(&snapshot, self.suite(), 0, snapshot.root()?, indexes, &mut found)?;
            return Ok(found);
        }
        let mut order: Vec<usize> = (0..indexes.len()).collect();
        order.sort_unstable_by_key(|i| indexes[*i]);
        let sorted: Vec<Index> = order.iter().map(|i| indexes[*i]).collect();
        let mut found = vec![None; sorted.len()];
        get_sorted(&snapshot, self.suite(), 0, snapshot.root()?, &sorted, &mut found)?;
        let mut out = vec![None; indexes.len()];
        for (slot, value) in order.into_iter().zip(found) {
            out[slot] = value;
        }
        Ok(out)
    }

    /// The states of `indexes` (ascending, distinct: the keys an epoch touches) at `epoch`
    /// (version, whether a value, commitment; `None` where absent) and the encoding of their epoch
    /// proof against that map (SPEC section 3.2), from one walk over their paths: every node read
    /// once and checked against its parent like a lookup's, each other subtree written as its
    /// hash, each leaf's commitment hashed once. What an epoch's compare-and-set reads, and what
    /// it publishes for auditors.
    pub fn read_with_proof(
        &self,
        indexes: &[Index],
        epoch: Epoch,
    ) -> Result<(Vec<Option<KeyState>>, Vec<u8>), TreeError> {
        if indexes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(TreeError::corrupt("an epoch proof takes ascending, distinct indexes"));
        }
        let snapshot = self.store.snapshot(epoch)?;
        let mut states = vec![None; indexes.len()];
        let mut out = ProofWriter::header(self.suite());
        write_pruned(&snapshot, self.suite(), 0, snapshot.root()?, indexes, &mut states, &mut out)?;
        Ok((states, out.bytes))
    }

    /// [`Map::read_with_proof`]'s proof, decoded.
    pub fn epoch_proof(&self, indexes: &[Index], epoch: Epoch) -> Result<EpochProof, TreeError> {
        let (_, bytes) = self.read_with_proof(indexes, epoch)?;
        EpochProof::decode(&bytes).map_err(|e| TreeError::corrupt(format!("an epoch proof just written: {e}")))
    }

    /// Commits a batch from [`Map::prepare`] and re-reads the committed root to check it.
    pub fn commit(&self, batch: &EpochBatch) -> Result<MapRoot, TreeError> {
        self.store.commit(batch)?;
        self.check_committed(batch.epoch, batch.root)
    }

    /// Re-reads the root committed for `epoch` and checks it is `computed`, the batch's.
    fn check_committed(&self, epoch: Epoch, computed: Child) -> Result<MapRoot, TreeError> {
        let root = self.root(epoch)?;
        let expected = computed.node.hash(self.store.config().suite);
        if root.hash != expected {
            return Err(TreeError::corrupt(format!(
                "epoch {} committed root {} but the batch computed {}",
                epoch.0,
                root.hash.to_hex(),
                expected.to_hex()
            )));
        }
        Ok(root)
    }

    /// Prepares and commits one epoch (the batch is handed to the store, which may move its
    /// records instead of copying them).
    pub fn apply(&self, updates: Vec<(Index, LeafValue)>) -> Result<MapRoot, TreeError> {
        let batch = self.prepare(updates)?;
        self.commit_batch(batch)
    }

    /// [`Map::apply`] of updates ascending by index with their leaf hashes computed by the
    /// caller (see [`prepare_epoch_hashed`]).
    pub fn apply_hashed(&self, updates: Vec<(Index, LeafValue)>, leaf_hashes: Vec<Hash>) -> Result<MapRoot, TreeError> {
        let snapshot = self.store.snapshot(self.store.latest_epoch()?)?;
        let batch = prepare_epoch_hashed(self.store.config(), &snapshot, updates, leaf_hashes)?;
        drop(snapshot); // the memory store's commit waits for its readers
        self.commit_batch(batch)
    }

    fn commit_batch(&self, batch: EpochBatch) -> Result<MapRoot, TreeError> {
        let (epoch, computed) = (batch.epoch, batch.root);
        self.store.commit_owned(batch)?;
        self.check_committed(epoch, computed)
    }

    /// The value of `index` at `epoch` with its inclusion or absence proof.
    pub fn lookup(&self, index: &Index, epoch: Epoch) -> Result<Lookup, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        lookup_in(&snapshot, self.store.config().suite, index)
    }
}

/// The children of the interior node `child` at `depth` on the path of `index`, checked against
/// the hash `child` carries.
fn read_children<T: Snapshot>(
    snapshot: &T,
    suite: HashSuite,
    depth: usize,
    child: &Child,
    index: &Index,
) -> Result<[Child; 2], TreeError> {
    let key = NodeKey::on_path(index, depth);
    let children = snapshot
        .node(&key, child.written)?
        .ok_or_else(|| TreeError::corrupt(format!("interior node at depth {depth} is missing")))?;
    check_node_read(suite, &key, child, &children)?;
    Ok(children)
}

/// The value of the leaf `child` (of `index`), checked against the hash `child` carries, with
/// its version entry and commitment (hashed by the check).
fn read_leaf<T: Snapshot>(
    snapshot: &T,
    suite: HashSuite,
    child: &Child,
    index: &Index,
) -> Result<(LeafValue, Hash, Hash), TreeError> {
    let leaf = snapshot.leaf(index, child.written)?.ok_or_else(|| {
        TreeError::corrupt(format!("leaf {} written by epoch {} has no value record", index.to_hex(), child.written.0))
    })?;
    let (entry, commitment) = check_leaf_read(suite, child, &leaf)?;
    Ok((leaf, entry, commitment))
}

/// Values of sorted `indexes` under `child` (at `depth`), into `out` (same positions). Duplicate
/// indexes are allowed: each gets the value. Every record read is checked against its parent's
/// pointer (compare-and-set decides on these values).
fn get_sorted<T: Snapshot>(
    snapshot: &T,
    suite: HashSuite,
    depth: usize,
    child: Child,
    indexes: &[Index],
    out: &mut [Option<LeafValue>],
) -> Result<(), TreeError> {
    if indexes.is_empty() {
        return Ok(());
    }
    match child.node {
        Node::Empty => Ok(()),
        Node::Leaf { index, .. } => {
            let lo = indexes.partition_point(|i| *i < index);
            let hi = indexes.partition_point(|i| *i <= index);
            if lo < hi {
                out[lo..hi].fill(Some(read_leaf(snapshot, suite, &child, &index)?.0));
            }
            Ok(())
        }
        Node::Internal { .. } => {
            let [left, right] = read_children(snapshot, suite, depth, &child, &indexes[0])?;
            let split = indexes.partition_point(|i| !i.bit(depth));
            let (out_left, out_right) = out.split_at_mut(split);
            let (l, r) = (&indexes[..split], &indexes[split..]);
            if indexes.len() < 512 {
                get_sorted(snapshot, suite, depth + 1, left, l, out_left)?;
                return get_sorted(snapshot, suite, depth + 1, right, r, out_right);
            }
            let (a, b) = rayon::join(
                || get_sorted(snapshot, suite, depth + 1, left, l, out_left),
                || get_sorted(snapshot, suite, depth + 1, right, r, out_right),
            );
            a.and(b)
        }
    }
}

/// [`Map::check_all`] below `child`, the subtree at `depth` whose path is `prefix`.
fn check_subtree<T: Snapshot>(
    snapshot: &T,
    suite: HashSuite,
    depth: usize,
    prefix: Index,
    child: Child,
) -> Result<u64, TreeError> {
    match child.node {
        Node::Empty => Ok(0),
        Node::Leaf { index, .. } if index.prefix(depth) != prefix => {
            Err(TreeError::corrupt(format!("leaf {} sits at depth {depth} off its own path", index.to_hex())))
        }
        Node::Leaf { index, .. } => read_leaf(snapshot, suite, &child, &index).map(|_| 1),
        Node::Internal { .. } => {
            let [left, right] = read_children(snapshot, suite, depth, &child, &prefix)?;
            let mut right_prefix = prefix;
            right_prefix.0[depth / 8] |= 0x80 >> (depth % 8);
            let (a, b) = if depth < 12 {
                rayon::join(
                    || check_subtree(snapshot, suite, depth + 1, prefix, left),
                    || check_subtree(snapshot, suite, depth + 1, right_prefix, right),
                )
            } else {
                (
                    check_subtree(snapshot, suite, depth + 1, prefix, left),
                    check_subtree(snapshot, suite, depth + 1, right_prefix, right),
                )
            };
            Ok(a? + b?)
        }
    }
}

/// [`Map::read_with_proof`] for the subtree `child` at `depth` and the sorted `indexes` under it
/// (their states go to `states`, same positions).
fn write_pruned<T: Snapshot>(
    snapshot: &T,
    suite: HashSuite,
    depth: usize,
    child: Child,
    indexes: &[Index],
    states: &mut [Option<KeyState>],
    out: &mut ProofWriter,
) -> Result<(), TreeError> {
    match child.node {
        Node::Empty => out.empty(),
        node if indexes.is_empty() => out.opaque(&node.hash(suite)),
        Node::Leaf { index, .. } => {
            let (leaf, entry, commitment) = read_leaf(snapshot, suite, &child, &index)?;
            match indexes.binary_search(&index) {
                Ok(at) => {
                    let (version, has_value) = (leaf.version, leaf.value.is_some());
                    out.touched(&index, version, has_value, &entry);
                    states[at] = Some(KeyState { version, has_value, commitment });
                }
                Err(_) => out.other_leaf(&index, &commitment),
            }
        }
        Node::Internal { .. } => {
            let [left, right] = read_children(snapshot, suite, depth, &child, &indexes[0])?;
            out.node();
            let split = indexes.partition_point(|i| !i.bit(depth));
            let (l, r) = indexes.split_at(split);
            let (states_l, states_r) = states.split_at_mut(split);
            if indexes.len() < 512 {
                write_pruned(snapshot, suite, depth + 1, left, l, states_l, out)?;
                return write_pruned(snapshot, suite, depth + 1, right, r, states_r, out);
            }
            // The right subtree into its own buffer, appended after the left one (pre-order).
            let mut right_out = ProofWriter::default();
            let (a, b) = rayon::join(
                || write_pruned(snapshot, suite, depth + 1, left, l, states_l, out),
                || write_pruned(snapshot, suite, depth + 1, right, r, states_r, &mut right_out),
            );
            a.and(b)?;
            out.bytes.extend_from_slice(&right_out.bytes);
        }
    }
    Ok(())
}

/// A lookup against an open snapshot (callers that serve many lookups reuse one snapshot): walks
/// from the committed root along the index's path, collecting sibling hashes.
pub fn lookup_in<T: Snapshot>(snapshot: &T, suite: HashSuite, index: &Index) -> Result<Lookup, TreeError> {
    let mut child = snapshot.root()?;
    let mut siblings = Vec::new();
    loop {
        let depth = siblings.len();
        let terminal = match child.node {
            Node::Empty => Terminal::Empty,
            Node::Leaf { index: leaf_index, .. } if leaf_index == *index => {
                let (value, _, _) = read_leaf(snapshot, suite, &child, index)?;
                let proof = Proof::new(suite, snapshot.epoch(), *index, siblings, Terminal::Included);
                return Ok(Lookup { value: Some(value), proof });
            }
            Node::Leaf { index: other, .. } => {
                let (_, _, commitment) = read_leaf(snapshot, suite, &child, &other)?;
                Terminal::OtherLeaf { index: other, commitment }
            }
            Node::Internal { .. } => {
                let key = NodeKey::on_path(index, depth);
                let children = snapshot.node(&key, child.written)?.ok_or_else(|| {
                    TreeError::corrupt(format!(
                        "interior node at depth {depth} on the path of {} is missing",
                        index.to_hex()
                    ))
                })?;
                // A proof is served only from records that hash to the path above them.
                check_node_read(suite, &key, &child, &children)?;
                let bit = usize::from(index.bit(depth));
                siblings.push(children[1 - bit].node.hash(suite));
                child = children[bit];
                continue;
            }
        };
        return Ok(Lookup { value: None, proof: Proof::new(suite, snapshot.epoch(), *index, siblings, terminal) });
    }
}
