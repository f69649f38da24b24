//! The pure epoch update: (snapshot of epoch E, leaf updates) -> write batch for epoch E+1.
//!
//! Nothing here writes. Only dirty paths are touched: a subtree without updates is returned as its
//! parent stored it, so an epoch costs O(M log N) node reads and hashes, never O(N).
//!
//! Shape: [`prepare_epoch`] sorts and hashes the updates, then descends the levels above the shards
//! (forking with `rayon::join` at every level, so dirty shards run in parallel) and calls
//! [`update_shard`] for each dirty shard; shard roots are then combined back up to the map root.

use crate::error::TreeError;
use crate::store::{Child, Children, EpochBatch, NodeKey, ShardUpdate, Snapshot, TreeConfig, check_node_read};
use keyfold_core::{Epoch, Hash, HashSuite, Index, LeafValue, Node, ShardId, combine};
use rayon::prelude::*;

/// Below this many updates a subtree inside a shard is computed on the current thread; above it
/// the two halves are forked with `rayon::join`.
const PAR_MIN_UPDATES: usize = 1024;

/// A leaf to place in the tree: its index, leaf hash, and the epoch whose record holds its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedLeaf {
    pub index: Index,
    pub hash: Hash,
    pub written: Epoch,
}

/// Interior node records in post-order, kept as chunks so that forked halves are joined by moving
/// chunk headers, not by copying records (which cost O(n log n) copies on big builds).
#[derive(Debug, Default)]
struct NodeWrites {
    chunks: Vec<Vec<(NodeKey, Children)>>,
}

impl NodeWrites {
    fn push(&mut self, record: (NodeKey, Children)) {
        match self.chunks.last_mut() {
            Some(chunk) => chunk.push(record),
            None => self.chunks.push(vec![record]),
        }
    }

    fn append(&mut self, other: &mut NodeWrites) {
        self.chunks.append(&mut other.chunks);
    }

    fn into_vec(self) -> Vec<(NodeKey, Children)> {
        if self.chunks.len() == 1 {
            return self.chunks.into_iter().next().expect("one chunk");
        }
        let mut out = Vec::with_capacity(self.chunks.iter().map(Vec::len).sum());
        for chunk in self.chunks {
            out.extend(chunk);
        }
        out
    }
}

struct Ctx<'a, S: Snapshot> {
    suite: HashSuite,
    shard_bits: usize,
    snapshot: &'a S,
    /// The epoch being written.
    epoch: Epoch,
}

fn missing(depth: usize, key: &NodeKey, written: Epoch) -> TreeError {
    TreeError::corrupt(format!(
        "interior node at depth {depth}, prefix {}, written by epoch {} is missing",
        key.prefix.to_hex(),
        written.0
    ))
}

/// Runs `left` and `right`, forked when `parallel`. Left writes precede right writes either way,
/// so the batch is identical for every thread count.
fn fork<L, R, A: Send, B: Send>(parallel: bool, out: &mut NodeWrites, left: L, right: R) -> (A, B)
where
    L: FnOnce(&mut NodeWrites) -> A + Send,
    R: FnOnce(&mut NodeWrites) -> B + Send,
{
    if !parallel {
        let a = left(out);
        return (a, right(out));
    }
    let mut right_out = NodeWrites::default();
    let (a, b) = rayon::join(|| left(out), || right(&mut right_out));
    out.append(&mut right_out);
    (a, b)
}

