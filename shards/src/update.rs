//! The pure epoch update: (snapshot of epoch E, leaf updates) -> write batch for epoch E+1.
//!
//! Nothing here writes. Only dirty paths are touched: a subtree without updates is returned as the
//! parent stored it, so an epoch costs O(M log N) node reads and hashes, never O(N).

use crate::error::TreeError;
use crate::store::{Children, EpochBatch, NodeKey, Snapshot, TreeConfig};
use keyfold_core::{Hash, HashSuite, Index, LeafValue, Node, ShardId, combine};
use rayon::prelude::*;

/// Below this many updates a subtree is computed on the current thread; above it the two halves
/// are forked with `rayon::join`. Large enough that a fork costs far less than the work it splits.
const PAR_MIN_UPDATES: usize = 1024;

type NodeWrites = Vec<(NodeKey, Children)>;

struct Ctx<'a, S: Snapshot> {
    suite: HashSuite,
    snapshot: &'a S,
}

impl<S: Snapshot> Ctx<'_, S> {
    /// Combines two children and records the parent if it is an interior node.
    fn join(&self, depth: usize, prefix: &Index, left: Node, right: Node, out: &mut NodeWrites) -> Node {
        let parent = combine(self.suite, &left, &right);
        if let Node::Internal { .. } = parent {
            out.push((NodeKey::on_path(prefix, depth), [left, right]));
        }
        parent
    }

    /// A subtree built from `updates` alone (no prior content).
    fn build(&self, depth: usize, updates: &[(Index, Hash)], out: &mut NodeWrites) -> Node {
        match updates {
            [] => Node::Empty,
            [(index, hash)] => Node::Leaf { index: *index, hash: *hash },
            _ => {
                debug_assert!(depth < 256);
                let split = updates.partition_point(|(i, _)| !i.bit(depth));
                let (left_updates, right_updates) = updates.split_at(split);
                let (left, right) = self.fork(
                    out,
                    updates.len(),
                    |o| self.build(depth + 1, left_updates, o),
                    |o| self.build(depth + 1, right_updates, o),
                );
                self.join(depth, &updates[0].0, left, right, out)
            }
        }
    }

    /// Runs `left` and `right`, in parallel when the subtree is big. Left writes precede right
    /// writes in `out` either way, so the batch is identical for every thread count.
    fn fork<L, R, A, B>(&self, out: &mut NodeWrites, size: usize, left: L, right: R) -> (A, B)
    where
        L: FnOnce(&mut NodeWrites) -> A + Send,
        R: FnOnce(&mut NodeWrites) -> B + Send,
        A: Send,
        B: Send,
    {
        if size < PAR_MIN_UPDATES {
            let a = left(out);
            let b = right(out);
            return (a, b);
        }
        let mut right_out = Vec::new();
        let (a, b) = rayon::join(|| left(out), || right(&mut right_out));
        out.append(&mut right_out);
        (a, b)
    }

    /// The subtree at `depth` that was `old` at the snapshot, with `updates` applied.
    fn update(
        &self,
        depth: usize,
        old: Node,
        updates: &[(Index, Hash)],
        out: &mut NodeWrites,
    ) -> Result<Node, TreeError> {
        if updates.is_empty() {
            return Ok(old);
        }
        match old {
            Node::Empty => Ok(self.build(depth, updates, out)),
            Node::Leaf { index, hash } => match updates.binary_search_by(|(i, _)| i.cmp(&index)) {
                Ok(_) => Ok(self.build(depth, updates, out)),
                Err(pos) => {
                    let mut merged = Vec::with_capacity(updates.len() + 1);
                    merged.extend_from_slice(&updates[..pos]);
                    merged.push((index, hash));
                    merged.extend_from_slice(&updates[pos..]);
                    Ok(self.build(depth, &merged, out))
                }
            },
            Node::Internal { .. } => {
                let key = NodeKey::on_path(&updates[0].0, depth);
                let [old_left, old_right] = self.snapshot.node(&key)?.ok_or_else(|| {
                    TreeError::Corrupt(format!(
                        "interior node at depth {depth}, prefix {} is missing",
                        key.prefix.to_hex()
                    ))
                })?;
                let split = updates.partition_point(|(i, _)| !i.bit(depth));
                let (left_updates, right_updates) = updates.split_at(split);
                let (left, right) = self.fork(
                    out,
                    updates.len(),
                    |o| self.update(depth + 1, old_left, left_updates, o),
                    |o| self.update(depth + 1, old_right, right_updates, o),
                );
                Ok(self.join(depth, &updates[0].0, left?, right?, out))
            }
        }
    }

    /// The tree above the shards: `roots` are all shard roots at depth `shard_bits`. Records the
    /// interior nodes whose range contains a dirty shard.
    fn top(
        &self,
        shard_bits: u8,
        depth: usize,
        roots: &[Node],
        dirty: &[bool],
        first: u32,
        out: &mut NodeWrites,
    ) -> Node {
        if roots.len() == 1 {
            return roots[0];
        }
        let mid = roots.len() / 2;
        let left = self.top(shard_bits, depth + 1, &roots[..mid], &dirty[..mid], first, out);
        let half = u32::try_from(mid).expect("shard count fits u32");
        let right = self.top(shard_bits, depth + 1, &roots[mid..], &dirty[mid..], first + half, out);
        let parent = combine(self.suite, &left, &right);
        if matches!(parent, Node::Internal { .. }) && dirty.iter().any(|d| *d) {
            out.push((NodeKey::on_path(&ShardId(first).first_index(shard_bits), depth), [left, right]));
        }
        parent
    }
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
    let bits = config.shard_bits;
    updates.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = updates.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(TreeError::DuplicateIndex(w[0].0.to_hex()));
    }
    let hashed: Vec<(Index, Hash)> = updates.par_iter().map(|(i, v)| (*i, suite.leaf_hash_of(i, v))).collect();

    // Contiguous runs of one shard (the updates are sorted, and a shard is an index prefix).
    let mut runs: Vec<(ShardId, &[(Index, Hash)])> = Vec::new();
    let mut rest: &[(Index, Hash)] = &hashed;
    while let Some((first, _)) = rest.first() {
        let shard = first.shard(bits);
        let len = rest.partition_point(|(i, _)| i.shard(bits) == shard);
        runs.push((shard, &rest[..len]));
        rest = &rest[len..];
    }

    let mut roots = snapshot.shard_roots()?;
    assert_eq!(roots.len(), config.shard_count(), "store returned the wrong number of shard roots");
    let ctx = Ctx { suite, snapshot };
    let shard_results: Vec<Result<(ShardId, Node, NodeWrites), TreeError>> = runs
        .par_iter()
        .map(|(shard, run)| {
            let mut out = Vec::new();
            let old = roots[shard.0 as usize];
            let root = ctx.update(usize::from(bits), old, run, &mut out)?;
            Ok((*shard, root, out))
        })
        .collect();

    let mut dirty = vec![false; roots.len()];
    let mut shard_roots = Vec::with_capacity(runs.len());
    let mut shard_nodes = Vec::with_capacity(runs.len());
    for result in shard_results {
        let (shard, root, nodes) = result?;
        debug_assert!(nodes.iter().all(|(k, _)| usize::from(k.depth) >= usize::from(bits)));
        roots[shard.0 as usize] = root;
        dirty[shard.0 as usize] = true;
        shard_roots.push((shard, root));
        shard_nodes.push((shard, nodes));
    }
    let mut top_nodes = Vec::new();
    let root = ctx.top(bits, 0, &roots, &dirty, 0, &mut top_nodes);
    Ok(EpochBatch { epoch: snapshot.epoch().next(), root, shard_roots, shard_nodes, top_nodes, leaves: updates })
}