impl<S: Snapshot> Ctx<'_, S> {
    /// Combines two children; an interior parent is recorded as written by this epoch.
    fn join(&self, depth: usize, path: &Index, left: Child, right: Child, out: &mut NodeWrites) -> Child {
        match combine(self.suite, &left.node, &right.node) {
            Node::Empty => Child::EMPTY,
            // A lone leaf is lifted with its record pointer unchanged.
            Node::Leaf { .. } => {
                if left.node.is_empty() {
                    right
                } else {
                    left
                }
            }
            parent @ Node::Internal { .. } => {
                out.push((NodeKey::on_path(path, depth), [left, right]));
                Child { node: parent, written: self.epoch }
            }
        }
    }

    fn read_children(&self, depth: usize, path: &Index, old: Child) -> Result<Children, TreeError> {
        let key = NodeKey::on_path(path, depth);
        let children = self.snapshot.node(&key, old.written)?.ok_or_else(|| missing(depth, &key, old.written))?;
        // The new root is built on these records: each must be what its signed parent names.
        check_node_read(self.suite, &key, &old, &children)?;
        Ok(children)
    }

    /// A subtree holding exactly `leaves`, none of which is stored under it yet.
    fn build(&self, depth: usize, leaves: &[HashedLeaf], out: &mut NodeWrites) -> Child {
        match leaves {
            [] => Child::EMPTY,
            [leaf] => Child { node: Node::Leaf { index: leaf.index, hash: leaf.hash }, written: leaf.written },
            _ => {
                debug_assert!(depth < 256, "distinct indexes differ before depth 256");
                let split = leaves.partition_point(|l| !l.index.bit(depth));
                let (l, r) = leaves.split_at(split);
                let (left, right) = fork(
                    leaves.len() >= PAR_MIN_UPDATES,
                    out,
                    |o| self.build(depth + 1, l, o),
                    |o| self.build(depth + 1, r, o),
                );
                self.join(depth, &leaves[0].index, left, right, out)
            }
        }
    }

    /// The subtree at `depth` that was `old`, with `updates` (sorted, on this path) applied.
    fn update(
        &self,
        depth: usize,
        old: Child,
        updates: &[HashedLeaf],
        out: &mut NodeWrites,
    ) -> Result<Child, TreeError> {
        if updates.is_empty() {
            return Ok(old);
        }
        match old.node {
            Node::Empty => Ok(self.build(depth, updates, out)),
            Node::Leaf { index, hash } => match updates.binary_search_by(|u| u.index.cmp(&index)) {
                Ok(_) => Ok(self.build(depth, updates, out)), // the old leaf is replaced
                Err(pos) => {
                    let mut merged = Vec::with_capacity(updates.len() + 1);
                    merged.extend_from_slice(&updates[..pos]);
                    merged.push(HashedLeaf { index, hash, written: old.written });
                    merged.extend_from_slice(&updates[pos..]);
                    Ok(self.build(depth, &merged, out))
                }
            },
            Node::Internal { .. } => {
                let [old_left, old_right] = self.read_children(depth, &updates[0].index, old)?;
                let split = updates.partition_point(|u| !u.index.bit(depth));
                let (l, r) = updates.split_at(split);
                let (left, right) = fork(
                    updates.len() >= PAR_MIN_UPDATES,
                    out,
                    |o| self.update(depth + 1, old_left, l, o),
                    |o| self.update(depth + 1, old_right, r, o),
                );
                Ok(self.join(depth, &updates[0].index, left?, right?, out))
            }
        }
    }

    /// The levels above the shards. Dirty halves fork unconditionally (they hold whole shards);
    /// at depth `shard_bits` each dirty shard is updated by [`update_shard`].
    fn top(
        &self,
        depth: usize,
        old: Child,
        updates: &[HashedLeaf],
        shards: &mut Vec<ShardUpdate>,
        top_out: &mut Vec<(NodeKey, Children)>,
    ) -> Result<Child, TreeError> {
        if updates.is_empty() {
            return Ok(old);
        }
        if depth == self.shard_bits {
            let shard = updates[0].index.shard(u8::try_from(self.shard_bits).expect("shard_bits <= 16"));
            let update = self.update_shard(shard, old, updates)?;
            let root = update.root;
            shards.push(update);
            return Ok(root);
        }
        let path = updates[0].index;
        let [old_left, old_right] = match old.node {
            Node::Empty => [Child::EMPTY, Child::EMPTY],
            Node::Leaf { index, .. } if index.bit(depth) => [Child::EMPTY, old],
            Node::Leaf { .. } => [old, Child::EMPTY],
            Node::Internal { .. } => self.read_children(depth, &path, old)?,
        };
        let split = updates.partition_point(|u| !u.index.bit(depth));
        let (l, r) = updates.split_at(split);
        let mut right_shards = Vec::new();
        let mut right_top = Vec::new();
        let (left, right) = rayon::join(
            || self.top(depth + 1, old_left, l, shards, top_out),
            || self.top(depth + 1, old_right, r, &mut right_shards, &mut right_top),
        );
        shards.append(&mut right_shards);
        top_out.append(&mut right_top);
        let mut parent = NodeWrites::default();
        let child = self.join(depth, &path, left?, right?, &mut parent);
        top_out.extend(parent.into_vec());
        Ok(child)
    }

    fn update_shard(&self, shard: ShardId, old_root: Child, updates: &[HashedLeaf]) -> Result<ShardUpdate, TreeError> {
        let mut nodes = NodeWrites { chunks: vec![Vec::with_capacity(updates.len() * 16)] };
        let root = self.update(self.shard_bits, old_root, updates, &mut nodes)?;
        Ok(ShardUpdate { shard, root, nodes: nodes.into_vec() })
    }
}

/// The pure per-shard update: the shard whose root was `old_root` in `snapshot`, with `updates`
/// (sorted by index, all in `shard`, written by `epoch`) applied. Returns the new shard root and
/// every interior node record to write.
pub fn update_shard<S: Snapshot>(
    config: TreeConfig,
    snapshot: &S,
    epoch: Epoch,
    shard: ShardId,
    old_root: Child,
    updates: &[HashedLeaf],
) -> Result<ShardUpdate, TreeError> {
    assert!(updates.iter().all(|u| u.index.shard(config.shard_bits) == shard), "update outside shard {shard:?}");
    assert!(updates.windows(2).all(|w| w[0].index < w[1].index), "updates must be sorted and distinct");
    let ctx = Ctx { suite: config.suite, shard_bits: usize::from(config.shard_bits), snapshot, epoch };
    ctx.update_shard(shard, old_root, updates)
}

/// Computes the batch that turns `snapshot` (epoch E) into epoch E+1 by setting each index in
/// `updates` to its new value. `updates` may come in any order but must not repeat an index: the
/// epoch job resolves several mutations of one key to one final value first. Runs on the current
/// rayon pool; the result is byte-identical for every pool size and input order.
pub fn prepare_epoch<S: Snapshot>(
    config: TreeConfig,
    snapshot: &S,
    mut updates: Vec<(Index, LeafValue)>,
) -> Result<EpochBatch, TreeError> {
    let suite = config.suite;
    updates.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = updates.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(TreeError::DuplicateIndex(w[0].0.to_hex()));
    }
    let epoch = snapshot.epoch().next();
    let hashed = updates
        .par_iter()
        .with_min_len(256)
        .map(|(index, value)| HashedLeaf { index: *index, hash: suite.leaf_hash_of(index, value), written: epoch })
        .collect();
    prepare_sorted(config, snapshot, updates, hashed)
}

/// [`prepare_epoch`] of updates already ascending by index, one per index, whose leaf hashes
/// (`leaf_hashes[i]` is `suite.leaf_hash_of` of `updates[i]`) the caller has computed anyway: a
/// monitor's replay has just recomputed and checked every applied mutation's leaf hash, so the
/// leaves are not hashed twice. A wrong hash gives a batch that [`EpochBatch::verify`] refuses
/// and a root nobody else computes. Panics if `updates` are not ascending (a caller bug).
pub fn prepare_epoch_hashed<S: Snapshot>(
    config: TreeConfig,
    snapshot: &S,
    updates: Vec<(Index, LeafValue)>,
    leaf_hashes: Vec<Hash>,
) -> Result<EpochBatch, TreeError> {
    assert_eq!(updates.len(), leaf_hashes.len(), "one leaf hash per update");
    if let Some(w) = updates.windows(2).find(|w| w[0].0 >= w[1].0) {
        assert!(w[0].0 == w[1].0, "updates must ascend by index");
        return Err(TreeError::DuplicateIndex(w[0].0.to_hex()));
    }
    debug_assert!(
        updates.iter().zip(&leaf_hashes).all(|((index, value), hash)| config.suite.leaf_hash_of(index, value) == *hash),
        "every leaf hash is its update's"
    );
    let epoch = snapshot.epoch().next();
    let hashed = updates
        .par_iter()
        .zip(leaf_hashes)
        .with_min_len(1024)
        .map(|((index, _), hash)| HashedLeaf { index: *index, hash, written: epoch })
        .collect();
    prepare_sorted(config, snapshot, updates, hashed)
}

/// The update proper: `updates` ascending and distinct, `hashed` their leaves for epoch
/// `snapshot.epoch() + 1`.
fn prepare_sorted<S: Snapshot>(
    config: TreeConfig,
    snapshot: &S,
    updates: Vec<(Index, LeafValue)>,
    hashed: Vec<HashedLeaf>,
) -> Result<EpochBatch, TreeError> {
    let epoch = snapshot.epoch().next();
    debug_assert!(hashed.iter().all(|h| h.written == epoch));
    let ctx = Ctx { suite: config.suite, shard_bits: usize::from(config.shard_bits), snapshot, epoch };
    let mut shards = Vec::new();
    let mut top_nodes = Vec::new();
    let root = ctx.top(0, snapshot.root()?, &hashed, &mut shards, &mut top_nodes)?;
    debug_assert!(shards.windows(2).all(|w| w[0].shard < w[1].shard));
    debug_assert!(top_nodes.iter().all(|(k, _)| usize::from(k.depth) < ctx.shard_bits));
    Ok(EpochBatch { epoch, root, shards, top_nodes, leaves: updates })
}
